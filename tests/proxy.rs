//! The data plane end to end: a real `portico` process, real sockets, real TLS.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use portico::fixture::{self, Exact, PathType, Prefix, yaml};
use support::*;

fn ingress(name: &str, rules: &[(&str, &str, PathType, &str)], tls: &[(&[&str], &str)]) -> String {
    let ingress = fixture::ingress("default", name).class("portico");
    let ingress = rules
        .iter()
        .fold(ingress, |i, (host, path, ty, svc)| i.rule(host, path, *ty, svc, 80));
    let ingress = tls
        .iter()
        .fold(ingress, |i, (hosts, secret)| i.tls(hosts, Some(secret)));
    yaml(&[ingress.into()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_and_answers_errors() {
    let web = pods("web", 2).await;
    let api = pods("api", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &service("api", &api)
        + &service("dead", &[refused_addr()])
        + &service("empty", &[])
        + &ingress(
            "main",
            &[
                ("foo.com", "/", Prefix, "web"),
                ("foo.com", "/api", Prefix, "api"),
                ("foo.com", "/dead", Prefix, "dead"),
                ("foo.com", "/empty", Prefix, "empty"),
                ("foo.com", "/ghost", Prefix, "ghost"),
                ("*.wild.com", "/", Prefix, "api"),
            ],
            &[],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    let (s, h, b) = get(p.http, "foo.com", "/api/users?id=7").await.unwrap();
    assert_eq!(s, 200);
    let j = json(&b);
    assert_eq!(j["pod"], "api-0");
    assert_eq!(j["target"], "/api/users?id=7", "request-target forwarded unchanged");
    assert_eq!(j["headers"]["host"], "foo.com");
    assert_eq!(j["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(j["headers"]["x-forwarded-proto"], "http");
    assert_eq!(j["headers"]["x-forwarded-host"], "foo.com");
    assert_eq!(j["headers"]["x-forwarded-port"], p.http.port().to_string());
    assert_eq!(j["headers"]["x-real-ip"], "127.0.0.1");
    assert_eq!(j["headers"]["x-request-id"].as_str().unwrap().len(), 32);
    assert!(h.contains_key("content-length"), "Content-Length kept");
    assert_eq!(h["server"], "portico", "Server added when the upstream sends none");

    // Prefix is element-wise; the wildcard covers one label; host is case-insensitive.
    assert_eq!(
        json(&get(p.http, "foo.com", "/apix").await.unwrap().2)["pod"]
            .as_str()
            .unwrap()[..3],
        *"web"
    );
    assert_eq!(json(&get(p.http, "a.wild.com", "/").await.unwrap().2)["pod"], "api-0");
    assert_eq!(
        json(&get(p.http, "FOO.com:80", "/api").await.unwrap().2)["pod"],
        "api-0"
    );
    assert_eq!(get(p.http, "a.b.wild.com", "/").await.unwrap().0, 404);

    // Round robin: fresh connections spread over both pods.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(
            json(&get(p.http, "foo.com", "/").await.unwrap().2)["pod"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["web-0", "web-1"]);

    // Portico's own answers.
    let (s, _, b) = get(p.http, "nothing.com", "/").await.unwrap();
    assert_eq!((s, b.trim()), (404, "not found: no route for this host and path"));
    // 5xx answers name nothing of the cluster to the client; the log says why, with the
    // request id.
    let empty = Request::builder()
        .uri("/empty")
        .header("host", "foo.com")
        .header("x-request-id", "req-empty-1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (s, _, b) = request(p.http, empty).await.unwrap();
    assert_eq!((s, b.trim()), (503, "service unavailable"));
    let (s, _, b) = get(p.http, "foo.com", "/ghost").await.unwrap();
    assert_eq!((s, b.trim()), (503, "service unavailable"));
    let (s, _, b) = get(p.http, "foo.com", "/dead").await.unwrap();
    assert_eq!((s, b.trim()), (502, "bad gateway"));
    // The warning reaches the test through Portico's log writer and a pipe read by another
    // thread: under load it may come some time after the answer.
    let warned = |l: &String| l.contains("req-empty-1") && l.contains("has no ready endpoints");
    for _ in 0..100 {
        if p.logs.lock().unwrap().iter().any(warned) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = p.logs.lock().unwrap().join("\n");
    assert!(p.logs.lock().unwrap().iter().any(warned), "{logs}");
    assert!(logs.contains("does not exist"), "{logs}");
    assert_eq!(get(p.http, "bad host!", "/").await.unwrap().0, 400);
    let two_hosts = Request::builder()
        .uri("/")
        .header("host", "foo.com")
        .header("host", "evil.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(request(p.http, two_hosts).await.unwrap().0, 400);

    // The admin listener describes what is served.
    let routes = p.routes().await;
    assert_eq!(routes["hosts"]["foo.com"].as_array().unwrap().len(), 5);
    assert!(
        routes["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["reason"] == "ServiceNotFound")
    );
    let (_, _, metrics) = get(p.admin, "admin", "/metrics").await.unwrap();
    assert!(
        metrics
            .contains("portico_requests_total{namespace=\"default\",ingress=\"main\",service=\"api\",status=\"2xx\"}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_cannot_reach_another_route() {
    let public = pods("public", 1).await;
    let admin = pods("admin", 1).await;
    let manifests = class()
        + &service("public", &public)
        + &service("admin", &admin)
        + &ingress(
            "i",
            &[
                ("h.com", "/public", Prefix, "public"),
                ("h.com", "/admin", Exact, "admin"),
            ],
            &[],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    // Routed on the normalized path, and the backend gets exactly what was routed.
    let (s, _, b) = get(p.http, "h.com", "/public/../public/x").await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(json(&b)["target"], "/public/x");
    let (s, _, b) = get(p.http, "h.com", "/public/%2e%2e/admin").await.unwrap();
    assert_eq!(
        (s, json(&b)["pod"].as_str().unwrap()),
        (200, "admin-0"),
        "normalized to /admin: routed and forwarded as /admin"
    );
    assert_eq!(json(&b)["target"], "/admin");
    for sneaky in [
        "/public/..%2Fadmin",
        "/public/%2e%2e%2fadmin",
        "/public/..%5Cadmin",
        "/public/%zz",
    ] {
        assert_eq!(get(p.http, "h.com", sneaky).await.unwrap().0, 400, "{sneaky}");
    }
    // An encoded slash is not a separator: it stays inside the segment.
    let (s, _, b) = get(p.http, "h.com", "/public/a%2Fb").await.unwrap();
    assert_eq!((s, json(&b)["target"].as_str().unwrap()), (200, "/public/a%2Fb"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_by_sni_and_redirects() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &tls_secret("default", "rsa", "rsa.crt", "rsa-pkcs1.key")
        + &tls_secret("default", "ec", "ec.crt", "ec-sec1.key")
        + &tls_secret("default", "chain", "chain.crt", "leaf-pkcs8.key")
        + &ingress(
            "t",
            &[
                ("foo.com", "/bar", Prefix, "web"),
                ("www.example.com", "/", Prefix, "web"),
                ("chain.example.com", "/", Prefix, "web"),
                ("plain.com", "/", Prefix, "web"),
            ],
            &[
                (&["foo.com"], "rsa"),
                (&["*.example.com"], "ec"),
                (&["chain.example.com"], "chain"),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // The quickstart line: curl -k --resolve foo.com:PORT:127.0.0.1 https://foo.com:PORT/bar
    let a = tls_get(p.https, Some("foo.com"), "/bar", false).await.unwrap();
    assert_eq!((a.status, a.cert_cn.as_str()), (200, "rsa.example.com"));
    assert_eq!(json(&a.body)["headers"]["x-forwarded-proto"], "https");
    let a = tls_get(p.https, Some("www.example.com"), "/", false).await.unwrap();
    assert_eq!(
        (a.status, a.cert_cn.as_str()),
        (200, "*.example.com"),
        "wildcard certificate"
    );
    let a = tls_get(p.https, Some("chain.example.com"), "/", false).await.unwrap();
    assert_eq!(
        (a.cert_cn.as_str(), a.chain_len),
        ("chain.example.com", 2),
        "exact beats wildcard; full chain"
    );
    let a = tls_get(p.https, Some("plain.com"), "/", false).await.unwrap();
    assert_eq!((a.status, a.cert_cn.as_str()), (200, "Portico Default Certificate"));
    let a = tls_get(p.https, None, "/", false).await.unwrap();
    assert_eq!(a.cert_cn, "Portico Default Certificate", "no SNI: default certificate");

    // HTTP/2 by ALPN.
    let a = tls_get(p.https, Some("foo.com"), "/bar", true).await.unwrap();
    assert_eq!((a.status, a.alpn.as_deref()), (200, Some(&b"h2"[..])));
    assert_eq!(json(&a.body)["version"], "HTTP/1.1", "upstream speaks HTTP/1.1");
    assert_eq!(
        json(&a.body)["headers"]["host"],
        "foo.com",
        ":authority becomes Host upstream"
    );

    // Plain HTTP to a TLS host: 308 to https, query kept; hosts without TLS are served.
    let (s, h, _) = get(p.http, "foo.com", "/bar?q=1").await.unwrap();
    assert_eq!(s, 308);
    assert_eq!(h["location"], format!("https://foo.com:{}/bar?q=1", p.https.port()));
    assert_eq!(get(p.http, "plain.com", "/").await.unwrap().0, 200);
}

/// foo.com over TLS (the RSA test certificate) to one echo pod.
async fn tls_site() -> String {
    let web = pods("web", 1).await;
    class()
        + &service("web", &web)
        + &tls_secret("default", "rsa", "rsa.crt", "rsa-pkcs1.key")
        + &ingress("t", &[("foo.com", "/", Prefix, "web")], &[(&["foo.com"], "rsa")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sessions_resume_once_per_ticket_and_can_be_turned_off() {
    let files = [("all.yaml", tls_site().await)];
    let p = Portico::start(&files, &[]).await;
    let ok = "HTTP/1.1 200 OK";
    let (full, resumed) = (rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed);

    // TLS 1.3: one ticket per handshake, single use, so each connection resumes from the
    // ticket the previous one left, and two connections at once cannot both resume.
    let tls13 = std::sync::Arc::new(insecure_client(&[&rustls::version::TLS13]));
    assert_eq!(tls_once(p.https, &tls13, "foo.com").await.unwrap(), (full, ok.into()));
    for _ in 0..3 {
        assert_eq!(
            tls_once(p.https, &tls13, "foo.com").await.unwrap(),
            (resumed, ok.into())
        );
    }
    let (a, b) = tokio::join!(
        tls_once(p.https, &tls13, "foo.com"),
        tls_once(p.https, &tls13, "foo.com")
    );
    let mut kinds = [a.unwrap().0, b.unwrap().0];
    kinds.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(kinds, [full, resumed], "one ticket, one resumption");

    // TLS 1.2: session ids, resumable again and again.
    let tls12 = std::sync::Arc::new(insecure_client(&[&rustls::version::TLS12]));
    assert_eq!(tls_once(p.https, &tls12, "foo.com").await.unwrap(), (full, ok.into()));
    for _ in 0..2 {
        assert_eq!(
            tls_once(p.https, &tls12, "foo.com").await.unwrap(),
            (resumed, ok.into())
        );
    }
    drop(p);

    // A session older than --tls-session-timeout is not resumed.
    let p = Portico::start(&files, &["--tls-session-timeout", "1s"]).await;
    let tls13 = std::sync::Arc::new(insecure_client(&[&rustls::version::TLS13]));
    assert_eq!(tls_once(p.https, &tls13, "foo.com").await.unwrap().0, full);
    assert_eq!(tls_once(p.https, &tls13, "foo.com").await.unwrap().0, resumed);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(tls_once(p.https, &tls13, "foo.com").await.unwrap().0, full, "expired");
    drop(p);

    // --tls-session-cache 0: every handshake is full.
    let p = Portico::start(&files, &["--tls-session-cache", "0"]).await;
    for cfg in [&tls13, &tls12] {
        for _ in 0..2 {
            assert_eq!(tls_once(p.https, cfg, "foo.com").await.unwrap(), (full, ok.into()));
        }
    }
}

/// The TLS 1.3 ticket waits for the first response instead of going out alone right after
/// the handshake: the client gets one packet, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_ticket_leaves_with_the_first_response() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = Portico::start(&[("all.yaml", tls_site().await)], &[]).await;
    let cfg = std::sync::Arc::new(insecure_client(&[&rustls::version::TLS13]));
    let stream = tokio::net::TcpStream::connect(p.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("foo.com").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, stream)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Full));
    // The client's Finished is sent; nothing comes until the client asks for something.
    let quiet = tokio::time::timeout(Duration::from_millis(500), tls.get_ref().0.readable()).await;
    assert!(
        quiet.is_err(),
        "the server wrote before the first request (a ticket on its own)"
    );
    tls.write_all(b"GET / HTTP/1.1\r\nHost: foo.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // The ticket did arrive with it: the next connection resumes.
    assert_eq!(
        tls_once(p.https, &cfg, "foo.com").await.unwrap().0,
        rustls::HandshakeKind::Resumed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_edits_apply_live_and_bad_files_keep_the_last_good_config() {
    let a = pods("a", 1).await;
    let b = pods("b", 1).await;
    let base = class() + &service("a", &a) + &service("b", &b);
    let p = Portico::start(
        &[
            ("base.yaml", base),
            ("ing.yaml", ingress("i", &[("h.com", "/", Prefix, "a")], &[])),
        ],
        &[],
    )
    .await;
    let generation = p.routes().await["generation"].as_u64().unwrap();

    // Requests keep running while the Ingress is switched from a to b: none may fail.
    let addr = p.http;
    let load = tokio::spawn(async move {
        let mut pods = Vec::new();
        for _ in 0..300 {
            let (s, _, body) = get(addr, "h.com", "/").await.unwrap();
            assert_eq!(s, 200, "{body}");
            pods.push(json(&body)["pod"].as_str().unwrap().to_string());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        pods
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    p.write("ing.yaml", &ingress("i", &[("h.com", "/", Prefix, "b")], &[]));
    let seen = load.await.unwrap();
    assert_eq!(seen.first().unwrap(), "a-0");
    assert_eq!(seen.last().unwrap(), "b-0", "the edit took effect");
    p.wait_generation(generation + 1).await;

    // A broken file: reported, and the previous objects of that file keep serving.
    p.write(
        "ing.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i\n  broken: [",
    );
    p.wait_generation(generation + 2).await;
    let routes = p.routes().await;
    let diags = routes["diagnostics"].as_array().unwrap();
    assert!(
        diags
            .iter()
            .any(|d| d["reason"] == "InvalidManifest" && d["object"]["name"].as_str().unwrap().ends_with("ing.yaml"))
    );
    assert_eq!(json(&get(p.http, "h.com", "/").await.unwrap().2)["pod"], "b-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_and_upgrades_tunnel() {
    let web = pods("web", 1).await;
    // 8 MiB up: past the default proxy-body-size of 1m, so the Ingress allows any size.
    let manifests = class()
        + &service("web", &web)
        + &annotated_ingress(
            "i",
            "h.com",
            "/",
            "web",
            &[("nginx.ingress.kubernetes.io/proxy-body-size", "0")],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    let big: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let req = Request::builder()
        .method("POST")
        .uri("/echo-body")
        .header("host", "h.com")
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let stream = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(got.len(), big.len());
    assert!(got[..] == big[..], "8 MiB came back intact");

    // A WebSocket session through the proxy: handshake, masked frames out, echoes back.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    s.write_all(format!("GET /ws HTTP/1.1\r\nHost: h.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // RFC 6455's own example key and accept value.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    for (opcode, msg) in [
        (0x1u8, &b"hello through portico"[..]),
        (0x2, &[0u8, 1, 2, 255][..]),
        (0x8, &[0x03, 0xe8][..]),
    ] {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![0x80 | opcode, 0x80 | msg.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(msg.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        s.write_all(&frame).await.unwrap();
        let mut rh = [0u8; 2];
        s.read_exact(&mut rh).await.unwrap();
        assert_eq!((rh[0], rh[1]), (0x80 | opcode, msg.len() as u8), "unmasked echo frame");
        let mut payload = vec![0u8; msg.len()];
        s.read_exact(&mut payload).await.unwrap();
        assert_eq!(payload, msg);
    }

    // A client's `Upgrade: h2c` is not forwarded.
    let req = Request::builder()
        .uri("/")
        .header("host", "h.com")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (s, _, b) = request(p.http, req).await.unwrap();
    assert_eq!(s, 200);
    let h = &json(&b)["headers"];
    assert!(h.get("upgrade").is_none() && h.get("http2-settings").is_none(), "{h}");

    // Hop-by-hop request fields, and those Connection names, stay with the proxy.
    let req = Request::builder()
        .uri("/")
        .header("host", "h.com")
        .header("connection", "x-secret")
        .header("x-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("x-kept", "1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (s, _, b) = request(p.http, req).await.unwrap();
    assert_eq!(s, 200);
    let h = &json(&b)["headers"];
    for gone in ["x-secret", "keep-alive", "proxy-connection", "te"] {
        assert!(h.get(gone).is_none(), "{gone} forwarded: {h}");
    }
    assert_eq!(h["x-kept"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gets_504_and_dead_endpoints_are_skipped() {
    // A "pod" that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let live = pods("live", 1).await;
    let dead = refused_addr();
    let manifests = class()
        + &service("slow", &[silent_addr])
        + &service("mixed", &[dead, live[0]])
        + &ingress(
            "i",
            &[("h.com", "/slow", Prefix, "slow"), ("h.com", "/", Prefix, "mixed")],
            &[],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &["--upstream-response-timeout", "500ms"]).await;
    let (s, _, b) = get(p.http, "h.com", "/slow").await.unwrap();
    assert_eq!(s, 504, "{b}");
    // Every GET succeeds: a refused connect moves on to the next endpoint.
    for _ in 0..6 {
        let (s, _, b) = get(p.http, "h.com", "/").await.unwrap();
        assert_eq!((s, json(&b)["pod"].as_str().unwrap()), (200, "live-0"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_serves_probes_and_metrics_but_not_routes() {
    let pods = pods("web", 1).await;
    let files = [(
        "app.yaml",
        class() + &service("web", &pods) + &ingress("web", &[("foo.com", "/", Prefix, "web")], &[]),
    )];
    let p = Portico::start(&files, &["--metrics-addr", "127.0.0.1:0"]).await;
    let line = p
        .logs
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("portico is serving"))
        .cloned()
        .unwrap();
    let metrics: std::net::SocketAddr = json(&line)["fields"]["metrics"].as_str().unwrap().parse().unwrap();
    assert_eq!(get(p.http, "foo.com", "/").await.unwrap().0, 200);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(metrics, "x", path).await.unwrap().0, 200, "{path}");
    }
    let (s, _, b) = get(metrics, "x", "/routes").await.unwrap();
    assert_eq!(s, 404);
    assert!(!b.contains("foo.com"));
    // The full admin listener still has it.
    assert!(p.routes().await["hosts"]["foo.com"].is_array());
}
