//! HTTPRoute filters end to end through the real handler, over real sockets: echo pods behind
//! Portico's data plane, serving a Config whose routes carry filters compiled from the
//! conformance suite's filter JSON by `compile_filters`. (Routes come from Ingresses here,
//! with the filters put on their policies, until HTTPRoutes compile from manifests.)

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use portico::compile::gateway_filters::{Rule, compile_filters};
use portico::compile::{Options, compile};
use portico::config::route::RouteTableBuilder;
use portico::config::{Config, Route};
use portico::proxy::front::Front;
use portico::proxy::handler::Proxy;
use portico::proxy::listener::{self, Drain, Server};
use portico::proxy::live::Live;
use portico::proxy::upstream::Upstream;
use portico::proxy::{Settings, otel, policy};
use serde_json::{Value, json};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Portico's data plane on a loopback port, serving `config`. The returned sender keeps it
/// running.
async fn serve(config: Config) -> (SocketAddr, watch::Sender<bool>) {
    let live = Arc::new(Live::new());
    live.publish(config);
    let settings = Settings::default();
    let metrics = Arc::new(portico::metrics::Metrics::new());
    let proxy = Arc::new(Proxy {
        live: live.clone(),
        upstream: Upstream::new(&settings),
        settings: settings.clone(),
        metrics: metrics.clone(),
        access_log: false,
        affinity_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"gateway filters test"),
        auth: policy::auth::State::new(false),
        mirror: policy::mirror::State::new(false),
        access_sink: None,
        otel: otel::Exporter::new(live.clone(), &metrics),
    });
    let l = listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let server = Server {
        proxy,
        builder: Arc::new(listener::http_builder(&settings)),
        drain: Arc::new(Drain::default()),
        limit: Arc::new(Semaphore::new(100)),
        front: Front {
            proxy_protocol_timeout: Duration::from_secs(5),
        },
    };
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(listener::serve("http", l, None, server, stopped));
    (addr, stop)
}

/// A Config for host `gw.example` with one Prefix route per `(path, filters JSON)` to the
/// echo pods, plus a Service `mirror` (host `mirror.example`) at `mirror`; each route's
/// filters compiled with its path as the rule's PathPrefix match.
fn config(pods: &[SocketAddr], mirror: SocketAddr, rules: &[(&str, Value)]) -> Config {
    let mut text = vec![class(), service("web", pods), service("mirror", &[mirror])];
    text.push(annotated_ingress("mirror", "mirror.example", "/", "mirror", &[]));
    for (i, (path, _)) in rules.iter().enumerate() {
        text.push(annotated_ingress(&format!("rule-{i}"), "gw.example", path, "web", &[]));
    }
    let objects = text
        .iter()
        .flat_map(|t| portico::source::files::parse_manifests(t).unwrap())
        .collect::<Vec<_>>();
    let mut config = compile(&portico::fixture::snapshot(objects), &Options::default());
    let mirror_backend = config
        .backends
        .iter()
        .position(|b| b.service.name == "mirror")
        .expect("the mirror Service's backend");
    let mut table = RouteTableBuilder::default();
    let routes: Vec<Arc<Route>> = config
        .route_list
        .iter()
        .map(|r| {
            let mut r = (**r).clone();
            let path = r.path.as_ref().map(|p| p.path.clone()).unwrap_or_default();
            if let Some((_, raw)) = rules.iter().find(|(p, raw)| *p == path && raw != &json!([])) {
                let rule = Rule {
                    prefix: Some(&path),
                    has_backends: !raw.to_string().contains("RequestRedirect"),
                    ..Rule::default()
                };
                let mut resolve =
                    |b: &portico::compile::gateway_filters::BackendRef| (b.name == "mirror").then_some(mirror_backend);
                let filters = compile_filters(raw.as_array().unwrap(), &rule, &mut resolve).unwrap();
                let mut policy = (*r.policy).clone();
                policy.filters = Some(Arc::new(filters));
                r.policy = Arc::new(policy);
            }
            let r = Arc::new(r);
            table.add_path(r.clone());
            r
        })
        .collect();
    let (table, errors) = table.build();
    assert!(errors.is_empty(), "{errors:?}");
    config.routes = Arc::new(table);
    config.route_list = Arc::new(routes);
    config
}

fn send(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(path).header("host", "gw.example");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// What the echo pod saw of the request.
fn seen(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not an echo: {body}"))
}

/// The head of the next request that reaches `l`, lower-cased (answered with a 500 that
/// nobody must see).
async fn copy_received(l: &TcpListener) -> String {
    let (mut c, _) = l.accept().await.unwrap();
    let head = read_head(&mut c, &mut Vec::new()).await.expect("a request head");
    c.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    head.to_ascii_lowercase() + "\r\n"
}

#[tokio::test]
async fn httproute_filters_through_the_handler() {
    let pods = pods("web", 1).await;
    let mirror = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rules = [
        (
            "/headers",
            json!([
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                    "set": [{"name": "X-Header-Set", "value": "set-overwrites-values"}],
                    "add": [{"name": "X-Header-Add", "value": "add-appends-values"}],
                    "remove": ["X-Header-Remove"]}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                    "set": [{"name": "Content-Type", "value": "text/plain"}],
                    "add": [{"name": "X-Answer-Add", "value": "added"}]}}
            ]),
        ),
        (
            "/original-prefix",
            json!([{"type": "RequestRedirect", "requestRedirect": {
                "hostname": "example.org", "statusCode": 301,
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/replacement-prefix"}}}]),
        ),
        (
            "/prefix/one",
            json!([{"type": "URLRewrite", "urlRewrite": {
                "hostname": "one.example.org",
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/one"}}}]),
        ),
        (
            "/cors-1",
            json!([{"type": "CORS", "cors": {
                "allowOrigins": ["https://www.foo.com", "https://*.bar.com"],
                "allowMethods": ["GET", "OPTIONS"],
                "allowHeaders": ["x-header-1", "x-header-2"],
                "allowCredentials": true,
                "maxAge": 3600}}]),
        ),
        (
            "/mirror",
            json!([{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}]),
        ),
        ("/plain", json!([])),
    ];
    let (gw, _stop) = serve(config(&pods, mirror.local_addr().unwrap(), &rules)).await;

    // RequestHeaderModifier and ResponseHeaderModifier.
    let req = send(
        "GET",
        "/headers",
        &[
            ("x-header-set", "from-client"),
            ("x-header-remove", "gone"),
            ("x-other", "kept"),
        ],
    );
    let (status, headers, body) = request(gw, req).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let h = &seen(&body)["headers"];
    assert_eq!(h["x-header-set"], "set-overwrites-values");
    assert_eq!(h["x-header-add"], "add-appends-values");
    assert_eq!(h["x-other"], "kept");
    assert!(h.get("x-header-remove").is_none(), "{h}");
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["x-answer-add"], "added");

    // RequestRedirect, answered by Portico without the pod.
    let (status, headers, _) = request(gw, send("GET", "/original-prefix/lemon?x=1", &[]))
        .await
        .unwrap();
    assert_eq!(status, 301);
    assert_eq!(headers["location"], "http://example.org/replacement-prefix/lemon?x=1");

    // URLRewrite: the pod sees the new Host and path.
    let (status, _, body) = request(gw, send("GET", "/prefix/one/two?q=1", &[])).await.unwrap();
    assert_eq!(status, 200);
    let e = seen(&body);
    assert_eq!(e["target"], "/one/two?q=1");
    assert_eq!(e["headers"]["host"], "one.example.org");

    // CORS: the preflight is answered here; the actual request gets the fields.
    let preflight = send(
        "OPTIONS",
        "/cors-1",
        &[
            ("origin", "https://xpto.www.bar.com"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-header-1"),
        ],
    );
    let (status, headers, body) = request(gw, preflight).await.unwrap();
    assert_eq!(status, 204, "{body}");
    assert_eq!(headers["access-control-allow-origin"], "https://xpto.www.bar.com");
    assert_eq!(headers["access-control-allow-methods"], "GET, OPTIONS");
    assert_eq!(headers["access-control-allow-headers"], "x-header-1, x-header-2");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-max-age"], "3600");
    let (status, headers, body) = request(gw, send("GET", "/cors-1", &[("origin", "https://www.foo.com")]))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(seen(&body)["pod"], "web-0");
    assert_eq!(headers["access-control-allow-origin"], "https://www.foo.com");
    let (_, headers, _) = request(gw, send("GET", "/cors-1", &[("origin", "https://foobar.com")]))
        .await
        .unwrap();
    assert!(!headers.contains_key("access-control-allow-origin"));

    // RequestMirror: the client gets the pod's answer; the mirror gets a copy (its 500 is
    // dropped).
    let (status, _, body) = request(gw, send("GET", "/mirror/a?b=c", &[("x-mark", "1")]))
        .await
        .unwrap();
    assert_eq!((status, seen(&body)["pod"].as_str()), (200, Some("web-0")));
    let copy = copy_received(&mirror).await;
    assert!(copy.starts_with("get /mirror/a?b=c http/1.1\r\n"), "{copy}");
    assert!(
        copy.contains("\r\nx-mark: 1\r\n") && copy.contains("\r\nhost: gw.example\r\n"),
        "{copy}"
    );

    // A route without filters is served as before.
    let req = send(
        "GET",
        "/plain",
        &[("x-header-remove", "kept"), ("origin", "https://www.foo.com")],
    );
    let (status, headers, body) = request(gw, req).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen(&body)["headers"]["x-header-remove"], "kept");
    assert!(!headers.contains_key("access-control-allow-origin"));
    assert!(!headers.contains_key("x-answer-add"));
}

/// A pod that answers each request with its head as it arrived (every field line, in order),
/// so that a header added as a second field line shows.
async fn head_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_head(&mut c, &mut buf).await {
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{head}",
                        head.len()
                    );
                    if c.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The values of header `name` (any case) in a request head, in order, joined with `,` as
/// the conformance suite's echo server joins them; `None`: the header is absent.
fn field(head: &str, name: &str) -> Option<String> {
    let values: Vec<&str> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// Conformance test HTTPRouteBackendRequestHeaderModifier: the RequestHeaderModifier cases of
/// HTTPRouteRequestHeaderModifier, with each filter on the rule's only backendRef instead of
/// on the rule, through a Gateway from manifests.
#[tokio::test]
async fn request_header_modifier_on_a_backend_ref() {
    let pod = head_echo().await;
    let ns = "gateway-conformance-infra";
    let modifier = |m: &str| format!("      filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {m}}}]");
    let rule = |path: &str, m: &str| {
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs:\n    - name: infra-backend-v1\n      port: 8080\n{}",
            modifier(m)
        )
    };
    let rules = [
        rule("/set", "{set: [{name: X-Header-Set, value: set-overwrites-values}]}"),
        rule("/add", "{add: [{name: X-Header-Add, value: add-appends-values}]}"),
        rule("/remove", "{remove: [X-Header-Remove]}"),
        rule(
            "/multiple",
            "{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], \
             add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}, \
             {name: X-Header-Add-3, value: header-add-3}], remove: [X-Header-Remove-1, X-Header-Remove-2]}",
        ),
        rule(
            "/case-insensitivity",
            "{set: [{name: X-Header-Set, value: header-set}], add: [{name: X-Header-Add, value: header-add}], \
             remove: [X-Header-Remove]}",
        ),
    ]
    .join("\n");
    let manifests = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: same-namespace, namespace: {ns}}}\n\
         spec:\n  gatewayClassName: portico\n  listeners: [{{name: http, port: 80, protocol: HTTP}}]\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: request-header-modifier, namespace: {ns}}}\n\
         spec:\n  parentRefs: [{{name: same-namespace}}]\n  rules:\n{rules}\n"
    );
    let slice = portico::fixture::slice(ns, "infra-backend-v1-0", "infra-backend-v1")
        .port("http", pod.port().into())
        .endpoint(&pod.ip().to_string());
    let backend = portico::fixture::yaml(&[
        portico::fixture::service(ns, "infra-backend-v1")
            .port("http", 8080)
            .into(),
        slice.into(),
    ]);
    let p = Portico::start(
        &[
            ("class.yaml", support::gateway_api::GATEWAY_CLASS.to_string()),
            ("backend.yaml", backend),
            ("gateway.yaml", manifests),
        ],
        &[],
    )
    .await;
    assert_eq!(
        support::gateway_api::route_conditions(&p.routes().await, "request-header-modifier"),
        ["Accepted=true:Accepted", "ResolvedRefs=true:ResolvedRefs"]
    );

    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
    );
    // (path, request headers, headers the pod must see, headers it must not see)
    let cases: [Case; 7] = [
        (
            "/set",
            &[("Some-Other-Header", "val")],
            &[("Some-Other-Header", "val"), ("X-Header-Set", "set-overwrites-values")],
            &[],
        ),
        (
            "/set",
            &[("Some-Other-Header", "val"), ("X-Header-Set", "some-other-value")],
            &[("Some-Other-Header", "val"), ("X-Header-Set", "set-overwrites-values")],
            &[],
        ),
        (
            "/add",
            &[("Some-Other-Header", "val")],
            &[("Some-Other-Header", "val"), ("X-Header-Add", "add-appends-values")],
            &[],
        ),
        (
            "/add",
            &[("Some-Other-Header", "val"), ("X-Header-Add", "some-other-value")],
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Add", "some-other-value,add-appends-values"),
            ],
            &[],
        ),
        ("/remove", &[("X-Header-Remove", "val")], &[], &["X-Header-Remove"]),
        (
            "/multiple",
            &[
                ("X-Header-Set-2", "set-val-2"),
                ("X-Header-Add-2", "add-val-2"),
                ("X-Header-Remove-2", "remove-val-2"),
                ("Another-Header", "another-header-val"),
            ],
            &[
                ("X-Header-Set-1", "header-set-1"),
                ("X-Header-Set-2", "header-set-2"),
                ("X-Header-Add-1", "header-add-1"),
                ("X-Header-Add-2", "add-val-2,header-add-2"),
                ("X-Header-Add-3", "header-add-3"),
                ("Another-Header", "another-header-val"),
            ],
            &["X-Header-Remove-1", "X-Header-Remove-2"],
        ),
        (
            "/case-insensitivity",
            &[
                ("x-header-set", "original-val-set"),
                ("x-header-add", "original-val-add"),
                ("x-header-remove", "original-val-remove"),
                ("Another-Header", "another-header-val"),
            ],
            &[
                ("X-Header-Set", "header-set"),
                ("X-Header-Add", "original-val-add,header-add"),
                ("Another-Header", "another-header-val"),
            ],
            &["X-Header-Remove"],
        ),
    ];
    for (path, sent, expected, absent) in cases {
        let mut req = Request::builder().uri(path).header("host", "gw.example");
        for (n, v) in sent {
            req = req.header(*n, *v);
        }
        let (status, _, head) = request(p.http, req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(status, 200, "{path}: {head}");
        assert!(head.starts_with(&format!("GET {path} HTTP/1.1")), "{head}");
        for (n, v) in expected {
            assert_eq!(field(&head, n).as_deref(), Some(*v), "{path} {n}:\n{head}");
        }
        for n in absent {
            assert_eq!(field(&head, n), None, "{path} {n}:\n{head}");
        }
    }
}
