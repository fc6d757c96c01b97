//! Host → per-host TLS setting, chosen by the ClientHello's SNI name as certificates are:
//! the exact name, then the `*.` name one label up.

use std::collections::HashMap;

use super::route::{HostPattern, lower_host};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniMap<T> {
    exact: HashMap<String, T>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, T>,
}

impl<T> Default for SniMap<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T: Clone> SniMap<T> {
    /// Sets the value of `host` unless it has one; returns the one it keeps.
    pub fn insert(&mut self, host: &HostPattern, value: T) -> Option<T> {
        let map = match host {
            HostPattern::Exact(h) => self.exact.entry(h.clone()),
            HostPattern::Wildcard(s) => self.wildcard.entry(s.clone()),
            _ => return None,
        };
        Some(map.or_insert(value).clone())
    }
}

impl<T> SniMap<T> {
    /// The value of a host pattern (how a route finds its host's).
    pub fn get(&self, host: &HostPattern) -> Option<&T> {
        match host {
            HostPattern::Exact(h) => self.exact.get(h),
            HostPattern::Wildcard(s) => self.wildcard.get(s),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// SNI selection, as [`super::CertStore::resolve`].
    pub fn resolve(&self, sni: &str) -> Option<&T> {
        let mut buf = [0u8; 256];
        let name = lower_host(sni, &mut buf)?;
        if let Some(v) = self.exact.get(name) {
            return Some(v);
        }
        let (first, rest) = name.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        self.wildcard.get(rest)
    }
}
