//! OpenTelemetry tracing as plain data: the controller-wide settings (`--otlp-endpoint`, the
//! ConfigMap's `enable-opentelemetry`, `otlp-collector-*`, `otel-*`) and a route's own.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Controller-wide tracing settings, as the ingress-nginx ConfigMap names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Otel {
    /// `enable-opentelemetry` (or `--otlp-endpoint`): every route is traced unless its
    /// Ingress says `enable-opentelemetry: "false"`.
    pub enabled: bool,
    /// Where spans are sent (`--otlp-endpoint`, `otlp-collector-host` and `-port`); `None`:
    /// spans are still started and propagated, and none is exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collector: Option<Collector>,
    /// `otel-service-name`: the resource's `service.name`.
    pub service_name: Arc<str>,
    /// `otel-sampler` with `otel-sampler-ratio`.
    pub sampler: Sampler,
    /// `otel-sampler-parent-based`: a trusted incoming parent's sampled flag decides.
    pub parent_based: bool,
    /// `opentelemetry-trust-incoming-span`: an incoming `traceparent` is continued.
    pub trust_incoming: bool,
    /// `opentelemetry-operation-name`: the span's name (`None`: `METHOD path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<OperationName>,
    /// `otel-max-queuesize`: spans waiting for export; more are dropped (and counted).
    pub max_queue: usize,
    /// `otel-schedule-delay-millis`: the longest a span waits for its batch to fill.
    pub delay: Duration,
    /// `otel-max-export-batch-size`: spans in one export request (at most `max_queue`).
    pub max_batch: usize,
}

impl Otel {
    /// The most `otel-max-queuesize` takes: spans are small, but a queue this long already
    /// means the collector is gone.
    pub const MAX_QUEUE: usize = 65_536;
    /// The longest `otel-schedule-delay-millis`: a minute.
    pub const MAX_DELAY: Duration = Duration::from_secs(60);
    /// The service name without `otel-service-name` (ingress-nginx's).
    pub const DEFAULT_SERVICE_NAME: &str = "nginx";
    /// The longest `otel-service-name` or operation name.
    pub const MAX_NAME: usize = 256;
}

impl Default for Otel {
    fn default() -> Self {
        Self {
            enabled: false,
            collector: None,
            service_name: Arc::from(Self::DEFAULT_SERVICE_NAME),
            sampler: Sampler::AlwaysOn,
            parent_based: true,
            trust_incoming: true,
            operation_name: None,
            max_queue: 2048,
            delay: Duration::from_millis(5000),
            max_batch: 512,
        }
    }
}

/// An OTLP/HTTP collector: spans are POSTed as protobuf to `http://host:port/path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Collector {
    pub host: String,
    pub port: u16,
    /// `/v1/traces` unless the endpoint URL names another.
    pub path: String,
}

impl Collector {
    /// OTLP/HTTP's port.
    pub const DEFAULT_PORT: u16 = 4318;
    pub const DEFAULT_PATH: &str = "/v1/traces";

    /// `http://host[:port][/path]` or a bare `host[:port]`; https is refused (Portico's
    /// exporter speaks plain HTTP to an in-cluster collector).
    pub fn parse(v: &str, default_port: u16) -> Option<Collector> {
        let rest = match v.split_once("://") {
            Some(("http", rest)) => rest,
            Some(_) => return None,
            None => v,
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok().filter(|p| *p > 0)?),
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
        let path_ok = path.len() <= 256 && path.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
        if !host_ok || !path_ok {
            return None;
        }
        Some(Collector {
            host: host.to_string(),
            port,
            path: match path {
                "" | "/" => Self::DEFAULT_PATH.to_string(),
                p => p.to_string(),
            },
        })
    }
}

/// Which new traces are recorded and exported (the rest are still propagated, unsampled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// `TraceIdRatioBased`: sampled when the trace id's low 56 bits are below this share
    /// of 2^56, so every service that samples by the same ratio decides alike.
    Ratio {
        threshold: u64,
    },
}

impl Sampler {
    /// The threshold of a ratio from 0 to 1.
    pub fn ratio(r: f64) -> Option<Sampler> {
        if !(0.0..=1.0).contains(&r) {
            return None;
        }
        // Exact at both ends; in between, rounding moves the share by 2^-56 at most.
        Some(Sampler::Ratio {
            threshold: (r * (1u64 << 56) as f64) as u64,
        })
    }

    /// Whether a new trace with this id is sampled.
    pub fn samples(&self, trace_id: &[u8; 16]) -> bool {
        match *self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::Ratio { threshold } => {
                let mut low = [0u8; 8];
                low[1..].copy_from_slice(&trace_id[9..]);
                u64::from_be_bytes(low) < threshold
            }
        }
    }
}

/// `opentelemetry-operation-name` from the ConfigMap: literal text and nginx variables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OperationName(pub Vec<NamePart>);

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NamePart {
    Text(String),
    RequestMethod,
    Uri,
    Host,
    Scheme,
    Namespace,
    IngressName,
    ServiceName,
    ServicePort,
    LocationPath,
}

impl OperationName {
    /// The variables a name may hold.
    pub const VARS: &[(&str, NamePart)] = &[
        ("request_method", NamePart::RequestMethod),
        ("uri", NamePart::Uri),
        ("host", NamePart::Host),
        ("scheme", NamePart::Scheme),
        ("namespace", NamePart::Namespace),
        ("ingress_name", NamePart::IngressName),
        ("service_name", NamePart::ServiceName),
        ("service_port", NamePart::ServicePort),
        ("location_path", NamePart::LocationPath),
    ];

    /// `$name` and `${name}` from [`Self::VARS`], the rest literal; `Err` names what is not
    /// known.
    pub fn parse(v: &str) -> Result<OperationName, String> {
        if v.len() > Otel::MAX_NAME {
            return Err(format!("longer than {} bytes", Otel::MAX_NAME));
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = v;
        while let Some(i) = rest.find('$') {
            text.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            let (name, after) = match rest.strip_prefix('{') {
                Some(r) => match r.find('}') {
                    Some(j) => (&r[..j], &r[j + 1..]),
                    None => return Err("an unterminated ${".to_string()),
                },
                None => {
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    (&rest[..end], &rest[end..])
                }
            };
            let Some((_, part)) = Self::VARS.iter().find(|(n, _)| *n == name) else {
                return Err(format!("the variable ${name} is not one Portico fills"));
            };
            if !text.is_empty() {
                parts.push(NamePart::Text(std::mem::take(&mut text)));
            }
            parts.push(part.clone());
            rest = after;
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(NamePart::Text(text));
        }
        Ok(OperationName(parts))
    }
}

/// A traced route's settings (`Policy::otel`; `None` there: the route is not traced).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteOtel {
    /// `opentelemetry-trust-incoming-span`, else the ConfigMap's.
    pub trust_incoming: bool,
    /// `opentelemetry-operation-name` of the Ingress (letters, digits, `_` and `-`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<Arc<str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectors_from_urls_and_host_names() {
        let c = Collector::parse("http://otel.monitoring.svc:4318", 1).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.path.as_str()),
            ("otel.monitoring.svc", 4318, "/v1/traces")
        );
        let c = Collector::parse("otel-coll-collector.otel.svc", 4318).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("otel-coll-collector.otel.svc", 4318));
        let c = Collector::parse("http://127.0.0.1:9/otlp/v1/traces", 1).unwrap();
        assert_eq!((c.port, c.path.as_str()), (9, "/otlp/v1/traces"));
        let c = Collector::parse("http://[::1]:4318", 1).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 4318));
        for bad in [
            "https://otel:4318",
            "http://",
            "http://otel:0",
            "http://otel:99999",
            "otel host",
            "http://otel:4318/v1/traces?x",
        ] {
            assert_eq!(Collector::parse(bad, 4318), None, "{bad}");
        }
    }

    #[test]
    fn ratio_sampling_is_decided_by_the_trace_id() {
        let none = Sampler::ratio(0.0).unwrap();
        let all = Sampler::ratio(1.0).unwrap();
        let half = Sampler::ratio(0.5).unwrap();
        assert!(Sampler::ratio(1.5).is_none() && Sampler::ratio(-0.1).is_none() && Sampler::ratio(f64::NAN).is_none());
        let mut id = [0xffu8; 16];
        assert!(!none.samples(&id) && all.samples(&id) && !half.samples(&id));
        id[9] = 0x7f;
        assert!(half.samples(&id), "below half of 2^56");
        // The high bytes do not take part: W3C leaves only the low 7 random.
        id[..9].fill(0);
        assert!(half.samples(&id));
        id = [0; 16];
        assert!(!none.samples(&id) && all.samples(&id));
        let sampled = (0u32..1000)
            .filter(|i| {
                let mut id = [0u8; 16];
                id[9..13].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
                Sampler::ratio(0.25).unwrap().samples(&id)
            })
            .count();
        assert!((200..300).contains(&sampled), "{sampled} of 1000 at 0.25");
    }

    #[test]
    fn operation_names_with_variables() {
        let n = OperationName::parse("HTTP $request_method ${service_name}$uri").unwrap();
        assert_eq!(
            n.0,
            vec![
                NamePart::Text("HTTP ".into()),
                NamePart::RequestMethod,
                NamePart::Text(" ".into()),
                NamePart::ServiceName,
                NamePart::Uri,
            ]
        );
        assert!(OperationName::parse("$nope").unwrap_err().contains("$nope"));
        assert!(OperationName::parse("${uri").is_err());
        assert!(OperationName::parse(&"x".repeat(300)).is_err());
        assert_eq!(
            OperationName::parse("plain").unwrap().0,
            vec![NamePart::Text("plain".into())]
        );
    }
}
