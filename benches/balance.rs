//! Criterion bench for endpoint choice: what each load-balancing and affinity policy adds
//! to one request, measured through the same code the proxy runs (sticky → next → in-flight
//! and latency bookkeeping → remember).
//!
//! cargo bench --bench balance

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::hmac;
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use portico::balance::choice::Choice;
use portico::balance::table::{Registry, reconcile};
use portico::balance::{EndpointState, now_ns};
use portico::fixture::{self, Prefix, ServiceBuilder};
use portico::{AnyObject, Options, Snapshot, compile};

// Measured with the allocator the portico binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ENDPOINTS: usize = 10;

/// An Ingress `host` for `host` / → Service `svc` port 80, with `annotations`.
fn ingress(host: &str, svc: &str, annotations: &[(&str, &str)]) -> AnyObject {
    let ingress = fixture::ingress("b", host)
        .class("portico")
        .rule(host, "/", Prefix, svc, 80);
    annotations.iter().fold(ingress, |i, (k, v)| i.annotation(k, v)).into()
}

/// Endpoints of the large Service (the worst cases: two choices, re-pinning a session).
const MANY: usize = 1000;

/// A Service `name` (port 80 named http) and one EndpointSlice of `ENDPOINTS` pods.
fn service(name: &str, service: ServiceBuilder) -> [AnyObject; 2] {
    service_of(name, service, ENDPOINTS)
}

/// A Service `name` (port 80 named http) and one EndpointSlice of `n` pods.
fn service_of(name: &str, service: ServiceBuilder, n: usize) -> [AnyObject; 2] {
    let slice = (0..n).fold(fixture::slice("b", name, name).port("http", 8080), |slice, i| {
        slice.endpoint(&format!("10.0.{}.{}", i / 250, i % 250 + 1))
    });
    [service.port("http", 80).into(), slice.into()]
}

fn snapshot() -> Snapshot {
    let affinity = "nginx.ingress.kubernetes.io/affinity";
    let mut objects: Vec<AnyObject> = vec![fixture::portico_class().into()];
    objects.extend(service("web", fixture::service("b", "web")));
    objects.extend(service(
        "sticky-ip",
        fixture::service("b", "sticky-ip").client_ip_affinity(None),
    ));
    objects.extend([
        ingress("rr", "web", &[]),
        ingress("ewma", "web", &[("nginx.ingress.kubernetes.io/load-balance", "ewma")]),
        ingress("balanced", "web", &[(affinity, "cookie")]),
        ingress(
            "persistent",
            "web",
            &[
                (affinity, "cookie"),
                ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
            ],
        ),
        ingress("clientip", "sticky-ip", &[]),
        ingress("clientip-full", "full-ip", &[]),
        ingress(
            "ewma-many",
            "many",
            &[("nginx.ingress.kubernetes.io/load-balance", "ewma")],
        ),
        ingress("balanced-many", "many", &[(affinity, "cookie")]),
    ]);
    objects.extend(service(
        "full-ip",
        fixture::service("b", "full-ip").client_ip_affinity(None),
    ));
    objects.extend(service_of("many", fixture::service("b", "many"), MANY));
    fixture::snapshot(objects)
}

fn bench(c: &mut Criterion) {
    let cfg = compile(&snapshot(), &Options::default());
    assert!(cfg.diagnostics.is_empty(), "{:?}", cfg.diagnostics);
    // The runtime tables the data plane keeps for this Config.
    let registry = Registry::default();
    let tables = reconcile(None, &cfg, &registry, EndpointState::new);
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"bench-affinity-key-0123456789");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };

    // A cookie each sticky Ingress itself handed out.
    let cookie_for = |host: &str| -> HeaderMap {
        let route = cfg.routes.route(host, "/").unwrap();
        let backend = cfg.backend(route).unwrap();
        let table = &tables[route.backend];
        let choice = Choice {
            route,
            backend,
            table,
            ready: backend.ready(),
            terminating: backend.terminating(),
            states: &table.endpoints,
        };
        let s = choice.sticky(&HeaderMap::new(), || [192, 0, 2, 1].into(), &key, now_ns());
        let set = choice.remember(&s, s.index.unwrap_or(0), false, &key).unwrap();
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&format!("theme=dark; {pair}")).unwrap());
        h
    };
    let none = HeaderMap::new();
    let balanced = cookie_for("balanced");
    let persistent = cookie_for("persistent");

    let mut g = c.benchmark_group("choose");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for (name, host, headers) in [
        ("round_robin", "rr", &none),
        ("ewma", "ewma", &none),
        ("cookie_balanced_known", "balanced", &balanced),
        ("cookie_balanced_new", "balanced", &none),
        ("cookie_persistent_known", "persistent", &persistent),
        ("cookie_persistent_new", "persistent", &none),
        ("client_ip", "clientip", &none),
    ] {
        let route = cfg.routes.route(host, "/").unwrap();
        let backend = cfg.backend(route).unwrap();
        let table = &tables[route.backend];
        g.bench_function(name, |b| {
            b.iter(|| {
                let choice = Choice {
                    route,
                    backend,
                    table,
                    ready: backend.ready(),
                    terminating: backend.terminating(),
                    states: &table.endpoints,
                };
                let now = now_ns();
                let s = choice.sticky(black_box(headers), || [192, 0, 2, 7].into(), &key, now);
                let i = choice.next(&s, 0, &[], now, &mut rand).unwrap();
                let state = &**choice.state(i).unwrap();
                let guard = state.start();
                drop(guard);
                state.succeeded();
                state.observe(Duration::from_micros(300), now);
                black_box(choice.remember(&s, i, false, &key))
            })
        });
    }

    // ClientIP with the table full of live clients (100 000): a new client every request.
    let route = cfg.routes.route("clientip-full", "/").unwrap();
    let backend = cfg.backend(route).unwrap();
    let table = &tables[route.backend];
    let choice = Choice {
        route,
        backend,
        table,
        ready: backend.ready(),
        terminating: backend.terminating(),
        states: &table.endpoints,
    };
    let client = std::cell::Cell::new(0u32);
    let new_client = || {
        client.set(client.get().wrapping_add(1));
        std::net::IpAddr::from(client.get().to_be_bytes())
    };
    for _ in 0..100_000 {
        let s = choice.sticky(&none, new_client, &key, now_ns());
        choice.remember(&s, 0, false, &key);
    }
    g.bench_function("client_ip_full_new_client", |b| {
        b.iter(|| {
            let s = choice.sticky(&none, new_client, &key, now_ns());
            let i = choice.next(&s, 0, &[], now_ns(), &mut rand).unwrap();
            black_box(choice.remember(&s, i, false, &key))
        })
    });

    // 1000 endpoints: power of two choices; a new balanced session moved to another endpoint
    // than its key's (what a failure with change-on-failure, or a new session landing on a
    // failing endpoint, does).
    let route = cfg.routes.route("ewma-many", "/").unwrap();
    let backend = cfg.backend(route).unwrap();
    let table = &tables[route.backend];
    let choice = Choice {
        route,
        backend,
        table,
        ready: backend.ready(),
        terminating: backend.terminating(),
        states: &table.endpoints,
    };
    g.bench_function("ewma_1000", |b| {
        b.iter(|| {
            let now = now_ns();
            let s = choice.sticky(&none, || [192, 0, 2, 7].into(), &key, now);
            black_box(choice.next(&s, 0, &[], now, &mut rand))
        })
    });
    let route = cfg.routes.route("balanced-many", "/").unwrap();
    let backend = cfg.backend(route).unwrap();
    let table = &tables[route.backend];
    let choice = Choice {
        route,
        backend,
        table,
        ready: backend.ready(),
        terminating: backend.terminating(),
        states: &table.endpoints,
    };
    let (mut moved, mut hit) = (0u64, 0u64);
    g.bench_function("cookie_balanced_moved_1000", |b| {
        b.iter(|| {
            let s = choice.sticky(&none, || [192, 0, 2, 7].into(), &key, now_ns());
            let i = (s.index.unwrap_or(0) + 1) % MANY;
            let set = choice.remember(&s, i, false, &key);
            // Whether the cookie handed out names the endpoint the session moved to.
            let value = set
                .as_ref()
                .and_then(|v| v.to_str().ok()?.split(';').next()?.split_once('='));
            moved += 1;
            if value.is_some_and(|(_, v)| table.affinity.balanced(backend.ready(), &[], v) == Some(i)) {
                hit += 1;
            }
            black_box(set)
        })
    });
    g.finish();
    println!("cookie_balanced_moved_1000: the cookie named the new endpoint in {hit} of {moved} moves");
}

criterion_group!(benches, bench);
criterion_main!(benches);
