//! EndpointSlices as Portico keeps them: only what backend resolution reads.
//!
//! At 10k Services a k8s-openapi `EndpointSlice` of three one-address endpoints cost about
//! 2.3 KB once decoded (an `ObjectMeta`, a B-tree node for its one label, an
//! `ObjectReference` and empty option fields per endpoint). A [`Slice`] is made from it as it
//! arrives and the k8s object is dropped: the Service it belongs to, its ports, and per
//! endpoint the parsed addresses, the three conditions, the target's name and the zone.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ObjectKey;

/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One EndpointSlice, compacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Its `kubernetes.io/service-name` label: without one, a slice serves no Service.
    pub service: Option<Box<str>>,
    /// `addressType: FQDN`: such slices are never dialled (and keep no addresses here).
    pub fqdn: bool,
    /// IPv6 (else IPv4); kept so that a slice can be written back out as it came.
    pub ipv6: bool,
    pub ports: Box<[SlicePort]>,
    pub endpoints: Box<[SliceEndpoint]>,
}

/// A slice's port: the Service port's name (empty when unnamed) and the number to dial;
/// `None` when absent or not a port number (such a port matches its name but is not dialled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    pub name: Box<str>,
    pub port: Option<u16>,
}

/// One endpoint: its addresses that are IP addresses (others are never dialled), its
/// conditions as given (`None`: not set), the name of its target (a Pod) and its zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEndpoint {
    pub addresses: Box<[IpAddr]>,
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
    pub target: Option<Box<str>>,
    pub zone: Option<Box<str>>,
}

impl SliceEndpoint {
    /// Whether it takes new requests: ready (or not said otherwise) and not terminating.
    pub fn is_ready(&self) -> bool {
        self.ready != Some(false) && self.terminating != Some(true)
    }
}

impl Slice {
    /// The Service this slice lists endpoints for, in the slice's namespace `namespace`.
    pub fn service_key(&self, namespace: &str) -> Option<ObjectKey> {
        self.service.as_deref().map(|s| ObjectKey::new(namespace, s))
    }

    /// The port named `name` (empty: unnamed), the first if the slice lists it twice.
    pub fn port(&self, name: &str) -> Option<&SlicePort> {
        self.ports.iter().find(|p| &*p.name == name)
    }
}

fn boxed(s: Option<&String>) -> Option<Box<str>> {
    s.map(|s| s.as_str().into())
}

impl From<&EndpointSlice> for Slice {
    fn from(s: &EndpointSlice) -> Self {
        let fqdn = s.address_type == "FQDN";
        let service = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
        let ports = s
            .ports
            .iter()
            .flatten()
            .map(|p| SlicePort {
                name: p.name.as_deref().unwrap_or("").into(),
                port: p.port.and_then(|n| u16::try_from(n).ok()),
            })
            .collect();
        let endpoints = s
            .endpoints
            .iter()
            .map(|e| {
                let cond = e.conditions.as_ref();
                SliceEndpoint {
                    addresses: if fqdn {
                        Box::default()
                    } else {
                        e.addresses.iter().filter_map(|a| a.parse().ok()).collect()
                    },
                    ready: cond.and_then(|c| c.ready),
                    serving: cond.and_then(|c| c.serving),
                    terminating: cond.and_then(|c| c.terminating),
                    target: boxed(e.target_ref.as_ref().and_then(|r| r.name.as_ref())),
                    zone: boxed(e.zone.as_ref()),
                }
            })
            .collect();
        Slice {
            service: boxed(service),
            fqdn,
            ipv6: s.address_type == "IPv6",
            ports,
            endpoints,
        }
    }
}

impl Slice {
    /// The slice as a k8s-openapi object named by `key` again (for manifests written out):
    /// what it kept, nothing more.
    pub fn to_k8s(&self, key: &ObjectKey) -> EndpointSlice {
        let address_type = match (self.fqdn, self.ipv6) {
            (true, _) => "FQDN",
            (false, true) => "IPv6",
            (false, false) => "IPv4",
        };
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: (!key.namespace.is_empty()).then(|| key.namespace.clone()),
                name: Some(key.name.clone()),
                labels: self
                    .service
                    .as_deref()
                    .map(|s| [(SERVICE_NAME_LABEL.to_string(), s.to_string())].into()),
                ..Default::default()
            },
            address_type: address_type.into(),
            ports: (!self.ports.is_empty()).then(|| {
                self.ports
                    .iter()
                    .map(|p| EndpointPort {
                        name: (!p.name.is_empty()).then(|| p.name.to_string()),
                        port: p.port.map(i32::from),
                        ..Default::default()
                    })
                    .collect()
            }),
            endpoints: self
                .endpoints
                .iter()
                .map(|e| Endpoint {
                    addresses: e.addresses.iter().map(IpAddr::to_string).collect(),
                    conditions: (e.ready.is_some() || e.serving.is_some() || e.terminating.is_some()).then_some(
                        EndpointConditions {
                            ready: e.ready,
                            serving: e.serving,
                            terminating: e.terminating,
                        },
                    ),
                    target_ref: e.target.as_deref().map(|n| ObjectReference {
                        kind: Some("Pod".into()),
                        name: Some(n.to_string()),
                        ..Default::default()
                    }),
                    zone: e.zone.as_deref().map(str::to_string),
                    ..Default::default()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What backend resolution reads survives; what it never reads (node names, hints,
    /// unparseable addresses, other labels) is gone.
    #[test]
    fn a_slice_keeps_what_resolution_reads() {
        let k8s: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-a", "namespace": "default", "uid": "u",
                "labels": {"kubernetes.io/service-name": "web", "app": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"port": 9090}, {"name": "big", "port": 70000}],
            "endpoints": [
                {"addresses": ["192.0.2.1", "not-an-ip"], "nodeName": "n1", "zone": "z1",
                 "targetRef": {"kind": "Pod", "name": "web-1", "uid": "p"},
                 "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["192.0.2.2"]}
            ]
        }))
        .expect("slice");
        let s = Slice::from(&k8s);
        assert_eq!(s.service_key("default"), Some(ObjectKey::new("default", "web")));
        assert!(!s.fqdn && !s.ipv6);
        assert_eq!(s.port("http").and_then(|p| p.port), Some(8080));
        assert_eq!(s.port("").and_then(|p| p.port), Some(9090));
        assert_eq!(s.port("big").map(|p| p.port), Some(None));
        assert_eq!(s.endpoints.len(), 2);
        let e = &s.endpoints[0];
        assert_eq!(*e.addresses, ["192.0.2.1".parse::<IpAddr>().expect("ip")]);
        assert_eq!(
            (e.ready, e.serving, e.terminating),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!((e.target.as_deref(), e.zone.as_deref()), (Some("web-1"), Some("z1")));
        assert!(!e.is_ready() && s.endpoints[1].is_ready());
        // Written back out and read again: the same.
        let again = Slice::from(&s.to_k8s(&ObjectKey::new("default", "web-a")));
        assert_eq!(again, s);
        let fqdn = EndpointSlice {
            address_type: "FQDN".into(),
            endpoints: vec![Endpoint {
                addresses: vec!["db.example".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let f = Slice::from(&fqdn);
        assert!(f.fqdn && f.service.is_none() && f.endpoints[0].addresses.is_empty());
    }
}
