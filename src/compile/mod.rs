//! compile(): the pure function from a Snapshot to the Config the data plane serves.

pub mod access_log;
pub mod annotations;
pub mod auth;
pub mod backend;
pub mod canary;
mod common;
pub mod compress;
mod digest;
pub mod errors;
pub mod gateway;
pub mod gateway_filters;
pub mod global;
pub mod hash;
pub mod header_maps;
pub mod host_tls;
pub mod hosts;
pub mod ingress;
pub mod known;
pub mod known_keys;
pub mod limits;
pub mod mirror;
pub mod mtls;
pub mod no_auth;
pub mod otel;
pub mod passthrough;
mod rate;
pub mod retry;
pub mod tls;
pub mod upstream_tls;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;

use crate::config::auth::ExternalAuth;
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::{CertStore, Config, HostPattern, PortRef, Route};
use crate::model::{ObjectKey, Snapshot};
use backend::Resolver;
use ingress::IngressPass;

/// What compile() needs besides the objects. Everything time- or process-dependent is
/// passed in here, so compile stays a pure function.
#[derive(Clone)]
pub struct Options {
    /// IngressClasses whose `spec.controller` equals this are ours.
    pub controller_name: String,
    /// The legacy `kubernetes.io/ingress.class` annotation value that is ours.
    pub ingress_class: String,
    /// Take Ingresses that name no class at all.
    pub watch_without_class: bool,
    /// `--default-backend-service`: serves what no rule and no Ingress default backend does.
    pub default_backend_service: Option<ObjectKey>,
    /// `--default-ssl-certificate`: a TLS Secret to use as the default certificate.
    pub default_ssl_certificate: Option<ObjectKey>,
    /// `--global-auth-url`: external auth for Ingresses without an `auth-url` of their own,
    /// unless they set `enable-global-auth: "false"`.
    pub global_auth: Option<Arc<ExternalAuth>>,
    /// The certificate for SNI names nothing else covers, when no usable
    /// `default_ssl_certificate` is given (Portico generates a self-signed one at start).
    pub fallback_certificate: Option<Arc<CertifiedKey>>,
    /// The time certificates are checked against.
    pub now: SystemTime,
    /// Parsed certificates kept between compiles (see [`tls::CertCache`]): a memo of a pure
    /// function, so it changes how fast compile() is, never what it returns. Its owner (the
    /// publisher) ends each generation of it with [`tls::CertCache::rotate`].
    pub cert_cache: Option<Arc<tls::CertCache>>,
    /// `--enable-ssl-passthrough`: the `ssl-passthrough` annotation takes effect.
    pub enable_ssl_passthrough: bool,
    /// `--limits-per-cluster`: Portico's own Service, whose ready endpoints share each
    /// route's limits (`None`: limits are per replica).
    pub limits_service: Option<ObjectKey>,
    /// `--configmap`: ingress-nginx's controller ConfigMap, whose keys override `global`.
    pub configmap: Option<ObjectKey>,
    /// The command line's controller-wide settings (see [`global::settings`]).
    pub global: crate::config::global::Global,
    /// Response compression (the ConfigMap's use-gzip, enable-brotli and their settings).
    pub compression: crate::config::compress::Compression,
    /// `--gateway-controller-name`: GatewayClasses whose `spec.controllerName` equals this
    /// are ours.
    pub gateway_controller_name: String,
    /// `--gateway-services`: each Gateway gets a Service of its own (its own address),
    /// whose ports lead to ports Portico's pods open for that Gateway alone
    /// (`compile::gateway::ports`); without, every Gateway is served on Portico's own
    /// Service and its listeners' ports.
    pub gateway_services: bool,
    /// Gateway listener ports (`GatewayPort::target`) the data plane could not bind, with
    /// why: their listeners are not Programmed (see `compile::gateway::listeners`).
    pub unbound_ports: std::collections::BTreeMap<u16, String>,
    /// `--gateway-address-cidrs`: where a Gateway's static `spec.addresses` may come from
    /// (empty: none is usable; see `gateway::infra`).
    pub gateway_address_cidrs: Vec<crate::config::Cidr>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            controller_name: "portico.dev/ingress-controller".into(),
            ingress_class: "portico".into(),
            watch_without_class: false,
            default_backend_service: None,
            default_ssl_certificate: None,
            global_auth: None,
            fallback_certificate: None,
            now: SystemTime::now(),
            cert_cache: None,
            enable_ssl_passthrough: false,
            limits_service: None,
            configmap: None,
            global: Default::default(),
            compression: Default::default(),
            gateway_controller_name: "portico.dev/gateway-controller".into(),
            gateway_services: false,
            unbound_ports: Default::default(),
            gateway_address_cidrs: Vec::new(),
        }
    }
}

/// Compiles a Snapshot. Never fails: whatever cannot be used becomes a diagnostic and the
/// rest is served.
pub fn compile(snapshot: &Snapshot, opts: &Options) -> Config {
    let mut diags = Diagnostics::default();
    let mut resolver = Resolver::new(snapshot);
    let mut certs = CertStore::new(opts.fallback_certificate.clone());
    let global = global::settings(snapshot, opts, &mut diags);

    let mut pass = IngressPass {
        snapshot,
        opts,
        resolver: &mut resolver,
        diags: &mut diags,
        certs: &mut certs,
        parsed_secrets: HashMap::new(),
        global: &global,
    };
    if let Some(key) = &opts.default_ssl_certificate {
        match pass.secret(key) {
            Ok(ck) => pass.certs.set_default(ck),
            Err((reason, msg)) => pass.diags.push(
                ObjectRef::new("Secret", key),
                Severity::Error,
                reason,
                format!("--default-ssl-certificate {key}: {msg}; the generated certificate is used instead"),
            ),
        }
    }
    let mut compiled = pass.run();
    let aliases = hosts::add(snapshot, &mut compiled, &mut certs, &mut diags);
    let host_tls = host_tls::collect(snapshot, &compiled.admitted, &aliases, &global, &mut diags);
    let gateway_report = gateway::compile(
        snapshot,
        opts,
        &global,
        &mut resolver,
        &mut diags,
        &mut certs,
        &mut compiled,
    );

    if let Some(key) = &opts.default_backend_service {
        let port = resolver.first_port(key);
        let (backend, (_, problem)) = match &port {
            Some(port) => resolver.service(key, port.clone()),
            None => resolver.service(key, PortRef::Number(0)),
        };
        if let Some((reason, msg)) = problem {
            let msg = match port {
                Some(_) => msg,
                None if snapshot.services.contains_key(key) => format!("Service {key} has no ports"),
                None => msg,
            };
            diags.push(
                ObjectRef::new("Service", key),
                Severity::Error,
                reason,
                format!("--default-backend-service: {msg}; unmatched requests answer 503"),
            );
        }
        let route = Arc::new(Route {
            id: compiled.routes.len(),
            ingress: key.clone(),
            host: HostPattern::Any,
            path: None,
            backend,
            service: key.clone(),
            ssl_redirect: false,
            policy: Default::default(),
            client_auth: None,
            canary: None,
            conditions: None,
            weighted: None,
        });
        if !compiled.builder.has_catch_all() {
            compiled.builder.set_catch_all(route.clone());
            compiled.routes.push(route);
        }
    }

    // Reported once per Service a route uses, whatever its ports.
    let used: std::collections::BTreeSet<&ObjectKey> = compiled.routes.iter().map(|r| &r.service).collect();
    for key in used {
        if let Some(msg) = snapshot
            .services
            .get(key)
            .and_then(|s| backend::client_ip_timeout_problem(s))
        {
            diags.push(
                ObjectRef::new("Service", key),
                Severity::Warning,
                Reason::InvalidServiceField,
                msg,
            );
        }
    }

    let mut passthrough = passthrough::table(snapshot, opts, &compiled.admitted, &compiled.routes, &mut diags);
    gateway::tls::merge(
        &mut passthrough,
        std::mem::take(&mut compiled.gateway_passthrough),
        &mut diags,
    );
    let mut backends = resolver.backends();
    passthrough::speak_tls(&mut backends, &passthrough);
    let sni_gate = std::mem::take(&mut compiled.sni_gate);
    for t in sni_gate.targets.values() {
        passthrough::speak_tls(&mut backends, &t.passthrough);
    }
    let (routes, errors) = compiled.builder.build();
    for (route, msg) in errors {
        diags.push(
            ObjectRef::ingress(&route.ingress),
            Severity::Error,
            Reason::RouteTable,
            format!("path cannot be served: {msg}"),
        );
    }
    Config {
        generation: 0,
        routes: Arc::new(routes),
        certs: Arc::new(certs),
        client_auth: Arc::new(compiled.client_auth),
        route_list: Arc::new(compiled.routes),
        backends,
        admitted: Arc::new(compiled.admitted),
        ignored: Arc::new(compiled.ignored),
        diagnostics: Arc::new(diags.into_sorted()),
        passthrough: Arc::new(passthrough),
        replicas: limits::replicas(snapshot, opts.limits_service.as_ref()),
        compression: global.compression.on().then(|| Arc::new(global.compression.clone())),
        global: Arc::new(global),
        host_tls: Arc::new(host_tls),
        gateway: Arc::new(gateway_report),
        gateway_listeners: compiled.gateway_listeners,
        sni_gate: Arc::new(sni_gate),
    }
}

/// Recompiles after a change to EndpointSlices or Endpoints only: the backends of `prev` are
/// resolved again against `snapshot` — all of them, or only those of the Services in
/// `changed` when the caller knows which — and routes, certificates and diagnostics are taken
/// over unchanged (they depend on Ingresses, Services, Secrets and classes, which did not
/// change). Pure like [`compile`], and equal to what `compile` would give for the snapshot.
pub fn recompile_endpoints(snapshot: &Snapshot, prev: &Config, changed: Option<&HashSet<ObjectKey>>) -> Config {
    let mut resolver = match changed {
        Some(services) => Resolver::for_services(snapshot, services),
        None => Resolver::new(snapshot),
    };
    let mut backends: Vec<_> = prev
        .backends
        .iter()
        .map(|b| match changed {
            // A cluster IP is the Service's, which did not change.
            _ if b.service_upstream => b.clone(),
            Some(services) if !services.contains(&b.service) => b.clone(),
            _ => resolver.service(&b.service, b.port.clone()).1.0,
        })
        .collect();
    passthrough::speak_tls(&mut backends, &prev.passthrough);
    for t in prev.sni_gate.targets.values() {
        passthrough::speak_tls(&mut backends, &t.passthrough);
    }
    Config {
        generation: 0,
        routes: prev.routes.clone(),
        certs: prev.certs.clone(),
        client_auth: prev.client_auth.clone(),
        route_list: prev.route_list.clone(),
        backends,
        admitted: prev.admitted.clone(),
        ignored: prev.ignored.clone(),
        diagnostics: prev.diagnostics.clone(),
        passthrough: prev.passthrough.clone(),
        replicas: limits::recount(snapshot, &prev.replicas, changed),
        global: prev.global.clone(),
        compression: prev.compression.clone(),
        host_tls: prev.host_tls.clone(),
        gateway: prev.gateway.clone(),
        gateway_listeners: prev.gateway_listeners.clone(),
        sni_gate: prev.sni_gate.clone(),
    }
}

#[cfg(test)]
mod tests;
