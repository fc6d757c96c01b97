//! The Snapshot: every Kubernetes object compile() reads, typed and keyed by namespace/name.

pub mod gateway;
pub mod ingress;
pub mod service;
pub mod slice;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::Serialize;

pub use ingress::Ing;
pub use service::{Svc, SvcPort};
pub use slice::Slice;

/// `namespace/name` of a namespaced object. Ordered so that iteration over a Snapshot is
/// deterministic, which keeps compile() reproducible.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses `namespace/name` as given on the command line.
    pub fn parse(s: &str) -> Option<Self> {
        let (ns, name) = s.split_once('/')?;
        if ns.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(Self::new(ns, name))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The key of an object: cluster-scoped objects (IngressClass) use an empty namespace.
pub fn key_of<K>(obj: &K) -> ObjectKey
where
    K: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
{
    let m = obj.metadata();
    ObjectKey::new(
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// One kind's objects by key. The map itself is shared too: a clone of the Snapshot (what a
/// compile reads while the source keeps receiving changes) copies nothing, and a source's
/// next change copies only the map of that kind, once (copy on write, [`Arc::make_mut`]).
pub type Objects<T> = Arc<BTreeMap<ObjectKey, Arc<T>>>;

/// Everything compile() looks at. Objects are shared (`Arc`) so that sources can hand over
/// what their caches already hold without copying.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Compacted as they arrive (see [`ingress`]).
    pub ingresses: Objects<Ing>,
    /// Cluster-scoped: keyed with an empty namespace.
    pub ingress_classes: Objects<IngressClass>,
    /// Compacted as they arrive (see [`service`]).
    pub services: Objects<Svc>,
    /// Compacted as they arrive (see [`slice`]).
    pub endpoint_slices: Objects<Slice>,
    pub endpoints: Objects<Endpoints>,
    pub secrets: Objects<Secret>,
    /// The `--configmap` and the ConfigMaps its keys and annotations name (`add-headers`,
    /// `custom-headers`, ...).
    pub config_maps: Objects<ConfigMap>,
    /// Gateway API objects (see [`gateway`]); GatewayClasses are cluster-scoped.
    pub gateway_classes: Objects<gateway::GatewayClass>,
    pub gateways: Objects<gateway::Gateway>,
    pub http_routes: Objects<gateway::HTTPRoute>,
    pub grpc_routes: Objects<gateway::GRPCRoute>,
    pub tls_routes: Objects<gateway::TLSRoute>,
    pub backend_tls_policies: Objects<gateway::BackendTLSPolicy>,
    pub reference_grants: Objects<gateway::ReferenceGrant>,
    pub listener_sets: Objects<gateway::ListenerSet>,
    /// Namespaces (cluster-scoped), for a listener's `allowedRoutes` namespace selector;
    /// only read when the Gateway API is.
    pub namespaces: Objects<Namespace>,
}

/// One object of any kind Portico reads, as it arrives from a source.
#[derive(Clone, Debug)]
pub enum AnyObject {
    Ingress(Arc<Ingress>),
    /// An Ingress already compacted (what the Kubernetes source hands over), by key.
    Ing(ObjectKey, Arc<Ing>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<Service>),
    /// A Service already compacted (what the Kubernetes source hands over), by key.
    Svc(ObjectKey, Arc<Svc>),
    EndpointSlice(Arc<EndpointSlice>),
    /// An EndpointSlice already compacted (what the Kubernetes source hands over), by key.
    Slice(ObjectKey, Arc<Slice>),
    Endpoints(Arc<Endpoints>),
    Secret(Arc<Secret>),
    ConfigMap(Arc<ConfigMap>),
    GatewayClass(Arc<gateway::GatewayClass>),
    Gateway(Arc<gateway::Gateway>),
    HTTPRoute(Arc<gateway::HTTPRoute>),
    GRPCRoute(Arc<gateway::GRPCRoute>),
    TLSRoute(Arc<gateway::TLSRoute>),
    BackendTLSPolicy(Arc<gateway::BackendTLSPolicy>),
    ReferenceGrant(Arc<gateway::ReferenceGrant>),
    Namespace(Arc<Namespace>),
    ListenerSet(Arc<gateway::ListenerSet>),
}

impl AnyObject {
    pub fn key(&self) -> ObjectKey {
        match self {
            AnyObject::Ingress(o) => key_of(o.as_ref()),
            AnyObject::Ing(key, _) => key.clone(),
            AnyObject::IngressClass(o) => ObjectKey::new("", o.metadata.name.clone().unwrap_or_default()),
            AnyObject::Service(o) => key_of(o.as_ref()),
            AnyObject::Svc(key, _) => key.clone(),
            AnyObject::EndpointSlice(o) => key_of(o.as_ref()),
            AnyObject::Slice(key, _) => key.clone(),
            AnyObject::Endpoints(o) => key_of(o.as_ref()),
            AnyObject::Secret(o) => key_of(o.as_ref()),
            AnyObject::ConfigMap(o) => key_of(o.as_ref()),
            AnyObject::GatewayClass(o) => ObjectKey::new("", o.metadata.name.clone().unwrap_or_default()),
            AnyObject::Gateway(o) => key_of(o.as_ref()),
            AnyObject::HTTPRoute(o) => key_of(o.as_ref()),
            AnyObject::GRPCRoute(o) => key_of(o.as_ref()),
            AnyObject::TLSRoute(o) => key_of(o.as_ref()),
            AnyObject::BackendTLSPolicy(o) => key_of(o.as_ref()),
            AnyObject::ReferenceGrant(o) => key_of(o.as_ref()),
            AnyObject::Namespace(o) => ObjectKey::new("", o.metadata.name.clone().unwrap_or_default()),
            AnyObject::ListenerSet(o) => key_of(o.as_ref()),
        }
    }
}

/// The kinds a Snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Endpoints,
    Secret,
    ConfigMap,
    GatewayClass,
    Gateway,
    HTTPRoute,
    GRPCRoute,
    TLSRoute,
    ReferenceGrant,
    Namespace,
    ListenerSet,
    BackendTLSPolicy,
}

impl Kind {
    /// The kinds every source reads. The Gateway API ones ([`Kind::GATEWAY`]) are read only
    /// where their CRDs exist.
    pub const ALL: [Kind; 7] = [
        Kind::Ingress,
        Kind::IngressClass,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Endpoints,
        Kind::Secret,
        Kind::ConfigMap,
    ];

    /// The Gateway API kinds, and Namespaces (whose labels `allowedRoutes` selects on).
    pub const GATEWAY: [Kind; 9] = [
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::HTTPRoute,
        Kind::GRPCRoute,
        Kind::TLSRoute,
        Kind::ReferenceGrant,
        Kind::Namespace,
        Kind::ListenerSet,
        Kind::BackendTLSPolicy,
    ];
}

impl Snapshot {
    /// Removes an object, if present.
    pub fn remove(&mut self, kind: Kind, key: &ObjectKey) {
        match kind {
            Kind::Ingress => drop(Arc::make_mut(&mut self.ingresses).remove(key)),
            Kind::IngressClass => drop(Arc::make_mut(&mut self.ingress_classes).remove(key)),
            Kind::Service => drop(Arc::make_mut(&mut self.services).remove(key)),
            Kind::EndpointSlice => drop(Arc::make_mut(&mut self.endpoint_slices).remove(key)),
            Kind::Endpoints => drop(Arc::make_mut(&mut self.endpoints).remove(key)),
            Kind::Secret => drop(Arc::make_mut(&mut self.secrets).remove(key)),
            Kind::ConfigMap => drop(Arc::make_mut(&mut self.config_maps).remove(key)),
            Kind::GatewayClass => drop(Arc::make_mut(&mut self.gateway_classes).remove(key)),
            Kind::Gateway => drop(Arc::make_mut(&mut self.gateways).remove(key)),
            Kind::HTTPRoute => drop(Arc::make_mut(&mut self.http_routes).remove(key)),
            Kind::GRPCRoute => drop(Arc::make_mut(&mut self.grpc_routes).remove(key)),
            Kind::TLSRoute => drop(Arc::make_mut(&mut self.tls_routes).remove(key)),
            Kind::BackendTLSPolicy => drop(Arc::make_mut(&mut self.backend_tls_policies).remove(key)),
            Kind::ReferenceGrant => drop(Arc::make_mut(&mut self.reference_grants).remove(key)),
            Kind::Namespace => drop(Arc::make_mut(&mut self.namespaces).remove(key)),
            Kind::ListenerSet => drop(Arc::make_mut(&mut self.listener_sets).remove(key)),
        }
    }

    /// Replaces every object of one kind (after a full relist). A map a compile still reads
    /// is left to it, not copied.
    pub fn replace_kind(&mut self, kind: Kind, objects: Vec<AnyObject>) {
        match kind {
            Kind::Ingress => self.ingresses = Objects::default(),
            Kind::IngressClass => self.ingress_classes = Objects::default(),
            Kind::Service => self.services = Objects::default(),
            Kind::EndpointSlice => self.endpoint_slices = Objects::default(),
            Kind::Endpoints => self.endpoints = Objects::default(),
            Kind::Secret => self.secrets = Objects::default(),
            Kind::ConfigMap => self.config_maps = Objects::default(),
            Kind::GatewayClass => self.gateway_classes = Objects::default(),
            Kind::Gateway => self.gateways = Objects::default(),
            Kind::HTTPRoute => self.http_routes = Objects::default(),
            Kind::GRPCRoute => self.grpc_routes = Objects::default(),
            Kind::TLSRoute => self.tls_routes = Objects::default(),
            Kind::BackendTLSPolicy => self.backend_tls_policies = Objects::default(),
            Kind::ReferenceGrant => self.reference_grants = Objects::default(),
            Kind::Namespace => self.namespaces = Objects::default(),
            Kind::ListenerSet => self.listener_sets = Objects::default(),
        }
        for o in objects {
            self.insert(o);
        }
    }

    /// Inserts or replaces an object.
    pub fn insert(&mut self, obj: AnyObject) {
        let key = obj.key();
        match obj {
            AnyObject::Ingress(o) => {
                let ing = Arc::new(Ing::from(o.as_ref()));
                drop(Arc::make_mut(&mut self.ingresses).insert(key, ing))
            }
            AnyObject::Ing(_, o) => drop(Arc::make_mut(&mut self.ingresses).insert(key, o)),
            AnyObject::IngressClass(o) => drop(Arc::make_mut(&mut self.ingress_classes).insert(key, o)),
            AnyObject::Service(o) => {
                let svc = Arc::new(Svc::from(o.as_ref()));
                drop(Arc::make_mut(&mut self.services).insert(key, svc))
            }
            AnyObject::Svc(_, o) => drop(Arc::make_mut(&mut self.services).insert(key, o)),
            AnyObject::EndpointSlice(o) => {
                let slice = Arc::new(Slice::from(o.as_ref()));
                drop(Arc::make_mut(&mut self.endpoint_slices).insert(key, slice))
            }
            AnyObject::Slice(_, o) => drop(Arc::make_mut(&mut self.endpoint_slices).insert(key, o)),
            AnyObject::Endpoints(o) => drop(Arc::make_mut(&mut self.endpoints).insert(key, o)),
            AnyObject::Secret(o) => drop(Arc::make_mut(&mut self.secrets).insert(key, o)),
            AnyObject::ConfigMap(o) => drop(Arc::make_mut(&mut self.config_maps).insert(key, o)),
            AnyObject::GatewayClass(o) => drop(Arc::make_mut(&mut self.gateway_classes).insert(key, o)),
            AnyObject::Gateway(o) => drop(Arc::make_mut(&mut self.gateways).insert(key, o)),
            AnyObject::HTTPRoute(o) => drop(Arc::make_mut(&mut self.http_routes).insert(key, o)),
            AnyObject::GRPCRoute(o) => drop(Arc::make_mut(&mut self.grpc_routes).insert(key, o)),
            AnyObject::TLSRoute(o) => drop(Arc::make_mut(&mut self.tls_routes).insert(key, o)),
            AnyObject::BackendTLSPolicy(o) => drop(Arc::make_mut(&mut self.backend_tls_policies).insert(key, o)),
            AnyObject::ReferenceGrant(o) => drop(Arc::make_mut(&mut self.reference_grants).insert(key, o)),
            AnyObject::Namespace(o) => drop(Arc::make_mut(&mut self.namespaces).insert(key, o)),
            AnyObject::ListenerSet(o) => drop(Arc::make_mut(&mut self.listener_sets).insert(key, o)),
        }
    }

    /// The Services in `services` with their EndpointSlices and Endpoints, and nothing else:
    /// what re-resolving those Services' backends reads.
    pub fn only_services(&self, services: &std::collections::HashSet<ObjectKey>) -> Snapshot {
        fn pick<T>(m: &BTreeMap<ObjectKey, Arc<T>>, keys: &std::collections::HashSet<ObjectKey>) -> Objects<T> {
            Arc::new(
                keys.iter()
                    .filter_map(|k| m.get_key_value(k).map(|(k, v)| (k.clone(), v.clone())))
                    .collect(),
            )
        }
        let endpoint_slices = self
            .endpoint_slices
            .iter()
            .filter(|(key, slice)| {
                slice
                    .service_key(&key.namespace)
                    .is_some_and(|svc| services.contains(&svc))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Snapshot {
            endpoint_slices: Arc::new(endpoint_slices),
            services: pick(&self.services, services),
            endpoints: pick(&self.endpoints, services),
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ingresses.len()
            + self.ingress_classes.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.endpoints.len()
            + self.secrets.len()
            + self.config_maps.len()
            + self.gateway_classes.len()
            + self.gateways.len()
            + self.http_routes.len()
            + self.grpc_routes.len()
            + self.tls_routes.len()
            + self.backend_tls_policies.len()
            + self.reference_grants.len()
            + self.namespaces.len()
            + self.listener_sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, Prefix};

    /// A Snapshot's clone shares its maps; a change afterwards copies only the changed
    /// kind's map and leaves the clone as it was.
    #[test]
    fn a_snapshot_clone_is_shared_until_a_change() {
        let mut live = fixture::snapshot([
            fixture::service("default", "web").port("http", 80).into(),
            fixture::ingress("default", "site")
                .class("portico")
                .rule("web.example", "/", Prefix, "web", 80)
                .into(),
        ]);
        let compiling = live.clone();
        assert!(Arc::ptr_eq(&live.services, &compiling.services));
        live.insert(fixture::service("default", "api").port("http", 80).into());
        assert!(!Arc::ptr_eq(&live.services, &compiling.services));
        assert!(Arc::ptr_eq(&live.ingresses, &compiling.ingresses));
        assert_eq!((live.services.len(), compiling.services.len()), (2, 1));
        live.replace_kind(Kind::Ingress, Vec::new());
        assert_eq!((live.ingresses.len(), compiling.ingresses.len()), (0, 1));
    }
}
