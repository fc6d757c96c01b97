//! Diagnostics: what compile() could not use, on which object, and why, in a user's words.

use serde::Serialize;

use crate::model::ObjectKey;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &'static str, key: &ObjectKey) -> Self {
        Self {
            kind,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }
    }

    pub fn ingress(key: &ObjectKey) -> Self {
        Self::new("Ingress", key)
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Part of the object was used; something it asks for is not honoured.
    Warning,
    /// The object, or a rule of it, is not served at all, or is served by a 503.
    Error,
}

/// Machine-readable cause, also used as the Kubernetes Event `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    ServiceNotFound,
    ServicePortNotFound,
    UnsupportedBackend,
    UnsupportedAnnotation,
    InvalidHost,
    InvalidPath,
    PathConflict,
    DefaultBackendConflict,
    SecretNotFound,
    InvalidCertificate,
    CertificateExpired,
    CertificateConflict,
    InvalidAnnotation,
    RouteTable,
    InvalidManifest,
    /// A Service field Portico uses is out of range (a manifests file; the API server
    /// refuses such values).
    InvalidServiceField,
    /// A canary Ingress (or one of its paths) is not served: no primary, or one canary already.
    Canary,
    /// A `--configmap` key's value is invalid; its default holds.
    InvalidConfigMapKey,
    /// A `--configmap` key has no effect in Portico.
    UnsupportedConfigMapKey,
    /// The `--configmap`, or a ConfigMap one of its keys names, does not exist.
    ConfigMapNotFound,
    /// A Gateway API object (or a listener, or a route's parent) is not accepted.
    NotAccepted,
    /// A Gateway API rule uses what Portico does not serve yet; the rule is left out.
    UnsupportedFeature,
    /// A cross-namespace reference no ReferenceGrant allows.
    RefNotPermitted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ServiceNotFound => "ServiceNotFound",
            Reason::ServicePortNotFound => "ServicePortNotFound",
            Reason::UnsupportedBackend => "UnsupportedBackend",
            Reason::UnsupportedAnnotation => "UnsupportedAnnotation",
            Reason::InvalidHost => "InvalidHost",
            Reason::InvalidPath => "InvalidPath",
            Reason::PathConflict => "PathConflict",
            Reason::DefaultBackendConflict => "DefaultBackendConflict",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::InvalidCertificate => "InvalidCertificate",
            Reason::CertificateExpired => "CertificateExpired",
            Reason::CertificateConflict => "CertificateConflict",
            Reason::InvalidAnnotation => "InvalidAnnotation",
            Reason::RouteTable => "RouteTable",
            Reason::InvalidManifest => "InvalidManifest",
            Reason::InvalidServiceField => "InvalidServiceField",
            Reason::Canary => "Canary",
            Reason::InvalidConfigMapKey => "InvalidConfigMapKey",
            Reason::UnsupportedConfigMapKey => "UnsupportedConfigMapKey",
            Reason::ConfigMapNotFound => "ConfigMapNotFound",
            Reason::NotAccepted => "NotAccepted",
            Reason::UnsupportedFeature => "UnsupportedFeature",
            Reason::RefNotPermitted => "RefNotPermitted",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Diagnostic {
    /// The object the user has to fix (an Ingress for a dangling reference, so that the
    /// Event lands where its author looks).
    pub object: ObjectRef,
    pub severity: Severity,
    pub reason: Reason,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{sev}: {}: {} ({})", self.object, self.message, self.reason.as_str())
    }
}

/// Collects diagnostics, dropping exact repeats (the same missing Service referenced by two
/// paths of one Ingress is one problem).
#[derive(Default, Debug)]
pub struct Diagnostics {
    seen: std::collections::HashSet<Diagnostic>,
    list: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, object: ObjectRef, severity: Severity, reason: Reason, message: String) {
        let d = Diagnostic {
            object,
            severity,
            reason,
            message,
        };
        if self.seen.insert(d.clone()) {
            self.list.push(d);
        }
    }

    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.list.sort();
        self.list
    }
}
