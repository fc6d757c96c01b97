//! Header rules of the proxy: request host, hop-by-hop removal, X-Forwarded-* and trusted proxies.

use std::borrow::Cow;
use std::net::IpAddr;

use http::Uri;

use crate::config::Trusted;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the request has more than one Host header")]
    Duplicate,
    #[error("the request has no host")]
    Missing,
    #[error("the Host header is not a valid host name")]
    Invalid,
}

/// Splits `host[:port]` (or `[v6]:port`) and validates the host part.
fn split_host(authority: &str) -> Result<&str, HostError> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or(HostError::Invalid)?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)) {
            return Err(HostError::Invalid);
        }
        let inner = &rest[..end];
        inner.parse::<std::net::Ipv6Addr>().map_err(|_| HostError::Invalid)?;
        return Ok(&authority[..end + 2]);
    } else {
        match authority.bytes().rposition(|b| b == b':') {
            Some(i) if valid_port(&authority[i + 1..]) => &authority[..i],
            Some(_) => return Err(HostError::Invalid),
            None => authority,
        }
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if valid_name(name.as_bytes()) {
        Ok(host)
    } else {
        Err(HostError::Invalid)
    }
}

/// Dot-separated labels of 1 to 63 letters, digits, `-` or `_`; 253 bytes at most.
fn valid_name(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let mut label = 0usize;
    for &b in name {
        // One table lookup per byte (every request's host comes here).
        match HOST_BYTES[usize::from(b)] {
            LABEL => {
                label += 1;
                if label > 63 {
                    return false;
                }
            }
            DOT if label > 0 => label = 0,
            _ => return false,
        }
    }
    label > 0
}

const LABEL: u8 = 1;
const DOT: u8 = 2;
/// What each byte is in a host name: a label's (letters, digits, `-`, `_`), the dot between
/// labels, or neither (0).
static HOST_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
            t[b] = LABEL;
        }
        b += 1;
    }
    t[b'.' as usize] = DOT;
    t
};

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The request fields the handler consults, found in one pass over the map instead of a
/// hashed lookup each.
#[derive(Debug, Default)]
pub struct Fields {
    /// The first Host value.
    pub host: Option<HeaderValue>,
    /// A second Host field came.
    pub hosts: bool,
    pub request_id: Option<HeaderValue>,
    /// An Upgrade field is present.
    pub upgrade: bool,
    /// A TE field is present.
    pub te: bool,
    /// Some hop-by-hop field (or Upgrade) is present.
    pub hop_by_hop: bool,
    /// The field names as an HTTP/1 client spelled them, when one is not all lower case
    /// (set by the handler from [`super::case::request`]).
    pub names: Option<super::case::Names>,
}

impl Fields {
    pub fn of(headers: &HeaderMap) -> Fields {
        let mut f = Fields::default();
        for (name, value) in headers {
            if name == header::HOST {
                if f.host.is_some() {
                    f.hosts = true;
                } else {
                    f.host = Some(value.clone());
                }
            } else if is_request_id(name) {
                f.request_id.get_or_insert_with(|| value.clone());
            } else if name == header::UPGRADE {
                f.upgrade = true;
                f.hop_by_hop = true;
            } else if name == header::TE {
                f.te = true;
                f.hop_by_hop = true;
            } else if is_hop_by_hop(name) {
                f.hop_by_hop = true;
            }
        }
        f
    }
}

/// The host a request is for, without port: the URI authority (HTTP/2 `:authority`,
/// absolute-form targets) else the single Host header.
pub fn request_host<'a>(uri: &'a Uri, f: &'a Fields) -> Result<&'a str, HostError> {
    if f.hosts {
        return Err(HostError::Duplicate);
    }
    if let Some(auth) = uri.authority() {
        return split_host(auth.as_str());
    }
    let h = f.host.as_ref().ok_or(HostError::Missing)?;
    split_host(h.to_str().map_err(|_| HostError::Invalid)?)
}

/// The authority (`host[:port]`) to send upstream as Host.
pub fn request_authority(uri: &Uri, f: &Fields) -> Option<HeaderValue> {
    if let Some(auth) = uri.authority() {
        return HeaderValue::from_str(auth.as_str()).ok();
    }
    f.host.clone()
}

/// Fields a proxy does not forward (RFC 9110, 7.6.1). `Trailer` is end to end: it
/// announces the trailer fields, and hyper's HTTP/1.1 server sends only those it names.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
];

// Names compared on every request: as consts, each comparison compiles to a test of the
// name's representation against known values, where a static (interior mutability keeps it in
// writable memory) is read and compared field by field.
#[allow(clippy::declare_interior_mutable_const)]
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
#[allow(clippy::declare_interior_mutable_const)]
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
#[allow(clippy::declare_interior_mutable_const)]
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Whether `name` is one of [`HOP_BY_HOP`].
#[inline]
#[allow(clippy::borrow_interior_mutable_const)]
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRANSFER_ENCODING
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
}

#[inline]
#[allow(clippy::borrow_interior_mutable_const)]
fn is_request_id(name: &HeaderName) -> bool {
    *name == REQUEST_ID
}

/// Whether the request asks to switch protocols (WebSocket and the like). `Upgrade: h2c`
/// is never honoured: a proxy must not let a client turn a forwarded connection into an
/// unchecked HTTP/2 tunnel.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let conn_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let up = headers.get(header::UPGRADE)?;
    let is_h2c = up
        .to_str()
        .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c")))
        .unwrap_or(true);
    (conn_upgrade && !is_h2c).then(|| up.clone())
}

/// Removes hop-by-hop headers, including those the Connection header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none or only `Connection`: one scan over the names instead of a
    // lookup per hop-by-hop name.
    let present = headers.keys().any(|k| k == header::UPGRADE || is_hop_by_hop(k));
    if !present {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for h in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(h);
    }
    headers.remove(header::UPGRADE);
}

/// Fields a trailer section may not carry (RFC 9110, 6.5.1): framing, routing, request
/// modifiers, authentication, response control and content metadata, and hop-by-hop fields.
/// Upstream trailers carrying them are dropped, so a trailer cannot change how a response is
/// framed, cached or read. gRPC's `grpc-status` and `grpc-message` pass.
static NOT_IN_TRAILERS: [HeaderName; 30] = [
    header::AGE,
    header::AUTHORIZATION,
    header::CACHE_CONTROL,
    header::CONNECTION,
    header::CONTENT_ENCODING,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::CONTENT_TYPE,
    header::DATE,
    header::EXPECT,
    header::EXPIRES,
    header::HOST,
    header::IF_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_NONE_MATCH,
    header::IF_RANGE,
    header::IF_UNMODIFIED_SINCE,
    header::LOCATION,
    header::MAX_FORWARDS,
    header::PRAGMA,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::RANGE,
    header::RETRY_AFTER,
    header::SET_COOKIE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::WWW_AUTHENTICATE,
];

/// Whether a trailer field may be forwarded (see [`NOT_IN_TRAILERS`]).
pub fn is_trailer_allowed(name: &HeaderName) -> bool {
    !NOT_IN_TRAILERS.contains(name) && name != "keep-alive" && name != "proxy-connection" && name != "vary"
}

/// Drops the fields a trailer section may not carry.
pub fn filter_trailers(trailers: &mut HeaderMap) {
    if trailers.keys().all(is_trailer_allowed) {
        return;
    }
    let mut kept = HeaderMap::with_capacity(trailers.len());
    let mut name: Option<HeaderName> = None;
    // A name comes once, with the first of its values.
    for (n, v) in std::mem::take(trailers) {
        if n.is_some() {
            name = n;
        }
        if let Some(n) = name.as_ref().filter(|n| is_trailer_allowed(n)) {
            kept.append(n.clone(), v);
        }
    }
    *trailers = kept;
}

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the proxy knows about the client connection, with the header values made from
/// it once per connection rather than once per request.
#[derive(Debug)]
pub struct Peer {
    pub addr: IpAddr,
    pub local_port: u16,
    pub tls: bool,
    /// `addr` as a header value.
    pub addr_value: HeaderValue,
    /// `local_port` as a header value.
    pub port_value: HeaderValue,
    /// Whether requests are in flight, for the head deadline of the connection's reads.
    pub activity: super::client::Activity,
    /// What the TLS handshake learnt about a client certificate (`auth-tls`).
    pub client_tls: std::sync::OnceLock<super::mtls::ClientTls>,
    /// Header name case on HTTP/1: the names the client spelled, how to spell responses.
    pub case: super::case::Conn,
    /// The client's port (`$remote_port`; 0 when unknown) and the address that accepted the
    /// connection (`$server_addr`).
    pub remote_port: u16,
    pub server_addr: Option<IpAddr>,
    /// The TLS server name the client sent (`$ssl_server_name`), set after the handshake.
    pub sni: std::sync::OnceLock<Box<str>>,
    /// The socket the connection came in on: its port (not the PROXY protocol's), and
    /// whether it is one of Portico's own (`--http-addr`, `--https-addr`) rather than one
    /// opened for Gateway listeners. Gateway routes are chosen by it.
    pub socket: Socket,
}

/// See [`Peer::socket`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Socket {
    pub port: u16,
    pub own: bool,
}

impl Peer {
    pub fn new(addr: IpAddr, local_port: u16, tls: bool) -> Peer {
        Peer {
            addr,
            local_port,
            tls,
            addr_value: ip_value(addr),
            port_value: HeaderValue::from(local_port),
            activity: Default::default(),
            client_tls: Default::default(),
            case: Default::default(),
            remote_port: 0,
            server_addr: None,
            sni: Default::default(),
            socket: Socket {
                port: local_port,
                own: true,
            },
        }
    }

    /// The connection's two ends, for `$remote_port` and `$server_addr`.
    pub fn ends(mut self, remote_port: u16, server_addr: Option<IpAddr>) -> Peer {
        self.remote_port = remote_port;
        self.server_addr = server_addr;
        self
    }

    /// The socket the connection came in on (see [`Peer::socket`]).
    pub fn socket(mut self, socket: Socket) -> Peer {
        self.socket = socket;
        self
    }
}

/// The client address after trusted-proxy handling: the right-most X-Forwarded-For entry
/// (or `forwarded-for-header`'s) that is not itself a trusted proxy, when the peer is
/// trusted (the left-most entry when every one is, as nginx's `real_ip_recursive`: so with
/// `proxy-real-ip-cidr` 0.0.0.0/0 the first address is the client); else the peer.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &Trusted) -> IpAddr {
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let chain: Vec<IpAddr> = headers
        .get_all(trusted.header.as_ref().unwrap_or(&X_FORWARDED_FOR))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let first = chain.first().copied().unwrap_or(peer);
    chain
        .into_iter()
        .rev()
        .find(|ip| !trusted.iter().any(|c| c.contains(*ip)))
        .unwrap_or(first)
}

/// What happens to one field on its way upstream.
#[derive(Clone, Debug)]
pub enum Field<'a> {
    /// Left as it came.
    Keep,
    /// Removed.
    Drop,
    /// Set to this value, replacing any it came with: most often one the connection's
    /// [`Peer`] holds, borrowed (a copy would cost each request a reference count up and down).
    Set(Cow<'a, HeaderValue>),
}

/// The X-Forwarded-For/-Proto/-Host/-Port, X-Real-IP and X-Request-ID fields of an upstream
/// request. Applied to the header map for hyper's client, or written by Portico's own
/// client after the map's fields (without growing the map).
pub struct Forwarded<'a>(pub [(&'static HeaderName, Field<'a>); 6]);

impl Forwarded<'_> {
    /// Whether the field `name` of the header map is replaced or removed.
    pub fn replaces(&self, name: &HeaderName) -> bool {
        // All six start with "x-": most names are ruled out by their first bytes.
        name.as_str().starts_with("x-") && self.0.iter().any(|(n, f)| *n == name && !matches!(f, Field::Keep))
    }

    /// The fields to add, each with its name and `": "` as one piece, for writing a head.
    pub fn lines(&self) -> impl Iterator<Item = (&'static [u8], &HeaderValue)> {
        self.0.iter().zip(LINE_STARTS).filter_map(|((_, f), start)| match f {
            Field::Set(v) => Some((start, &**v)),
            _ => None,
        })
    }

    /// `compute-full-forwarded-for: "false"`: X-Forwarded-For is the client address alone
    /// (X-Real-IP's value), not the chain with the peer appended.
    pub fn client_only(&mut self) {
        if let (_, Field::Set(real)) = &self.0[1] {
            self.0[0].1 = Field::Set(real.clone());
        }
    }

    /// The X-Request-ID sent upstream, for log lines about the request.
    pub fn request_id(&self) -> &str {
        self.request_id_value().and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The same as a field value (`$request_id`).
    pub fn request_id_value(&self) -> Option<&HeaderValue> {
        match &self.0[5] {
            (_, Field::Set(v)) => Some(&**v),
            _ => None,
        }
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, f) in &self.0 {
            match f {
                Field::Keep => {}
                Field::Drop => {
                    headers.remove(*name);
                }
                Field::Set(v) => {
                    headers.insert(*name, v.clone().into_owned());
                }
            }
        }
    }
}

/// The names of `forwarded`'s fields, in its order, as the start of a head line.
const LINE_STARTS: [&[u8]; 6] = [
    b"x-forwarded-for: ",
    b"x-real-ip: ",
    b"x-forwarded-proto: ",
    b"x-forwarded-host: ",
    b"x-forwarded-port: ",
    b"x-request-id: ",
];

/// X-Forwarded-For/-Proto/-Host/-Port and X-Real-IP, and X-Request-ID `rid`. Inbound
/// X-Forwarded-* values are kept (and appended to) only when the peer is a trusted proxy.
pub fn forwarded<'a>(
    headers: &HeaderMap,
    peer: &'a Peer,
    host: Option<&'a HeaderValue>,
    trusted: &Trusted,
    rid: HeaderValue,
) -> Forwarded<'a> {
    let from_trusted = !trusted.is_empty() && trusted.iter().any(|c| c.contains(peer.addr));
    // Which X-Forwarded-Proto/-Host/-Port came in: one pass over the names instead of a
    // lookup per field.
    let mut inbound = [false; 3];
    for name in headers.keys() {
        let s = name.as_str();
        if s.len() >= 15 && s.starts_with("x-forwarded-") {
            match &s[12..] {
                "proto" => inbound[0] = true,
                "host" => inbound[1] = true,
                "port" => inbound[2] = true,
                _ => {}
            }
        }
    }
    let (xff, real_ip) = if from_trusted {
        let client = client_ip(headers, peer.addr, trusted);
        let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.is_empty() => HeaderValue::from_str(&format!("{prev}, {}", peer.addr))
                .map(|v| Field::Set(Cow::Owned(v)))
                .unwrap_or(Field::Keep),
            _ => Field::Set(Cow::Borrowed(&peer.addr_value)),
        };
        let real = if client == peer.addr {
            Cow::Borrowed(&peer.addr_value)
        } else {
            Cow::Owned(ip_value(client))
        };
        (xff, real)
    } else {
        // Nothing a client says about itself is believed.
        inbound = [false; 3];
        (
            Field::Set(Cow::Borrowed(&peer.addr_value)),
            Cow::Borrowed(&peer.addr_value),
        )
    };
    let keep_or = |present: bool, v: Option<Cow<'a, HeaderValue>>| match (present, v) {
        (true, _) => Field::Keep,
        (false, Some(v)) => Field::Set(v),
        (false, None) => Field::Drop,
    };
    Forwarded([
        (&X_FORWARDED_FOR, xff),
        (&X_REAL_IP, Field::Set(real_ip)),
        (
            &X_FORWARDED_PROTO,
            keep_or(
                inbound[0],
                Some(Cow::Owned(HeaderValue::from_static(if peer.tls {
                    "https"
                } else {
                    "http"
                }))),
            ),
        ),
        (&X_FORWARDED_HOST, keep_or(inbound[1], host.map(Cow::Borrowed))),
        (
            &X_FORWARDED_PORT,
            keep_or(inbound[2], Some(Cow::Borrowed(&peer.port_value))),
        ),
        (&X_REQUEST_ID, Field::Set(Cow::Owned(rid))),
    ])
}

/// An IP address as a header value, formatted without a heap-allocated String.
fn ip_value(ip: IpAddr) -> HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 48];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "{ip}");
    let n = usize::try_from(cur.position()).unwrap_or(0);
    HeaderValue::from_bytes(&buf[..n]).unwrap_or(HeaderValue::from_static("unknown"))
}

/// The request-target to send upstream: unchanged when normalization changed nothing,
/// else the normalized path with the original query.
pub fn upstream_target(uri: &Uri, normalized: &str) -> String {
    let q = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    format!("{normalized}{q}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    /// nginx's real_ip_recursive: the right-most untrusted entry, or the left-most when the
    /// whole chain is trusted (so `proxy-real-ip-cidr: 0.0.0.0/0` believes the first one).
    #[test]
    fn client_ip_walks_the_chain_from_the_right() {
        let mut h = HeaderMap::new();
        h.insert(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("203.0.113.1, 10.0.0.2, 10.0.0.3"),
        );
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let tens = Trusted::from(vec!["10.0.0.0/8".parse::<Cidr>().unwrap()]);
        let all = Trusted::from(vec![Cidr::ANY_V4, Cidr::ANY_V6]);
        assert_eq!(client_ip(&h, peer, &tens), "203.0.113.1".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(&h, peer, &all), "203.0.113.1".parse::<IpAddr>().unwrap());
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        assert_eq!(client_ip(&h, peer, &tens), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(&h, peer, &Trusted::default()), peer, "untrusted peer: itself");
    }

    #[test]
    fn client_ip_reads_the_forwarded_for_header_key() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.1"));
        h.insert("x-client-ip", HeaderValue::from_static("198.51.100.7"));
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let mut trusted = Trusted::from(vec!["10.0.0.0/8".parse::<Cidr>().unwrap()]);
        trusted.header = Some(HeaderName::from_static("x-client-ip"));
        assert_eq!(client_ip(&h, peer, &trusted), "198.51.100.7".parse::<IpAddr>().unwrap());
        h.remove("x-client-ip");
        assert_eq!(client_ip(&h, peer, &trusted), peer, "X-Forwarded-For is not read then");
    }

    #[test]
    fn hop_by_hop_test_matches_the_list() {
        assert!(HOP_BY_HOP.iter().all(is_hop_by_hop));
        for other in [
            "upgrade",
            "trailer",
            "host",
            "x-request-id",
            "keep-alives",
            "connection-x",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(other)), "{other}");
        }
        assert!(is_hop_by_hop(&HeaderName::from_bytes(b"Keep-Alive").unwrap()));
        assert!(is_request_id(&HeaderName::from_bytes(b"X-Request-Id").unwrap()));
    }
    use http::Request;

    #[test]
    fn cidr() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
    }

    fn req(hosts: &[&str], uri: &str) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    /// The table-driven `valid_name` against the rule written out byte by byte, on every
    /// name of up to five bytes from the bytes that matter, and at the length limits.
    #[test]
    fn host_names_are_checked_as_the_rule_says() {
        fn rule(name: &[u8]) -> bool {
            !name.is_empty()
                && name.len() <= 253
                && name.split(|b| *b == b'.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
                })
        }
        let alphabet = b"aZ09-_.:/ \x80\xff";
        let mut names = vec![Vec::new()];
        while let Some(n) = names.pop() {
            assert_eq!(valid_name(&n), rule(&n), "{n:?}");
            if n.len() < 5 {
                names.extend(alphabet.iter().map(|b| [&n[..], &[*b]].concat()));
            }
        }
        for (label, labels) in [(63, 3), (64, 1), (63, 4), (50, 5)] {
            let name = vec![vec![b'x'; label]; labels].join(&b'.');
            assert_eq!(valid_name(&name), rule(&name), "{label} x {labels}");
        }
    }

    #[test]
    fn line_starts_name_the_fields() {
        let peer = Peer::new("10.1.2.3".parse().unwrap(), 80, false);
        let host = HeaderValue::from_static("h.com");
        let f = forwarded(
            &HeaderMap::new(),
            &peer,
            Some(&host),
            &Trusted::default(),
            HeaderValue::from_static("r"),
        );
        assert_eq!(f.lines().count(), 6);
        for ((name, _), start) in f.0.iter().zip(LINE_STARTS) {
            assert_eq!(start, format!("{name}: ").as_bytes());
        }
    }

    fn request_host(r: &Request<()>) -> Result<String, HostError> {
        super::request_host(r.uri(), &Fields::of(r.headers())).map(str::to_string)
    }

    #[test]
    fn fields_in_one_pass() {
        let mut h = HeaderMap::new();
        h.append(header::HOST, HeaderValue::from_static("a.com"));
        h.append("x-request-id", HeaderValue::from_static("r1"));
        h.append("x-other", HeaderValue::from_static("1"));
        let f = Fields::of(&h);
        assert_eq!(f.host.as_ref().unwrap(), "a.com");
        assert_eq!(f.request_id.as_ref().unwrap(), "r1");
        assert!(!f.hosts && !f.upgrade && !f.te && !f.hop_by_hop);
        h.append(header::HOST, HeaderValue::from_static("b.com"));
        h.append(header::TE, HeaderValue::from_static("trailers"));
        let f = Fields::of(&h);
        assert!(f.hosts && f.te && f.hop_by_hop && !f.upgrade);
        h.append("keep-alive", HeaderValue::from_static("timeout=5"));
        h.remove(header::TE);
        assert!(Fields::of(&h).hop_by_hop);
        h.remove("keep-alive");
        h.append(header::UPGRADE, HeaderValue::from_static("websocket"));
        let f = Fields::of(&h);
        assert!(f.upgrade && f.hop_by_hop);
    }

    #[test]
    fn host() {
        assert_eq!(request_host(&req(&["foo.com"], "/")).as_deref(), Ok("foo.com"));
        assert_eq!(request_host(&req(&["Foo.com:8080"], "/")).as_deref(), Ok("Foo.com"));
        assert_eq!(request_host(&req(&["[::1]:80"], "/")).as_deref(), Ok("[::1]"));
        assert_eq!(request_host(&req(&["127.0.0.1:80"], "/")).as_deref(), Ok("127.0.0.1"));
        assert_eq!(request_host(&req(&["a.com", "b.com"], "/")), Err(HostError::Duplicate));
        assert_eq!(request_host(&req(&[], "/")), Err(HostError::Missing));
        for bad in ["foo com", "foo.com:x", "a..b", "", "foo.com:123456", "[zz]:1"] {
            assert_eq!(request_host(&req(&[bad], "/")), Err(HostError::Invalid), "{bad}");
        }
        assert_eq!(
            request_host(&req(&["ignored.com"], "http://abs.com:81/x")).as_deref(),
            Ok("abs.com")
        );
    }

    #[test]
    fn forwarded_headers() {
        let trusted = Trusted::from(vec!["10.0.0.0/8".parse::<Cidr>().unwrap()]);
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let untrusted = Peer::new("8.8.8.8".parse().unwrap(), 80, false);
        let mut h1 = h.clone();
        let rid = HeaderValue::from_static("r1");
        forwarded(
            &h1.clone(),
            &untrusted,
            Some(&HeaderValue::from_static("x.com")),
            &trusted,
            rid.clone(),
        )
        .apply(&mut h1);
        assert_eq!(h1[&X_FORWARDED_FOR], "8.8.8.8");
        assert_eq!(h1[&X_FORWARDED_PROTO], "http");
        assert_eq!(h1[&X_REAL_IP], "8.8.8.8");
        assert_eq!(h1[&X_FORWARDED_HOST], "x.com");
        assert_eq!(h1[&X_FORWARDED_PORT], "80");
        assert_eq!(h1[&X_REQUEST_ID], "r1");
        let proxy = Peer::new("10.0.0.5".parse().unwrap(), 80, false);
        let mut h2 = h.clone();
        forwarded(&h2.clone(), &proxy, None, &trusted, rid.clone()).apply(&mut h2);
        assert_eq!(h2[&X_FORWARDED_FOR], "1.1.1.1, 10.0.0.5");
        assert_eq!(h2[&X_FORWARDED_PROTO], "https");
        assert_eq!(h2[&X_REAL_IP], "1.1.1.1");
        // Untrusted and without a host: an inbound X-Forwarded-Host goes.
        let mut h3 = h.clone();
        h3.insert(&X_FORWARDED_HOST, HeaderValue::from_static("evil.com"));
        forwarded(&h3.clone(), &untrusted, None, &trusted, rid).apply(&mut h3);
        assert!(!h3.contains_key(&X_FORWARDED_HOST));
    }

    #[test]
    fn hop_by_hop_and_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        let mut ws = HeaderMap::new();
        ws.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        ws.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&ws).unwrap(), "websocket");
        ws.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(upgrade_protocol(&ws).is_none());
    }
}
