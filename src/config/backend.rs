//! Backends as compiled: a Service port, the endpoints to dial and how to talk to them.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::model::ObjectKey;

/// How an Ingress names the Service port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum PortRef {
    Number(i32),
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => f.write_str(n),
        }
    }
}

/// One pod (or hand-made) endpoint to dial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The target (usually a Pod) name, when the slice says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// Where a backend's traffic goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Target {
    /// Pod endpoints. `ready` is the normal rotation; `terminating` endpoints (still serving)
    /// are kept apart for sticky sessions that point at them.
    Endpoints {
        ready: Arc<[Endpoint]>,
        terminating: Arc<[Endpoint]>,
    },
    /// An ExternalName Service: dialled by DNS name.
    ExternalName { host: String, port: u16 },
    /// The Service or its port does not exist: requests get 503.
    Unavailable { reason: String },
}

/// A Service port as the data plane sees it. Shared (`Arc`) by every route that uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backend {
    pub service: ObjectKey,
    pub port: PortRef,
    pub target: Target,
    /// `spec.sessionAffinity: ClientIP` timeout, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip_affinity: Option<u32>,
    /// The Service port's `appProtocol`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// How to talk to the endpoints, from `appProtocol` (an Ingress may override it).
    pub protocol: Protocol,
    /// `service-upstream`: the one endpoint is the Service's cluster IP and port (a service
    /// mesh or kube-proxy balances), not its pods.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub service_upstream: bool,
}

impl Backend {
    /// A backend that answers 503: the Service or its port is missing or unusable.
    pub fn unavailable(service: ObjectKey, port: PortRef, reason: String) -> Backend {
        Backend {
            service,
            port,
            target: Target::Unavailable { reason },
            client_ip_affinity: None,
            app_protocol: None,
            protocol: Protocol::Http,
            service_upstream: false,
        }
    }

    /// The normal rotation; empty for ExternalName and unavailable backends.
    pub fn ready(&self) -> &[Endpoint] {
        match &self.target {
            Target::Endpoints { ready, .. } => ready,
            _ => &[],
        }
    }

    /// Endpoints that serve only sessions pinned to them.
    pub fn terminating(&self) -> &[Endpoint] {
        match &self.target {
            Target::Endpoints { terminating, .. } => terminating,
            _ => &[],
        }
    }

    /// Whether `other` names the same Service port (a later Config's version of this one).
    pub fn same_port(&self, other: &Backend) -> bool {
        self.service == other.service && self.port == other.port
    }
}

/// Index of a backend in `Config::backends`. Routes name their backend by index, so that a
/// change to endpoints alone can swap the backends under an unchanged route table.
pub type BackendId = usize;

/// How Portico talks to an upstream: the Service port's `appProtocol` or the Ingress's
/// `backend-protocol` annotation decide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum Protocol {
    /// HTTP/1.1 over TCP.
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    /// HTTP/1.1 over TLS.
    #[serde(rename = "HTTPS")]
    Https,
    /// HTTP/2 over TCP with prior knowledge (gRPC without TLS).
    #[serde(rename = "H2C")]
    H2c,
    /// HTTP/2 over TLS (gRPC with TLS).
    #[serde(rename = "H2")]
    H2,
}

impl Protocol {
    /// From a Service port's `appProtocol`: `kubernetes.io/h2c` and `https` change the
    /// default; anything else (or nothing) is HTTP/1.1.
    pub fn from_app_protocol(p: Option<&str>) -> Protocol {
        match p.map(|p| p.to_ascii_lowercase()).as_deref() {
            Some("kubernetes.io/h2c") => Protocol::H2c,
            Some("https" | "kubernetes.io/https") => Protocol::Https,
            _ => Protocol::Http,
        }
    }

    /// From the `backend-protocol` annotation (ingress-nginx's values).
    pub fn from_annotation(v: &str) -> Option<Protocol> {
        match v.to_ascii_uppercase().as_str() {
            "HTTP" => Some(Protocol::Http),
            "HTTPS" => Some(Protocol::Https),
            "GRPC" | "H2C" => Some(Protocol::H2c),
            "GRPCS" => Some(Protocol::H2),
            _ => None,
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::H2)
    }

    pub fn http2(self) -> bool {
        matches!(self, Protocol::H2c | Protocol::H2)
    }
}
