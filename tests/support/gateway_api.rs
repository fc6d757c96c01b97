//! Gateway API fixtures shared by the Gateway tests: our GatewayClass, and route status
//! as `/routes` reports it.

use std::time::Duration;

use serde_json::Value;

use super::cluster::{ControlPlane, eventually};

/// GatewayClass `portico`, ours.
pub const GATEWAY_CLASS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
"#;

/// Gateway `default/gw` of [`GATEWAY_CLASS`], with one listener `http` on port 80.
pub const HTTP_GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: portico
  listeners:
  - {name: http, port: 80, protocol: HTTP}
"#;

/// The report of Gateway `name` in `/routes`.
pub fn gateway_report<'a>(routes: &'a Value, name: &str) -> &'a Value {
    routes["gatewayApi"]["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"]["name"] == name)
        .unwrap_or_else(|| panic!("no Gateway {name} in {routes:#}"))
}

/// `type=status:reason` of each condition of a route's first parent, from `/routes`.
pub fn route_conditions(routes: &Value, name: &str) -> Vec<String> {
    let r = routes["gatewayApi"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"]["name"] == name)
        .unwrap_or_else(|| panic!("no status for route {name}: {routes:#}"));
    conditions(&r["parents"][0]["conditions"])
}

/// `type=status:reason` of each condition in a list of them.
pub fn conditions(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}={}:{}",
                c["type"].as_str().unwrap(),
                c["status"],
                c["reason"].as_str().unwrap()
            )
        })
        .collect()
}

/// Portico in Kubernetes mode with `kubeconfig` (its ServiceAccount's), as pod `pod` of
/// namespace portico-system (where it holds its Lease and writes status).
pub async fn portico_in_cluster(kubeconfig: &std::path::Path, pod: &str) -> super::Portico {
    let dir = std::env::temp_dir().join(format!("portico-{pod}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    super::Portico::launch_env(
        vec![
            "--election-namespace".into(),
            "portico-system".into(),
            "--pod-name".into(),
            pod.into(),
        ],
        dir,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
    .await
}

/// A control plane with the CRDs, deploy/gateway (the GatewayClass, and the ClusterRole
/// that writes Services and EndpointSlices), namespace `infra` with `objects`, and Portico running in
/// Kubernetes mode as its ServiceAccount with `--gateway-services` and `args`
/// (`--publish-service=portico-system/portico` unless they name another).
pub async fn with_gateway_services(objects: &str, args: &[&str]) -> (ControlPlane, super::Portico) {
    let cp = ControlPlane::start();
    let kubeconfig = cp.install_portico();
    install_crds(&cp).await;
    cp.ok(&["apply", "-k", concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/gateway")]);
    cp.ok(&["create", "namespace", "infra"]);
    cp.apply(objects);
    let dir = std::env::temp_dir().join(format!("portico-gwsvc-{}-{}", std::process::id(), args.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut all = vec![
        "--election-namespace=portico-system",
        "--pod-name=gw",
        "--gateway-services",
    ];
    all.extend(args);
    if !args.iter().any(|a| a.starts_with("--publish-service")) {
        all.push("--publish-service=portico-system/portico");
    }
    let p = super::Portico::launch_env(
        all.iter().map(|a| a.to_string()).collect(),
        dir,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
    .await;
    (cp, p)
}

/// Installs the standard-channel CRDs of the Gateway API module (tests/gateway/crds.sh, through
/// the Go module cache the other kube tests use) and waits until each is Established.
pub async fn install_crds(cp: &ControlPlane) {
    install_channel_crds(cp, "standard").await
}

/// [`install_crds`] of `channel`, `standard` or `experimental`.
pub async fn install_channel_crds(cp: &ControlPlane, channel: &str) {
    let crds = super::built_with(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gateway/crds.sh"),
        "the Gateway API CRDs (sigs.k8s.io/gateway-api)",
        &[("PORTICO_GATEWAY_API_CHANNEL", channel)],
    );
    for kind in [
        "gatewayclasses",
        "gateways",
        "httproutes",
        "grpcroutes",
        "tlsroutes",
        "referencegrants",
        "backendtlspolicies",
        "listenersets",
    ] {
        let file = crds.join(format!("gateway.networking.k8s.io_{kind}.yaml"));
        cp.ok(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
        // A CRD the API server has just taken may not carry its conditions yet, and `kubectl
        // wait` then gives up at once: asked again until it is Established.
        let crd = format!("crd/{kind}.gateway.networking.k8s.io");
        eventually(&format!("{crd} established"), Duration::from_secs(60), || async {
            cp.kubectl(&["wait", "--for", "condition=established", "--timeout=10s", &crd])
                .status
                .success()
        })
        .await;
    }
}
