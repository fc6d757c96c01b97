//! What happens on a client connection before HTTP, end to end over real sockets: PROXY
//! protocol v1 and v2 headers written by the test (client address in X-Forwarded-For, the
//! allowlist and the access log; connections without one closed), SSL passthrough (the
//! backend's own certificate reaches curl, other hosts keep Portico's), the TLS settings
//! (`--ssl-protocols`, `--ssl-ciphers` seen by curl and `openssl s_client`, HSTS), and the
//! snippet annotations refused with a Warning while the rest of the Ingress is served.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use portico::fixture::{self, Prefix, yaml};
use support::tls_backend::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// Writes `front` and then an HTTP/1.1 request for `host` on a new connection; the whole
/// answer as text (empty when Portico closed the connection without one).
async fn raw_get(addr: SocketAddr, front: &[u8], host: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(front).await.unwrap();
    let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    // Portico may already have closed a connection it refused: a failed write is an answer too.
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("Portico answers or closes");
    String::from_utf8_lossy(&out).into_owned()
}

/// The JSON body of an echo pod's answer.
fn echoed(answer: &str) -> serde_json::Value {
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    // The echo answers with Content-Length, so the body is the JSON as is.
    json(body)
}

fn status(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("")
}

fn v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21);
    let mut addrs = Vec::new();
    let family = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            addrs.extend_from_slice(&s.ip().octets());
            addrs.extend_from_slice(&d.ip().octets());
            0x11
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            addrs.extend_from_slice(&s.ip().octets());
            addrs.extend_from_slice(&d.ip().octets());
            0x21
        }
        _ => panic!("one family"),
    };
    addrs.extend_from_slice(&src.port().to_be_bytes());
    addrs.extend_from_slice(&dst.port().to_be_bytes());
    // A TLV as AWS's NLB sends (PP2_TYPE_AWS, VPC endpoint id): skipped by Portico.
    addrs.extend_from_slice(&[0xEA, 0, 5, 0x01, b'v', b'p', b'c', b'e']);
    h.push(family);
    h.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    h.extend_from_slice(&addrs);
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_gives_the_client_address() {
    let web = pods("web", 1).await;
    let sticky = pods("sticky", 2).await;
    let manifests = class()
        + &service("web", &web)
        + &service_with(
            fixture::service("default", "sticky")
                .port("http", 80)
                .client_ip_affinity(None),
            &sticky,
        )
        + &annotated_ingress("sticky", "sticky.example", "/", "sticky", &[])
        + &annotated_ingress("open", "pp.example", "/", "web", &[])
        + &annotated_ingress(
            "allow",
            "allow.example",
            "/",
            "web",
            &[(&format!("{NGINX}whitelist-source-range"), "192.0.2.0/24")],
        );
    let p = Portico::start(
        &[("all.yaml", manifests)],
        &[
            "--use-proxy-protocol",
            "--access-log",
            "on",
            "--proxy-protocol-header-timeout",
            "1s",
        ],
    )
    .await;

    // v1, TCP4: the header's source is the client, its destination port X-Forwarded-Port.
    let a = raw_get(
        p.http,
        b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 8080\r\n",
        "pp.example",
    )
    .await;
    let j = echoed(&a);
    assert_eq!(j["headers"]["x-forwarded-for"], "192.0.2.7");
    assert_eq!(j["headers"]["x-real-ip"], "192.0.2.7");
    assert_eq!(j["headers"]["x-forwarded-port"], "8080");
    assert_eq!(j["headers"]["x-forwarded-proto"], "http");

    // v2, TCP6 with a TLV; and to port 443 of a load balancer that terminated TLS: https, as
    // ingress-nginx says for that port.
    let v2 = v2_header(
        "[2001:db8::7]:40000".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    );
    let j = echoed(&raw_get(p.http, &v2, "pp.example").await);
    assert_eq!(j["headers"]["x-forwarded-for"], "2001:db8::7");
    assert_eq!(j["headers"]["x-forwarded-proto"], "https");

    // The allowlist judges the address from the header, not the socket's 127.0.0.1.
    let inside = raw_get(p.http, b"PROXY TCP4 192.0.2.9 198.51.100.1 1 80\r\n", "allow.example").await;
    assert_eq!(status(&inside), "200", "{inside}");
    let v2 = v2_header("203.0.113.9:1".parse().unwrap(), "198.51.100.1:80".parse().unwrap());
    let outside = raw_get(p.http, &v2, "allow.example").await;
    assert_eq!(status(&outside), "403", "{outside}");
    let local = raw_get(p.http, b"", "allow.example").await;
    assert_eq!(local, "", "no header: closed without an answer");

    // ClientIP affinity keys on the header's client: two clients behind the one balancer
    // address each keep their own pod.
    // (Round robin alone would split the repeated clients; affinity on the socket address
    // would put both on one pod.)
    let (a, b) = ("192.0.2.21", "192.0.2.22");
    let mut pods_of = std::collections::BTreeMap::<&str, std::collections::BTreeSet<String>>::new();
    for client in [a, b, a, a, b, b, a, b] {
        let front = format!("PROXY TCP4 {client} 198.51.100.1 1000 80\r\n");
        let j = echoed(&raw_get(p.http, front.as_bytes(), "sticky.example").await);
        pods_of
            .entry(client)
            .or_default()
            .insert(j["pod"].as_str().unwrap().to_string());
    }
    assert!(pods_of.values().all(|p| p.len() == 1), "{pods_of:?}");
    assert_ne!(pods_of[a], pods_of[b], "{pods_of:?}");

    // v2 LOCAL (a load balancer's health check): the socket's own address.
    let mut local_cmd = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local_cmd.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let j = echoed(&raw_get(p.http, &local_cmd, "pp.example").await);
    assert_eq!(j["headers"]["x-forwarded-for"], "127.0.0.1");

    // Without a header, with a broken one, or with one that never ends: closed, no answer.
    for bad in [
        &b""[..],
        b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",
        b"PROXY TCP4 999.0.2.7 198.51.100.1 1 2\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
    ] {
        let a = raw_get(p.http, bad, "pp.example").await;
        assert_eq!(a, "", "{bad:?} → {a}");
    }
    let started = std::time::Instant::now();
    let mut silent = TcpStream::connect(p.http).await.unwrap();
    silent.write_all(b"PROXY TCP4 ").await.unwrap();
    let mut rest = Vec::new();
    silent.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // HTTPS: the header, then TLS on the same connection.
    let mut s = TcpStream::connect(p.https).await.unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.44 198.51.100.1 5555 443\r\n")
        .await
        .unwrap();
    let cfg = Arc::new(insecure_client(rustls::DEFAULT_VERSIONS));
    let name = rustls::pki_types::ServerName::try_from("pp.example").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg).connect(name, s).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: pp.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.unwrap();
    let j = echoed(&String::from_utf8_lossy(&out));
    assert_eq!(j["headers"]["x-forwarded-for"], "192.0.2.44");
    assert_eq!(j["headers"]["x-forwarded-proto"], "https");
    // Plain HTTPS without the header: closed before any handshake.
    assert!(tls_get(p.https, Some("pp.example"), "/", false).await.is_err());

    // The access log names the header's client.
    let logged =
        p.logs.lock().unwrap().iter().any(|l| {
            l.contains("portico::access") && l.contains("\"client\":\"192.0.2.7\"") && l.contains("pp.example")
        });
    assert!(logged, "access log line with client 192.0.2.7");
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("portico-listener-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_passthrough_hands_tls_to_the_backend() {
    let dir = temp_dir("passthrough");
    let (cert, key) = openssl_cert(&dir, "backend.passthrough.test");
    let backend = tls_backend(&cert, &key).await;
    let web = pods("web", 1).await;
    let pass = format!("{NGINX}ssl-passthrough");
    let manifests = class()
        + &service("web", &web)
        + &service("tlsapp", &[backend])
        + &yaml(&[fixture::ingress("default", "pass")
            .class("portico")
            .annotation(&pass, "true")
            .annotation(&format!("{NGINX}server-alias"), "alias.example")
            .rule("pass.example", "/", Prefix, "tlsapp", 80)
            .rule("pass.example", "/plain", Prefix, "web", 80)
            .into()])
        + &annotated_ingress("other", "other.example", "/", "web", &[]);
    let p = Portico::start(&[("all.yaml", manifests.clone())], &["--enable-ssl-passthrough"]).await;
    let port = p.https.port();

    // curl sees the backend's own certificate and answer: Portico did not terminate TLS.
    let resolve = format!("pass.example:{port}:127.0.0.1");
    let url = format!("https://pass.example:{port}/");
    let out = curl(&["-k", "-v", "--resolve", &resolve, &url]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("subject: CN=backend.passthrough.test"), "{stderr}");
    assert_eq!(stdout, "tls-backend sni=pass.example\n");
    // openssl s_client says the same, with TLS 1.2 too.
    let (_, text) = s_client(p.https, "pass.example", &["-tls1_2"]);
    assert!(text.contains("CN = backend.passthrough.test"), "{text}");

    // Another host on the same listener: terminated by Portico with its certificate.
    let other = tls_get(p.https, Some("other.example"), "/", false).await.unwrap();
    assert_eq!(other.status, 200);
    assert_eq!(other.cert_cn, "Portico Default Certificate");
    assert_eq!(json(&other.body)["pod"], "web-0");
    // No SNI at all, and a name nobody passes through: terminated as before.
    let none = tls_get(p.https, None, "/", false).await.unwrap();
    assert_eq!(none.cert_cn, "Portico Default Certificate");
    // A server-alias is not passed through (ingress-nginx passes the host name only): its TLS
    // is terminated and the backend spoken to over TLS.
    let alias = tls_get(p.https, Some("alias.example"), "/", false).await.unwrap();
    assert_eq!(alias.cert_cn, "Portico Default Certificate");
    assert_eq!((alias.status, alias.body.as_str()), (200, "tls-backend sni=\n"));
    // On plain HTTP the host's rules are served, and its passed-through backend is spoken to
    // over TLS (as ingress-nginx proxies to it with https://).
    let (s, _, b) = get(p.http, "pass.example", "/").await.unwrap();
    assert_eq!((s, b.as_str()), (200, "tls-backend sni=\n"));
    // The passthrough host's other paths are served on plain HTTP only, with a Warning.
    let (s, _, b) = get(p.http, "pass.example", "/plain").await.unwrap();
    assert_eq!((s, json(&b)["pod"].clone()), (200, "web-0".into()));
    let routes = p.routes().await;
    assert_eq!(
        routes["passthrough"]["pass.example"]["service"]["name"], "tlsapp",
        "{routes}"
    );
    let diags = diagnostics_of(&routes, "pass");
    assert!(
        diags
            .iter()
            .any(|d| d.contains("path /plain") && d.contains("not used for TLS")),
        "{diags:?}"
    );

    // Without --enable-ssl-passthrough the annotation does nothing, with a Warning, as
    // ingress-nginx: Portico terminates and serves the host's rules.
    let q = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let diags = diagnostics_of(&q.routes().await, "pass");
    assert!(
        diags.iter().any(|d| d.contains("--enable-ssl-passthrough")),
        "{diags:?}"
    );
    let t = tls_get(q.https, Some("pass.example"), "/plain", false).await.unwrap();
    assert_eq!(t.cert_cn, "Portico Default Certificate");
    assert_eq!(t.status, 200);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_protocols_ciphers_and_hsts() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &annotated_ingress(
            "snippets",
            "tls.example",
            "/",
            "web",
            &[
                (&format!("{NGINX}configuration-snippet"), "more_set_headers \"X: y\";"),
                (&format!("{NGINX}server-snippet"), "location /x { return 200; }"),
                ("portico.dev/auth-snippet", "return 200;"),
                (&format!("{NGINX}stream-snippet"), "server { listen 8000; }"),
            ],
        );

    // TLS 1.3 only, HSTS with its settings changed.
    let p = Portico::start(
        &[("all.yaml", manifests.clone())],
        &[
            "--ssl-protocols",
            "TLSv1.3",
            "--hsts-max-age",
            "600",
            "--hsts-include-subdomains",
            "off",
            "--hsts-preload",
            "on",
        ],
    )
    .await;
    let port = p.https.port();
    let resolve = format!("tls.example:{port}:127.0.0.1");
    let url = format!("https://tls.example:{port}/");
    let old = curl(&["-k", "--tls-max", "1.2", "--resolve", &resolve, &url]);
    assert!(!old.status.success(), "TLS 1.2 refused");
    let new = curl(&["-k", "-i", "--tlsv1.3", "--resolve", &resolve, &url]);
    let head = String::from_utf8_lossy(&new.stdout).to_ascii_lowercase();
    assert!(new.status.success(), "{}", String::from_utf8_lossy(&new.stderr));
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(
        head.contains("strict-transport-security: max-age=600; preload\r\n"),
        "{head}"
    );
    // HSTS never on plain HTTP.
    let (s, h, _) = get(p.http, "tls.example", "/").await.unwrap();
    assert_eq!(s, 200);
    assert!(!h.contains_key("strict-transport-security"));

    // The snippets: each refused with a Warning naming the typed annotation, and the Ingress
    // still served (above).
    let diags = diagnostics_of(&p.routes().await, "snippets");
    for (snippet, typed) in [
        ("configuration-snippet", "rewrite-target"),
        ("server-snippet", "permanent-redirect"),
        ("auth-snippet", "auth-url"),
        ("stream-snippet", "ssl-passthrough"),
    ] {
        assert!(
            diags.iter().any(|d| d.contains(snippet) && d.contains(typed)),
            "{snippet}: {diags:?}"
        );
    }
    let routes = p.routes().await;
    let warned = routes["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["object"]["name"] == "snippets")
        .all(|d| d["severity"] == "warning" && d["reason"] == "UnsupportedAnnotation");
    assert!(warned, "{routes}");

    // One cipher suite for TLS 1.2: openssl s_client gets it, and a client without it fails.
    let q = Portico::start(
        &[("all.yaml", manifests)],
        &[
            "--ssl-ciphers",
            "ECDHE-ECDSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256",
        ],
    )
    .await;
    let (_, text) = s_client(q.https, "tls.example", &["-tls1_2"]);
    assert!(text.contains("Cipher is ECDHE-ECDSA-CHACHA20-POLY1305"), "{text}");
    let (ok, text) = s_client(
        q.https,
        "tls.example",
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
    );
    assert!(!ok, "{text}");
    // The skipped DHE suite is a warning in the log; default HSTS on HTTPS.
    assert!(
        q.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("DHE-RSA-AES128-GCM-SHA256") && l.contains("WARN")),
        "warning for the DHE suite"
    );
    let t = tls_get(q.https, Some("tls.example"), "/", false).await.unwrap();
    assert_eq!(
        t.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}

/// Bad TLS settings stop Portico at start with a message that says why.
#[test]
fn bad_tls_settings_are_refused_at_start() {
    let dir = temp_dir("bad");
    let run = |extra: &[&str]| {
        command()
            .args(["--manifests", dir.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--ssl-protocols", "TLSv1.1 TLSv1.2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("TLSv1.1 is not supported") && err.contains("TLS 1.2 and TLS 1.3 only"),
        "{err}"
    );
    let out = run(&["--ssl-ciphers", "ECDHE-RSA-AES128-GMC-SHA256"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ECDHE-RSA-AES128-GMC-SHA256") && err.contains("supported:"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
