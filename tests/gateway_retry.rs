//! An HTTPRoute rule's `retry` (Gateway API experimental channel) end to end, in manifests
//! mode: a flaky backend ([`support::flaky`]) fails the first N tries of each request with a
//! status, a connection reset or a late answer, then answers 200; each test checks what the
//! client got and how many tries reached the backend.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::flaky::{call, flaky};
use support::gateway_api::{GATEWAY_CLASS, HTTP_GATEWAY, route_conditions};
use support::*;

/// HTTPRoute `name` for host `name.test` on the Gateway's listener, its one rule → Service
/// `flaky` with `extra` (indented as the rule's fields).
fn route(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [{name}.test]\n  rules:\n  - backendRefs: [{{name: flaky, port: 80}}]\n{extra}\n"
    )
}

async fn start(backend: &[SocketAddr], routes: &[(&str, &str)]) -> Portico {
    let mut files = vec![
        ("class.yaml", GATEWAY_CLASS.to_string()),
        ("gateway.yaml", HTTP_GATEWAY.to_string()),
        ("svc.yaml", service("flaky", backend)),
    ];
    let named: Vec<(String, String)> = routes
        .iter()
        .map(|(name, extra)| (format!("{name}.yaml"), route(name, extra)))
        .collect();
    files.extend(named.iter().map(|(f, r)| (f.as_str(), r.clone())));
    Portico::start(&files, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_codes_are_tried_again_up_to_attempts_more_times_on_one_endpoint() {
    let (backend, tries) = flaky(1).await;
    let p = start(
        &backend,
        &[
            ("three", "    retry: {codes: [500], attempts: 3}"),
            ("all", "    retry: {codes: [500, 502, 503, 504], attempts: 2}"),
            ("none", ""),
        ],
    )
    .await;
    // As the conformance suite's HTTPRouteRetry: attempts are tries after the first.
    let (s, seen) = call(&p, &tries, "three.test", 2, "500").await;
    assert_eq!((s, seen.len()), (200, 3));
    let (s, seen) = call(&p, &tries, "three.test", 3, "500").await;
    assert_eq!((s, seen.len()), (200, 4));
    let (s, seen) = call(&p, &tries, "three.test", 4, "500").await;
    assert_eq!((s, seen.len()), (500, 4), "the last answer goes to the client");
    let (s, seen) = call(&p, &tries, "three.test", 2, "503").await;
    assert_eq!((s, seen.len()), (503, 1), "503 is not listed");
    for code in ["500", "502", "503", "504"] {
        let (s, seen) = call(&p, &tries, "all.test", 1, code).await;
        assert_eq!((s, seen.len()), (200, 2), "{code}");
        let (s, seen) = call(&p, &tries, "all.test", 3, code).await;
        assert_eq!((s.to_string(), seen.len()), (code.to_string(), 3));
    }
    // Without `retry`, a status is never tried again.
    let (s, seen) = call(&p, &tries, "none.test", 1, "500").await;
    assert_eq!((s, seen.len()), (500, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tries_go_round_the_endpoints_and_come_back() {
    let (backend, tries) = flaky(2).await;
    let p = start(&backend, &[("two", "    retry: {codes: [502], attempts: 3}")]).await;
    let (s, seen) = call(&p, &tries, "two.test", 4, "502").await;
    assert_eq!((s, seen.len()), (502, 4));
    // Round robin over two endpoints: each try goes to the other one.
    let ports: Vec<u16> = seen.iter().map(|(_, port)| *port).collect();
    assert!(ports.windows(2).all(|w| w[0] != w[1]), "{ports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_tried_again_with_a_retry_stanza_only() {
    let (backend, tries) = flaky(1).await;
    let p = start(&backend, &[("reset", "    retry: {attempts: 2}"), ("plain", "")]).await;
    let (s, seen) = call(&p, &tries, "reset.test", 2, "reset").await;
    assert_eq!((s, seen.len()), (200, 3));
    let (s, seen) = call(&p, &tries, "reset.test", 3, "reset").await;
    assert_eq!((s, seen.len()), (502, 3));
    // Without it the one endpoint is tried once, as before (`proxy-next-upstream`'s tries
    // count endpoints).
    let (s, seen) = call(&p, &tries, "plain.test", 1, "reset").await;
    assert_eq!((s, seen.len()), (502, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tries_start_at_least_the_backoff_apart() {
    let (backend, tries) = flaky(1).await;
    let p = start(
        &backend,
        &[("slowly", "    retry: {codes: [500], attempts: 2, backoff: 300ms}")],
    )
    .await;
    let (s, seen) = call(&p, &tries, "slowly.test", 2, "500").await;
    assert_eq!((s, seen.len()), (200, 3));
    // A lower bound (the spec's minimum wait), not a measure of speed.
    for w in seen.windows(2) {
        let gap = w[1].0.duration_since(w[0].0);
        assert!(gap >= Duration::from_millis(300), "{gap:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_past_the_backend_timeout_is_tried_again_within_the_request_timeout() {
    let (backend, tries) = flaky(1).await;
    let p = start(
        &backend,
        &[
            (
                "again",
                "    timeouts: {request: 10s, backendRequest: 500ms}\n    retry: {attempts: 2}",
            ),
            (
                "budget",
                "    timeouts: {request: 1500ms, backendRequest: 1s}\n    retry: {attempts: 5}",
            ),
        ],
    )
    .await;
    // Each slow try is given up after 500 ms; the third answers at once.
    let (s, seen) = call(&p, &tries, "again.test", 2, "slow").await;
    assert_eq!((s, seen.len()), (200, 3));
    // The request timeout covers every try: the first is given up after 1 s, the second
    // when 1.5 s have passed since the first began, and no third starts.
    let (s, seen) = call(&p, &tries, "budget.test", 5, "slow").await;
    assert_eq!((s, seen.len()), (504, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_method_is_tried_again_but_a_body_goes_once() {
    let (backend, tries) = flaky(1).await;
    let p = start(&backend, &[("post", "    retry: {codes: [500], attempts: 1}")]).await;
    let send = |body: &'static str| {
        let req = http::Request::builder()
            .method("POST")
            .uri("/?id=post-{}&fail=1&how=500".replace("{}", &body.len().to_string()))
            .header("host", "post.test")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        request(p.http, req)
    };
    assert_eq!(send("").await.unwrap().0, 200);
    assert_eq!(tries.lock().unwrap()["post-0"].len(), 2);
    // Portico streams request bodies: one sent to the backend cannot be sent again.
    assert_eq!(send("data").await.unwrap().0, 500);
    assert_eq!(tries.lock().unwrap()["post-4"].len(), 1);
}

#[tokio::test]
async fn values_the_crd_refuses_leave_the_rule_out() {
    let (backend, _) = flaky(1).await;
    let p = start(
        &backend,
        &[
            ("code", "    retry: {codes: [302]}"),
            ("zero", "    retry: {attempts: 0}"),
            ("backoff", "    retry: {backoff: 1.5s}"),
        ],
    )
    .await;
    let routes = p.routes().await;
    for name in ["code", "zero", "backoff"] {
        assert_eq!(
            route_conditions(&routes, name)[0],
            "Accepted=false:UnsupportedValue",
            "{name}"
        );
        assert_eq!(
            get(p.http, &format!("{name}.test"), "/").await.unwrap().0,
            404,
            "{name}"
        );
    }
}
