//! `--gateway-services` on a real kube-apiserver with the Gateway API CRDs: Portico, in
//! Kubernetes mode as its ServiceAccount with deploy/gateway's rights, keeps one Service per
//! Gateway in its own namespace (ports to per-Gateway targets, Portico's pod selector, the
//! Gateway's infrastructure labels and annotations), writes each Service's address into its
//! Gateway's status, deletes the Services of Gateways that are gone, and reports static
//! addresses and parametersRef as the conformance tests GatewayStaticAddresses and
//! GatewayInvalidParametersRef expect. No pod runs: the Services' ClusterIPs are the API
//! server's allocation, which is all status needs.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::cluster::{ControlPlane, eventually};
use support::gateway_api::with_gateway_services;

const GATEWAYS: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: a, namespace: infra}
spec:
  gatewayClassName: portico
  infrastructure:
    labels: {key2: value2}
    annotations: {key1: value1}
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: b, namespace: infra}
spec:
  gatewayClassName: portico
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: alt, port: 8080, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: static, namespace: infra}
spec:
  gatewayClassName: portico
  addresses:
  - {type: test/fake-invalid-type, value: "fake address teehee!"}
  - {type: IPAddress, value: 203.0.113.9}
  - {type: IPAddress, value: 198.51.100.20}
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: params, namespace: infra}
spec:
  gatewayClassName: portico
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  infrastructure:
    parametersRef: {group: invalid.io, kind: InvalidParameters, name: invalid}
---
# Left by an earlier leader for a Gateway that no longer exists.
apiVersion: v1
kind: Service
metadata:
  name: gw-stale
  namespace: portico-system
  labels: {portico.dev/gateway-service: portico}
spec:
  ports: [{port: 80}]
---
# Another Portico's (its own Service is portico-b): left alone.
apiVersion: v1
kind: Service
metadata:
  name: gw-other
  namespace: portico-system
  labels: {portico.dev/gateway-service: portico-b}
spec:
  ports: [{port: 80}]
"#;

const LB: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: lb, namespace: infra}\nspec:\n  gatewayClassName: portico\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n";

fn get(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut all = vec!["get", "-o", "json"];
    all.extend(args);
    serde_json::from_str(&cp.ok(&all)).unwrap()
}

fn gateway(cp: &ControlPlane, name: &str) -> Value {
    get(cp, &["gateway", "-n", "infra", name])
}

/// `status reason` of a Gateway's condition.
fn condition(gw: &Value, type_: &str) -> String {
    gw["status"]["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == type_))
        .map(|c| format!("{} {}", c["status"].as_str().unwrap(), c["reason"].as_str().unwrap()))
        .unwrap_or_default()
}

/// Our Services in portico-system, by the Gateway they serve (`NS/NAME`).
fn services(cp: &ControlPlane) -> std::collections::BTreeMap<String, Value> {
    get(
        cp,
        &[
            "services",
            "-n",
            "portico-system",
            "-l",
            "portico.dev/gateway-service=portico",
        ],
    )["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let gw = s["metadata"]["annotations"]["portico.dev/gateway"]
                .as_str()
                .unwrap_or("?");
            (gw.to_string(), s.clone())
        })
        .collect()
}

fn remove_address(cp: &ControlPlane, name: &str, value: &str) {
    let gw = gateway(cp, name);
    let kept: Vec<&Value> = gw["spec"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["value"] != value)
        .collect();
    let patch = json!({"spec": {"addresses": kept}}).to_string();
    cp.ok(&["patch", "gateway", "-n", "infra", name, "--type", "merge", "-p", &patch]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_gets_a_service_of_its_own_and_its_address() {
    let args = [
        "--gateway-service-type=ClusterIP",
        "--gateway-address-cidrs=198.51.100.0/24",
    ];
    let (cp, _p) = with_gateway_services(GATEWAYS, &args).await;

    eventually(
        "a Service for each of a and b, none stale",
        Duration::from_secs(30),
        || async { services(&cp).keys().cloned().collect::<Vec<_>>() == ["infra/a", "infra/b"] },
    )
    .await;
    let svcs = services(&cp);
    let own = get(&cp, &["service", "-n", "portico-system", "portico"]);
    let (a, b) = (&svcs["infra/a"], &svcs["infra/b"]);
    assert_eq!(a["spec"]["type"], "ClusterIP");
    assert_eq!(a["spec"]["selector"], own["spec"]["selector"], "Portico's own pods");
    assert_eq!(a["metadata"]["labels"]["key2"], "value2", "{a:#}");
    assert_eq!(a["metadata"]["annotations"]["key1"], "value1", "{a:#}");
    assert_eq!(a["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"], "a");
    assert_eq!(a["metadata"]["labels"]["portico.dev/gateway-namespace"], "infra");
    let ports = |s: &Value| -> Vec<(i64, i64)> {
        s["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["port"].as_i64().unwrap(), p["targetPort"].as_i64().unwrap()))
            .collect()
    };
    let (pa, pb) = (ports(a), ports(b));
    assert_eq!(pa.iter().map(|p| p.0).collect::<Vec<_>>(), [80]);
    assert_eq!(pb.iter().map(|p| p.0).collect::<Vec<_>>(), [80, 8080]);
    assert!(
        pa.iter().chain(&pb).all(|p| (20_000..30_000).contains(&p.1)),
        "{pa:?} {pb:?}"
    );
    assert_ne!(pa[0].1, pb[0].1, "port 80 of a and of b go to different targets");

    // Each Gateway's address is its own Service's ClusterIP.
    for (name, svc) in [("a", a), ("b", b)] {
        let want = json!([{"type": "IPAddress", "value": svc["spec"]["clusterIP"]}]);
        eventually(
            &format!("Gateway {name}'s address"),
            Duration::from_secs(20),
            || async { gateway(&cp, name)["status"]["addresses"] == want },
        )
        .await;
        assert_eq!(condition(&gateway(&cp, name), "Programmed"), "True Programmed");
    }
    assert_ne!(a["spec"]["clusterIP"], b["spec"]["clusterIP"]);

    // A Service someone deleted is made again (and b's address follows the new one).
    let b_name = b["metadata"]["name"].as_str().unwrap();
    cp.ok(&["delete", "service", "-n", "portico-system", b_name]);
    eventually("b's Service made again", Duration::from_secs(20), || async {
        services(&cp).get("infra/b").is_some_and(|s| {
            gateway(&cp, "b")["status"]["addresses"] == json!([{"type": "IPAddress", "value": s["spec"]["clusterIP"]}])
        })
    })
    .await;

    // GatewayInvalidParametersRef.
    eventually("params not accepted", Duration::from_secs(20), || async {
        condition(&gateway(&cp, "params"), "Accepted") == "False InvalidParameters"
    })
    .await;

    // GatewayStaticAddresses: an unsupported type, then an address outside
    // --gateway-address-cidrs, then a usable one.
    eventually("static: unsupported address", Duration::from_secs(20), || async {
        condition(&gateway(&cp, "static"), "Accepted") == "False UnsupportedAddress"
    })
    .await;
    remove_address(&cp, "static", "fake address teehee!");
    eventually("static: address not usable", Duration::from_secs(20), || async {
        let gw = gateway(&cp, "static");
        condition(&gw, "Accepted") == "True Accepted" && condition(&gw, "Programmed") == "False AddressNotUsable"
    })
    .await;
    assert!(!services(&cp).contains_key("infra/static"));
    remove_address(&cp, "static", "203.0.113.9");
    eventually("static: programmed at its address", Duration::from_secs(20), || async {
        let gw = gateway(&cp, "static");
        condition(&gw, "Programmed") == "True Programmed"
            && gw["status"]["addresses"] == json!([{"type": "IPAddress", "value": "198.51.100.20"}])
    })
    .await;
    let s = &services(&cp)["infra/static"];
    assert_eq!(s["spec"]["externalIPs"], json!(["198.51.100.20"]), "{s:#}");
    let gw = gateway(&cp, "static");
    let generation = gw["metadata"]["generation"].clone();
    assert!(
        gw["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["observedGeneration"] == generation),
        "{gw:#}"
    );

    // A Gateway that is gone takes its Service along.
    cp.ok(&["delete", "gateway", "-n", "infra", "a"]);
    eventually("a's Service deleted", Duration::from_secs(20), || async {
        !services(&cp).contains_key("infra/a")
    })
    .await;
    assert!(services(&cp).contains_key("infra/b"));
    cp.ok(&["get", "service", "-n", "portico-system", "gw-other"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_gives_the_gateway_its_address_once_it_has_one() {
    let (cp, _p) = with_gateway_services(LB, &[]).await;
    eventually("lb's Service", Duration::from_secs(30), || async {
        services(&cp).contains_key("infra/lb")
    })
    .await;
    let svc = &services(&cp)["infra/lb"];
    assert_eq!(svc["spec"]["type"], "LoadBalancer", "the default type");
    assert_eq!(
        svc["spec"]["externalTrafficPolicy"], "Local",
        "as Portico's own Service"
    );
    // No load balancer yet: the ClusterIP meanwhile.
    let cluster = json!([{"type": "IPAddress", "value": svc["spec"]["clusterIP"]}]);
    eventually("lb's ClusterIP in status", Duration::from_secs(20), || async {
        gateway(&cp, "lb")["status"]["addresses"] == cluster
    })
    .await;
    // What a cloud's load-balancer controller writes; Portico asks again after a backoff.
    let name = svc["metadata"]["name"].as_str().unwrap();
    cp.ok(&[
        "patch",
        "service",
        "-n",
        "portico-system",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.77"}]}}}"#,
    ]);
    eventually(
        "the load balancer's address in status",
        Duration::from_secs(30),
        || async {
            gateway(&cp, "lb")["status"]["addresses"] == json!([{"type": "IPAddress", "value": "203.0.113.77"}])
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_porticos_own_service_nothing_is_made_or_deleted_until_it_comes() {
    let kept = "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: gw-kept\n  namespace: portico-system\n  labels: {portico.dev/gateway-service: late}\nspec:\n  ports: [{port: 80}]\n";
    let (cp, p) = with_gateway_services(&format!("{LB}{kept}"), &["--publish-service=portico-system/late"]).await;
    eventually("lb's status written", Duration::from_secs(20), || async {
        condition(&gateway(&cp, "lb"), "Accepted") == "True Accepted"
    })
    .await;
    eventually("the failure logged", Duration::from_secs(20), || async {
        p.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("cannot bring the Gateways' Services up to date"))
    })
    .await;
    let ours = || {
        get(
            &cp,
            &[
                "services",
                "-n",
                "portico-system",
                "-l",
                "portico.dev/gateway-service=late",
            ],
        )
    };
    let names = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(ours()),
        ["gw-kept"],
        "nothing deleted while Portico's own Service is unknown"
    );
    cp.apply("apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: portico-system}\nspec:\n  selector: {app: portico}\n  ports: [{port: 80}]\n");
    eventually(
        "lb's Service made, the stale one deleted",
        Duration::from_secs(30),
        || async {
            let n = names(ours());
            n.len() == 1 && n[0].starts_with("gw-infra-lb-")
        },
    )
    .await;
}
