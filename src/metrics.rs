//! Prometheus metrics: requests, latencies, bytes, connections, TLS handshakes, config generations.

use std::sync::atomic::AtomicU64;

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
    /// Sampled spans by outcome: exported, or dropped (queue full, collector failed).
    pub otel_spans: Family<OutcomeLabels, Counter>,
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
            otel_spans,
        }
    }

    /// The counters of one route, by status class.
    pub fn route_counters(&self, r: &crate::config::Route) -> [Counter; 5] {
        status_counters(&self.requests, &r.ingress.namespace, &r.ingress.name, &r.service.name)
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
