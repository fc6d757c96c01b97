//! The span exporter: sampled spans go into a bounded queue (full: dropped and counted; a
//! request never waits), and a background task sends them in batches, by size and delay, to
//! the OTLP/HTTP collector of the live Config as protobuf `ExportTraceServiceRequest`s.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::live::Live;
use super::policy::otel::Span;
use crate::config::Route;
use crate::config::otel::{Collector, NamePart, Otel};
use crate::metrics::Metrics;

/// How long one export may take (OTLP exporters' default), connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Export failures are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A finished span with what its attributes are made of.
#[derive(Debug)]
pub struct Record {
    pub span: Box<Span>,
    pub route: Arc<Route>,
    /// The Service port the route names.
    pub service_port: String,
    pub tls: bool,
    pub client: IpAddr,
}

/// The request path's end of the queue.
pub struct Exporter {
    tx: mpsc::UnboundedSender<Record>,
    /// Spans queued or being exported: the bound the unbounded channel lacks.
    queued: Arc<AtomicUsize>,
    dropped: Counter,
}

impl Exporter {
    /// The exporter of `live`'s collector, its task spawned (it ends with the last sender).
    pub fn new(live: Arc<Live>, metrics: &Metrics) -> Exporter {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let outcome = |o| {
            metrics
                .otel_spans
                .get_or_create(&crate::metrics::OutcomeLabels { outcome: o })
                .clone()
        };
        let task = Task {
            rx,
            live,
            queued: queued.clone(),
            exported: outcome("exported"),
            dropped: outcome("dropped"),
        };
        tokio::spawn(task.run());
        Exporter {
            tx,
            queued,
            dropped: outcome("dropped"),
        }
    }

    /// Queues a finished span for its collector, unless `max_queue` are waiting already
    /// (then it is dropped and counted).
    pub fn record(&self, otel: &Otel, record: Record) {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= otel.max_queue {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped.inc();
            return;
        }
        if self.tx.send(record).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped.inc();
        }
    }
}

struct Task {
    rx: mpsc::UnboundedReceiver<Record>,
    live: Arc<Live>,
    queued: Arc<AtomicUsize>,
    exported: Counter,
    dropped: Counter,
}

impl Task {
    async fn run(mut self) {
        let mut batch = Vec::new();
        let mut warned: Option<Instant> = None;
        while let Some(first) = self.rx.recv().await {
            batch.push(first);
            // The settings of the Config live when the batch began.
            let otel = self.live.config().global.otel.clone();
            let deadline = tokio::time::Instant::now() + otel.delay;
            while batch.len() < otel.max_batch {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(r)) => batch.push(r),
                    Ok(None) | Err(_) => break,
                }
            }
            let n = batch.len();
            let result = match &otel.collector {
                Some(c) => {
                    let body = encode(&otel, &batch);
                    match tokio::time::timeout(EXPORT_TIMEOUT, post(c, body)).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("no answer within {EXPORT_TIMEOUT:?}")),
                    }
                }
                None => Err("no collector is set any more".to_string()),
            };
            batch.clear();
            self.queued.fetch_sub(n, Ordering::Relaxed);
            match result {
                Ok(()) => {
                    self.exported.inc_by(n as u64);
                    warned = None;
                }
                Err(e) => {
                    self.dropped.inc_by(n as u64);
                    if warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
                        warned = Some(Instant::now());
                        let to = otel
                            .collector
                            .as_ref()
                            .map(|c| format!("{}:{}{}", c.host, c.port, c.path));
                        tracing::warn!(spans = n, collector = to.unwrap_or_default(), error = %e, "OTLP export failed; spans dropped");
                    }
                }
            }
        }
    }
}

/// POSTs one export request; `Err` says why it was not accepted.
async fn post(c: &Collector, body: Vec<u8>) -> Result<(), String> {
    let addr = tokio::net::lookup_host((c.host.as_str(), c.port))
        .await
        .map_err(|e| format!("resolving {}: {e}", c.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", c.host))?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let authority = match c.host.contains(':') {
        true => format!("[{}]:{}", c.host, c.port),
        false => format!("{}:{}", c.host, c.port),
    };
    let req = Request::post(c.path.as_str())
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    match resp.status() {
        s if s.is_success() => Ok(()),
        s => Err(format!("the collector answered {s}")),
    }
}

/// Protobuf wire format, the few encodings OTLP's trace messages need.
mod pb {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
        varint(out, (u64::from(field) << 3) | u64::from(wire));
    }

    pub fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        key(out, field, 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    pub fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
        key(out, field, 0);
        varint(out, v);
    }

    pub fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
        key(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }

    pub fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
        key(out, field, 5);
        out.extend_from_slice(&v.to_le_bytes());
    }

    /// A nested message, written by `body`.
    pub fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
        let mut inner = Vec::new();
        body(&mut inner);
        bytes(out, field, &inner);
    }
}

/// An attribute value (OTLP `AnyValue`).
enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
}

/// A `KeyValue` as field `field` of the message being written.
fn attribute(out: &mut Vec<u8>, field: u32, key: &str, value: Value<'_>) {
    pb::message(out, field, |kv| {
        pb::bytes(kv, 1, key.as_bytes());
        pb::message(kv, 2, |v| match value {
            Value::Str(s) => pb::bytes(v, 1, s.as_bytes()),
            Value::Int(i) => pb::uint(v, 3, i as u64),
            Value::Double(d) => pb::fixed64(v, 4, d.to_bits()),
        });
    });
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One `ExportTraceServiceRequest`: one resource (`service.name`), one scope, the spans.
pub fn encode(otel: &Otel, batch: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + batch.len() * 512);
    pb::message(&mut out, 1, |rs| {
        pb::message(rs, 1, |res| {
            attribute(res, 1, "service.name", Value::Str(&otel.service_name));
            attribute(res, 1, "telemetry.sdk.name", Value::Str("portico"));
            attribute(res, 1, "telemetry.sdk.language", Value::Str("rust"));
        });
        pb::message(rs, 2, |ss| {
            pb::message(ss, 1, |scope| {
                pb::bytes(scope, 1, b"portico");
                pb::bytes(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for r in batch {
                pb::message(ss, 2, |s| span(s, otel, r));
            }
        });
    });
    out
}

/// The span's name: the Ingress's `opentelemetry-operation-name`, else the ConfigMap's,
/// else `METHOD path` with the Ingress path that matched.
fn name(otel: &Otel, r: &Record) -> String {
    let route_path = r.route.path.as_ref().map_or("/", |p| p.path.as_str());
    if let Some(n) = r.route.policy.otel.as_ref().and_then(|o| o.operation_name.as_deref()) {
        return n.to_string();
    }
    let Some(template) = &otel.operation_name else {
        return format!("{} {route_path}", r.span.method);
    };
    let uri = r.span.target.split('?').next().unwrap_or("/");
    let mut s = String::new();
    for part in &template.0 {
        s.push_str(match part {
            NamePart::Text(t) => t.as_str(),
            NamePart::RequestMethod => r.span.method.as_str(),
            NamePart::Uri => uri,
            NamePart::Host => r.span.host.as_str(),
            NamePart::Scheme => scheme(r),
            NamePart::Namespace => &r.route.ingress.namespace,
            NamePart::IngressName => &r.route.ingress.name,
            NamePart::ServiceName => &r.route.service.name,
            NamePart::ServicePort => &r.service_port,
            NamePart::LocationPath => route_path,
        });
    }
    s
}

fn scheme(r: &Record) -> &'static str {
    if r.tls { "https" } else { "http" }
}

fn span(s: &mut Vec<u8>, otel: &Otel, r: &Record) {
    let sp = &r.span;
    pb::bytes(s, 1, &sp.trace_id);
    pb::bytes(s, 2, &sp.span_id);
    if let Some(state) = sp.trace_state.as_ref() {
        pb::bytes(s, 3, state.as_bytes());
    }
    if let Some(p) = &sp.parent {
        pb::bytes(s, 4, p);
    }
    pb::bytes(s, 5, name(otel, r).as_bytes());
    // SPAN_KIND_SERVER.
    pb::uint(s, 6, 2);
    let end = sp.end.as_ref();
    pb::fixed64(s, 7, unix_nanos(sp.start));
    pb::fixed64(s, 8, unix_nanos(end.map_or(sp.start, |e| e.at)));
    let (path, query) = sp.target.split_once('?').unwrap_or((&sp.target, ""));
    let a = |s: &mut Vec<u8>, k: &str, v: Value<'_>| attribute(s, 9, k, v);
    a(s, "http.request.method", Value::Str(sp.method.as_str()));
    a(s, "url.scheme", Value::Str(scheme(r)));
    a(s, "url.path", Value::Str(path));
    if !query.is_empty() {
        a(s, "url.query", Value::Str(query));
    }
    a(
        s,
        "http.route",
        Value::Str(r.route.path.as_ref().map_or("/", |p| p.path.as_str())),
    );
    let host = sp.host.as_str();
    let server = host
        .rsplit_once(':')
        .filter(|(h, _)| !h.contains(']') || h.ends_with(']'));
    a(s, "server.address", Value::Str(server.map_or(host, |(h, _)| h)));
    a(s, "client.address", Value::Str(&r.client.to_string()));
    let version = match sp.version {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        _ => "1.1",
    };
    a(s, "network.protocol.version", Value::Str(version));
    if let Some(ua) = &sp.user_agent {
        a(s, "user_agent.original", Value::Str(ua));
    }
    a(s, "k8s.namespace.name", Value::Str(&r.route.ingress.namespace));
    a(s, "portico.route", Value::Str(&r.route.ingress.to_string()));
    a(s, "portico.ingress", Value::Str(&r.route.ingress.name));
    a(s, "portico.service", Value::Str(&r.route.service.name));
    a(s, "portico.service.port", Value::Str(&r.service_port));
    if let Some(e) = end {
        a(s, "http.response.status_code", Value::Int(i64::from(e.status)));
        if let Some(up) = e.upstream {
            a(s, "portico.upstream.address", Value::Str(&up.to_string()));
        }
        if let Some(d) = e.upstream_answered {
            a(s, "portico.upstream.response_time", Value::Double(d.as_secs_f64()));
        }
        // A server span is an error on 5xx only (4xx is the client's).
        if e.status >= 500 {
            pb::message(s, 15, |st| pb::uint(st, 3, 2));
        }
    }
    // The sampled flag, and that whether the parent is remote is known (it is, when set).
    let remote = if sp.parent.is_some() { 0x300 } else { 0x100 };
    pb::fixed32(s, 16, 0x01 | remote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields() {
        let mut v = Vec::new();
        pb::varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut v = Vec::new();
        pb::uint(&mut v, 6, 2);
        pb::fixed32(&mut v, 16, 1);
        assert_eq!(v, [0x30, 0x02, 0x85, 0x01, 1, 0, 0, 0]);
        let mut v = Vec::new();
        pb::message(&mut v, 1, |m| pb::bytes(m, 1, b"ab"));
        assert_eq!(v, [0x0a, 4, 0x0a, 2, b'a', b'b']);
    }
}
