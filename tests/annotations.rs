//! ingress-nginx annotations end to end over real sockets: redirects, app-root,
//! force-ssl-redirect, proxy-body-size, timeouts, source ranges, upstream-vhost, CORS, HSTS.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::Request;
use http_body_util::{Full, StreamBody};
use portico::fixture::{self, ImplementationSpecific, IngressBuilder, PathType, Prefix, yaml};
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// `annotations` under the ingress-nginx prefix.
fn nginx(ingress: IngressBuilder, annotations: &[(&str, &str)]) -> IngressBuilder {
    annotations
        .iter()
        .fold(ingress, |i, (k, v)| i.annotation(&format!("{NGINX}{k}"), v))
}

/// An Ingress for `host` (path `/`) → Service `svc`, annotations under the ingress-nginx prefix.
fn nginx_ingress(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> IngressBuilder {
    nginx(ingress_with(name, host, "/", svc, &[]), annotations)
}

/// [`nginx_ingress`] to Service `web`, as a manifest.
fn ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    yaml(&[nginx_ingress(name, host, "web", annotations).into()])
}

async fn send(p: &Portico, method: &str, host: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut b = Request::builder().method(method).uri(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    request(p.http, b.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_app_root_and_forced_https() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &ingress(
            "perm",
            "perm.test",
            &[("permanent-redirect", "https://example.org/new")],
        )
        + &ingress(
            "perm308",
            "perm308.test",
            &[("permanent-redirect", "/moved"), ("permanent-redirect-code", "308")],
        )
        + &ingress(
            "temp",
            "temp.test",
            &[("temporal-redirect", "https://example.org/later")],
        )
        + &ingress("root", "root.test", &[("app-root", "/app1")])
        + &ingress("force", "force.test", &[("force-ssl-redirect", "true")])
        + &ingress(
            "bad",
            "bad.test",
            &[("permanent-redirect", "javascript:alert(1)"), ("app-root", "x")],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    let (s, h, _) = get(p.http, "perm.test", "/a?b=1").await.unwrap();
    assert_eq!((s, h["location"].to_str().unwrap()), (301, "https://example.org/new"));
    let (s, h, _) = get(p.http, "perm308.test", "/a").await.unwrap();
    assert_eq!((s, h["location"].to_str().unwrap()), (308, "/moved"));
    let (s, h, _) = get(p.http, "temp.test", "/").await.unwrap();
    assert_eq!((s, h["location"].to_str().unwrap()), (302, "https://example.org/later"));

    // The Location keeps the Host the client sent.
    let (s, h, _) = get(p.http, "root.test", "/").await.unwrap();
    assert_eq!((s, h["location"].to_str().unwrap()), (302, "http://root.test/app1"));
    let (s, h, _) = get(p.http, "root.test:8080", "/").await.unwrap();
    assert_eq!(
        (s, h["location"].to_str().unwrap()),
        (302, "http://root.test:8080/app1")
    );
    let (s, _, b) = get(p.http, "root.test", "/app1/x").await.unwrap();
    assert_eq!((s, json(&b)["target"].as_str().unwrap()), (200, "/app1/x"));

    // No TLS section for force.test, still redirected.
    let (s, h, _) = get(p.http, "force.test", "/x?y").await.unwrap();
    assert_eq!(s, 308);
    assert!(h["location"].to_str().unwrap().starts_with("https://force.test"));

    // Invalid values: diagnostics, and the Ingress is served plainly.
    let (s, _, _) = get(p.http, "bad.test", "/").await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(diagnostics_of(&p.routes().await, "bad").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_body_size_answers_413() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &ingress("small", "small.test", &[("proxy-body-size", "1k")])
        + &ingress("big", "big.test", &[("proxy-body-size", "0")])
        + &ingress("default", "default.test", &[]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    // Without the annotation, ingress-nginx's 1m: 1 MiB passes, a byte more does not.
    let (s, _, b) = send(&p, "POST", "default.test", "/echo-body", &[], &vec![b'a'; 1 << 20]).await;
    assert_eq!((s, b.len()), (200, 1 << 20));
    // A byte more, declared: answered before any of the body is sent.
    let mut c = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let head = format!(
        "POST /echo-body HTTP/1.1\r\nHost: default.test\r\nContent-Length: {}\r\n\r\n",
        (1 << 20) + 1
    );
    tokio::io::AsyncWriteExt::write_all(&mut c, head.as_bytes())
        .await
        .unwrap();
    let answer = read_head(&mut c, &mut Vec::new()).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "the default 1m: {answer}");
    let (s, _, b) = send(&p, "POST", "small.test", "/echo-body", &[], &[b'a'; 1000]).await;
    assert_eq!((s, b.len()), (200, 1000));
    let (s, _, _) = send(&p, "POST", "small.test", "/echo-body", &[], &[b'a'; 2000]).await;
    assert_eq!(s, 413, "declared length over the limit");
    let (s, _, _) = send(&p, "POST", "big.test", "/echo-body", &[], &[b'a'; 200_000]).await;
    assert_eq!(s, 200, "0 means no limit");

    // A chunked body (no length announced) is cut off once it passes the limit.
    assert_eq!(
        post_stream(p.http, "small.test", upload(4, 600, Duration::ZERO)).await,
        413
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_from_annotations() {
    let web = pods("web", 1).await;
    // A listener whose accept queue is full: further connects get no answer at all.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(full_addr)).await
        {
            fillers.push(s);
        }
    }
    let manifests = class()
        + &service("web", &web)
        + &service("black", &[full_addr])
        + &ingress("read", "read.test", &[("proxy-read-timeout", "1")])
        + &yaml(&[nginx_ingress("conn", "conn.test", "black", &[("proxy-connect-timeout", "1")]).into()]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    let t = Instant::now();
    let (s, _, _) = get(p.http, "read.test", "/sleep/3000").await.unwrap();
    assert_eq!(s, 504);
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "read timeout of 1 s took {:?}",
        t.elapsed()
    );
    let (s, _, _) = get(p.http, "read.test", "/sleep/100").await.unwrap();
    assert_eq!(s, 200);

    let t = Instant::now();
    let (s, _, _) = get(p.http, "conn.test", "/").await.unwrap();
    // nginx answers a connect timeout with 504, as any upstream timeout.
    assert_eq!(s, 504);
    assert!(
        t.elapsed() < Duration::from_millis(4000),
        "connect timeout of 1 s took {:?}",
        t.elapsed()
    );
    drop(fillers);
}

/// A streamed request body: `n` chunks of `size` bytes, `gap` apart.
fn upload(
    n: usize,
    size: usize,
    gap: Duration,
) -> StreamBody<impl futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>> {
    let chunks = futures_util::stream::iter(0..n).then(move |i| async move {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        Ok(hyper::body::Frame::data(Bytes::from(vec![b'u'; size])))
    });
    StreamBody::new(chunks)
}

async fn post_stream<B>(addr: std::net::SocketAddr, host: &str, body: B) -> u16
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method("POST")
        .uri("/echo-body")
        .header("host", host)
        .body(body)
        .unwrap();
    tx.send_request(req).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_timeout_counts_only_the_upstream_holding_back() {
    let web = pods("web", 1).await;
    // An upstream that accepts and never reads.
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stall_addr = stall.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = stall.accept().await {
            held.push(s);
        }
    });
    let manifests = class()
        + &service("web", &web)
        + &service("stall", &[stall_addr])
        + &ingress("ok", "ok.test", &[("proxy-send-timeout", "1")])
        + &yaml(&[nginx_ingress(
            "stuck",
            "stuck.test",
            "stall",
            // The upload is 64 MB: past the default proxy-body-size of 1m.
            &[("proxy-send-timeout", "1"), ("proxy-body-size", "0")],
        )
        .into()]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // 64 MB into an upstream that reads nothing: the buffers fill and the clock runs out.
    let t = Instant::now();
    let status = post_stream(p.http, "stuck.test", upload(1024, 64 * 1024, Duration::ZERO)).await;
    assert_eq!(status, 504);
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());

    // A slow client is not the upstream's fault: chunks 1.5 s apart still go through.
    let status = post_stream(p.http, "ok.test", upload(3, 1000, Duration::from_millis(1500))).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ranges_and_upstream_vhost() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &ingress(
            "in",
            "in.test",
            &[("whitelist-source-range", "10.0.0.0/8, 127.0.0.0/8")],
        )
        + &ingress("out", "out.test", &[("whitelist-source-range", "10.0.0.0/8")])
        + &ingress("typo", "typo.test", &[("whitelist-source-range", "127.0.0.1/99")])
        + &ingress(
            "halftypo",
            "halftypo.test",
            &[("whitelist-source-range", "127.0.0.0/8, 10.0.0.0/33")],
        )
        + &ingress("empty", "empty.test", &[("whitelist-source-range", "")])
        + &ingress("vhost", "vhost.test", &[("upstream-vhost", "internal.svc:8080")]);
    let p = Portico::start(&[("all.yaml", manifests)], &["--trusted-proxies", "127.0.0.1/32"]).await;

    assert_eq!(get(p.http, "in.test", "/").await.unwrap().0, 200);
    let (s, _, b) = get(p.http, "out.test", "/").await.unwrap();
    assert_eq!(s, 403, "{b}");
    // Behind a trusted proxy the forwarded client address counts.
    let (s, _, _) = send(&p, "GET", "out.test", "/", &[("x-forwarded-for", "10.1.2.3")], b"").await;
    assert_eq!(s, 200);
    let (s, _, _) = send(&p, "GET", "in.test", "/", &[("x-forwarded-for", "192.0.2.1")], b"").await;
    assert_eq!(s, 403);
    // One entry that is no address or CIDR, or none at all, denies the location for everybody
    // (503, as ingress-nginx's denied location), even a client a valid entry lists; and says why.
    for host in ["typo.test", "halftypo.test", "empty.test"] {
        assert_eq!(get(p.http, host, "/").await.unwrap().0, 503, "{host}");
    }
    let routes = p.routes().await;
    for name in ["typo", "halftypo", "empty"] {
        assert_eq!(diagnostics_of(&routes, name).len(), 1, "{name}");
    }

    let (s, _, b) = get(p.http, "vhost.test", "/").await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(json(&b)["headers"]["host"], "internal.svc:8080");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_response_headers() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &ingress(
            "cors",
            "cors.test",
            &[
                ("enable-cors", "true"),
                ("cors-allow-origin", "https://app.example.com, https://*.trusted.org"),
                ("cors-allow-methods", "GET, POST"),
                ("cors-expose-headers", "X-Total"),
                ("cors-max-age", "600"),
            ],
        )
        + &ingress("any", "any.test", &[("enable-cors", "true")]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    let pre = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "POST"),
    ];
    let (s, h, _) = send(&p, "OPTIONS", "cors.test", "/api", &pre, b"").await;
    assert_eq!(s, 204);
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["access-control-allow-credentials"], "true");

    let (s, h, b) = send(
        &p,
        "GET",
        "cors.test",
        "/api",
        &[("origin", "https://a.trusted.org")],
        b"",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(json(&b)["target"], "/api", "a simple request reaches the backend");
    assert_eq!(h["access-control-allow-origin"], "https://a.trusted.org");
    assert_eq!(h["access-control-expose-headers"], "X-Total");

    let (_, h, _) = send(&p, "GET", "cors.test", "/", &[("origin", "https://evil.example")], b"").await;
    assert!(h.get("access-control-allow-origin").is_none());

    let (_, h, _) = send(
        &p,
        "GET",
        "any.test",
        "/",
        &[("origin", "https://whoever.example")],
        b"",
    )
    .await;
    assert_eq!(h["access-control-allow-origin"], "*");
}

/// foo.com with TLS (the rsa fixture covers it) → Service web.
fn tls_site() -> String {
    class()
        + &tls_secret("default", "foo-tls", "rsa.crt", "rsa-pkcs1.key")
        + &yaml(&[ingress_with("tls", "foo.com", "/", "web", &[])
            .tls(&["foo.com"], Some("foo-tls"))
            .into()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_on_https_responses_unless_switched_off() {
    let web = pods("web", 1).await;
    let m = tls_site();
    let on = Portico::start(&[("all.yaml", m.clone() + &service("web", &web))], &[]).await;
    let off = Portico::start(&[("all.yaml", m + &service("web", &web))], &["--hsts", "off"]).await;
    let a = tls_get(on.https, Some("foo.com"), "/", false).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(
        a.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let (_, h, _) = get(on.http, "foo.com", "/").await.unwrap();
    assert!(h.get("strict-transport-security").is_none(), "never on plain HTTP");
    let b = tls_get(off.https, Some("foo.com"), "/", false).await.unwrap();
    assert_eq!(b.status, 200);
    assert!(b.headers.get("strict-transport-security").is_none());
}

/// An Ingress with explicit paths, all in one rule for `host`.
fn paths_ingress(name: &str, host: &str, annotations: &[(&str, &str)], paths: &[(&str, PathType, &str)]) -> String {
    let (first, rest) = paths.split_first().expect("a path");
    let ingress = fixture::ingress("default", name)
        .class("portico")
        .rule(host, first.0, first.1, first.2, 80);
    let ingress = rest
        .iter()
        .fold(ingress, |i, (path, ty, svc)| i.path(path, *ty, svc, 80));
    yaml(&[nginx(ingress, annotations).into()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_regex_and_rewrite_target() {
    let web = pods("web", 1).await;
    let other = pods("other", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &service("other", &other)
        + &paths_ingress(
            "re",
            "re.test",
            &[("use-regex", "true")],
            &[
                ("/api/v[0-9]+/users", ImplementationSpecific, "web"),
                ("/(a+)+$", ImplementationSpecific, "web"),
                ("/(unclosed", ImplementationSpecific, "web"),
            ],
        )
        + &paths_ingress(
            "rw",
            "rw.test",
            &[("rewrite-target", "/$2")],
            &[("/something(/|$)(.*)", ImplementationSpecific, "web")],
        )
        + &paths_ingress(
            "root",
            "root.test",
            &[("rewrite-target", "/")],
            &[("/app", Prefix, "web")],
        )
        + &paths_ingress("plain", "mix.test", &[], &[("/api", Prefix, "other")])
        + &paths_ingress(
            "json",
            "mix.test",
            &[("use-regex", "true")],
            &[("/api/.*\\.json", ImplementationSpecific, "web")],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let pod_of = async |host: &str, path: &str| {
        let (s, _, b) = get(p.http, host, path).await.unwrap();
        (
            s,
            if s == 200 {
                json(&b)["pod"].as_str().unwrap().to_string()
            } else {
                String::new()
            },
        )
    };
    let target_of = async |host: &str, path: &str| {
        let (s, _, b) = get(p.http, host, path).await.unwrap();
        assert_eq!(s, 200, "{host}{path}: {b}");
        json(&b)["target"].as_str().unwrap().to_string()
    };

    // Case-insensitive, anchored at the start, sent upstream unchanged.
    assert_eq!(target_of("re.test", "/API/V2/users/7").await, "/API/V2/users/7");
    assert_eq!(pod_of("re.test", "/api/vx/users").await.0, 404);
    assert_eq!(pod_of("re.test", "/x/api/v1/users").await.0, 404);
    // A pattern that backtracking engines take exponential time on answers at once.
    let evil = format!("/{}!", "a".repeat(30_000));
    assert_eq!(pod_of("re.test", &evil).await.0, 404);
    let diags = diagnostics_of(&p.routes().await, "re");
    assert!(diags.iter().any(|d| d.contains("not a valid regex")), "{diags:?}");

    // The ingress-nginx rewrite example: /something(/|$)(.*) → /$2, query kept.
    assert_eq!(target_of("rw.test", "/something").await, "/");
    assert_eq!(target_of("rw.test", "/something/").await, "/");
    assert_eq!(target_of("rw.test", "/something/new?x=1").await, "/new?x=1");
    assert_eq!(pod_of("rw.test", "/somethingelse").await.0, 404);
    // Without groups the whole path is replaced.
    assert_eq!(target_of("root.test", "/app/abc/def").await, "/");

    // Regex paths are tried before prefix paths, as nginx tries regex locations first.
    assert_eq!(pod_of("mix.test", "/api/x.json").await.1, "web-0");
    assert_eq!(pod_of("mix.test", "/api/x").await.1, "other-0");
}

#[test]
fn check_warns_about_annotations_without_effect() {
    let dir = std::env::temp_dir().join(format!("portico-check-annotations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = class()
        + &service("web", &["10.0.0.1:8080".parse().unwrap()])
        + &ingress(
            "legacy",
            "legacy.test",
            &[
                ("configuration-snippet", "more_set_headers \"X: y\";"),
                ("enable-influxdb", "true"),
                ("no-such-annotation", "1"),
                ("ssl-redirect", "false"),
            ],
        );
    std::fs::write(dir.join("all.yaml"), yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["check", "--manifests"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Warnings, not errors: the Ingress is served.
    assert!(out.status.success(), "{stdout}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:") && l.contains("UnsupportedAnnotation"))
        .collect();
    assert_eq!(warnings.len(), 3, "{stdout}");
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("configuration-snippet") && l.contains("never"))
    );
    assert!(warnings.iter().any(|l| l.contains("enable-influxdb")));
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("no-such-annotation") && l.contains("not one"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backend for protocol tests: HTTP/1.1 and HTTP/2 (h2c by prior knowledge, or h2 by
/// ALPN under TLS), answering JSON about what arrived, with a `grpc-status` trailer.
async fn protocol_backend(tls: bool) -> std::net::SocketAddr {
    use hyper::body::Frame;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = tls.then(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/");
        let certs: Vec<_> = rustls_pki_types::pem::PemObject::pem_file_iter(format!("{dir}rsa.crt"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = rustls_pki_types::pem::PemObject::from_pem_file(format!("{dir}rsa-pkcs1.key")).unwrap();
        let mut cfg =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    });
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let doc = serde_json::json!({
                        "version": format!("{:?}", req.version()),
                        "tls": tls,
                        "te": req.headers().get("te").and_then(|v| v.to_str().ok()),
                        "authority": req.uri().authority().map(|a| a.to_string()),
                        "host": req.headers().get("host").and_then(|v| v.to_str().ok()),
                    });
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
                        Ok(Frame::data(Bytes::from(doc.to_string()))),
                        Ok(Frame::trailers(trailers)),
                    ];
                    Ok::<_, std::convert::Infallible>(http::Response::new(StreamBody::new(futures_util::stream::iter(
                        frames,
                    ))))
                });
                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = match acceptor {
                    Some(a) => match a.accept(s).await {
                        Ok(t) => builder.serve_connection(hyper_util::rt::TokioIo::new(t), svc).await,
                        Err(_) => return,
                    },
                    None => builder.serve_connection(hyper_util::rt::TokioIo::new(s), svc).await,
                };
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_protocols_and_app_protocol() {
    let plain = protocol_backend(false).await;
    let tls = protocol_backend(true).await;
    let manifests = class()
        + &service("plain", &[plain])
        + &service("tls", &[tls])
        + &service_with(
            fixture::service("default", "h2c")
                .port("http", 80)
                .app_protocol("kubernetes.io/h2c"),
            &[plain],
        )
        + &annotated_ingress(
            "grpc",
            "grpc.test",
            "/",
            "plain",
            &[(&format!("{NGINX}backend-protocol"), "GRPC")],
        )
        + &annotated_ingress(
            "https",
            "https.test",
            "/",
            "tls",
            &[(&format!("{NGINX}backend-protocol"), "HTTPS")],
        )
        + &annotated_ingress(
            "grpcs",
            "grpcs.test",
            "/",
            "tls",
            &[(&format!("{NGINX}backend-protocol"), "GRPCS")],
        )
        + &annotated_ingress("app", "app.test", "/", "h2c", &[])
        + &service_with(
            fixture::service("default", "tls-app")
                .port("http", 80)
                .app_protocol("https"),
            &[tls],
        )
        + &annotated_ingress("app-tls", "apptls.test", "/", "tls-app", &[])
        + &annotated_ingress(
            "h2c",
            "h2c.test",
            "/",
            "plain",
            &[(&format!("{NGINX}backend-protocol"), "H2C")],
        )
        + &annotated_ingress("http", "http.test", "/", "plain", &[])
        + &annotated_ingress(
            "ajp",
            "ajp.test",
            "/",
            "plain",
            &[(&format!("{NGINX}backend-protocol"), "AJP")],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let seen = async |host: &str| json(&get(p.http, host, "/x").await.unwrap().2);

    let h = seen("http.test").await;
    assert_eq!(
        (h["version"].as_str(), h["tls"].as_bool()),
        (Some("HTTP/1.1"), Some(false))
    );
    let h = seen("https.test").await;
    assert_eq!(
        (h["version"].as_str(), h["tls"].as_bool()),
        (Some("HTTP/1.1"), Some(true))
    );
    assert_eq!(h["host"], "https.test");
    let h = seen("grpcs.test").await;
    assert_eq!(
        (h["version"].as_str(), h["tls"].as_bool()),
        (Some("HTTP/2.0"), Some(true))
    );
    assert_eq!(h["authority"], "grpcs.test");
    let h = seen("app.test").await;
    assert_eq!(
        (h["version"].as_str(), h["tls"].as_bool()),
        (Some("HTTP/2.0"), Some(false))
    );
    let h = seen("apptls.test").await;
    assert_eq!(
        (h["version"].as_str(), h["tls"].as_bool()),
        (Some("HTTP/1.1"), Some(true))
    );
    let h = seen("h2c.test").await;
    assert_eq!(
        (h["version"].as_str(), h["tls"].as_bool()),
        (Some("HTTP/2.0"), Some(false))
    );
    // An unsupported value: a diagnostic, and HTTP/1.1.
    assert_eq!(seen("ajp.test").await["version"], "HTTP/1.1");
    let d = diagnostics_of(&p.routes().await, "ajp");
    assert_eq!(d.len(), 1, "{d:?}");

    // A gRPC-shaped call from an HTTP/2 client: te: trailers goes through, trailers come back.
    let stream = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method("POST")
        .uri("http://grpc.test/pkg.Service/Method")
        .version(http::Version::HTTP_2)
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers came back");
    assert_eq!(trailers["grpc-status"], "0");
    let doc = json(&String::from_utf8_lossy(&collected.to_bytes()));
    assert_eq!(
        (doc["version"].as_str(), doc["te"].as_str()),
        (Some("HTTP/2.0"), Some("trailers"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_annotations_end_to_end() {
    let web = pods("web", 1).await;
    let tls_ingress = |name: &str, host: &str, notes: &[(&str, &str)]| {
        yaml(&[nginx_ingress(name, host, "web", notes)
            .tls(&[host], Some("foo-tls"))
            .into()])
    };
    let manifests = class()
        + &service("web", &web)
        + &service("flaky", &[web[0], refused_addr()])
        + &tls_secret("default", "foo-tls", "rsa.crt", "rsa-pkcs1.key")
        + &tls_ingress("redirecting", "foo.com", &[])
        + &tls_ingress("plain-ok", "rsa.example.com", &[("ssl-redirect", "false")])
        + &ingress(
            "cookie",
            "cookie.test",
            &[
                ("affinity", "cookie"),
                ("session-cookie-path", "/custom"),
                ("session-cookie-samesite", "None"),
                ("session-cookie-conditional-samesite-none", "true"),
            ],
        )
        + &yaml(&[nginx_ingress("one-try", "one.test", "flaky", &[("proxy-next-upstream-tries", "1")]).into()])
        + &ingress(
            "cors",
            "cors.test",
            &[
                ("enable-cors", "true"),
                ("cors-allow-credentials", "false"),
                ("cors-allow-headers", "X-Custom, Content-Type"),
            ],
        )
        + &ingress("allow", "allow.test", &[("allowlist-source-range", "192.0.2.0/24")]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // ssl-redirect: on by default for TLS hosts, off when the Ingress says so.
    assert_eq!(get(p.http, "foo.com", "/").await.unwrap().0, 308);
    assert_eq!(get(p.http, "rsa.example.com", "/").await.unwrap().0, 200);

    // Cookie path and conditional SameSite=None.
    let modern = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    let old = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.90 Safari/537.36";
    let (_, h, _) = send(&p, "GET", "cookie.test", "/", &[("user-agent", modern)], b"").await;
    let set = h["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("; Path=/custom") && set.contains("; SameSite=None") && set.contains("; Secure"),
        "{set}"
    );
    let (_, h, _) = send(&p, "GET", "cookie.test", "/", &[("user-agent", old)], b"").await;
    let set = h["set-cookie"].to_str().unwrap().to_string();
    assert!(!set.contains("SameSite"), "{set}");

    // One try: the request that meets the dead endpoint is not moved on.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(get(p.http, "one.test", "/").await.unwrap().0);
    }
    assert!(statuses.contains(&502), "{statuses:?}");

    let (_, h, _) = send(&p, "GET", "cors.test", "/", &[("origin", "https://x.example")], b"").await;
    assert!(h.get("access-control-allow-credentials").is_none());
    assert_eq!(h["access-control-allow-headers"], "X-Custom, Content-Type");

    assert_eq!(get(p.http, "allow.test", "/").await.unwrap().0, 403);
}

/// Numbers past every sane range (issue 21): each is a Warning diagnostic, the default is
/// used, and the route keeps answering. Before they were bounded, the timeouts overflowed
/// `Instant + Duration` on each request (the client's connection died) and the cookie
/// lifetime made the date formatter panic for each new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_numbers_are_warnings_and_routes_keep_serving() {
    let web = pods("web", 1).await;
    let max = "18446744073709551615";
    let manifests = class()
        + &service("web", &web)
        + &ingress(
            "timeouts",
            "timeouts.test",
            &[
                ("proxy-connect-timeout", max),
                ("proxy-read-timeout", max),
                ("proxy-send-timeout", max),
            ],
        )
        + &ingress(
            "cookie",
            "cookie.test",
            &[
                ("affinity", "cookie"),
                ("session-cookie-expires", "300000000000"),
                ("session-cookie-max-age", max),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // Portico's own client (no body), then hyper's with a body large enough to be read in
    // several waits.
    let (s, _, _) = get(p.http, "timeouts.test", "/").await.unwrap();
    assert_eq!(s, 200);
    let (s, _, b) = send(&p, "POST", "timeouts.test", "/echo-body", &[], &vec![b'a'; 1 << 20]).await;
    assert_eq!((s, b.len()), (200, 1 << 20));

    let (s, h, _) = get(p.http, "cookie.test", "/").await.unwrap();
    assert_eq!(s, 200);
    let set = h["set-cookie"].to_str().unwrap();
    assert!(!set.contains("Expires") && !set.contains("Max-Age"), "{set}");

    let routes = p.routes().await;
    assert_eq!(diagnostics_of(&routes, "timeouts").len(), 3, "{routes}");
    assert_eq!(diagnostics_of(&routes, "cookie").len(), 2, "{routes}");
}

/// `n * 60` overflowed in compile (a panic in debug builds, and in manifests mode the
/// poller stopped for good, so Portico never became ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_in_minutes_that_overflows_is_a_warning() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &ingress(
            "minutes",
            "minutes.test",
            &[("proxy-read-timeout", "400000000000000000m")],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    assert_eq!(get(p.http, "minutes.test", "/").await.unwrap().0, 200);
    let d = diagnostics_of(&p.routes().await, "minutes");
    assert!(d.len() == 1 && d[0].contains("proxy-read-timeout"), "{d:?}");
}
