//! Prometheus metrics: requests, latencies, bytes, connections, TLS handshakes, config generations,
//! config applies, certificate expiry and ready endpoints (docs/metrics.md maps them to
//! ingress-nginx's series).

use std::sync::atomic::AtomicU64;

use crate::model::ObjectKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    /// `2xx`, `3xx`, `4xx`, `5xx` (or `1xx`).
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

/// One TLS host's certificate (`ssl_expire_time_seconds`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    pub host: String,
    pub namespace: String,
    pub secret: String,
}

/// One Ingress's Service (`backend_ready_endpoints`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub bytes: Family<DirectionLabels, Counter>,
    pub request_bytes: Counter,
    pub response_bytes: Counter,
    /// Requests that matched no route, by status class.
    pub unrouted: [Counter; 5],
    pub open_connections: Family<ListenerLabels, Gauge>,
    pub tls_handshakes: Family<OutcomeLabels, Counter>,
    pub config_generation: Gauge<u64, AtomicU64>,
    pub compile_duration: Histogram,
    pub diagnostics: Gauge,
    /// The configuration state the control plane publishes (see [`crate::metrics::Applied`]).
    pub applied: Applied,
    /// Sampled spans by outcome: exported, or dropped (queue full, collector failed).
    pub otel_spans: Family<OutcomeLabels, Counter>,
}

/// What the last attempts to apply a configuration left, and what the live one holds:
/// ingress-nginx's `config_last_reload_successful*` and `ssl_expire_time_seconds`, and the
/// ready endpoints per Ingress and Service. Set when a Config is published, never on the
/// request path; label sets are bounded by the cluster's own objects.
#[derive(Default)]
pub struct Applied {
    pub last_successful: Gauge,
    pub last_success_timestamp: Gauge,
    pub cert_expiry: Family<CertLabels, Gauge>,
    pub ready_endpoints: Family<BackendLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into per-class counter arrays: 0 for 1xx … 4 for 5xx.
pub fn status_index(code: u16) -> usize {
    match code {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// The request counters of one namespace/ingress/service, one per status class.
fn status_counters(
    requests: &Family<RequestLabels, Counter>,
    namespace: &str,
    ingress: &str,
    service: &str,
) -> [Counter; 5] {
    CLASSES.map(|status| {
        requests
            .get_or_create(&RequestLabels {
                namespace: namespace.to_string(),
                ingress: ingress.to_string(),
                service: service.to_string(),
                status,
            })
            .clone()
    })
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portico");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by Ingress, Service and status class",
            requests.clone(),
        );
        let request_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head",
            request_duration.clone(),
        );
        let upstream_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "upstream_duration_seconds",
            "Time an upstream took to answer with a response head",
            upstream_duration.clone(),
        );
        let bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "body_bytes",
            "Body bytes proxied (direction: request, response)",
            bytes.clone(),
        );
        let open_connections = Family::<ListenerLabels, Gauge>::default();
        registry.register("open_connections", "Client connections open", open_connections.clone());
        let tls_handshakes = Family::<OutcomeLabels, Counter>::default();
        registry.register("tls_handshakes", "TLS handshakes by outcome", tls_handshakes.clone());
        let config_generation = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "config_generation",
            "Generation of the live Config",
            config_generation.clone(),
        );
        let compile_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "compile_duration_seconds",
            "Time compile() took",
            compile_duration.clone(),
        );
        let diagnostics = Gauge::default();
        registry.register(
            "config_diagnostics",
            "Diagnostics of the live Config",
            diagnostics.clone(),
        );
        let applied = Applied::default();
        registry.register(
            "config_last_apply_successful",
            "Whether the last attempt to compile and publish a configuration succeeded (1) or not (0)",
            applied.last_successful.clone(),
        );
        registry.register(
            "config_last_apply_success_timestamp_seconds",
            "When a configuration was last published, in seconds since the epoch",
            applied.last_success_timestamp.clone(),
        );
        registry.register(
            "ssl_expire_time_seconds",
            "notAfter of the certificate served for a TLS host, in seconds since the epoch",
            applied.cert_expiry.clone(),
        );
        registry.register(
            "backend_ready_endpoints",
            "Ready endpoints of the Service an Ingress routes to",
            applied.ready_endpoints.clone(),
        );
        let otel_spans = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "otel_spans",
            "OpenTelemetry spans by outcome (exported, dropped)",
            otel_spans.clone(),
        );
        let request_bytes = bytes.get_or_create(&DirectionLabels { direction: "request" }).clone();
        let response_bytes = bytes.get_or_create(&DirectionLabels { direction: "response" }).clone();
        let unrouted = status_counters(&requests, "", "", "");
        Self {
            registry,
            request_bytes,
            response_bytes,
            unrouted,
            requests,
            request_duration,
            upstream_duration,
            bytes,
            open_connections,
            tls_handshakes,
            config_generation,
            compile_duration,
            diagnostics,
            applied,
            otel_spans,
        }
    }

    /// The counters of one route, by status class.
    pub fn route_counters(&self, r: &crate::config::Route) -> [Counter; 5] {
        status_counters(&self.requests, &r.ingress.namespace, &r.ingress.name, &r.service.name)
    }

    /// `cfg` was published at `now`, replacing `prev`: the apply gauges, ready endpoints per
    /// Ingress and Service, and, when `certs_changed`, the certificate expiry series.
    pub fn published(
        &self,
        prev: &crate::config::Config,
        cfg: &crate::config::Config,
        now: std::time::SystemTime,
        certs_changed: bool,
    ) {
        let a = &self.applied;
        a.last_successful.set(1);
        let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        a.last_success_timestamp.set(i64::try_from(secs).unwrap_or(i64::MAX));
        // Only the series that changed are touched: rebuilding all of them on every publish
        // (10k at 10k Ingresses, three strings each, after each endpoints change) churned
        // the heap for what is usually one changed value.
        let (before, now) = (ready_series(prev), ready_series(cfg));
        let labels = |(ingress, service): &(&ObjectKey, &str)| BackendLabels {
            namespace: ingress.namespace.clone(),
            ingress: ingress.name.clone(),
            service: service.to_string(),
        };
        for k in before.keys().filter(|k| !now.contains_key(*k)) {
            a.ready_endpoints.remove(&labels(k));
        }
        for (k, n) in now.iter().filter(|(k, n)| before.get(*k) != Some(*n)) {
            a.ready_endpoints
                .get_or_create(&labels(k))
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        if certs_changed {
            a.cert_expiry.clear();
            for (host, source) in &cfg.certs.sources {
                let Some(secret) = source.strip_prefix("secret ") else {
                    continue;
                };
                let Ok(pattern) = crate::config::HostPattern::parse(Some(host)) else {
                    continue;
                };
                let Some(not_after) = cfg.certs.own(&pattern).and_then(|k| k.cert.first()).and_then(|der| {
                    x509_parser::parse_x509_certificate(der)
                        .ok()
                        .map(|(_, c)| c.validity().not_after.timestamp())
                }) else {
                    continue;
                };
                let (namespace, name) = secret.split_once('/').unwrap_or(("", secret));
                let labels = CertLabels {
                    host: host.clone(),
                    namespace: namespace.to_string(),
                    secret: name.to_string(),
                };
                a.cert_expiry.get_or_create(&labels).set(not_after);
            }
        }
    }

    /// An attempt to apply a configuration failed; the last one keeps serving.
    pub fn apply_failed(&self) {
        self.applied.last_successful.set(0);
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Ready endpoints per (Ingress, Service) of a Config: as ready as the Service's fullest
/// backend on the Ingress (ports may differ).
fn ready_series(cfg: &crate::config::Config) -> std::collections::HashMap<(&ObjectKey, &str), usize> {
    let mut ready = std::collections::HashMap::new();
    for r in cfg.route_list.iter() {
        let n = cfg.backend(r).map_or(0, |b| match &b.target {
            crate::config::Target::Endpoints { ready, .. } => ready.len(),
            crate::config::Target::ExternalName { .. } => 1,
            crate::config::Target::Unavailable { .. } => 0,
        });
        let e = ready.entry((&r.ingress, r.service.name.as_str())).or_insert(0usize);
        *e = (*e).max(n);
    }
    ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{Options, compile};
    use crate::config::Config;
    use crate::fixture::{self, Prefix};

    /// The ready-endpoints series follow each published Config: a changed count is updated,
    /// a series whose Ingress went away is removed, an unchanged one stays.
    #[test]
    fn ready_endpoint_series_follow_the_published_configs() {
        let m = Metrics::new();
        let at = std::time::UNIX_EPOCH;
        let config = |counts: &[(&str, u8)]| {
            let mut objects = vec![fixture::portico_class().into()];
            for (name, n) in counts {
                objects.push(fixture::service("default", name).port("http", 80).into());
                let mut slice = fixture::slice("default", &format!("{name}-a"), name).port("http", 8080);
                for e in 0..*n {
                    slice = slice.endpoint(&format!("192.0.2.{}", e + 1));
                }
                objects.push(slice.into());
                let host = format!("{name}.example");
                let ing = fixture::ingress("default", &format!("ing-{name}"))
                    .class("portico")
                    .rule(&host, "/", Prefix, name, 80);
                objects.push(ing.into());
            }
            compile(&fixture::snapshot(objects), &Options::default())
        };
        let series = |m: &Metrics, name: &str| {
            let text = m.encode();
            let want = format!("ingress=\"ing-{name}\"");
            text.lines()
                .find(|l| l.starts_with("portico_backend_ready_endpoints{") && l.contains(&want))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        let one = config(&[("a", 2), ("b", 3)]);
        m.published(&Config::default(), &one, at, true);
        assert_eq!(
            (series(&m, "a").as_deref(), series(&m, "b").as_deref()),
            (Some("2"), Some("3"))
        );
        let two = config(&[("a", 1)]);
        m.published(&one, &two, at, false);
        assert_eq!((series(&m, "a").as_deref(), series(&m, "b")), (Some("1"), None));
        m.published(&two, &two, at, false);
        assert_eq!(series(&m, "a").as_deref(), Some("1"));
    }

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn a_failed_apply_turns_the_gauge_to_zero_and_keeps_the_last_success_time() {
        let m = Metrics::new();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        m.published(
            &crate::config::Config::default(),
            &crate::config::Config::default(),
            at,
            true,
        );
        let text = m.encode();
        assert_eq!(line(&text, "portico_config_last_apply_successful"), Some("1"));
        assert_eq!(
            line(&text, "portico_config_last_apply_success_timestamp_seconds"),
            Some("1700000000")
        );
        m.apply_failed();
        let text = m.encode();
        assert_eq!(line(&text, "portico_config_last_apply_successful"), Some("0"));
        assert_eq!(
            line(&text, "portico_config_last_apply_success_timestamp_seconds"),
            Some("1700000000")
        );
    }
}
