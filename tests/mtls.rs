//! Client-certificate authentication (`auth-tls-*`) end to end: certificates made by the
//! `openssl` CLI (tests/fixtures/mtls/gen.sh), real `curl` with `--cert`/`--key` against the
//! real binary, and echo pods reporting the `ssl-client-*` headers they receive.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use k8s_openapi::ByteString;
use portico::fixture::{self, yaml};
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// The certificates, made once per test process.
fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("portico-mtls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mtls/gen.sh");
        let out = Command::new("bash")
            .arg(script)
            .current_dir(&dir)
            .output()
            .expect("bash and the openssl CLI are installed");
        assert!(out.status.success(), "gen.sh: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(certs().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What curl saw: status, `Location`, body.
struct Curl {
    status: u16,
    location: String,
    body: String,
}

impl Curl {
    /// The request headers the echo pod received.
    fn upstream(&self) -> serde_json::Value {
        json(&self.body)["headers"].clone()
    }
}

/// `curl` to `https://{sni}:{port}{path}` (resolved to Portico), with the client certificate
/// `cert` (`.crt` and `.key` from [`certs`]) and extra arguments.
async fn curl(p: &Portico, sni: &str, path: &str, cert: Option<&str>, extra: &[&str]) -> Curl {
    let port = p.https.port();
    let mut args: Vec<String> = vec![
        "-sk".into(),
        "--http1.1".into(),
        "--max-time".into(),
        "10".into(),
        "-o".into(),
        "-".into(),
        "-w".into(),
        "\n%{http_code} %{redirect_url}".into(),
    ];
    let url = if sni.parse::<std::net::IpAddr>().is_ok() {
        format!("https://{sni}:{port}{path}")
    } else {
        args.extend(["--resolve".into(), format!("{sni}:{port}:127.0.0.1")]);
        format!("https://{sni}:{port}{path}")
    };
    if let Some(c) = cert {
        let dir = certs();
        args.extend([
            "--cert".into(),
            dir.join(format!("{c}.crt")).to_str().unwrap().into(),
            "--key".into(),
            dir.join(format!("{c}.key")).to_str().unwrap().into(),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(url);
    let out =
        tokio::task::spawn_blocking(move || Command::new("curl").args(&args).output().expect("curl is installed"))
            .await
            .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (status, location) = last.split_once(' ').unwrap_or((last, ""));
    Curl {
        status: status
            .parse()
            .unwrap_or_else(|_| panic!("curl: {text:?} {:?}", String::from_utf8_lossy(&out.stderr))),
        location: location.to_string(),
        body: body.to_string(),
    }
}

/// The CA names the CertificateRequest of a handshake for `sni` lists, as `openssl s_client`
/// prints them (none when no certificate is asked for).
async fn ca_names(p: &Portico, sni: &str) -> Vec<String> {
    let args: Vec<String> = vec![
        "s_client".into(),
        "-connect".into(),
        format!("127.0.0.1:{}", p.https.port()),
        "-servername".into(),
        sni.into(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("the openssl CLI is installed")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("SSL handshake has read"), "s_client: {text}");
    text.lines()
        .skip_while(|l| *l != "Acceptable client certificate CA names")
        .skip(1)
        .take_while(|l| {
            !l.starts_with("Requested Signature Algorithms")
                && !l.starts_with("Client Certificate Types")
                && !l.starts_with("---")
        })
        .map(str::to_string)
        .collect()
}

fn ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let full: Vec<(String, &str)> = annotations.iter().map(|(k, v)| (format!("{NGINX}{k}"), *v)).collect();
    let full: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    annotated_ingress(name, host, "/", "web", &full)
}

/// An Opaque Secret with `ca.crt` (and `ca.crl`).
fn ca_secret(name: &str, ca: &[u8], crl: Option<&[u8]>) -> String {
    let mut fields: Vec<(&str, &[u8])> = vec![("ca.crt", ca)];
    if let Some(c) = crl {
        fields.push(("ca.crl", c));
    }
    yaml(&[fixture::opaque_secret("default", name, &fields).into()])
}

/// Percent-decoding, for the `ssl-client-cert` header.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The subject or issuer as `openssl x509 -nameopt RFC2253` prints it.
fn openssl_dn(cert: &str, which: &str) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", which, "-nameopt", "RFC2253", "-in"])
        .arg(certs().join(format!("{cert}.crt")))
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    line.trim().split_once('=').unwrap().1.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_modes_and_upstream_headers() {
    let web = pods("web", 1).await;
    let root = read("root.crt");
    let manifests = class()
        + &service("web", &web)
        + &ca_secret("ca", &root, None)
        + &ingress(
            "on",
            "on.test",
            &[
                ("auth-tls-secret", "default/ca"),
                ("auth-tls-pass-certificate-to-upstream", "true"),
            ],
        )
        + &ingress(
            "optional",
            "optional.test",
            &[("auth-tls-secret", "ca"), ("auth-tls-verify-client", "optional")],
        )
        + &ingress(
            "no-ca",
            "noca.test",
            &[("auth-tls-secret", "ca"), ("auth-tls-verify-client", "optional_no_ca")],
        )
        + &ingress(
            "off",
            "off.test",
            &[("auth-tls-secret", "ca"), ("auth-tls-verify-client", "off")],
        )
        + &ingress(
            "page",
            "page.test",
            &[
                ("auth-tls-secret", "ca"),
                ("auth-tls-error-page", "https://errors.example/client-cert"),
            ],
        )
        + &ingress(
            "page-bare",
            "pagebare.test",
            &[
                ("auth-tls-secret", "ca"),
                ("auth-tls-error-page", "errors.example:8080/client-cert"),
            ],
        )
        + &ingress(
            "cn-no",
            "cn.test",
            &[("auth-tls-secret", "ca"), ("auth-tls-match-cn", "CN=(bob|carol)")],
        )
        + &annotated_ingress(
            "cn-yes",
            "cnok.test",
            "/",
            "web",
            &[
                ("portico.dev/auth-tls-secret", "ca"),
                ("portico.dev/auth-tls-match-cn", "CN=(bob|alice)"),
            ],
        )
        + &annotated_ingress("plain", "plain.test", "/", "web", &[])
        + &tls_secret("default", "tls", "rsa.crt", "rsa-pkcs1.key")
        + &yaml(&[ingress_with(
            "tls",
            "tls.test",
            "/",
            "web",
            &[(&format!("{NGINX}auth-tls-secret"), "ca")],
        )
        .tls(&["tls.test"], Some("tls"))
        .into()]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let routes = p.routes().await;
    for name in [
        "on",
        "optional",
        "no-ca",
        "off",
        "page",
        "page-bare",
        "cn-no",
        "cn-yes",
        "tls",
    ] {
        assert_eq!(diagnostics_of(&routes, name), Vec::<String>::new(), "{name}");
    }

    // on: a certificate the CA issued passes, with the headers nginx sets.
    let r = curl(&p, "on.test", "/x", Some("alice"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = r.upstream();
    assert_eq!(h["ssl-client-verify"], "SUCCESS");
    assert_eq!(h["ssl-client-subject-dn"], openssl_dn("alice", "-subject"));
    assert_eq!(h["ssl-client-subject-dn"], "CN=alice,O=Acme\\, Inc.,C=US");
    assert_eq!(h["ssl-client-issuer-dn"], openssl_dn("alice", "-issuer"));
    let cert = h["ssl-client-cert"].as_str().unwrap();
    assert!(cert.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{cert}");
    assert_eq!(unescape(cert), String::from_utf8(read("alice.crt")).unwrap());
    // TLS 1.2 proves the key with its own CertificateVerify.
    let r = curl(&p, "on.test", "/x", Some("alice"), &["--tls-max", "1.2"]).await;
    assert_eq!(
        (r.status, r.upstream()["ssl-client-verify"].as_str()),
        (200, Some("SUCCESS"))
    );
    // None, another CA's, an expired one: 400 with nginx's reasons.
    let r = curl(&p, "on.test", "/x", None, &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("No required SSL certificate was sent"), "{}", r.body);
    for bad in ["stranger", "expired"] {
        let r = curl(&p, "on.test", "/x", Some(bad), &[]).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.body.contains("The SSL certificate error"), "{bad}: {}", r.body);
    }
    // A client's own ssl-client-* fields never reach the upstream.
    let r = curl(
        &p,
        "on.test",
        "/x",
        Some("alice"),
        &["-H", "ssl-client-subject-dn: CN=admin"],
    )
    .await;
    assert_eq!(r.upstream()["ssl-client-subject-dn"], "CN=alice,O=Acme\\, Inc.,C=US");

    // optional: no certificate passes as NONE (a forged SUCCESS is replaced); a bad one is 400.
    let r = curl(&p, "optional.test", "/x", None, &["-H", "ssl-client-verify: SUCCESS"]).await;
    assert_eq!(r.status, 200);
    let h = r.upstream();
    assert_eq!(h["ssl-client-verify"], "NONE");
    assert!(h.get("ssl-client-subject-dn").is_none(), "{h}");
    assert!(h.get("ssl-client-cert").is_none(), "{h}");
    let r = curl(&p, "optional.test", "/x", Some("alice"), &[]).await;
    assert_eq!(
        (r.status, r.upstream()["ssl-client-verify"].as_str()),
        (200, Some("SUCCESS"))
    );
    // Not passed on without auth-tls-pass-certificate-to-upstream.
    assert!(r.upstream().get("ssl-client-cert").is_none());
    for bad in ["stranger", "expired"] {
        assert_eq!(
            curl(&p, "optional.test", "/x", Some(bad), &[]).await.status,
            400,
            "{bad}"
        );
    }

    // optional_no_ca: another CA's certificate passes, marked FAILED with OpenSSL's reason;
    // an expired one is still refused (nginx lets only CA errors by).
    let r = curl(&p, "noca.test", "/x", Some("stranger"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = r.upstream();
    assert_eq!(h["ssl-client-verify"], "FAILED:unable to get local issuer certificate");
    assert_eq!(h["ssl-client-subject-dn"], "CN=alice");
    assert_eq!(h["ssl-client-issuer-dn"], "CN=other CA,O=Portico Tests");
    assert_eq!(curl(&p, "noca.test", "/x", Some("expired"), &[]).await.status, 400);
    let r = curl(&p, "noca.test", "/x", None, &[]).await;
    assert_eq!(
        (r.status, r.upstream()["ssl-client-verify"].as_str()),
        (200, Some("NONE"))
    );

    // off: nothing is asked for or checked; the upstream hears NONE.
    let r = curl(&p, "off.test", "/x", Some("stranger"), &[]).await;
    assert_eq!(
        (r.status, r.upstream()["ssl-client-verify"].as_str()),
        (200, Some("NONE"))
    );

    // auth-tls-error-page: certificate errors become a 302 there.
    let r = curl(&p, "page.test", "/x", None, &[]).await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (302, "https://errors.example/client-cert")
    );
    let r = curl(&p, "page.test", "/x", Some("expired"), &[]).await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (302, "https://errors.example/client-cert")
    );
    assert_eq!(curl(&p, "page.test", "/x", Some("alice"), &[]).await.status, 200);
    // A host and path without a scheme (ingress-nginx's pattern takes it): the Location is the
    // value as it is, as nginx sends it.
    let port = p.https.port();
    let args = [
        "-sk".to_string(),
        "--resolve".into(),
        format!("pagebare.test:{port}:127.0.0.1"),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code} %header{location}".into(),
        format!("https://pagebare.test:{port}/x"),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new("curl").args(args).output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "302 errors.example:8080/client-cert"
    );

    // auth-tls-match-cn: 403 when the subject DN does not match; the portico.dev/ twin works.
    let r = curl(&p, "cn.test", "/x", Some("alice"), &[]).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("client certificate unauthorized"), "{}", r.body);
    assert_eq!(curl(&p, "cn.test", "/x", None, &[]).await.status, 400);
    assert_eq!(curl(&p, "cnok.test", "/x", Some("alice"), &[]).await.status, 200);

    // The CertificateRequest names the CA of ca.crt; a host without a policy asks nothing.
    assert_eq!(ca_names(&p, "on.test").await, ["O = Portico Tests, CN = root CA"]);
    assert_eq!(ca_names(&p, "plain.test").await, Vec::<String>::new());
    // A host without a policy asks for nothing and sets nothing.
    let r = curl(&p, "plain.test", "/x", Some("alice"), &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.upstream().get("ssl-client-verify").is_none());

    // The policy is the SNI name's: a connection made for on.test cannot be used for
    // optional.test (421, as nginx), nor one without SNI skip the certificate (400).
    let r = curl(&p, "on.test", "/x", Some("alice"), &["-H", "Host: optional.test"]).await;
    assert_eq!(r.status, 421);
    let r = curl(&p, "plain.test", "/x", Some("alice"), &["-H", "Host: on.test"]).await;
    assert_eq!(r.status, 421);
    let r = curl(&p, "127.0.0.1", "/x", Some("alice"), &["-H", "Host: on.test"]).await;
    assert_eq!(r.status, 400);
    let r = curl(&p, "127.0.0.1", "/x", None, &["-H", "Host: optional.test"]).await;
    assert_eq!(
        (r.status, r.upstream()["ssl-client-verify"].as_str()),
        (200, Some("NONE"))
    );

    // Plain HTTP, as ingress-nginx on port 80: nothing is checked but the CN (empty there);
    // the upstream hears no ssl-client-* field, not even the ones the client sent.
    for host in ["on.test", "optional.test", "off.test", "page.test"] {
        let req = Request::builder()
            .uri("/x")
            .header("host", host)
            .header("ssl-client-verify", "SUCCESS")
            .header("ssl-client-subject-dn", "CN=alice")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (s, _, b) = request(p.http, req).await.unwrap();
        assert_eq!(s, 200, "{host}");
        let upstream = json(&b)["headers"].clone();
        assert!(upstream.get("ssl-client-verify").is_none(), "{host}: {upstream}");
        assert!(upstream.get("ssl-client-subject-dn").is_none(), "{host}: {upstream}");
    }
    for host in ["cn.test", "cnok.test"] {
        let (s, _, b) = get(p.http, host, "/x").await.unwrap();
        assert_eq!(
            (s, b.contains("client certificate unauthorized")),
            (403, true),
            "{host}"
        );
    }
    // A host with TLS sends plain HTTP to HTTPS first (308), as ssl-redirect does.
    let (s, h, _) = get(p.http, "tls.test", "/x").await.unwrap();
    let https = format!("https://tls.test:{}/x", p.https.port());
    assert_eq!((s, h["location"].to_str().unwrap()), (308, https.as_str()));
}

/// `auth-tls-error-page` with a path: nginx's `error_page 495 496 = /path` is an internal
/// redirect, so the client gets the answer of the route that path takes on the same host,
/// with its status, asked for with GET and without the client's body; the certificate is not
/// checked again there (no loop), the CN check is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_page_path_is_routed_again() {
    let web = pods("web", 1).await;
    let errors = pods("errors", 1).await;
    let root = read("root.crt");
    let on_host = |name: &str, host: &str, path: &str| annotated_ingress(name, host, path, "errors", &[]);
    // custom-http-errors on the error page's route: a request for it is intercepted, the
    // error page's own answer is not (nginx's recursive_error_pages is off).
    let intercepting = annotated_ingress(
        "optional-errors",
        "optional.test",
        "/status",
        "errors",
        &[
            ("nginx.ingress.kubernetes.io/custom-http-errors", "403"),
            ("nginx.ingress.kubernetes.io/default-backend", "web"),
        ],
    );
    let manifests = class()
        + &service("web", &web)
        + &service("errors", &errors)
        + &ca_secret("ca", &root, None)
        + &ingress(
            "on",
            "on.test",
            &[
                ("auth-tls-secret", "ca"),
                ("auth-tls-error-page", "/cert-error?from=tls"),
            ],
        )
        + &on_host("on-errors", "on.test", "/cert-error")
        + &ingress(
            "optional",
            "optional.test",
            &[
                ("auth-tls-secret", "ca"),
                ("auth-tls-verify-client", "optional"),
                ("auth-tls-error-page", "/status/403"),
            ],
        )
        + &intercepting
        + &ingress(
            "cn",
            "cn.test",
            &[
                ("auth-tls-secret", "ca"),
                ("auth-tls-match-cn", "CN=bob"),
                ("auth-tls-error-page", "/cert-error"),
            ],
        )
        + &on_host("cn-errors", "cn.test", "/cert-error");
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let routes = p.routes().await;
    for name in ["on", "optional", "cn"] {
        assert_eq!(diagnostics_of(&routes, name), Vec::<String>::new(), "{name}");
    }

    // No certificate where one is required: the error page's route answers, as a GET of the
    // page's path and query, told NONE; its own route (same host, same policy) is not checked
    // again, else this would loop or answer 400.
    let r = curl(&p, "on.test", "/app?q=1", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = json(&r.body);
    assert_eq!(doc["pod"], "errors-0");
    assert_eq!(doc["method"], "GET");
    assert_eq!(doc["target"], "/cert-error?from=tls");
    assert_eq!(doc["headers"]["ssl-client-verify"], "NONE");
    assert_eq!(r.location, "");
    // The same over HTTP/2, whose request target is a whole URL.
    let r = curl(&p, "on.test", "/app?q=1", None, &["--http2"]).await;
    let doc = json(&r.body);
    assert_eq!((r.status, doc["pod"].as_str()), (200, Some("errors-0")), "{}", r.body);
    assert_eq!(doc["target"], "/cert-error?from=tls");
    // A POST becomes a GET without its body (nginx discards it).
    let r = curl(&p, "on.test", "/app", None, &["-d", "hello"]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = json(&r.body);
    assert_eq!(
        (doc["method"].as_str(), doc["body_bytes"].as_u64()),
        (Some("GET"), Some(0))
    );
    assert!(doc["headers"].get("content-length").is_none(), "{doc}");
    // A certificate that does not verify: the same, told why.
    let r = curl(&p, "on.test", "/app", Some("expired"), &[]).await;
    let doc = json(&r.body);
    assert_eq!((r.status, doc["pod"].as_str()), (200, Some("errors-0")));
    assert_eq!(doc["headers"]["ssl-client-verify"], "FAILED:certificate has expired");
    // A good one reaches the application.
    let r = curl(&p, "on.test", "/app", Some("alice"), &[]).await;
    assert_eq!((r.status, json(&r.body)["pod"].as_str()), (200, Some("web-0")));

    // optional: no certificate is no error; a bad one gets the page's answer with its
    // status (`=` without a code takes the redirected request's).
    let r = curl(&p, "optional.test", "/app", None, &[]).await;
    assert_eq!((r.status, json(&r.body)["pod"].as_str()), (200, Some("web-0")));
    let r = curl(&p, "optional.test", "/app", Some("stranger"), &[]).await;
    let doc = json(&r.body);
    assert_eq!((r.status, doc["pod"].as_str()), (403, Some("errors-0")));
    assert_eq!(
        doc["headers"]["ssl-client-verify"],
        "FAILED:unable to get local issuer certificate"
    );
    let r = curl(&p, "optional.test", "/status/403", Some("alice"), &[]).await;
    assert_eq!(json(&r.body)["pod"], "web-0", "asked directly, the 403 is intercepted");

    // The CN check runs again on the redirect: without a certificate the empty subject does
    // not match, so 403 (nginx's server-level `if` does the same).
    let r = curl(&p, "cn.test", "/app", None, &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("client certificate unauthorized"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_depth_revocation_and_a_tls_secret() {
    let web = pods("web", 1).await;
    let root = read("root.crt");
    let int1 = read("int1.crt");
    // A kubernetes.io/tls Secret may carry the CA as well.
    let mut tls = fixture::tls_secret_files("default", "tls-with-ca", "rsa.crt", "rsa-pkcs8.key");
    tls.data
        .as_mut()
        .unwrap()
        .insert("ca.crt".into(), ByteString(root.clone()));
    let both = [root.clone(), int1].concat();
    let manifests = class()
        + &service("web", &web)
        + &yaml(&[tls.into()])
        + &ca_secret("with-crl", &root, Some(&read("root.crl")))
        + &ca_secret("root-and-int", &both, None)
        + &ingress("tls-type", "depth1.test", &[("auth-tls-secret", "tls-with-ca")])
        + &ingress(
            "depth2",
            "depth2.test",
            &[("auth-tls-secret", "tls-with-ca"), ("auth-tls-verify-depth", "2")],
        )
        + &ingress(
            "deep",
            "deep.test",
            &[("auth-tls-secret", "tls-with-ca"), ("auth-tls-verify-depth", "1000")],
        )
        + &ingress("both", "both.test", &[("auth-tls-secret", "root-and-int")])
        + &ingress("crl", "crl.test", &[("auth-tls-secret", "with-crl")]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // Depth 1 (the default): one CA between the client and the root, not two.
    assert_eq!(curl(&p, "depth1.test", "/", Some("alice"), &[]).await.status, 200);
    assert_eq!(curl(&p, "depth1.test", "/", Some("one-deep"), &[]).await.status, 200);
    assert_eq!(curl(&p, "depth1.test", "/", Some("two-deep"), &[]).await.status, 400);
    assert_eq!(curl(&p, "depth2.test", "/", Some("two-deep"), &[]).await.status, 200);
    // The CertificateRequest names the CAs of ca.crt, as nginx's ssl_client_certificate.
    assert_eq!(
        ca_names(&p, "both.test").await,
        ["O = Portico Tests, CN = root CA", "CN = Intermediate One"]
    );
    assert_eq!(ca_names(&p, "depth1.test").await, ["O = Portico Tests, CN = root CA"]);
    // Any whole number is a depth, as in ingress-nginx: 1000 takes every chain webpki builds.
    assert_eq!(curl(&p, "deep.test", "/", Some("two-deep"), &[]).await.status, 200);
    assert!(diagnostics_of(&p.routes().await, "deep").is_empty());
    // An intermediate in ca.crt still counts towards the depth, as with OpenSSL.
    assert_eq!(curl(&p, "both.test", "/", Some("one-deep"), &[]).await.status, 200);
    assert_eq!(curl(&p, "both.test", "/", Some("two-deep"), &[]).await.status, 400);

    // ca.crl: the revoked certificate is refused, the others pass.
    assert_eq!(curl(&p, "crl.test", "/", Some("alice"), &[]).await.status, 200);
    let r = curl(&p, "crl.test", "/", Some("revoked"), &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(curl(&p, "depth1.test", "/", Some("revoked"), &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_secrets_deny_with_a_warning() {
    let web = pods("web", 1).await;
    let root = read("root.crt");
    let manifests = class()
        + &service("web", &web)
        + &ca_secret("ca", &root, None)
        + &ca_secret(
            "garbage",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            None,
        )
        + &ca_secret("bad-crl", &root, Some(b"not a CRL"))
        + &yaml(&[fixture::opaque_secret("default", "no-ca", &[("tls.crt", &root)]).into()])
        + &yaml(&[fixture::opaque_secret("other", "ca", &[("ca.crt", &root)]).into()])
        + &ingress("missing", "missing.test", &[("auth-tls-secret", "nope")])
        + &ingress("garbage", "garbage.test", &[("auth-tls-secret", "garbage")])
        + &ingress("bad-crl", "badcrl.test", &[("auth-tls-secret", "bad-crl")])
        + &ingress("no-ca", "noca.test", &[("auth-tls-secret", "no-ca")])
        + &ingress("cross", "cross.test", &[("auth-tls-secret", "other/ca")])
        + &ingress(
            "bad-cn",
            "badcn.test",
            &[("auth-tls-secret", "ca"), ("auth-tls-match-cn", "alice")],
        )
        + &ingress(
            "bad-values",
            "values.test",
            &[
                ("auth-tls-secret", "ca"),
                ("auth-tls-verify-client", "maybe"),
                ("auth-tls-verify-depth", "-1"),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let routes = p.routes().await;
    for (name, host, needle) in [
        ("missing", "missing.test", "does not exist"),
        ("garbage", "garbage.test", "ca.crt"),
        ("bad-crl", "badcrl.test", "ca.crl"),
        ("no-ca", "noca.test", "no key \"ca.crt\""),
        ("cross", "cross.test", "another namespace"),
        ("bad-cn", "badcn.test", "CN="),
    ] {
        let diags = diagnostics_of(&routes, name);
        assert!(
            diags.iter().any(|d| d.contains(needle) && d.contains("403")),
            "{name}: {diags:?}"
        );
        for cert in [None, Some("alice")] {
            let r = curl(&p, host, "/", cert, &[]).await;
            assert_eq!(r.status, 403, "{name} {cert:?}: {}", r.body);
        }
    }
    // Invalid values fall back to the strict defaults (on, depth 1) with a Warning.
    let diags = diagnostics_of(&routes, "bad-values");
    assert_eq!(diags.len(), 2, "{diags:?}");
    assert_eq!(curl(&p, "values.test", "/", None, &[]).await.status, 400);
    assert_eq!(curl(&p, "values.test", "/", Some("two-deep"), &[]).await.status, 400);
    assert_eq!(curl(&p, "values.test", "/", Some("alice"), &[]).await.status, 200);
}

/// The chain check on garbage: an error, never a panic. (Here rather than beside `verify`: it
/// needs compile's CA parser, and the data plane's own tests do not import compile.)
#[test]
fn garbage_chains_fail_without_panicking() {
    let ca = portico::compile::mtls::parse_ca(
        &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.crt")).unwrap(),
    )
    .unwrap();
    let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
    for chain in [
        vec![],
        vec![rustls_pki_types::CertificateDer::from(vec![])],
        vec![rustls_pki_types::CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])],
    ] {
        assert!(portico::proxy::mtls::verify(&ca, 1, &chain, rustls_pki_types::UnixTime::now(), &algs).is_err());
    }
    // A CA certificate presented as a client certificate is not taken.
    assert!(portico::proxy::mtls::verify(&ca, 1, &ca.certs, rustls_pki_types::UnixTime::now(), &algs).is_err());
}
