//! `portico explain` over a manifests directory of competing Ingresses, and the same question
//! asked of a running Portico's admin listener, whose data plane must then route the request
//! the way the explanation says.

mod support;

use std::path::Path;

use portico::fixture::{self, Exact, IngressBuilder, Prefix, yaml};
use serde_json::Value;
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn ing(name: &str, created: &str) -> IngressBuilder {
    fixture::ingress("default", name).class("portico").created(created)
}

/// A TLS Secret with a fresh self-signed certificate for `host` (its CN too).
fn secret(name: &str, host: &str) -> String {
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, host);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    yaml(&[fixture::tls_secret("default", name, &cert.pem(), &key.serialize_pem()).into()])
}

/// Ingresses that compete for the hosts a.example.com and *.example.com, a canary pair on
/// c.example.com, and one Ingress of another class; each Service has its own echo pod.
async fn manifests() -> Vec<(&'static str, String)> {
    let mut services = class();
    for name in [
        "web",
        "wild",
        "api",
        "api-short",
        "api-exact",
        "other",
        "canary",
        "secure",
    ] {
        services += &service(name, &pods(name, 1).await);
    }
    let ingresses = yaml(&[
        ing("exact-host", "2024-01-01T00:00:00Z")
            .rule("a.example.com", "/", Prefix, "web", 80)
            .into(),
        ing("wild-host", "2024-01-01T00:00:00Z")
            .rule("*.example.com", "/", Prefix, "wild", 80)
            .tls(&["*.example.com"], Some("wild-tls"))
            .into(),
        ing("api-long", "2024-01-02T00:00:00Z")
            .rule("a.example.com", "/api/v1", Prefix, "api", 80)
            .into(),
        ing("api-short", "2024-01-02T00:00:00Z")
            .rule("a.example.com", "/api", Prefix, "api-short", 80)
            .into(),
        ing("api-exact", "2024-01-03T00:00:00Z")
            .rule("a.example.com", "/api/v1", Exact, "api-exact", 80)
            .into(),
        // Newer than exact-host and claiming the same host, path and type: loses the conflict.
        ing("api-dup", "2024-02-01T00:00:00Z")
            .rule("a.example.com", "/api", Prefix, "other", 80)
            .into(),
        fixture::ingress("default", "other-class")
            .class("nginx")
            .rule("a.example.com", "/", Prefix, "other", 80)
            .into(),
        ing("secure", "2024-01-01T00:00:00Z")
            .rule("secure.example.com", "/", Prefix, "secure", 80)
            .tls(&["secure.example.com"], Some("secure-tls"))
            .into(),
        // The wildcard's TLS covers c.example.com: plain HTTP stays plain only by opting out.
        ing("c-main", "2024-01-01T00:00:00Z")
            .rule("c.example.com", "/", Prefix, "web", 80)
            .annotation(&format!("{NGINX}ssl-redirect"), "false")
            .into(),
        ing("c-canary", "2024-01-01T00:00:00Z")
            .rule("c.example.com", "/", Prefix, "canary", 80)
            .annotation(&format!("{NGINX}canary"), "true")
            .annotation(&format!("{NGINX}canary-by-header"), "X-Canary")
            .annotation(&format!("{NGINX}canary-weight"), "10")
            .annotation(&format!("{NGINX}ssl-redirect"), "false")
            .into(),
    ]);
    vec![
        ("services.yaml", services),
        ("ingresses.yaml", ingresses),
        (
            "secrets.yaml",
            secret("wild-tls", "*.example.com") + &secret("secure-tls", "secure.example.com"),
        ),
    ]
}

/// `portico explain URL ARGS --json`: the parsed answer.
fn explain(url: &str, args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .arg("explain")
        .arg(url)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{url}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The `why` of the losing route of `ingress` (path `path`), or a panic listing the losers.
fn why_lost<'a>(x: &'a Value, ingress: &str, path: &str) -> &'a str {
    x["lost"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ingress"] == format!("default/{ingress}") && l["path"] == path)
        .and_then(|l| l["why"].as_str())
        .unwrap_or_else(|| panic!("{ingress} {path} not among the losers: {:#}", x["lost"]))
}

fn won(x: &Value) -> &str {
    x["route"]["ingress"].as_str().unwrap_or("none")
}

fn write_dir(files: &[(&str, String)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("portico-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

/// Every question the two tests ask, with what must come back; `ask` answers one URL with
/// its extra headers.
fn check_answers(ask: &dyn Fn(&str, &[&str]) -> Value) {
    // Longest prefix wins; Exact /api/v1 does not take /api/v1/users; exact host beats wildcard.
    let x = ask("http://a.example.com/api/v1/users", &[]);
    assert_eq!(won(&x), "default/api-long", "{x:#}");
    assert_eq!(x["endpoints"]["service"], "default/api");
    assert!(why_lost(&x, "api-short", "/api").contains("longer path wins"), "{x:#}");
    assert!(
        why_lost(&x, "api-exact", "/api/v1").contains("Exact path /api/v1 is not"),
        "{x:#}"
    );
    assert!(why_lost(&x, "exact-host", "/").contains("longer path wins"), "{x:#}");
    assert!(why_lost(&x, "wild-host", "/").contains("more specific"), "{x:#}");
    assert!(x["lookup"][0]["matched"].as_bool().unwrap(), "{x:#}");
    // Another class is not a candidate at all, and says why.
    assert!(
        x["lost"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ingress"] != "default/other-class")
    );
    let ignored = x["ignored"].as_array().unwrap();
    assert!(ignored.iter().any(|i| i["ingress"] == "default/other-class"), "{x:#}");
    // The newer Ingress on the same host, path and type lost the conflict.
    let conflicts = x["conflicts"].as_array().unwrap();
    assert!(
        conflicts.iter().any(|c| c.as_str().unwrap().contains("api-dup")),
        "{x:#}"
    );

    // On equal paths Exact beats Prefix.
    let x = ask("http://a.example.com/api/v1", &[]);
    assert_eq!(won(&x), "default/api-exact", "{x:#}");
    assert!(
        why_lost(&x, "api-long", "/api/v1").contains("Exact beats Prefix"),
        "{x:#}"
    );

    // Prefixes match whole path elements: /api does not cover /apiary.
    let x = ask("http://a.example.com/apiary", &[]);
    assert_eq!(won(&x), "default/exact-host", "{x:#}");
    assert!(why_lost(&x, "api-short", "/api").contains("does not cover"), "{x:#}");

    // A host only the wildcard covers; over TLS the wildcard certificate is chosen.
    let x = ask("https://b.example.com/x", &[]);
    assert_eq!(won(&x), "default/wild-host", "{x:#}");
    assert_eq!(x["certificate"]["chosen"], "wildcard", "{x:#}");
    assert!(
        x["certificate"]["name"].as_str().unwrap().contains("*.example.com"),
        "{x:#}"
    );
    assert!(x["lost"].as_array().unwrap().is_empty(), "{x:#}");
    assert!(x["other_hosts"].as_u64().unwrap() >= 5, "{x:#}");
    assert_eq!(x["lookup"][0]["present"], false);

    // An exact TLS host gets its own certificate.
    let x = ask("https://secure.example.com/", &[]);
    assert_eq!(x["certificate"]["chosen"], "exact", "{x:#}");
    assert!(
        x["certificate"]["name"]
            .as_str()
            .unwrap()
            .contains("secure.example.com"),
        "{x:#}"
    );
    assert!(why_lost(&x, "wild-host", "/").contains("more specific"), "{x:#}");

    // Canary: the header decides; without it the weight does.
    let x = ask("http://c.example.com/", &["--header", "X-Canary: always"]);
    assert_eq!(won(&x), "default/c-main", "{x:#}");
    assert_eq!(x["canary"]["decision"], "canary", "{x:#}");
    assert_eq!(x["endpoints"]["service"], "default/canary", "{x:#}");
    assert!(why_lost(&x, "c-canary", "/").contains("canary"), "{x:#}");
    let x = ask("http://c.example.com/", &["--header", "X-Canary: never"]);
    assert_eq!(x["canary"]["decision"], "primary", "{x:#}");
    assert_eq!(x["endpoints"]["service"], "default/web", "{x:#}");
    let x = ask("http://c.example.com/", &[]);
    assert_eq!(x["canary"]["decision"], "weight", "{x:#}");
    assert!(x["canary"]["why"].as_str().unwrap().contains("10 of 100"), "{x:#}");

    // No route at all: a 404, and the Host header routes (the URL's host is the SNI).
    let x = ask("http://nowhere.test/", &[]);
    assert_eq!(won(&x), "none");
    assert!(x["answered_by_portico"].as_str().unwrap().starts_with("404"), "{x:#}");
    let x = ask("http://nowhere.test/api", &["-H", "Host: a.example.com:8080"]);
    assert_eq!(won(&x), "default/api-short", "{x:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explains_competing_ingresses_from_a_manifests_dir() {
    let files = manifests().await;
    let dir = write_dir(&files);
    let d = dir.to_str().unwrap().to_string();
    check_answers(&|url, extra| {
        let mut args = vec!["--manifests", d.as_str()];
        args.extend_from_slice(extra);
        explain(url, &args)
    });
    // Text for a terminal names the route and the losers.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["explain", "http://a.example.com/api/v1/users", "--manifests", &d])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("route      Ingress default/api-long"), "{text}");
    assert!(text.contains("lost\n"), "{text}");
    assert!(text.contains("ignored    Ingress default/other-class"), "{text}");
    // A bad URL is an error, not a panic.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["explain", "ftp://a.example.com/", "--manifests", &d])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither http nor https"));
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explains_from_a_running_portico_as_its_data_plane_routes() {
    let p = Portico::start(&manifests().await, &[]).await;
    let admin = p.admin.to_string();
    let ask = |url: &str, extra: &[&str]| {
        let mut args = vec!["--admin", admin.as_str()];
        args.extend_from_slice(extra);
        explain(url, &args)
    };
    check_answers(&ask);

    // The data plane sends each request where the explanation says. a.example.com has TLS
    // through the wildcard, so plain HTTP gets the 308 the explanation announces.
    let x = ask("http://a.example.com/apiary", &[]);
    assert!(x["answered_by_portico"].as_str().unwrap().starts_with("308"), "{x:#}");
    let (status, _, _) = get(p.http, "a.example.com", "/apiary").await.unwrap();
    assert_eq!(status, 308);
    for (host, path, pod) in [
        ("a.example.com", "/api/v1/users", "api-0"),
        ("a.example.com", "/api/v1", "api-exact-0"),
        ("a.example.com", "/apiary", "web-0"),
        ("b.example.com", "/", "wild-0"),
        ("secure.example.com", "/x", "secure-0"),
    ] {
        let x = ask(&format!("https://{host}{path}"), &[]);
        assert!(x["answered_by_portico"].is_null(), "{x:#}");
        let service = x["endpoints"]["service"]
            .as_str()
            .unwrap()
            .trim_start_matches("default/");
        assert_eq!(format!("{service}-0"), pod, "{x:#}");
        let a = tls_get(p.https, Some(host), path, false).await.unwrap();
        assert_eq!(a.status, 200, "{host}{path}: {}", a.body);
        assert_eq!(json(&a.body)["pod"], pod, "{host}{path}");
        let want = x["certificate"]["name"].as_str().unwrap();
        assert!(
            want.contains(&a.cert_cn),
            "{host}: served {}, explained {want}",
            a.cert_cn
        );
    }
    for (header, pod) in [("always", "canary-0"), ("never", "web-0")] {
        let x = ask("http://c.example.com/", &["-H", &format!("X-Canary: {header}")]);
        assert!(x["answered_by_portico"].is_null(), "{x:#}");
        let service = x["endpoints"]["service"]
            .as_str()
            .unwrap()
            .trim_start_matches("default/");
        assert_eq!(format!("{service}-0"), pod, "{x:#}");
        let req = http::Request::builder()
            .uri("/")
            .header("host", "c.example.com")
            .header("x-canary", header)
            .body(Default::default())
            .unwrap();
        let (status, _, body) = request(p.http, req).await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["pod"], pod);
    }

    // The admin listener answers directly too, text or JSON; a bad question is a 400.
    let (status, _, body) = get(
        p.admin,
        "admin",
        "/explain?url=http%3A%2F%2Fa.example.com%2Fapiary&format=text",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("route      Ingress default/exact-host"), "{body}");
    let (status, _, _) = get(p.admin, "admin", "/explain?url=ftp%3A%2F%2Fx%2F").await.unwrap();
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probes_listener_does_not_explain() {
    let p = Portico::start(&[("class.yaml", class())], &["--metrics-addr", "127.0.0.1:0"]).await;
    let metrics = metrics_addr(&p);
    let (status, _, _) = get(metrics, "x", "/explain?url=http%3A%2F%2Fa%2F").await.unwrap();
    assert_eq!(status, 404);
}

/// The probes-and-metrics listener's address, from the line Portico logs when serving.
fn metrics_addr(p: &Portico) -> std::net::SocketAddr {
    let logs = p.logs.lock().unwrap();
    let line = logs.iter().find(|l| l.contains("portico is serving")).unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    v["fields"]["metrics"].as_str().unwrap().parse().unwrap()
}
