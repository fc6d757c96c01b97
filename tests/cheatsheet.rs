//! Every Ingress of the `kubectl create ingress` cheat-sheet (examples/cheatsheet) routes as
//! its rule says, through a real `portico` process.

mod support;

use std::net::SocketAddr;

use portico::fixture;
use support::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cheatsheet/");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}{name}")).unwrap()
}

/// The Services the cheat-sheet names, each port backed by its own echo pod named
/// `{service}-{port name or number}`.
async fn services() -> String {
    let svcs: &[(&str, &[(&str, i32)])] = &[
        ("svc1", &[("", 8080)]),
        ("svc", &[("port", 80), ("https", 443), ("alt", 8080)]),
        ("svcadmin", &[("portadmin", 80)]),
        ("svc2", &[("http", 80)]),
        ("othersvc", &[("", 8080)]),
        ("defaultsvc", &[("http", 80)]),
    ];
    let mut objects = Vec::new();
    for (name, ports) in svcs {
        let service = ports
            .iter()
            .fold(fixture::service("default", name), |s, (n, p)| s.port(n, *p));
        objects.push(service.into());
        for (n, p) in ports.iter() {
            let id = if n.is_empty() { p.to_string() } else { n.to_string() };
            let pod: SocketAddr = portico::demo::spawn_echo("127.0.0.1:0".parse().unwrap(), &format!("{name}-{id}"))
                .await
                .unwrap();
            let slice = fixture::slice("default", &format!("{name}-{id}"), name)
                .port(n, pod.port().into())
                .endpoint("127.0.0.1");
            objects.push(slice.into());
        }
    }
    fixture::yaml(&objects)
}

async fn with_example(example: &str) -> Portico {
    let files = [
        ("classes.yaml", read("classes.yaml")),
        ("secrets.yaml", read("secrets.yaml")),
        ("services.yaml", services().await),
        ("ingress.yaml", read(&format!("{example}.yaml"))),
    ];
    let p = Portico::start(&files, &[]).await;
    let routes = p.routes().await;
    assert_eq!(routes["diagnostics"], serde_json::json!([]), "{example}: {routes}");
    assert_eq!(
        routes["admitted"],
        serde_json::json!([format!("default/{example}")]),
        "{example}"
    );
    p
}

/// The pod that answered a plain-HTTP request, or the status when Portico answered.
async fn http(p: &Portico, host: &str, path: &str) -> String {
    let (s, _, b) = get(p.http, host, path).await.unwrap();
    if s == 200 {
        json(&b)["pod"].as_str().unwrap().to_string()
    } else {
        s.to_string()
    }
}

/// The pod that answered over HTTPS (SNI = host), and the certificate's CN.
async fn https(p: &Portico, host: &str, path: &str) -> (String, String) {
    let a = tls_get(p.https, Some(host), path, false).await.unwrap();
    let who = if a.status == 200 {
        json(&a.body)["pod"].as_str().unwrap().to_string()
    } else {
        a.status.to_string()
    };
    (who, a.cert_cn)
}

const FOO_CERT: &str = "rsa.example.com";
const DEFAULT_CERT: &str = "Portico Default Certificate";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple() {
    // --rule="foo.com/bar=svc1:8080,tls=my-cert"
    let p = with_example("simple").await;
    assert_eq!(
        https(&p, "foo.com", "/bar").await,
        ("svc1-8080".into(), FOO_CERT.into())
    );
    assert_eq!(https(&p, "foo.com", "/bar/x").await.0, "404", "Exact path");
    assert_eq!(http(&p, "foo.com", "/bar").await, "308", "TLS host redirects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_all() {
    // --class=otheringress --rule="/path=svc:port"
    let p = with_example("catch-all").await;
    assert_eq!(http(&p, "anything.example", "/path").await, "svc-port");
    assert_eq!(http(&p, "other.test", "/path").await, "svc-port");
    assert_eq!(http(&p, "other.test", "/path/x").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated() {
    // --class=default --rule="foo.com/bar=svc:port" --annotation ...
    let p = with_example("annotated").await;
    assert_eq!(http(&p, "foo.com", "/bar").await, "svc-port");
    assert_eq!(http(&p, "foo.com", "/").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipath() {
    // --rule="foo.com/=svc:port" --rule="foo.com/admin/=svcadmin:portadmin"
    let p = with_example("multipath").await;
    assert_eq!(http(&p, "foo.com", "/").await, "svc-port");
    assert_eq!(http(&p, "foo.com", "/admin/").await, "svcadmin-portadmin");
    assert_eq!(http(&p, "foo.com", "/admin").await, "404");
    assert_eq!(http(&p, "foo.com", "/x").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress1() {
    // --rule="foo.com/path*=svc:8080" --rule="bar.com/admin*=svc2:http"
    let p = with_example("ingress1").await;
    assert_eq!(http(&p, "foo.com", "/path").await, "svc-alt");
    assert_eq!(http(&p, "foo.com", "/path/x").await, "svc-alt");
    assert_eq!(http(&p, "foo.com", "/pathx").await, "404");
    assert_eq!(http(&p, "bar.com", "/admin/users").await, "svc2-http");
    assert_eq!(http(&p, "bar.com", "/path").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingtls() {
    // --rule="foo.com/=svc:https,tls" --rule="foo.com/path/subpath*=othersvc:8080"
    let p = with_example("ingtls").await;
    assert_eq!(
        https(&p, "foo.com", "/").await,
        ("svc-https".into(), DEFAULT_CERT.into()),
        "tls without secret"
    );
    assert_eq!(https(&p, "foo.com", "/path/subpath/a").await.0, "othersvc-8080");
    assert_eq!(http(&p, "foo.com", "/").await, "308");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingsecret() {
    // --rule="foo.com/*=svc:8080,tls=secret1"
    let p = with_example("ingsecret").await;
    assert_eq!(
        https(&p, "foo.com", "/anything/at/all").await,
        ("svc-alt".into(), FOO_CERT.into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingdefault() {
    // --default-backend=defaultsvc:http --rule="foo.com/*=svc:8080,tls=secret1"
    let p = with_example("ingdefault").await;
    assert_eq!(https(&p, "foo.com", "/x").await, ("svc-alt".into(), FOO_CERT.into()));
    let routes = p.routes().await;
    let foo = routes["hosts"]["foo.com"].as_array().unwrap();
    assert!(
        foo.iter()
            .any(|r| r["pathType"] == "DefaultBackend" && r["backend"]["service"]["name"] == "defaultsvc"),
        "the default backend serves foo.com's unmatched paths: {foo:?}"
    );
    // An Ingress with rules is no catch-all for other hosts (as in ingress-nginx).
    assert_eq!(http(&p, "other.test", "/").await, "404");
}
