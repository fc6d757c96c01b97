//! Ingresses as Portico keeps them: what compile, status writing and Events read.
//!
//! A decoded k8s-openapi `Ingress` is about 0.6 KB before its strings (an `ObjectMeta` of
//! fifteen optional fields, each path's backend with room for a typed resource reference,
//! each `pathType` its own string); at 10k Ingresses that was about 10 MB of the live heap.
//! An [`Ing`] is made from it as it arrives and the k8s object is dropped. The field names
//! follow the API's, so compile reads it as it read the k8s object.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::ObjectKey;

/// The legacy class annotation, read by name (not under a prefix).
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Prefixes of the annotations compile reads, Portico's own first: `portico.dev/x` wins over
/// the ingress-nginx spelling of the same setting.
pub const ANNOTATION_PREFIXES: [&str; 2] = ["portico.dev/", "nginx.ingress.kubernetes.io/"];

/// One Ingress, compacted. Its namespace and name are the Snapshot's key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ing {
    pub metadata: Meta,
    pub spec: Option<Spec>,
    /// `status.loadBalancer.ingress` as compact JSON (see [`status_json`]), empty when there
    /// is none: what the status writer compares with the addresses it would write.
    pub status: Box<str>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Only the annotations compile reads (see [`Annotations`]).
    pub annotations: Annotations,
    pub creation_timestamp: Option<Time>,
    /// For the Events written about the Ingress.
    pub uid: Option<Box<str>>,
    pub resource_version: Option<Box<str>>,
}

/// The annotations under [`ANNOTATION_PREFIXES`] and `kubernetes.io/ingress.class`, sorted by
/// key; every other annotation (kubectl's, Helm's, other controllers') is dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations(Box<[(Box<str>, Box<str>)]>);

impl Annotations {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| &**k)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn kept(key: &str) -> bool {
        key == CLASS_ANNOTATION || ANNOTATION_PREFIXES.iter().any(|p| key.starts_with(p))
    }
}

impl From<&BTreeMap<String, String>> for Annotations {
    fn from(all: &BTreeMap<String, String>) -> Self {
        // A BTreeMap iterates in key order: the list is sorted for `get`.
        Annotations(
            all.iter()
                .filter(|(k, _)| Self::kept(k))
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    pub ingress_class_name: Option<Box<str>>,
    pub default_backend: Option<Backend>,
    pub rules: Option<Box<[Rule]>>,
    pub tls: Option<Box<[Tls]>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub host: Option<Box<str>>,
    pub http: Option<Http>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Http {
    pub paths: Box<[Path]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub path: Option<Box<str>>,
    /// As given; the three valid values cost no allocation.
    pub path_type: Cow<'static, str>,
    pub backend: Backend,
}

/// A path's or the default backend: a Service port, or a typed resource (which compile
/// refuses with a diagnostic naming its kind and name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub service: Option<ServiceBackend>,
    pub resource: Option<Box<Resource>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceBackend {
    pub name: Box<str>,
    pub port: Option<Port>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Port {
    pub name: Option<Box<str>>,
    pub number: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub kind: Box<str>,
    pub name: Box<str>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    pub hosts: Option<Box<[Box<str>]>>,
    pub secret_name: Option<Box<str>>,
}

fn boxed(s: Option<&String>) -> Option<Box<str>> {
    s.map(|s| s.as_str().into())
}

fn path_type(t: &str) -> Cow<'static, str> {
    match t {
        "Exact" => Cow::Borrowed("Exact"),
        "Prefix" => Cow::Borrowed("Prefix"),
        "ImplementationSpecific" => Cow::Borrowed("ImplementationSpecific"),
        other => Cow::Owned(other.to_string()),
    }
}

impl From<&IngressBackend> for Backend {
    fn from(b: &IngressBackend) -> Self {
        Backend {
            service: b.service.as_ref().map(|s| ServiceBackend {
                name: s.name.as_str().into(),
                port: s.port.as_ref().map(|p| Port {
                    name: boxed(p.name.as_ref()),
                    number: p.number,
                }),
            }),
            resource: b.resource.as_ref().map(|r| {
                Box::new(Resource {
                    kind: r.kind.as_str().into(),
                    name: r.name.as_str().into(),
                })
            }),
        }
    }
}

impl From<&HTTPIngressPath> for Path {
    fn from(p: &HTTPIngressPath) -> Self {
        Path {
            path: boxed(p.path.as_ref()),
            path_type: path_type(&p.path_type),
            backend: Backend::from(&p.backend),
        }
    }
}

impl From<&IngressRule> for Rule {
    fn from(r: &IngressRule) -> Self {
        Rule {
            host: boxed(r.host.as_ref()),
            http: r.http.as_ref().map(|h| Http {
                paths: h.paths.iter().map(Path::from).collect(),
            }),
        }
    }
}

impl From<&IngressTLS> for Tls {
    fn from(t: &IngressTLS) -> Self {
        Tls {
            hosts: t.hosts.as_ref().map(|h| h.iter().map(|h| h.as_str().into()).collect()),
            secret_name: boxed(t.secret_name.as_ref()),
        }
    }
}

impl From<&IngressSpec> for Spec {
    fn from(s: &IngressSpec) -> Self {
        Spec {
            ingress_class_name: boxed(s.ingress_class_name.as_ref()),
            default_backend: s.default_backend.as_ref().map(Backend::from),
            rules: s.rules.as_ref().map(|r| r.iter().map(Rule::from).collect()),
            tls: s.tls.as_ref().map(|t| t.iter().map(Tls::from).collect()),
        }
    }
}

/// `status.loadBalancer.ingress` as the status writer compares it: the entries as JSON
/// values (fields the API leaves out stay out), serialized with sorted keys; empty when
/// the Ingress has none.
pub fn status_json(entries: &[serde_json::Value]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    serde_json::Value::Array(entries.to_vec()).to_string()
}

impl From<&Ingress> for Ing {
    fn from(i: &Ingress) -> Self {
        let m = &i.metadata;
        let entries: Vec<serde_json::Value> = i
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .map(|v| v.iter().filter_map(|e| serde_json::to_value(e).ok()).collect())
            .unwrap_or_default();
        Ing {
            metadata: Meta {
                annotations: m.annotations.as_ref().map(Annotations::from).unwrap_or_default(),
                creation_timestamp: m.creation_timestamp.clone(),
                uid: boxed(m.uid.as_ref()),
                resource_version: boxed(m.resource_version.as_ref()),
            },
            spec: i.spec.as_ref().map(Spec::from),
            status: status_json(&entries).into(),
        }
    }
}

fn string(s: &Option<Box<str>>) -> Option<String> {
    s.as_deref().map(str::to_string)
}

impl Backend {
    fn to_k8s(&self) -> IngressBackend {
        IngressBackend {
            service: self.service.as_ref().map(|s| IngressServiceBackend {
                name: s.name.to_string(),
                port: s.port.as_ref().map(|p| ServiceBackendPort {
                    name: string(&p.name),
                    number: p.number,
                }),
            }),
            resource: self.resource.as_ref().map(|r| TypedLocalObjectReference {
                kind: r.kind.to_string(),
                name: r.name.to_string(),
                ..Default::default()
            }),
        }
    }
}

impl Ing {
    /// The k8s object this was made from, less what was dropped (other annotations, status,
    /// metadata compile does not read): for writing manifests in tests.
    pub fn to_k8s(&self, key: &ObjectKey) -> Ingress {
        let m = &self.metadata;
        let annotations: BTreeMap<String, String> = m
            .annotations
            .0
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ingress {
            metadata: ObjectMeta {
                namespace: Some(key.namespace.clone()),
                name: Some(key.name.clone()),
                annotations: (!annotations.is_empty()).then_some(annotations),
                creation_timestamp: m.creation_timestamp.clone(),
                uid: string(&m.uid),
                resource_version: string(&m.resource_version),
                ..Default::default()
            },
            spec: self.spec.as_ref().map(|s| IngressSpec {
                ingress_class_name: string(&s.ingress_class_name),
                default_backend: s.default_backend.as_ref().map(Backend::to_k8s),
                rules: s.rules.as_ref().map(|r| {
                    r.iter()
                        .map(|r| IngressRule {
                            host: string(&r.host),
                            http: r.http.as_ref().map(|h| HTTPIngressRuleValue {
                                paths: h
                                    .paths
                                    .iter()
                                    .map(|p| HTTPIngressPath {
                                        path: string(&p.path),
                                        path_type: p.path_type.to_string(),
                                        backend: p.backend.to_k8s(),
                                    })
                                    .collect(),
                            }),
                        })
                        .collect()
                }),
                tls: s.tls.as_ref().map(|t| {
                    t.iter()
                        .map(|t| IngressTLS {
                            hosts: t.hosts.as_ref().map(|h| h.iter().map(|h| h.to_string()).collect()),
                            secret_name: string(&t.secret_name),
                        })
                        .collect()
                }),
            }),
            status: None,
        }
    }

    /// Whether `other` reads the same to compile (a status write changes nothing here).
    pub fn same_for_compile(&self, other: &Ing) -> bool {
        self.spec == other.spec
            && self.metadata.annotations == other.metadata.annotations
            && self.metadata.creation_timestamp == other.metadata.creation_timestamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, Prefix};

    #[test]
    fn only_the_annotations_compile_reads_are_kept_and_found() {
        let ing = fixture::ingress("default", "site")
            .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false")
            .annotation("portico.dev/load-balance", "ewma")
            .annotation("kubernetes.io/ingress.class", "portico")
            .annotation("meta.helm.sh/release-name", "site")
            .annotation("kubectl.kubernetes.io/last-applied-configuration", "{}")
            .rule("web.example", "/", Prefix, "web", 80)
            .build();
        let ing = Ing::from(&ing);
        let a = &ing.metadata.annotations;
        assert_eq!(a.get("nginx.ingress.kubernetes.io/ssl-redirect"), Some("false"));
        assert_eq!(a.get("portico.dev/load-balance"), Some("ewma"));
        assert_eq!(a.get("kubernetes.io/ingress.class"), Some("portico"));
        assert_eq!(a.get("meta.helm.sh/release-name"), None);
        assert_eq!(a.keys().count(), 3);
    }

    /// Everything compile reads survives the round trip through the compact form.
    #[test]
    fn what_compile_reads_survives_compaction() {
        let k8s = fixture::ingress("default", "site")
            .class("portico")
            .created("2024-01-01T00:00:00Z")
            .annotation("nginx.ingress.kubernetes.io/rewrite-target", "/$1")
            .rule("web.example", "/", Prefix, "web", 80)
            .path("/named", fixture::Exact, "web", "http")
            .tls(&["web.example"], Some("tls"))
            .default_backend("web", 80)
            .build();
        let ing = Ing::from(&k8s);
        let key = ObjectKey::new("default", "site");
        assert_eq!(Ing::from(&ing.to_k8s(&key)), ing);
        let back = ing.to_k8s(&key);
        assert_eq!(back.spec, k8s.spec);
        assert_eq!(back.metadata.annotations, k8s.metadata.annotations);
        assert_eq!(back.metadata.creation_timestamp, k8s.metadata.creation_timestamp);
    }

    #[test]
    fn status_entries_compare_as_the_writer_builds_them() {
        let mut ing = fixture::ingress("default", "site").build();
        assert_eq!(&*Ing::from(&ing).status, "");
        let written = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}});
        ing.status = serde_json::from_value(written["status"].clone()).expect("status");
        let desired = vec![serde_json::json!({"ip": "203.0.113.10"})];
        assert_eq!(*Ing::from(&ing).status, *status_json(&desired));
        assert_ne!(
            *Ing::from(&ing).status,
            *status_json(&[serde_json::json!({"hostname": "a"})])
        );
    }
}
