//! `--gateway-services`: the leader keeps one Service per Gateway of ours, in Portico's own
//! namespace (the `--publish-service`'s), selecting Portico's own pods, and gives each Gateway
//! that Service's address in `status.addresses`.
//!
//! One Deployment serves every Gateway (as Envoy Gateway and NGINX Gateway Fabric can): a
//! Gateway's Service maps each of its ports to the target port Portico's pods serve that
//! Gateway on (`compile::gateway::ports`). The Service lives in Portico's namespace, since a
//! selector reaches pods of its own namespace only; so it has no ownerReference to its
//! Gateway (owners cannot be in another namespace) and carries labels naming the Gateway
//! instead, by which the leader deletes the Services of Gateways that are gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Error};
use serde_json::{Value, json};

use super::gateway_status::{self, Outcome, StatusWriter, gateway_addresses};
use super::kube::{KubeOptions, service_entries};
use crate::config::Config;
use crate::config::gateway::{GatewayPort, GatewayService, Report};
use crate::model::ObjectKey;

/// Set on every Service made here, to the name of Portico's own Service (so that two Porticos
/// in one namespace keep apart): what the leader lists, and deletes when its Gateway is gone.
pub const MANAGED_LABEL: &str = "portico.dev/gateway-service";
/// The Gateway a Service serves: the Gateway API's own label for its name...
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// ... and Portico's for its namespace.
pub const GATEWAY_NAMESPACE_LABEL: &str = "portico.dev/gateway-namespace";
/// `NS/NAME` of the Gateway, also for names too long for a label value.
pub const GATEWAY_ANNOTATION: &str = "portico.dev/gateway";
/// The field manager of the Services' server-side applies.
const MANAGER: &str = "portico-gateway-services";

/// `--gateway-service-type`: the `spec.type` of the Gateways' Services.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    #[default]
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

impl std::str::FromStr for ServiceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [ServiceType::ClusterIP, ServiceType::NodePort, ServiceType::LoadBalancer]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("{s:?}: ClusterIP, NodePort or LoadBalancer"))
    }
}

/// The Service name of a Gateway: `gw-`, its namespace and name made a DNS label (cut to fit
/// 63 characters), and a hash of both, so that `a-b/c` and `a/b-c` differ.
pub fn service_name(gateway: &ObjectKey) -> String {
    let hash = fnv1a(format!("{}/{}", gateway.namespace, gateway.name).as_bytes());
    let mut readable: String = format!("{}-{}", gateway.namespace, gateway.name)
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(63 - "gw-".len() - "-".len() - 10)
        .collect();
    while readable.ends_with('-') {
        readable.pop();
    }
    format!("gw-{readable}-{:010x}", hash & 0xff_ffff_ffff)
}

/// FNV-1a, 64 bits: fixed across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What the Gateways' Services take from Portico's own Service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnSpec {
    /// Portico's pods.
    pub selector: BTreeMap<String, String>,
    /// `Local` keeps clients' addresses (for NodePort and LoadBalancer Services).
    pub external_traffic_policy: Option<String>,
}

impl OwnSpec {
    fn of(svc: Service) -> Option<Self> {
        let spec = svc.spec?;
        Some(Self {
            selector: spec.selector.filter(|s| !s.is_empty())?,
            external_traffic_policy: spec.external_traffic_policy,
        })
    }
}

/// The Service a Gateway gets, as a server-side apply body, beside Portico's own Service `own`.
pub fn desired(
    own: &ObjectKey,
    gateway: &ObjectKey,
    svc: &GatewayService,
    ports: &[GatewayPort],
    from_own: &OwnSpec,
    type_: ServiceType,
) -> Value {
    let mut labels = svc.labels.clone();
    // A Gateway name is a valid label value when it is short enough (a DNS subdomain).
    if gateway.name.len() <= 63 {
        labels.insert(GATEWAY_NAME_LABEL.into(), gateway.name.clone());
    } else {
        labels.remove(GATEWAY_NAME_LABEL);
    }
    labels.insert(GATEWAY_NAMESPACE_LABEL.into(), gateway.namespace.clone());
    labels.insert(MANAGED_LABEL.into(), own.name.clone());
    labels.insert("app.kubernetes.io/managed-by".into(), "portico".into());
    let mut annotations = svc.annotations.clone();
    annotations.insert(GATEWAY_ANNOTATION.into(), gateway.to_string());
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({"name": format!("port-{}", p.port), "port": p.port, "targetPort": p.target, "protocol": "TCP"}))
        .collect();
    let mut spec = json!({"type": type_.as_str(), "selector": from_own.selector, "ports": ports});
    if let Some(p) = &from_own.external_traffic_policy
        && type_ != ServiceType::ClusterIP
    {
        spec["externalTrafficPolicy"] = json!(p);
    }
    if !svc.external_ips.is_empty() {
        let ips: Vec<String> = svc.external_ips.iter().map(ToString::to_string).collect();
        spec["externalIPs"] = json!(ips);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(gateway),
            "namespace": own.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    })
}

/// What the leader last applied to one Service.
struct Applied {
    body: Value,
    /// The Gateway `status.addresses` it gave.
    addresses: Vec<Value>,
    /// A LoadBalancer without its load balancer's address yet: applied again next round.
    pending: bool,
}

/// The leader's keeper of the Gateways' Services; a new leader starts with a new one.
pub struct ServiceWriter {
    client: Client,
    /// Portico's own Service (`--publish-service`): its namespace, and what its Spec gives.
    own: ObjectKey,
    type_: ServiceType,
    from_own: Option<OwnSpec>,
    applied: HashMap<String, Applied>,
    failed_rounds: u32,
}

impl ServiceWriter {
    /// `None` without `--gateway-services`, or without a `--publish-service` to take the
    /// namespace and pod selector from (said once in the log).
    pub fn new(client: Client, opts: &KubeOptions, enabled: bool) -> Option<Self> {
        if !enabled {
            return None;
        }
        let Some(own) = opts.publish_service.clone() else {
            tracing::warn!(
                "--gateway-services needs --publish-service (Portico's own Service): no Service per Gateway is made"
            );
            return None;
        };
        Some(Self {
            client,
            own,
            type_: opts.gateway_service_type,
            from_own: None,
            applied: HashMap::new(),
            failed_rounds: 0,
        })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        gateway_status::backoff(self.failed_rounds)
    }

    /// Brings the Services to what `report` asks for; returns the `status.addresses` of each
    /// Gateway whose Service is known (empty for one that gets none), leaving out those
    /// whose Service could not be written (they keep the addresses they have).
    pub async fn reconcile(&mut self, report: &Report) -> HashMap<ObjectKey, Vec<Value>> {
        let mut out = HashMap::new();
        let mut failures: Vec<String> = Vec::new();
        let mut pending = false;
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.own.namespace);
        if self.from_own.is_none() {
            match api.get(&self.own.name).await {
                Ok(s) => {
                    self.from_own = OwnSpec::of(s);
                    if self.from_own.is_none() {
                        failures.push(format!("{} has no selector", self.own));
                    }
                }
                Err(e) => failures.push(format!("reading {}: {e}", self.own)),
            }
        }
        // Without it nothing is applied, and nothing deleted either: every Gateway keeps its
        // Service and its addresses until the next round.
        let Some(from_own) = self.from_own.clone() else {
            self.end_round(&failures, false);
            return out;
        };
        let mut wanted: BTreeMap<String, (ObjectKey, Value)> = BTreeMap::new();
        for gw in &report.gateways {
            match &gw.service {
                Some(svc) if !gw.ports.is_empty() => {
                    let body = desired(&self.own, &gw.key, svc, &gw.ports, &from_own, self.type_);
                    wanted.insert(service_name(&gw.key), (gw.key.clone(), body));
                }
                _ => {
                    out.insert(gw.key.clone(), Vec::new());
                }
            }
        }
        // Our Services as they are: one that someone deleted is made again, and those of
        // Gateways that are gone (also while no leader ran) are deleted.
        let lp = ListParams::default().labels(&format!("{MANAGED_LABEL}={}", self.own.name));
        let live: Option<BTreeSet<String>> = match api.list_metadata(&lp).await {
            Ok(list) => Some(list.items.into_iter().filter_map(|s| s.metadata.name).collect()),
            Err(e) => {
                failures.push(format!("listing Services labelled {MANAGED_LABEL}: {e}"));
                None
            }
        };
        let params = PatchParams::apply(MANAGER).force();
        for (name, (key, body)) in &wanted {
            if let Some(a) = self.applied.get(name)
                && &a.body == body
                && !a.pending
                && live.as_ref().is_none_or(|l| l.contains(name))
            {
                out.insert(key.clone(), a.addresses.clone());
                continue;
            }
            match api.patch(name, &params, &Patch::Apply(body)).await {
                Ok(svc) => {
                    let waiting = self.type_ == ServiceType::LoadBalancer && !has_load_balancer(&svc);
                    pending |= waiting;
                    let addresses = gateway_addresses(&service_entries(&svc));
                    out.insert(key.clone(), addresses.clone());
                    self.applied.insert(
                        name.clone(),
                        Applied {
                            body: body.clone(),
                            addresses,
                            pending: waiting,
                        },
                    );
                }
                Err(e) => {
                    failures.push(format!("{name} (Gateway {key}): {e}"));
                    self.applied.remove(name);
                }
            }
        }
        let gone: Vec<String> = live
            .iter()
            .flatten()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(service = %name, namespace = %self.own.namespace, "deleted the Service of a Gateway that is gone");
                }
                Err(Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    failures.push(format!("deleting {name}: {e}"));
                    continue;
                }
            }
            self.applied.remove(&name);
        }
        self.end_round(&failures, pending);
        out
    }

    /// Counts a round with failures (or a load balancer's address still to come) towards the
    /// backoff, and says what failed first.
    fn end_round(&mut self, failures: &[String], pending: bool) {
        self.failed_rounds = if failures.is_empty() && !pending {
            0
        } else {
            self.failed_rounds.saturating_add(1)
        };
        if let Some(first) = failures.first() {
            tracing::warn!(failures = failures.len(), first = %first, "cannot bring the Gateways' Services up to date; retried with the next config or after a backoff");
        }
    }
}

fn has_load_balancer(svc: &Service) -> bool {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .is_some_and(|i| !i.is_empty())
}

/// When the leader's Gateway API work is to be done again: the sooner of the two writers'.
pub fn retry_after(status: &StatusWriter, services: &Option<ServiceWriter>) -> Option<Duration> {
    let s = services.as_ref().and_then(ServiceWriter::retry_after);
    match (status.retry_after(), s) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One leader round of the Gateway API: the Services first (with `--gateway-services`), whose
/// addresses go into the Gateways' status, then the status; without, status as
/// `gateway_status::write_round` writes it.
pub async fn round(
    services: &mut Option<ServiceWriter>,
    status: &mut StatusWriter,
    client: &Client,
    opts: &KubeOptions,
    cfg: &Config,
) -> Outcome {
    let mut updates = gateway_status::updates(cfg);
    let Some(services) = services else {
        return gateway_status::write_round(status, client, opts, &updates).await;
    };
    let addresses = services.reconcile(&cfg.gateway).await;
    for u in updates.iter_mut().filter(|u| u.kind == "Gateway") {
        let key = ObjectKey::new(u.namespace.clone(), u.name.clone());
        if let (Some(a), Some(s)) = (addresses.get(&key), u.status.as_object_mut()) {
            s.insert("addresses".into(), Value::Array(a.clone()));
        }
    }
    status.write(&updates, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_distinct_and_stable() {
        let a = service_name(&ObjectKey::new("gateway-conformance-infra", "same-namespace"));
        assert!(a.starts_with("gw-gateway-conformance-infra-same-namespace-"), "{a}");
        assert_eq!(
            a,
            service_name(&ObjectKey::new("gateway-conformance-infra", "same-namespace"))
        );
        assert_ne!(
            service_name(&ObjectKey::new("a-b", "c")),
            service_name(&ObjectKey::new("a", "b-c"))
        );
        let long = service_name(&ObjectKey::new("n".repeat(63), format!("{}.example", "x".repeat(240))));
        let dotted = service_name(&ObjectKey::new("0ns", "gw.v2"));
        for n in [&a, &long, &dotted] {
            assert!(n.len() <= 63, "{n}");
            assert!(n.starts_with(|c: char| c.is_ascii_lowercase()), "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(!n.contains("--"), "{n}");
        }
        assert!(dotted.starts_with("gw-0ns-gw-v2-"), "{dotted}");
    }

    #[test]
    fn the_service_maps_ports_to_targets_and_carries_the_gateways_metadata() {
        let key = ObjectKey::new("infra", "gw");
        let svc = GatewayService {
            labels: [("key2".into(), "value2".into()), (MANAGED_LABEL.into(), "no".into())].into(),
            annotations: [("key1".into(), "value1".into())].into(),
            external_ips: vec!["198.51.100.20".parse().unwrap()],
        };
        let ports = [
            GatewayPort {
                port: 80,
                target: 23456,
            },
            GatewayPort {
                port: 443,
                target: 21000,
            },
        ];
        let mut sel = OwnSpec {
            selector: [("app".into(), "portico".into())].into(),
            external_traffic_policy: Some("Local".into()),
        };
        let own = ObjectKey::new("portico-system", "portico");
        let body = desired(&own, &key, &svc, &ports, &sel, ServiceType::ClusterIP);
        assert_eq!(body["metadata"]["namespace"], "portico-system");
        assert_eq!(body["metadata"]["labels"]["key2"], "value2");
        assert_eq!(body["metadata"]["labels"][MANAGED_LABEL], "portico", "ours win");
        assert_eq!(body["metadata"]["labels"][GATEWAY_NAME_LABEL], "gw");
        assert_eq!(body["metadata"]["labels"][GATEWAY_NAMESPACE_LABEL], "infra");
        assert_eq!(body["metadata"]["annotations"]["key1"], "value1");
        assert_eq!(body["metadata"]["annotations"][GATEWAY_ANNOTATION], "infra/gw");
        assert_eq!(
            body["spec"],
            json!({"type": "ClusterIP", "selector": {"app": "portico"}, "externalIPs": ["198.51.100.20"], "ports": [
                {"name": "port-80", "port": 80, "targetPort": 23456, "protocol": "TCP"},
                {"name": "port-443", "port": 443, "targetPort": 21000, "protocol": "TCP"},
            ]})
        );
        let plain = GatewayService::default();
        let body = desired(&own, &key, &plain, &ports, &sel, ServiceType::LoadBalancer);
        assert!(body["spec"].get("externalIPs").is_none());
        assert_eq!(body["spec"]["type"], "LoadBalancer");
        assert_eq!(
            body["spec"]["externalTrafficPolicy"], "Local",
            "clients' addresses kept"
        );
        sel.external_traffic_policy = None;
        let body = desired(&own, &key, &plain, &ports, &sel, ServiceType::NodePort);
        assert!(body["spec"].get("externalTrafficPolicy").is_none());
    }

    #[test]
    fn a_gateways_address_is_the_load_balancers_else_external_ips_else_the_cluster_ip() {
        let mut svc: Service = serde_json::from_value(json!({
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10"]},
        }))
        .unwrap();
        let addresses = |s: &Service| gateway_addresses(&service_entries(s));
        assert_eq!(
            addresses(&svc),
            [
                json!({"type": "IPAddress", "value": "10.96.0.10"}),
                json!({"type": "IPAddress", "value": "fd00::10"}),
            ]
        );
        assert!(!has_load_balancer(&svc));
        svc.spec.as_mut().unwrap().external_ips = Some(vec!["198.51.100.20".into()]);
        assert_eq!(
            addresses(&svc),
            [json!({"type": "IPAddress", "value": "198.51.100.20"})]
        );
        svc.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [
            {"ip": "203.0.113.5"}, {"hostname": "lb.example.com"},
        ]}}))
        .unwrap();
        assert!(has_load_balancer(&svc));
        assert_eq!(
            addresses(&svc),
            [
                json!({"type": "IPAddress", "value": "203.0.113.5"}),
                json!({"type": "Hostname", "value": "lb.example.com"}),
            ]
        );
    }

    #[test]
    fn service_types_parse_case_insensitively() {
        assert_eq!("clusterip".parse(), Ok(ServiceType::ClusterIP));
        assert_eq!("NodePort".parse(), Ok(ServiceType::NodePort));
        assert!("ExternalName".parse::<ServiceType>().is_err());
    }
}
