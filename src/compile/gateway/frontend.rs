//! A Gateway's `spec.tls.frontend` (client-certificate validation on its HTTPS listeners):
//! the references are checked and reported on each listener the validation applies to (the
//! `perPort` entry for its port, else `default`). Portico does not validate client
//! certificates for Gateway listeners yet, so such a listener is not served at all rather
//! than served without the validation it asks for.

use super::backend_tls::config_map_cas;
use super::{Condition, cond, granted, not_accepted};
use crate::model::gateway::{Gateway, Listener};
use crate::model::{ObjectKey, Snapshot};

pub const NO_VALID_CA: &str = "NoValidCACertificate";
pub const INVALID_CA_REF: &str = "InvalidCACertificateRef";
pub const INVALID_CA_KIND: &str = "InvalidCACertificateKind";

/// The most CA references read (the CRD's own limit).
const MAX_CA_REFS: usize = 8;

/// For an HTTPS listener that a frontend validation applies to: its Accepted condition
/// (never True: see the module's note) and, when a reference cannot be used, its
/// ResolvedRefs condition. `None`: no validation applies.
pub(super) fn check(
    snapshot: &Snapshot,
    key: &ObjectKey,
    gateway: &Gateway,
    l: &Listener,
) -> Option<(Condition, Option<Condition>)> {
    let fe = gateway.spec.tls.as_ref()?.frontend.as_ref()?;
    let config = match fe.per_port.iter().find(|p| p.port == l.port) {
        Some(p) => &p.tls,
        None => fe.default.as_ref()?,
    };
    let v = config.validation.as_ref()?;
    let mut usable = 0;
    let mut problem: Option<(&'static str, String)> = None;
    for r in v.ca_certificate_refs.iter().take(MAX_CA_REFS) {
        let kind = r.kind.as_deref().unwrap_or("ConfigMap");
        if !r.group.is_empty() || kind != "ConfigMap" {
            let msg = format!("caCertificateRef {}/{kind} {} is not a ConfigMap", r.group, r.name);
            problem.get_or_insert((INVALID_CA_KIND, msg));
            continue;
        }
        let cm = ObjectKey::new(r.namespace.as_deref().unwrap_or(&key.namespace), r.name.as_str());
        if cm.namespace != key.namespace && !granted(snapshot, ("Gateway", &key.namespace), ("", "ConfigMap"), &cm) {
            let msg = format!("ConfigMap {cm} is in another namespace and no ReferenceGrant allows it");
            problem.get_or_insert((cond::REF_NOT_PERMITTED, msg));
            continue;
        }
        match config_map_cas(snapshot, &cm) {
            Ok(_) => usable += 1,
            Err(msg) => drop(problem.get_or_insert((INVALID_CA_REF, msg))),
        }
    }
    let resolved = problem.map(|(reason, msg)| Condition::new(cond::RESOLVED_REFS, false, reason, msg));
    if usable == 0 {
        let why = resolved
            .as_ref()
            .map_or("no caCertificateRefs".to_string(), |c| c.message.clone());
        let accepted = not_accepted(
            NO_VALID_CA,
            format!("client-certificate validation has no valid CA certificate ({why})"),
        );
        return Some((accepted, resolved));
    }
    let accepted = not_accepted(
        cond::UNSUPPORTED_VALUE,
        "client-certificate validation (spec.tls.frontend) is not supported yet; the listener is not served rather than served without it",
    );
    Some((accepted, resolved))
}

#[cfg(test)]
mod tests;
