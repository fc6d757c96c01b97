//! `ssl-ciphers` and `ssl-prefer-server-ciphers` → the TLS settings of each host. As in
//! ingress-nginx they belong to the host (its `server`): the oldest Ingress on the host that
//! sets one gives it, for every path; canary Ingresses give none. A list that cannot be used
//! is a Warning and the host keeps the listener's suites.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::annotations::Annotations;
use super::hosts::{rule_hosts, warn};
use super::ingress::annotation;
use crate::config::diagnostic::Diagnostics;
use crate::config::global::Global;
use crate::config::host_tls::{HostTls, HostTlsStore};
use crate::config::route::HostPattern;
use crate::config::tls_options::{TlsOptions, parse_ciphers, parse_protocols};
use crate::model::{ObjectKey, Snapshot};

/// The longest `ssl-ciphers` value read.
const MAX_LEN: usize = 4096;

/// The hosts of the admitted Ingresses (oldest first) that set their own TLS settings, and
/// their `server-alias` names (`aliases`: host, alias) as nginx's `server_name` lists them;
/// a `~` regular-expression alias keeps the listener's (SNI selection knows exact and `*.`
/// names only).
pub fn collect(
    snapshot: &Snapshot,
    admitted: &[ObjectKey],
    aliases: &[(HostPattern, HostPattern)],
    global: &Global,
    diags: &mut Diagnostics,
) -> HostTlsStore {
    // The ConfigMap's protocols (compile() has checked them), else both.
    let versions = global
        .ssl_protocols
        .as_deref()
        .and_then(|p| parse_protocols(p).ok())
        .unwrap_or_else(|| TlsOptions::default().versions);
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let mut hosts: BTreeMap<HostPattern, HostTls> = BTreeMap::new();
    for key in admitted {
        let Some(ing) = snapshot.ingresses.get(key) else {
            continue;
        };
        if super::canary::is_canary(ing) {
            continue;
        }
        let mut notes = Annotations::of(ing, key, diags, &snapshot.secrets);
        let ciphers = annotation(ing, "ssl-ciphers").and_then(|(prefix, raw)| {
            let value = raw.trim();
            let checked = if value.len() > MAX_LEN {
                Err(format!("longer than {MAX_LEN} bytes"))
            } else {
                parse_ciphers(value, &provider, &versions)
            };
            match checked {
                Ok((_, skipped)) => {
                    for w in skipped {
                        warn(notes.diags, key, format!("annotation {prefix}ssl-ciphers: {w}"));
                    }
                    Some(value.to_string())
                }
                Err(why) => {
                    let shown: String = value.chars().take(200).collect();
                    warn(
                        notes.diags,
                        key,
                        format!("annotation {prefix}ssl-ciphers={shown:?}: {why}; its hosts keep the listener's cipher suites"),
                    );
                    None
                }
            }
        });
        let prefer = notes.parsed(
            "ssl-prefer-server-ciphers",
            "\"true\" or \"false\"",
            "its hosts keep the listener's setting",
            |v| match v {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
        );
        if ciphers.is_none() && prefer.is_none() {
            continue;
        }
        for host in rule_hosts(ing) {
            if host == HostPattern::Any {
                warn(
                    notes.diags,
                    key,
                    "ssl-ciphers/ssl-prefer-server-ciphers on a rule without a host: no TLS name selects it; not used for it".into(),
                );
                continue;
            }
            let tls = hosts.entry(host).or_default();
            // The oldest Ingress that sets each wins, as ingress-nginx fills a server's.
            if tls.ciphers.is_none() {
                tls.ciphers.clone_from(&ciphers);
            }
            if tls.prefer_server_ciphers.is_none() {
                tls.prefer_server_ciphers = prefer;
            }
        }
    }
    let mut store = HostTlsStore::default();
    for (host, tls) in hosts {
        store.insert(&host, Arc::new(tls));
    }
    for (host, alias) in aliases {
        if let Some(tls) = store.get(host).cloned() {
            store.insert(alias, tls);
        }
    }
    store
}

#[cfg(test)]
mod tests {
    use crate::compile::{Options, compile};
    use crate::fixture::{self, Prefix};

    #[test]
    fn the_oldest_ingress_on_a_host_sets_its_suites() {
        let n = "nginx.ingress.kubernetes.io/";
        let old = fixture::ingress("default", "old")
            .class("portico")
            .created("2024-01-01T00:00:00Z")
            .annotation(
                &format!("{n}ssl-ciphers"),
                "ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256",
            )
            .rule("a.test", "/", Prefix, "web", 80)
            .rule("*.wild.test", "/", Prefix, "web", 80);
        let young = fixture::ingress("default", "young")
            .class("portico")
            .created("2024-06-01T00:00:00Z")
            .annotation(&format!("{n}ssl-ciphers"), "ECDHE-RSA-CHACHA20-POLY1305")
            .annotation("portico.dev/ssl-prefer-server-ciphers", "false")
            .annotation(&format!("{n}server-alias"), "alias.test")
            .rule("a.test", "/young", Prefix, "web", 80)
            .rule("b.test", "/", Prefix, "web", 80);
        let bad = fixture::ingress("default", "bad")
            .class("portico")
            .annotation(&format!("{n}ssl-ciphers"), "ALL:!aNULL:+HIGH")
            .annotation(&format!("{n}ssl-prefer-server-ciphers"), "yes")
            .rule("c.test", "/", Prefix, "web", 80);
        let cfg = compile(
            &fixture::snapshot([fixture::portico_class().into(), old.into(), young.into(), bad.into()]),
            &Options::default(),
        );
        let a = cfg.host_tls.resolve("A.test").unwrap();
        assert_eq!(
            a.ciphers.as_deref(),
            Some("ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256")
        );
        // The younger Ingress adds what the older one left unset.
        assert_eq!(a.prefer_server_ciphers, Some(false));
        assert_eq!(cfg.host_tls.resolve("x.wild.test").unwrap().ciphers, a.ciphers);
        let b = cfg.host_tls.resolve("b.test").unwrap();
        assert_eq!(b.ciphers.as_deref(), Some("ECDHE-RSA-CHACHA20-POLY1305"));
        // The younger Ingress's alias serves a.test (sorted first of its hosts): a.test's
        // settings answer for it.
        assert_eq!(cfg.host_tls.resolve("alias.test"), Some(a));
        // Nothing usable on c.test: the listener's settings, with Warnings.
        assert!(cfg.host_tls.resolve("c.test").is_none());
        let warnings: Vec<_> = cfg
            .diagnostics
            .iter()
            .filter(|d| d.object.name == "bad")
            .map(|d| d.message.as_str())
            .collect();
        assert!(
            warnings
                .iter()
                .any(|m| m.contains("ssl-ciphers=") && m.contains("keep the listener's")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|m| m.contains("ssl-prefer-server-ciphers")),
            "{warnings:?}"
        );
        // The DHE suite of the old list is skipped with a Warning.
        assert!(
            cfg.diagnostics
                .iter()
                .any(|d| d.object.name == "old" && d.message.contains("DHE-RSA-AES128-GCM-SHA256"))
        );
        assert!(cfg.host_tls.resolve("d.test").is_none());
    }
}
