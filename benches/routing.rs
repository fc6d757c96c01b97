//! Criterion benches for the routing core: route lookup and compile() at scale.
//!
//! cargo bench --bench routing

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use portico::{AnyObject, Options, Snapshot, compile};

// Measured with the allocator the portico binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// `hosts` Ingresses (one host each, `paths` Prefix paths each, every fifth host a
/// wildcard), one Service + EndpointSlice (3 pods) per Ingress, and `tls` TLS Secrets used
/// by the first `tls` Ingresses.
fn snapshot(hosts: usize, paths: usize, tls: usize) -> Snapshot {
    let mut s = Snapshot::default();
    s.insert(AnyObject::IngressClass(Arc::new(IngressClass {
        metadata: ObjectMeta {
            name: Some("portico".into()),
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some("portico.dev/ingress-controller".into()),
            parameters: None,
        }),
    })));
    let certs: Vec<(String, String)> = (0..tls)
        .map(|i| {
            let ck = rcgen::generate_simple_self_signed(vec![format!("host{i}.bench.test")]).expect("cert");
            (ck.cert.pem(), ck.signing_key.serialize_pem())
        })
        .collect();
    for (i, (crt, key)) in certs.iter().enumerate() {
        let mut data = BTreeMap::new();
        data.insert("tls.crt".to_string(), ByteString(crt.clone().into_bytes()));
        data.insert("tls.key".to_string(), ByteString(key.clone().into_bytes()));
        s.insert(AnyObject::Secret(Arc::new(Secret {
            metadata: meta("bench", &format!("tls{i}")),
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        })));
    }
    for i in 0..hosts {
        let svc = format!("svc{i}");
        s.insert(AnyObject::Service(Arc::new(Service {
            metadata: meta("bench", &svc),
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })));
        let mut labels = BTreeMap::new();
        labels.insert("kubernetes.io/service-name".to_string(), svc.clone());
        s.insert(AnyObject::EndpointSlice(Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                labels: Some(labels),
                ..meta("bench", &format!("{svc}-x"))
            },
            address_type: "IPv4".into(),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                ..Default::default()
            }]),
            endpoints: (0..3)
                .map(|p| Endpoint {
                    addresses: vec![format!("10.{}.{}.{}", (i >> 8) & 255, i & 255, p + 1)],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        })));
        let host = if i % 5 == 4 {
            format!("*.wild{i}.bench.test")
        } else {
            format!("host{i}.bench.test")
        };
        let backend = IngressBackend {
            service: Some(IngressServiceBackend {
                name: svc.clone(),
                port: Some(ServiceBackendPort {
                    name: None,
                    number: Some(80),
                }),
            }),
            resource: None,
        };
        let paths = (0..paths)
            .map(|p| HTTPIngressPath {
                path: Some(if p == 0 { "/".into() } else { format!("/api/v{p}") }),
                path_type: if p % 3 == 2 { "Exact" } else { "Prefix" }.into(),
                backend: backend.clone(),
            })
            .collect();
        s.insert(AnyObject::Ingress(Arc::new(Ingress {
            metadata: meta("bench", &format!("ing{i}")),
            spec: Some(IngressSpec {
                ingress_class_name: Some("portico".into()),
                tls: (i < tls).then(|| {
                    vec![IngressTLS {
                        hosts: Some(vec![host.clone()]),
                        secret_name: Some(format!("tls{i}")),
                    }]
                }),
                rules: Some(vec![IngressRule {
                    host: Some(host),
                    http: Some(HTTPIngressRuleValue { paths }),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })));
    }
    s
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    for hosts in [1usize, 1_000, 10_000] {
        let mut s = snapshot(hosts, 10, 0);
        // A host-less catch-all rule so that unknown hosts have something to reach.
        let mut any = (*s.ingresses.values().next().expect("one ingress").clone()).clone();
        any.metadata.name = Some("any".into());
        any.spec.as_mut().expect("spec").rules.as_mut().expect("rules")[0].host = None;
        s.insert(AnyObject::Ingress(Arc::new(any)));
        let cfg = compile(&s, &Options::default());
        assert!(cfg.diagnostics.is_empty(), "{:?}", cfg.diagnostics.first());
        let last = hosts - 1;
        let exact = format!("host{}.bench.test", if last % 5 == 4 { last - 1 } else { last });
        let cases = [
            ("exact_hit_deep", exact.clone(), "/api/v4/users/42"),
            ("exact_hit_root", exact.clone(), "/index.html"),
            ("exact_exact_path", exact.clone(), "/api/v5"),
            ("exact_mixed_case", exact.to_uppercase(), "/api/v1"),
            (
                "wildcard_hit",
                format!("x.wild{}.bench.test", (hosts / 5) * 5 + 4 - 5 * usize::from(hosts >= 5)),
                "/api/v7/x",
            ),
            ("unknown_host_to_any", "nope.example".into(), "/api/v1/x"),
            ("miss", "nope.example".into(), "/not/routed"),
        ];
        for (name, host, path) in cases {
            if hosts < 5 && name == "wildcard_hit" {
                continue;
            }
            g.bench_with_input(BenchmarkId::new(name, hosts), &(host, path), |b, (h, p)| {
                b.iter(|| black_box(cfg.routes.route(black_box(h), black_box(p)).is_some()))
            });
        }
    }
    g.finish();
}

fn compile_at_scale(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for (ingresses, tls) in [(100usize, 0usize), (1_000, 0), (10_000, 0), (10_000, 1_000)] {
        let s = snapshot(ingresses, 2, tls);
        let opts = Options::default();
        let cfg = compile(&s, &opts);
        assert!(cfg.diagnostics.is_empty(), "{:?}", cfg.diagnostics.first());
        g.bench_with_input(
            BenchmarkId::new(format!("ingresses_tls{tls}"), ingresses),
            &s,
            |b, s| b.iter(|| black_box(compile(s, &opts)).route_list.len()),
        );
        if tls > 0 {
            // As Portico runs: certificates parsed by an earlier compile are reused.
            let cached = Options {
                cert_cache: Some(Arc::new(portico::compile::tls::CertCache::default())),
                ..Options::default()
            };
            let cache = cached.cert_cache.clone().unwrap();
            compile(&s, &cached);
            cache.rotate();
            g.bench_with_input(
                BenchmarkId::new(format!("ingresses_tls{tls}_cached"), ingresses),
                &s,
                |b, s| {
                    b.iter(|| {
                        let n = black_box(compile(s, &cached)).route_list.len();
                        cache.rotate();
                        n
                    })
                },
            );
        }
    }
    g.finish();
}

fn endpoints_only(c: &mut Criterion) {
    let mut g = c.benchmark_group("recompile_endpoints");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for ingresses in [1_000usize, 10_000] {
        let s = snapshot(ingresses, 2, 0);
        let prev = compile(&s, &Options::default());
        g.bench_with_input(BenchmarkId::new("ingresses", ingresses), &s, |b, s| {
            b.iter(|| {
                black_box(portico::compile::recompile_endpoints(s, &prev, None))
                    .backends
                    .len()
            })
        });
        let one: std::collections::HashSet<portico::ObjectKey> = [portico::ObjectKey::new("bench", "svc7")].into();
        g.bench_with_input(BenchmarkId::new("one_service_of", ingresses), &s, |b, s| {
            b.iter(|| {
                black_box(portico::compile::recompile_endpoints(s, &prev, Some(&one)))
                    .backends
                    .len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookup, compile_at_scale, endpoints_only);
criterion_main!(benches);
