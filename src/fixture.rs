//! Test and bench fixtures: typed Ingress, IngressClass, Service, EndpointSlice and Secret objects built in one line each, as a Snapshot or as YAML manifests.
//!
//! ```text
//! let objects = [
//!     fixture::portico_class().into(),
//!     fixture::service("default", "web").port("http", 80).into(),
//!     fixture::slice("default", "web-1", "web").port("http", 8080).endpoint("10.0.0.1").into(),
//!     fixture::ingress("default", "site").class("portico").rule("foo.com", "/", Prefix, "web", 80).into(),
//! ];
//! let snapshot = fixture::snapshot(objects.clone());   // unit tests and benches
//! let text = fixture::yaml(&objects);                  // a manifests file for a portico process
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ClientIPConfig, ConfigMap, ObjectReference, Secret, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model::{AnyObject, Snapshot};

pub use PathType::{Exact, ImplementationSpecific, Prefix};

/// The controller name Portico claims IngressClasses for by default.
pub const CONTROLLER: &str = "portico.dev/ingress-controller";

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
        name: Some(name.to_string()),
        ..Default::default()
    }
}

/// An Ingress path type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
}

impl PathType {
    pub fn as_str(self) -> &'static str {
        match self {
            Exact => "Exact",
            Prefix => "Prefix",
            ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

/// A Service port as an Ingress backend or a `targetPort` names it: by number or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Port {
    Number(i32),
    Name(String),
}

impl From<i32> for Port {
    fn from(n: i32) -> Self {
        Port::Number(n)
    }
}

impl From<u16> for Port {
    fn from(n: u16) -> Self {
        Port::Number(n.into())
    }
}

impl From<&str> for Port {
    fn from(name: &str) -> Self {
        Port::Name(name.to_string())
    }
}

fn backend(service: &str, port: impl Into<Port>) -> IngressBackend {
    let port = match port.into() {
        Port::Number(n) => ServiceBackendPort {
            number: Some(n),
            name: None,
        },
        Port::Name(name) => ServiceBackendPort {
            number: None,
            name: Some(name),
        },
    };
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.to_string(),
            port: Some(port),
        }),
        resource: None,
    }
}

// ---------------------------------------------------------------- IngressClass

/// An IngressClass `name` of `controller`.
pub fn ingress_class(name: &str, controller: &str) -> IngressClass {
    IngressClass {
        metadata: meta("", name),
        spec: Some(IngressClassSpec {
            controller: Some(controller.to_string()),
            parameters: None,
        }),
    }
}

/// The IngressClass `portico` of Portico's default controller name.
pub fn portico_class() -> IngressClass {
    ingress_class("portico", CONTROLLER)
}

// ---------------------------------------------------------------- Ingress

/// An Ingress under construction; see [`ingress`].
#[derive(Clone, Debug)]
pub struct IngressBuilder(pub Ingress);

/// An Ingress `namespace/name` without class, rules or TLS.
pub fn ingress(namespace: &str, name: &str) -> IngressBuilder {
    IngressBuilder(Ingress {
        metadata: meta(namespace, name),
        spec: Some(IngressSpec::default()),
        ..Default::default()
    })
}

impl IngressBuilder {
    fn spec(&mut self) -> &mut IngressSpec {
        self.0.spec.get_or_insert_default()
    }

    /// `spec.ingressClassName`.
    pub fn class(mut self, class: &str) -> Self {
        self.spec().ingress_class_name = Some(class.to_string());
        self
    }

    /// `metadata.creationTimestamp`, RFC 3339 (`2024-01-01T00:00:00Z`).
    pub fn created(mut self, rfc3339: &str) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(rfc3339.parse().expect("an RFC 3339 time")));
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(key.to_string(), value.to_string());
        self
    }

    /// One rule: `host` (empty: every host) and one path → Service `service` at `port`.
    pub fn rule(mut self, host: &str, path: &str, ty: PathType, service: &str, port: impl Into<Port>) -> Self {
        self.spec().rules.get_or_insert_default().push(IngressRule {
            host: (!host.is_empty()).then(|| host.to_string()),
            http: Some(HTTPIngressRuleValue::default()),
        });
        self.path(path, ty, service, port)
    }

    /// One more path on the last rule: `path` → Service `service` at `port`.
    pub fn path(mut self, path: &str, ty: PathType, service: &str, port: impl Into<Port>) -> Self {
        let rule = self
            .spec()
            .rules
            .get_or_insert_default()
            .last_mut()
            .expect("a rule() before its paths");
        rule.http.get_or_insert_default().paths.push(HTTPIngressPath {
            path: Some(path.to_string()),
            path_type: ty.as_str().to_string(),
            backend: backend(service, port),
        });
        self
    }

    /// `spec.defaultBackend`: Service `service` at `port`.
    pub fn default_backend(mut self, service: &str, port: impl Into<Port>) -> Self {
        self.spec().default_backend = Some(backend(service, port));
        self
    }

    /// One `spec.tls` entry: `hosts` with the Secret `secret` (None: no secretName).
    pub fn tls(mut self, hosts: &[&str], secret: Option<&str>) -> Self {
        self.spec().tls.get_or_insert_default().push(IngressTLS {
            hosts: Some(hosts.iter().map(|h| h.to_string()).collect()),
            secret_name: secret.map(str::to_string),
        });
        self
    }

    pub fn build(self) -> Ingress {
        self.0
    }

    /// As the Snapshot keeps it (see [`crate::model::ingress`]).
    pub fn ing(self) -> crate::model::Ing {
        crate::model::Ing::from(&self.0)
    }
}

// ---------------------------------------------------------------- Service

/// A Service under construction; see [`service`].
#[derive(Clone, Debug)]
pub struct ServiceBuilder(pub Service);

/// A Service `namespace/name` without ports (type ClusterIP, as the API server defaults it).
pub fn service(namespace: &str, name: &str) -> ServiceBuilder {
    ServiceBuilder(Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec::default()),
        ..Default::default()
    })
}

impl ServiceBuilder {
    fn spec(&mut self) -> &mut ServiceSpec {
        self.0.spec.get_or_insert_default()
    }

    fn last_port(&mut self) -> &mut ServicePort {
        self.spec()
            .ports
            .get_or_insert_default()
            .last_mut()
            .expect("a port() before its details")
    }

    /// A port `port` named `name` (empty: unnamed).
    pub fn port(mut self, name: &str, port: i32) -> Self {
        self.spec().ports.get_or_insert_default().push(ServicePort {
            name: (!name.is_empty()).then(|| name.to_string()),
            port,
            ..Default::default()
        });
        self
    }

    /// The last port's `targetPort`, by number or name.
    pub fn target_port(mut self, target: impl Into<Port>) -> Self {
        self.last_port().target_port = Some(match target.into() {
            Port::Number(n) => IntOrString::Int(n),
            Port::Name(s) => IntOrString::String(s),
        });
        self
    }

    /// The last port's `appProtocol`.
    pub fn app_protocol(mut self, protocol: &str) -> Self {
        self.last_port().app_protocol = Some(protocol.to_string());
        self
    }

    /// `type: ExternalName` for `host`.
    pub fn external_name(mut self, host: &str) -> Self {
        let spec = self.spec();
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some(host.to_string());
        self
    }

    /// `sessionAffinity: ClientIP`, with `timeoutSeconds` when given.
    pub fn client_ip_affinity(mut self, timeout_seconds: Option<i32>) -> Self {
        let spec = self.spec();
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config = timeout_seconds.map(|t| SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(t),
            }),
        });
        self
    }

    /// `publishNotReadyAddresses: true`.
    pub fn publish_not_ready(mut self) -> Self {
        self.spec().publish_not_ready_addresses = Some(true);
        self
    }

    pub fn build(self) -> Service {
        self.0
    }
}

// ---------------------------------------------------------------- EndpointSlice

/// An EndpointSlice under construction; see [`slice`].
#[derive(Clone, Debug)]
pub struct SliceBuilder(pub EndpointSlice);

/// An IPv4 EndpointSlice `namespace/name` labelled for Service `service`, without ports or
/// endpoints.
pub fn slice(namespace: &str, name: &str, service: &str) -> SliceBuilder {
    let mut metadata = meta(namespace, name);
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        service.to_string(),
    )]));
    SliceBuilder(EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: Vec::new(),
        ports: None,
    })
}

impl SliceBuilder {
    /// `addressType` (IPv4 unless set).
    pub fn address_type(mut self, ty: &str) -> Self {
        self.0.address_type = ty.to_string();
        self
    }

    /// A port `port` named `name` (empty: unnamed, which matches an unnamed Service port).
    pub fn port(mut self, name: &str, port: i32) -> Self {
        self.0.ports.get_or_insert_default().push(EndpointPort {
            name: (!name.is_empty()).then(|| name.to_string()),
            port: Some(port),
            ..Default::default()
        });
        self
    }

    /// An endpoint with one address and no conditions (which Kubernetes reads as ready).
    pub fn endpoint(mut self, address: &str) -> Self {
        self.0.endpoints.push(Endpoint {
            addresses: vec![address.to_string()],
            ..Default::default()
        });
        self
    }

    fn conditions(&mut self) -> &mut EndpointConditions {
        self.0
            .endpoints
            .last_mut()
            .expect("an endpoint() before its conditions")
            .conditions
            .get_or_insert_default()
    }

    /// The last endpoint's `conditions.ready`.
    pub fn ready(mut self, ready: bool) -> Self {
        self.conditions().ready = Some(ready);
        self
    }

    /// The last endpoint's `conditions.serving`.
    pub fn serving(mut self, serving: bool) -> Self {
        self.conditions().serving = Some(serving);
        self
    }

    /// The last endpoint's `conditions.terminating`.
    pub fn terminating(mut self, terminating: bool) -> Self {
        self.conditions().terminating = Some(terminating);
        self
    }

    /// The last endpoint's `targetRef`: the Pod `name`.
    pub fn pod(mut self, name: &str) -> Self {
        let endpoint = self.0.endpoints.last_mut().expect("an endpoint() before its pod");
        endpoint.target_ref = Some(ObjectReference {
            kind: Some("Pod".into()),
            name: Some(name.to_string()),
            ..Default::default()
        });
        self
    }

    pub fn build(self) -> EndpointSlice {
        self.0
    }
}

// ---------------------------------------------------------------- Secret

/// The directory of the PEM files the tests share (RSA PKCS#1/PKCS#8, EC SEC1, a chain).
pub const TLS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/");

/// A `kubernetes.io/tls` Secret holding `crt` and `key` (PEM text, or anything else to test
/// what a broken Secret does).
pub fn tls_secret(namespace: &str, name: &str, crt: &str, key: &str) -> Secret {
    Secret {
        metadata: meta(namespace, name),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(crt.as_bytes().to_vec())),
            ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

/// [`tls_secret`] from the files `crt` and `key` of [`TLS_DIR`] (`rsa.crt`, `ec-sec1.key`, …).
pub fn tls_secret_files(namespace: &str, name: &str, crt: &str, key: &str) -> Secret {
    let read = |f: &str| std::fs::read_to_string(format!("{TLS_DIR}{f}")).unwrap_or_else(|e| panic!("{f}: {e}"));
    tls_secret(namespace, name, &read(crt), &read(key))
}

/// An Opaque Secret holding `fields` (a basic-auth `auth` htpasswd file, or one key per user).
pub fn opaque_secret(namespace: &str, name: &str, fields: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: meta(namespace, name),
        type_: Some("Opaque".into()),
        data: Some(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- collections

impl From<Ingress> for AnyObject {
    fn from(o: Ingress) -> Self {
        AnyObject::Ingress(Arc::new(o))
    }
}

impl From<IngressClass> for AnyObject {
    fn from(o: IngressClass) -> Self {
        AnyObject::IngressClass(Arc::new(o))
    }
}

impl From<Service> for AnyObject {
    fn from(o: Service) -> Self {
        AnyObject::Service(Arc::new(o))
    }
}

impl From<EndpointSlice> for AnyObject {
    fn from(o: EndpointSlice) -> Self {
        AnyObject::EndpointSlice(Arc::new(o))
    }
}

impl From<Secret> for AnyObject {
    fn from(o: Secret) -> Self {
        AnyObject::Secret(Arc::new(o))
    }
}

impl From<ConfigMap> for AnyObject {
    fn from(o: ConfigMap) -> Self {
        AnyObject::ConfigMap(Arc::new(o))
    }
}

/// A ConfigMap with `data`.
pub fn config_map(namespace: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    }
}

impl From<IngressBuilder> for AnyObject {
    fn from(b: IngressBuilder) -> Self {
        b.0.into()
    }
}

impl From<ServiceBuilder> for AnyObject {
    fn from(b: ServiceBuilder) -> Self {
        b.0.into()
    }
}

impl From<SliceBuilder> for AnyObject {
    fn from(b: SliceBuilder) -> Self {
        b.0.into()
    }
}

/// A Snapshot holding `objects` (a later object replaces an earlier one of the same key).
pub fn snapshot(objects: impl IntoIterator<Item = AnyObject>) -> Snapshot {
    let mut s = Snapshot::default();
    objects.into_iter().for_each(|o| s.insert(o));
    s
}

/// `objects` as one multi-document YAML manifest, as `kubectl apply -f` and
/// `portico --manifests` read it.
pub fn yaml(objects: &[AnyObject]) -> String {
    fn doc<T: serde::Serialize>(o: &T) -> String {
        serde_saphyr::to_string(o).expect("objects serialize")
    }
    // The hand-written Gateway API types carry no apiVersion and kind of their own.
    fn gateway_doc<T: serde::Serialize + k8s_openapi::Resource>(o: &T) -> String {
        let mut v = serde_json::to_value(o).expect("objects serialize");
        v["apiVersion"] = T::API_VERSION.into();
        v["kind"] = T::KIND.into();
        doc(&v)
    }
    objects
        .iter()
        .map(|o| {
            let text = match o {
                AnyObject::Ingress(o) => doc(o.as_ref()),
                AnyObject::Ing(key, o) => doc(&o.to_k8s(key)),
                AnyObject::IngressClass(o) => doc(o.as_ref()),
                AnyObject::Service(o) => doc(o.as_ref()),
                AnyObject::EndpointSlice(o) => doc(o.as_ref()),
                AnyObject::Slice(key, o) => doc(&o.to_k8s(key)),
                AnyObject::Svc(key, o) => doc(&o.to_k8s(key)),
                AnyObject::Endpoints(o) => doc(o.as_ref()),
                AnyObject::Secret(o) => doc(o.as_ref()),
                AnyObject::ConfigMap(o) => doc(o.as_ref()),
                AnyObject::Namespace(o) => doc(o.as_ref()),
                AnyObject::GatewayClass(o) => gateway_doc(o.as_ref()),
                AnyObject::Gateway(o) => gateway_doc(o.as_ref()),
                AnyObject::HTTPRoute(o) => gateway_doc(o.as_ref()),
                AnyObject::GRPCRoute(o) => gateway_doc(o.as_ref()),
                AnyObject::TLSRoute(o) => gateway_doc(o.as_ref()),
                AnyObject::BackendTLSPolicy(o) => gateway_doc(o.as_ref()),
                AnyObject::ReferenceGrant(o) => gateway_doc(o.as_ref()),
                AnyObject::ListenerSet(o) => gateway_doc(o.as_ref()),
            };
            format!("---\n{text}")
        })
        .collect()
}

/// A self-signed certificate for `name` in PEM (a CA to put in a Secret's `ca.crt`).
pub fn self_signed_pem(name: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("a key");
    rcgen::CertificateParams::new(vec![name.to_string()])
        .and_then(|p| p.self_signed(&key))
        .expect("a certificate")
        .pem()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::files::parse_manifests;

    fn same(a: &AnyObject, b: &AnyObject) -> bool {
        match (a, b) {
            (AnyObject::Ingress(a), AnyObject::Ingress(b)) => a == b,
            (AnyObject::IngressClass(a), AnyObject::IngressClass(b)) => a == b,
            (AnyObject::Service(a), AnyObject::Service(b)) => a == b,
            (AnyObject::EndpointSlice(a), AnyObject::EndpointSlice(b)) => a == b,
            (AnyObject::Secret(a), AnyObject::Secret(b)) => a == b,
            (AnyObject::ConfigMap(a), AnyObject::ConfigMap(b)) => a == b,
            _ => false,
        }
    }

    #[test]
    fn yaml_round_trips_through_the_manifests_parser() {
        let objects: Vec<AnyObject> = vec![
            portico_class().into(),
            ingress("default", "i")
                .class("portico")
                .created("2024-01-01T00:00:00Z")
                // Values YAML would read as other types unless quoted.
                .annotation("a/bool", "true")
                .annotation("a/yes", "y")
                .annotation("a/on", "on")
                .annotation("a/number", "1")
                .annotation("a/null", "null")
                .annotation("a/tilde", "~")
                .annotation("a/float", "1.5")
                .annotation("a/colon", "a: b # c")
                .annotation("a/multi", "line one\nline two\n")
                .rule("*.foo.com", "/", Prefix, "a", 80)
                .rule("", "/x{id}", Exact, "b", "http")
                .path("/y", ImplementationSpecific, "b", 8080)
                .default_backend("c", "http")
                .tls(&["*.foo.com"], Some("s"))
                .tls(&["bar.com"], None)
                .into(),
            service("default", "a")
                .port("http", 80)
                .target_port("web")
                .app_protocol("kubernetes.io/h2c")
                .port("", 9000)
                .target_port(9001)
                .client_ip_affinity(Some(5))
                .publish_not_ready()
                .into(),
            service("default", "b").external_name("api.example.org").into(),
            slice("default", "a-1", "a")
                .address_type("IPv6")
                .port("http", 8080)
                .endpoint("fd00::1")
                .ready(false)
                .serving(true)
                .terminating(true)
                .pod("a-pod")
                .endpoint("fd00::2")
                .into(),
            tls_secret_files("default", "s", "ec.crt", "ec-sec1.key").into(),
            config_map("ingress-nginx", "c", &[("hsts", "false"), ("proxy-body-size", "8m")]).into(),
        ];
        let text = yaml(&objects);
        let parsed = parse_manifests(&text).expect("the rendered YAML parses");
        assert_eq!(parsed.len(), objects.len(), "{text}");
        for (a, b) in objects.iter().zip(&parsed) {
            assert!(same(a, b), "{a:?}\n!=\n{b:?}\n{text}");
        }
    }
}
