//! Gateway API in Kubernetes mode on a real kube-apiserver: with the v1.6.3 standard CRDs
//! installed, Portico finds them at start and watches GatewayClasses, Gateways, HTTPRoutes,
//! ReferenceGrants and BackendTLSPolicies (and Namespaces) with the deploy/ ServiceAccount's
//! rights.
//! EndpointSlices use documentation addresses (198.51.100.0/24): no traffic goes there.

mod support;

use std::time::Duration;

use portico::fixture::{self, yaml};
use support::cluster::{ControlPlane, eventually};

const OBJECTS: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: gw-a}
spec:
  gatewayClassName: portico
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector: {matchLabels: {gateway-access: "yes"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: gw-b}
spec:
  parentRefs: [{name: gw, namespace: gw-a}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cart}}]
    backendRefs: [{name: web, namespace: gw-a, port: 80}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_objects_are_watched_when_their_crds_are_served() {
    let cp = ControlPlane::start();
    let kubeconfig = cp.install_portico();
    support::gateway_api::install_crds(&cp).await;
    cp.ok(&["create", "namespace", "gw-a"]);
    cp.ok(&["create", "namespace", "gw-b"]);
    let slice = fixture::slice("gw-a", "web-1", "web")
        .port("http", 8080)
        .endpoint("198.51.100.7")
        .ready(true);
    cp.apply(
        &(yaml(&[
            fixture::service("gw-a", "web")
                .port("http", 80)
                .target_port(8080)
                .into(),
            slice.into(),
        ]) + OBJECTS),
    );

    let p = support::gateway_api::portico_in_cluster(&kubeconfig, "gw").await;

    // The route's namespace lacks the label the listener selects: not attached.
    let routes = p.routes().await;
    assert!(routes["hosts"].get("shop.example.com").is_none(), "{routes:#}");
    let reason =
        |routes: &serde_json::Value| routes["gatewayApi"]["routes"][0]["parents"][0]["conditions"][0]["reason"].clone();
    assert_eq!(reason(&routes), "NotAllowedByListeners", "{routes:#}");
    assert!(
        p.logs.lock().unwrap().iter().any(|l| l.contains("Gateway API served")),
        "the kinds watched are logged"
    );

    // Labelling the namespace (a watched Namespace change) attaches it; the backend in gw-a
    // still needs a ReferenceGrant.
    cp.ok(&["label", "namespace", "gw-b", "gateway-access=yes"]);
    eventually("the route attached", Duration::from_secs(10), || async {
        reason(&p.routes().await) == "Accepted"
    })
    .await;
    let routes = p.routes().await;
    let entry = &routes["hosts"]["shop.example.com"][0];
    assert_eq!(entry["path"], "/cart");
    assert_eq!(entry["backend"]["target"]["kind"], "unavailable", "{entry:#}");
    cp.apply(
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: shop, namespace: gw-a}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gw-b}]\n  to: [{group: \"\", kind: Service}]\n",
    );
    eventually("the backend resolved", Duration::from_secs(10), || async {
        let routes = p.routes().await;
        routes["hosts"]["shop.example.com"][0]["backend"]["target"]["ready"][0]["addr"] == "198.51.100.7:8080"
    })
    .await;

    // As the leader, Portico writes what compile decided into the objects' status.
    let status = |kind: &str, ns: Option<&str>, name: &str| {
        let mut args = vec!["get", kind, name, "-o", "json"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        let out: serde_json::Value = serde_json::from_str(&cp.ok(&args)).unwrap();
        out["status"].clone()
    };
    let condition = |status: &serde_json::Value, type_: &str| {
        status["conditions"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["type"] == type_).cloned())
            .unwrap_or_default()
    };
    eventually("GatewayClass status written", Duration::from_secs(20), || async {
        condition(&status("gatewayclass", None, "portico"), "Accepted")["status"] == "True"
    })
    .await;
    // The conformance suite picks its tests from this list.
    let features = status("gatewayclass", None, "portico")["supportedFeatures"].clone();
    assert!(
        features
            .as_array()
            .is_some_and(|l| l.iter().any(|f| f["name"] == "HTTPRoute")),
        "{features:#}"
    );
    eventually("HTTPRoute parent status written", Duration::from_secs(20), || async {
        let s = status("httproute", Some("gw-b"), "shop");
        let parent = &s["parents"][0];
        parent["controllerName"] == "portico.dev/gateway-controller"
            && condition(parent, "Accepted")["status"] == "True"
            && condition(parent, "ResolvedRefs")["status"] == "True"
    })
    .await;
    let gw = status("gateway", Some("gw-a"), "gw");
    assert_eq!(condition(&gw, "Programmed")["status"], "True", "{gw:#}");
    let generation = gw["conditions"][0]["observedGeneration"].clone();
    assert!(generation.as_i64().is_some_and(|g| g >= 1), "{gw:#}");

    // A BackendTLSPolicy for the route's Service (watched: its CRD is served), whose CA
    // ConfigMap comes later: not accepted until the ConfigMap (also watched) exists.
    cp.apply(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: web-tls, namespace: gw-a}\nspec:\n  targetRefs: [{group: '', kind: Service, name: web}]\n  validation:\n    caCertificateRefs: [{group: '', kind: ConfigMap, name: web-ca}]\n    hostname: web.example.com\n",
    );
    let policy_accepted = |want: &'static str, reason: &'static str| {
        let status = &status;
        let condition = &condition;
        async move {
            let s = status("backendtlspolicy", Some("gw-a"), "web-tls");
            let a = &s["ancestors"][0];
            a["ancestorRef"]["name"] == "gw"
                && condition(a, "Accepted")["status"] == want
                && condition(a, "Accepted")["reason"] == reason
        }
    };
    eventually(
        "BackendTLSPolicy not accepted without its CA",
        Duration::from_secs(20),
        || policy_accepted("False", "NoValidCACertificate"),
    )
    .await;
    let ca = fixture::self_signed_pem("web-ca.example.com").replace('\n', "\n    ");
    cp.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web-ca, namespace: gw-a}}\ndata:\n  ca.crt: |\n    {ca}\n"
    ));
    eventually("BackendTLSPolicy accepted with its CA", Duration::from_secs(20), || {
        policy_accepted("True", "Accepted")
    })
    .await;
}
