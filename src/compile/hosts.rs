//! Extra names a host answers on, as ingress-nginx adds them to its `server`: `server-alias`
//! (the host's routes served under more names) and `from-to-www-redirect` (the other `www.`
//! name answers 308 to the host). Neither ever takes a name some Ingress defines.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::model::Ing as Ingress;
use rustls::sign::CertifiedKey;

use super::annotations::Annotations;
use super::ingress::{Compiled, annotation};
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::policy::Policy;
use crate::config::route::{HostPattern, Route};
use crate::config::tls::CertStore;
use crate::model::{ObjectKey, Snapshot};

/// The most names one `server-alias` may list.
pub const MAX_ALIASES: usize = 64;
/// The longest `~` regular expression of a `server-alias`.
pub const MAX_REGEX_LEN: usize = 1024;

/// Adds the routes of aliases and www redirects to `compiled`, and their certificates to
/// `certs` where the host's own certificate is valid for the name (as ingress-nginx: else
/// the default certificate answers for it). Returns the (host, alias) pairs served.
pub fn add(
    snapshot: &Snapshot,
    compiled: &mut Compiled,
    certs: &mut CertStore,
    diags: &mut Diagnostics,
) -> Vec<(HostPattern, HostPattern)> {
    // Every host some Ingress rule defines: never taken over by an alias or a redirect.
    let defined: HashSet<HostPattern> = compiled.routes.iter().map(|r| r.host.clone()).collect();
    let mut aliases_of: BTreeMap<HostPattern, (ObjectKey, Vec<HostPattern>)> = BTreeMap::new();
    let mut www: Vec<(ObjectKey, String)> = Vec::new();
    for key in &compiled.admitted {
        let Some(ing) = snapshot.ingresses.get(key) else {
            continue;
        };
        let hosts: Vec<HostPattern> = rule_hosts(ing).filter(|h| defined.contains(h)).collect();
        let mut notes = Annotations::of(ing, key, diags, &snapshot.secrets);
        let aliases = parse_aliases(&mut notes);
        if notes.bool("from-to-www-redirect", false) {
            for h in &hosts {
                if let HostPattern::Exact(name) = h
                    && !www.iter().any(|(_, n)| n == name)
                {
                    www.push((key.clone(), name.clone()));
                }
            }
        }
        if aliases.is_empty() {
            continue;
        }
        for host in hosts {
            match aliases_of.get(&host) {
                Some((owner, _)) if owner != key => warn(
                    diags,
                    key,
                    format!(
                        "host {host} already has its server-alias from Ingress {owner}, which is older; this one is not used for it"
                    ),
                ),
                Some(_) => {}
                None if host == HostPattern::Any => warn(
                    diags,
                    key,
                    "server-alias has no effect on a rule without host".to_string(),
                ),
                None => drop(aliases_of.insert(host, (key.clone(), aliases.clone()))),
            }
        }
    }

    let mut taken: HashSet<HostPattern> = defined.clone();
    let mut served = Vec::new();
    for (host, (owner, aliases)) in aliases_of {
        for alias in aliases {
            if alias == host {
                continue;
            }
            if taken.contains(&alias) {
                let why = if defined.contains(&alias) {
                    "is a host an Ingress defines"
                } else {
                    "is already an alias of another host"
                };
                warn(diags, &owner, format!("server-alias {alias} {why}; not used"));
                continue;
            }
            taken.insert(alias.clone());
            copy_routes(compiled, &host, &alias);
            served.push((host.clone(), alias.clone()));
            if certs.own(&alias).is_none()
                && let Some(ck) = own_cert(certs, &host)
                && covers(&ck, &alias)
            {
                certs.insert(&alias, ck, format!("certificate of {host} (server-alias)"));
            }
        }
    }

    for (owner, to) in www {
        let from = match to.strip_prefix("www.") {
            Some(bare) => bare.to_string(),
            None => format!("www.{to}"),
        };
        let Ok(from_host) = HostPattern::parse(Some(&from)) else {
            continue;
        };
        if taken.contains(&from_host) {
            warn(
                diags,
                &owner,
                format!(
                    "from-to-www-redirect: host {from} is served already (an Ingress defines it, or it is an alias); no redirect from it"
                ),
            );
            continue;
        }
        taken.insert(from_host.clone());
        let policy = Arc::new(Policy {
            www_redirect: Some(Arc::from(to.as_str())),
            ..Policy::default()
        });
        let to_host = HostPattern::Exact(to.clone());
        // One route catching every path of the other name; the backend is never used.
        let Some(any) = compiled.routes.iter().find(|r| r.host == to_host).cloned() else {
            continue;
        };
        let route = Arc::new(Route {
            id: compiled.routes.len(),
            ingress: any.ingress.clone(),
            host: from_host.clone(),
            path: None,
            backend: any.backend,
            service: any.service.clone(),
            ssl_redirect: false,
            policy,
            client_auth: None,
            canary: None,
            conditions: None,
            weighted: None,
        });
        compiled.builder.set_host_default(route.clone());
        compiled.routes.push(route);
        match own_cert(certs, &to_host) {
            _ if certs.own(&from_host).is_some() => {}
            Some(ck) if covers(&ck, &from_host) => {
                certs.insert(&from_host, ck, format!("certificate of {to} (from-to-www-redirect)"))
            }
            Some(_) => warn(
                diags,
                &owner,
                format!(
                    "from-to-www-redirect: the certificate of {to} does not cover {from}; HTTPS requests for {from} get the default certificate"
                ),
            ),
            None => {}
        }
    }
    served
}

/// The valid hosts of an Ingress's rules (`Any` for a rule without host).
pub(super) fn rule_hosts(ing: &Ingress) -> impl Iterator<Item = HostPattern> + '_ {
    ing.spec
        .as_ref()
        .and_then(|s| s.rules.as_deref())
        .unwrap_or(&[])
        .iter()
        .filter_map(|r| HostPattern::parse(r.host.as_deref()).ok())
}

/// `server-alias`: a comma-separated list of host names (`*.` wildcards allowed) and, as in
/// nginx's `server_name`, `~` regular expressions (Rust syntax: linear time, size-capped);
/// invalid entries are Warnings and left out. Sorted, as ingress-nginx sorts them: regular
/// expressions are tried in that order.
fn parse_aliases(notes: &mut Annotations<'_>) -> Vec<HostPattern> {
    let Some((prefix, raw)) = annotation(notes.ing, "server-alias") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if out.len() == MAX_ALIASES {
            warn(
                notes.diags,
                notes.key,
                format!("annotation {prefix}server-alias lists more than {MAX_ALIASES} names; the rest are not used"),
            );
            break;
        }
        let parsed = match entry.strip_prefix('~') {
            Some(re) => alias_regex(re).map(HostPattern::Regex),
            None => HostPattern::parse(Some(entry)),
        };
        match parsed {
            Ok(h) if !out.contains(&h) => out.push(h),
            Ok(_) => {}
            Err(msg) => warn(
                notes.diags,
                notes.key,
                format!("annotation {prefix}server-alias: {msg}; this name is not used"),
            ),
        }
    }
    out.sort();
    out
}

/// A `~` alias: a regular expression matched case-insensitively, as nginx's are.
fn alias_regex(source: &str) -> Result<crate::config::pattern::Pattern, String> {
    if source.is_empty() || source.len() > MAX_REGEX_LEN {
        let shown: String = source.chars().take(100).collect();
        return Err(format!(
            "~{shown:?} is not a regular expression of 1 to {MAX_REGEX_LEN} bytes"
        ));
    }
    crate::config::pattern::Pattern::new(source, true)
        .map_err(|e| format!("~{source} is not a valid regular expression: {e}"))
}

/// Adds, for every route of `host`, the same route under `alias`.
fn copy_routes(compiled: &mut Compiled, host: &HostPattern, alias: &HostPattern) {
    let of_host: Vec<Arc<Route>> = compiled.routes.iter().filter(|r| r.host == *host).cloned().collect();
    for r in of_host {
        let copy = Arc::new(Route {
            id: compiled.routes.len(),
            ingress: r.ingress.clone(),
            host: alias.clone(),
            path: r.path.clone(),
            backend: r.backend,
            service: r.service.clone(),
            ssl_redirect: r.ssl_redirect,
            policy: r.policy.clone(),
            client_auth: r.client_auth.clone(),
            // An alias splits to the canary as its host does.
            canary: r.canary.clone(),
            conditions: r.conditions.clone(),
            weighted: r.weighted.clone(),
        });
        if copy.path.is_some() {
            compiled.builder.add_path(copy.clone());
        } else {
            compiled.builder.set_host_default(copy.clone());
        }
        compiled.routes.push(copy);
    }
}

/// The certificate an exact host got from its own TLS entry, or a `*.` entry one label up.
fn own_cert(certs: &CertStore, host: &HostPattern) -> Option<Arc<CertifiedKey>> {
    if let Some(ck) = certs.own(host) {
        return Some(ck.clone());
    }
    let HostPattern::Exact(h) = host else { return None };
    let (_, rest) = h.split_once('.')?;
    certs.own(&HostPattern::Wildcard(rest.to_string())).cloned()
}

/// Whether the certificate's leaf names `host` (exact names only).
fn covers(ck: &CertifiedKey, host: &HostPattern) -> bool {
    let HostPattern::Exact(name) = host else {
        return false;
    };
    let (Some(leaf), Ok(name)) = (ck.cert.first(), rustls_pki_types::ServerName::try_from(name.as_str())) else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf).is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
}

pub(super) fn warn(diags: &mut Diagnostics, key: &ObjectKey, msg: String) {
    diags.push(
        ObjectRef::ingress(key),
        Severity::Warning,
        Reason::InvalidAnnotation,
        msg,
    );
}

#[cfg(test)]
mod tests {
    use crate::compile::{Options, compile};
    use crate::fixture::{self, Prefix};

    #[test]
    fn regex_aliases_are_tried_after_exact_and_wildcard_names() {
        let n = "nginx.ingress.kubernetes.io/server-alias";
        let long = format!("~{}", "a".repeat(super::MAX_REGEX_LEN + 1));
        let a = fixture::ingress("default", "a")
            .class("portico")
            .created("2024-01-01T00:00:00Z")
            .annotation(n, &format!(r"~^b\d\.test$, ~^(a|b)\d\.test$, ~[, {long}"))
            .rule("a.test", "/", Prefix, "a", 80);
        let exact = fixture::ingress("default", "exact")
            .class("portico")
            .rule("b1.test", "/", Prefix, "exact", 80);
        let cfg = compile(
            &fixture::snapshot([fixture::portico_class().into(), a.into(), exact.into()]),
            &Options::default(),
        );
        let service = |host: &str| cfg.routes.route(host, "/").map(|r| r.service.name.clone());
        assert_eq!(service("b1.test").as_deref(), Some("exact"));
        assert_eq!(service("B2.TEST").as_deref(), Some("a"));
        assert_eq!(service("a7.test").as_deref(), Some("a"));
        assert_eq!(service("c1.test"), None);
        let warnings: Vec<_> = cfg.diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert!(
            warnings
                .iter()
                .any(|m| m.contains("~[ is not a valid regular expression")),
            "{warnings:?}"
        );
        assert!(warnings.iter().any(|m| m.contains("1 to 1024 bytes")), "{warnings:?}");
        // Shown in /routes with their `~`.
        assert!(cfg.route_list.iter().any(|r| r.host.to_string() == r"~^(a|b)\d\.test$"));
    }
}
