//! OpenTelemetry settings read: the ConfigMap's `enable-opentelemetry`, `otlp-collector-*`,
//! `otel-*` and `opentelemetry-*` keys into [`Otel`], and an Ingress's annotations with them
//! into the route's [`RouteOtel`]. A bad value is a message and its setting keeps its value.

use std::sync::Arc;
use std::time::Duration;

use crate::model::Ing as Ingress;

use super::compress::go_bool;
use super::ingress::annotation;
use crate::config::otel::{Collector, OperationName, Otel, RouteOtel, Sampler};

/// OTLP/gRPC's port, ingress-nginx's default: Portico's exporter speaks OTLP/HTTP.
const GRPC_PORT: u16 = 4317;

/// Reads the ConfigMap's keys through `get` over `base` (the command line's); returns the
/// settings and a message for each value that was not used.
pub fn read<'a>(base: Otel, get: impl Fn(&str) -> Option<&'a str>) -> (Otel, Vec<String>) {
    let mut problems = Vec::new();
    let mut o = base;
    let mut key = |name: &str, expected: &str, apply: &mut dyn FnMut(&str) -> bool| {
        if let Some(raw) = get(name)
            && !apply(raw.trim())
        {
            let shown: String = raw.chars().take(200).collect();
            problems.push(format!(
                "{name}={shown:?} is not {expected}; the previous value is kept"
            ));
        }
    };
    let boolean = "a boolean (\"true\" or \"false\")";
    key("enable-opentelemetry", boolean, &mut |v| {
        go_bool(v).map(|b| o.enabled = b).is_some()
    });
    key("opentelemetry-trust-incoming-span", boolean, &mut |v| {
        go_bool(v).map(|b| o.trust_incoming = b).is_some()
    });
    key("otel-sampler-parent-based", boolean, &mut |v| {
        go_bool(v).map(|b| o.parent_based = b).is_some()
    });
    let mut port = None;
    key("otlp-collector-port", "a port from 1 to 65535", &mut |v| {
        v.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(|p| port = Some(p))
            .is_some()
    });
    let mut host = None;
    key(
        "otlp-collector-host",
        "a host name or an http:// URL (Portico exports OTLP over HTTP)",
        &mut |v| {
            Collector::parse(v, port.unwrap_or(Collector::DEFAULT_PORT))
                .map(|c| host = Some(c))
                .is_some()
        },
    );
    match (host, port) {
        (Some(c), _) => o.collector = Some(c),
        (None, Some(p)) => {
            if let Some(c) = &mut o.collector {
                c.port = p;
            }
        }
        (None, None) => {}
    }
    key(
        "otel-service-name",
        &format!("a name of printable characters, at most {}", Otel::MAX_NAME),
        &mut |v| {
            let ok = !v.is_empty() && v.len() <= Otel::MAX_NAME && v.bytes().all(|b| (0x20..0x7f).contains(&b));
            ok.then(|| o.service_name = Arc::from(v)).is_some()
        },
    );
    let mut ratio = Sampler::ratio(0.01);
    key("otel-sampler-ratio", "a number from 0 to 1", &mut |v| {
        v.parse::<f64>()
            .ok()
            .and_then(Sampler::ratio)
            .map(|r| ratio = Some(r))
            .is_some()
    });
    let mut sampler_set = false;
    key("otel-sampler", "AlwaysOn, AlwaysOff or TraceIdRatioBased", &mut |v| {
        let s = match v {
            "AlwaysOn" => Sampler::AlwaysOn,
            "AlwaysOff" => Sampler::AlwaysOff,
            "TraceIdRatioBased" => ratio.unwrap_or(Sampler::AlwaysOn),
            _ => return false,
        };
        o.sampler = s;
        sampler_set = true;
        true
    });
    // A ratio alone changes the ratio of a ratio sampler the command line chose.
    if !sampler_set
        && matches!(o.sampler, Sampler::Ratio { .. })
        && let Some(r) = ratio
    {
        o.sampler = r;
    }
    key(
        "opentelemetry-operation-name",
        &format!(
            "text with the variables {} (at most {} bytes)",
            OperationName::VARS
                .iter()
                .map(|(n, _)| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", "),
            Otel::MAX_NAME
        ),
        &mut |v| match OperationName::parse(v) {
            Ok(n) => {
                o.operation_name = (!n.0.is_empty()).then_some(n);
                true
            }
            Err(_) => false,
        },
    );
    let max = Otel::MAX_QUEUE;
    for (name, field) in [
        ("otel-max-queuesize", &mut o.max_queue),
        ("otel-max-export-batch-size", &mut o.max_batch),
    ] {
        key(name, &format!("a number of spans from 1 to {max}"), &mut |v| {
            v.parse()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .map(|n| *field = n)
                .is_some()
        });
    }
    let longest = Otel::MAX_DELAY.as_millis();
    key(
        "otel-schedule-delay-millis",
        &format!("a number of milliseconds from 1 to {longest}"),
        &mut |v| {
            v.parse::<u64>()
                .ok()
                .map(Duration::from_millis)
                .filter(|d| !d.is_zero() && *d <= Otel::MAX_DELAY)
                .map(|d| o.delay = d)
                .is_some()
        },
    );
    // As ingress-nginx's batch processor: a batch is never larger than the queue.
    o.max_batch = o.max_batch.min(o.max_queue);
    if o.collector.as_ref().is_some_and(|c| c.port == GRPC_PORT) {
        problems.push(format!(
            "otlp-collector-port {GRPC_PORT} is OTLP/gRPC's port and Portico exports OTLP over HTTP (protobuf, POST /v1/traces): point it at the collector's OTLP/HTTP port ({}); the port is used as given",
            Collector::DEFAULT_PORT
        ));
    }
    (o, problems)
}

/// A route's tracing from its Ingress's annotations and the controller-wide settings
/// (`None`: not traced); `warn(prefix, name, value, expected)` reports a bad value. As
/// ingress-nginx: `enable-opentelemetry` turns tracing on or off for the Ingress whatever
/// the ConfigMap says, and `opentelemetry-trust-incoming-span` and
/// `opentelemetry-operation-name` are read only where the Ingress sets
/// `enable-opentelemetry: "true"`.
pub fn route(ing: &Ingress, g: &Otel, mut warn: impl FnMut(&str, &str, &str, &str)) -> Option<Arc<RouteOtel>> {
    let boolean = "\"true\" or \"false\"";
    let mut flag = |name: &str| {
        let (prefix, raw) = annotation(ing, name)?;
        let v = go_bool(raw.trim());
        if v.is_none() {
            warn(prefix, name, raw, boolean);
        }
        v
    };
    let enabled = flag("enable-opentelemetry");
    if !enabled.unwrap_or(g.enabled) {
        return None;
    }
    let mut r = RouteOtel {
        trust_incoming: g.trust_incoming,
        operation_name: None,
    };
    if enabled == Some(true) {
        r.trust_incoming = flag("opentelemetry-trust-incoming-span").unwrap_or(g.trust_incoming);
        if let Some((prefix, raw)) = annotation(ing, "opentelemetry-operation-name") {
            let v = raw.trim();
            let ok =
                v.len() <= Otel::MAX_NAME && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if ok {
                r.operation_name = (!v.is_empty()).then(|| Arc::from(v));
            } else {
                let expected = format!("letters, digits, '_' and '-' (at most {})", Otel::MAX_NAME);
                warn(prefix, "opentelemetry-operation-name", raw, &expected);
            }
        }
    }
    Some(Arc::new(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn read_map(base: Otel, data: &[(&str, &str)]) -> (Otel, Vec<String>) {
        read(base, |k| data.iter().find(|(n, _)| *n == k).map(|(_, v)| *v))
    }

    #[test]
    fn configmap_keys() {
        let (o, problems) = read_map(
            Otel::default(),
            &[
                ("enable-opentelemetry", "true"),
                ("otlp-collector-host", "otel.monitoring.svc"),
                ("otlp-collector-port", "4318"),
                ("otel-service-name", "edge"),
                ("otel-sampler", "TraceIdRatioBased"),
                ("otel-sampler-ratio", "0.5"),
                ("otel-sampler-parent-based", "false"),
                ("opentelemetry-trust-incoming-span", "false"),
                ("opentelemetry-operation-name", "HTTP $request_method $uri"),
                ("otel-max-queuesize", "100"),
                ("otel-max-export-batch-size", "512"),
                ("otel-schedule-delay-millis", "250"),
            ],
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(o.enabled && !o.parent_based && !o.trust_incoming);
        let c = o.collector.unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.path.as_str()),
            ("otel.monitoring.svc", 4318, "/v1/traces")
        );
        assert_eq!(&*o.service_name, "edge");
        assert_eq!(o.sampler, Sampler::ratio(0.5).unwrap());
        assert!(o.operation_name.is_some());
        // The batch is capped by the queue.
        assert_eq!(
            (o.max_queue, o.max_batch, o.delay),
            (100, 100, Duration::from_millis(250))
        );
    }

    #[test]
    fn bad_values_keep_the_previous_and_say_so() {
        let base = Otel {
            collector: Collector::parse("http://127.0.0.1:4318", 1),
            ..Otel::default()
        };
        let (o, problems) = read_map(
            base.clone(),
            &[
                ("enable-opentelemetry", "yes"),
                ("otlp-collector-host", "https://otel:4318"),
                ("otel-sampler", "remote"),
                ("otel-sampler-ratio", "2"),
                ("otel-max-queuesize", "99999999999"),
                ("otel-schedule-delay-millis", "0"),
                ("opentelemetry-operation-name", "$request_body"),
                ("otel-service-name", ""),
            ],
        );
        assert_eq!(o, base);
        assert_eq!(problems.len(), 8, "{problems:#?}");
        // A port alone moves the command line's collector; gRPC's port is used and noted.
        let (o, problems) = read_map(base, &[("otlp-collector-port", "4317")]);
        assert_eq!(o.collector.unwrap().port, 4317);
        assert!(problems[0].contains("OTLP/gRPC"), "{problems:?}");
    }

    #[test]
    fn routes_follow_the_configmap_unless_their_ingress_says_otherwise() {
        let ing = |a: &[(&str, &str)]| {
            let b = fixture::ingress("default", "web");
            a.iter().fold(b, |b, (k, v)| b.annotation(k, v)).ing()
        };
        let none = |_: &str, _: &str, _: &str, _: &str| panic!("no warning expected");
        let on = Otel {
            enabled: true,
            ..Otel::default()
        };
        assert_eq!(route(&ing(&[]), &Otel::default(), none), None);
        let r = route(&ing(&[]), &on, none).unwrap();
        assert!(r.trust_incoming && r.operation_name.is_none());
        let n = "nginx.ingress.kubernetes.io/";
        assert_eq!(
            route(&ing(&[(&format!("{n}enable-opentelemetry"), "false")]), &on, none),
            None
        );
        let r = route(
            &ing(&[
                ("portico.dev/enable-opentelemetry", "true"),
                (&format!("{n}opentelemetry-trust-incoming-span"), "false"),
                (&format!("{n}opentelemetry-operation-name"), "checkout"),
            ]),
            &Otel::default(),
            none,
        )
        .unwrap();
        assert!(!r.trust_incoming);
        assert_eq!(r.operation_name.as_deref(), Some("checkout"));
        // Without enable-opentelemetry: "true" on the Ingress, its trust annotation is not read.
        let r = route(
            &ing(&[(&format!("{n}opentelemetry-trust-incoming-span"), "false")]),
            &on,
            none,
        )
        .unwrap();
        assert!(r.trust_incoming);
        let mut warned = Vec::new();
        let r = route(
            &ing(&[
                (&format!("{n}enable-opentelemetry"), "true"),
                (&format!("{n}opentelemetry-operation-name"), "GET $uri"),
            ]),
            &Otel::default(),
            |_, name, _, _| warned.push(name.to_string()),
        )
        .unwrap();
        assert_eq!(r.operation_name, None);
        assert_eq!(warned, ["opentelemetry-operation-name"]);
    }
}
