//! `enable-opentelemetry` and its family: a traced request's span context (W3C Trace Context:
//! the client's `traceparent` continued where trusted, else a new trace) set on the upstream
//! request, and what its span records when sampled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request};

use crate::config::otel::{Otel, RouteOtel};
use crate::config::{Policy, PortRef, Route};
use crate::proxy::headers::Peer;
use crate::proxy::otel::{Exporter, Record};

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The most `tracestate` bytes carried on (W3C asks at least 512 be kept; 32 members of
/// 256 bytes each is its own limit).
const MAX_TRACESTATE: usize = 8192;
/// The most bytes of a request's target, Host or User-Agent a span keeps (OpenTelemetry
/// SDKs offer such a limit on attribute values; a span waiting in the queue holds them).
const MAX_TEXT: usize = 1024;

/// A sampled request's span, from the request head to its answer.
#[derive(Debug)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The client's span, when its `traceparent` was continued.
    pub parent: Option<[u8; 8]>,
    /// The client's `tracestate`, carried on with its trace.
    pub trace_state: Option<HeaderValue>,
    pub start: SystemTime,
    pub started: Instant,
    pub method: Method,
    /// The request target as the client sent it (path and query).
    pub target: String,
    /// The Host (or HTTP/2 authority) the client named.
    pub host: String,
    pub user_agent: Option<String>,
    pub version: http::Version,
    /// Filled in when the request is answered (see [`Span::end`]).
    pub end: Option<End>,
}

/// What the answer adds to a span.
#[derive(Debug)]
pub struct End {
    pub status: u16,
    pub at: SystemTime,
    /// The endpoint last tried, and how long after the span's start its answer came.
    pub upstream: Option<SocketAddr>,
    pub upstream_answered: Option<std::time::Duration>,
}

/// Starts the request's span where the route is traced, as soon as the route is known, so
/// that Portico's own answers (redirects, refusals) are traced too: the `traceparent` (and
/// `tracestate`) to send upstream, and the span to record when it is sampled. Other routes
/// pay one test.
#[inline(always)]
pub fn start<B>(
    policy: &Policy,
    otel: &Otel,
    req: &Request<B>,
    started: Instant,
    random: fn() -> u64,
) -> Option<(Propagation, Option<Box<Span>>)> {
    policy
        .otel
        .as_ref()
        .map(|route| begin(route, otel, req, started, random))
}

/// What goes upstream for a traced request: its `traceparent`, and, for a new trace, no
/// `tracestate` of the client's. Applied once the request is past Portico's own answers
/// (which are traced too, but go nowhere).
pub struct Propagation {
    traceparent: HeaderValue,
    new_trace: bool,
}

impl Propagation {
    pub fn apply(self, headers: &mut HeaderMap) {
        if self.new_trace {
            // A new trace: the client's tracestate belongs to a trace that is not continued.
            headers.remove(&TRACESTATE);
        }
        headers.insert(TRACEPARENT.clone(), self.traceparent);
    }
}

#[inline(never)]
fn begin<B>(
    route: &RouteOtel,
    otel: &Otel,
    req: &Request<B>,
    started: Instant,
    random: fn() -> u64,
) -> (Propagation, Option<Box<Span>>) {
    let headers = req.headers();
    let parent = if route.trust_incoming { incoming(headers) } else { None };
    let (trace_id, parent_span, sampled) = match parent {
        Some(p) => {
            let sampled = if otel.parent_based {
                p.sampled
            } else {
                otel.sampler.samples(&p.trace_id)
            };
            (p.trace_id, Some(p.span_id), sampled)
        }
        None => {
            let id = nonzero_id(random);
            (id, None, otel.sampler.samples(&id))
        }
    };
    let span_id = loop {
        let id = random().to_be_bytes();
        if id != [0; 8] {
            break id;
        }
    };
    let propagation = Propagation {
        traceparent: traceparent(&trace_id, &span_id, sampled),
        new_trace: parent_span.is_none(),
    };
    // Nothing to record for a trace not sampled, or with no collector to export to.
    if !sampled || otel.collector.is_none() {
        return (propagation, None);
    }
    let trace_state = parent_span
        .and_then(|_| headers.get(&TRACESTATE))
        .filter(|v| v.len() <= MAX_TRACESTATE)
        .cloned();
    let span = Box::new(Span {
        trace_id,
        span_id,
        parent: parent_span,
        trace_state,
        // The span covers the request from its head on, also the steps before this one.
        start: SystemTime::now()
            .checked_sub(started.elapsed())
            .unwrap_or_else(SystemTime::now),
        started,
        method: req.method().clone(),
        target: clipped(req.uri().path_and_query().map_or("/", |p| p.as_str())),
        host: match req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()) {
            Some(h) => clipped(h),
            None => req.uri().authority().map_or(String::new(), |a| clipped(a.as_str())),
        },
        user_agent: req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(clipped),
        version: req.version(),
        end: None,
    });
    (propagation, Some(span))
}

/// Queues a finished span for export: its answer `status`, the endpoint last tried and when
/// it answered.
#[allow(clippy::too_many_arguments)]
pub fn finish(
    exporter: &Exporter,
    mut span: Box<Span>,
    otel: &Otel,
    route: &Arc<Route>,
    service_port: &PortRef,
    peer: &Peer,
    status: u16,
    upstream: Option<SocketAddr>,
    answered: Option<Instant>,
) {
    span.end(status, upstream, answered);
    let record = Record {
        span,
        route: route.clone(),
        service_port: service_port.to_string(),
        tls: peer.tls,
        client: peer.addr,
    };
    exporter.record(otel, record);
}

impl Span {
    /// Records the answer: its status, the endpoint and when it answered.
    pub fn end(&mut self, status: u16, upstream: Option<SocketAddr>, answered: Option<Instant>) {
        self.end = Some(End {
            status,
            at: SystemTime::now(),
            upstream,
            upstream_answered: answered.map(|a| a.saturating_duration_since(self.started)),
        });
    }
}

/// At most [`MAX_TEXT`] bytes of `s` (cut at a character boundary), so that a queue of spans
/// stays small whatever clients send.
fn clipped(s: &str) -> String {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn nonzero_id(random: fn() -> u64) -> [u8; 16] {
    loop {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&random().to_be_bytes());
        id[8..].copy_from_slice(&random().to_be_bytes());
        if id != [0; 16] {
            return id;
        }
    }
}

/// A valid incoming `traceparent`.
#[derive(Debug, PartialEq, Eq)]
struct Parent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
}

/// The client's `traceparent` when there is exactly one and it is valid (W3C Trace Context:
/// `00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero; a later version is read by its first
/// four fields).
fn incoming(headers: &HeaderMap) -> Option<Parent> {
    let mut all = headers.get_all(&TRACEPARENT).iter();
    let v = all.next()?.as_bytes();
    if all.next().is_some() || v.len() < 55 {
        return None;
    }
    let version = hex::<1>(&v[0..2])?[0];
    if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = hex::<16>(&v[3..35])?;
    let span_id = hex::<8>(&v[36..52])?;
    let flags = hex::<1>(&v[53..55])?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Lower-case hex (W3C allows no capitals) into `N` bytes.
fn hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    if s.len() != 2 * N {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8], sampled: bool) -> HeaderValue {
    let v = format!(
        "00-{}-{}-{}",
        to_hex(trace_id),
        to_hex(span_id),
        if sampled { "01" } else { "00" }
    );
    // Hex digits and dashes only.
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::otel::{Collector, Sampler};

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn counter() -> u64 {
        thread_local!(static N: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
        N.with(|n| {
            n.set(n.get() + 1);
            n.get()
        })
    }

    /// Settings with a collector to export to.
    fn exported() -> Otel {
        Otel {
            collector: Collector::parse("127.0.0.1", 4318),
            ..Otel::default()
        }
    }

    fn traced(trust: bool) -> Policy {
        Policy {
            otel: Some(Arc::new(RouteOtel {
                trust_incoming: trust,
                operation_name: None,
            })),
            ..Policy::default()
        }
    }

    /// `start`, then what goes upstream applied to `req`, as the handler does: the span.
    fn started(policy: &Policy, otel: &Otel, req: &mut Request<()>) -> Option<Box<Span>> {
        let (propagation, span) = start(policy, otel, req, Instant::now(), counter)?;
        propagation.apply(req.headers_mut());
        span
    }

    fn request(fields: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/a?b=c");
        for (k, v) in fields {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn long_client_texts_are_clipped() {
        let long = format!("/{}", "a".repeat(5000));
        let mut req = Request::builder()
            .uri(long.as_str())
            .header("user-agent", "x".repeat(3000))
            .body(())
            .unwrap();
        let span = started(&traced(true), &exported(), &mut req).unwrap();
        assert_eq!(
            (span.target.len(), span.user_agent.unwrap().len()),
            (MAX_TEXT, MAX_TEXT)
        );
        // At a character boundary: 341 three-byte characters.
        assert_eq!(clipped(&"€".repeat(1000)).len(), 1023);
    }

    #[test]
    fn untraced_routes_are_untouched() {
        let mut req = request(&[("traceparent", PARENT)]);
        assert!(started(&Policy::default(), &exported(), &mut req).is_none());
        assert_eq!(req.headers()["traceparent"], PARENT);
    }

    #[test]
    fn a_trusted_parent_is_continued() {
        let mut req = request(&[("traceparent", PARENT), ("tracestate", "congo=t61rcWkgMzE")]);
        let span = started(&traced(true), &exported(), &mut req).unwrap();
        assert_eq!(to_hex(&span.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(span.parent.map(|p| to_hex(&p)).as_deref(), Some("b7ad6b7169203331"));
        assert_eq!(span.target, "/a?b=c");
        let sent = req.headers()["traceparent"].to_str().unwrap();
        assert_eq!(
            sent,
            format!("00-0af7651916cd43dd8448eb211c80319c-{}-01", to_hex(&span.span_id))
        );
        assert_eq!(req.headers()["tracestate"], "congo=t61rcWkgMzE");
        assert_eq!(span.trace_state.as_ref().unwrap(), "congo=t61rcWkgMzE");
    }

    #[test]
    fn an_untrusted_or_invalid_parent_starts_a_new_trace() {
        for (trust, parent) in [
            (false, PARENT),
            (true, "00-00000000000000000000000000000000-b7ad6b7169203331-01"),
            (true, "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"),
            (true, "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"),
            (true, "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            (true, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"),
            (true, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333"),
        ] {
            let mut req = request(&[("traceparent", parent), ("tracestate", "congo=t61rcWkgMzE")]);
            let span = started(&traced(trust), &exported(), &mut req).unwrap();
            assert_ne!(to_hex(&span.trace_id), "0af7651916cd43dd8448eb211c80319c", "{parent}");
            assert_eq!(span.parent, None, "{parent}");
            assert!(req.headers().get("tracestate").is_none(), "{parent}");
            assert!(req.headers()["traceparent"].to_str().unwrap().ends_with("-01"));
        }
        // A later version is read by its first fields.
        let later = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes";
        let mut req = request(&[("traceparent", later)]);
        let span = started(&traced(true), &exported(), &mut req).unwrap();
        assert!(span.parent.is_some());
    }

    #[test]
    fn sampling_follows_the_parent_or_the_sampler() {
        let off = Otel {
            sampler: Sampler::AlwaysOff,
            ..exported()
        };
        // Unsampled: the trace still goes on, flagged so, and nothing is recorded.
        let mut req = request(&[]);
        assert!(started(&traced(true), &off, &mut req).is_none());
        assert!(req.headers()["traceparent"].to_str().unwrap().ends_with("-00"));
        // Without a collector the trace goes on sampled, and nothing is recorded.
        let mut req = request(&[]);
        assert!(started(&traced(true), &Otel::default(), &mut req).is_none());
        assert!(req.headers()["traceparent"].to_str().unwrap().ends_with("-01"));
        // Parent-based: a sampled parent wins over the sampler.
        let mut req = request(&[("traceparent", PARENT)]);
        assert!(started(&traced(true), &off, &mut req).is_some());
        let unsampled = PARENT.replace("-01", "-00");
        let mut req = request(&[("traceparent", &unsampled)]);
        assert!(started(&traced(true), &exported(), &mut req).is_none());
        // Not parent-based: the sampler decides.
        let off = Otel {
            parent_based: false,
            ..off
        };
        let mut req = request(&[("traceparent", PARENT)]);
        assert!(started(&traced(true), &off, &mut req).is_none());
    }
}
