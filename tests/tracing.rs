//! OpenTelemetry tracing against a real OTLP receiver: tests/otel/receiver, built from its Go
//! module (tests/otel/build.sh) on the OpenTelemetry Collector's own protobuf types
//! (go.opentelemetry.io/collector/pdata), decodes what Portico POSTs to /v1/traces and writes
//! each span as a JSON line. The echo pods show the traceparent the backend received.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use portico::fixture::{self, yaml};
use serde_json::Value;
use support::*;

const BUILD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otel/build.sh");
const NGINX: &str = "nginx.ingress.kubernetes.io/";
const CM: &str = "ingress-nginx/ingress-nginx-controller";
/// A client's span context (W3C's example).
const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// The receiver, killed on drop, with the file its spans go to.
struct Receiver {
    child: Child,
    url: String,
    spans: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start() -> Receiver {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portico-otel-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spans = dir.join("spans.jsonl");
        let log = dir.join("receiver.log");
        let mut child = Command::new(built(BUILD, "the OTLP receiver").join("receiver"))
            .args(["-out", spans.to_str().unwrap()])
            // Held open by us: the receiver stops when stdin closes (also if this test dies).
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the receiver starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(url) = text.lines().find(|l| l.starts_with("http://")) {
                break url.trim().to_string();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the receiver exited ({status})");
            }
            assert!(Instant::now() < deadline, "the receiver printed no URL");
            std::thread::sleep(Duration::from_millis(20));
        };
        Receiver {
            child,
            url,
            spans,
            _dir: TempDir(dir),
        }
    }

    /// Every line the receiver wrote so far; a line with "error" fails the test (Portico sent
    /// something the collector's decoder refused).
    fn lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.spans).unwrap_or_default();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if let Some(e) = lines.iter().find(|l| l.get("error").is_some()) {
            panic!("the receiver refused an export: {e}");
        }
        lines
    }

    /// Waits for the span of `trace_id`; every span received by then.
    async fn wait_trace(&self, trace_id: &str) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.lines();
            if let Some(s) = lines.iter().find(|s| s["trace_id"] == trace_id) {
                return (s.clone(), lines);
            }
            assert!(
                Instant::now() < deadline,
                "no span of trace {trace_id} reached the receiver; it has {lines:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The ConfigMap `ingress-nginx/ingress-nginx-controller` with `data`, as a manifest.
fn configmap(data: &[(&str, &str)]) -> String {
    yaml(&[fixture::config_map("ingress-nginx", "ingress-nginx-controller", data).into()])
}

/// Class, Service `web` on `pods`, Ingress `site` for `host` with `annotations`.
fn site(pods: &[SocketAddr], host: &str, annotations: &[(&str, &str)]) -> String {
    class() + &service("web", pods) + &annotated_ingress("site", host, "/", "web", annotations)
}

/// Portico with the ConfigMap `data` and a short batch delay (the export comes soon after
/// each request; how soon is not what is tested).
async fn start(site: String, data: &[(&str, &str)], extra: &[&str]) -> Portico {
    let mut data = data.to_vec();
    data.push(("otel-schedule-delay-millis", "20"));
    let mut args = vec!["--configmap", CM];
    args.extend(extra);
    Portico::start(&[("site.yaml", site), ("cm.yaml", configmap(&data))], &args).await
}

/// GET / on `host` with extra request fields; the status and the echo pod's view.
async fn traced_get(addr: SocketAddr, host: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let mut b = Request::builder().uri("/path?q=1").header("host", host);
    for (k, v) in fields {
        b = b.header(*k, *v);
    }
    let (status, _, body) = request(addr, b.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    (status, json(&body))
}

/// GET / on `host` as a client in trace CLIENT_TRACE (sampled, span CLIENT_SPAN) with a
/// tracestate would.
async fn get_in_client_trace(addr: SocketAddr, host: &str) -> (u16, Value) {
    traced_get(
        addr,
        host,
        &[("traceparent", &client_parent()), ("tracestate", "congo=t61rcWkgMzE")],
    )
    .await
}

fn client_parent() -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
}

/// The backend's traceparent, split: trace id, parent span id, flags.
fn backend_traceparent(echo: &Value) -> (String, String, String) {
    let tp = echo["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("the backend got no traceparent: {echo}"));
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{tp}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

#[tokio::test]
async fn a_request_without_traceparent_starts_a_trace_the_backend_and_the_collector_share() {
    let rx = Receiver::start();
    let pods = pods("web", 1).await;
    let p = start(
        site(&pods, "trace.test", &[]),
        &[("otel-service-name", "edge")],
        &["--otlp-endpoint", &rx.url],
    )
    .await;
    let (status, echo) = traced_get(p.http, "trace.test", &[("user-agent", "tracing-test/1")]).await;
    assert_eq!(status, 200);
    let (trace, parent, flags) = backend_traceparent(&echo);
    assert_eq!(flags, "01", "AlwaysOn samples");
    let (span, _) = rx.wait_trace(&trace).await;
    // The backend's parent is Portico's span, which starts the trace.
    assert_eq!(span["span_id"], parent.as_str());
    assert_eq!(span["parent_span_id"], "");
    assert_eq!(span["kind"], "Server");
    assert_eq!(span["name"], "GET /");
    assert_eq!(span["resource"]["service.name"], "edge");
    assert_eq!(attr(&span, "http.request.method"), "GET");
    assert_eq!(attr(&span, "http.response.status_code"), 200);
    assert_eq!(attr(&span, "url.path"), "/path");
    assert_eq!(attr(&span, "url.query"), "q=1");
    assert_eq!(attr(&span, "url.scheme"), "http");
    assert_eq!(attr(&span, "http.route"), "/");
    assert_eq!(attr(&span, "server.address"), "trace.test");
    assert_eq!(attr(&span, "user_agent.original"), "tracing-test/1");
    assert_eq!(attr(&span, "portico.route"), "default/site");
    assert_eq!(attr(&span, "k8s.namespace.name"), "default");
    assert_eq!(attr(&span, "portico.service"), "web");
    assert_eq!(attr(&span, "portico.service.port"), "80");
    assert_eq!(attr(&span, "portico.upstream.address"), pods[0].to_string().as_str());
    assert!(attr(&span, "portico.upstream.response_time").as_f64().unwrap() >= 0.0);
    let (start, end) = (
        span["start_unix_nano"].as_u64().unwrap(),
        span["end_unix_nano"].as_u64().unwrap(),
    );
    assert!(start > 0 && end >= start, "{span}");
    assert_eq!(span["status"], "Unset");
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued_with_its_tracestate() {
    let rx = Receiver::start();
    let pods = pods("web", 1).await;
    let p = start(
        site(&pods, "trace.test", &[]),
        &[("enable-opentelemetry", "true"), ("otlp-collector-host", &rx.url)],
        &[],
    )
    .await;
    let (status, echo) = get_in_client_trace(p.http, "trace.test").await;
    assert_eq!(status, 200);
    let (trace, parent, _) = backend_traceparent(&echo);
    assert_eq!(trace, CLIENT_TRACE, "the client's trace goes on");
    assert_ne!(parent, CLIENT_SPAN, "with Portico's span as the backend's parent");
    assert_eq!(echo["headers"]["tracestate"], "congo=t61rcWkgMzE");
    let (span, _) = rx.wait_trace(CLIENT_TRACE).await;
    assert_eq!(span["span_id"], parent.as_str());
    assert_eq!(span["parent_span_id"], CLIENT_SPAN);
    assert_eq!(span["trace_state"], "congo=t61rcWkgMzE");
}

#[tokio::test]
async fn an_untrusted_incoming_span_starts_a_new_trace() {
    let rx = Receiver::start();
    let pods = pods("web", 1).await;
    // The ConfigMap leaves tracing off; the Ingress turns it on, distrusting its clients.
    let p = start(
        site(
            &pods,
            "trace.test",
            &[
                (&format!("{NGINX}enable-opentelemetry"), "true"),
                (&format!("{NGINX}opentelemetry-trust-incoming-span"), "false"),
                (&format!("{NGINX}opentelemetry-operation-name"), "edge-in"),
            ],
        ),
        &[("otlp-collector-host", &rx.url)],
        &[],
    )
    .await;
    let (status, echo) = get_in_client_trace(p.http, "trace.test").await;
    assert_eq!(status, 200);
    let (trace, parent, _) = backend_traceparent(&echo);
    assert_ne!(trace, CLIENT_TRACE);
    assert!(echo["headers"].get("tracestate").is_none(), "{echo}");
    let (span, _) = rx.wait_trace(&trace).await;
    assert_eq!(span["span_id"], parent.as_str());
    assert_eq!(span["parent_span_id"], "");
    assert_eq!(span["name"], "edge-in");
}

#[tokio::test]
async fn ratio_zero_exports_no_new_trace_and_a_sampled_parent_still_decides() {
    let rx = Receiver::start();
    let pods = pods("web", 1).await;
    let p = start(
        site(&pods, "trace.test", &[]),
        &[("otel-sampler", "TraceIdRatioBased"), ("otel-sampler-ratio", "0")],
        &["--otlp-endpoint", &rx.url],
    )
    .await;
    for _ in 0..20 {
        let (status, echo) = traced_get(p.http, "trace.test", &[]).await;
        assert_eq!(status, 200);
        let (_, _, flags) = backend_traceparent(&echo);
        assert_eq!(flags, "00", "propagated, not sampled");
    }
    // Parent-based (the default): the client's sampled flag decides. Its span comes after the
    // twenty above in the one queue, so it arriving alone shows they were never queued.
    let (status, _) = traced_get(p.http, "trace.test", &[("traceparent", &client_parent())]).await;
    assert_eq!(status, 200);
    let (_, all) = rx.wait_trace(CLIENT_TRACE).await;
    assert_eq!(all.len(), 1, "only the sampled parent's span: {all:?}");
}

#[tokio::test]
async fn a_dead_collector_neither_fails_nor_holds_requests() {
    // A collector that accepts connections and never answers: each export waits out its
    // timeout while the queue (4 spans) fills.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", hole.local_addr().unwrap());
    let pods = pods("web", 1).await;
    let p = start(
        site(&pods, "trace.test", &[]),
        &[("otel-max-queuesize", "4"), ("otel-max-export-batch-size", "2")],
        &["--otlp-endpoint", &url],
    )
    .await;
    for _ in 0..50 {
        let (status, echo) = traced_get(p.http, "trace.test", &[]).await;
        assert_eq!(status, 200);
        backend_traceparent(&echo);
    }
    // The first batch is still stuck in the hole; the rest went past the full queue.
    let (_, _, metrics) = get(p.admin, "admin", "/metrics").await.unwrap();
    let dropped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("portico_otel_spans_total{outcome=\"dropped\"} "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no dropped-span count in {metrics}"));
    assert!(dropped >= 46, "{dropped} of 50 dropped (at most 4 queued)");
    drop(hole);
}

#[tokio::test]
async fn a_bad_configmap_value_is_a_warning_and_routes_without_the_annotation_are_untraced() {
    let pods = pods("web", 1).await;
    let p = start(
        site(&pods, "trace.test", &[]),
        &[
            ("otel-sampler", "remote"),
            ("otlp-collector-host", "127.0.0.1"),
            ("otlp-collector-port", "4317"),
        ],
        &[],
    )
    .await;
    let routes = p.routes().await;
    let diags = routes["diagnostics"].to_string();
    assert!(diags.contains("otel-sampler=\\\"remote\\\""), "{diags}");
    assert!(diags.contains("OTLP/gRPC"), "{diags}");
    // A collector alone does not turn tracing on: the client's traceparent goes through as sent.
    let (_, echo) = traced_get(p.http, "trace.test", &[("traceparent", &client_parent())]).await;
    assert_eq!(echo["headers"]["traceparent"], client_parent().as_str());
}

#[tokio::test]
async fn traceparent_goes_upstream_among_header_names_in_the_clients_case() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rx = Receiver::start();
    let pods = pods("web", 1).await;
    let p = start(site(&pods, "trace.test", &[]), &[], &["--otlp-endpoint", &rx.url]).await;
    // Names not in lower case make Portico respell the upstream head: the traceparent it
    // replaces (the client's) and the one it adds (no client's) must go with it intact.
    for given in [Some(client_parent()), None] {
        let mut s = tokio::net::TcpStream::connect(p.http).await.unwrap();
        let tp = given
            .as_ref()
            .map(|v| format!("Traceparent: {v}\r\n"))
            .unwrap_or_default();
        let head = format!("GET / HTTP/1.1\r\nHost: trace.test\r\n{tp}X-Custom-Thing: 1\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let echo = json(body);
        assert_eq!(echo["headers"]["x-custom-thing"], "1", "{echo}");
        let (trace, parent, _) = backend_traceparent(&echo);
        if given.is_some() {
            assert_eq!(trace, CLIENT_TRACE);
        }
        let (span, _) = rx.wait_trace(&trace).await;
        assert_eq!(span["span_id"], parent.as_str());
    }
}

#[tokio::test]
async fn tracing_turns_on_and_off_with_the_configmap_live() {
    let rx = Receiver::start();
    let pods = pods("web", 1).await;
    let p = start(site(&pods, "trace.test", &[]), &[], &[]).await;
    let (_, echo) = traced_get(p.http, "trace.test", &[("traceparent", &client_parent())]).await;
    assert_eq!(
        echo["headers"]["traceparent"],
        client_parent().as_str(),
        "untraced at first"
    );
    let generation = p.routes().await["generation"].as_u64().unwrap();
    let on = [
        ("enable-opentelemetry", "true"),
        ("otlp-collector-host", rx.url.as_str()),
        ("opentelemetry-trust-incoming-span", "false"),
        ("otel-schedule-delay-millis", "20"),
    ];
    p.write("cm.yaml", &configmap(&on));
    p.wait_generation(generation + 1).await;
    let (_, echo) = traced_get(p.http, "trace.test", &[("traceparent", &client_parent())]).await;
    let (trace, _, _) = backend_traceparent(&echo);
    assert_ne!(trace, CLIENT_TRACE, "the ConfigMap distrusts incoming spans");
    rx.wait_trace(&trace).await;
    p.write("cm.yaml", &configmap(&[("otlp-collector-host", rx.url.as_str())]));
    p.wait_generation(generation + 2).await;
    let (_, echo) = traced_get(p.http, "trace.test", &[("traceparent", &client_parent())]).await;
    assert_eq!(
        echo["headers"]["traceparent"],
        client_parent().as_str(),
        "untraced again"
    );
}

/// Portico's own answers on a traced route are traced too: a redirect annotation's 301 is a
/// span with that status, no endpoint, and the client's trace continued.
#[tokio::test]
async fn portico_s_own_answers_are_traced() {
    let rx = Receiver::start();
    let pods = pods("web", 1).await;
    let p = start(
        site(
            &pods,
            "moved.test",
            &[(
                "nginx.ingress.kubernetes.io/permanent-redirect",
                "https://elsewhere.example/",
            )],
        ),
        &[],
        &["--otlp-endpoint", &rx.url],
    )
    .await;
    let req = Request::builder()
        .uri("/old")
        .header("host", "moved.test")
        .header("traceparent", client_parent())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = request(p.http, req).await.unwrap();
    assert_eq!(status, 301);
    assert_eq!(headers["location"], "https://elsewhere.example/");
    let (span, _) = rx.wait_trace(CLIENT_TRACE).await;
    assert_eq!(span["parent_span_id"], CLIENT_SPAN);
    assert_eq!(attr(&span, "http.response.status_code"), 301);
    assert_eq!(attr(&span, "portico.route"), "default/site");
    assert!(attr(&span, "portico.upstream.address").is_null(), "{span}");
}
