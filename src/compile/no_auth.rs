//! `no-auth-locations` (Ingress paths that get no authentication, as ingress-nginx leaves
//! them out of its `auth_request` and `auth_basic`) and the global auth's answer cache.

use std::sync::Arc;
use std::time::Duration;

use crate::config::auth::AuthCache;
use crate::config::global::Global;
use crate::config::policy::Policy;
use crate::config::vars::Template;

/// The most paths `no-auth-locations` may list.
const MAX_LOCATIONS: usize = 64;

/// `no-auth-locations`: comma-separated paths (`""` exempts nothing). Each starts with `/`
/// and is printable ASCII without spaces, at most 1024 bytes.
pub(super) fn parse_locations(v: &str) -> Option<Vec<String>> {
    let list: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let valid = |l: &String| l.starts_with('/') && l.len() <= 1024 && l.bytes().all(|b| (0x21..0x7f).contains(&b));
    (list.len() <= MAX_LOCATIONS && list.iter().all(valid)).then_some(list)
}

/// The policy of an Ingress path: without authentication when the path (as the Ingress
/// writes it) starts with one of `no-auth-locations`, as ingress-nginx's
/// `isLocationInLocationList` decides.
pub(super) fn exempt(policy: &Arc<Policy>, path: &str, global: &Global) -> Arc<Policy> {
    if policy.auth.is_none() || !global.no_auth_locations.iter().any(|l| path.starts_with(l.as_str())) {
        return policy.clone();
    }
    Arc::new(Policy {
        auth: None,
        ..(**policy).clone()
    })
}

/// `global-auth-cache-key` and `global-auth-cache-duration`: answers are cached only with a
/// key; the duration defaults to ingress-nginx's `200 202 401 5m`.
pub(super) fn global_auth_cache(key: Option<Template>, valid: Option<Vec<(Vec<u16>, Duration)>>) -> Option<AuthCache> {
    key.map(|key| AuthCache {
        key,
        valid: valid.unwrap_or_else(|| vec![(vec![200, 202, 401], Duration::from_secs(300))]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse_locations("/.well-known/acme-challenge, /health,"),
            Some(vec!["/.well-known/acme-challenge".to_string(), "/health".to_string()])
        );
        assert_eq!(parse_locations(""), Some(vec![]));
        assert_eq!(parse_locations("health"), None);
        assert_eq!(parse_locations("/a b"), None);
        assert_eq!(parse_locations(&"/x,".repeat(65)), None);
    }
}
