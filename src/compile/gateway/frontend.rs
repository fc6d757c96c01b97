//! A Gateway's `spec.tls.frontend` (client-certificate validation on its HTTPS listeners):
//! the references are checked and reported on each listener the validation applies to (the
//! `perPort` entry for its port, else `default`), and a usable validation becomes the
//! [`FrontendValidation`] of the listener's serving point. It is honoured only where the
//! port is the Gateway's alone (`--gateway-services`); on ports Gateways share with each
//! other and with the Ingresses the listener is not served rather than served without it.

use std::sync::Arc;

use super::{Condition, ListenerState, cond, granted, not_accepted};
use crate::compile::Options;
use crate::compile::mtls::parse_ca;
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::frontend_tls::{FrontendMode, FrontendValidation};
use crate::config::mtls::CaBundle;
use crate::model::gateway::{Gateway, Listener};
use crate::model::{ObjectKey, Snapshot};

pub const NO_VALID_CA: &str = "NoValidCACertificate";
pub const INVALID_CA_REF: &str = "InvalidCACertificateRef";
pub const INVALID_CA_KIND: &str = "InvalidCACertificateKind";
/// The Gateway condition while some validation lets invalid clients through.
pub const INSECURE_MODE: &str = "InsecureFrontendValidationMode";
const CONFIGURATION_CHANGED: &str = "ConfigurationChanged";

/// The most CA references read (the CRD's own limit).
const MAX_CA_REFS: usize = 16;

/// What a frontend validation makes of an HTTPS listener it applies to.
struct Checked {
    /// Never True unless `validation` is set.
    accepted: Condition,
    /// False when some reference cannot be used.
    resolved: Option<Condition>,
    /// What the listener's serving point must enforce.
    validation: Option<Arc<FrontendValidation>>,
}

/// For an HTTPS listener that a frontend validation applies to, its conditions and the
/// validation to enforce. `None`: no validation applies.
fn check(snapshot: &Snapshot, opts: &Options, key: &ObjectKey, gateway: &Gateway, l: &Listener) -> Option<Checked> {
    let fe = gateway.spec.tls.as_ref()?.frontend.as_ref()?;
    let config = match fe.per_port.iter().find(|p| p.port == l.port) {
        Some(p) => &p.tls,
        None => fe.default.as_ref()?,
    };
    let v = config.validation.as_ref()?;
    let mut ca = CaBundle {
        certs: Vec::new(),
        anchors: Vec::new(),
        names: Vec::new(),
        crl_der: Vec::new(),
        crls: Vec::new(),
    };
    let mut sources = Vec::new();
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
        match read(snapshot, &cm) {
            Ok(b) => {
                ca.certs.extend(b.certs);
                ca.anchors.extend(b.anchors);
                ca.names.extend(b.names);
                sources.push(cm.to_string());
            }
            Err(msg) => drop(problem.get_or_insert((INVALID_CA_REF, msg))),
        }
    }
    let resolved = problem.map(|(reason, msg)| Condition::new(cond::RESOLVED_REFS, false, reason, msg));
    let refuse = |accepted: Condition, resolved: Option<Condition>| {
        Some(Checked {
            accepted,
            resolved,
            validation: None,
        })
    };
    if sources.is_empty() {
        let why = resolved
            .as_ref()
            .map_or("no caCertificateRefs".to_string(), |c| c.message.clone());
        let accepted = not_accepted(
            NO_VALID_CA,
            format!("client-certificate validation has no valid CA certificate ({why})"),
        );
        return refuse(accepted, resolved);
    }
    let mode = match v.mode.as_deref() {
        None | Some("AllowValidOnly") => FrontendMode::AllowValidOnly,
        Some("AllowInsecureFallback") => FrontendMode::AllowInsecureFallback,
        Some(other) => {
            let msg = format!(
                "client-certificate validation mode {other:?} is not AllowValidOnly or AllowInsecureFallback; the listener is not served"
            );
            return refuse(not_accepted(cond::UNSUPPORTED_VALUE, msg), resolved);
        }
    };
    if !opts.gateway_services {
        let msg = "client-certificate validation (spec.tls.frontend) needs a port of the Gateway's own (--gateway-services); on the ports Gateways share with each other and the Ingresses the listener is not served rather than served without it";
        return refuse(not_accepted(cond::UNSUPPORTED_VALUE, msg), resolved);
    }
    let Ok(port) = u16::try_from(l.port) else {
        return None;
    };
    Some(Checked {
        accepted: Condition::new(cond::ACCEPTED, true, "Accepted", "accepted by Portico"),
        resolved,
        validation: Some(Arc::new(FrontendValidation {
            gateway: key.to_string(),
            port,
            mode,
            sources,
            ca: Arc::new(ca),
        })),
    })
}

/// Applies the frontend validation of Gateway `gkey` to the HTTPS listener `state` of
/// `owner` (the Gateway or one of its ListenerSets) if it is accepted so far: its
/// conditions, a diagnostic when it cannot be served, and the validation its port enforces.
pub(super) fn apply(
    snapshot: &Snapshot,
    opts: &Options,
    owner: (&'static str, &ObjectKey),
    (gkey, gateway): (&ObjectKey, &Gateway),
    state: &mut ListenerState<'_>,
    diags: &mut Diagnostics,
) {
    if !state.https || !state.report.conditions[0].status {
        return;
    }
    let Some(Checked {
        accepted,
        resolved,
        validation,
    }) = check(snapshot, opts, gkey, gateway, state.spec)
    else {
        return;
    };
    state.frontend = validation;
    if !accepted.status {
        diags.push(
            ObjectRef::new(owner.0, owner.1),
            Severity::Error,
            Reason::NotAccepted,
            format!("listener {}: {}", state.spec.name, accepted.message),
        );
        state.usable = false;
        state.report.conditions[1] =
            Condition::new(cond::PROGRAMMED, false, cond::INVALID, "the listener is not valid");
    }
    state.report.conditions[0] = accepted;
    if let Some(r) = resolved {
        state.report.conditions[2] = r;
    }
}

/// The ConfigMap's `ca.crt` as trust anchors.
fn read(snapshot: &Snapshot, cm: &ObjectKey) -> Result<CaBundle, String> {
    let pem = snapshot
        .config_maps
        .get(cm)
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get("ca.crt"))
        .ok_or_else(|| format!("ConfigMap {cm} does not exist or has no ca.crt"))?;
    parse_ca(pem.as_bytes()).map_err(|e| format!("ConfigMap {cm}: {e}"))
}

/// The Gateway's `InsecureFrontendValidationMode` condition, while its default or a
/// per-port validation is `AllowInsecureFallback`.
pub(super) fn insecure(gateway: &Gateway) -> Option<Condition> {
    let fe = gateway.spec.tls.as_ref()?.frontend.as_ref()?;
    let insecure = |c: &crate::model::gateway::FrontendTlsConfig| {
        c.validation
            .as_ref()
            .is_some_and(|v| v.mode.as_deref() == Some("AllowInsecureFallback"))
    };
    let any = fe.default.as_ref().is_some_and(insecure) || fe.per_port.iter().any(|p| insecure(&p.tls));
    any.then(|| {
        Condition::new(
            INSECURE_MODE,
            true,
            CONFIGURATION_CHANGED,
            "client-certificate validation is AllowInsecureFallback: clients without a valid certificate are served",
        )
    })
}

#[cfg(test)]
mod tests;
