//! An HTTPRoute's `retry` through a real kube-apiserver: with the experimental-channel CRDs
//! the field reaches Portico (in Kubernetes mode) and failed tries are tried again; with the
//! standard ones the API server drops it and Portico never sees it. That is why a
//! conformance run whose features are inferred from Portico's GatewayClass (which claims
//! HTTPRouteRetry) needs the experimental CRDs.

mod support;

use std::time::Duration;

use portico::fixture::{self, yaml};
use support::cluster::{ControlPlane, eventually};
use support::flaky::{call, flaky_on, local_address};
use support::gateway_api::{GATEWAY_CLASS, HTTP_GATEWAY};

const ROUTE: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: retry, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [retry.test]
  rules:
  - backendRefs: [{name: flaky, port: 80}]
    retry: {codes: [500], attempts: 2}
"#;

/// The route's `retry` as the API server keeps it, and (status, tries that reached the
/// backend) of a request whose first two tries get 500.
async fn with_channel(channel: &str) -> (bool, String, (u16, usize)) {
    // The API server refuses loopback endpoints.
    let ip = local_address();
    let (backend, tries) = flaky_on(ip, 1).await;
    let cp = ControlPlane::start();
    let kubeconfig = cp.install_portico();
    support::gateway_api::install_channel_crds(&cp, channel).await;
    let port = backend[0].port();
    let objects = yaml(&[
        fixture::service("default", "flaky")
            .port("http", 80)
            .target_port(port)
            .into(),
        fixture::slice("default", "flaky-1", "flaky")
            .port("http", port.into())
            .endpoint(&ip.to_string())
            .ready(true)
            .into(),
    ]);
    cp.apply(&format!("{GATEWAY_CLASS}\n---{HTTP_GATEWAY}\n---\n{objects}"));
    // kubectl validates strictly and refuses a field the CRD lacks; the conformance suite's
    // client does not, and the API server then drops the field.
    let strict = cp.try_apply(ROUTE);
    if !strict.status.success() {
        assert!(String::from_utf8_lossy(&strict.stderr).contains("unknown field \"spec.rules[0].retry\""));
        let file = std::env::temp_dir().join(format!("portico-retry-{}.yaml", std::process::id()));
        std::fs::write(&file, ROUTE).unwrap();
        cp.ok(&["apply", "--validate=false", "-f", file.to_str().unwrap()]);
        let _ = std::fs::remove_file(file);
    }
    let kept = cp.ok(&[
        "get",
        "httproute",
        "retry",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.rules[0].retry}",
    ]);
    let p = support::gateway_api::portico_in_cluster(&kubeconfig, &format!("retry-{channel}")).await;
    eventually("the route is served", Duration::from_secs(30), || async {
        call(&p, &tries, "retry.test", 0, "500").await.0 == 200
    })
    .await;
    let (status, seen) = call(&p, &tries, "retry.test", 2, "500").await;
    (strict.status.success(), kept, (status, seen.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_reaches_portico_with_the_experimental_crds_only() {
    let (strict, kept, got) = with_channel("experimental").await;
    assert!(strict);
    assert_eq!(kept, r#"{"attempts":2,"codes":[500]}"#);
    assert_eq!(got, (200, 3));
    let (strict, kept, got) = with_channel("standard").await;
    assert!(!strict, "kubectl refuses the field the standard CRD lacks");
    assert_eq!(kept, "", "the API server dropped it");
    assert_eq!(got, (500, 1));
}
