//! Gateway listeners as the spec has them, over real sockets: a route is served only through
//! the listeners it is attached to (by port, protocol and the most specific hostname), each
//! listener port is a socket of its own, redirects keep the listener's port, and an HTTPS
//! request for another listener's host than its SNI's is answered 421. The conformance
//! suite's tests GatewayHTTPListenerIsolation, HTTPRouteListenerPortMatching,
//! HTTPRouteRedirectPortAndScheme and HTTPRouteHTTPSListenerDetectMisdirectedRequests, here.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use support::gateway_api::GATEWAY_CLASS as CLASS;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A Gateway `default/NAME` with `listeners` (YAML flow mappings, one a line).
fn gateway(name: &str, listeners: &[String]) -> String {
    let mut out = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  gatewayClassName: portico\n  listeners:\n"
    );
    for l in listeners {
        out += &format!("  - {l}\n");
    }
    out
}

/// An HTTPRoute `default/NAME` with `parent` (a flow mapping), `hostnames` (a flow list) and
/// one rule: `path` prefix to Service `backend`, with `filters` (a flow list, may be `[]`).
fn route(name: &str, parent: &str, hostnames: &str, path: &str, backend: &str, filters: &str) -> String {
    let backends = match backend {
        "" => "[]".to_string(),
        b => format!("[{{name: {b}, port: 80}}]"),
    };
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{parent}]\n  hostnames: {hostnames}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    filters: {filters}\n    backendRefs: {backends}\n"
    )
}

fn pod(body: &str) -> String {
    json(body)["pod"].as_str().unwrap_or("").to_string()
}

/// Status and pod (or body) of a GET.
async fn ask(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let (status, _, body) = get(addr, host, path).await.unwrap();
    (status, if status == 200 { pod(&body) } else { String::new() })
}

/// The four listeners of the conformance suite's listener isolation Gateway, on port 80.
fn isolation_listeners() -> Vec<String> {
    [
        "{name: empty-hostname, port: 80, protocol: HTTP}",
        "{name: wildcard-example-com, port: 80, protocol: HTTP, hostname: \"*.example.com\"}",
        "{name: wildcard-foo-example-com, port: 80, protocol: HTTP, hostname: \"*.foo.example.com\"}",
        "{name: abc-foo-example-com, port: 80, protocol: HTTP, hostname: abc.foo.example.com}",
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test]
async fn a_host_is_served_only_by_the_routes_of_its_most_specific_listener() {
    let web = pods("web", 1).await;
    let listeners = [
        "empty-hostname",
        "wildcard-example-com",
        "wildcard-foo-example-com",
        "abc-foo-example-com",
    ];
    let mut files = vec![
        ("class.yaml", CLASS.to_string()),
        ("svc.yaml", service("web", &web)),
        (
            "gw.yaml",
            gateway("iso", &isolation_listeners()) + &gateway("iso-hosts", &isolation_listeners()),
        ),
    ];
    // As the suite: one Gateway's routes without hostnames, the other's with every hostname,
    // which the listeners' isolation must keep apart all the same.
    let all_hosts = "[bar.com, \"*.example.com\", \"*.foo.example.com\", abc.foo.example.com]";
    let mut routes = String::new();
    for l in listeners {
        let parent = format!("{{name: iso, sectionName: {l}}}");
        routes += &route(&format!("a-{l}"), &parent, "[]", &format!("/{l}"), "web", "[]");
        let parent = format!("{{name: iso-hosts, sectionName: {l}}}");
        routes += &route(&format!("b-{l}"), &parent, all_hosts, &format!("/{l}"), "web", "[]");
    }
    files.push(("routes.yaml", routes));
    let p = Portico::start(&files, &[]).await;
    let owner = [
        ("bar.com", "empty-hostname"),
        ("bar.example.com", "wildcard-example-com"),
        ("bar.foo.example.com", "wildcard-foo-example-com"),
        ("abc.foo.example.com", "abc-foo-example-com"),
    ];
    for (host, listener) in owner {
        for path in listeners {
            let want = if path == listener { 200 } else { 404 };
            assert_eq!(ask(p.http, host, &format!("/{path}")).await.0, want, "{host} /{path}");
        }
    }
}

#[tokio::test]
async fn each_listener_port_is_a_socket_serving_its_own_routes() {
    let (v1, v2, v3) = (pods("v1", 1).await, pods("v2", 1).await, pods("v3", 1).await);
    let (a, b) = (free_port(), free_port());
    let listeners = vec![
        "{name: listener-1, port: 80, protocol: HTTP, hostname: foo.com}".to_string(),
        format!("{{name: listener-2, port: {a}, protocol: HTTP, hostname: foo.com}}"),
        format!("{{name: listener-3, port: {a}, protocol: HTTP, hostname: bar.com}}"),
        format!("{{name: listener-4, port: {b}, protocol: HTTP, hostname: foo.com}}"),
        format!("{{name: listener-5, port: {b}, protocol: HTTP, hostname: bar.com}}"),
    ];
    let routes = route("r1", "{name: gw, port: 80}", "[]", "/", "v1", "[]")
        + &route("r2", &format!("{{name: gw, port: {a}}}"), "[]", "/", "v2", "[]")
        + &route(
            "r3",
            &format!("{{name: gw, port: {b}, sectionName: listener-4}}"),
            "[]",
            "/",
            "v3",
            "[]",
        )
        // No listener has this port: not accepted, served nowhere.
        + &route("r4", "{name: gw, port: 81}", "[]", "/", "v3", "[]");
    let services = service("v1", &v1) + &service("v2", &v2) + &service("v3", &v3);
    let p = Portico::start(
        &[
            ("class.yaml", CLASS.to_string()),
            ("svc.yaml", services),
            ("gw.yaml", gateway("gw", &listeners)),
            ("routes.yaml", routes),
        ],
        &[],
    )
    .await;
    let (at_a, at_b) = (SocketAddr::new(p.http.ip(), a), SocketAddr::new(p.http.ip(), b));
    listening(at_a).await;
    listening(at_b).await;
    assert_eq!(ask(p.http, "foo.com", "/").await, (200, "v1-0".into()));
    assert_eq!(ask(at_a, "foo.com", "/").await, (200, "v2-0".into()));
    assert_eq!(ask(at_a, "bar.com", "/").await, (200, "v2-0".into()));
    assert_eq!(ask(at_b, "foo.com", "/").await, (200, "v3-0".into()));
    assert_eq!(ask(at_b, "bar.com", "/").await.0, 404);
    // Port 80's listener does not take bar.com, and its routes are not on the other ports.
    assert_eq!(ask(p.http, "bar.com", "/").await.0, 404);
    let routes = p.routes().await;
    assert_eq!(
        support::gateway_api::route_conditions(&routes, "r4")[0],
        "Accepted=false:NoMatchingParent"
    );
    let points: Vec<(u64, Vec<&str>)> = routes["gatewayListeners"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let hosts = p["listeners"].as_array().unwrap().iter();
            (
                p["target"].as_u64().unwrap(),
                hosts.map(|l| l["hostname"].as_str().unwrap()).collect(),
            )
        })
        .collect();
    let mut want = vec![
        (80, vec!["foo.com"]),
        (u64::from(a), vec!["foo.com", "bar.com"]),
        (u64::from(b), vec!["foo.com", "bar.com"]),
    ];
    want.sort();
    assert_eq!(points, want);

    // A port no listener has any more is closed; the others keep serving.
    let fewer = gateway("gw", &listeners[..3]);
    p.write("gw.yaml", &fewer);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while TcpStream::connect(at_b).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "{at_b} stays open");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(ask(at_a, "foo.com", "/").await, (200, "v2-0".into()));
}

#[tokio::test]
async fn a_port_taken_by_another_program_leaves_the_other_listeners_serving() {
    let web = pods("web", 1).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listeners = vec![
        "{name: http, port: 80, protocol: HTTP}".to_string(),
        format!("{{name: busy, port: {port}, protocol: HTTP}}"),
    ];
    let routes = route("r", "{name: gw}", "[]", "/", "web", "[]");
    let p = Portico::start(
        &[
            ("class.yaml", CLASS.to_string()),
            ("svc.yaml", service("web", &web)),
            ("gw.yaml", gateway("gw", &listeners)),
            ("routes.yaml", routes),
        ],
        &[],
    )
    .await;
    assert_eq!(ask(p.http, "x.test", "/").await, (200, "web-0".into()));
    let said = || {
        let logs = p.logs.lock().unwrap();
        logs.iter()
            .any(|l| l.contains("cannot bind a Gateway listener's port") && l.contains(&port.to_string()))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !said() {
        assert!(std::time::Instant::now() < deadline, "no warning about port {port}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The next compile (here: after a change) reports the listener not Programmed.
    let busy = |routes: &serde_json::Value| {
        let listeners = routes["gatewayApi"]["gateways"][0]["listeners"]
            .as_array()
            .unwrap()
            .clone();
        let l = listeners.iter().find(|l| l["name"] == "busy").unwrap();
        support::gateway_api::conditions(&l["conditions"])[1].clone()
    };
    let generation = p.routes().await["generation"].as_u64().unwrap();
    p.write("more.yaml", &service("more", &web));
    p.wait_generation(generation + 1).await;
    let routes = p.routes().await;
    assert_eq!(busy(&routes), "Programmed=false:Pending");
    assert!(
        routes["diagnostics"].as_array().unwrap().iter().any(|d| d["message"]
            .as_str()
            .unwrap()
            .contains(&format!("port {port} cannot be bound"))),
        "{routes:#}"
    );
    // Once the port is free, the next Config opens it, and the compile after says so.
    drop(taken);
    p.write("more.yaml", &(service("more", &web) + &service("more2", &web)));
    listening(SocketAddr::new(p.http.ip(), port)).await;
    p.write("more.yaml", &service("more", &web));
    p.wait_generation(generation + 3).await;
    assert_eq!(busy(&p.routes().await), "Programmed=true:Programmed");
}

#[tokio::test]
async fn a_redirect_without_port_keeps_the_listener_port() {
    let port = free_port();
    let filters = |redirect: &str| format!("[{{type: RequestRedirect, requestRedirect: {{{redirect}}}}}]");
    let rules = [
        ("/scheme-nil-and-port-nil", "hostname: example.org"),
        ("/scheme-nil-and-port-80", "port: 80, hostname: example.org"),
        ("/scheme-https-and-port-nil", "scheme: https, hostname: example.org"),
    ];
    let mut routes = String::new();
    for (i, (path, redirect)) in rules.iter().enumerate() {
        routes += &route(&format!("on80-{i}"), "{name: gw80}", "[]", path, "", &filters(redirect));
        routes += &route(
            &format!("on-port-{i}"),
            "{name: gw}",
            "[]",
            path,
            "",
            &filters(redirect),
        );
    }
    // One route on both ports: each keeps its own.
    let parents = "{name: gw80}, {name: gw}";
    routes += &route("both", parents, "[]", "/both", "", &filters("hostname: example.org"));
    let p = Portico::start(
        &[
            ("class.yaml", CLASS.to_string()),
            (
                "gw.yaml",
                gateway("gw80", &["{name: http, port: 80, protocol: HTTP}".into()])
                    + &gateway("gw", &[format!("{{name: http, port: {port}, protocol: HTTP}}")]),
            ),
            ("routes.yaml", routes),
        ],
        &[],
    )
    .await;
    let at = SocketAddr::new(p.http.ip(), port);
    listening(at).await;
    let location = |addr: SocketAddr, path: &'static str| async move {
        let (status, headers, _) = get(addr, "x.test", path).await.unwrap();
        let loc = headers.get("location").map(|v| v.to_str().unwrap().to_string());
        (status, loc.unwrap_or_default())
    };
    let cases = [
        (
            p.http,
            "/scheme-nil-and-port-nil",
            "http://example.org/scheme-nil-and-port-nil".to_string(),
        ),
        (
            p.http,
            "/scheme-nil-and-port-80",
            "http://example.org/scheme-nil-and-port-80".into(),
        ),
        (
            p.http,
            "/scheme-https-and-port-nil",
            "https://example.org/scheme-https-and-port-nil".into(),
        ),
        (
            at,
            "/scheme-nil-and-port-nil",
            format!("http://example.org:{port}/scheme-nil-and-port-nil"),
        ),
        (
            at,
            "/scheme-nil-and-port-80",
            "http://example.org/scheme-nil-and-port-80".into(),
        ),
        (
            at,
            "/scheme-https-and-port-nil",
            "https://example.org/scheme-https-and-port-nil".into(),
        ),
        (p.http, "/both", "http://example.org/both".into()),
        (at, "/both", format!("http://example.org:{port}/both")),
    ];
    for (addr, path, want) in cases {
        assert_eq!(location(addr, path).await, (302, want), "{addr} {path}");
    }
}

/// A GET of `path` for `host` over a new TLS connection with server name `sni`: the status.
async fn tls_status(addr: SocketAddr, sni: &str, host: &str, path: &str) -> (u16, String) {
    let mut cfg = insecure_client(rustls::DEFAULT_VERSIONS);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, stream)
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, if status == 200 { pod(body) } else { String::new() })
}

#[tokio::test]
async fn a_host_of_another_https_listener_than_the_sni_s_is_misdirected() {
    let (v1, v2, v3) = (pods("v1", 1).await, pods("v2", 1).await, pods("v3", 1).await);
    let tls = "tls: {certificateRefs: [{name: cert}]}";
    let listeners = vec![
        format!("{{name: https, port: 443, protocol: HTTPS, {tls}}}"),
        format!("{{name: https-with-hostname, port: 443, protocol: HTTPS, hostname: second-example.org, {tls}}}"),
        format!(
            "{{name: https-with-wildcard-hostname, port: 443, protocol: HTTPS, hostname: \"*.wildcard.org\", {tls}}}"
        ),
        format!(
            "{{name: https-with-hostname-matching-wildcard, port: 443, protocol: HTTPS, hostname: fourth-example.wildcard.org, {tls}}}"
        ),
    ];
    let path = "/detect-misdirected-requests";
    let routes = route(
        "t1",
        "{name: gw, sectionName: https}",
        "[example.org]",
        path,
        "v1",
        "[]",
    ) + &route(
        "t2",
        "{name: gw, sectionName: https-with-hostname}",
        "[]",
        path,
        "v2",
        "[]",
    ) + &route(
        "t3",
        "{name: gw, sectionName: https-with-wildcard-hostname}",
        "[]",
        path,
        "v3",
        "[]",
    ) + &route(
        "t4",
        "{name: gw, sectionName: https-with-hostname-matching-wildcard}",
        "[]",
        path,
        "v1",
        "[]",
    );
    let p = Portico::start(
        &[
            ("class.yaml", CLASS.to_string()),
            (
                "svc.yaml",
                service("v1", &v1) + &service("v2", &v2) + &service("v3", &v3),
            ),
            ("secret.yaml", tls_secret("default", "cert", "rsa.crt", "rsa-pkcs1.key")),
            ("gw.yaml", gateway("gw", &listeners)),
            ("routes.yaml", routes),
        ],
        &[],
    )
    .await;
    // (SNI, Host, status, pod) as the conformance suite asks them.
    let cases = [
        ("example.org", "example.org", 200, "v1-0"),
        ("example.org", "second-example.org", 421, ""),
        ("example.org", "unknown-example.org", 404, ""),
        ("second-example.org", "second-example.org", 200, "v2-0"),
        ("second-example.org", "example.org", 421, ""),
        ("second-example.org", "unknown-example.org", 421, ""),
        ("third-example.wildcard.org", "third-example.wildcard.org", 200, "v3-0"),
        ("third-example.wildcard.org", "fith-example.wildcard.org", 200, "v3-0"),
        ("third-example.wildcard.org", "fourth-example.wildcard.org", 421, ""),
        ("fourth-example.wildcard.org", "second-example.org", 421, ""),
        ("fourth-example.wildcard.org", "unknown-example.org", 421, ""),
        (
            "fourth-example.wildcard.org",
            "fourth-example.wildcard.org",
            200,
            "v1-0",
        ),
        ("fourth-example.wildcard.org", "fith-example.wildcard.org", 421, ""),
        ("unknown-example.org", "example.org", 200, "v1-0"),
        ("unknown-example.org", "unknown-example.org", 404, ""),
    ];
    for (sni, host, status, who) in cases {
        assert_eq!(
            tls_status(p.https, sni, host, path).await,
            (status, who.to_string()),
            "SNI {sni}, Host {host}"
        );
    }
    // Plain HTTP reaches none of these HTTPS listeners' routes.
    assert_eq!(ask(p.http, "example.org", path).await.0, 404);
}
