//! Gateway API status on a real kube-apiserver with the standard CRDs of
//! sigs.k8s.io/gateway-api (tests/gateway/crds.sh): the leader's writer, run as Portico's
//! ServiceAccount (deploy/'s RBAC), writes GatewayClass, Gateway and HTTPRoute status, the
//! Gateway's address from Portico's own Service, keeps other controllers' route parents and
//! unchanged conditions' lastTransitionTime, and writes nothing when nothing changed.

mod support;

use std::time::{Duration, Instant};

use portico::config::gateway::StatusUpdate;
use portico::model::ObjectKey;
use portico::source::gateway_status::{Outcome, StatusWriter, write_round};
use portico::source::kube::KubeOptions;
use serde_json::{Value, json};
use support::cluster::ControlPlane;

const US: &str = "portico.dev/gateway-controller";
const GROUP: &str = "gateway.networking.k8s.io";
const OLD: &str = "2020-01-01T00:00:00Z";

/// Applies a manifest, retrying while the API server does not serve the new CRDs' kinds yet
/// (an Established CRD reaches discovery a moment later).
fn apply_when_served(cp: &ControlPlane, yaml: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cp.try_apply(yaml);
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            Instant::now() < deadline && err.contains("no matches for kind"),
            "kubectl apply failed: {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn condition(ty: &str, status: &str, reason: &str) -> Value {
    json!({"type": ty, "status": status, "reason": reason, "message": "", "observedGeneration": 1})
}

fn update(kind: &str, plural: &str, namespace: &str, name: &str, status: Value) -> StatusUpdate {
    StatusUpdate {
        group: GROUP.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        namespace: namespace.into(),
        name: name.into(),
        status,
        uid: String::new(),
    }
}

fn parent_ref() -> Value {
    json!({"group": GROUP, "kind": "Gateway", "name": "web"})
}

/// What compile would want for the class, the Gateway (one listener, `attached` routes) and the
/// route (accepted by the Gateway, its references `resolved` or not).
fn updates(attached: u32, resolved: bool) -> Vec<StatusUpdate> {
    let listener_conditions = json!([
        condition("Accepted", "True", "Accepted"),
        condition("Programmed", "True", "Programmed"),
        condition("ResolvedRefs", "True", "ResolvedRefs"),
        condition("Conflicted", "False", "NoConflicts"),
    ]);
    let refs = if resolved {
        condition("ResolvedRefs", "True", "ResolvedRefs")
    } else {
        condition("ResolvedRefs", "False", "BackendNotFound")
    };
    vec![
        update(
            "GatewayClass",
            "gatewayclasses",
            "",
            "portico",
            json!({"conditions": [condition("Accepted", "True", "Accepted")]}),
        ),
        update(
            "Gateway",
            "gateways",
            "gw",
            "web",
            json!({
                "conditions": [condition("Accepted", "True", "Accepted"), condition("Programmed", "True", "Programmed")],
                "listeners": [{
                    "name": "http",
                    "attachedRoutes": attached,
                    "supportedKinds": [{"group": GROUP, "kind": "HTTPRoute"}],
                    "conditions": listener_conditions,
                }],
            }),
        ),
        update(
            "HTTPRoute",
            "httproutes",
            "gw",
            "app",
            json!({"parents": [{
                "parentRef": parent_ref(),
                "controllerName": US,
                "conditions": [condition("Accepted", "True", "Accepted"), refs],
            }]}),
        ),
    ]
}

fn get(cp: &ControlPlane, kind: &str, name: &str) -> Value {
    let mut args = vec!["get", kind, name, "-o", "json"];
    if kind != "gatewayclass" {
        args.extend(["-n", "gw"]);
    }
    serde_json::from_str(&cp.ok(&args)).unwrap()
}

fn versions(cp: &ControlPlane) -> Vec<String> {
    ["gatewayclass", "gateway", "httproute"]
        .iter()
        .map(|k| {
            get(
                cp,
                k,
                if *k == "httproute" {
                    "app"
                } else if *k == "gateway" {
                    "web"
                } else {
                    "portico"
                },
            )["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The leader's writer, with the client and options it runs with.
struct Leader {
    writer: StatusWriter,
    client: kube::Client,
    opts: KubeOptions,
}

impl Leader {
    /// One round, and what it should have done.
    async fn round(&mut self, updates: &[StatusUpdate], expected: Outcome) {
        assert_eq!(
            write_round(&mut self.writer, &self.client, &self.opts, updates).await,
            expected
        );
    }
}

/// Nothing done (the rest of an expected `Outcome`).
const NONE: Outcome = Outcome {
    written: 0,
    unchanged: 0,
    remembered: 0,
    missing: 0,
    failed: 0,
    withdrawn: 0,
};

fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c[key] == value)
        .unwrap_or_else(|| panic!("no {key}={value} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_gateway_api_status_only_when_it_changed() {
    let cp = ControlPlane::start();
    support::gateway_api::install_crds(&cp).await;
    let kubeconfig = cp.install_portico();
    cp.ok(&["create", "namespace", "gw"]);
    // Portico's own Service: its external IP is the Gateway's address.
    cp.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: portico-lb, namespace: portico-system}\n\
         spec: {type: ClusterIP, externalIPs: [203.0.113.10], ports: [{name: http, port: 80}]}\n",
    );
    apply_when_served(
        &cp,
        &format!(
            "apiVersion: {GROUP}/v1\nkind: GatewayClass\nmetadata: {{name: portico}}\nspec: {{controllerName: {US}}}\n---\n\
             apiVersion: {GROUP}/v1\nkind: Gateway\nmetadata: {{name: web, namespace: gw}}\n\
             spec: {{gatewayClassName: portico, listeners: [{{name: http, port: 80, protocol: HTTP}}]}}\n---\n\
             apiVersion: {GROUP}/v1\nkind: HTTPRoute\nmetadata: {{name: app, namespace: gw}}\n\
             spec: {{parentRefs: [{{name: web}}], rules: [{{backendRefs: [{{name: svc, port: 80}}]}}]}}\n"
        ),
    );
    // Before Portico: another controller's parent entry, and one of ours from an earlier
    // leader (Accepted since 2020; its ResolvedRefs was False then).
    let foreign = json!({
        "parentRef": {"group": GROUP, "kind": "Gateway", "name": "theirs"},
        "controllerName": "example.com/other",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "lastTransitionTime": OLD}],
    });
    let earlier = json!({
        "parentRef": parent_ref(),
        "controllerName": US,
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "lastTransitionTime": OLD},
            {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound", "message": "", "lastTransitionTime": OLD},
        ],
    });
    cp.ok(&[
        "patch",
        "httproute",
        "app",
        "-n",
        "gw",
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": {"parents": [earlier, foreign]}}).to_string(),
    ]);
    let gateway_before = get(&cp, "gateway", "web");
    assert_eq!(
        find(&gateway_before["status"]["conditions"], "type", "Accepted")["status"],
        "Unknown",
        "the CRD's default status: {gateway_before}"
    );

    // The leader's round, as Portico's ServiceAccount.
    let client = ControlPlane::client_with(&kubeconfig).await;
    let opts = KubeOptions {
        publish_service: Some(ObjectKey::new("portico-system".to_string(), "portico-lb".to_string())),
        ..Default::default()
    };
    let mut leader = Leader {
        writer: StatusWriter::new(client.clone(), US),
        client: client.clone(),
        opts: opts.clone(),
    };
    leader.round(&updates(1, true), Outcome { written: 3, ..NONE }).await;

    let class = get(&cp, "gatewayclass", "portico");
    assert_eq!(
        find(&class["status"]["conditions"], "type", "Accepted")["status"],
        "True",
        "{class}"
    );
    let gateway = get(&cp, "gateway", "web");
    assert_eq!(
        gateway["status"]["addresses"],
        json!([{"type": "IPAddress", "value": "203.0.113.10"}]),
        "{gateway}"
    );
    let accepted = find(&gateway["status"]["conditions"], "type", "Accepted");
    assert_eq!(accepted["status"], "True");
    assert_ne!(
        accepted["lastTransitionTime"], "1970-01-01T00:00:00Z",
        "a changed condition gets the time of the change"
    );
    assert_eq!(gateway["status"]["listeners"][0]["attachedRoutes"], 1);
    let listed = cp.ok(&["get", "gateway", "-n", "gw"]);
    let line = listed.lines().find(|l| l.starts_with("web ")).unwrap_or_default();
    assert!(
        line.contains("203.0.113.10") && line.contains("True"),
        "kubectl get gateway shows the address:\n{listed}"
    );

    let route = get(&cp, "httproute", "app");
    let parents = &route["status"]["parents"];
    assert_eq!(parents.as_array().unwrap().len(), 2, "{route}");
    assert_eq!(parents[1], foreign, "another controller's entry stays as it was");
    let ours = &parents[0];
    assert_eq!(ours["controllerName"], US);
    assert_eq!(
        find(&ours["conditions"], "type", "Accepted")["lastTransitionTime"],
        OLD,
        "an unchanged condition keeps its lastTransitionTime"
    );
    let resolved = find(&ours["conditions"], "type", "ResolvedRefs");
    assert_eq!(resolved["status"], "True");
    assert_ne!(
        resolved["lastTransitionTime"], OLD,
        "a changed condition gets a new lastTransitionTime"
    );

    // The same status again: no request from this leader, no write from a new one.
    let before = versions(&cp);
    leader.round(&updates(1, true), Outcome { remembered: 3, ..NONE }).await;
    let mut new_leader = Leader {
        writer: StatusWriter::new(client.clone(), US),
        client,
        opts,
    };
    new_leader
        .round(&updates(1, true), Outcome { unchanged: 3, ..NONE })
        .await;
    assert_eq!(versions(&cp), before, "an unchanged status is not written");

    // A change to the Gateway's listener: only the Gateway is written, and its conditions keep
    // their times.
    leader
        .round(
            &updates(2, true),
            Outcome {
                written: 1,
                remembered: 2,
                ..NONE
            },
        )
        .await;
    let after = get(&cp, "gateway", "web");
    assert_eq!(after["status"]["listeners"][0]["attachedRoutes"], 2);
    assert_eq!(after["status"]["conditions"], gateway["status"]["conditions"]);
    assert_eq!(
        after["status"]["listeners"][0]["conditions"],
        gateway["status"]["listeners"][0]["conditions"]
    );

    // The route no longer listed (attached to none of our Gateways): our entry is taken out,
    // the other controller's stays.
    let mut detached = updates(2, true);
    detached.retain(|u| u.kind != "HTTPRoute");
    leader
        .round(
            &detached,
            Outcome {
                remembered: 2,
                withdrawn: 1,
                ..NONE
            },
        )
        .await;
    assert_eq!(get(&cp, "httproute", "app")["status"]["parents"], json!([foreign]));

    // A deleted route and a kind whose CRD is not installed are no errors, only missing.
    cp.ok(&["delete", "httproute", "app", "-n", "gw"]);
    cp.ok(&["delete", "crd", "grpcroutes.gateway.networking.k8s.io"]);
    let mut gone = updates(2, false);
    gone.push(update("GRPCRoute", "grpcroutes", "gw", "x", json!({"parents": []})));
    let missing = Outcome {
        remembered: 2,
        missing: 2,
        ..NONE
    };
    leader.round(&gone, missing).await;

    // A write the API server refuses (Portico's ServiceAccount may not write TCPRoute status)
    // is tried again after a wait that doubles; once it is no longer wanted, no more.
    let mut refused = gone.clone();
    refused.push(update("TCPRoute", "tcproutes", "gw", "x", json!({"parents": []})));
    let failing = Outcome { failed: 1, ..missing };
    assert_eq!(leader.writer.retry_after(), None);
    leader.round(&refused, failing).await;
    assert_eq!(leader.writer.retry_after(), Some(Duration::from_secs(5)));
    leader.round(&refused, failing).await;
    assert_eq!(leader.writer.retry_after(), Some(Duration::from_secs(10)));
    leader.round(&gone, missing).await;
    assert_eq!(leader.writer.retry_after(), None);

    // A route deleted and created again under the same name (as the conformance suite does
    // between two of its tests) before the next round: the same wanted status, but for
    // another object (another uid) that has none of it yet: written, not remembered.
    let route = |uid: &str| {
        let mut u = update(
            "HTTPRoute",
            "httproutes",
            "gw",
            "again",
            json!({"parents": [{
                "parentRef": parent_ref(),
                "controllerName": US,
                "conditions": [condition("Accepted", "True", "Accepted")],
            }]}),
        );
        u.uid = uid.into();
        vec![u]
    };
    let manifest = format!(
        "apiVersion: {GROUP}/v1\nkind: HTTPRoute\nmetadata: {{name: again, namespace: gw}}\n\
         spec: {{parentRefs: [{{name: web}}]}}\n"
    );
    let uid = |cp: &ControlPlane| {
        get(cp, "httproute", "again")["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let ours = |cp: &ControlPlane| {
        get(cp, "httproute", "again")["status"]["parents"]
            .as_array()
            .map_or(0, Vec::len)
    };
    cp.apply(&manifest);
    let first = uid(&cp);
    let mut writer = Leader {
        writer: StatusWriter::new(leader.client.clone(), US),
        client: leader.client.clone(),
        opts: leader.opts.clone(),
    };
    writer.round(&route(&first), Outcome { written: 1, ..NONE }).await;
    writer.round(&route(&first), Outcome { remembered: 1, ..NONE }).await;
    assert_eq!(ours(&cp), 1);
    cp.ok(&["delete", "httproute", "again", "-n", "gw"]);
    cp.apply(&manifest);
    let second = uid(&cp);
    assert_ne!(first, second);
    assert_eq!(ours(&cp), 0, "a new object has no status");
    writer.round(&route(&second), Outcome { written: 1, ..NONE }).await;
    assert_eq!(ours(&cp), 1, "the status is written to the new object");
}
