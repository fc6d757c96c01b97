//! The certificate store: SNI name → certified key, immutable once compiled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::route::{HostPattern, lower_host};

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
            // A certificate's `*.` covers one label, whichever API named the host.
            HostPattern::Wildcard(s) | HostPattern::Suffix(s) => drop(self.wildcard.insert(s.clone(), key)),
            HostPattern::Any | HostPattern::Regex(_) => return,
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

    /// The certificate a host pattern was given itself (no wildcard or default stand-in).
    pub fn own(&self, host: &HostPattern) -> Option<&Arc<CertifiedKey>> {
        match host {
            HostPattern::Exact(h) => self.exact.get(h),
            HostPattern::Wildcard(s) | HostPattern::Suffix(s) => self.wildcard.get(s),
            HostPattern::Any | HostPattern::Regex(_) => None,
        }
    }

    /// Whether `name` has a certificate of its own (exact, or `*.` one label up), not the
    /// default one.
    pub fn has_own(&self, name: &str) -> bool {
        let mut buf = [0u8; 256];
        let Some(name) = lower_host(name, &mut buf) else {
            return false;
        };
        self.exact.contains_key(name)
            || name
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && self.wildcard.contains_key(rest))
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

/// Stores are equal when they answer every name with the same certificate chain (keys are
/// opaque; a chain comes with its key).
impl PartialEq for CertStore {
    fn eq(&self, other: &Self) -> bool {
        fn chain(k: &Arc<CertifiedKey>) -> &[rustls::pki_types::CertificateDer<'static>] {
            &k.cert
        }
        fn same(a: &HashMap<String, Arc<CertifiedKey>>, b: &HashMap<String, Arc<CertifiedKey>>) -> bool {
            a.len() == b.len() && a.iter().all(|(h, k)| b.get(h).is_some_and(|o| chain(o) == chain(k)))
        }
        same(&self.exact, &other.exact)
            && same(&self.wildcard, &other.wildcard)
            && self.default.as_ref().map(chain) == other.default.as_ref().map(chain)
            && self.sources == other.sources
    }
}
