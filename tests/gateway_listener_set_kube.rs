//! ListenerSets in Kubernetes mode on a real kube-apiserver with the v1.6.3 standard CRDs:
//! Portico watches them (deploy/'s RBAC), attaches the ones the Gateway allows, and as the
//! leader writes their status (Accepted, Programmed, listeners), the Gateway's
//! `attachedListenerSets` and the route parent of kind ListenerSet. A route deleted and
//! created again under the same name gets its status again.

mod support;

use std::time::Duration;

use portico::fixture::{self, yaml};
use serde_json::Value;
use support::cluster::{ControlPlane, eventually};

const OBJECTS: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: portico
  allowedListeners: {namespaces: {from: Same}}
  listeners:
  - {name: own, port: 80, protocol: HTTP, hostname: gw.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls, namespace: infra}
spec:
  parentRef: {name: gw}
  listeners:
  - {name: extra, port: 80, protocol: HTTP, hostname: ls.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: far, namespace: elsewhere}
spec:
  parentRef: {name: gw, namespace: infra}
  listeners:
  - {name: extra, port: 80, protocol: HTTP, hostname: far.example.com}
"#;

const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: infra}
spec:
  parentRefs: [{kind: ListenerSet, group: gateway.networking.k8s.io, name: ls}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cart}}]
    backendRefs: [{name: web, port: 80}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_sets_are_watched_attached_and_their_status_written() {
    let cp = ControlPlane::start();
    let kubeconfig = cp.install_portico();
    support::gateway_api::install_crds(&cp).await;
    cp.ok(&["create", "namespace", "infra"]);
    cp.ok(&["create", "namespace", "elsewhere"]);
    let slice = fixture::slice("infra", "web-1", "web")
        .port("http", 8080)
        .endpoint("198.51.100.7")
        .ready(true);
    cp.apply(
        &(yaml(&[
            fixture::service("infra", "web")
                .port("http", 80)
                .target_port(8080)
                .into(),
            slice.into(),
        ]) + "---\n"
            + support::gateway_api::GATEWAY_CLASS
            + OBJECTS
            + "---\n"
            + ROUTE),
    );

    let p = support::gateway_api::portico_in_cluster(&kubeconfig, "lset").await;
    eventually("the ListenerSet's listener serves", Duration::from_secs(20), || async {
        p.routes().await["hosts"]["ls.example.com"][0]["path"] == "/cart"
    })
    .await;
    assert!(p.routes().await["hosts"].get("far.example.com").is_none());

    let status = |kind: &str, ns: &str, name: &str| -> Value {
        let out: Value = serde_json::from_str(&cp.ok(&["get", kind, name, "-n", ns, "-o", "json"])).unwrap();
        out["status"].clone()
    };
    let condition = |status: &Value, type_: &str| -> String {
        status["conditions"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["type"] == type_))
            .map(|c| {
                format!(
                    "{}:{}",
                    c["status"].as_str().unwrap_or(""),
                    c["reason"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_default()
    };
    eventually("ListenerSet status written", Duration::from_secs(20), || async {
        let s = status("listenerset", "infra", "ls");
        condition(&s, "Accepted") == "True:Accepted"
            && condition(&s, "Programmed") == "True:Programmed"
            && s["listeners"][0]["attachedRoutes"] == 1
    })
    .await;
    let s = status("listenerset", "infra", "ls");
    let listener = &s["listeners"][0];
    assert_eq!(listener["name"], "extra");
    assert_eq!(condition(listener, "Accepted"), "True:Accepted", "{s:#}");
    assert_eq!(listener["supportedKinds"][0]["kind"], "HTTPRoute");
    assert!(
        s["conditions"][0]["observedGeneration"]
            .as_i64()
            .is_some_and(|g| g >= 1)
    );
    eventually("the refused ListenerSet's status", Duration::from_secs(20), || async {
        let s = status("listenerset", "elsewhere", "far");
        condition(&s, "Accepted") == "False:NotAllowed" && condition(&s, "Programmed") == "False:NotAllowed"
    })
    .await;
    let gw = status("gateway", "infra", "gw");
    assert_eq!(gw["attachedListenerSets"], 1, "{gw:#}");
    assert_eq!(gw["listeners"].as_array().map(Vec::len), Some(1), "{gw:#}");
    let parent_accepted = || async {
        let s = status("httproute", "infra", "shop");
        let parent = &s["parents"][0];
        parent["parentRef"]["kind"] == "ListenerSet" && condition(parent, "Accepted") == "True:Accepted"
    };
    eventually(
        "the route's ListenerSet parent",
        Duration::from_secs(20),
        parent_accepted,
    )
    .await;

    // Deleted and created again at once (as the conformance suite does between tests that
    // share a route name): the new object gets its status too.
    cp.ok(&["delete", "httproute", "shop", "-n", "infra"]);
    cp.apply(ROUTE);
    eventually(
        "the re-created route's status",
        Duration::from_secs(20),
        parent_accepted,
    )
    .await;
}
