//! The access log in ingress-nginx's format (`--access-log-format nginx`) over real sockets:
//! lines parsed back field by field, a custom `log-format-upstream` with JSON escaping, and
//! the Warning for a variable Portico does not know.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use portico::fixture::{self, yaml};
use support::*;

const CM: &str = "ingress-nginx/ingress-nginx-controller";

fn configmap(data: &[(&str, &str)]) -> String {
    yaml(&[fixture::config_map("ingress-nginx", "ingress-nginx-controller", data).into()])
}

/// Service `web` on `pods`, Ingress `site` for a.test → web, and Ingress `quiet` for
/// q.test → web with `enable-access-log: "false"`.
fn sites(pods: &[std::net::SocketAddr]) -> String {
    class()
        + &service("web", pods)
        + &annotated_ingress("site", "a.test", "/", "web", &[])
        + &annotated_ingress(
            "quiet",
            "q.test",
            "/",
            "web",
            &[("nginx.ingress.kubernetes.io/enable-access-log", "false")],
        )
}

/// Portico with the access log on in ingress-nginx's format and the ConfigMap `data`.
async fn start(pods: &[std::net::SocketAddr], data: &[(&str, &str)]) -> Portico {
    let args = ["--configmap", CM, "--access-log", "on", "--access-log-format", "nginx"];
    Portico::start(&[("site.yaml", sites(pods)), ("cm.yaml", configmap(data))], &args).await
}

/// The access-log lines so far (the other lines are JSON tracing events, with a target).
fn access_lines(p: &Portico) -> Vec<String> {
    p.logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| !l.contains("\"target\":\""))
        .cloned()
        .collect()
}

/// Waits for `n` access-log lines (a line is written when its response body is done).
async fn wait_lines(p: &Portico, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = access_lines(p);
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A line of the default format cut into its fields: words, "quoted" and [bracketed] runs.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let (field, next) = match rest.as_bytes()[0] {
            b'"' => {
                let end = rest[1..].find('"').expect("closing quote") + 1;
                (&rest[1..end], &rest[end + 1..])
            }
            b'[' => {
                let end = rest.find(']').expect("closing bracket");
                (&rest[1..end], &rest[end + 1..])
            }
            _ => {
                let end = rest.find(' ').unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        out.push(field.to_string());
        rest = next.strip_prefix(' ').unwrap_or(next);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_format_matches_ingress_nginx_field_for_field() {
    let pods = pods("web", 1).await;
    let p = start(&pods, &[]).await;
    let req = Request::builder()
        .uri("/some/path?q=1")
        .header("host", "a.test")
        .header("x-request-id", "req-42")
        .header("referer", "http://from.test/")
        .header("user-agent", "probe/1.0 \"x\"")
        .header("authorization", "Basic YWxpY2U6c2VjcmV0")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = request(p.http, req).await.unwrap();
    assert_eq!(status, 200);
    // Left out: enable-access-log "false".
    assert_eq!(get(p.http, "q.test", "/").await.unwrap().0, 200);
    assert_eq!(get(p.http, "nowhere.test", "/x").await.unwrap().0, 404);

    let lines = wait_lines(&p, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let f = fields(&lines[0]);
    assert_eq!(f.len(), 18, "{f:?}");
    assert_eq!(f[0], "127.0.0.1");
    assert_eq!(f[1], "-");
    assert_eq!(f[2], "alice");
    assert!(f[3].ends_with(" +0000") && f[3].len() == 26, "{}", f[3]);
    assert_eq!(f[4], "GET /some/path?q=1 HTTP/1.1");
    assert_eq!(f[5], "200");
    assert_eq!(f[6], body.len().to_string());
    assert_eq!(f[7], "http://from.test/");
    // nginx's default escaping: the quotes cannot end the quoted field.
    assert_eq!(f[8], r#"probe/1.0 \x22x\x22"#);
    assert!(f[9].parse::<u64>().unwrap() > 100, "request_length {}", f[9]);
    assert!(f[10].parse::<f64>().is_ok(), "request_time {}", f[10]);
    assert_eq!(f[11], "default-web-80");
    assert_eq!(f[12], "");
    assert_eq!(f[13], pods[0].to_string());
    assert_eq!(f[14], body.len().to_string());
    assert!(f[15].parse::<f64>().is_ok(), "upstream_response_time {}", f[15]);
    assert_eq!(f[16], "200");
    assert_eq!(f[17], "req-42");

    // No route: nothing upstream, the default backend's name, a fresh request id.
    let f = fields(&lines[1]);
    assert_eq!(f.len(), 18, "{f:?}");
    assert_eq!(f[2], "-");
    assert_eq!(f[4], "GET /x HTTP/1.1");
    assert_eq!(f[5], "404");
    assert_eq!(f[7], "-");
    assert_eq!(f[11], "upstream-default-backend");
    assert_eq!(&f[13..17], ["-", "-", "-", "-"]);
    assert_eq!(f[17].len(), 32, "{}", f[17]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_format_with_json_escaping_and_an_unknown_variable() {
    let pods = pods("web", 1).await;
    let format = r#"{"status":"$status","ua":"$http_user_agent","note":"$http_x_note","ing":"$namespace/$ingress_name","svc":"$service_name:$service_port","up":"$proxy_upstream_name","addr":"$upstream_addr","uri":"$request_uri","host":"$host","id":"$req_id","nope":"$no_such_thing","arg":"$arg_a","cookie":"$cookie_c","port":"$remote_port","verify":"$ssl_client_verify"}"#;
    let p = start(
        &pods,
        &[("log-format-upstream", format), ("log-format-escape-json", "true")],
    )
    .await;
    let note = "say \"hi\" \\ there";
    let req = Request::builder()
        .uri("/q?a=1")
        .header("host", "a.test")
        .header("x-request-id", "req-7")
        .header("x-note", note)
        .header("cookie", "a=1; c=\"say\"hi\"")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(request(p.http, req).await.unwrap().0, 200);

    let lines = wait_lines(&p, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("{e}: {}", lines[0]));
    assert_eq!(v["status"], "200");
    assert_eq!(v["ua"], "", "a missing header is empty under JSON escaping");
    assert_eq!(v["note"], note);
    assert_eq!(v["ing"], "default/site");
    assert_eq!(v["svc"], "web:80");
    assert_eq!(v["up"], "default-web-80");
    assert_eq!(v["addr"], pods[0].to_string());
    assert_eq!(v["uri"], "/q?a=1");
    assert_eq!(v["host"], "a.test");
    assert_eq!(v["id"], "req-7");
    assert_eq!(v["nope"], "-");
    // The variables every template shares, escaped like the others.
    assert_eq!(v["arg"], "1");
    assert_eq!(v["cookie"], "\"say\"hi\"", "as sent, quotes kept (nginx)");
    assert!(v["port"].as_str().unwrap().parse::<u16>().unwrap() > 0, "{v}");
    assert_eq!(v["verify"], "NONE");

    let routes = p.routes().await;
    let warned = routes["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["severity"] == "warning" && d["message"].as_str().is_some_and(|m| m.contains("$no_such_thing")));
    assert!(warned, "{:#}", routes["diagnostics"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_is_the_alternative_upstream() {
    let web = pods("web", 1).await;
    let canary = pods("canary", 1).await;
    let canary_ing = ingress_with("site-canary", "a.test", "/", "canary", &[])
        .annotation("nginx.ingress.kubernetes.io/canary", "true")
        .annotation("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary");
    let site = class()
        + &service("web", &web)
        + &service("canary", &canary)
        + &annotated_ingress("site", "a.test", "/", "web", &[])
        + &yaml(&[canary_ing.into()]);
    let args = ["--access-log", "on", "--access-log-format", "nginx"];
    let p = Portico::start(&[("site.yaml", site)], &args).await;
    let req = Request::builder()
        .uri("/")
        .header("host", "a.test")
        .header("x-canary", "always")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(request(p.http, req).await.unwrap().0, 200);
    let lines = wait_lines(&p, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let f = fields(&lines[0]);
    assert_eq!(f[11], "default-web-80");
    assert_eq!(f[12], "default-canary-80");
    assert_eq!(f[13], canary[0].to_string());
}
