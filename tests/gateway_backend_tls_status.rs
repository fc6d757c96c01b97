//! BackendTLSPolicy status on a real kube-apiserver with the standard CRDs of
//! sigs.k8s.io/gateway-api (tests/gateway/crds.sh): what compile decides about the objects
//! as the API server holds them is written by the leader's writer, as Portico's ServiceAccount
//! (deploy/'s RBAC), to `status.ancestors`, with the policy's `observedGeneration`, which
//! follows a change of the policy.

mod support;

use portico::compile::{Options, compile};
use portico::config::gateway::status_updates;
use portico::fixture;
use portico::model::AnyObject;
use portico::source::files::parse_manifests;
use portico::source::gateway_status::{StatusWriter, write_round};
use portico::source::kube::KubeOptions;
use serde_json::Value;
use support::cluster::ControlPlane;

const US: &str = "portico.dev/gateway-controller";

/// A Gateway with an HTTP listener, an HTTPRoute to Service `app` port 443, and a policy for
/// it whose CA ConfigMap does not exist.
const OBJECTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: gw}
spec:
  gatewayClassName: portico
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: gw}
spec:
  parentRefs: [{name: web}]
  rules: [{backendRefs: [{name: app, port: 443}]}]
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: gw}
spec: {ports: [{name: btls, port: 443}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: app-tls, namespace: gw}
spec:
  targetRefs: [{group: '', kind: Service, name: app, sectionName: btls}]
  validation:
    caCertificateRefs: [{group: '', kind: ConfigMap, name: app-ca}]
    hostname: app.example.com
"#;

/// The objects as the API server holds them (with generations).
fn objects(cp: &ControlPlane) -> Vec<AnyObject> {
    let mut out = Vec::new();
    for kind in [
        "gatewayclass",
        "gateway",
        "httproute",
        "service",
        "backendtlspolicy",
        "configmap",
    ] {
        let mut args = vec!["get", kind, "-o", "json"];
        if kind != "gatewayclass" {
            args.extend(["-n", "gw"]);
        }
        let list: Value = serde_json::from_str(&cp.ok(&args)).unwrap();
        for item in list["items"].as_array().unwrap() {
            out.extend(parse_manifests(&item.to_string()).unwrap());
        }
    }
    out
}

async fn write(cp: &ControlPlane, client: &kube::Client, writer: &mut StatusWriter) {
    let cfg = compile(&fixture::snapshot(objects(cp)), &Options::default());
    let updates: Vec<_> = status_updates(&cfg.gateway, "2026-01-01T00:00:00Z")
        .into_iter()
        .filter(|u| u.kind == "BackendTLSPolicy")
        .collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    let outcome = write_round(writer, client, &KubeOptions::default(), &updates).await;
    assert_eq!((outcome.written, outcome.failed), (1, 0), "{outcome:?}");
}

fn policy_status(cp: &ControlPlane) -> (Value, Vec<(String, String, String, i64)>) {
    let p: Value =
        serde_json::from_str(&cp.ok(&["get", "backendtlspolicy", "app-tls", "-n", "gw", "-o", "json"])).unwrap();
    let ancestors = &p["status"]["ancestors"];
    assert_eq!(ancestors.as_array().map(Vec::len), Some(1), "{p}");
    let a = &ancestors[0];
    assert_eq!(a["controllerName"], US);
    let conditions = a["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
                c["observedGeneration"].as_i64().unwrap(),
            )
        })
        .collect();
    (a["ancestorRef"].clone(), conditions)
}

fn c(ty: &str, status: &str, reason: &str, generation: i64) -> (String, String, String, i64) {
    (ty.into(), status.into(), reason.into(), generation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_policy_status_follows_its_ca_and_generation() {
    let cp = ControlPlane::start();
    support::gateway_api::install_crds(&cp).await;
    let kubeconfig = cp.install_portico();
    cp.ok(&["create", "namespace", "gw"]);
    cp.apply(OBJECTS);
    let client = ControlPlane::client_with(&kubeconfig).await;
    let mut writer = StatusWriter::new(client.clone(), US);

    // No CA ConfigMap: not accepted, the reference unresolved.
    write(&cp, &client, &mut writer).await;
    let (ancestor, conditions) = policy_status(&cp);
    assert_eq!(ancestor["kind"], "Gateway");
    assert_eq!(
        (&ancestor["namespace"], &ancestor["name"]),
        (&"gw".into(), &"web".into())
    );
    assert_eq!(
        conditions,
        [
            c("Accepted", "False", "NoValidCACertificate", 1),
            c("ResolvedRefs", "False", "InvalidCACertificateRef", 1)
        ]
    );

    // The ConfigMap appears and the policy changes (generation 2): accepted, for generation 2.
    let ca = fixture::self_signed_pem("app-ca.example.com").replace('\n', "\n    ");
    cp.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app-ca, namespace: gw}}\ndata:\n  ca.crt: |\n    {ca}\n"
    ));
    cp.ok(&[
        "patch",
        "backendtlspolicy",
        "app-tls",
        "-n",
        "gw",
        "--type=merge",
        "-p",
        r#"{"spec": {"validation": {"hostname": "app2.example.com"}}}"#,
    ]);
    write(&cp, &client, &mut writer).await;
    let (_, conditions) = policy_status(&cp);
    assert_eq!(
        conditions,
        [
            c("Accepted", "True", "Accepted", 2),
            c("ResolvedRefs", "True", "ResolvedRefs", 2)
        ]
    );
}
