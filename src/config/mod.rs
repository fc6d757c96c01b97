//! The compiled configuration: plain data that compile() produces and the data plane reads.
//! It holds no sockets, counters, cursors or locks, imports nothing but the model, and two
//! Configs compare with `==` meaning "serve the same".

pub mod access_log;
pub mod auth;
pub mod backend;
pub mod canary;
mod cidr;
pub mod compress;
pub mod diagnostic;
pub mod errors;
pub mod filters;
pub mod frontend_tls;
pub mod gateway;
pub mod global;
pub mod hash;
pub mod headers;
pub mod host_tls;
pub mod limits;
pub mod listeners;
pub mod mirror;
pub mod mtls;
pub mod otel;
pub mod pattern;
pub mod policy;
pub mod rate;
pub mod response;
pub mod retry;
pub mod route;
pub mod sni;
pub mod sni_gate;
pub mod tls;
pub mod tls_options;
pub mod upstream_tls;
pub mod vars;

use std::collections::HashMap;
use std::sync::Arc;

pub use backend::{Backend, BackendId, Endpoint, PortRef, Protocol, Target};
pub use cidr::{Cidr, Trusted};
pub use diagnostic::{Diagnostic, Severity};
pub use policy::Policy;
pub use route::{HostPattern, Route, RouteTable};
pub use tls::CertStore;

use crate::model::ObjectKey;

/// The compiled configuration: published whole, so that one load gives a request a
/// consistent view of routes, certificates and backends.
#[derive(Debug, Default)]
pub struct Config {
    /// Set by the publisher: 1 for the first Config, +1 for each later one.
    pub generation: u64,
    /// The lookup index over `route_list` (host → path → route). Shared with later Configs
    /// whose Ingresses did not change.
    pub routes: Arc<RouteTable>,
    pub certs: Arc<CertStore>,
    /// Host → client-certificate policy (`auth-tls-*`), which the TLS handshake's SNI picks.
    pub client_auth: Arc<mtls::ClientAuthStore>,
    /// Every route, in the order compile() admitted them (`Route::id` is the index here).
    pub route_list: Arc<Vec<Arc<Route>>>,
    /// Every backend a route uses, indexed by `Route::backend`.
    pub backends: Vec<Arc<Backend>>,
    /// Ingresses of ours that were compiled. (This and the fields around it are shared with
    /// the Configs of later endpoints-only recompiles, which do not change them.)
    pub admitted: Arc<Vec<ObjectKey>>,
    /// Ingresses that are not ours, and why (for "why isn't my Ingress served?").
    pub ignored: Arc<Vec<(ObjectKey, String)>>,
    pub diagnostics: Arc<Vec<Diagnostic>>,
    /// Passthrough hosts → the index in `backends` their TLS connections are spliced to,
    /// unterminated: `ssl-passthrough` Ingress hosts (exact, lower-case; only with
    /// `--enable-ssl-passthrough`) and TLSRoute hosts (also `*.suffix`, any number of labels,
    /// and `*`, every name). Read through [`Config::passthrough_backend`].
    pub passthrough: Arc<HashMap<String, usize>>,
    /// `--limits-per-cluster`: how many replicas share each route's limits.
    pub replicas: limits::Replicas,
    /// Controller-wide settings: the command line's, overridden by the `--configmap`.
    pub global: Arc<global::Global>,
    /// Response compression (gzip, brotli); `None` when both are off, so the request path
    /// tests one `Option`.
    pub compression: Option<Arc<compress::Compression>>,
    /// Hosts with their own `ssl-ciphers`/`ssl-prefer-server-ciphers`, which the SNI picks.
    pub host_tls: Arc<host_tls::HostTlsStore>,
    /// What compile decided about Gateway API objects (status, route origins).
    pub gateway: Arc<gateway::Report>,
    /// The ports Gateway listeners are served on, each with its listeners' routes; `None`
    /// without any, so that the request path tests one `Option`.
    pub gateway_listeners: Option<Arc<listeners::Points>>,
    /// Gateway TLS listeners' claims on SNI names and Gateways' own target ports (gwtls).
    pub sni_gate: Arc<sni_gate::SniGate>,
}

/// What [`Config::sni_start`] decides for a TLS connection.
#[derive(Debug)]
pub enum SniStart<'a> {
    /// Spliced unterminated to this backend's pods.
    Splice(&'a Arc<Backend>),
    /// Closed after the ClientHello, without a TLS alert (no certificate is shown).
    Refuse,
    /// Terminated here.
    Terminate,
}

/// Equal Configs serve the same. The route table is left out: it is an index built from
/// `route_list` alone, in its order, so equal lists give equal tables.
impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        self.generation == other.generation
            && self.route_list == other.route_list
            && self.backends == other.backends
            && self.certs == other.certs
            && self.client_auth == other.client_auth
            && self.admitted == other.admitted
            && self.ignored == other.ignored
            && self.diagnostics == other.diagnostics
            && self.passthrough == other.passthrough
            && self.replicas == other.replicas
            && self.global == other.global
            && self.compression == other.compression
            && self.host_tls == other.host_tls
            && self.gateway == other.gateway
            && self.gateway_listeners == other.gateway_listeners
            && self.sni_gate == other.sni_gate
    }
}

impl Config {
    /// The backend a route sends to.
    pub fn backend(&self, route: &Route) -> Option<&Arc<Backend>> {
        self.backends.get(route.backend)
    }

    /// The backend a TLS connection with this SNI name (lower-case) is passed through to:
    /// the exact name, else the longest `*.suffix`, else `*` (which also takes a ClientHello
    /// without SNI).
    pub fn passthrough_backend(&self, sni: Option<&str>) -> Option<&Arc<Backend>> {
        let i = sni_gate::lookup(&*self.passthrough, sni, |t, k| t.get(k).copied())?;
        self.backends.get(i)
    }

    /// Whether a TLS connection's ClientHello must be read before termination.
    #[inline(always)]
    pub fn reads_sni(&self) -> bool {
        !self.passthrough.is_empty() || !self.sni_gate.is_empty()
    }

    /// What a TLS connection to `local_port` with this SNI name (lower-case) gets. On a
    /// Gateway's own target port: its passthrough host, else termination when the port has
    /// HTTPS listeners, else refusal. Elsewhere: the passthrough host; else refusal when a
    /// Gateway TLS listener claims the name and no certificate of its own serves it (an
    /// Ingress host keeps its certificate); else termination (the default certificate for
    /// unknown names, as ingress-nginx).
    pub fn sni_start(&self, local_port: u16, sni: Option<&str>) -> SniStart<'_> {
        if let Some(t) = self.sni_gate.targets.get(&local_port) {
            return match sni_gate::lookup(&t.passthrough, sni, |t, k| t.get(k).copied()) {
                Some(i) => self.backends.get(i).map_or(SniStart::Refuse, SniStart::Splice),
                None if t.terminate => SniStart::Terminate,
                None => SniStart::Refuse,
            };
        }
        if let Some(b) = self.passthrough_backend(sni) {
            return SniStart::Splice(b);
        }
        match sni {
            Some(name) if self.sni_gate.claimed(name) && !self.certs.has_own(name) => SniStart::Refuse,
            _ => SniStart::Terminate,
        }
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }
}
