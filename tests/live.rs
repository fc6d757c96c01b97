//! The live Plane under concurrent publishing: readers never see a torn table. (An
//! integration test: it compiles Configs, and the data plane's own code never imports
//! compile.)

use std::sync::Arc;
use std::sync::atomic::Ordering;

use portico::compile::{Options, compile};
use portico::config::{Config, Protocol};
use portico::fixture::{self, Prefix};
use portico::proxy::live::Live;

/// Generation N routes `/` of host `h.test` to Service `gN`, and its only TLS host is
/// `gN.test`: a reader that ever sees routes of one generation with the certificates or
/// generation number of another has seen a torn table.
fn config_for(n: u64) -> Config {
    let ingress = fixture::ingress("default", "i")
        .class("portico")
        .tls(&[&format!("g{n}.test")], None)
        .rule("h.test", "/", Prefix, &format!("g{n}"), 80);
    compile(
        &fixture::snapshot([fixture::portico_class().into(), ingress.into()]),
        &Options::default(),
    )
}

#[test]
fn readers_see_whole_generations_while_publishing() {
    let live = Arc::new(Live::new());
    assert!(!live.is_ready());
    let configs: Vec<Config> = (1..=200).map(config_for).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let live = live.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = 0u64;
                let mut last = 0u64;
                // At least one non-empty read, however the threads are scheduled.
                while !stop.load(Ordering::Relaxed) || seen == 0 {
                    let plane = live.load();
                    let cfg = &plane.config;
                    if cfg.generation == 0 {
                        continue;
                    }
                    let route = cfg.routes.route("h.test", "/").expect("route");
                    let svc = &cfg.backend(route).expect("backend").service.name;
                    assert_eq!(plane.backends.len(), cfg.backends.len());
                    assert_eq!(*svc, format!("g{}", cfg.generation));
                    assert_eq!(
                        cfg.certs.sources.keys().next().map(String::as_str),
                        Some(format!("g{}.test", cfg.generation).as_str())
                    );
                    assert!(cfg.generation >= last, "generations only move forward");
                    last = cfg.generation;
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    for cfg in configs {
        live.publish(cfg);
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader ok") > 0);
    }
    assert_eq!(live.config().generation, 200);
    assert!(live.is_ready());
}

/// TLS clients for `proxy-ssl-*` settings are built when a Config is published and kept by
/// later Configs with the same setting (their pooled connections stay usable); a changed
/// setting gets a new client.
#[test]
fn upstream_tls_clients_survive_publishing_while_unchanged() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = fixture::self_signed_pem("ca.internal");
    let config = |name: &str, extra_host: &str| {
        let tls = fixture::ingress("default", "tls")
            .class("portico")
            .annotation("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-secret", "ca")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-name", name)
            .rule("tls.test", "/", Prefix, "svc", 80);
        let other = fixture::ingress("default", "other")
            .class("portico")
            .rule(extra_host, "/", Prefix, "svc", 80);
        compile(
            &fixture::snapshot([
                fixture::portico_class().into(),
                fixture::opaque_secret("default", "ca", &[("ca.crt", ca.as_bytes())]).into(),
                tls.into(),
                other.into(),
            ]),
            &Options::default(),
        )
    };
    let client = |live: &Live| {
        let plane = live.load();
        let route = plane.config.routes.route("tls.test", "/").unwrap().clone();
        let c = plane.upstream_tls.for_route(&route, Protocol::Https).unwrap().unwrap();
        c as *const _ as usize
    };
    let live = Live::new();
    live.publish(config("a.internal", "one.test"));
    let first = client(&live);
    // Another Ingress changes: the TLS setting does not, nor does its client.
    live.publish(config("a.internal", "two.test"));
    assert_eq!(client(&live), first);
    live.publish(config("b.internal", "two.test"));
    assert_ne!(client(&live), first);
    // Plain HTTP backends take no client.
    let plane = live.load();
    let route = plane.config.routes.route("tls.test", "/").unwrap().clone();
    assert!(plane.upstream_tls.for_route(&route, Protocol::Http).unwrap().is_none());
}
