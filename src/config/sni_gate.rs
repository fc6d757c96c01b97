//! What a TLS connection's ClientHello SNI decides before termination, beyond the shared
//! passthrough table: the names Gateway TLS listeners claim (refused when nothing serves
//! them, where an Ingress host would get the default certificate), and each Gateway's own
//! target port (`--gateway-services`), where only that Gateway's TLSRoutes are passed
//! through and every other name is refused.

use std::collections::{HashMap, HashSet};

/// Plain data, compiled by `compile::gateway::sni`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SniGate {
    /// Hostnames of Gateway TLS (Passthrough) listeners served on the shared ports: exact
    /// names and `*.suffix` (any number of labels before `suffix`).
    pub claims: HashSet<String>,
    /// A Gateway's own target port → what its TLS connections may reach.
    pub targets: HashMap<u16, Target>,
}

/// The TLS side of one Gateway target port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// SNI name (as `Config::passthrough`) → index in `Config::backends`.
    pub passthrough: HashMap<String, usize>,
    /// The port also has HTTPS listeners: a name with no passthrough host is terminated
    /// (their certificates answer it) rather than refused.
    pub terminate: bool,
}

impl SniGate {
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty() && self.targets.is_empty()
    }

    /// Whether a Gateway TLS listener on the shared ports claims `name`.
    pub fn claimed(&self, name: &str) -> bool {
        lookup(&self.claims, Some(name), |t, k| t.contains(k).then_some(())).is_some()
    }
}

/// The value under an SNI key: the exact name, else the longest `*.suffix`, else `*`
/// (which also takes a ClientHello without SNI).
pub fn lookup<T, V>(table: &T, sni: Option<&str>, get: impl Fn(&T, &str) -> Option<V>) -> Option<V> {
    let found = sni.and_then(|name| {
        get(table, name).or_else(|| {
            let mut wild = String::with_capacity(name.len() + 1);
            name.match_indices('.').find_map(|(dot, _)| {
                wild.clear();
                wild.push('*');
                wild.push_str(&name[dot..]);
                get(table, &wild)
            })
        })
    });
    found.or_else(|| get(table, "*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_match_exact_and_any_labels_under_a_wildcard() {
        let gate = SniGate {
            claims: ["abc.example.com".to_string(), "*.example.org".to_string()].into(),
            ..Default::default()
        };
        assert!(gate.claimed("abc.example.com"));
        assert!(!gate.claimed("x.abc.example.com"));
        assert!(!gate.claimed("non.matching.com"));
        assert!(gate.claimed("a.example.org"));
        assert!(gate.claimed("a.b.example.org"));
        assert!(!gate.claimed("example.org"));
        assert!(!SniGate::default().claimed("abc.example.com"));
    }
}
