//! Services as Portico keeps them: only what backends are resolved from.
//!
//! A decoded k8s-openapi `Service` is about 1.3 KB before its strings (an `ObjectMeta`, a
//! `ServiceSpec` of some thirty optional fields, a status); a [`Svc`] is made from it as it
//! arrives and the k8s object is dropped.

use k8s_openapi::api::core::v1::{ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::ObjectKey;

/// One Service, compacted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Svc {
    /// `type: ExternalName`, and its `externalName` (`None` when not given).
    pub external: bool,
    pub external_name: Option<Box<str>>,
    /// `clusterIP` as given (`None`, `""` and `"None"` all mean headless).
    pub cluster_ip: Option<Box<str>>,
    pub ports: Box<[SvcPort]>,
    /// `sessionAffinity: ClientIP`, and the timeout given for it, if any.
    pub client_ip_affinity: bool,
    pub client_ip_timeout: Option<i32>,
    pub publish_not_ready_addresses: bool,
}

/// A Service port: what a backend names it by (number or name), the target an
/// ExternalName Service dials (`None` unless a number), and its `appProtocol`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SvcPort {
    pub name: Option<Box<str>>,
    pub port: i32,
    pub target_port: Option<i32>,
    pub app_protocol: Option<Box<str>>,
}

fn boxed(s: Option<&String>) -> Option<Box<str>> {
    s.map(|s| s.as_str().into())
}

impl Svc {
    /// The port numbered `port`.
    pub fn port_numbered(&self, port: i32) -> Option<&SvcPort> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// The port named `name`.
    pub fn port_named(&self, name: &str) -> Option<&SvcPort> {
        self.ports.iter().find(|p| p.name.as_deref() == Some(name))
    }
}

impl From<&Service> for Svc {
    fn from(s: &Service) -> Self {
        let Some(spec) = s.spec.as_ref() else {
            return Svc::default();
        };
        let client_ip_affinity = spec.session_affinity.as_deref() == Some("ClientIP");
        Svc {
            external: spec.type_.as_deref() == Some("ExternalName"),
            external_name: boxed(spec.external_name.as_ref()),
            cluster_ip: boxed(spec.cluster_ip.as_ref()),
            ports: spec
                .ports
                .iter()
                .flatten()
                .map(|p| SvcPort {
                    name: boxed(p.name.as_ref()),
                    port: p.port,
                    target_port: match p.target_port {
                        Some(IntOrString::Int(n)) => Some(n),
                        _ => None,
                    },
                    app_protocol: boxed(p.app_protocol.as_ref()),
                })
                .collect(),
            client_ip_affinity,
            client_ip_timeout: spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds),
            publish_not_ready_addresses: spec.publish_not_ready_addresses.unwrap_or(false),
        }
    }
}

impl Svc {
    /// The Service as a k8s-openapi object named by `key` again (for manifests written out):
    /// what it kept, nothing more.
    pub fn to_k8s(&self, key: &ObjectKey) -> Service {
        let string = |s: &Option<Box<str>>| s.as_deref().map(str::to_string);
        Service {
            metadata: ObjectMeta {
                namespace: Some(key.namespace.clone()),
                name: Some(key.name.clone()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: self.external.then(|| "ExternalName".to_string()),
                external_name: string(&self.external_name),
                cluster_ip: string(&self.cluster_ip),
                ports: (!self.ports.is_empty()).then(|| {
                    self.ports
                        .iter()
                        .map(|p| ServicePort {
                            name: string(&p.name),
                            port: p.port,
                            target_port: p.target_port.map(IntOrString::Int),
                            app_protocol: string(&p.app_protocol),
                            ..Default::default()
                        })
                        .collect()
                }),
                session_affinity: self.client_ip_affinity.then(|| "ClientIP".to_string()),
                session_affinity_config: self.client_ip_timeout.map(|t| SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig {
                        timeout_seconds: Some(t),
                    }),
                }),
                publish_not_ready_addresses: self.publish_not_ready_addresses.then_some(true),
                ..Default::default()
            }),
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What backend resolution reads survives a round trip; the rest is gone.
    #[test]
    fn a_service_keeps_what_resolution_reads() {
        let k8s: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "labels": {"app": "web"}},
            "spec": {
                "type": "ClusterIP", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "appProtocol": "kubernetes.io/h2c"},
                    {"port": 81, "targetPort": "named"}
                ],
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
                "publishNotReadyAddresses": true
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.9"}]}}
        }))
        .expect("service");
        let s = Svc::from(&k8s);
        assert!(!s.external && s.client_ip_affinity && s.publish_not_ready_addresses);
        assert_eq!(
            (s.cluster_ip.as_deref(), s.client_ip_timeout),
            (Some("10.0.0.1"), Some(600))
        );
        let http = s.port_named("http").expect("http");
        assert_eq!((http.port, http.target_port), (80, Some(8080)));
        assert_eq!(http.app_protocol.as_deref(), Some("kubernetes.io/h2c"));
        assert_eq!(
            s.port_numbered(81).map(|p| (p.name.is_none(), p.target_port)),
            Some((true, None))
        );
        let again = Svc::from(&s.to_k8s(&ObjectKey::new("default", "web")));
        assert_eq!(again, s);
        let external = Svc::from(&Service {
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some("db.example".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(external.external && external.ports.is_empty());
        assert_eq!(external.external_name.as_deref(), Some("db.example"));
    }
}
