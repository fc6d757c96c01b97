//! `--gateway-services`: the leader keeps one Service per Gateway of ours, in the Gateway's
//! own namespace, and gives the Gateway that Service's address in `status.addresses`.
//!
//! One Deployment serves every Gateway (as Envoy Gateway and NGINX Gateway Fabric can): a
//! Gateway's Service maps each of its ports to the target port Portico's pods serve that
//! Gateway on (`compile::gateway::ports`). The Service sits next to its Gateway (owned by it,
//! so the garbage collector removes it with the Gateway, and labelled with the Gateway's
//! name, where users and the conformance suite look for a Gateway's infrastructure). A
//! selector cannot reach Portico's pods from there, so the Service has none and the leader
//! writes its EndpointSlices (`gateway_endpoints`).
//!
//! A Service is Portico's when it carries [`OWNER_LABEL`] with this Portico's value
//! ([`instance`]): a Service of that name that does not is someone else's and is left alone,
//! its Gateway `Programmed=False AddressNotAssigned`. Services of the earlier layout (one per
//! Gateway in Portico's own namespace, selecting its pods) are deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::{Client, Error, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::gateway_endpoints::{self, OwnEndpoints, Watched};
use super::gateway_status::{self, Outcome, StatusWriter, gateway_addresses};
use super::kube::{KubeOptions, service_entries};
use crate::config::Config;
#[cfg(test)]
use crate::config::gateway::GatewayPort;
use crate::config::gateway::{GatewayReport, Report};
use crate::model::ObjectKey;

/// Set on every Service and EndpointSlice made here, to [`instance`] (so that two Porticos
/// keep apart): what the leader lists, and deletes when its Gateway is gone.
pub const OWNER_LABEL: &str = "portico.dev/gateway-service-of";
/// The Gateway a Service serves: the Gateway API's own label for its name.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// `NS/NAME` of the Gateway, also for names too long for a label value.
pub const GATEWAY_ANNOTATION: &str = "portico.dev/gateway";
/// The label of the earlier layout's Services (in Portico's namespace, valued with the name
/// of Portico's own Service): only ever deleted now.
pub const OLD_LAYOUT_LABEL: &str = "portico.dev/gateway-service";
/// The field manager of the Services' and slices' server-side applies.
const MANAGER: &str = "portico-gateway-services";
/// The `Programmed` reason of a Gateway whose Service's name is taken.
const ADDRESS_NOT_ASSIGNED: &str = "AddressNotAssigned";

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

/// The Service name of a Gateway: its name and `-portico` when that makes a DNS label
/// starting with a letter (as Services need), else its name made one (cut to fit), a hash of
/// the name, and `-portico`. Gateways' names are unique in their namespace, so are these.
pub fn service_name(gateway: &str) -> String {
    const SUFFIX: &str = "-portico";
    let plain = gateway.len() + SUFFIX.len() <= 63
        && gateway.starts_with(|c: char| c.is_ascii_lowercase())
        && gateway
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if plain {
        return format!("{gateway}{SUFFIX}");
    }
    let mut readable: String = gateway
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(63 - "gw-".len() - "-".len() - 8 - SUFFIX.len())
        .collect();
    while readable.ends_with('-') {
        readable.pop();
    }
    let readable = readable.trim_start_matches('-');
    let hash = fnv1a(gateway.as_bytes()) & 0xffff_ffff;
    match readable.is_empty() {
        true => format!("gw-{hash:08x}{SUFFIX}"),
        false => format!("gw-{readable}-{hash:08x}{SUFFIX}"),
    }
}

/// This Portico's value of [`OWNER_LABEL`]: its own Service's `NAMESPACE.NAME` (a valid label
/// value, as both are DNS labels), or a hash of it when that is longer than a label value.
pub fn instance(own: &ObjectKey) -> String {
    let plain = format!("{}.{}", own.namespace, own.name);
    if plain.len() <= 63 {
        return plain;
    }
    format!("h-{:016x}", fnv1a(plain.as_bytes()))
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
    /// `Local` keeps clients' addresses (for NodePort and LoadBalancer Services).
    pub external_traffic_policy: Option<String>,
}

impl OwnSpec {
    fn of(svc: Service) -> Self {
        Self {
            external_traffic_policy: svc.spec.and_then(|s| s.external_traffic_policy),
        }
    }
}

/// The Service the Gateway `gw` gets, as a server-side apply body, for the Portico whose
/// [`instance`] is `instance`.
pub fn desired(instance: &str, gw: &GatewayReport, from_own: &OwnSpec, type_: ServiceType) -> Option<Value> {
    let svc = gw.service.as_ref()?;
    let gateway = &gw.key;
    let mut labels = svc.labels.clone();
    // A Gateway name is a valid label value when it is short enough (a DNS subdomain).
    if gateway.name.len() <= 63 {
        labels.insert(GATEWAY_NAME_LABEL.into(), gateway.name.clone());
    } else {
        labels.remove(GATEWAY_NAME_LABEL);
    }
    labels.insert(OWNER_LABEL.into(), instance.into());
    labels.insert("app.kubernetes.io/managed-by".into(), "portico".into());
    let mut annotations = svc.annotations.clone();
    annotations.insert(GATEWAY_ANNOTATION.into(), gateway.to_string());
    let ports: Vec<Value> = gw
        .ports
        .iter()
        .map(|p| {
            json!({"name": gateway_endpoints::port_name(p), "port": p.port, "targetPort": p.target, "protocol": "TCP"})
        })
        .collect();
    // No selector: the endpoints are the leader's EndpointSlices.
    let mut spec = json!({"type": type_.as_str(), "ports": ports});
    if let Some(p) = &from_own.external_traffic_policy
        && type_ != ServiceType::ClusterIP
    {
        spec["externalTrafficPolicy"] = json!(p);
    }
    if !svc.external_ips.is_empty() {
        let ips: Vec<String> = svc.external_ips.iter().map(ToString::to_string).collect();
        spec["externalIPs"] = json!(ips);
    }
    let mut metadata = json!({
        "name": service_name(&gateway.name),
        "namespace": gateway.namespace,
        "labels": labels,
        "annotations": annotations,
    });
    // Without a uid (manifests mode) there is no owner to name.
    if !gw.uid.is_empty() {
        metadata["ownerReferences"] = json!([{
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "name": gateway.name,
            "uid": gw.uid,
            "controller": true,
        }]);
    }
    Some(json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}))
}

/// What a Gateway's status gets from its Service.
#[derive(Clone, Debug, PartialEq)]
pub enum Published {
    /// `status.addresses` (empty for a Gateway that gets no Service).
    Addresses(Vec<Value>),
    /// The Service's name is taken by a Service that is not Portico's: why, for `Programmed`.
    Taken(String),
}

/// What the leader last applied to one Service.
struct Applied {
    body: Value,
    /// The Gateway `status.addresses` it gave.
    addresses: Vec<Value>,
    /// A LoadBalancer without its load balancer's address yet: applied again next round.
    pending: bool,
    /// Its `metadata.uid`, the owner of its EndpointSlices.
    uid: Option<String>,
}

/// The leader's keeper of the Gateways' Services and their EndpointSlices; a new leader
/// starts with a new one.
pub struct ServiceWriter {
    client: Client,
    /// Portico's own Service (`--publish-service`): what its Spec gives, and its endpoints.
    own: ObjectKey,
    /// [`instance`] of `own`.
    instance: String,
    type_: ServiceType,
    from_own: Option<OwnSpec>,
    endpoints: Watched,
    /// By the Service's namespace and name.
    applied: HashMap<ObjectKey, Applied>,
    /// EndpointSlices applied, by namespace and name.
    slices: HashMap<ObjectKey, Value>,
    /// No Service of the earlier layout is left.
    old_layout_gone: bool,
    failed_rounds: u32,
}

impl ServiceWriter {
    /// `None` without `--gateway-services` or without a `--publish-service` (whose endpoints
    /// `endpoints` follows) to take the pods from (said once in the log).
    pub fn new(client: Client, opts: &KubeOptions, endpoints: Option<Watched>) -> Option<Self> {
        let endpoints = endpoints?;
        let own = opts.publish_service.clone()?;
        Some(Self {
            client,
            instance: instance(&own),
            own,
            type_: opts.gateway_service_type,
            from_own: None,
            endpoints,
            applied: HashMap::new(),
            slices: HashMap::new(),
            old_layout_gone: false,
            failed_rounds: 0,
        })
    }

    /// The watch of Portico's own endpoints that [`ServiceWriter::new`] needs: `None` without
    /// `--gateway-services` or without `--publish-service` (said in the log).
    pub fn watch_endpoints(client: &Client, opts: &KubeOptions, enabled: bool) -> Option<Watched> {
        if !enabled {
            return None;
        }
        let Some(own) = opts.publish_service.clone() else {
            tracing::warn!(
                "--gateway-services needs --publish-service (Portico's own Service): no Service per Gateway is made"
            );
            return None;
        };
        Some(gateway_endpoints::watch_own(client.clone(), own))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        gateway_status::backoff(self.failed_rounds)
    }

    /// Brings the Services and their EndpointSlices to what `report` asks for; returns what
    /// the status of each Gateway whose Service is known gets from it, leaving out those
    /// whose Service could not be written (they keep the addresses they have).
    pub async fn reconcile(&mut self, report: &Report) -> HashMap<ObjectKey, Published> {
        let mut out = HashMap::new();
        let mut failures: Vec<String> = Vec::new();
        let mut pending = false;
        if self.from_own.is_none() {
            let api: Api<Service> = Api::namespaced(self.client.clone(), &self.own.namespace);
            match api.get(&self.own.name).await {
                Ok(s) => self.from_own = Some(OwnSpec::of(s)),
                Err(e) => failures.push(format!("reading {}: {e}", self.own)),
            }
        }
        // Without it nothing is applied, and nothing deleted either: every Gateway keeps its
        // Service and its addresses until the next round.
        let Some(from_own) = self.from_own.clone() else {
            self.end_round(&failures, false);
            return out;
        };
        if !self.old_layout_gone {
            self.old_layout_gone = self.delete_old_layout(&mut failures).await;
        }
        let mut wanted: BTreeMap<ObjectKey, (&GatewayReport, Value)> = BTreeMap::new();
        for gw in &report.gateways {
            match desired(&self.instance, gw, &from_own, self.type_) {
                Some(body) if !gw.ports.is_empty() => {
                    let name = ObjectKey::new(gw.key.namespace.clone(), service_name(&gw.key.name));
                    wanted.insert(name, (gw, body));
                }
                _ => {
                    out.insert(gw.key.clone(), Published::Addresses(Vec::new()));
                }
            }
        }
        // Our Services as they are: one that someone deleted is made again, and those of
        // Gateways that are gone (also while no leader ran) are deleted.
        let live = self.list_ours::<Service>(&mut failures).await;
        // Services whose slices stay as they are this round (their Service failed).
        let mut unsettled: BTreeSet<ObjectKey> = BTreeSet::new();
        let params = PatchParams::apply(MANAGER).force();
        for (name, (gw, body)) in &wanted {
            let known = live
                .as_ref()
                .map_or_else(|| self.applied.contains_key(name), |l| l.contains_key(name));
            if known
                && let Some(a) = self.applied.get(name)
                && &a.body == body
                && !a.pending
            {
                out.insert(gw.key.clone(), Published::Addresses(a.addresses.clone()));
                continue;
            }
            let api: Api<Service> = Api::namespaced(self.client.clone(), &name.namespace);
            // A name not among ours is looked at first. (A Service someone creates between this
            // read and the apply below would be taken over; a create would close that gap but
            // leave its fields owned by a second manager entry, which later applies could not
            // take away, so stale labels would stay.)
            if !known {
                match api.get_metadata_opt(&name.name).await {
                    Ok(Some(m)) if !self.is_ours(&m.metadata) => {
                        let why = format!(
                            "Service {name} exists and is not Portico's (no label {OWNER_LABEL}={}): it is left alone, and the Gateway has no Service of its own until it is gone",
                            self.instance
                        );
                        failures.push(format!("Gateway {}: {why}", gw.key));
                        out.insert(gw.key.clone(), Published::Taken(why));
                        self.applied.remove(name);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failures.push(format!("reading {name} (Gateway {}): {e}", gw.key));
                        unsettled.insert(name.clone());
                        continue;
                    }
                }
            }
            match api.patch(&name.name, &params, &Patch::Apply(body)).await {
                Ok(svc) => {
                    let waiting = self.type_ == ServiceType::LoadBalancer && !has_load_balancer(&svc);
                    pending |= waiting;
                    let addresses = gateway_addresses(&service_entries(&svc));
                    out.insert(gw.key.clone(), Published::Addresses(addresses.clone()));
                    let applied = Applied {
                        body: body.clone(),
                        addresses,
                        pending: waiting,
                        uid: svc.metadata.uid,
                    };
                    self.applied.insert(name.clone(), applied);
                }
                Err(e) => {
                    failures.push(format!("{name} (Gateway {}): {e}", gw.key));
                    self.applied.remove(name);
                    unsettled.insert(name.clone());
                }
            }
        }
        let gone: Vec<ObjectKey> = live
            .iter()
            .flat_map(BTreeMap::keys)
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            let api: Api<Service> = Api::namespaced(self.client.clone(), &name.namespace);
            match api.delete(&name.name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(service = %name, "deleted the Service of a Gateway that is gone"),
                Err(Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    failures.push(format!("deleting {name}: {e}"));
                    unsettled.insert(name);
                    continue;
                }
            }
            self.applied.remove(&name);
        }
        self.write_slices(&wanted, &unsettled, &mut failures).await;
        self.end_round(&failures, pending);
        out
    }

    /// Each applied Service's EndpointSlices brought to Portico's endpoints, and ours that
    /// no Service needs deleted (except those of `unsettled` Services). Nothing is done
    /// before Portico's own endpoints have been listed once.
    async fn write_slices(
        &mut self,
        wanted: &BTreeMap<ObjectKey, (&GatewayReport, Value)>,
        unsettled: &BTreeSet<ObjectKey>,
        failures: &mut Vec<String>,
    ) {
        let Some(own): Option<std::sync::Arc<OwnEndpoints>> = self.endpoints.borrow().clone() else {
            return;
        };
        let labels: BTreeMap<String, String> = [(OWNER_LABEL.to_string(), self.instance.clone())].into();
        let mut want: BTreeMap<ObjectKey, Value> = BTreeMap::new();
        for (svc, (gw, _)) in wanted {
            let Some(a) = self.applied.get(svc) else { continue };
            for (name, body) in gateway_endpoints::desired(svc, a.uid.as_deref(), &labels, &gw.ports, &own) {
                want.insert(ObjectKey::new(svc.namespace.clone(), name), body);
            }
        }
        let live = self.list_ours::<EndpointSlice>(failures).await;
        let params = PatchParams::apply(MANAGER).force();
        for (name, body) in &want {
            let known = live.as_ref().is_none_or(|l| l.contains_key(name));
            if known && self.slices.get(name) == Some(body) {
                continue;
            }
            let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &name.namespace);
            match api.patch(&name.name, &params, &Patch::Apply(body)).await {
                Ok(_) => {
                    self.slices.insert(name.clone(), body.clone());
                }
                Err(e) => {
                    failures.push(format!("EndpointSlice {name}: {e}"));
                    self.slices.remove(name);
                }
            }
        }
        for (name, labels) in live.iter().flatten() {
            let service = labels
                .get(gateway_endpoints::SERVICE_NAME_LABEL)
                .map(|s| ObjectKey::new(name.namespace.clone(), s.clone()));
            if want.contains_key(name) || service.is_some_and(|s| unsettled.contains(&s)) {
                continue;
            }
            let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &name.namespace);
            match api.delete(&name.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    failures.push(format!("deleting EndpointSlice {name}: {e}"));
                    continue;
                }
            }
            self.slices.remove(name);
        }
    }

    /// The objects of kind `K` labelled ours, in every namespace, with their labels (`None`
    /// when they cannot be listed).
    async fn list_ours<K>(&self, failures: &mut Vec<String>) -> Option<BTreeMap<ObjectKey, BTreeMap<String, String>>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let lp = ListParams::default().labels(&format!("{OWNER_LABEL}={}", self.instance));
        match api.list_metadata(&lp).await {
            Ok(list) => Some(list.items.into_iter().filter_map(keyed).collect()),
            Err(e) => {
                failures.push(format!("listing {} labelled {OWNER_LABEL}: {e}", K::kind(&())));
                None
            }
        }
    }

    fn is_ours(&self, meta: &ObjectMeta) -> bool {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(OWNER_LABEL))
            .is_some_and(|v| *v == self.instance)
    }

    /// Deletes the Services of the earlier layout (in Portico's namespace, labelled
    /// [`OLD_LAYOUT_LABEL`] with the name of Portico's own Service); true when none is left.
    async fn delete_old_layout(&self, failures: &mut Vec<String>) -> bool {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.own.namespace);
        let lp = ListParams::default().labels(&format!("{OLD_LAYOUT_LABEL}={}", self.own.name));
        let list = match api.list_metadata(&lp).await {
            Ok(l) => l,
            Err(e) => {
                failures.push(format!("listing Services labelled {OLD_LAYOUT_LABEL}: {e}"));
                return false;
            }
        };
        let mut all_gone = true;
        for name in list.items.into_iter().filter_map(|m| m.metadata.name) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(service = %name, namespace = %self.own.namespace, "deleted a Gateway Service of the earlier layout (in Portico's namespace)");
                }
                Err(Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    failures.push(format!("deleting {}/{name}: {e}", self.own.namespace));
                    all_gone = false;
                }
            }
        }
        all_gone
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

fn keyed<K>(m: PartialObjectMeta<K>) -> Option<(ObjectKey, BTreeMap<String, String>)> {
    let meta = m.metadata;
    let key = ObjectKey::new(meta.namespace?, meta.name?);
    Some((key, meta.labels.unwrap_or_default()))
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
    let published = services.reconcile(&cfg.gateway).await;
    for u in updates.iter_mut().filter(|u| u.kind == "Gateway") {
        let key = ObjectKey::new(u.namespace.clone(), u.name.clone());
        let (Some(p), Some(s)) = (published.get(&key), u.status.as_object_mut()) else {
            continue;
        };
        match p {
            Published::Addresses(a) => {
                s.insert("addresses".into(), Value::Array(a.clone()));
            }
            Published::Taken(why) => {
                s.insert("addresses".into(), Value::Array(Vec::new()));
                not_programmed(s, why);
            }
        }
    }
    status.write(&updates, None).await
}

/// Turns a Gateway status's `Programmed` condition False, [`ADDRESS_NOT_ASSIGNED`], for `why`.
fn not_programmed(status: &mut serde_json::Map<String, Value>, why: &str) {
    let conditions = status.get_mut("conditions").and_then(Value::as_array_mut);
    for c in conditions.into_iter().flatten() {
        if c["type"] == "Programmed" {
            c["status"] = json!("False");
            c["reason"] = json!(ADDRESS_NOT_ASSIGNED);
            c["message"] = json!(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::gateway::GatewayService;

    #[test]
    fn names_are_the_gateways_where_they_can_be_else_dns_labels_distinct_and_stable() {
        assert_eq!(service_name("same-namespace"), "same-namespace-portico");
        let long = service_name(&format!("{}.example", "x".repeat(240)));
        let dotted = service_name("gw.v2");
        let digit = service_name("0gw");
        let edge = service_name(&"a".repeat(55));
        for n in [&long, &dotted, &digit, &edge] {
            assert!(n.len() <= 63, "{n}");
            assert!(n.starts_with(|c: char| c.is_ascii_lowercase()), "{n}");
            assert!(n.ends_with("-portico"), "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(!n.contains("--"), "{n}");
        }
        assert!(dotted.starts_with("gw-gw-v2-"), "{dotted}");
        assert_ne!(dotted, service_name("gw-v2"));
        assert_eq!(dotted, service_name("gw.v2"));
        assert_eq!(edge, format!("{}-portico", "a".repeat(55)));
        assert_ne!(service_name(&"a".repeat(56)), service_name(&"a".repeat(57)));
    }

    #[test]
    fn the_instance_is_the_own_services_namespace_and_name_or_a_hash() {
        assert_eq!(
            instance(&ObjectKey::new("portico-system", "portico")),
            "portico-system.portico"
        );
        let long = instance(&ObjectKey::new("n".repeat(40), "s".repeat(40)));
        assert!(long.starts_with("h-") && long.len() == 18, "{long}");
    }

    fn report(svc: GatewayService, uid: &str) -> GatewayReport {
        GatewayReport {
            key: ObjectKey::new("infra", "gw"),
            generation: 1,
            conditions: Vec::new(),
            listeners: Vec::new(),
            ports: vec![
                GatewayPort {
                    port: 80,
                    target: 23456,
                },
                GatewayPort {
                    port: 443,
                    target: 21000,
                },
            ],
            uid: uid.into(),
            attached_listener_sets: 0,
            service: Some(svc),
        }
    }

    #[test]
    fn the_service_sits_beside_its_gateway_maps_ports_to_targets_and_carries_its_metadata() {
        let svc = GatewayService {
            labels: [("key2".into(), "value2".into()), (OWNER_LABEL.into(), "no".into())].into(),
            annotations: [("key1".into(), "value1".into())].into(),
            external_ips: vec!["198.51.100.20".parse().unwrap()],
        };
        let mut own = OwnSpec {
            external_traffic_policy: Some("Local".into()),
        };
        let me = "portico-system.portico";
        let body = desired(me, &report(svc, "u-1"), &own, ServiceType::ClusterIP).unwrap();
        let meta = &body["metadata"];
        assert_eq!(meta["name"], "gw-portico");
        assert_eq!(meta["namespace"], "infra");
        assert_eq!(meta["labels"]["key2"], "value2");
        assert_eq!(meta["labels"][OWNER_LABEL], me, "ours win");
        assert_eq!(meta["labels"][GATEWAY_NAME_LABEL], "gw");
        assert_eq!(meta["annotations"]["key1"], "value1");
        assert_eq!(meta["annotations"][GATEWAY_ANNOTATION], "infra/gw");
        assert_eq!(
            meta["ownerReferences"],
            json!([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "gw", "uid": "u-1", "controller": true}])
        );
        assert_eq!(
            body["spec"],
            json!({"type": "ClusterIP", "externalIPs": ["198.51.100.20"], "ports": [
                {"name": "port-80", "port": 80, "targetPort": 23456, "protocol": "TCP"},
                {"name": "port-443", "port": 443, "targetPort": 21000, "protocol": "TCP"},
            ]})
        );
        let plain = report(GatewayService::default(), "");
        let body = desired(me, &plain, &own, ServiceType::LoadBalancer).unwrap();
        assert!(body["spec"].get("externalIPs").is_none());
        assert!(body["metadata"].get("ownerReferences").is_none(), "no uid, no owner");
        assert_eq!(body["spec"]["type"], "LoadBalancer");
        assert_eq!(
            body["spec"]["externalTrafficPolicy"], "Local",
            "clients' addresses kept"
        );
        own.external_traffic_policy = None;
        let body = desired(me, &plain, &own, ServiceType::NodePort).unwrap();
        assert!(body["spec"].get("externalTrafficPolicy").is_none());
        let none = GatewayReport { service: None, ..plain };
        assert_eq!(desired(me, &none, &own, ServiceType::NodePort), None);
    }

    #[test]
    fn a_taken_name_turns_programmed_false() {
        let mut status = json!({"conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted"},
            {"type": "Programmed", "status": "True", "reason": "Programmed"},
        ]});
        not_programmed(status.as_object_mut().unwrap(), "taken");
        assert_eq!(status["conditions"][0]["status"], "True");
        assert_eq!(
            status["conditions"][1],
            json!({"type": "Programmed", "status": "False", "reason": ADDRESS_NOT_ASSIGNED, "message": "taken"})
        );
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
