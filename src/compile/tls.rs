//! TLS: `kubernetes.io/tls` Secrets → rustls certified keys, and the SNI → certificate store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::diagnostic::Reason;
use crate::routes::{HostPattern, lower_host};

/// The certificates a TLS handshake can be answered with. Immutable: rotation publishes a
/// new store inside a new Config.
#[derive(Clone, Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// host pattern → where its certificate comes from, for `/routes`.
    pub sources: BTreeMap<String, String>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("sources", &self.sources)
            .field("has_default", &self.default.is_some())
            .finish()
    }
}

impl CertStore {
    pub fn new(default: Option<Arc<CertifiedKey>>) -> Self {
        Self {
            default,
            ..Default::default()
        }
    }

    pub fn insert(&mut self, host: &HostPattern, key: Arc<CertifiedKey>, source: String) {
        match host {
            HostPattern::Exact(h) => drop(self.exact.insert(h.clone(), key)),
            HostPattern::Wildcard(s) => drop(self.wildcard.insert(s.clone(), key)),
            HostPattern::Any => return,
        }
        self.sources.insert(host.to_string(), source);
    }

    pub fn note_default(&mut self, host: &HostPattern, why: &str) {
        self.sources
            .insert(host.to_string(), format!("default certificate ({why})"));
    }

    pub fn set_default(&mut self, key: Arc<CertifiedKey>) {
        self.default = Some(key);
    }

    pub fn default_cert(&self) -> Option<&Arc<CertifiedKey>> {
        self.default.as_ref()
    }

    /// SNI selection: exact name, then `*.` one label up, then the default certificate
    /// (also when the client sent no SNI).
    pub fn resolve(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let mut buf = [0u8; 256];
            if let Some(name) = lower_host(name, &mut buf) {
                if let Some(k) = self.exact.get(name) {
                    return Some(k.clone());
                }
                if let Some((first, rest)) = name.split_once('.')
                    && !first.is_empty()
                    && let Some(k) = self.wildcard.get(rest)
                {
                    return Some(k.clone());
                }
            }
        }
        self.default.clone()
    }
}

fn secret_field<'a>(secret: &'a Secret, field: &str) -> Option<&'a [u8]> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(field)) {
        return Some(v.0.as_slice());
    }
    // Manifests written by hand often use stringData; the API server would have folded it
    // into data, so reading it here gives the same result in both modes.
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(field))
        .map(|s| s.as_bytes())
}

/// Parses a TLS Secret (`tls.crt` full chain, `tls.key` PKCS#1, PKCS#8 or SEC1) into a
/// certified key, checking that key and certificate belong together and that the
/// certificate is valid at `now`.
pub fn parse_tls_secret(secret: &Secret, now: SystemTime) -> Result<Arc<CertifiedKey>, (Reason, String)> {
    let invalid = |m: String| (Reason::InvalidCertificate, m);
    let crt = secret_field(secret, "tls.crt").ok_or_else(|| invalid("has no tls.crt".into()))?;
    let key = secret_field(secret, "tls.key").ok_or_else(|| invalid("has no tls.key".into()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("tls.crt is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid("tls.crt holds no CERTIFICATE block".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid(format!("tls.key is not a PEM private key: {e}")))?;
    let signing = any_supported_type(&key).map_err(|e| invalid(format!("tls.key cannot be used: {e}")))?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(invalid("tls.key does not match the certificate in tls.crt".into()));
        }
        Err(e) => return Err(invalid(format!("tls.crt cannot be used: {e}"))),
    }
    let (_, leaf) = x509_parser::parse_x509_certificate(ck.cert[0].as_ref())
        .map_err(|e| invalid(format!("tls.crt is not a valid X.509 certificate: {e}")))?;
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let validity = leaf.validity();
    if now > validity.not_after.timestamp() {
        return Err((
            Reason::CertificateExpired,
            format!("the certificate expired on {}", validity.not_after),
        ));
    }
    if now < validity.not_before.timestamp() {
        return Err((
            Reason::CertificateExpired,
            format!("the certificate is not valid before {}", validity.not_before),
        ));
    }
    Ok(Arc::new(ck))
}
