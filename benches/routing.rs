//! Criterion benches for the routing core: route lookup and compile() at scale.
//!
//! cargo bench --bench routing

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portico::fixture::{self, Exact, Prefix};
use portico::{AnyObject, Options, Snapshot, compile};

// Measured with the allocator the portico binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `hosts` Ingresses (one host each, `paths` Prefix paths each, every fifth host a
/// wildcard), one Service + EndpointSlice (3 pods) per Ingress, and `tls` TLS Secrets used
/// by the first `tls` Ingresses.
fn snapshot(hosts: usize, paths: usize, tls: usize) -> Snapshot {
    let mut objects: Vec<AnyObject> = vec![fixture::portico_class().into()];
    for i in 0..tls {
        let ck = rcgen::generate_simple_self_signed(vec![format!("host{i}.bench.test")]).expect("cert");
        let (crt, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
        objects.push(fixture::tls_secret("bench", &format!("tls{i}"), &crt, &key).into());
    }
    for i in 0..hosts {
        let svc = format!("svc{i}");
        objects.push(fixture::service("bench", &svc).port("http", 80).into());
        let slice = (0..3).fold(
            fixture::slice("bench", &format!("{svc}-x"), &svc).port("http", 8080),
            |slice, p| {
                slice
                    .endpoint(&format!("10.{}.{}.{}", (i >> 8) & 255, i & 255, p + 1))
                    .ready(true)
            },
        );
        objects.push(slice.into());
        let host = if i % 5 == 4 {
            format!("*.wild{i}.bench.test")
        } else {
            format!("host{i}.bench.test")
        };
        let mut ingress = fixture::ingress("bench", &format!("ing{i}"))
            .class("portico")
            .rule(&host, "/", Prefix, &svc, 80);
        for p in 1..paths {
            let ty = if p % 3 == 2 { Exact } else { Prefix };
            ingress = ingress.path(&format!("/api/v{p}"), ty, &svc, 80);
        }
        if i < tls {
            ingress = ingress.tls(&[&host], Some(&format!("tls{i}")));
        }
        objects.push(ingress.into());
    }
    fixture::snapshot(objects)
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    for hosts in [1usize, 1_000, 10_000] {
        let mut s = snapshot(hosts, 10, 0);
        // A host-less catch-all rule so that unknown hosts have something to reach.
        let mut any = (*s.ingresses.values().next().expect("one ingress").clone()).clone();
        any.spec.as_mut().expect("spec").rules.as_mut().expect("rules")[0].host = None;
        let key =
            portico::model::ObjectKey::new(s.ingresses.keys().next().expect("one ingress").namespace.clone(), "any");
        s.insert(AnyObject::Ing(key, Arc::new(any)));
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
    // Hosts of two paths (`/` and `/api/v1`, five matcher keys), as in benches/kube_scale.sh:
    // matched from short lists instead of a router (config::route, FEW_KEYS).
    for hosts in [1_000usize, 10_000] {
        let cfg = compile(&snapshot(hosts, 2, 0), &Options::default());
        assert!(cfg.diagnostics.is_empty(), "{:?}", cfg.diagnostics.first());
        let exact = format!("host{}.bench.test", hosts - 2);
        for (name, path) in [
            ("few_keys_hit_deep", "/api/v1/users/42"),
            ("few_keys_hit_root", "/index.html"),
        ] {
            g.bench_with_input(BenchmarkId::new(name, hosts), &(exact.clone(), path), |b, (h, p)| {
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
