//! Kubernetes mode: reflect the cluster's objects into the Snapshot, and (as leader) write
//! Ingress status and Events.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::Metadata;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::{FULL_COMPILE_EVERY, Publisher};
use crate::config::Config;
use crate::config::Diagnostic;
use crate::model::{AnyObject, Ing, Kind, ObjectKey, Slice, Snapshot, Svc, key_of};

/// Settings of Kubernetes mode.
#[derive(Clone, Debug, Default)]
pub struct KubeOptions {
    /// Watch one namespace only (IngressClasses are always cluster-wide).
    pub watch_namespace: Option<String>,
    /// `NS/NAME` of the Service whose address goes into Ingress status.
    pub publish_service: Option<ObjectKey>,
    /// Addresses (IPs or host names) to put into Ingress status instead.
    pub publish_status_addresses: Vec<String>,
    /// Name of the leader-election Lease.
    pub election_id: String,
    /// Namespace of the Lease.
    pub election_namespace: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    /// How long to wait for more changes before compiling.
    pub debounce: Duration,
    /// The name Events are reported under.
    pub controller_name: String,
    /// `--configmap`: its namespace is watched for ConfigMaps even outside `watch_namespace`.
    pub configmap: Option<ObjectKey>,
    /// `--gateway-service-type`: the type of each Gateway's Service (`--gateway-services`).
    pub gateway_service_type: super::gateway_services::ServiceType,
}

/// The objects seen so far and which kinds have been listed completely.
struct Shared {
    snapshot: Mutex<Snapshot>,
    synced: Mutex<HashSet<Kind>>,
    /// Kinds changed since the last compile.
    dirty: Mutex<HashSet<Kind>>,
    /// Services whose EndpointSlices or Endpoints changed since the last compile; `None`
    /// after a relist of those kinds (then every backend is re-resolved).
    dirty_services: Mutex<Option<HashSet<ObjectKey>>>,
    changed: Notify,
}

trait Reflected: Resource + Metadata<Ty = ObjectMeta> + Clone + Debug + DeserializeOwned + Send + Sync + 'static {
    const SNAPSHOT_KIND: Kind;
    fn wrap(self) -> AnyObject;
    /// Whether an update, in the form the Snapshot keeps (`new`, made by [`Reflected::wrap`]
    /// once per event), leaves everything compile() reads as it was (a status write, say), so
    /// that no recompile is needed.
    fn same_for_compile(_snapshot: &Snapshot, _key: &ObjectKey, _new: &AnyObject) -> bool {
        false
    }
    /// Drops fields compile() never reads, which cost memory at scale.
    fn slim_kind(&mut self) {}
    /// For EndpointSlices and Endpoints: the Service they list endpoints for.
    fn service_of(&self) -> Option<ObjectKey> {
        None
    }
}

macro_rules! reflected {
    ($t:ty, $k:ident) => {
        reflected!($t, $k, {});
    };
    ($t:ty, $k:ident, { $($body:tt)* }) => {
        impl Reflected for $t {
            const SNAPSHOT_KIND: Kind = Kind::$k;
            fn wrap(self) -> AnyObject {
                AnyObject::$k(Arc::new(self))
            }
            $($body)*
        }
    };
}
// Ingresses are compacted as they arrive (`model::ingress`): what compile reads, the
// annotations under Portico's and ingress-nginx's prefixes, the status addresses the status
// writer compares, and the uid and resourceVersion Events name.
impl Reflected for Ingress {
    const SNAPSHOT_KIND: Kind = Kind::Ingress;
    fn wrap(self) -> AnyObject {
        AnyObject::Ing(key_of(&self), Arc::new(Ing::from(&self)))
    }
    fn same_for_compile(snapshot: &Snapshot, key: &ObjectKey, new: &AnyObject) -> bool {
        let AnyObject::Ing(_, new) = new else { return false };
        snapshot.ingresses.get(key).is_some_and(|old| old.same_for_compile(new))
    }
}
reflected!(IngressClass, IngressClass);
// Services are compacted as they arrive (`model::service`): what backends are resolved from
// (ports, type, externalName, clusterIP for `service-upstream`, session affinity,
// publishNotReadyAddresses). Status and addresses a Gateway's or `--publish-service`'s
// Service gives are read from the API when written, not from here.
impl Reflected for Service {
    const SNAPSHOT_KIND: Kind = Kind::Service;
    fn wrap(self) -> AnyObject {
        AnyObject::Svc(key_of(&self), Arc::new(Svc::from(&self)))
    }
    fn same_for_compile(snapshot: &Snapshot, key: &ObjectKey, new: &AnyObject) -> bool {
        let AnyObject::Svc(_, new) = new else { return false };
        snapshot.services.get(key).is_some_and(|old| old == new)
    }
}
// Slices are compacted as they arrive (`model::slice`): the decoded object is dropped here.
impl Reflected for EndpointSlice {
    const SNAPSHOT_KIND: Kind = Kind::EndpointSlice;
    fn wrap(self) -> AnyObject {
        AnyObject::Slice(key_of(&self), Arc::new(Slice::from(&self)))
    }
    /// A change to what the compact form leaves out (node names, hints, labels) needs no
    /// recompile.
    fn same_for_compile(snapshot: &Snapshot, key: &ObjectKey, new: &AnyObject) -> bool {
        let AnyObject::Slice(_, new) = new else { return false };
        snapshot.endpoint_slices.get(key).is_some_and(|old| old == new)
    }
    fn service_of(&self) -> Option<ObjectKey> {
        let svc = self
            .metadata
            .labels
            .as_ref()?
            .get(crate::model::slice::SERVICE_NAME_LABEL)?;
        Some(ObjectKey::new(
            self.metadata.namespace.clone().unwrap_or_default(),
            svc.clone(),
        ))
    }
}
reflected!(Endpoints, Endpoints, {
    fn service_of(&self) -> Option<ObjectKey> {
        Some(key_of(self))
    }
});
reflected!(Secret, Secret, {
    /// TLS Secrets keep their certificate and key, and the CA an `auth-tls-secret` reads;
    /// Opaque ones (basic-auth `auth-secret`s: an `auth` htpasswd file, or one key per user;
    /// `auth-tls-secret`s) keep their data; every other type (service-account tokens, Helm
    /// releases, ...) is kept without data.
    fn slim_kind(&mut self) {
        let ty = self.type_.as_deref().unwrap_or("Opaque");
        if let Some(d) = self.data.as_mut() {
            match ty {
                // ca.crt and ca.crl: an auth-tls-secret may be a TLS Secret.
                "kubernetes.io/tls" => {
                    d.retain(|k, _| matches!(k.as_str(), "tls.crt" | "tls.key" | "ca.crt" | "ca.crl"))
                }
                "Opaque" => {}
                _ => d.clear(),
            }
        }
    }
});

// ConfigMaps are read whole: the `--configmap` and the header lists its keys name.
reflected!(ConfigMap, ConfigMap, {
    fn same_for_compile(snapshot: &Snapshot, key: &ObjectKey, new: &AnyObject) -> bool {
        let AnyObject::ConfigMap(new) = new else { return false };
        snapshot.config_maps.get(key).is_some_and(|old| old.data == new.data)
    }
});

// Gateway API objects: a status write (by Portico itself) changes neither spec nor
// generation, and needs no recompile.
macro_rules! reflected_gateway {
    ($($t:ident => $field:ident),* $(,)?) => {$(
        reflected!(crate::model::gateway::$t, $t, {
            fn same_for_compile(snapshot: &Snapshot, key: &ObjectKey, new: &AnyObject) -> bool {
                let AnyObject::$t(new) = new else { return false };
                snapshot.$field.get(key).is_some_and(|old| {
                    old.spec == new.spec
                        && old.metadata.generation == new.metadata.generation
                        && old.metadata.creation_timestamp == new.metadata.creation_timestamp
                        && old.metadata.uid == new.metadata.uid
                })
            }
        });
    )*};
}
reflected_gateway!(
    GatewayClass => gateway_classes,
    Gateway => gateways,
    HTTPRoute => http_routes,
    GRPCRoute => grpc_routes,
    TLSRoute => tls_routes,
    BackendTLSPolicy => backend_tls_policies,
    ReferenceGrant => reference_grants,
    ListenerSet => listener_sets,
);
// Namespaces matter for their labels only (`allowedRoutes` selectors).
reflected!(Namespace, Namespace, {
    fn same_for_compile(snapshot: &Snapshot, key: &ObjectKey, new: &AnyObject) -> bool {
        let AnyObject::Namespace(new) = new else { return false };
        snapshot
            .namespaces
            .get(key)
            .is_some_and(|old| old.metadata.labels == new.metadata.labels)
    }
    fn slim_kind(&mut self) {
        self.spec = None;
        self.status = None;
    }
});

/// The Gateway API kinds the cluster serves (their CRDs are installed), asked once at start.
/// Without them, none is watched and Ingress works as before; Namespaces are watched only
/// for the Gateway API.
async fn served_gateway_kinds(client: &Client) -> Vec<Kind> {
    use crate::model::gateway::{
        BackendTLSPolicy, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ListenerSet, ReferenceGrant, TLSRoute,
    };
    use k8s_openapi::Resource as _;
    let list = match client.list_api_group_resources("gateway.networking.k8s.io/v1").await {
        Ok(l) => l,
        Err(e) => {
            tracing::info!(error = %e, "Gateway API (gateway.networking.k8s.io/v1) not served; watching Ingress only");
            return Vec::new();
        }
    };
    let served = |plural: &str| list.resources.iter().any(|r| r.name == plural);
    let mut kinds: Vec<Kind> = [
        (Kind::GatewayClass, GatewayClass::URL_PATH_SEGMENT),
        (Kind::Gateway, Gateway::URL_PATH_SEGMENT),
        (Kind::HTTPRoute, HTTPRoute::URL_PATH_SEGMENT),
        (Kind::GRPCRoute, GRPCRoute::URL_PATH_SEGMENT),
        (Kind::TLSRoute, TLSRoute::URL_PATH_SEGMENT),
        (Kind::BackendTLSPolicy, BackendTLSPolicy::URL_PATH_SEGMENT),
        (Kind::ReferenceGrant, ReferenceGrant::URL_PATH_SEGMENT),
        (Kind::ListenerSet, ListenerSet::URL_PATH_SEGMENT),
    ]
    .into_iter()
    .filter(|(_, plural)| served(plural))
    .map(|(k, _)| k)
    .collect();
    // Nothing is served without both classes and Gateways.
    if !(kinds.contains(&Kind::GatewayClass) && kinds.contains(&Kind::Gateway)) {
        tracing::info!(
            ?kinds,
            "Gateway API CRDs incomplete (GatewayClass and Gateway needed); watching Ingress only"
        );
        return Vec::new();
    }
    kinds.push(Kind::Namespace);
    tracing::info!(?kinds, "Gateway API served; watching these kinds too");
    kinds
}

/// Starts the watchers of the Gateway API kinds in `kinds`.
fn reflect_gateway(client: &Client, ns: Option<&str>, kinds: &[Kind], shared: &Arc<Shared>) {
    use crate::model::gateway::{
        BackendTLSPolicy, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ListenerSet, ReferenceGrant, TLSRoute,
    };
    let all = watcher::Config::default();
    for kind in kinds {
        let s = shared.clone();
        match kind {
            Kind::GatewayClass => tokio::spawn(reflect(Api::<GatewayClass>::all(client.clone()), all.clone(), s)),
            Kind::Namespace => tokio::spawn(reflect(Api::<Namespace>::all(client.clone()), all.clone(), s)),
            Kind::Gateway => tokio::spawn(reflect(api::<Gateway>(client, ns), all.clone(), s)),
            Kind::HTTPRoute => tokio::spawn(reflect(api::<HTTPRoute>(client, ns), all.clone(), s)),
            Kind::GRPCRoute => tokio::spawn(reflect(api::<GRPCRoute>(client, ns), all.clone(), s)),
            Kind::TLSRoute => tokio::spawn(reflect(api::<TLSRoute>(client, ns), all.clone(), s)),
            Kind::BackendTLSPolicy => tokio::spawn(reflect(api::<BackendTLSPolicy>(client, ns), all.clone(), s)),
            Kind::ReferenceGrant => tokio::spawn(reflect(api::<ReferenceGrant>(client, ns), all.clone(), s)),
            Kind::ListenerSet => tokio::spawn(reflect(api::<ListenerSet>(client, ns), all.clone(), s)),
            _ => continue,
        };
    }
}

/// Drops what compile never reads but costs memory at scale.
fn slim<K: Reflected>(mut obj: K) -> K {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.finalizers = None;
    meta.generate_name = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    // Object identity and versions matter only where status or Events are written about the
    // object (Ingresses, Gateway API kinds) or where changes are detected by generation;
    // compile reads neither for these kinds (the watcher has taken the resourceVersion it
    // resumes from before the object reaches here).
    if matches!(
        K::SNAPSHOT_KIND,
        Kind::Service | Kind::EndpointSlice | Kind::Endpoints | Kind::Secret | Kind::ConfigMap
    ) {
        meta.uid = None;
        meta.resource_version = None;
        meta.generation = None;
    }
    // Labels matter only on EndpointSlices (the Service they belong to) and Namespaces
    // (`allowedRoutes` selectors).
    match K::SNAPSHOT_KIND {
        Kind::Namespace => {}
        Kind::EndpointSlice => {
            if let Some(l) = meta.labels.as_mut() {
                l.retain(|k, _| k == "kubernetes.io/service-name");
            }
        }
        _ => meta.labels = None,
    }
    obj.slim_kind();
    obj
}

/// Follows one kind: a full list at start (and after the watch expires, 410 Gone), then
/// changes. Errors are logged and retried with backoff; the last objects stay in place.
async fn reflect<K: Reflected>(api: Api<K>, config: watcher::Config, shared: Arc<Shared>) {
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut relist: Vec<AnyObject> = Vec::new();
    let mut failing = false;
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                if !failing {
                    tracing::warn!(kind = ?K::SNAPSHOT_KIND, error = %e, "watch failed; serving the last known objects and retrying with backoff");
                }
                failing = true;
                continue;
            }
        };
        if failing {
            tracing::info!(kind = ?K::SNAPSHOT_KIND, "watch reconnected");
            failing = false;
        }
        let mut changed = true;
        match ev {
            WatchEvent::Init => {
                relist.clear();
                changed = false;
            }
            WatchEvent::InitApply(o) => {
                relist.push(slim(o).wrap());
                changed = false;
            }
            WatchEvent::InitDone => {
                if matches!(K::SNAPSHOT_KIND, Kind::EndpointSlice | Kind::Endpoints) {
                    *lock(&shared.dirty_services) = None;
                }
                let objects = std::mem::take(&mut relist);
                let n = objects.len();
                lock(&shared.snapshot).replace_kind(K::SNAPSHOT_KIND, objects);
                if lock(&shared.synced).insert(K::SNAPSHOT_KIND) {
                    tracing::info!(kind = ?K::SNAPSHOT_KIND, objects = n, "initial list complete");
                }
            }
            WatchEvent::Apply(o) => {
                let o = slim(o);
                note_service(&shared, &o);
                let key = key_of(&o);
                // Made once: compacted kinds are converted here, and compared in that form.
                let new = o.wrap();
                let mut snap = lock(&shared.snapshot);
                changed = !K::same_for_compile(&snap, &key, &new);
                // A slice that moved to another Service dirties the old one too.
                if let Some(old) = old_service(&snap, K::SNAPSHOT_KIND, &key) {
                    mark_service(&shared, old);
                }
                snap.insert(new);
            }
            WatchEvent::Delete(o) => {
                note_service(&shared, &o);
                lock(&shared.snapshot).remove(K::SNAPSHOT_KIND, &key_of(&o));
            }
        }
        if changed {
            lock(&shared.dirty).insert(K::SNAPSHOT_KIND);
            shared.changed.notify_one();
        }
    }
}

fn mark_service(shared: &Shared, svc: ObjectKey) {
    if let Some(set) = lock(&shared.dirty_services).as_mut() {
        set.insert(svc);
    }
}

fn note_service<K: Reflected>(shared: &Shared, obj: &K) {
    if let Some(svc) = obj.service_of() {
        mark_service(shared, svc);
    }
}

fn old_service(snap: &Snapshot, kind: Kind, key: &ObjectKey) -> Option<ObjectKey> {
    match kind {
        Kind::EndpointSlice => snap
            .endpoint_slices
            .get(key)
            .and_then(|s| s.service_key(&key.namespace)),
        _ => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Reflected<DynamicType = ()> + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs Kubernetes mode until the process ends: watches, compiles on change (debounced),
/// and writes status and Events while this replica holds the Lease.
pub async fn run(client: Client, opts: KubeOptions, publisher: Arc<Publisher>) {
    let shared = Arc::new(Shared {
        snapshot: Mutex::new(Snapshot::default()),
        synced: Mutex::new(HashSet::new()),
        dirty: Mutex::new(HashSet::new()),
        dirty_services: Mutex::new(Some(HashSet::new())),
        changed: Notify::new(),
    });
    let ns = opts.watch_namespace.as_deref();
    let all = watcher::Config::default();
    tokio::spawn(reflect(api::<Ingress>(&client, ns), all.clone(), shared.clone()));
    tokio::spawn(reflect(
        Api::<IngressClass>::all(client.clone()),
        all.clone(),
        shared.clone(),
    ));
    tokio::spawn(reflect(api::<Service>(&client, ns), all.clone(), shared.clone()));
    tokio::spawn(reflect(api::<EndpointSlice>(&client, ns), all.clone(), shared.clone()));
    tokio::spawn(reflect(api::<Endpoints>(&client, ns), all.clone(), shared.clone()));
    // Every type: TLS Secrets for certificates, Opaque ones for basic auth (see `slim_kind`).
    tokio::spawn(reflect(api::<Secret>(&client, ns), all.clone(), shared.clone()));
    // The controller's ConfigMap usually lives in its own namespace, not the watched one.
    let cm_ns = match (&opts.configmap, ns) {
        (Some(cm), Some(w)) if cm.namespace != w => None,
        _ => ns,
    };
    tokio::spawn(reflect(api::<ConfigMap>(&client, cm_ns), all.clone(), shared.clone()));
    let gateway_kinds = served_gateway_kinds(&client).await;
    reflect_gateway(&client, ns, &gateway_kinds, &shared);

    let (gen_tx, gen_rx) = watch::channel(0u64);
    tokio::spawn(leader_duties(
        client.clone(),
        opts.clone(),
        publisher.clone(),
        shared.clone(),
        gen_rx,
    ));

    // Nothing is published until every kind has been listed once: a partial view would
    // route (or 503) what a full one wouldn't.
    loop {
        shared.changed.notified().await;
        if lock(&shared.synced).len() == Kind::ALL.len() + gateway_kinds.len() {
            break;
        }
    }
    let mut full_due = false;
    let mut first = true;
    let mut last_compile = tokio::time::Instant::now();
    loop {
        // Coalesce bursts (a rollout touches many slices at once) into one compile. A lone
        // endpoints change after a quiet spell goes out at once: slices say what is, so a
        // partial view of them is never wrong, unlike an Ingress that arrives before its
        // Service and would draw a Warning.
        let endpoints_only =
            |dirty: &HashSet<Kind>| dirty.iter().all(|k| matches!(k, Kind::EndpointSlice | Kind::Endpoints));
        let quiet = last_compile.elapsed() >= opts.debounce;
        if first || full_due || !quiet || !endpoints_only(&lock(&shared.dirty)) {
            tokio::time::sleep(opts.debounce).await;
        }
        let dirty = std::mem::take(&mut *lock(&shared.dirty));
        let services = lock(&shared.dirty_services).replace(HashSet::new());
        let quick = !first && !full_due && endpoints_only(&dirty);
        // A quick compile reads only the changed Services' objects: no copy of the whole
        // snapshot (tens of thousands of keys at scale) on the way.
        let snapshot = match (&services, quick) {
            (Some(changed), true) => lock(&shared.snapshot).only_services(changed),
            _ => lock(&shared.snapshot).clone(),
        };
        // Compiling takes up to ~100 ms at 10k Ingresses: off the runtime's workers, so that
        // the data plane never waits for it.
        let p = publisher.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            if quick {
                return p.publish_endpoints(&snapshot, services.as_ref());
            }
            let cfg = p.publish(&snapshot, Vec::new());
            drop(snapshot);
            super::return_freed_memory();
            cfg
        })
        .await;
        last_compile = tokio::time::Instant::now();
        match compiled {
            Ok(cfg) => {
                first = false;
                let _ = gen_tx.send(cfg.generation);
            }
            Err(e) => {
                publisher.metrics.apply_failed();
                tracing::error!(error = %e, "compile failed; the last config keeps serving");
                lock(&shared.dirty).extend(Kind::ALL.iter().chain(&gateway_kinds));
            }
        }
        // A full compile at least every few minutes re-checks certificate validity.
        full_due = tokio::time::timeout(FULL_COMPILE_EVERY, shared.changed.notified())
            .await
            .is_err();
    }
}

/// Status and Events: only the holder of the Lease writes them; every replica serves.
/// The parts of a Config that status and Events are derived from.
type Worked = (
    Arc<Vec<ObjectKey>>,
    Arc<Vec<Diagnostic>>,
    Arc<crate::config::gateway::Report>,
);

async fn leader_duties(
    client: Client,
    opts: KubeOptions,
    publisher: Arc<Publisher>,
    shared: Arc<Shared>,
    mut generations: watch::Receiver<u64>,
) {
    let mut leading = match kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &opts.election_id)
        .with_namespace(&opts.election_namespace)
        .with_identity(&opts.identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
    {
        Ok(m) => m.watch().await.0,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up leader election; this replica will not write status or Events");
            return;
        }
    };
    let recorder = EventWriter {
        client: client.clone(),
        controller: opts.controller_name.clone(),
        instance: opts.identity.clone(),
    };
    let mut state = LeaderState::default();
    let controller = publisher.options.gateway_controller_name.clone();
    let gateway_status = || super::gateway_status::StatusWriter::new(client.clone(), controller.clone());
    let mut gateways = gateway_status();
    // Portico's own endpoints, which the Gateways' Services' EndpointSlices list: followed by
    // every replica, so that a new leader has them at once.
    let own_endpoints =
        super::gateway_services::ServiceWriter::watch_endpoints(&client, &opts, publisher.options.gateway_services);
    let mut endpoints_changed = own_endpoints.clone();
    let gateway_services = || super::gateway_services::ServiceWriter::new(client.clone(), &opts, own_endpoints.clone());
    let mut services = gateway_services();
    let mut was_leader = false;
    // What the last round worked from: an endpoints-only recompile shares these with the
    // Config before it, and then there is no status or Event to write.
    let mut done: Option<Worked> = None;
    loop {
        let gateway_retry = super::gateway_services::retry_after(&gateways, &services);
        tokio::select! {
            r = generations.changed() => if r.is_err() { return },
            r = leading.changed() => if r.is_err() { return },
            _ = changed(&mut endpoints_changed) => {
                if was_leader && *generations.borrow() != 0 {
                    let cfg = publisher.live.config();
                    super::gateway_services::round(&mut services, &mut gateways, &client, &opts, &cfg).await;
                }
                continue;
            }
            _ = tokio::time::sleep(gateway_retry.unwrap_or_default()), if gateway_retry.is_some() && was_leader => {
                let cfg = publisher.live.config();
                super::gateway_services::round(&mut services, &mut gateways, &client, &opts, &cfg).await;
                continue;
            }
        }
        let is_leader = *leading.borrow_and_update();
        if is_leader != was_leader {
            tracing::info!(identity = %opts.identity, lease = %opts.election_id, leader = is_leader, "leadership changed");
            was_leader = is_leader;
            state = LeaderState::default();
            gateways = gateway_status();
            services = gateway_services();
            done = None;
        }
        if !is_leader || *generations.borrow() == 0 {
            continue;
        }
        let cfg = publisher.live.config();
        if done.as_ref().is_some_and(|(a, d, g)| {
            Arc::ptr_eq(a, &cfg.admitted) && Arc::ptr_eq(d, &cfg.diagnostics) && Arc::ptr_eq(g, &cfg.gateway)
        }) {
            continue;
        }
        done = Some((cfg.admitted.clone(), cfg.diagnostics.clone(), cfg.gateway.clone()));
        // The Ingresses are looked up in the live Snapshot, never held across the writes:
        // each status write comes back as a change to its Ingress, and a map still held
        // here would then be copied whole, and every Ingress kept twice until the round ends.
        write_status(&client, &opts, &cfg, &shared).await;
        super::gateway_services::round(&mut services, &mut gateways, &client, &opts, &cfg).await;
        state.events(&recorder, &cfg, &shared).await;
    }
}

/// Returns when `rx` has a new value; never without one (or once its sender is gone).
async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) {
    let Some(r) = rx else {
        return std::future::pending().await;
    };
    if r.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What the leader has already reported, so that Events are not repeated on every compile.
#[derive(Default)]
struct LeaderState {
    reported: HashSet<Diagnostic>,
    admitted: HashSet<ObjectKey>,
}

/// The Event reference to the Ingress at `key`; `None` when it is gone.
fn reference(shared: &Shared, key: &ObjectKey) -> Option<ObjectReference> {
    let snapshot = lock(&shared.snapshot);
    let ing = snapshot.ingresses.get(key)?;
    Some(ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        namespace: Some(key.namespace.clone()),
        name: Some(key.name.clone()),
        uid: ing.metadata.uid.as_deref().map(str::to_string),
        resource_version: ing.metadata.resource_version.as_deref().map(str::to_string),
        field_path: None,
    })
}

impl LeaderState {
    async fn events(&mut self, recorder: &EventWriter, cfg: &Config, ingresses: &Shared) {
        for key in cfg.admitted.iter() {
            if !self.admitted.contains(key)
                && publish(
                    recorder,
                    ingresses,
                    key,
                    "Normal",
                    "Admitted",
                    format!("Ingress {key} is served by Portico"),
                )
                .await
            {
                self.admitted.insert(key.clone());
            }
        }
        let admitted: HashSet<&ObjectKey> = cfg.admitted.iter().collect();
        self.admitted.retain(|k| admitted.contains(k));

        for d in cfg.diagnostics.iter() {
            if d.object.kind != "Ingress" || self.reported.contains(d) {
                continue;
            }
            let key = ObjectKey::new(d.object.namespace.clone(), d.object.name.clone());
            let note = d.message.chars().take(1000).collect();
            if publish(recorder, ingresses, &key, "Warning", d.reason.as_str(), note).await {
                self.reported.insert(d.clone());
            }
        }
        // A diagnostic that went away may be reported again if it comes back.
        let current: HashSet<&Diagnostic> = cfg.diagnostics.iter().collect();
        self.reported.retain(|d| current.contains(d));
    }
}

/// Writes `events.k8s.io/v1` Events. kube-runtime's `Recorder` keeps every Event it wrote
/// for minutes to aggregate repeats (and scans that cache on each write): at 10k Ingresses
/// that is 10k cached Events, tens of MB, for Admitted alone. Portico never repeats an Event
/// (LeaderState remembers what it reported), so it writes them directly.
struct EventWriter {
    client: Client,
    controller: String,
    instance: String,
}

/// Writes one Event on an Ingress; true when it was written (a vanished Ingress gets none).
async fn publish(
    writer: &EventWriter,
    ingresses: &Shared,
    key: &ObjectKey,
    type_: &str,
    reason: &str,
    note: String,
) -> bool {
    let Some(regarding) = reference(ingresses, key) else {
        return false;
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let ev = K8sEvent {
        metadata: ObjectMeta {
            namespace: Some(key.namespace.clone()),
            name: Some(format!("{}.{:x}", key.name, now.as_nanosecond())),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some("Compile".into()),
        reason: Some(reason.into()),
        note: Some(note),
        type_: Some(type_.into()),
        regarding: Some(regarding),
        reporting_controller: Some(writer.controller.clone()),
        reporting_instance: Some(writer.instance.clone()),
        ..Default::default()
    };
    let api: Api<K8sEvent> = Api::namespaced(writer.client.clone(), &key.namespace);
    match api.create(&PostParams::default(), &ev).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(ingress = %key, error = %e, "cannot write Event");
            false
        }
    }
}

/// One `status.loadBalancer.ingress` entry: an IP, else a host name.
fn entry(a: &str) -> serde_json::Value {
    if a.parse::<std::net::IpAddr>().is_ok() {
        json!({"ip": a})
    } else {
        json!({"hostname": a})
    }
}

/// The `status.loadBalancer.ingress` entries Portico publishes: `--publish-status-address`
/// if given; else the `--publish-service` Service's load-balancer ingress, else its
/// external IPs, else its cluster IP(s).
pub(super) async fn desired_status(client: &Client, opts: &KubeOptions) -> Option<Vec<serde_json::Value>> {
    if !opts.publish_status_addresses.is_empty() {
        return Some(opts.publish_status_addresses.iter().map(|a| entry(a)).collect());
    }
    let key = opts.publish_service.as_ref()?;
    match Api::<Service>::namespaced(client.clone(), &key.namespace)
        .get(&key.name)
        .await
    {
        Ok(s) => Some(service_entries(&s)),
        Err(e) => {
            tracing::warn!(service = %key, error = %e, "cannot read --publish-service; status not updated");
            None
        }
    }
}

/// A Service's addresses as `status.loadBalancer.ingress` entries: its load-balancer ingress,
/// else its external IPs, else its cluster IP(s).
pub(super) fn service_entries(svc: &Service) -> Vec<serde_json::Value> {
    let lb: Vec<serde_json::Value> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .map(|v| {
            v.iter()
                .filter_map(|i| i.ip.as_deref().or(i.hostname.as_deref()).map(entry))
                .collect()
        })
        .unwrap_or_default();
    if !lb.is_empty() {
        return lb;
    }
    let spec = svc.spec.clone().unwrap_or_default();
    let external: Vec<serde_json::Value> = spec.external_ips.unwrap_or_default().iter().map(|a| entry(a)).collect();
    if !external.is_empty() {
        return external;
    }
    let cluster: Vec<serde_json::Value> = spec
        .cluster_ips
        .unwrap_or_default()
        .iter()
        .chain(spec.cluster_ip.iter())
        .filter(|a| a.as_str() != "None" && !a.is_empty())
        .map(|a| entry(a))
        .collect::<Vec<_>>();
    let mut seen = HashSet::new();
    cluster.into_iter().filter(|v| seen.insert(v.to_string())).collect()
}

async fn write_status(client: &Client, opts: &KubeOptions, cfg: &Config, shared: &Shared) {
    let Some(desired) = desired_status(client, opts).await else {
        return;
    };
    let want = crate::model::ingress::status_json(&desired);
    let ours: HashSet<&ObjectKey> = cfg.admitted.iter().collect();
    // Which Ingresses to write (true: our addresses; false: none), decided under the lock.
    let writes: Vec<(ObjectKey, bool)> = lock(&shared.snapshot)
        .ingresses
        .iter()
        .filter_map(|(key, ing)| {
            let current = &*ing.status;
            if ours.contains(key) {
                (current != want).then(|| (key.clone(), true))
            } else {
                // No longer ours (class changed): take our address back out.
                (!current.is_empty() && current == want).then(|| (key.clone(), false))
            }
        })
        .collect();
    let params = PatchParams::apply("portico").force();
    let mut failed = HashMap::new();
    for (key, ours) in writes {
        let entries = if ours { &desired[..] } else { &[] };
        let api: Api<Ingress> = Api::namespaced(client.clone(), &key.namespace);
        let patch = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "status": {"loadBalancer": {"ingress": entries}},
        });
        if let Err(e) = api.patch_status(&key.name, &params, &Patch::Apply(&patch)).await {
            failed.insert(key.to_string(), e.to_string());
        }
    }
    for (key, e) in failed {
        tracing::warn!(ingress = %key, error = %e, "cannot write Ingress status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{Options, compile};
    use crate::fixture::{self, Prefix};
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};

    /// What the API server adds to every object, and a Service's fields compile never reads.
    fn as_served<K: Metadata<Ty = ObjectMeta>>(mut obj: K, n: usize) -> K {
        let m = obj.metadata_mut();
        m.uid = Some(format!("00000000-0000-0000-0000-{n:012}"));
        m.resource_version = Some(format!("{}", 1000 + n));
        m.generation = Some(1);
        m.labels.get_or_insert_default().insert("app".into(), "web".into());
        obj
    }

    fn full_service(name: &str, n: usize) -> Service {
        let mut svc = fixture::service("default", name)
            .port("http", 80)
            .target_port(8080)
            .build();
        let spec = svc.spec.as_mut().expect("spec");
        spec.selector = Some([("app".to_string(), name.to_string())].into());
        spec.cluster_ip = Some(format!("10.0.0.{n}"));
        spec.cluster_ips = Some(vec![format!("10.0.0.{n}")]);
        spec.ip_families = Some(vec!["IPv4".into()]);
        spec.ip_family_policy = Some("SingleStack".into());
        spec.internal_traffic_policy = Some("Cluster".into());
        spec.type_ = Some("ClusterIP".into());
        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("198.51.100.9".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        as_served(svc, n)
    }

    /// Slimming drops only what compile does not read: the same objects, slimmed or not,
    /// compile to equal Configs (routes, backends with cluster IPs and affinity, certificates,
    /// diagnostics).
    #[test]
    fn slimmed_objects_compile_to_the_same_config() {
        let crt = include_str!("../../tests/fixtures/tls/ec.crt");
        let key = include_str!("../../tests/fixtures/tls/ec-sec1.key");
        let mut affinity = full_service("sticky", 2);
        let spec = affinity.spec.as_mut().expect("spec");
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config = Some(k8s_openapi::api::core::v1::SessionAffinityConfig {
            client_ip: Some(k8s_openapi::api::core::v1::ClientIPConfig {
                timeout_seconds: Some(600),
            }),
        });
        let ingress = |name: &str, host: &str, svc: &str| {
            fixture::ingress("default", name)
                .class("portico")
                .rule(host, "/", Prefix, svc, 80)
                .path("/named", Prefix, svc, "http")
                .tls(&[host], Some("tls"))
                .build()
        };
        let upstream = fixture::ingress("default", "upstream")
            .class("portico")
            .annotation("nginx.ingress.kubernetes.io/service-upstream", "true")
            .rule("up.example", "/", Prefix, "web", 80)
            .build();
        let slice = |name: &str, svc: &str, n: usize| {
            as_served(
                fixture::slice("default", name, svc)
                    .port("http", 8080)
                    .endpoint(&format!("192.0.2.{n}"))
                    .pod(&format!("{svc}-pod"))
                    .build(),
                n,
            )
        };
        let ingresses = [
            as_served(ingress("site", "web.example", "web"), 10),
            as_served(ingress("sticky", "sticky.example", "sticky"), 11),
            as_served(upstream, 12),
            // Its Service is missing: a diagnostic either way.
            as_served(ingress("orphan", "orphan.example", "gone"), 13),
        ];
        let services = [full_service("web", 1), affinity];
        let slices = [slice("web-a", "web", 3), slice("sticky-a", "sticky", 4)];
        let secret = as_served(fixture::tls_secret("default", "tls", crt, key), 20);
        let class = fixture::portico_class();

        let mut full = Snapshot::default();
        let mut slimmed = Snapshot::default();
        full.insert(class.clone().wrap());
        slimmed.insert(slim(class).wrap());
        for o in ingresses {
            full.insert(o.clone().wrap());
            slimmed.insert(slim(o).wrap());
        }
        for o in services {
            full.insert(o.clone().wrap());
            slimmed.insert(slim(o).wrap());
        }
        for o in slices {
            full.insert(o.clone().wrap());
            slimmed.insert(slim(o).wrap());
        }
        full.insert(secret.clone().wrap());
        slimmed.insert(slim(secret).wrap());

        let svc = &slimmed.services[&ObjectKey::new("default", "web")];
        assert_eq!(svc.cluster_ip.as_deref(), Some("10.0.0.1"), "slimmed: {svc:?}");

        let opts = Options::default();
        let (a, b) = (compile(&full, &opts), compile(&slimmed, &opts));
        assert_eq!(a.route_list.len(), 7, "{:?}", a.diagnostics);
        assert!(!a.certs.sources.is_empty());
        assert!(
            a.backends.iter().any(|b| b.service_upstream)
                && a.backends.iter().any(|b| b.client_ip_affinity == Some(600))
        );
        assert!(a.diagnostics.iter().any(|d| d.object.name == "orphan"));
        assert!(a == b, "full: {a:#?}\nslimmed: {b:#?}");
    }
}
