//! The Snapshot: every Kubernetes object compile() reads, typed and keyed by namespace/name.

pub mod gateway;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::Serialize;

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

/// Everything compile() looks at. Objects are shared (`Arc`) so that sources can hand over
/// what their caches already hold without copying.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub ingresses: BTreeMap<ObjectKey, Arc<Ingress>>,
    /// Cluster-scoped: keyed with an empty namespace.
    pub ingress_classes: BTreeMap<ObjectKey, Arc<IngressClass>>,
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    pub endpoint_slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    pub endpoints: BTreeMap<ObjectKey, Arc<Endpoints>>,
    pub secrets: BTreeMap<ObjectKey, Arc<Secret>>,
    /// The `--configmap` and the ConfigMaps its keys and annotations name (`add-headers`,
    /// `custom-headers`, ...).
    pub config_maps: BTreeMap<ObjectKey, Arc<ConfigMap>>,
    /// Gateway API objects (see [`gateway`]); GatewayClasses are cluster-scoped.
    pub gateway_classes: BTreeMap<ObjectKey, Arc<gateway::GatewayClass>>,
    pub gateways: BTreeMap<ObjectKey, Arc<gateway::Gateway>>,
    pub http_routes: BTreeMap<ObjectKey, Arc<gateway::HTTPRoute>>,
    pub grpc_routes: BTreeMap<ObjectKey, Arc<gateway::GRPCRoute>>,
    pub tls_routes: BTreeMap<ObjectKey, Arc<gateway::TLSRoute>>,
    pub backend_tls_policies: BTreeMap<ObjectKey, Arc<gateway::BackendTLSPolicy>>,
    pub reference_grants: BTreeMap<ObjectKey, Arc<gateway::ReferenceGrant>>,
    pub listener_sets: BTreeMap<ObjectKey, Arc<gateway::ListenerSet>>,
    /// Namespaces (cluster-scoped), for a listener's `allowedRoutes` namespace selector;
    /// only read when the Gateway API is.
    pub namespaces: BTreeMap<ObjectKey, Arc<Namespace>>,
}

/// One object of any kind Portico reads, as it arrives from a source.
#[derive(Clone, Debug)]
pub enum AnyObject {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
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
            AnyObject::IngressClass(o) => ObjectKey::new("", o.metadata.name.clone().unwrap_or_default()),
            AnyObject::Service(o) => key_of(o.as_ref()),
            AnyObject::EndpointSlice(o) => key_of(o.as_ref()),
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
            Kind::Ingress => drop(self.ingresses.remove(key)),
            Kind::IngressClass => drop(self.ingress_classes.remove(key)),
            Kind::Service => drop(self.services.remove(key)),
            Kind::EndpointSlice => drop(self.endpoint_slices.remove(key)),
            Kind::Endpoints => drop(self.endpoints.remove(key)),
            Kind::Secret => drop(self.secrets.remove(key)),
            Kind::ConfigMap => drop(self.config_maps.remove(key)),
            Kind::GatewayClass => drop(self.gateway_classes.remove(key)),
            Kind::Gateway => drop(self.gateways.remove(key)),
            Kind::HTTPRoute => drop(self.http_routes.remove(key)),
            Kind::GRPCRoute => drop(self.grpc_routes.remove(key)),
            Kind::TLSRoute => drop(self.tls_routes.remove(key)),
            Kind::BackendTLSPolicy => drop(self.backend_tls_policies.remove(key)),
            Kind::ReferenceGrant => drop(self.reference_grants.remove(key)),
            Kind::Namespace => drop(self.namespaces.remove(key)),
            Kind::ListenerSet => drop(self.listener_sets.remove(key)),
        }
    }

    /// Replaces every object of one kind (after a full relist).
    pub fn replace_kind(&mut self, kind: Kind, objects: Vec<AnyObject>) {
        match kind {
            Kind::Ingress => self.ingresses.clear(),
            Kind::IngressClass => self.ingress_classes.clear(),
            Kind::Service => self.services.clear(),
            Kind::EndpointSlice => self.endpoint_slices.clear(),
            Kind::Endpoints => self.endpoints.clear(),
            Kind::Secret => self.secrets.clear(),
            Kind::ConfigMap => self.config_maps.clear(),
            Kind::GatewayClass => self.gateway_classes.clear(),
            Kind::Gateway => self.gateways.clear(),
            Kind::HTTPRoute => self.http_routes.clear(),
            Kind::GRPCRoute => self.grpc_routes.clear(),
            Kind::TLSRoute => self.tls_routes.clear(),
            Kind::BackendTLSPolicy => self.backend_tls_policies.clear(),
            Kind::ReferenceGrant => self.reference_grants.clear(),
            Kind::Namespace => self.namespaces.clear(),
            Kind::ListenerSet => self.listener_sets.clear(),
        }
        for o in objects {
            self.insert(o);
        }
    }

    /// Inserts or replaces an object.
    pub fn insert(&mut self, obj: AnyObject) {
        let key = obj.key();
        match obj {
            AnyObject::Ingress(o) => drop(self.ingresses.insert(key, o)),
            AnyObject::IngressClass(o) => drop(self.ingress_classes.insert(key, o)),
            AnyObject::Service(o) => drop(self.services.insert(key, o)),
            AnyObject::EndpointSlice(o) => drop(self.endpoint_slices.insert(key, o)),
            AnyObject::Endpoints(o) => drop(self.endpoints.insert(key, o)),
            AnyObject::Secret(o) => drop(self.secrets.insert(key, o)),
            AnyObject::ConfigMap(o) => drop(self.config_maps.insert(key, o)),
            AnyObject::GatewayClass(o) => drop(self.gateway_classes.insert(key, o)),
            AnyObject::Gateway(o) => drop(self.gateways.insert(key, o)),
            AnyObject::HTTPRoute(o) => drop(self.http_routes.insert(key, o)),
            AnyObject::GRPCRoute(o) => drop(self.grpc_routes.insert(key, o)),
            AnyObject::TLSRoute(o) => drop(self.tls_routes.insert(key, o)),
            AnyObject::BackendTLSPolicy(o) => drop(self.backend_tls_policies.insert(key, o)),
            AnyObject::ReferenceGrant(o) => drop(self.reference_grants.insert(key, o)),
            AnyObject::Namespace(o) => drop(self.namespaces.insert(key, o)),
            AnyObject::ListenerSet(o) => drop(self.listener_sets.insert(key, o)),
        }
    }

    /// The Services in `services` with their EndpointSlices and Endpoints, and nothing else:
    /// what re-resolving those Services' backends reads.
    pub fn only_services(&self, services: &std::collections::HashSet<ObjectKey>) -> Snapshot {
        fn pick<T>(
            m: &BTreeMap<ObjectKey, Arc<T>>,
            keys: &std::collections::HashSet<ObjectKey>,
        ) -> BTreeMap<ObjectKey, Arc<T>> {
            keys.iter()
                .filter_map(|k| m.get_key_value(k).map(|(k, v)| (k.clone(), v.clone())))
                .collect()
        }
        let endpoint_slices = self
            .endpoint_slices
            .iter()
            .filter(|(key, slice)| {
                slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    .is_some_and(|svc| services.contains(&ObjectKey::new(key.namespace.as_str(), svc.as_str())))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Snapshot {
            services: pick(&self.services, services),
            endpoints: pick(&self.endpoints, services),
            endpoint_slices,
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
