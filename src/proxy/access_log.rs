//! The access log in ingress-nginx's format: one line per request, rendered from the Config's
//! `log-format-upstream` into one buffer when the response body ends (so with the bytes sent).

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, Uri, Version};

use super::headers::{Peer, client_ip};
use super::live::Live;
use super::vars::{basic_user, civil, protocol, time_iso8601};
use crate::config::access_log::{Escape, LogFormat, Part, Var};
use crate::config::{Backend, Route};

/// Where lines go: the process's non-blocking stdout writer, one message per line (so a line
/// never interleaves with another), written by its own thread, off the request path.
#[derive(Clone)]
pub struct Sink(tracing_appender::non_blocking::NonBlocking);

impl Sink {
    pub fn new(writer: tracing_appender::non_blocking::NonBlocking) -> Sink {
        Sink(writer)
    }
}

/// A request's line in the making: what its head said.
pub struct Started {
    sink: Sink,
    entry: Entry,
}

/// A request's line with its answer, written when dropped (its response body done, or the
/// client gone).
pub struct Pending {
    sink: Sink,
    entry: Entry,
}

/// Everything a line can name, owned.
struct Entry {
    format: Arc<LogFormat>,
    /// When the line is written (the request's end).
    now: SystemTime,
    start: Instant,
    client: IpAddr,
    tls: bool,
    user: Option<String>,
    method: Method,
    uri: Uri,
    version: Version,
    /// The values of the format's `$http_*` variables, in their order.
    headers: Vec<Option<HeaderValue>>,
    /// The values of its other request variables ([`Var::Shared`]), in their order.
    request_vars: Vec<Vec<u8>>,
    request_length: u64,
    rid: HeaderValue,
    host: String,
    route: Option<Arc<Route>>,
    port: String,
    /// The primary's route and Service port when a canary took the request.
    primary: Option<(Arc<Route>, String)>,
    status: u16,
    upstream: Option<SocketAddr>,
    upstream_time: Option<Duration>,
    /// Whether the body is the upstream's, as it came (so its length is the upstream's).
    upstream_body: bool,
    head_bytes: u64,
    body_bytes: u64,
    elapsed: Duration,
}

/// The access log's first step: with a sink (`--access-log-format nginx`), what the request
/// head tells the line. One `Option` test when the log is off or in JSON. Boxed: it is held
/// across the request's exchange, and inline it would make every request's future larger.
#[inline(always)]
pub fn begin<B>(
    sink: Option<&Sink>,
    live: &Live,
    req: &Request<B>,
    peer: &Peer,
    rid: &HeaderValue,
    start: Instant,
) -> Option<Box<Started>> {
    sink.map(|s| capture(s, live, req, peer, rid, start))
}

#[inline(never)]
fn capture<B>(
    sink: &Sink,
    live: &Live,
    req: &Request<B>,
    peer: &Peer,
    rid: &HeaderValue,
    start: Instant,
) -> Box<Started> {
    let plane = live.load();
    let global = &plane.config.global;
    let format = global.log_format.clone();
    let h = req.headers();
    let headers = format
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Var(Var::Http(name)) => Some(h.get(name.as_str()).cloned()),
            _ => None,
        })
        .collect();
    let wants_user = format.parts.contains(&Part::Var(Var::RemoteUser));
    let mut request_vars = Vec::new();
    if format.parts.iter().any(|p| matches!(p, Part::Var(Var::Shared(_)))) {
        let fields = super::headers::Fields::of(h);
        let ctx = super::vars::Ctx::of(req, &fields, peer, &global.trusted).rid(rid);
        for p in &format.parts {
            if let Part::Var(Var::Shared(v)) = p {
                let mut out = Vec::new();
                super::vars::value(v, &ctx, &mut out);
                request_vars.push(out);
            }
        }
    }
    let uri_len = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    // Request line and head as sent (HTTP/1 framing), then the body's declared length.
    let head = (req.method().as_str().len() + 1 + uri_len + 1 + 8 + 2) as u64
        + h.iter()
            .map(|(n, v)| (n.as_str().len() + 2 + v.len() + 2) as u64)
            .sum::<u64>()
        + 2;
    let body = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    Box::new(Started {
        sink: sink.clone(),
        entry: Entry {
            now: UNIX_EPOCH,
            start,
            client: client_ip(h, peer.addr, &global.trusted),
            tls: peer.tls,
            user: if wants_user {
                basic_user(h.get(header::AUTHORIZATION))
            } else {
                None
            },
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers,
            request_vars,
            request_length: head.saturating_add(body),
            rid: rid.clone(),
            host: String::new(),
            route: None,
            port: String::new(),
            primary: None,
            status: 0,
            upstream: None,
            upstream_time: None,
            upstream_body: false,
            head_bytes: 0,
            body_bytes: 0,
            elapsed: Duration::ZERO,
            format,
        },
    })
}

/// What the answer tells the line.
pub struct Answer<'a> {
    pub host: String,
    pub routed: Option<(&'a Arc<Route>, &'a Backend)>,
    /// The primary's route and backend when its canary took the request.
    pub primary: Option<(&'a Arc<Route>, &'a Backend)>,
    pub upstream: Option<SocketAddr>,
    /// When the upstream's response head arrived.
    pub answered: Option<Instant>,
}

impl Started {
    /// Records the answer; the line is written when `resp`'s body is done.
    pub fn answered(mut self: Box<Self>, a: Answer<'_>, resp: &Response<super::Body>) -> Box<Pending> {
        let e = &mut self.entry;
        e.host = a.host;
        if let Some((route, backend)) = a.routed {
            e.route = Some(route.clone());
            e.port = backend.port.to_string();
        }
        e.primary = a.primary.map(|(r, b)| (r.clone(), b.port.to_string()));
        e.status = resp.status().as_u16();
        e.upstream = a.upstream;
        e.upstream_time = a.answered.map(|t| t.saturating_duration_since(e.start));
        e.upstream_body = a.answered.is_some() && resp.body().is_upstream();
        e.head_bytes = 17
            + resp
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().len() + 2 + v.len() + 2) as u64)
                .sum::<u64>()
            + 2;
        let Started { sink, entry } = *self;
        Box::new(Pending { sink, entry })
    }
}

impl Pending {
    /// Counts body bytes as they go to the client.
    #[inline]
    pub fn sent(&mut self, n: usize) {
        self.entry.body_bytes = self.entry.body_bytes.saturating_add(n as u64);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let e = &mut self.entry;
        e.elapsed = e.start.elapsed();
        e.now = SystemTime::now();
        let mut line = Vec::with_capacity(384);
        e.render(&mut line);
        line.push(b'\n');
        // Lossy when the writer's queue is full, as every log line.
        let _ = self.sink.0.clone().write_all(&line);
    }
}

/// A variable's value: text to escape, or text known to need no escaping.
enum Value<'a> {
    Missing,
    Text(&'a [u8]),
}

impl Entry {
    fn render(&self, out: &mut Vec<u8>) {
        let mut headers = self.headers.iter();
        let mut request_vars = self.request_vars.iter();
        for part in &self.format.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Var(Var::Shared(_)) => {
                    let v = request_vars.next().filter(|v| !v.is_empty());
                    self.put(out, v.map_or(Value::Missing, |v| Value::Text(v)));
                }
                Part::Var(Var::Http(_)) => {
                    let v = headers.next().and_then(Option::as_ref);
                    self.put(out, v.map_or(Value::Missing, |v| Value::Text(v.as_bytes())));
                }
                Part::Var(v) => self.var(v, out),
            }
        }
    }

    /// Writes one variable: numbers and addresses straight in (nothing in them to escape),
    /// text from the request through [`Entry::put`].
    fn var(&self, v: &Var, out: &mut Vec<u8>) {
        let route = self.route.as_deref();
        let secs = |out: &mut Vec<u8>, d: Duration| {
            let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
        };
        match v {
            Var::RemoteAddr => {
                let _ = write!(out, "{}", self.client);
            }
            Var::RemoteUser => {
                let u = self
                    .user
                    .as_deref()
                    .map_or(Value::Missing, |u| Value::Text(u.as_bytes()));
                self.put(out, u)
            }
            Var::TimeLocal => time_local(out, self.now),
            Var::TimeIso8601 => time_iso8601(out, self.now),
            Var::Msec => {
                let d = self.now.duration_since(UNIX_EPOCH).unwrap_or_default();
                secs(out, d);
            }
            Var::Request => {
                self.put(out, Value::Text(self.method.as_str().as_bytes()));
                out.push(b' ');
                self.put(out, Value::Text(request_uri(&self.uri).as_bytes()));
                out.push(b' ');
                out.extend_from_slice(protocol(self.version).as_bytes());
            }
            Var::Status => {
                let _ = write!(out, "{}", self.status);
            }
            Var::BodyBytesSent => {
                let _ = write!(out, "{}", self.body_bytes);
            }
            Var::BytesSent => {
                let _ = write!(out, "{}", self.body_bytes.saturating_add(self.head_bytes));
            }
            Var::RequestLength => {
                let _ = write!(out, "{}", self.request_length);
            }
            Var::RequestTime => secs(out, self.elapsed),
            // The primary's name even when its canary took the request, as ingress-nginx.
            Var::ProxyUpstreamName => match (&self.primary, route) {
                (Some((p, port)), _) => self.upstream_name(out, p, port),
                (None, Some(r)) => self.upstream_name(out, r, &self.port),
                (None, None) => out.extend_from_slice(b"upstream-default-backend"),
            },
            // The canary's name when it took the request, else empty (ingress-nginx sets it so).
            Var::ProxyAlternativeUpstreamName => {
                if let (Some(_), Some(r)) = (&self.primary, route) {
                    self.upstream_name(out, r, &self.port);
                }
            }
            Var::UpstreamAddr => match self.upstream {
                Some(a) => {
                    let _ = write!(out, "{a}");
                }
                None => self.put(out, Value::Missing),
            },
            Var::UpstreamResponseLength => match self.upstream_time {
                Some(_) if self.upstream_body => {
                    let _ = write!(out, "{}", self.body_bytes);
                }
                _ => self.put(out, Value::Missing),
            },
            Var::UpstreamResponseTime => match self.upstream_time {
                Some(d) => secs(out, d),
                None => self.put(out, Value::Missing),
            },
            Var::UpstreamStatus => match self.upstream_time {
                Some(_) => {
                    let _ = write!(out, "{}", self.status);
                }
                None => self.put(out, Value::Missing),
            },
            Var::ReqId => self.put(out, Value::Text(self.rid.as_bytes())),
            Var::Host | Var::ServerName => self.put(out, Value::Text(self.host.as_bytes())),
            Var::Scheme => out.extend_from_slice(if self.tls { b"https".as_slice() } else { b"http" }),
            Var::RequestMethod => self.put(out, Value::Text(self.method.as_str().as_bytes())),
            Var::RequestUri => self.put(out, Value::Text(request_uri(&self.uri).as_bytes())),
            Var::Uri => self.put(out, Value::Text(self.uri.path().as_bytes())),
            Var::Args => self.put(out, Value::Text(self.uri.query().unwrap_or("").as_bytes())),
            Var::ServerProtocol => out.extend_from_slice(protocol(self.version).as_bytes()),
            Var::Namespace => self.name(out, route.map(|r| r.ingress.namespace.as_str())),
            Var::IngressName => self.name(out, route.map(|r| r.ingress.name.as_str())),
            Var::ServiceName => self.name(out, route.map(|r| r.service.name.as_str())),
            Var::ServicePort => self.name(out, route.map(|_| self.port.as_str())),
            Var::Http(_) | Var::Shared(_) => self.put(out, Value::Missing),
            // `-` under every escaping, as the Warning about it says.
            Var::Unknown => out.push(b'-'),
        }
    }

    /// `namespace-service-port`, ingress-nginx's name of a backend.
    fn upstream_name(&self, out: &mut Vec<u8>, r: &Route, port: &str) {
        self.put(out, Value::Text(r.service.namespace.as_bytes()));
        out.push(b'-');
        self.put(out, Value::Text(r.service.name.as_bytes()));
        out.push(b'-');
        self.put(out, Value::Text(port.as_bytes()));
    }

    fn name(&self, out: &mut Vec<u8>, v: Option<&str>) {
        self.put(out, v.map_or(Value::Missing, |v| Value::Text(v.as_bytes())));
    }

    /// A value as nginx writes it under the format's escaping: a missing one is `-` (empty
    /// with JSON escaping).
    fn put(&self, out: &mut Vec<u8>, v: Value<'_>) {
        let Value::Text(t) = v else {
            if self.format.escape != Escape::Json {
                out.push(b'-');
            }
            return;
        };
        escape(self.format.escape, t, out);
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// nginx's escapings of a variable's value.
fn escape(how: Escape, t: &[u8], out: &mut Vec<u8>) {
    match how {
        Escape::None => out.extend_from_slice(t),
        Escape::Default => {
            for &b in t {
                if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
                    out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
                } else {
                    out.push(b);
                }
            }
        }
        Escape::Json => {
            for &b in t {
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    0x08 => out.extend_from_slice(b"\\b"),
                    0x0c => out.extend_from_slice(b"\\f"),
                    0..0x20 => out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 15)],
                    ]),
                    _ => out.push(b),
                }
            }
        }
    }
}

fn request_uri(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `$time_local` (Portico logs in UTC): `07/Dec/2026:06:14:37 +0000`.
fn time_local(out: &mut Vec<u8>, t: SystemTime) {
    let (y, m, d, s, _) = civil(t);
    let month = MONTHS[(m as usize - 1) % 12];
    let _ = write!(
        out,
        "{d:02}/{month}/{y}:{:02}:{:02}:{:02} +0000",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(format: LogFormat, headers: Vec<Option<HeaderValue>>) -> Entry {
        Entry {
            format: Arc::new(format),
            // 2026-12-07T06:14:37.250Z
            now: UNIX_EPOCH + Duration::from_millis(1_796_624_077_250),
            start: Instant::now(),
            client: "192.0.2.7".parse().unwrap(),
            tls: false,
            user: None,
            method: Method::GET,
            uri: "/a?b=1".parse().unwrap(),
            version: Version::HTTP_11,
            headers,
            request_vars: Vec::new(),
            request_length: 80,
            rid: HeaderValue::from_static("abc"),
            host: "x.example".into(),
            route: None,
            port: String::new(),
            primary: None,
            status: 404,
            upstream: None,
            upstream_time: None,
            upstream_body: false,
            head_bytes: 10,
            body_bytes: 7,
            elapsed: Duration::from_millis(1500),
        }
    }

    fn line(e: &Entry) -> String {
        let mut out = Vec::new();
        e.render(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_default_format_without_upstream() {
        let e = entry(
            LogFormat::default(),
            vec![None, Some(HeaderValue::from_static("curl/8"))],
        );
        assert_eq!(
            line(&e),
            "192.0.2.7 - - [07/Dec/2026:06:14:37 +0000] \"GET /a?b=1 HTTP/1.1\" 404 7 \"-\" \"curl/8\" 80 1.500 [upstream-default-backend] [] - - - - abc"
        );
    }

    #[test]
    fn escapes_as_nginx_does() {
        let mut out = Vec::new();
        escape(Escape::Default, b"a\"b\\c\x01\xe9", &mut out);
        assert_eq!(out, b"a\\x22b\\x5Cc\\x01\\xE9");
        out.clear();
        escape(Escape::Json, b"a\"b\\c\n\x01\xc3\xa9", &mut out);
        assert_eq!(out, "a\\\"b\\\\c\\n\\u0001\u{e9}".as_bytes());
        out.clear();
        escape(Escape::None, b"a\"b", &mut out);
        assert_eq!(out, b"a\"b");
    }

    #[test]
    fn json_escaping_writes_missing_values_empty_and_times() {
        let format = LogFormat {
            parts: vec![
                Part::Text("{\"u\":\"".into()),
                Part::Var(Var::RemoteUser),
                Part::Text("\",\"t\":\"".into()),
                Part::Var(Var::TimeIso8601),
                Part::Text("\",\"m\":".into()),
                Part::Var(Var::Msec),
                Part::Text("}".into()),
            ],
            escape: Escape::Json,
        };
        let e = entry(format, vec![]);
        assert_eq!(
            line(&e),
            "{\"u\":\"\",\"t\":\"2026-12-07T06:14:37+00:00\",\"m\":1796624077.250}"
        );
    }

    #[test]
    fn basic_user_is_the_name_before_the_colon() {
        let v = HeaderValue::from_static("Basic dXNlcjpwYXNz");
        assert_eq!(basic_user(Some(&v)).as_deref(), Some("user"));
        assert_eq!(basic_user(Some(&HeaderValue::from_static("Bearer x"))), None);
        assert_eq!(basic_user(None), None);
    }

    #[test]
    fn civil_dates() {
        let (y, m, d, s, _) = civil(UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        assert_eq!((y, m, d, s), (2000, 2, 29, 0));
    }
}
