//! BackendTLSPolicy: a policy targeting a Service (and, with `sectionName`, one of its
//! ports by name) makes Gateway routes to it speak TLS to the pods, verified against the
//! CA certificates of its ConfigMaps, with `hostname` as SNI and as the name checked. It
//! compiles to the same [`UpstreamTls`] as the `proxy-ssl-*` annotations, so one TLS client
//! serves both.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{Condition, oldest_first};
use crate::compile::tls::secret_field;
use crate::compile::upstream_tls::{clip, parse_cas, parse_client_cert};
use crate::config::Policy;
use crate::config::backend::Protocol;
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::gateway::{PolicyReport, Report};
use crate::config::route::Route;
use crate::config::upstream_tls::{ClientCert, Der, SubjectAltName, UpstreamTls, Verify};
use crate::model::gateway::{BackendTLSPolicy, BackendTLSValidation, GatewayTls};
use crate::model::{ObjectKey, Snapshot, Svc};

/// The spec's condition types and reasons for policies.
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const CONFLICTED: &str = "Conflicted";
    pub const NO_VALID_CA: &str = "NoValidCACertificate";
    pub const INVALID_CA_REF: &str = "InvalidCACertificateRef";
    pub const INVALID_KIND: &str = "InvalidKind";
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
}

/// The most CA certificate references a policy may have (the CRD's own limit).
const MAX_CA_REFS: usize = 8;
/// The most subject alternative names a policy may list (the CRD's own limit).
const MAX_SANS: usize = 5;

/// What the policies compiled to.
#[derive(Default)]
pub struct Policies {
    /// (Service, port name or `None` for every port) → the TLS its routes use.
    by_target: HashMap<(ObjectKey, Option<String>), Arc<UpstreamTls>>,
    /// Each policy's conditions (Accepted, ResolvedRefs), in policy order, for its status.
    pub conditions: Vec<(ObjectKey, i64, Vec<Condition>, String)>,
    /// Each policy's targeted Services.
    pub targets: Vec<(ObjectKey, Vec<ObjectKey>)>,
}

impl Policies {
    /// Reads every BackendTLSPolicy; the oldest of those naming the same Service and
    /// section wins, the others are `Accepted: False` (`Conflicted`).
    pub fn compile(snapshot: &Snapshot, diags: &mut Diagnostics) -> Policies {
        let mut out = Policies::default();
        let mut all: Vec<(&ObjectKey, &Arc<BackendTLSPolicy>)> = snapshot.backend_tls_policies.iter().collect();
        all.sort_by(|(ka, a), (kb, b)| oldest_first((ka, &a.metadata), (kb, &b.metadata)));
        for (key, policy) in all {
            let mut warn = |sev: Severity, reason: Reason, msg: String| {
                diags.push(ObjectRef::new("BackendTLSPolicy", key), sev, reason, msg)
            };
            let (tls, resolved) = upstream(snapshot, &key.namespace, &policy.spec.validation);
            let mut accepted = Condition::new(reason::ACCEPTED, true, reason::ACCEPTED, "accepted by Portico");
            if let Some(msg) = &tls.denied {
                accepted = Condition::new(reason::ACCEPTED, false, reason::NO_VALID_CA, msg.to_string());
                warn(
                    Severity::Error,
                    Reason::NotAccepted,
                    format!("{msg}; requests to its targets answer 503"),
                );
            }
            let tls = Arc::new(tls);
            let mut targets = Vec::new();
            for t in &policy.spec.target_refs {
                let (group, kind, name) = (&t.target.group, &t.target.kind, &t.target.name);
                if !group.is_empty() || kind != "Service" {
                    warn(
                        Severity::Warning,
                        Reason::UnsupportedBackend,
                        format!("targetRef {group}/{kind} {name} is not a Service; ignored"),
                    );
                    continue;
                }
                let svc = ObjectKey::new(key.namespace.as_str(), name.as_str());
                let slot = (svc.clone(), t.section_name.clone());
                match out.by_target.get(&slot) {
                    Some(_) => {
                        let on = t
                            .section_name
                            .as_deref()
                            .map(|s| format!(" port {s}"))
                            .unwrap_or_default();
                        let msg = format!("an older BackendTLSPolicy already targets Service {svc}{on}");
                        warn(Severity::Warning, Reason::PathConflict, msg.clone());
                        accepted = Condition::new(reason::ACCEPTED, false, reason::CONFLICTED, msg);
                    }
                    None => {
                        out.by_target.insert(slot, tls.clone());
                    }
                }
                targets.push(svc);
            }
            let generation = policy.metadata.generation.unwrap_or(0);
            out.conditions.push((
                key.clone(),
                generation,
                vec![accepted, resolved],
                policy.metadata.uid.clone().unwrap_or_default(),
            ));
            out.targets.push((key.clone(), targets));
        }
        out
    }

    /// The TLS a Gateway route to `service`'s port `port` (by number) uses, if a policy
    /// targets it: the one naming that port, else the one naming the Service.
    pub fn lookup(&self, snapshot: &Snapshot, service: &ObjectKey, port: i32) -> Option<&Arc<UpstreamTls>> {
        if self.by_target.is_empty() {
            return None;
        }
        let name = snapshot.services.get(service).and_then(|s| port_name(s, port));
        name.and_then(|n| self.by_target.get(&(service.clone(), Some(n))))
            .or_else(|| self.by_target.get(&(service.clone(), None)))
    }

    /// `policy` with TLS to the pods as `tls` says (HTTP/2 stays HTTP/2, over TLS).
    pub fn apply(policy: &Policy, tls: &Arc<UpstreamTls>) -> Policy {
        let protocol = match policy.backend_protocol {
            Some(Protocol::H2c | Protocol::H2) => Protocol::H2,
            _ => Protocol::Https,
        };
        Policy {
            backend_protocol: Some(protocol),
            upstream_tls: Some(tls.clone()),
            ..policy.clone()
        }
    }
}

impl Policies {
    /// Each policy's status: its conditions for every Gateway whose routes send to a
    /// Service it targets.
    pub fn reports(&self, routes: &[Arc<Route>], report: &Report) -> Vec<PolicyReport> {
        let mut by_service: HashMap<&ObjectKey, BTreeSet<&ObjectKey>> = HashMap::new();
        for o in &report.origins {
            if let Some(r) = routes.get(o.route) {
                by_service
                    .entry(&r.service)
                    .or_default()
                    .extend(o.via.iter().map(|v| &v.gateway));
            }
        }
        self.conditions
            .iter()
            .zip(&self.targets)
            .map(|((key, generation, conditions, uid), (_, services))| {
                let ancestors: BTreeSet<&ObjectKey> = services
                    .iter()
                    .filter_map(|s| by_service.get(s))
                    .flatten()
                    .copied()
                    .collect();
                PolicyReport {
                    key: key.clone(),
                    generation: *generation,
                    ancestors: ancestors.into_iter().cloned().collect(),
                    conditions: conditions.clone(),
                    uid: uid.clone(),
                }
            })
            .collect()
    }
}

/// The CA certificates in a ConfigMap's `ca.crt`, or why there are none.
pub(super) fn config_map_cas(snapshot: &Snapshot, key: &ObjectKey) -> Result<Arc<[Der]>, String> {
    let pem = snapshot
        .config_maps
        .get(key)
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get("ca.crt"));
    match pem {
        None => Err(format!("ConfigMap {key} does not exist or has no ca.crt")),
        Some(p) => parse_cas(p.as_bytes()).map_err(|e| format!("ConfigMap {key}: {e}")),
    }
}

fn port_name(s: &Svc, port: i32) -> Option<String> {
    s.port_numbered(port)?.name.as_deref().map(str::to_string)
}

/// The TLS settings of a policy's `validation`, and its ResolvedRefs condition. A policy
/// that cannot verify (no usable CA) gets `denied`: its routes answer 503.
fn upstream(snapshot: &Snapshot, namespace: &str, v: &BackendTLSValidation) -> (UpstreamTls, Condition) {
    let mut tls = UpstreamTls {
        server_name: true,
        ..Default::default()
    };
    let mut resolved = Condition::new(
        reason::RESOLVED_REFS,
        true,
        reason::RESOLVED_REFS,
        "all references resolved",
    );
    let host = v.hostname.to_ascii_lowercase();
    if host.is_empty()
        || host.len() > 253
        || host.contains('*')
        || rustls::pki_types::ServerName::try_from(host.as_str()).is_err()
    {
        tls.denied = Some(format!("validation.hostname {:?} is not a DNS name", clip(&v.hostname)).into());
        return (tls, resolved);
    }
    tls.name = Some(host.into());
    let mut sans = Vec::new();
    for san in v.subject_alt_names.iter().take(MAX_SANS) {
        let (ty, value) = (san.type_.as_str(), san.hostname.as_deref().or(san.uri.as_deref()));
        match (ty, value) {
            ("Hostname", Some(h)) if rustls::pki_types::ServerName::try_from(h).is_ok() && h.len() <= 253 => {
                sans.push(SubjectAltName::Dns(h.to_ascii_lowercase().into()))
            }
            ("URI", Some(u)) if u.len() <= 2048 && u.contains(':') => sans.push(SubjectAltName::Uri(u.into())),
            _ => {
                let msg = format!(
                    "subjectAltNames: {:?} {:?} is not a valid Hostname or URI",
                    clip(ty),
                    value.map(clip)
                );
                tls.denied = Some(msg.clone().into());
                return (tls, resolved);
            }
        }
    }
    if v.well_known_ca_certificates.is_some() {
        let msg = "wellKnownCACertificates is not supported (caCertificateRefs is)";
        tls.denied = Some(msg.into());
        resolved = Condition::new(reason::RESOLVED_REFS, false, reason::UNSUPPORTED_VALUE, msg);
        return (tls, resolved);
    }
    let mut roots = Vec::new();
    let mut problem: Option<(&'static str, String)> = None;
    for r in v.ca_certificate_refs.iter().take(MAX_CA_REFS) {
        if !r.group.is_empty() || r.kind != "ConfigMap" {
            problem.get_or_insert((
                reason::INVALID_KIND,
                format!("caCertificateRef {}/{} {} is not a ConfigMap", r.group, r.kind, r.name),
            ));
            continue;
        }
        let key = ObjectKey::new(namespace, r.name.as_str());
        match config_map_cas(snapshot, &key) {
            Ok(cas) => roots.extend(cas.iter().cloned()),
            Err(msg) => drop(problem.get_or_insert((reason::INVALID_CA_REF, msg))),
        }
    }
    if let Some((why, msg)) = problem {
        resolved = Condition::new(reason::RESOLVED_REFS, false, why, msg);
    }
    if roots.is_empty() {
        let msg = match v.ca_certificate_refs.is_empty() {
            true => "validation has no caCertificateRefs".to_string(),
            false => format!("no valid CA certificate ({})", resolved.message),
        };
        tls.denied = Some(msg.into());
    } else {
        tls.verify = Some(Verify {
            roots: roots.into(),
            depth: Verify::MAX_DEPTH,
            subject_alt_names: sans.into(),
        });
    }
    (tls, resolved)
}

/// Why a Gateway's backend client certificate cannot be used.
pub const INVALID_CLIENT_CERT_REF: &str = "InvalidClientCertificateRef";

/// A Gateway's `spec.tls.backend.clientCertificateRef`: `None` when it has none, else the
/// certificate, or the Gateway's ResolvedRefs condition saying why it cannot be used
/// (`granted`: whether a ReferenceGrant lets the Gateway use a Secret in another namespace).
pub fn client_certificate(
    snapshot: &Snapshot,
    gateway: &ObjectKey,
    tls: Option<&GatewayTls>,
    granted: impl Fn(&ObjectKey) -> bool,
) -> Option<Result<ClientCert, Condition>> {
    let r = tls?.backend.as_ref()?.client_certificate_ref.as_ref()?;
    let bad = |reason: &'static str, msg: String| Err(Condition::new(reason::RESOLVED_REFS, false, reason, msg));
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !r.group.is_empty() || kind != "Secret" {
        return Some(bad(
            INVALID_CLIENT_CERT_REF,
            format!(
                "clientCertificateRef {}/{kind} {} is not a Secret",
                clip(&r.group),
                clip(&r.name)
            ),
        ));
    }
    let key = ObjectKey::new(r.namespace.as_deref().unwrap_or(&gateway.namespace), r.name.as_str());
    if key.namespace != gateway.namespace && !granted(&key) {
        return Some(bad(
            super::cond::REF_NOT_PERMITTED,
            format!("Secret {key} is in another namespace and no ReferenceGrant allows it"),
        ));
    }
    let Some(secret) = snapshot.secrets.get(&key) else {
        return Some(bad(INVALID_CLIENT_CERT_REF, format!("Secret {key} does not exist")));
    };
    let (crt, pem) = (secret_field(secret, "tls.crt"), secret_field(secret, "tls.key"));
    let (Some(crt), Some(pem)) = (crt, pem) else {
        return Some(bad(
            INVALID_CLIENT_CERT_REF,
            format!("Secret {key} has no tls.crt and tls.key"),
        ));
    };
    Some(parse_client_cert(crt, pem).map_err(|e| {
        Condition::new(
            reason::RESOLVED_REFS,
            false,
            INVALID_CLIENT_CERT_REF,
            format!("Secret {key}: {e}"),
        )
    }))
}

/// `policy` presenting `cert` to backends it speaks TLS to by a BackendTLSPolicy.
pub fn with_client(policy: &Arc<Policy>, cert: Option<&ClientCert>) -> Arc<Policy> {
    match (&policy.upstream_tls, cert) {
        (Some(tls), Some(cert)) if tls.client_cert.is_none() => Arc::new(Policy {
            upstream_tls: Some(Arc::new(UpstreamTls {
                client_cert: Some(cert.clone()),
                ..(**tls).clone()
            })),
            ..(**policy).clone()
        }),
        _ => policy.clone(),
    }
}
