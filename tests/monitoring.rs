//! The series dashboards and alerts need, scraped from a running Portico (config apply,
//! certificate expiry, ready endpoints, bounded labels); the Grafana dashboard and the
//! PrometheusRule checked against them; the alerts run through `promtool check rules` and
//! `promtool test rules` (promtool built from the Prometheus Go module by
//! tests/prometheus/build.sh), the dashboard against Grafana's schema (tests/grafana), and the
//! Helm chart rendering the same rules.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use portico::fixture::{self, Prefix, yaml};
use serde_json::Value;
use support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A TLS Secret whose certificate for `host` is valid until 2031-01-02T00:00:00Z ([`NOT_AFTER`]).
fn secret(name: &str, host: &str) -> String {
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, host);
    params.not_after = rcgen::date_time_ymd(2031, 1, 2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    yaml(&[fixture::tls_secret("default", name, &cert.pem(), &key.serialize_pem()).into()])
}

const NOT_AFTER: i64 = 1_925_078_400;

/// Ingress `web` (TLS for secure.example.com, Service web with two pods) and Ingress `empty`
/// (Service empty without endpoints).
async fn manifests() -> Vec<(&'static str, String)> {
    let web = pods("web", 2).await;
    let ingresses = yaml(&[
        fixture::ingress("default", "web")
            .class("portico")
            .rule("secure.example.com", "/", Prefix, "web", 80)
            .tls(&["secure.example.com"], Some("secure-tls"))
            .into(),
        fixture::ingress("default", "empty")
            .class("portico")
            .rule("empty.example.com", "/", Prefix, "empty", 80)
            .into(),
    ]);
    vec![
        ("class.yaml", class()),
        ("web.yaml", service("web", &web)),
        ("empty.yaml", service("empty", &[])),
        ("ingresses.yaml", ingresses),
        ("secret.yaml", secret("secure-tls", "secure.example.com")),
    ]
}

async fn scrape(p: &Portico) -> String {
    let (status, _, body) = get(p.admin, "admin", "/metrics").await.unwrap();
    assert_eq!(status, 200);
    body
}

/// The value of the sample `name{labels}` (labels exactly as Portico writes them, or "").
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_show_apply_certificate_expiry_and_ready_endpoints() {
    let before = now();
    let p = Portico::start(&manifests().await, &[]).await;
    let body = scrape(&p).await;
    assert_eq!(
        sample(&body, "portico_config_last_apply_successful"),
        Some(1.0),
        "{body}"
    );
    let applied = sample(&body, "portico_config_last_apply_success_timestamp_seconds").unwrap() as i64;
    assert!((before..=now()).contains(&applied), "{applied} not in {before}..");
    assert_eq!(
        sample(
            &body,
            r#"portico_ssl_expire_time_seconds{host="secure.example.com",namespace="default",secret="secure-tls"}"#
        ),
        Some(NOT_AFTER as f64),
        "{body}"
    );
    let ready = |body: &str, ingress: &str| {
        sample(
            body,
            &format!(
                r#"portico_backend_ready_endpoints{{namespace="default",ingress="{ingress}",service="{ingress}"}}"#
            ),
        )
    };
    assert_eq!(ready(&body, "web"), Some(2.0), "{body}");
    assert_eq!(ready(&body, "empty"), Some(0.0), "{body}");

    // The Service loses a pod, the Ingress `empty` goes: its series goes with it.
    let generation = p.routes().await["generation"].as_u64().unwrap();
    let one = pods("web", 1).await;
    p.write("web.yaml", &service("web", &one));
    std::fs::remove_file(p.dir.join("empty.yaml")).unwrap();
    let ingresses = yaml(&[fixture::ingress("default", "web")
        .class("portico")
        .rule("secure.example.com", "/", Prefix, "web", 80)
        .tls(&["secure.example.com"], Some("secure-tls"))
        .into()]);
    p.write("ingresses.yaml", &ingresses);
    p.wait_generation(generation + 1).await;
    let mut body = scrape(&p).await;
    for _ in 0..100 {
        if ready(&body, "web") == Some(1.0) && ready(&body, "empty").is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        body = scrape(&p).await;
    }
    assert_eq!(ready(&body, "web"), Some(1.0), "{body}");
    assert_eq!(ready(&body, "empty"), None, "{body}");
    assert!(sample(&body, "portico_config_generation").unwrap() > generation as f64);

    // Clients' paths, methods and hosts never become labels: the request series of a route
    // are its five status classes, however many different requests it gets.
    let count = |body: &str| {
        body.lines()
            .filter(|l| l.starts_with("portico_requests_total{"))
            .count()
    };
    let (status, _, _) = get(p.http, "empty.example.com", "/").await.unwrap();
    assert_eq!(status, 404);
    let routed = |i: usize| format!("/p/{i}/{}", "x".repeat(i));
    get(p.http, "secure.example.com", &routed(0)).await.unwrap();
    let after_one = count(&scrape(&p).await);
    for i in 1..30 {
        let host = format!("h{i}.example.com");
        get(p.http, "secure.example.com", &routed(i)).await.unwrap();
        get(p.http, &host, &routed(i)).await.unwrap();
    }
    let body = scrape(&p).await;
    assert_eq!(count(&body), after_one, "{body}");
    assert!(after_one <= 10, "unrouted and one route, five classes each: {body}");
}

/// Every `portico_*` name in `text`.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("portico_") {
        let start = i + at;
        let end = b[start..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .map_or(b.len(), |n| start + n);
        let before_ok = start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        if before_ok {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/grafana/portico-dashboard.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every PromQL expression of the dashboard's panels and variables.
fn dashboard_exprs(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    out
}

/// The PrometheusRule of deploy/prometheus as JSON.
fn prometheus_rule() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/prometheus/portico-rules.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

#[test]
fn the_dashboard_is_a_well_formed_grafana_dashboard() {
    // Grafana's own schema (the Foundation SDK's, generated from Grafana's CUE), strictly: an
    // unknown or mistyped field, or a panel option its plugin requires, fails.
    let check = built(&format!("{ROOT}/tests/grafana/build.sh"), "the Grafana schema check").join("check");
    let out = run(Command::new(check).arg(format!("{ROOT}/deploy/grafana/portico-dashboard.json")));
    assert!(out.contains("valid, 18 panels"), "{out}");

    // What the schema leaves open: unique ids, a 24-column grid without overlaps, a data
    // source variable, only defined variables in the expressions.
    let d = dashboard();
    for key in ["uid", "title", "schemaVersion", "panels", "templating", "time"] {
        assert!(!d[key].is_null(), "{key} missing");
    }
    let vars: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(vars.contains("datasource"));
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel ids are unique: {p}");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24 && w > 0 && h > 0, "{p}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "panels overlap at {cx},{cy}: {}", p["title"]);
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert!(
            ["timeseries", "stat", "table"].contains(&p["type"].as_str().unwrap()),
            "{p}"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            // Every $variable an expression uses is defined (or is one of Grafana's own).
            for (at, _) in expr.match_indices('$') {
                let name: String = expr[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    vars.contains(name.as_str()) || name == "__rate_interval",
                    "${name} in {expr}"
                );
            }
            assert!(!series_names(expr).is_empty(), "{expr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alerts_use_only_series_portico_exports() {
    let p = Portico::start(&manifests().await, &[]).await;
    // Request and handshake series appear with the first of each.
    get(p.http, "secure.example.com", "/").await.unwrap();
    tls_get(p.https, Some("secure.example.com"), "/", false).await.unwrap();
    let body = scrape(&p).await;
    let exported: BTreeSet<String> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let mut used = BTreeSet::new();
    for e in dashboard_exprs(&dashboard()) {
        used.extend(series_names(&e));
    }
    let rules = prometheus_rule();
    for r in rules["spec"]["groups"][0]["rules"].as_array().unwrap() {
        used.extend(series_names(r["expr"].as_str().unwrap()));
    }
    for v in dashboard()["templating"]["list"].as_array().unwrap() {
        used.extend(series_names(
            &v["definition"].as_str().map(str::to_string).unwrap_or_default(),
        ));
    }
    assert!(used.len() >= 8, "{used:?}");
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{body}");
}

fn promtool() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| built(&format!("{ROOT}/tests/prometheus/build.sh"), "promtool").join("promtool"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("portico-monitoring-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

/// The unit tests of the alerts: each fires on the series it is about, and not on healthy ones.
const RULE_TESTS: &str = r#"
rule_files: [rules.json]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  - series: 'portico_requests_total{namespace="shop",ingress="web",service="web",status="5xx"}'
    values: '0+10x30'
  - series: 'portico_requests_total{namespace="shop",ingress="web",service="web",status="2xx"}'
    values: '0+90x30'
  - series: 'portico_requests_total{namespace="shop",ingress="fine",service="fine",status="2xx"}'
    values: '0+100x30'
  - series: 'portico_requests_total{namespace="shop",ingress="fine",service="fine",status="5xx"}'
    values: '0+1x30'
  - series: 'portico_requests_total{namespace="",ingress="",service="",status="5xx"}'
    values: '0+100x30'
  - series: 'portico_ssl_expire_time_seconds{host="soon.example.com",namespace="shop",secret="soon-tls"}'
    values: '864000x30'
  - series: 'portico_ssl_expire_time_seconds{host="later.example.com",namespace="shop",secret="later-tls"}'
    values: '8640000x30'
  - series: 'portico_config_last_apply_successful{instance="portico-0"}'
    values: '0x30'
  - series: 'portico_config_last_apply_success_timestamp_seconds{instance="portico-0"}'
    values: '0x30'
  - series: 'portico_config_last_apply_successful{instance="portico-1"}'
    values: '1x30'
  - series: 'portico_config_last_apply_success_timestamp_seconds{instance="portico-1"}'
    values: '0+60x30'
  - series: 'portico_backend_ready_endpoints{namespace="shop",ingress="web",service="web"}'
    values: '0x30'
  - series: 'portico_backend_ready_endpoints{namespace="shop",ingress="fine",service="fine"}'
    values: '2x30'
  alert_rule_test:
  - eval_time: 15m
    alertname: PorticoHigh5xxRatio
    exp_alerts:
    - exp_labels: {severity: warning, namespace: shop, ingress: web}
      exp_annotations:
        summary: "Ingress shop/web: 10% of requests get a 5xx"
        description: "More than 5 % of the requests Portico routed to this Ingress in the last 5 minutes were answered with a 5xx (by the Service's pods, or by Portico when no endpoint answered)."
  - eval_time: 4m
    alertname: PorticoHigh5xxRatio
    exp_alerts: []
  - eval_time: 15m
    alertname: PorticoCertificateExpiringSoon
    exp_alerts:
    - exp_labels: {severity: warning, host: soon.example.com, namespace: shop, secret: soon-tls}
      exp_annotations:
        summary: "The certificate of soon.example.com (Secret shop/soon-tls) expires in 9d 23h 45m 0s"
        description: "Renew the Secret's certificate; Portico serves the new one as soon as the Secret changes."
  - eval_time: 15m
    alertname: PorticoConfigNotApplied
    exp_alerts:
    - exp_labels: {severity: critical, instance: portico-0}
      exp_annotations:
        summary: "Portico portico-0 has not applied a configuration"
        description: "The last compile-and-publish failed, or none happened for 15 minutes (Portico recompiles every 5 minutes): changes to Ingresses, Services and Secrets are not being served. See the controller's log."
  - eval_time: 15m
    alertname: PorticoIngressNoReadyEndpoints
    exp_alerts:
    - exp_labels: {severity: warning, namespace: shop, ingress: web, service: web}
      exp_annotations:
        summary: "Ingress shop/web: Service web has no ready endpoints"
        description: "Requests this Ingress routes to the Service get 503 until one of its pods is ready."
"#;

#[test]
fn the_alerts_pass_promtool_check_and_unit_tests() {
    let dir = tmpdir("rules");
    let rule = prometheus_rule();
    assert_eq!(rule["kind"], "PrometheusRule");
    // The spec of a PrometheusRule is a Prometheus rules file; JSON is YAML.
    std::fs::write(dir.join("rules.json"), serde_json::to_string(&rule["spec"]).unwrap()).unwrap();
    std::fs::write(dir.join("tests.yaml"), RULE_TESTS).unwrap();
    let out = run(Command::new(promtool())
        .args(["check", "rules", "rules.json"])
        .current_dir(&dir));
    assert!(out.contains("SUCCESS: 4 rules found"), "{out}");
    run(Command::new(promtool())
        .args(["test", "rules", "tests.yaml"])
        .current_dir(&dir));

    // Every expression of the dashboard parses: as recording rules, with Grafana's variables
    // as they would be substituted.
    let rules: Vec<Value> = dashboard_exprs(&dashboard())
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$namespace", ".*")
                .replace("$ingress", ".*");
            serde_json::json!({"record": format!("portico:dashboard_expr_{i}"), "expr": e})
        })
        .collect();
    let n = rules.len();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(dir.join("dashboard.json"), file.to_string()).unwrap();
    let out = run(Command::new(promtool())
        .args(["check", "rules", "dashboard.json"])
        .current_dir(&dir));
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `helm template` of the chart with `--set` values: the PrometheusRule's groups.
fn rendered_groups(set: &str) -> Vec<Value> {
    let helm = built(&format!("{ROOT}/tests/helm/build.sh"), "helm").join("helm");
    let out = run(Command::new(helm).args([
        "template",
        "edge",
        &format!("{ROOT}/deploy/helm/portico"),
        "--namespace",
        "edge",
        "--set",
        set,
    ]));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .unwrap_or_else(|| panic!("no PrometheusRule in:\n{out}"));
    rule["spec"]["groups"].as_array().cloned().unwrap_or_default()
}

#[test]
fn the_helm_chart_renders_the_same_alerts() {
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/helm/portico/files/portico-rules.yaml")).unwrap();
    let chart: Value = serde_saphyr::from_str(&text).unwrap();
    let rule = prometheus_rule();
    let ours = &rule["spec"]["groups"][0]["rules"];
    assert_eq!(&chart, ours, "the chart's rules and deploy/prometheus's differ");

    let on = "controller.metrics.enabled=true,controller.metrics.prometheusRule.enabled=true";
    let groups = rendered_groups(on);
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["name"], "edge-controller-portico");
    assert_eq!(&groups[0]["rules"], ours);

    // A user's own rules (ingress-nginx's value) come as a group before Portico's.
    let groups = rendered_groups(&format!(
        "{on},controller.metrics.prometheusRule.rules[0].alert=Mine,controller.metrics.prometheusRule.rules[0].expr=vector(1)"
    ));
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0]["rules"][0]["alert"], "Mine");
    assert_eq!(&groups[1]["rules"], ours);

    let groups = rendered_groups(&format!(
        "{on},controller.metrics.prometheusRule.porticoRules=false,controller.metrics.prometheusRule.rules[0].alert=Mine,controller.metrics.prometheusRule.rules[0].expr=vector(1)"
    ));
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["rules"][0]["alert"], "Mine");
}
