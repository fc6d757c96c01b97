//! The ingress-nginx ConfigMap (`--configmap`) over real sockets: a ConfigMap file in the
//! manifests directory, changed while Portico serves.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use portico::fixture::{self, yaml};
use support::*;

const CM: &str = "ingress-nginx/ingress-nginx-controller";

/// The ConfigMap `ingress-nginx/ingress-nginx-controller` with `data`, as a manifest.
fn configmap(data: &[(&str, &str)]) -> String {
    yaml(&[fixture::config_map("ingress-nginx", "ingress-nginx-controller", data).into()])
}

/// Class, Service `web` on `pods`, and an Ingress for `host` → web without annotations.
fn site(pods: &[std::net::SocketAddr], host: &str) -> String {
    class() + &service("web", pods) + &annotated_ingress("site", host, "/", "web", &[])
}

fn diagnostics(routes: &serde_json::Value) -> Vec<String> {
    routes["diagnostics"]
        .as_array()
        .map(|a| a.iter().map(|d| d.to_string()).collect())
        .unwrap_or_default()
}

/// One keep-alive HTTP/1.1 connection that sends request after request.
struct KeepAlive(hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl KeepAlive {
    async fn open(addr: std::net::SocketAddr) -> KeepAlive {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        KeepAlive(send)
    }

    /// GET `path` on `host` claiming to forward for 192.0.2.7; the echo pod's view of
    /// X-Forwarded-For.
    async fn forwarded_for(&mut self, host: &str) -> String {
        self.0.ready().await.expect("the connection stays open");
        let req = Request::builder()
            .uri("/")
            .header("host", host)
            .header("x-forwarded-for", "192.0.2.7")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = self.0.send_request(req).await.expect("no request fails");
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let j = json(&String::from_utf8_lossy(&body));
        j["headers"]["x-forwarded-for"].as_str().unwrap_or_default().to_string()
    }
}

/// A changed ConfigMap takes effect for the next request on a connection that was open
/// before, and no request fails on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_apply_live_on_open_connections() {
    let web = pods("web", 1).await;
    let p = Portico::start(
        &[
            ("site.yaml", site(&web, "live.test")),
            ("cm.yaml", configmap(&[("use-forwarded-headers", "false")])),
        ],
        &["--configmap", CM],
    )
    .await;
    let mut conn = KeepAlive::open(p.http).await;
    assert_eq!(conn.forwarded_for("live.test").await, "127.0.0.1", "not believed");
    let generation = p.routes().await["generation"].as_u64().unwrap();

    let client = tokio::spawn(async move {
        let mut seen = Vec::new();
        // Until the new value shows, and a few requests more.
        let mut after = 0;
        // Bounded, so that a change that never shows fails instead of hanging.
        while after < 5 && seen.len() < 20_000 {
            let xff = conn.forwarded_for("live.test").await;
            if xff != "127.0.0.1" {
                after += 1;
            }
            seen.push(xff);
        }
        seen
    });
    p.write("cm.yaml", &configmap(&[("use-forwarded-headers", "true")]));
    p.wait_generation(generation + 1).await;
    let seen = client.await.expect("every request on the open connection answered 200");
    // Old value, then the new one, never back.
    let first_new = seen
        .iter()
        .position(|x| x != "127.0.0.1")
        .expect("the new value took effect");
    assert!(
        seen[first_new..].iter().all(|x| x == "192.0.2.7, 127.0.0.1"),
        "{seen:?}"
    );
}

/// Route keys are the defaults of Ingresses without the annotation; an Ingress's own
/// annotation wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_defaults_from_the_configmap() {
    let web = pods("web", 1).await;
    let manifests = site(&web, "plain.test")
        + &annotated_ingress(
            "own",
            "own.test",
            "/",
            "web",
            &[("nginx.ingress.kubernetes.io/proxy-body-size", "0")],
        );
    let p = Portico::start(
        &[
            ("site.yaml", manifests),
            (
                "cm.yaml",
                configmap(&[("proxy-body-size", "1k"), ("proxy-read-timeout", "1")]),
            ),
        ],
        &["--configmap", CM],
    )
    .await;
    let post = |host: &'static str, n: usize| {
        let req = Request::builder()
            .method("POST")
            .uri("/echo-body")
            .header("host", host)
            .body(Full::new(Bytes::from(vec![b'a'; n])))
            .unwrap();
        request(p.http, req)
    };
    assert_eq!(post("plain.test", 1000).await.unwrap().0, 200);
    assert_eq!(post("plain.test", 2000).await.unwrap().0, 413, "the ConfigMap's 1k");
    assert_eq!(
        post("own.test", 200_000).await.unwrap().0,
        200,
        "the annotation's 0 wins"
    );
    assert_eq!(get(p.http, "plain.test", "/sleep/3000").await.unwrap().0, 504);
    assert_eq!(get(p.http, "plain.test", "/sleep/100").await.unwrap().0, 200);
}

/// hsts keys replace the --hsts flags' values; a bad value is a Warning and the flag's
/// value holds; unknown and unsupported keys are listed in /routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_keys_and_diagnostics() {
    let web = pods("web", 1).await;
    let tls = class()
        + &service("web", &web)
        + &tls_secret("default", "foo-tls", "rsa.crt", "rsa-pkcs1.key")
        + &yaml(&[ingress_with("tls", "foo.com", "/", "web", &[])
            .tls(&["foo.com"], Some("foo-tls"))
            .into()]);
    let p = Portico::start(
        &[
            ("site.yaml", tls),
            (
                "cm.yaml",
                configmap(&[
                    ("hsts-max-age", "600"),
                    ("hsts-preload", "true"),
                    ("hsts-include-subdomains", "maybe"),
                    ("server-snippet", "return 200;"),
                    ("no-such-key", "1"),
                ]),
            ),
        ],
        &["--configmap", CM],
    )
    .await;
    let a = tls_get(p.https, Some("foo.com"), "/", false).await.unwrap();
    assert_eq!(
        a.headers["strict-transport-security"],
        "max-age=600; includeSubDomains; preload"
    );
    let d = diagnostics(&p.routes().await);
    for want in [
        "hsts-include-subdomains",
        "server-snippet is not supported",
        "no-such-key",
    ] {
        assert!(d.iter().any(|m| m.contains(want)), "{want}: {d:?}");
    }
    assert!(!d.iter().any(|m| m.contains("hsts-max-age")), "{d:?}");

    let generation = p.routes().await["generation"].as_u64().unwrap();
    p.write("cm.yaml", &configmap(&[("hsts", "false")]));
    p.wait_generation(generation + 1).await;
    let b = tls_get(p.https, Some("foo.com"), "/", false).await.unwrap();
    assert_eq!(b.status, 200);
    assert!(b.headers.get("strict-transport-security").is_none());

    // Without the ConfigMap: a Warning, and the flags' values.
    let generation = p.routes().await["generation"].as_u64().unwrap();
    std::fs::remove_file(p.dir.join("cm.yaml")).unwrap();
    p.wait_generation(generation + 1).await;
    let c = tls_get(p.https, Some("foo.com"), "/", false).await.unwrap();
    assert_eq!(
        c.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let d = diagnostics(&p.routes().await);
    assert!(d.iter().any(|m| m.contains("ConfigMapNotFound")), "{d:?}");
}
