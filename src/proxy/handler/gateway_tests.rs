//! The handler's route lookup with Gateway API routes, over real sockets: conditions pick
//! the route (falling through to less specific rules), weighted sets pick the backend, and
//! refused shares answer 500. (Such routes come from manifests once the Gateway API compile
//! lands; until then the Config is built here by hand.)

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::Proxy;
use crate::config::route::{Conditions, PathRule, PathType, RouteRequest, RouteTableBuilder, Weighted, WeightedChoice};
use crate::config::{Backend, Config, Endpoint, HostPattern, PortRef, Route, Target};
use crate::model::ObjectKey;
use crate::proxy::front::Front;
use crate::proxy::listener::{self, Drain, Server};
use crate::proxy::live::Live;
use crate::proxy::upstream::Upstream;
use crate::proxy::{Settings, policy};

/// Two Services `one` and `two` (backends 0 and 1), each with an echo pod named as the
/// Service, and one route for each (the pattern the Gateway routes below copy).
async fn backends() -> Config {
    let mut cfg = Config::default();
    let mut list = Vec::new();
    for (id, name) in ["one", "two"].into_iter().enumerate() {
        let addr = crate::demo::spawn_echo("127.0.0.1:0".parse().unwrap(), name)
            .await
            .unwrap();
        let service = ObjectKey::new("default", name);
        cfg.backends.push(Arc::new(Backend {
            target: Target::Endpoints {
                ready: Arc::new([Endpoint {
                    addr,
                    target: None,
                    zone: None,
                }]),
                terminating: Arc::new([]),
            },
            ..Backend::unavailable(service.clone(), PortRef::Number(80), String::new())
        }));
        list.push(Arc::new(Route {
            id,
            ingress: ObjectKey::new("default", "route"),
            host: HostPattern::Any,
            path: None,
            backend: id,
            service,
            ssl_redirect: false,
            policy: Arc::default(),
            client_auth: None,
            canary: None,
            conditions: None,
            weighted: None,
        }));
    }
    cfg.route_list = Arc::new(list);
    cfg
}

/// A Gateway-style route of `cfg`'s Service `service` on `gw.test`.
fn route(cfg: &Config, service: &str, path: (PathType, &str), conditions: Option<Conditions>) -> Route {
    let of = cfg
        .route_list
        .iter()
        .find(|r| r.service.name == service)
        .expect("service");
    Route {
        host: HostPattern::gateway("gw.test").unwrap(),
        path: Some(PathRule {
            path: path.1.into(),
            path_type: path.0,
            regex: None,
        }),
        conditions: conditions.map(Arc::new),
        ..(**of).clone()
    }
}

fn header(name: &str, value: &str) -> Conditions {
    let mut c = Conditions::default();
    c.add_header(name, None, value).unwrap();
    c
}

/// `cfg` with these routes (ids assigned, weighted choices listed too) as its whole table.
fn with_routes(mut cfg: Config, routes: Vec<Route>) -> Config {
    let mut list: Vec<Arc<Route>> = Vec::new();
    let mut table = RouteTableBuilder::default();
    for mut r in routes {
        if let Some(w) = &r.weighted {
            let choices = w
                .choices
                .iter()
                .map(|c| WeightedChoice {
                    weight: c.weight,
                    route: c.route.as_ref().map(|cr| {
                        let cr = Arc::new(Route {
                            id: list.len(),
                            ..(**cr).clone()
                        });
                        list.push(cr.clone());
                        cr
                    }),
                })
                .collect();
            r.weighted = Some(Arc::new(Weighted::new(choices)));
        }
        r.id = list.len();
        let r = Arc::new(r);
        list.push(r.clone());
        table.add_path(r);
    }
    let (table, errors) = table.build();
    assert!(errors.is_empty());
    cfg.routes = Arc::new(table);
    cfg.route_list = Arc::new(list);
    cfg
}

/// Serves `cfg` on a loopback port.
async fn serve(cfg: Config) -> SocketAddr {
    let live = Arc::new(Live::new());
    live.publish(cfg);
    let settings = Settings::default();
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let proxy = Arc::new(Proxy {
        live: live.clone(),
        upstream: Upstream::new(&settings),
        settings: settings.clone(),
        metrics: metrics.clone(),
        access_log: false,
        affinity_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"0123456789abcdef"),
        auth: policy::auth::State::new(false),
        mirror: policy::mirror::State::new(false),
        access_sink: None,
        otel: crate::proxy::otel::Exporter::new(live.clone(), &metrics),
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = Server {
        proxy,
        builder: Arc::new(listener::http_builder(&settings)),
        drain: Arc::new(Drain::default()),
        limit: Arc::new(Semaphore::new(64)),
        front: Front {
            proxy_protocol_timeout: std::time::Duration::from_secs(5),
        },
    };
    let (stop, rx) = watch::channel(false);
    // The sender lives as long as the test's runtime: the listener keeps serving.
    std::mem::forget(stop);
    tokio::spawn(listener::serve("http", l, None, server, rx));
    addr
}

/// Status and body of one HTTP/1.1 request.
async fn call(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

/// Which echo pod answered (`""`: none).
async fn who(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> &'static str {
    let (status, text) = call(addr, method, target, headers).await;
    match (status, text.split("\r\n\r\n").nth(1).unwrap_or("")) {
        (200, b) if b.contains("\"one\"") => "one",
        (200, b) if b.contains("\"two\"") => "two",
        _ => "",
    }
}

#[tokio::test]
async fn conditions_choose_the_route_and_fall_through_to_less_specific_rules() {
    let cfg = backends().await;
    let mut post = Conditions::default();
    post.set_method("POST").unwrap();
    let mut whale = Conditions::default();
    whale.add_query("animal", None, "whale").unwrap();
    let routes = vec![
        route(&cfg, "one", (PathType::Prefix, "/"), None),
        route(&cfg, "two", (PathType::Prefix, "/v2"), Some(header("version", "two"))),
        route(&cfg, "two", (PathType::Prefix, "/"), Some(post)),
        route(&cfg, "two", (PathType::Prefix, "/"), Some(whale)),
    ];
    let addr = serve(with_routes(cfg, routes)).await;
    assert_eq!(who(addr, "GET", "/v2/x", &[("Version", "two")]).await, "two");
    // The longer path's header fails: the request falls through to `/`.
    assert_eq!(who(addr, "GET", "/v2/x", &[]).await, "one");
    assert_eq!(who(addr, "POST", "/v2/x", &[]).await, "two");
    assert_eq!(who(addr, "GET", "/?animal=whale", &[]).await, "two");
    assert_eq!(who(addr, "GET", "/?animal=dolphin", &[]).await, "one");
    // Nothing for another host.
    let (status, _) = call(addr, "GET", "http://other.test/", &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_request_matching_no_rule_of_its_host_is_404() {
    let cfg = backends().await;
    let routes = vec![route(
        &cfg,
        "one",
        (PathType::Prefix, "/"),
        Some(header("version", "one")),
    )];
    let addr = serve(with_routes(cfg, routes)).await;
    assert_eq!(who(addr, "GET", "/", &[("version", "one")]).await, "one");
    assert_eq!(call(addr, "GET", "/", &[]).await.0, 404);
}

#[tokio::test]
async fn weighted_backends_share_requests_and_refused_shares_answer_500() {
    let cfg = backends().await;
    let choice = |weight, service: Option<&str>| WeightedChoice {
        weight,
        route: service.map(|s| Arc::new(route(&cfg, s, (PathType::Prefix, "/"), None))),
    };
    let mut split = route(&cfg, "one", (PathType::Exact, "/split"), None);
    split.weighted = Some(Arc::new(Weighted::new(vec![
        choice(1, Some("one")),
        choice(1, Some("two")),
    ])));
    let mut only_two = route(&cfg, "one", (PathType::Exact, "/zero"), None);
    only_two.weighted = Some(Arc::new(Weighted::new(vec![
        choice(0, Some("one")),
        choice(5, Some("two")),
    ])));
    let mut all_zero = route(&cfg, "one", (PathType::Exact, "/none"), None);
    all_zero.weighted = Some(Arc::new(Weighted::new(vec![
        choice(0, Some("one")),
        choice(0, Some("two")),
    ])));
    let mut invalid = route(&cfg, "one", (PathType::Exact, "/invalid"), None);
    invalid.weighted = Some(Arc::new(Weighted::new(vec![choice(3, None)])));
    let addr = serve(with_routes(cfg, vec![split, only_two, all_zero, invalid])).await;
    let mut seen = std::collections::HashMap::new();
    for _ in 0..64 {
        *seen.entry(who(addr, "GET", "/split", &[]).await).or_insert(0) += 1;
    }
    // The data plane's pick sequence halves any run of requests to within a few.
    for side in ["one", "two"] {
        assert!((29..=35).contains(&seen.get(side).copied().unwrap_or(0)), "{seen:?}");
    }
    assert_eq!(seen.get(""), None);
    for _ in 0..16 {
        assert_eq!(who(addr, "GET", "/zero", &[]).await, "two");
    }
    assert_eq!(call(addr, "GET", "/none", &[]).await.0, 500);
    assert_eq!(call(addr, "GET", "/invalid", &[]).await.0, 500);
}

#[test]
fn route_request_reads_method_headers_and_query() {
    let req = http::Request::post("/p?a=1").header("x", "y").body(()).unwrap();
    let r = RouteRequest::of(&req);
    assert_eq!((r.method, r.query), ("POST", Some("a=1")));
    assert_eq!(
        r.headers.and_then(|h| h.get("x")).map(|v| v.as_bytes()),
        Some(&b"y"[..])
    );
}
