//! Gateway API in manifests mode: GatewayClass + Gateway + HTTPRoute over real sockets, on
//! the HTTP and HTTPS listeners, with certificates chosen by SNI.

mod support;

use portico::fixture::{self, yaml};
use serde_json::{Value, json};
use support::gateway_api::{GATEWAY_CLASS as CLASS, route_conditions as parent_reasons};
use support::*;

/// Gateway `default/gw`: `http` (80, any host), `wild` (8080, `*.example.com`, routes from
/// every namespace), and HTTPS listeners `rsa` (rsa.example.com) and `ec` (*.example.org).
const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: portico
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - name: wild
    port: 8080
    protocol: HTTP
    hostname: "*.example.com"
    allowedRoutes: {namespaces: {from: All}}
  - name: rsa
    port: 443
    protocol: HTTPS
    hostname: rsa.example.com
    tls: {certificateRefs: [{name: rsa}]}
  - name: ec
    port: 443
    protocol: HTTPS
    hostname: "*.example.org"
    tls: {certificateRefs: [{name: ec}]}
"#;

fn route(name: &str, ns: &str, parent: &str, hostnames: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{parent}]\n  hostnames: {hostnames}\n  rules:\n{rules}\n"
    )
}

/// Route `default/NAME` on listener `http`, for host `NAME.test`.
fn on_http(name: &str, rules: &str) -> String {
    route(
        name,
        "default",
        "{name: gw, sectionName: http}",
        &format!("[{name}.test]"),
        rules,
    )
}

fn to(service: &str) -> String {
    format!("  - backendRefs: [{{name: {service}, port: 80}}]")
}

/// A Service `name` in namespace `ns` with one slice listing `pods`.
fn service_in(ns: &str, name: &str, pods: &[std::net::SocketAddr]) -> String {
    let mut slice = fixture::slice(ns, &format!("{name}-0"), name).port("http", pods[0].port().into());
    for p in pods {
        slice = slice.endpoint(&p.ip().to_string());
    }
    yaml(&[fixture::service(ns, name).port("http", 80).into(), slice.into()])
}

fn pod(answer: &str) -> Value {
    json(answer)["pod"].clone()
}

async fn start(files: &[(&str, String)]) -> Portico {
    start_wild(files).await.0
}

/// [`start`], with listener `wild` on a free port instead of 8080: Portico opens a socket
/// of its own for it, whose address is returned.
async fn start_wild(files: &[(&str, String)]) -> (Portico, std::net::SocketAddr) {
    let port = free_port();
    let mut all = vec![
        ("class.yaml", CLASS.to_string()),
        ("gateway.yaml", GATEWAY.replace("port: 8080", &format!("port: {port}"))),
        (
            "secrets.yaml",
            tls_secret("default", "rsa", "rsa.crt", "rsa-pkcs1.key")
                + &tls_secret("default", "ec", "ec.crt", "ec-sec1.key"),
        ),
    ];
    all.extend(files.iter().cloned());
    let p = Portico::start(&all, &[]).await;
    let wild = std::net::SocketAddr::new(p.http.ip(), port);
    listening(wild).await;
    (p, wild)
}

#[tokio::test]
async fn http_and_https_listeners_serve_routes_with_the_certificate_sni_picks() {
    let web = pods("web", 1).await;
    let api = pods("api", 1).await;
    let p = start(&[
        ("svc.yaml", service("web", &web) + &service("api", &api)),
        ("plain.yaml", on_http("plain", &to("web"))),
        (
            "secure.yaml",
            route(
                "secure",
                "default",
                "{name: gw, sectionName: rsa}, {name: gw, sectionName: ec}",
                "[rsa.example.com, b.example.org]",
                &to("api"),
            ),
        ),
    ])
    .await;

    let (status, _, body) = get(p.http, "plain.test", "/x").await.unwrap();
    assert_eq!((status, pod(&body)), (200, json!("web-0")));
    assert_eq!(get(p.http, "other.test", "/x").await.unwrap().0, 404);

    let a = tls_get(p.https, Some("rsa.example.com"), "/", false).await.unwrap();
    assert_eq!(
        (a.status, a.cert_cn.as_str(), pod(&a.body)),
        (200, "rsa.example.com", json!("api-0"))
    );
    let b = tls_get(p.https, Some("b.example.org"), "/", true).await.unwrap();
    assert_eq!(
        (b.status, b.cert_cn.as_str(), pod(&b.body)),
        (200, "*.example.com", json!("api-0"))
    );
    // A route attached to HTTPS listeners only is not served over plain HTTP: the listener
    // on port 80 has no such route.
    assert_eq!(get(p.http, "rsa.example.com", "/").await.unwrap().0, 404);

    let routes = p.routes().await;
    let entry = &routes["hosts"]["plain.test"][0];
    assert_eq!(entry["ingress"], "default/plain");
    assert_eq!(entry["pathType"], "Prefix");
    assert_eq!(
        entry["gateway"],
        json!({"kind": "HTTPRoute", "object": {"namespace": "default", "name": "plain"}, "rule": 0,
               "via": [{"gateway": {"namespace": "default", "name": "gw"}, "listener": "http"}]})
    );
    let via: Vec<&str> = routes["hosts"]["rsa.example.com"][0]["gateway"]["via"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["listener"].as_str().unwrap())
        .collect();
    assert_eq!(via, ["rsa"]);
    assert_eq!(
        parent_reasons(&routes, "plain"),
        ["Accepted=true:Accepted", "ResolvedRefs=true:ResolvedRefs"]
    );
    let gw = &routes["gatewayApi"]["gateways"][0];
    assert_eq!(gw["conditions"][1]["reason"], "Programmed");
    let attached: Vec<(String, u64)> = gw["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["attachedRoutes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attached,
        [
            ("http".into(), 1),
            ("wild".into(), 0),
            ("rsa".into(), 1),
            ("ec".into(), 1)
        ]
    );
}

#[tokio::test]
async fn listener_hostnames_intersect_with_route_hostnames() {
    let web = pods("web", 1).await;
    let (p, wild) = start_wild(&[
        ("svc.yaml", service("web", &web)),
        (
            "r.yaml",
            route(
                "r",
                "default",
                "{name: gw, sectionName: wild}",
                "[a.example.com, other.org]",
                &to("web"),
            ),
        ),
        (
            "none.yaml",
            route(
                "none",
                "default",
                "{name: gw, sectionName: wild}",
                "[other.org]",
                &to("web"),
            ),
        ),
    ])
    .await;
    assert_eq!(get(wild, "a.example.com", "/").await.unwrap().0, 200);
    assert_eq!(
        get(wild, "other.org", "/").await.unwrap().0,
        404,
        "outside the listener's hostname"
    );
    // Listener `wild`'s routes are served on its port only.
    assert_eq!(get(p.http, "a.example.com", "/").await.unwrap().0, 404);
    let routes = p.routes().await;
    assert_eq!(
        parent_reasons(&routes, "none")[0],
        "Accepted=false:NoMatchingListenerHostname"
    );
}

#[tokio::test]
async fn allowed_routes_and_reference_grants_decide_what_crosses_namespaces() {
    let web = pods("web", 1).await;
    let other = pods("other", 1).await;
    let p = start(&[
        ("svc.yaml", service("web", &web) + &service_in("team", "shop", &other)),
        // Listener http takes routes from its own namespace only.
        (
            "foreign.yaml",
            route(
                "foreign",
                "team",
                "{name: gw, namespace: default, sectionName: http}",
                "[foreign.test]",
                &to("shop"),
            ),
        ),
        // A backend in another namespace needs a ReferenceGrant there.
        (
            "cross.yaml",
            on_http("cross", "  - backendRefs: [{name: shop, namespace: team, port: 80}]"),
        ),
    ])
    .await;
    assert_eq!(get(p.http, "foreign.test", "/").await.unwrap().0, 404);
    let (status, _, body) = get(p.http, "cross.test", "/").await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(
        !body.contains("team"),
        "nothing about the cluster in the answer: {body}"
    );
    let routes = p.routes().await;
    assert_eq!(
        parent_reasons(&routes, "foreign")[0],
        "Accepted=false:NotAllowedByListeners"
    );
    assert_eq!(
        parent_reasons(&routes, "cross")[1],
        "ResolvedRefs=false:RefNotPermitted"
    );

    let generation = routes["generation"].as_u64().unwrap();
    p.write(
        "grant.yaml",
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: from-default, namespace: team}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]\n  to: [{group: \"\", kind: Service, name: shop}]\n",
    );
    p.wait_generation(generation + 1).await;
    let (status, _, body) = get(p.http, "cross.test", "/").await.unwrap();
    assert_eq!((status, pod(&body)), (200, json!("other-0")));
    assert_eq!(
        parent_reasons(&p.routes().await, "cross")[1],
        "ResolvedRefs=true:ResolvedRefs"
    );
}

#[tokio::test]
async fn bad_objects_are_diagnosed_and_the_rest_keeps_serving() {
    let web = pods("web", 1).await;
    let broken_gateway = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: broken, namespace: default}
spec:
  gatewayClassName: portico
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: broken.test
    tls: {certificateRefs: [{name: missing}]}
"#;
    let p = start(&[
        ("svc.yaml", service("web", &web)),
        ("broken.yaml", broken_gateway.to_string()),
        ("ok.yaml", on_http("ok", &to("web"))),
        ("gone.yaml", on_http("gone", &to("nope"))),
        (
            "partial.yaml",
            on_http("partial", "  - matches: [{path: {value: /h}, headers: [{name: x, value: y}]}]\n    backendRefs: [{name: web, port: 80}]\n  - matches: [{path: {type: Exact, value: /e}}]\n    backendRefs: [{name: web, port: 80}]"),
        ),
    ])
    .await;
    assert_eq!(get(p.http, "ok.test", "/").await.unwrap().0, 200);
    // A reference to a Service that does not exist answers 500, as the spec asks.
    let (status, _, body) = get(p.http, "gone.test", "/").await.unwrap();
    assert_eq!(status, 500);
    assert!(
        !body.contains("nope"),
        "nothing about the cluster in the answer: {body}"
    );
    // The rule with a header match is served with its condition only.
    assert_eq!(get(p.http, "partial.test", "/h").await.unwrap().0, 404);
    assert_eq!(ask(&p, "GET", "partial.test", "/h", &[("x", "y")]).await.0, 200);
    assert_eq!(get(p.http, "partial.test", "/e").await.unwrap().0, 200);

    let routes = p.routes().await;
    assert_eq!(parent_reasons(&routes, "gone")[1], "ResolvedRefs=false:BackendNotFound");
    assert!(diagnostics_of(&routes, "broken").iter().any(|m| m.contains("missing")));
    let broken = routes["gatewayApi"]["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"]["name"] == "broken")
        .unwrap();
    assert_eq!(broken["conditions"][0]["reason"], "ListenersNotValid");
    assert_eq!(
        broken["listeners"][0]["conditions"][2]["reason"],
        "InvalidCertificateRef"
    );
}

/// An upstream that answers with the HTTP version it was spoken to in (HTTP/1.1, or HTTP/2
/// with prior knowledge).
async fn version_backend() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let body = format!("{:?} {}", req.version(), req.uri().path());
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from(body),
                    )))
                });
                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(s), svc).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn grpc_routes_reach_their_service_over_http2() {
    use http_body_util::BodyExt;
    let grpc = version_backend().await;
    let grpc_route = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  hostnames: [grpc.test]
  rules:
  - matches: [{method: {service: echo.Echo, method: Ping}}]
    backendRefs: [{name: grpc, port: 80}]
  - matches: [{method: {service: echo.Echo, method: Other}, headers: [{name: x-tenant, value: a}]}]
    backendRefs: [{name: grpc, port: 80}]
  - matches: [{method: {type: RegularExpression, method: "Stream.*"}}]
    backendRefs: [{name: grpc, port: 80}]
"#;
    let p = start(&[
        ("svc.yaml", service("grpc", &[grpc])),
        ("grpc.yaml", grpc_route.to_string()),
    ])
    .await;
    let mut h2 = h2c(p.http).await;
    let mut call_with = |path: &str, tenant: Option<&str>| {
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("http://grpc.test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(t) = tenant {
            req = req.header("x-tenant", t);
        }
        h2.send_request(req.body(http_body_util::Full::new(bytes::Bytes::new())).unwrap())
    };
    let mut call = |path: &str| call_with(path, None);
    let resp = call("/echo.Echo/Ping").await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "HTTP/2.0 /echo.Echo/Ping");
    assert_eq!(call("/echo.Echo/Other").await.unwrap().status(), 404);
    assert_eq!(call("/any.Svc/StreamAll").await.unwrap().status(), 200);
    assert_eq!(call("/any.Svc/Unary").await.unwrap().status(), 404);
    // A header match: served with the header only.
    assert_eq!(call_with("/echo.Echo/Other", Some("a")).await.unwrap().status(), 200);
    assert_eq!(call_with("/echo.Echo/Other", Some("b")).await.unwrap().status(), 404);
    assert_eq!(
        parent_reasons(&p.routes().await, "echo"),
        ["Accepted=true:Accepted", "ResolvedRefs=true:ResolvedRefs"]
    );
}

/// One request with a method and headers: the status and the answering pod (or the body).
async fn ask(p: &Portico, method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    ask_at(p.http, method, host, path, headers).await
}

async fn ask_at(
    addr: std::net::SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = http::Request::builder().method(method).uri(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::new())).unwrap();
    let (status, _, body) = request(addr, req).await.unwrap();
    let who = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["pod"].as_str().map(String::from))
        .unwrap_or(body);
    (status, who)
}

type Headers<'a> = &'a [(&'a str, &'a str)];

#[tokio::test]
async fn header_query_method_and_regex_matches_choose_the_rule() {
    let web = pods("web", 1).await;
    let api = pods("api", 1).await;
    let post = pods("post", 1).await;
    let rules = r#"  - matches:
    - {path: {value: /m}, headers: [{name: X-Version, value: "2"}]}
    - {path: {value: /m}, queryParams: [{name: v, type: RegularExpression, value: "[2-9]"}]}
    backendRefs: [{name: api, port: 80}]
  - matches: [{path: {value: /m}, method: POST}]
    backendRefs: [{name: post, port: 80}]
  - matches: [{path: {type: RegularExpression, value: "/r/[0-9]+"}}]
    backendRefs: [{name: api, port: 80}]
  - backendRefs: [{name: web, port: 80}]"#;
    let (p, wild) = start_wild(&[
        (
            "svc.yaml",
            service("web", &web) + &service("api", &api) + &service("post", &post),
        ),
        ("m.yaml", on_http("m", rules)),
        // Gateway wildcards match any number of labels: the listener's and the route's.
        (
            "deep.yaml",
            route("deep", "default", "{name: gw, sectionName: wild}", "[]", &to("web")),
        ),
        (
            "net.yaml",
            route(
                "net",
                "default",
                "{name: gw, sectionName: http}",
                "[\"*.example.net\"]",
                &to("api"),
            ),
        ),
    ])
    .await;
    let cases: [(&str, &str, Headers, &str); 9] = [
        ("GET", "/m", &[], "web-0"),
        ("GET", "/m", &[("x-version", "2")], "api-0"),
        ("GET", "/m", &[("x-version", "3")], "web-0"),
        ("GET", "/m?v=7", &[], "api-0"),
        ("GET", "/m?v=1", &[], "web-0"),
        ("POST", "/m", &[], "post-0"),
        // A method match ranks before header matches (the spec's precedence).
        ("POST", "/m", &[("x-version", "2")], "post-0"),
        ("GET", "/r/42", &[], "api-0"),
        ("GET", "/r/x", &[], "web-0"),
    ];
    for (method, path, headers, pod) in cases {
        assert_eq!(
            ask(&p, method, "m.test", path, headers).await,
            (200, pod.to_string()),
            "{method} {path} {headers:?}"
        );
    }
    assert_eq!(
        ask_at(wild, "GET", "a.b.example.com", "/", &[]).await,
        (200, "web-0".into())
    );
    assert_eq!(ask_at(wild, "GET", "example.com", "/", &[]).await.0, 404);
    assert_eq!(ask(&p, "GET", "x.y.example.net", "/", &[]).await, (200, "api-0".into()));
    assert_eq!(ask(&p, "GET", "example.net", "/", &[]).await.0, 404);
    let routes = p.routes().await;
    assert_eq!(
        parent_reasons(&routes, "m"),
        ["Accepted=true:Accepted", "ResolvedRefs=true:ResolvedRefs"]
    );
    assert!(diagnostics_of(&routes, "m").is_empty(), "{routes:#}");
}

#[tokio::test]
async fn weighted_backends_share_requests_and_invalid_ones_answer_500() {
    let web = pods("web", 1).await;
    let api = pods("api", 1).await;
    let p = start(&[
        ("svc.yaml", service("web", &web) + &service("api", &api)),
        (
            "split.yaml",
            on_http(
                "split",
                "  - backendRefs: [{name: web, port: 80, weight: 1}, {name: api, port: 80, weight: 3}]",
            ),
        ),
        (
            "half.yaml",
            on_http(
                "half",
                "  - backendRefs: [{name: web, port: 80}, {name: missing, port: 80}]",
            ),
        ),
        (
            "zero.yaml",
            on_http("zero", "  - backendRefs: [{name: web, port: 80, weight: 0}]"),
        ),
        ("none.yaml", on_http("none", "  - matches: [{path: {value: /}}]")),
    ])
    .await;
    let mut web_hits = 0;
    for _ in 0..100 {
        match ask(&p, "GET", "split.test", "/", &[]).await {
            (200, pod) if pod == "web-0" => web_hits += 1,
            (200, pod) => assert_eq!(pod, "api-0"),
            other => panic!("{other:?}"),
        }
    }
    // A quarter, give or take what the threads' interleaving does to the sequence.
    assert!((10..=40).contains(&web_hits), "{web_hits} of 100 to web");

    let mut refused = 0;
    for _ in 0..40 {
        match ask(&p, "GET", "half.test", "/", &[]).await {
            (200, pod) => assert_eq!(pod, "web-0"),
            (500, body) => {
                assert!(!body.contains("missing"), "{body}");
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!((8..=32).contains(&refused), "{refused} of 40 refused");
    // Every weight 0, or no backendRefs at all: 500.
    assert_eq!(ask(&p, "GET", "zero.test", "/", &[]).await.0, 500);
    assert_eq!(ask(&p, "GET", "none.test", "/", &[]).await.0, 500);

    let routes = p.routes().await;
    assert_eq!(
        parent_reasons(&routes, "half"),
        ["Accepted=true:Accepted", "ResolvedRefs=false:BackendNotFound"]
    );
    assert_eq!(parent_reasons(&routes, "split")[1], "ResolvedRefs=true:ResolvedRefs");
}

/// An upstream that sends the target of each request it gets to the channel, and answers
/// 200.
async fn recorder() -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string();
                let _ = tx.send(line);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn filters_change_requests_and_answers_redirect_and_mirror() {
    let web = pods("web", 1).await;
    let (copies, mut mirrored) = recorder().await;
    let rules = r#"  - matches: [{path: {value: /h}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Rule, value: "1"}]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: X-Answer, value: "2"}]}}
    backendRefs:
    - name: web
      port: 80
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Backend, value: web}]}}]
  - matches: [{path: {value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: new.test, statusCode: 301}}]
  - matches: [{path: {value: /api}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {value: /copy}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: copies, port: 80}}}]
    backendRefs: [{name: web, port: 80}]"#;
    let p = start(&[
        ("svc.yaml", service("web", &web) + &service("copies", &[copies])),
        ("f.yaml", on_http("f", rules)),
        (
            "lost.yaml",
            on_http(
                "lost",
                "  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: missing, port: 80}}}]\n    backendRefs: [{name: web, port: 80}]",
            ),
        ),
        (
            "bad.yaml",
            on_http(
                "bad",
                "  - filters: [{type: Teleport}]\n    backendRefs: [{name: web, port: 80}]",
            ),
        ),
    ])
    .await;
    let (status, headers, body) = get(p.http, "f.test", "/h").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let seen = &json(&body)["headers"];
    assert_eq!((&seen["x-rule"], &seen["x-backend"]), (&json!("1"), &json!("web")));
    assert_eq!(headers["x-answer"], "2");

    let (status, headers, _) = get(p.http, "f.test", "/old/page").await.unwrap();
    assert_eq!(status, 301);
    assert_eq!(headers["location"], "http://new.test/old/page");

    let (_, _, body) = get(p.http, "f.test", "/api/users").await.unwrap();
    assert_eq!(json(&body)["target"], "/v2/users");

    assert_eq!(get(p.http, "f.test", "/copy/me").await.unwrap().0, 200);
    let copy = tokio::time::timeout(std::time::Duration::from_secs(10), mirrored.recv()).await;
    assert_eq!(copy.ok().flatten().as_deref(), Some("GET /copy/me HTTP/1.1"));

    // A mirror that does not resolve is dropped; the rule serves.
    assert_eq!(get(p.http, "lost.test", "/").await.unwrap().0, 200);
    // Filters that cannot be served leave their rule out.
    assert_eq!(get(p.http, "bad.test", "/").await.unwrap().0, 404);
    let routes = p.routes().await;
    assert_eq!(
        parent_reasons(&routes, "f"),
        ["Accepted=true:Accepted", "ResolvedRefs=true:ResolvedRefs"]
    );
    assert_eq!(parent_reasons(&routes, "lost")[1], "ResolvedRefs=false:BackendNotFound");
    assert_eq!(parent_reasons(&routes, "bad")[0], "Accepted=false:UnsupportedValue");
}

#[tokio::test]
async fn route_timeouts_bound_the_wait_for_the_upstream() {
    let web = pods("web", 1).await;
    let rules = "  - matches: [{path: {value: /sleep}}]\n    timeouts: {request: 300ms}\n    backendRefs: [{name: web, port: 80}]\n  - matches: [{path: {value: /long}}]\n    timeouts: {request: 0s}\n    backendRefs: [{name: web, port: 80}]";
    let p = start(&[
        ("svc.yaml", service("web", &web)),
        ("t.yaml", on_http("t", rules)),
        (
            "bad.yaml",
            on_http(
                "bad",
                "  - timeouts: {request: soon}\n    backendRefs: [{name: web, port: 80}]",
            ),
        ),
    ])
    .await;
    assert_eq!(get(p.http, "t.test", "/sleep/5000").await.unwrap().0, 504);
    assert_eq!(get(p.http, "t.test", "/sleep/0").await.unwrap().0, 200);
    let routes = p.routes().await;
    assert_eq!(parent_reasons(&routes, "bad")[0], "Accepted=false:UnsupportedValue");
    assert_eq!(get(p.http, "bad.test", "/").await.unwrap().0, 404);
}
