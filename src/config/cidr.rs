//! Address ranges: `whitelist-source-range` and `--trusted-proxies`.

use std::net::IpAddr;
use std::str::FromStr;

/// An address range (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Shown as text (`10.0.0.0/8`) in `/routes`.
impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Cidr {
    /// Every IPv4 address, and every IPv6 one.
    pub const ANY_V4: Cidr = Cidr {
        addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        prefix: 0,
    };
    pub const ANY_V6: Cidr = Cidr {
        addr: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        prefix: 0,
    };

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whose X-Forwarded-* are believed (`--trusted-proxies`, or `use-forwarded-headers` with
/// `proxy-real-ip-cidr`), and which header names the client address
/// (`forwarded-for-header`; `None`: X-Forwarded-For).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Trusted {
    pub ranges: Vec<Cidr>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "header_name")]
    pub header: Option<http::HeaderName>,
}

fn header_name<S: serde::Serializer>(h: &Option<http::HeaderName>, s: S) -> Result<S::Ok, S::Error> {
    match h {
        Some(h) => s.serialize_str(h.as_str()),
        None => s.serialize_none(),
    }
}

impl From<Vec<Cidr>> for Trusted {
    fn from(ranges: Vec<Cidr>) -> Self {
        Trusted { ranges, header: None }
    }
}

/// The ranges, as a slice: `trusted.iter()`, `trusted.is_empty()`.
impl std::ops::Deref for Trusted {
    type Target = [Cidr];
    fn deref(&self) -> &[Cidr] {
        &self.ranges
    }
}
