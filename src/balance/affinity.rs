//! Session affinity: cookie affinity (ingress-nginx's `affinity: cookie` family) and a
//! Service's own `sessionAffinity: ClientIP`.
//!
//! Cookie values never reveal an endpoint address. In `balanced` mode the cookie holds a
//! random key that a consistent-hash ring maps to an endpoint, so adding an endpoint moves
//! about 1/n of the sessions; in `persistent` mode it holds a keyed hash (HMAC-SHA256 under
//! `--affinity-key`) of the endpoint, so a session stays where it is while its endpoint exists.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use crate::config::Endpoint;
use crate::config::policy::{CookieAffinity, SameSite};
use aws_lc_rs::hmac;
use http::HeaderMap;
use http::header::{self, HeaderValue};

/// A stable 64-bit hash (FNV-1a with a final mix): the same on every replica and every
/// version, so that replicas agree on where a balanced session goes.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finalizer: FNV alone spreads short, similar keys poorly.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Points per endpoint on the ring: enough that each endpoint's share is within a few
/// percent of 1/n.
const RING_POINTS: usize = 160;

/// Per-backend lookup structures, built on first use and kept with the compiled backend
/// (one pointer until then: most backends never see cookie affinity).
#[derive(Default)]
pub struct AffinityIndex(OnceLock<Box<Lookups>>);

#[derive(Default)]
struct Lookups {
    ring: OnceLock<Vec<(u64, u32)>>,
    ids: OnceLock<Ids>,
}

struct Ids {
    by_id: HashMap<Box<str>, u32>,
    of: Vec<Box<str>>,
}

impl Clone for AffinityIndex {
    fn clone(&self) -> Self {
        Self::default()
    }
}
impl std::fmt::Debug for AffinityIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AffinityIndex")
    }
}

/// Indexes below count the backend's ready endpoints first, then its terminating ones.
impl AffinityIndex {
    fn lookups(&self) -> &Lookups {
        self.0.get_or_init(Box::default)
    }

    fn ring(&self, ready: &[Endpoint], terminating: &[Endpoint]) -> &[(u64, u32)] {
        self.lookups().ring.get_or_init(|| {
            let mut ring = Vec::with_capacity((ready.len() + terminating.len()) * RING_POINTS);
            for (i, ep) in ready.iter().chain(terminating).enumerate() {
                let id = ep.addr.to_string();
                for p in 0..RING_POINTS {
                    ring.push((hash64(format!("{id}#{p}").as_bytes()), i as u32));
                }
            }
            ring.sort_unstable();
            ring
        })
    }

    /// Balanced mode: the endpoint a session key maps to.
    pub fn balanced(&self, ready: &[Endpoint], terminating: &[Endpoint], key: &str) -> Option<usize> {
        let ring = self.ring(ready, terminating);
        if ring.is_empty() {
            return None;
        }
        let h = hash64(key.as_bytes());
        let at = ring.partition_point(|(p, _)| *p < h);
        Some(ring[at % ring.len()].1 as usize)
    }

    fn ids(&self, ready: &[Endpoint], terminating: &[Endpoint], key: &hmac::Key) -> &Ids {
        self.lookups().ids.get_or_init(|| {
            let of: Vec<Box<str>> = ready
                .iter()
                .chain(terminating)
                .map(|ep| endpoint_id(key, ep.addr).into())
                .collect();
            let by_id = of.iter().enumerate().map(|(i, id)| (id.clone(), i as u32)).collect();
            Ids { by_id, of }
        })
    }

    /// Persistent mode: the endpoint a cookie value names.
    pub fn persistent(
        &self,
        ready: &[Endpoint],
        terminating: &[Endpoint],
        key: &hmac::Key,
        value: &str,
    ) -> Option<usize> {
        self.ids(ready, terminating, key).by_id.get(value).map(|i| *i as usize)
    }

    /// Persistent mode: the cookie value naming endpoint `i`.
    pub fn id_of(&self, ready: &[Endpoint], terminating: &[Endpoint], key: &hmac::Key, i: usize) -> Option<&str> {
        self.ids(ready, terminating, key).of.get(i).map(|s| &**s)
    }
}

/// The opaque id of an endpoint: 128 bits of HMAC-SHA256 over its address, in hex.
pub fn endpoint_id(key: &hmac::Key, addr: SocketAddr) -> String {
    let tag = hmac::sign(key, addr.to_string().as_bytes());
    hex(&tag.as_ref()[..16])
}

/// A fresh random session key (balanced mode), 128 bits in hex.
pub fn random_key() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // The system generator failing is not a reason to fail a request; the key only
        // spreads sessions.
        let t = super::now_ns();
        b[..8].copy_from_slice(&t.to_le_bytes());
    }
    hex(&b)
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// The value of cookie `name` in the request, if sent. Several Cookie headers (HTTP/2
/// splits them) are all searched.
pub fn request_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name)
                .then(|| v.trim_matches('"'))
                .filter(|v| !v.is_empty() && v.len() <= 256)
        })
}

/// Builds the `Set-Cookie` value for a session.
pub fn set_cookie(
    cfg: &CookieAffinity,
    value: &str,
    route_path: &str,
    https: bool,
    user_agent: Option<&str>,
    now: SystemTime,
) -> Option<HeaderValue> {
    let mut s = format!(
        "{}={}; Path={}",
        cfg.name,
        value,
        cfg.path.as_deref().unwrap_or(route_path)
    );
    if let Some(d) = &cfg.domain {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    if let Some(secs) = cfg.expires {
        s.push_str("; Expires=");
        s.push_str(&httpdate::fmt_http_date(expiry(now, secs)));
    }
    if let Some(secs) = cfg.max_age {
        s.push_str(&format!("; Max-Age={secs}"));
    }
    let same_site = match cfg.same_site {
        Some(SameSite::None)
            if cfg.conditional_same_site_none && user_agent.is_some_and(same_site_none_incompatible) =>
        {
            None
        }
        other => other,
    };
    // Browsers drop `SameSite=None` cookies that are not Secure.
    if cfg.secure.unwrap_or(https) || same_site == Some(SameSite::None) {
        s.push_str("; Secure");
    }
    s.push_str("; HttpOnly");
    match same_site {
        Some(SameSite::None) => s.push_str("; SameSite=None"),
        Some(SameSite::Lax) => s.push_str("; SameSite=Lax"),
        Some(SameSite::Strict) => s.push_str("; SameSite=Strict"),
        None => {}
    }
    HeaderValue::from_str(&s).ok()
}

/// `now + secs`, clamped to the dates an HTTP date can name (1970 to 9999): the formatter
/// panics outside them. Compile caps the lifetime; the clamp keeps a wrong clock harmless too.
fn expiry(now: SystemTime, secs: u64) -> SystemTime {
    // 9999-12-31T23:59:59Z
    const LAST: Duration = Duration::from_secs(253_402_300_799);
    let since_epoch = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    SystemTime::UNIX_EPOCH + since_epoch.saturating_add(Duration::from_secs(secs)).min(LAST)
}

/// Browsers that reject or misread `SameSite=None` (the list Chromium published): iOS 12,
/// Safari on macOS 10.14, Chrome 51–66, UC Browser before 12.13.2.
pub fn same_site_none_incompatible(ua: &str) -> bool {
    let ios12 = ua.contains("(iP") && ua.contains("OS 12_") && ua.contains("AppleWebKit/");
    let chromium = ua.contains("Chrome/") || ua.contains("Chromium/");
    let mac_safari = ua.contains("(Macintosh;")
        && ua.contains("Mac OS X 10_14")
        && ua.contains("Version/")
        && ua.contains("Safari")
        && !chromium;
    let major = |marker: &str| -> Option<u32> {
        let rest = &ua[ua.find(marker)? + marker.len()..];
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let old_chrome = ["Chrome/", "Chromium/"]
        .iter()
        .any(|m| major(m).is_some_and(|v| (51..=66).contains(&v)));
    let old_uc = ua.find("UCBrowser/").is_some_and(|at| {
        let v: Vec<u32> = ua[at + "UCBrowser/".len()..]
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .next()
            .unwrap_or("")
            .split('.')
            .filter_map(|p| p.parse().ok())
            .collect();
        let get = |i: usize| v.get(i).copied().unwrap_or(0);
        (get(0), get(1), get(2)) < (12, 13, 2)
    });
    ios12 || mac_safari || old_chrome || old_uc
}

/// Most clients one Service's ClientIP table remembers; beyond this, new clients are
/// balanced normally until entries expire.
const CLIENT_IP_CAPACITY: usize = 100_000;

/// A Service's `sessionAffinity: ClientIP` memory: client address → endpoint, each entry
/// living `timeoutSeconds` after the client's last request (as kube-proxy's does).
#[derive(Default)]
pub struct ClientIpTable {
    map: Mutex<HashMap<IpAddr, (SocketAddr, u64)>>,
}

impl std::fmt::Debug for ClientIpTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIpTable")
    }
}

impl ClientIpTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (SocketAddr, u64)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The endpoint a client is pinned to, if its entry is still alive.
    pub fn get(&self, client: IpAddr, now: u64) -> Option<SocketAddr> {
        self.lock()
            .get(&client)
            .and_then(|(addr, until)| (*until > now).then_some(*addr))
    }

    /// Pins (or re-pins) a client for `timeout` from now.
    pub fn set(&self, client: IpAddr, addr: SocketAddr, now: u64, timeout: Duration) {
        let until = now.saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
        let mut map = self.lock();
        if map.len() >= CLIENT_IP_CAPACITY && !map.contains_key(&client) {
            map.retain(|_, (_, u)| *u > now);
            if map.len() >= CLIENT_IP_CAPACITY {
                return;
            }
        }
        map.insert(client, (addr, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| {
                let addr: SocketAddr = format!("10.0.0.{}:8080", i + 1).parse().unwrap();
                Endpoint {
                    addr,
                    target: None,
                    zone: None,
                }
            })
            .collect()
    }

    #[test]
    fn balanced_moves_about_one_in_n_when_scaling() {
        let four = eps(4);
        let five = eps(5);
        let (a, b) = (AffinityIndex::default(), AffinityIndex::default());
        let keys: Vec<String> = (0..4000).map(|_| random_key()).collect();
        let mut moved = 0;
        let mut share = [0usize; 4];
        for k in &keys {
            let before = a.balanced(&four, &[], k).unwrap();
            share[before] += 1;
            let after = b.balanced(&five, &[], k).unwrap();
            if four[before].addr != five[after].addr {
                moved += 1;
                assert_eq!(after, 4, "a session only moves to the new endpoint");
            }
        }
        let frac = moved as f64 / keys.len() as f64;
        assert!((0.12..0.28).contains(&frac), "moved {frac}");
        for s in share {
            assert!((700..1300).contains(&s), "shares {share:?}");
        }
    }

    #[test]
    fn persistent_ids_are_opaque_and_stable() {
        let e = eps(3);
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let idx = AffinityIndex::default();
        let id = idx.id_of(&e, &[], &key, 1).unwrap().to_string();
        assert_eq!(id.len(), 32);
        assert!(!id.contains("10.0.0"));
        assert_eq!(idx.persistent(&e, &[], &key, &id), Some(1));
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"other");
        assert_ne!(endpoint_id(&other, e[1].addr), id);
        assert_eq!(idx.persistent(&e, &[], &key, "nope"), None);
    }

    #[test]
    fn cookie_attributes() {
        let cfg = CookieAffinity {
            name: "route".into(),
            domain: Some("example.com".into()),
            max_age: Some(3600),
            expires: Some(60),
            same_site: Some(SameSite::None),
            conditional_same_site_none: true,
            ..Default::default()
        };
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = set_cookie(&cfg, "abc", "/app", false, Some("curl/8"), t).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "route=abc; Path=/app; Domain=example.com; Expires=Tue, 14 Nov 2023 22:14:20 GMT; Max-Age=3600; Secure; HttpOnly; SameSite=None"
        );
        let old =
            "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/62.0.3202.94 Safari/537.36";
        let v = set_cookie(&cfg, "abc", "/", false, Some(old), t).unwrap();
        assert!(!v.to_str().unwrap().contains("SameSite") && !v.to_str().unwrap().contains("Secure"));
        let plain = CookieAffinity::default();
        assert_eq!(
            set_cookie(&plain, "x", "/", true, None, t).unwrap().to_str().unwrap(),
            "INGRESSCOOKIE=x; Path=/; Secure; HttpOnly"
        );
    }

    /// httpdate panics for dates past 9999 or before 1970, and `SystemTime + Duration` on
    /// overflow: the annotation caps the lifetime, and the date is clamped besides.
    #[test]
    fn far_or_early_expiry_dates_still_make_a_cookie() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for secs in [300_000_000_000, u64::MAX] {
            let cfg = CookieAffinity {
                expires: Some(secs),
                max_age: Some(secs),
                ..Default::default()
            };
            let v = set_cookie(&cfg, "x", "/", false, None, t).unwrap();
            assert!(
                v.to_str().unwrap().contains("; Expires=Fri, 31 Dec 9999 23:59:59 GMT"),
                "{v:?}"
            );
        }
        let cfg = CookieAffinity {
            expires: Some(0),
            ..Default::default()
        };
        let before_1970 = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        let v = set_cookie(&cfg, "x", "/", false, None, before_1970).unwrap();
        assert!(
            v.to_str().unwrap().contains("; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
            "{v:?}"
        );
    }

    #[test]
    fn samesite_none_incompatible_clients() {
        assert!(same_site_none_incompatible(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 12_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1"
        ));
        assert!(same_site_none_incompatible(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15"
        ));
        assert!(same_site_none_incompatible(
            "Mozilla/5.0 (Linux; U; Android 8.1.0) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 UCBrowser/12.10.8.1172 Mobile Safari/537.36"
        ));
        assert!(!same_site_none_incompatible(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
        ));
        assert!(!same_site_none_incompatible(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
        ));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; INGRESSCOOKIE=xyz"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(request_cookie(&h, "INGRESSCOOKIE"), Some("xyz"));
        assert_eq!(request_cookie(&h, "b"), Some("2"));
        assert_eq!(request_cookie(&h, "c"), None);
    }

    #[test]
    fn client_ip_entries_expire() {
        let t = ClientIpTable::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let ep: SocketAddr = "10.0.0.1:80".parse().unwrap();
        t.set(ip, ep, 0, Duration::from_secs(1));
        assert_eq!(t.get(ip, 500_000_000), Some(ep));
        assert_eq!(t.get(ip, 1_500_000_000), None);
    }
}
