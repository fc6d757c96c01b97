//! The endpoints behind the Gateways' Services: Portico's own serving pods, as its
//! `--publish-service`'s EndpointSlices list them (watched here), written by the leader into
//! one EndpointSlice per address type for each Gateway's Service, at that Gateway's target
//! ports. A Gateway's Service lives in the Gateway's namespace and Portico's pods in
//! Portico's, so no selector can join them: these slices do, and kube-proxy reads them as it
//! reads any other.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::gateway::GatewayPort;
use crate::model::ObjectKey;

/// The Service an EndpointSlice serves, as kube-proxy and Portico read it.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Who manages a slice: the EndpointSlice controller leaves slices that name another alone.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Portico's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "gateway-services.portico.dev";
/// An EndpointSlice holds at most this many endpoints (the API's limit).
const MAX_ENDPOINTS: usize = 1000;

/// Portico's own serving endpoints by address type (`IPv4`, `IPv6`), each list sorted by
/// address: equal when the pods behind them are, whatever the order the slices came in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnEndpoints {
    by_type: BTreeMap<String, Vec<Value>>,
}

/// Portico's endpoints as its Service's slices are watched: `None` until they are first listed.
pub type Watched = watch::Receiver<Option<Arc<OwnEndpoints>>>;

impl OwnEndpoints {
    /// The endpoints of `slices` (those of Portico's own Service) that serve: ready ones, and
    /// terminating ones still serving (kube-proxy falls back to them when no pod is ready),
    /// with their conditions, node and zone (`externalTrafficPolicy: Local` needs the node).
    pub fn of<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> Self {
        let mut by_type: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for s in slices {
            if !matches!(s.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let list = by_type.entry(s.address_type.clone()).or_default();
            for e in &s.endpoints {
                let c = e.conditions.as_ref();
                let ready = c.and_then(|c| c.ready);
                let serving = c.and_then(|c| c.serving).or(ready).unwrap_or(true);
                let Some(first) = e.addresses.first() else { continue };
                if !serving || list.len() >= MAX_ENDPOINTS {
                    continue;
                }
                let kept = Endpoint {
                    addresses: e.addresses.clone(),
                    conditions: e.conditions.clone(),
                    node_name: e.node_name.clone(),
                    zone: e.zone.clone(),
                    target_ref: e.target_ref.clone(),
                    ..Endpoint::default()
                };
                // A pod moving between two slices may be listed twice for a moment.
                list.entry(first.clone())
                    .or_insert_with(|| serde_json::to_value(kept).unwrap_or(Value::Null));
            }
        }
        Self {
            by_type: by_type
                .into_iter()
                .map(|(t, eps)| (t, eps.into_values().filter(|v| !v.is_null()).collect()))
                .collect(),
        }
    }

    /// How many endpoints there are, of all address types.
    pub fn len(&self) -> usize {
        self.by_type.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Follows the EndpointSlices of Portico's own Service `own` for as long as a receiver is
/// left; errors are logged and the watch retried with backoff, the last endpoints staying.
pub fn watch_own(client: Client, own: ObjectKey) -> Watched {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let api: Api<EndpointSlice> = Api::namespaced(client, &own.namespace);
        let config = watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={}", own.name));
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        let mut slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
        let mut relist: BTreeMap<String, EndpointSlice> = BTreeMap::new();
        let mut failing = false;
        let name = |s: &EndpointSlice| s.metadata.name.clone().unwrap_or_default();
        while let Some(ev) = stream.next().await {
            match ev {
                Err(e) => {
                    if !failing {
                        tracing::warn!(service = %own, error = %e, "cannot watch the EndpointSlices of Portico's own Service; the Gateways' Services keep the endpoints they have");
                    }
                    failing = true;
                    continue;
                }
                Ok(Event::Init) => {
                    relist.clear();
                    continue;
                }
                Ok(Event::InitApply(s)) => {
                    relist.insert(name(&s), s);
                    continue;
                }
                Ok(Event::InitDone) => slices = std::mem::take(&mut relist),
                Ok(Event::Apply(s)) => {
                    slices.insert(name(&s), s);
                }
                Ok(Event::Delete(s)) => {
                    slices.remove(&name(&s));
                }
            }
            failing = false;
            let now = OwnEndpoints::of(slices.values());
            tx.send_if_modified(|cur| {
                if cur.as_deref() == Some(&now) {
                    return false;
                }
                tracing::info!(service = %own, endpoints = now.len(), "Portico's own endpoints changed");
                *cur = Some(Arc::new(now));
                true
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// A Gateway Service's EndpointSlices as server-side apply bodies, by name: one per address
/// type of `own` (an IPv4 one without endpoints when there are none), listing `own`'s
/// endpoints at the Service's ports' targets, under the port names the Service gives them.
/// `owner` is the Service's `metadata.uid` (its ownerReference, by which the garbage
/// collector removes the slices with the Service); `labels` mark them Portico's.
pub fn desired(
    service: &ObjectKey,
    owner: Option<&str>,
    labels: &BTreeMap<String, String>,
    ports: &[GatewayPort],
    own: &OwnEndpoints,
) -> Vec<(String, Value)> {
    let mut labels = labels.clone();
    labels.insert(SERVICE_NAME_LABEL.into(), service.name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({"name": port_name(p), "port": p.target, "protocol": "TCP"}))
        .collect();
    let empty = [("IPv4".to_string(), Vec::new())];
    let types: Vec<(&String, &Vec<Value>)> = if own.by_type.is_empty() {
        empty.iter().map(|(t, e)| (t, e)).collect()
    } else {
        own.by_type.iter().collect()
    };
    types
        .into_iter()
        .map(|(type_, endpoints)| {
            let name = format!("{}-{}", service.name, type_.to_ascii_lowercase());
            let mut metadata = json!({"name": name, "namespace": service.namespace, "labels": labels});
            if let Some(uid) = owner {
                metadata["ownerReferences"] = json!([{
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": service.name,
                    "uid": uid,
                    "controller": true,
                }]);
            }
            let body = json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": metadata,
                "addressType": type_,
                "endpoints": endpoints,
                "ports": ports,
            });
            (name, body)
        })
        .collect()
}

/// The name of a Gateway Service's port, which its slices' ports repeat (kube-proxy pairs
/// them by name).
pub fn port_name(p: &GatewayPort) -> String {
    format!("port-{}", p.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(type_: &str, endpoints: Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "s"},
            "addressType": type_,
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 80}],
        }))
        .unwrap()
    }

    #[test]
    fn serving_endpoints_are_kept_with_their_node_and_the_rest_left_out() {
        let a = slice(
            "IPv4",
            json!([
                {"addresses": ["10.244.0.9"], "conditions": {"ready": true}, "nodeName": "n1", "hostname": "x"},
                {"addresses": ["10.244.0.7"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.244.0.8"], "conditions": {"ready": false, "serving": false}},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": false}},
                {"addresses": ["10.244.0.5"]},
                {"addresses": []},
            ]),
        );
        let b = slice(
            "IPv6",
            json!([{"addresses": ["fd00::5"], "conditions": {"ready": true}}]),
        );
        let fqdn = slice("FQDN", json!([{"addresses": ["portico.example"]}]));
        let own = OwnEndpoints::of([&a, &b, &fqdn, &a]);
        assert_eq!(own.len(), 4);
        let v4 = &own.by_type["IPv4"];
        let addresses: Vec<&Value> = v4.iter().map(|e| &e["addresses"][0]).collect();
        assert_eq!(addresses, ["10.244.0.5", "10.244.0.7", "10.244.0.9"]);
        assert_eq!(v4[2]["nodeName"], "n1");
        assert!(v4[2].get("hostname").is_none());
        assert_eq!(v4[1]["conditions"]["terminating"], true);
        assert_eq!(own, OwnEndpoints::of([&b, &a]), "the order of slices does not matter");
    }

    #[test]
    fn slices_list_the_endpoints_at_the_targets_under_the_services_port_names() {
        let own = OwnEndpoints::of([&slice(
            "IPv4",
            json!([{"addresses": ["10.244.0.9"], "conditions": {"ready": true}}]),
        )]);
        let svc = ObjectKey::new("infra", "gw-portico");
        let ports = [GatewayPort {
            port: 80,
            target: 23456,
        }];
        let labels: BTreeMap<String, String> = [("portico.dev/x".to_string(), "y".to_string())].into();
        let out = desired(&svc, Some("uid-1"), &labels, &ports, &own);
        assert_eq!(out.len(), 1);
        let (name, body) = &out[0];
        assert_eq!(name, "gw-portico-ipv4");
        assert_eq!(body["metadata"]["namespace"], "infra");
        assert_eq!(body["metadata"]["labels"][SERVICE_NAME_LABEL], "gw-portico");
        assert_eq!(body["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(body["metadata"]["labels"]["portico.dev/x"], "y");
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(body["addressType"], "IPv4");
        assert_eq!(
            body["ports"],
            json!([{"name": "port-80", "port": 23456, "protocol": "TCP"}])
        );
        assert_eq!(body["endpoints"][0]["addresses"], json!(["10.244.0.9"]));

        let none = desired(&svc, None, &labels, &ports, &OwnEndpoints::default());
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].1["endpoints"], json!([]));
        assert!(none[0].1["metadata"].get("ownerReferences").is_none());
    }
}
