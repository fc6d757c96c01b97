//! TLS Secrets → rustls certified keys (parsed once per distinct PEM, checked against the time given).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::diagnostic::Reason;

pub(crate) fn secret_field<'a>(secret: &'a Secret, field: &str) -> Option<&'a [u8]> {
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

/// Every field of a Secret: `data`, then the `stringData` entries `data` does not have.
pub fn secret_fields(secret: &Secret) -> Vec<(&str, &[u8])> {
    let mut out: Vec<(&str, &[u8])> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.0.as_slice()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        if !out.iter().any(|(have, _)| have == k) {
            out.push((k.as_str(), v.as_bytes()));
        }
    }
    out
}

/// A parsed certificate with its validity period (Unix seconds).
#[derive(Clone)]
pub struct ParsedCert {
    pub key: Arc<CertifiedKey>,
    pub not_before: i64,
    pub not_after: i64,
}

type Parsed = Result<ParsedCert, (Reason, String)>;

/// Remembers parsed certificates between compiles, keyed by a hash of the PEM bytes, so
/// that a change to one EndpointSlice does not re-parse a thousand Secrets. Parsing is a
/// pure function of the bytes, so compile() stays deterministic; only its speed changes.
/// Entries not used by the latest compile are dropped.
#[derive(Default)]
pub struct CertCache {
    state: std::sync::Mutex<(HashMap<u64, Parsed>, HashMap<u64, Parsed>)>,
}

impl CertCache {
    fn get_or_parse(&self, crt: &[u8], key: &[u8]) -> Parsed {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        crt.hash(&mut h);
        key.hash(&mut h);
        let id = h.finish();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (current, next) = &mut *st;
        if let Some(hit) = next.get(&id).or_else(|| current.get(&id)).cloned() {
            next.insert(id, hit.clone());
            return hit;
        }
        drop(st);
        let parsed = parse_material(crt, key);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.1.insert(id, parsed.clone());
        parsed
    }

    /// Ends a compile: what it used becomes the cache.
    pub fn rotate(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 = std::mem::take(&mut st.1);
    }

    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.0.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses a TLS Secret (`tls.crt` full chain, `tls.key` PKCS#1, PKCS#8 or SEC1) into a
/// certified key, checking that key and certificate belong together and that the
/// certificate is valid at `now`.
pub fn parse_tls_secret(
    secret: &Secret,
    now: SystemTime,
    cache: Option<&CertCache>,
) -> Result<Arc<CertifiedKey>, (Reason, String)> {
    let invalid = |m: String| (Reason::InvalidCertificate, m);
    let crt = secret_field(secret, "tls.crt").ok_or_else(|| invalid("has no tls.crt".into()))?;
    let key = secret_field(secret, "tls.key").ok_or_else(|| invalid("has no tls.key".into()))?;
    let parsed = match cache {
        Some(c) => c.get_or_parse(crt, key)?,
        None => parse_material(crt, key)?,
    };
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let when = |t: i64| {
        x509_parser::time::ASN1Time::from_timestamp(t)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| t.to_string())
    };
    if now > parsed.not_after {
        return Err((
            Reason::CertificateExpired,
            format!("the certificate expired on {}", when(parsed.not_after)),
        ));
    }
    if now < parsed.not_before {
        return Err((
            Reason::CertificateExpired,
            format!("the certificate is not valid before {}", when(parsed.not_before)),
        ));
    }
    Ok(parsed.key)
}

fn parse_material(crt: &[u8], key: &[u8]) -> Parsed {
    let invalid = |m: String| (Reason::InvalidCertificate, m);
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
    let validity = leaf.validity();
    Ok(ParsedCert {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        key: Arc::new(ck),
    })
}
