//! The values of nginx variables for one request: evaluates a compiled
//! [`Template`](crate::config::vars::Template) against the request head, its connection and
//! its route. Each value is computed only when a template names it.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::config::backend::PortRef;
use crate::config::headers::{Header, HeaderList};
use crate::config::route::HostPattern;
use crate::config::vars::{Part, Template, Var};
use crate::config::{Route, Trusted};
use crate::proxy::headers::{Fields, Peer, client_ip, request_authority, request_host};
use crate::proxy::mtls::Outcome;

/// The longest expansion: past it the value is not used (the header not set, the rewrite
/// not made).
pub const MAX_OUT: usize = 16 * 1024;

/// What a template's variables are read from: a request's [`Head`] and its header map.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub head: Head<'a>,
    pub headers: &'a HeaderMap,
}

/// A request's variables but its header map (which the upstream request step changes: there
/// [`Head::ctx`] reads the map as it is at that point).
#[derive(Clone, Copy)]
pub struct Head<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub fields: &'a Fields,
    pub peer: &'a Peer,
    pub trusted: &'a Trusted,
    /// The request id sent upstream (X-Request-ID).
    pub rid: Option<&'a HeaderValue>,
    pub route: Option<&'a Route>,
    /// The Service port the route's backend names (`$service_port`).
    pub service_port: Option<&'a PortRef>,
    /// The path as routed, when normalizing changed it (`$uri`, the route regex's captures).
    pub normalized: Option<&'a str>,
}

impl<'a> std::ops::Deref for Ctx<'a> {
    type Target = Head<'a>;

    fn deref(&self) -> &Head<'a> {
        &self.head
    }
}

impl<'a> Head<'a> {
    /// A request's head before routing tells more.
    pub fn new(
        method: &'a Method,
        uri: &'a Uri,
        version: Version,
        fields: &'a Fields,
        peer: &'a Peer,
        trusted: &'a Trusted,
    ) -> Head<'a> {
        Head {
            method,
            uri,
            version,
            fields,
            peer,
            trusted,
            rid: None,
            route: None,
            service_port: None,
            normalized: None,
        }
    }

    pub fn ctx<'b>(&self, headers: &'b HeaderMap) -> Ctx<'b>
    where
        'a: 'b,
    {
        Ctx { head: *self, headers }
    }
}

impl<'a> Ctx<'a> {
    /// The variables of a request before it has a route.
    pub fn of<B>(req: &'a Request<B>, fields: &'a Fields, peer: &'a Peer, trusted: &'a Trusted) -> Ctx<'a> {
        Head::new(req.method(), req.uri(), req.version(), fields, peer, trusted).ctx(req.headers())
    }

    pub fn route(mut self, route: &'a Route, normalized: Option<&'a str>) -> Ctx<'a> {
        self.head.route = Some(route);
        self.head.normalized = normalized;
        self
    }

    pub fn rid(mut self, rid: &'a HeaderValue) -> Ctx<'a> {
        self.head.rid = Some(rid);
        self
    }
}

/// A request head kept for the response phase (response headers and rewrites with
/// variables), when the request itself has gone upstream. Only routes that need it pay.
pub struct Held {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    fields: Fields,
    trusted: Trusted,
    rid: HeaderValue,
}

impl Held {
    pub fn of<B>(req: &Request<B>, trusted: &Trusted, rid: &HeaderValue) -> Box<Held> {
        let headers = req.headers().clone();
        Box::new(Held {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            fields: Fields::of(&headers),
            headers,
            trusted: trusted.clone(),
            rid: rid.clone(),
        })
    }

    pub fn ctx<'a>(&'a self, peer: &'a Peer) -> Ctx<'a> {
        Head::new(&self.method, &self.uri, self.version, &self.fields, peer, &self.trusted)
            .ctx(&self.headers)
            .rid(&self.rid)
    }
}

/// `t` expanded into `out`; `caps`: the captures of the regex the template goes with (else
/// `$1`.. are the route path regex's). `false` past [`MAX_OUT`].
pub fn expand(t: &Template, ctx: &Ctx<'_>, caps: Option<&regex::Captures<'_>>, out: &mut Vec<u8>) -> bool {
    let mut route_caps = None;
    for p in t.parts() {
        match p {
            Part::Text(s) => out.extend_from_slice(s.as_bytes()),
            Part::Var(v) => value(v, ctx, out),
            Part::Capture(i) => {
                let caps = match caps {
                    Some(c) => Some(c),
                    None => route_caps.get_or_insert_with(|| route_captures(ctx)).as_ref(),
                };
                if let Some(m) = caps.and_then(|c| c.get(*i)) {
                    out.extend_from_slice(m.as_str().as_bytes());
                }
            }
        }
        if out.len() > MAX_OUT {
            return false;
        }
    }
    true
}

fn route_captures<'a>(ctx: &Ctx<'a>) -> Option<regex::Captures<'a>> {
    let re = ctx.route?.path.as_ref()?.regex.as_ref()?;
    re.0.captures(ctx.normalized.unwrap_or(ctx.uri.path()))
}

/// `t` as text (bytes outside UTF-8 replaced); `None` past [`MAX_OUT`].
pub fn string(t: &Template, ctx: &Ctx<'_>, caps: Option<&regex::Captures<'_>>) -> Option<String> {
    if let Some(l) = t.literal() {
        return Some(l.to_string());
    }
    let mut out = Vec::new();
    expand(t, ctx, caps, &mut out).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// `t` as a header value; `None` when the expansion is empty (nginx sends no field with an
/// empty value), too long, or holds CR, LF, NUL or another control character: the header is
/// then not set (never split).
pub fn header_value(t: &Template, ctx: &Ctx<'_>) -> Option<HeaderValue> {
    let mut out = Vec::new();
    if !expand(t, ctx, None, &mut out) {
        return None;
    }
    let trimmed = out.trim_ascii();
    if trimmed.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(trimmed).ok()
}

/// Sets each header of `list` whose value is ready or expands (with `ctx`) to a valid
/// field value, in order, replacing what was there; another is left out.
pub fn set_headers(list: &HeaderList, ctx: Option<&Ctx<'_>>, headers: &mut HeaderMap) {
    for h in &list.0 {
        if let Some(v) = list_value(h, ctx) {
            headers.insert(h.name.clone(), v);
        }
    }
}

/// The values of `list`'s headers (see [`set_headers`]), for the map `ctx` reads from.
pub fn header_values<'l>(list: &'l HeaderList, ctx: &Ctx<'_>) -> Vec<(&'l HeaderName, HeaderValue)> {
    list.0
        .iter()
        .filter_map(|h| Some((&h.name, list_value(h, Some(ctx))?)))
        .collect()
}

fn list_value(h: &Header, ctx: Option<&Ctx<'_>>) -> Option<HeaderValue> {
    let value = match (&h.literal, ctx) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(ctx)) => header_value(&h.value, ctx),
        (None, None) => None,
    };
    if value.is_none() {
        tracing::debug!(header = %h.name, "header not set: its value is not a valid field value");
    }
    value
}

pub fn insert_headers(values: Vec<(&HeaderName, HeaderValue)>, headers: &mut HeaderMap) {
    for (name, v) in values {
        headers.insert(name.clone(), v);
    }
}

/// The value of one variable, appended to `out`.
pub fn value(v: &Var, ctx: &Ctx<'_>, out: &mut Vec<u8>) {
    let text = |out: &mut Vec<u8>, s: &str| out.extend_from_slice(s.as_bytes());
    let host = || {
        let h = request_host(ctx.uri, ctx.fields).unwrap_or("");
        h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
    };
    let scheme = if ctx.peer.tls { "https" } else { "http" };
    let request_uri = ctx.uri.path_and_query().map_or("/", |p| p.as_str());
    let client = || client_ip(ctx.headers, ctx.peer.addr, ctx.trusted);
    match v {
        Var::Host => text(out, &host()),
        Var::HttpHost | Var::BestHttpHost => match request_authority(ctx.uri, ctx.fields) {
            Some(a) => out.extend_from_slice(a.as_bytes()),
            None => text(out, &host()),
        },
        Var::Scheme => text(out, scheme),
        Var::PassAccessScheme => {
            let trusted = ctx.trusted.iter().any(|c| c.contains(ctx.peer.addr));
            match ctx.headers.get("x-forwarded-proto").filter(|_| trusted) {
                Some(p) => out.extend_from_slice(p.as_bytes()),
                None => text(out, scheme),
            }
        }
        Var::RequestUri => text(out, request_uri),
        Var::EscapedRequestUri => escape(request_uri, out),
        Var::Uri => text(out, ctx.normalized.unwrap_or(ctx.uri.path())),
        Var::Args => text(out, ctx.uri.query().unwrap_or("")),
        Var::IsArgs => text(out, if ctx.uri.query().is_some() { "?" } else { "" }),
        Var::Arg(name) => {
            if let Some(a) = ctx.uri.query().and_then(|q| arg(q, name)) {
                text(out, a)
            }
        }
        Var::Http(name) => {
            for (n, v) in ctx.headers.get_all(name.as_str()).iter().enumerate() {
                if n > 0 {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(v.as_bytes());
            }
        }
        Var::Cookie(name) => {
            if let Some(c) = cookie(ctx.headers, name) {
                out.extend_from_slice(c)
            }
        }
        Var::RemoteAddr => {
            let _ = write!(out, "{}", client());
        }
        Var::BinaryRemoteAddr => match client() {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        },
        Var::RemotePort => {
            if ctx.peer.remote_port != 0 {
                let _ = write!(out, "{}", ctx.peer.remote_port);
            }
        }
        Var::ServerAddr => {
            if let Some(a) = ctx.peer.server_addr {
                let _ = write!(out, "{a}");
            }
        }
        Var::ServerPort => {
            let _ = write!(out, "{}", ctx.peer.local_port);
        }
        Var::ServerName => match ctx.route.map(|r| &r.host) {
            Some(HostPattern::Exact(h)) => text(out, h),
            _ => text(out, &host()),
        },
        Var::RequestMethod => text(out, ctx.method.as_str()),
        Var::RequestId => {
            if let Some(r) = ctx.rid.or(ctx.fields.request_id.as_ref()) {
                out.extend_from_slice(r.as_bytes())
            }
        }
        Var::ServerProtocol => text(out, protocol(ctx.version)),
        Var::SslClientSDn | Var::SslClientIDn => {
            let presented = match ctx.peer.client_tls.get().map(|c| &c.outcome) {
                Some(Outcome::Success(p)) | Some(Outcome::Failed(_, Some(p))) => Some(p),
                _ => None,
            };
            if let Some(p) = presented {
                let v = if *v == Var::SslClientSDn { &p.subject } else { &p.issuer };
                out.extend_from_slice(v.as_bytes());
            }
        }
        Var::SslClientVerify => match ctx.peer.client_tls.get().map(|c| &c.outcome) {
            Some(Outcome::Success(_)) => text(out, "SUCCESS"),
            Some(Outcome::Failed(f, _)) => {
                text(out, "FAILED:");
                text(out, f.reason);
            }
            _ => text(out, "NONE"),
        },
        Var::SslServerName => {
            if let Some(name) = ctx.peer.sni.get() {
                text(out, name)
            }
        }
        Var::Namespace => text(out, ctx.route.map_or("", |r| r.ingress.namespace.as_str())),
        Var::IngressName => text(out, ctx.route.map_or("", |r| r.ingress.name.as_str())),
        Var::ServiceName => text(out, ctx.route.map_or("", |r| r.service.name.as_str())),
        Var::ServicePort => {
            if let Some(p) = ctx.service_port {
                let _ = write!(out, "{p}");
            }
        }
        Var::LocationPath => text(
            out,
            ctx.route.and_then(|r| r.path.as_ref()).map_or("/", |p| p.path.as_str()),
        ),
        Var::ProxyAddXForwardedFor => {
            let mut first = true;
            for v in ctx.headers.get_all("x-forwarded-for") {
                if !first {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(v.as_bytes());
                first = false;
            }
            if !first {
                out.extend_from_slice(b", ");
            }
            let _ = write!(out, "{}", client());
        }
        Var::Hostname => text(out, hostname()),
        Var::TimeIso8601 => time_iso8601(out, SystemTime::now()),
        Var::Msec => {
            let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
        }
        Var::RemoteUser => {
            if let Some(u) = basic_user(ctx.headers.get(header::AUTHORIZATION)) {
                text(out, &u)
            }
        }
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters (nginx `set_escape_uri`).
pub fn escape(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// The first value of query argument `name` (compared without regard to case, as nginx
/// does), as sent.
pub fn arg<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// The value of the first cookie `name` (compared in any case, as nginx does), as sent:
/// nginx's `$cookie_NAME` (quotes kept, no length cap, unlike the affinity cookie's reader).
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get_all(header::COOKIE).iter().find_map(|v| {
        v.as_bytes().split(|b| *b == b';').find_map(|pair| {
            let pair = pair.trim_ascii_start();
            let (n, value) = pair.split_at_checked(name.len())?;
            (n.eq_ignore_ascii_case(name.as_bytes())).then_some(())?;
            value.strip_prefix(b"=")
        })
    })
}

/// The user name of a Basic Authorization field, as nginx's `$remote_user`.
pub fn basic_user(v: Option<&HeaderValue>) -> Option<String> {
    let v = v?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let user = raw.split(|b| *b == b':').next()?;
    Some(String::from_utf8_lossy(user).into_owned())
}

pub fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The machine's name, read once.
fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "localhost".into())
    })
}

/// Date and time of day (UTC) of a moment: (year, month, day, second of the day, ms).
pub fn civil(t: SystemTime) -> (i64, u32, u32, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's days-from-civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs % 86_400, d.subsec_millis())
}

/// nginx's `$time_iso8601`, in UTC.
pub fn time_iso8601(out: &mut Vec<u8>, t: SystemTime) {
    let (y, m, d, s, _) = civil(t);
    let _ = write!(
        out,
        "{y}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vars::Captures;

    fn expand_str(t: &str, req: &Request<()>, peer: &Peer, trusted: &Trusted) -> String {
        let t = Template::parse(t, Captures::default()).unwrap();
        let fields = Fields::of(req.headers());
        let ctx = Ctx::of(req, &fields, peer, trusted);
        string(&t, &ctx, None).unwrap()
    }

    fn req() -> Request<()> {
        Request::builder()
            .method("POST")
            .uri("/a/b%20c?page=2&Lang=de")
            .header("host", "Shop.Example:8080")
            .header("x-user", "u1")
            .header("x-user", "u2")
            .header("cookie", "a=1; sid=s42")
            .header("x-forwarded-for", "203.0.113.9")
            .header("authorization", "Basic YWxpY2U6c2VjcmV0")
            .body(())
            .unwrap()
    }

    #[test]
    fn each_variable_reads_its_part_of_the_request() {
        let req = req();
        let peer = Peer::new("127.0.0.1".parse().unwrap(), 8080, false);
        let none = Trusted::default();
        let e = |t: &str| expand_str(t, &req, &peer, &none);
        for (t, want) in [
            (
                "$scheme://$host$request_uri",
                "http://shop.example/a/b%20c?page=2&Lang=de",
            ),
            ("$http_host|$best_http_host", "Shop.Example:8080|Shop.Example:8080"),
            ("$uri$is_args$args", "/a/b%20c?page=2&Lang=de"),
            ("${arg_lang}-$arg_none-$cookie_sid-$http_x_user", "de--s42-u1, u2"),
            ("$cookie_SID|$cookie_a|$cookie_si", "s42|1|"),
            ("$escaped_request_uri", "%2Fa%2Fb%2520c%3Fpage%3D2%26Lang%3Dde"),
            (
                "$remote_addr $server_port $request_method $server_protocol",
                "127.0.0.1 8080 POST HTTP/1.1",
            ),
            ("$proxy_add_x_forwarded_for", "203.0.113.9, 127.0.0.1"),
            ("$remote_user", "alice"),
            ("$ssl_client_verify|$ssl_client_s_dn|$ssl_server_name", "NONE||"),
            ("$namespace$ingress_name$location_path", "/"),
            ("$pass_access_scheme", "http"),
        ] {
            assert_eq!(e(t), want, "{t}");
        }
        assert!(e("$time_iso8601").ends_with("+00:00"));
        assert!(e("$msec").contains('.'));
        assert!(!e("$hostname").is_empty());
        let trusted = Trusted::from(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(expand_str("$remote_addr", &req, &peer, &trusted), "203.0.113.9");
    }

    #[test]
    fn header_values_never_carry_line_breaks() {
        let req = Request::builder()
            .uri("/x?v=a%0D%0Ab")
            .header("host", "h")
            .body(())
            .unwrap();
        let peer = Peer::new("127.0.0.1".parse().unwrap(), 80, false);
        let none = Trusted::default();
        let fields = Fields::of(req.headers());
        let ctx = Ctx::of(&req, &fields, &peer, &none);
        let t = |s: &str| Template::parse(s, Captures::default()).unwrap();
        // Percent-encoded stays encoded: the value is safe.
        assert_eq!(header_value(&t("$arg_v"), &ctx).unwrap(), "a%0D%0Ab");
        // Text with a line break (only possible from a template, never from a request) is refused.
        assert_eq!(header_value(&t("a\r\nX-Evil: 1"), &ctx), None);
        assert_eq!(header_value(&t("a\0b"), &ctx), None);
        let long = Template::parse(&"$request_uri".repeat(100), Captures::default()).unwrap();
        let big = Request::builder()
            .uri(format!("/{}", "x".repeat(1000)))
            .body(())
            .unwrap();
        let fields = Fields::of(big.headers());
        let ctx = Ctx::of(&big, &fields, &peer, &none);
        assert_eq!(header_value(&long, &ctx), None, "past MAX_OUT");
    }
}
