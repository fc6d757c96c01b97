//! `--gateway-services` on a real kube-apiserver with the Gateway API CRDs: Portico, in
//! Kubernetes mode as its ServiceAccount with deploy/gateway's rights, keeps one Service per
//! Gateway in the Gateway's namespace (selector-less, ports to per-Gateway targets, owned by
//! the Gateway, labelled with its name, carrying its infrastructure labels and annotations)
//! and that Service's EndpointSlice (Portico's own serving endpoints, from its own Service's
//! slices, at the targets), follows its own endpoints as they change, writes each Service's
//! address into its Gateway's status, leaves a user's Service under the name alone (the
//! Gateway not Programmed), deletes the Services of Gateways that are gone and those of the
//! earlier layout (in portico-system), and reports static addresses and parametersRef as the
//! conformance tests GatewayStaticAddresses and GatewayInvalidParametersRef expect. No pod
//! runs and no kube-controller-manager (no EndpointSlice controller, no garbage collector):
//! the test writes the slice of Portico's own Service as that controller would, and the
//! Services' ClusterIPs are the API server's allocation, which is all status needs.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use support::cluster::{ControlPlane, eventually};
use support::gateway_api::with_gateway_services;

/// The value of portico.dev/gateway-service-of for Portico's own Service portico-system/portico.
const OURS: &str = "portico.dev/gateway-service-of=portico-system.portico";

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
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: taken, namespace: infra}
spec:
  gatewayClassName: portico
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
# A user's Service under the name Portico would give Gateway taken's.
apiVersion: v1
kind: Service
metadata: {name: taken-portico, namespace: infra, labels: {owner: user}}
spec:
  selector: {app: users}
  ports: [{port: 80}]
---
# Portico's own pods, as the EndpointSlice controller lists them: one ready on node n1, one
# not serving.
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: portico-x1
  namespace: portico-system
  labels: {kubernetes.io/service-name: portico}
addressType: IPv4
endpoints:
- {addresses: [10.244.0.9], conditions: {ready: true, serving: true}, nodeName: n1}
- {addresses: [10.244.0.8], conditions: {ready: false, serving: false}, nodeName: n1}
ports: [{name: http, port: 80, protocol: TCP}]
---
# The earlier layout's Service of a Gateway, in Portico's namespace: deleted.
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

fn items(v: Value) -> Vec<Value> {
    v["items"].as_array().unwrap().clone()
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

/// Our Services in every namespace, by the Gateway they serve (`NS/NAME`).
fn services(cp: &ControlPlane) -> BTreeMap<String, Value> {
    items(get(cp, &["services", "-A", "-l", OURS]))
        .into_iter()
        .map(|s| {
            let gw = s["metadata"]["annotations"]["portico.dev/gateway"]
                .as_str()
                .unwrap_or("?");
            (gw.to_string(), s)
        })
        .collect()
}

/// The EndpointSlices of Service `svc` of namespace infra.
fn slices(cp: &ControlPlane, svc: &str) -> Vec<Value> {
    items(get(
        cp,
        &[
            "endpointslices",
            "-n",
            "infra",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
        ],
    ))
}

/// The addresses of the endpoints of Service `svc`'s slices, sorted.
fn endpoint_addresses(cp: &ControlPlane, svc: &str) -> Vec<String> {
    let mut all: Vec<String> = slices(cp, svc)
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| e["addresses"][0].as_str().unwrap().to_string())
        .collect();
    all.sort();
    all
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
async fn each_gateway_gets_a_service_beside_it_with_portico_s_endpoints_and_its_address() {
    let args = [
        "--gateway-service-type=ClusterIP",
        "--gateway-address-cidrs=198.51.100.0/24",
    ];
    let (cp, _p) = with_gateway_services(GATEWAYS, &args).await;

    eventually(
        "a Service for each of a and b, none for taken",
        Duration::from_secs(30),
        || async { services(&cp).keys().cloned().collect::<Vec<_>>() == ["infra/a", "infra/b"] },
    )
    .await;
    let svcs = services(&cp);
    let (a, b) = (&svcs["infra/a"], &svcs["infra/b"]);
    assert_eq!(a["metadata"]["namespace"], "infra");
    assert_eq!(a["metadata"]["name"], "a-portico");
    assert_eq!(a["spec"]["type"], "ClusterIP");
    assert!(a["spec"].get("selector").is_none(), "no selector: {a:#}");
    // As GatewayInfrastructureMetadata looks for it: by the gateway-name label, in the
    // Gateway's namespace, with the infrastructure's labels and annotations.
    let found = items(get(
        &cp,
        &[
            "services",
            "-n",
            "infra",
            "-l",
            "gateway.networking.k8s.io/gateway-name=a",
        ],
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["metadata"]["labels"]["key2"], "value2", "{a:#}");
    assert_eq!(found[0]["metadata"]["annotations"]["key1"], "value1", "{a:#}");
    assert_eq!(a["metadata"]["labels"]["app.kubernetes.io/managed-by"], "portico");
    let owner = &a["metadata"]["ownerReferences"];
    let gw_a = gateway(&cp, "a");
    assert_eq!(owner[0]["kind"], "Gateway", "{owner:#}");
    assert_eq!(owner[0]["name"], "a");
    assert_eq!(owner[0]["uid"], gw_a["metadata"]["uid"]);
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

    // Their EndpointSlices: Portico's serving endpoint at each port's target, by port name.
    eventually("a's EndpointSlice", Duration::from_secs(20), || async {
        endpoint_addresses(&cp, "a-portico") == ["10.244.0.9"]
    })
    .await;
    let sa = &slices(&cp, "a-portico")[0];
    assert_eq!(sa["metadata"]["name"], "a-portico-ipv4");
    assert_eq!(sa["addressType"], "IPv4");
    assert_eq!(
        sa["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "gateway-services.portico.dev"
    );
    assert_eq!(sa["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(sa["metadata"]["ownerReferences"][0]["uid"], a["metadata"]["uid"]);
    assert_eq!(sa["endpoints"][0]["nodeName"], "n1", "{sa:#}");
    assert_eq!(sa["endpoints"][0]["conditions"]["ready"], true, "{sa:#}");
    assert_eq!(
        sa["ports"],
        json!([{"name": "port-80", "port": pa[0].1, "protocol": "TCP"}])
    );
    eventually("b's EndpointSlice", Duration::from_secs(20), || async {
        endpoint_addresses(&cp, "b-portico") == ["10.244.0.9"]
    })
    .await;
    let sb = &slices(&cp, "b-portico")[0];
    let names: Vec<&Value> = sb["ports"].as_array().unwrap().iter().map(|p| &p["name"]).collect();
    assert_eq!(names, ["port-80", "port-8080"], "{sb:#}");

    // The slices follow Portico's own endpoints: a pod more, then none.
    cp.apply(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: portico-x2\n  namespace: portico-system\n  labels: {kubernetes.io/service-name: portico}\naddressType: IPv4\nendpoints:\n- {addresses: [10.244.0.10], conditions: {ready: true}}\nports: [{name: http, port: 80, protocol: TCP}]\n",
    );
    eventually(
        "a's and b's slices list the new pod",
        Duration::from_secs(20),
        || async {
            endpoint_addresses(&cp, "a-portico") == ["10.244.0.10", "10.244.0.9"]
                && endpoint_addresses(&cp, "b-portico") == ["10.244.0.10", "10.244.0.9"]
        },
    )
    .await;
    cp.ok(&[
        "delete",
        "endpointslices",
        "-n",
        "portico-system",
        "portico-x1",
        "portico-x2",
    ]);
    eventually("a's slice without endpoints", Duration::from_secs(20), || async {
        let s = slices(&cp, "a-portico");
        s.len() == 1 && s[0]["endpoints"].as_array().is_none_or(Vec::is_empty)
    })
    .await;

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

    // The earlier layout's Service is gone; another Portico's is not.
    eventually("the stale Service deleted", Duration::from_secs(20), || async {
        cp.kubectl(&["get", "service", "-n", "portico-system", "gw-stale"])
            .status
            .code()
            == Some(1)
    })
    .await;
    cp.ok(&["get", "service", "-n", "portico-system", "gw-other"]);

    // The user's Service under taken's name is left as it was, and the Gateway says why.
    eventually("taken: not programmed", Duration::from_secs(20), || async {
        condition(&gateway(&cp, "taken"), "Programmed") == "False AddressNotAssigned"
    })
    .await;
    let users = get(&cp, &["service", "-n", "infra", "taken-portico"]);
    assert_eq!(users["metadata"]["labels"], json!({"owner": "user"}), "{users:#}");
    assert!(users["metadata"].get("ownerReferences").is_none(), "{users:#}");
    assert_eq!(users["spec"]["selector"], json!({"app": "users"}));
    assert!(
        slices(&cp, "taken-portico").is_empty(),
        "no slice for the user's Service"
    );
    let gw = gateway(&cp, "taken");
    assert_eq!(gw["status"]["addresses"], json!([]), "{gw:#}");
    let message = gw["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Programmed")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("infra/taken-portico"), "{message}");
    // Once the user's Service is gone, the name is Portico's.
    cp.ok(&["delete", "service", "-n", "infra", "taken-portico"]);
    eventually("taken: its Service, programmed", Duration::from_secs(40), || async {
        services(&cp).contains_key("infra/taken")
            && condition(&gateway(&cp, "taken"), "Programmed") == "True Programmed"
    })
    .await;

    // A Service someone deleted is made again (and b's address follows the new one).
    cp.ok(&["delete", "service", "-n", "infra", "b-portico"]);
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

    // A Gateway that is gone takes its Service and slices along (deleted by the leader: no
    // garbage collector runs here).
    cp.ok(&["delete", "gateway", "-n", "infra", "a"]);
    eventually("a's Service and slice deleted", Duration::from_secs(20), || async {
        !services(&cp).contains_key("infra/a") && slices(&cp, "a-portico").is_empty()
    })
    .await;
    assert!(services(&cp).contains_key("infra/b"));
    assert_eq!(slices(&cp, "b-portico").len(), 1);
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
        "infra",
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
    let names = |args: &[&str]| -> Vec<String> {
        items(get(&cp, args))
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let old_layout = [
        "services",
        "-n",
        "portico-system",
        "-l",
        "portico.dev/gateway-service=late",
    ];
    let new_layout = [
        "services",
        "-A",
        "-l",
        "portico.dev/gateway-service-of=portico-system.late",
    ];
    assert_eq!(
        names(&old_layout),
        ["gw-kept"],
        "nothing deleted while Portico's own Service is unknown"
    );
    assert!(names(&new_layout).is_empty(), "nothing made either");
    cp.apply("apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: portico-system}\nspec:\n  selector: {app: portico}\n  ports: [{port: 80}]\n");
    eventually(
        "lb's Service made beside it, the old layout's deleted",
        Duration::from_secs(30),
        || async { names(&new_layout) == ["lb-portico"] && names(&old_layout).is_empty() },
    )
    .await;
    // No slice of Portico's own Service yet (no EndpointSlice controller here): an empty one.
    eventually("lb's slice, without endpoints", Duration::from_secs(20), || async {
        let s = slices(&cp, "lb-portico");
        s.len() == 1 && s[0]["endpoints"].as_array().is_none_or(Vec::is_empty)
    })
    .await;
}
