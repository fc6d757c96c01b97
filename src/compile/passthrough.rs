//! `ssl-passthrough`: which TLS hosts go unterminated to which backend, as ingress-nginx
//! picks them (an exact host's `/` rule, oldest Ingress first; only with the flag).

use std::collections::HashMap;
use std::sync::Arc;

use super::Options;
use super::annotations::Annotations;
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::route::PathType;
use crate::config::{Backend, HostPattern, Protocol, Route};
use crate::model::{ObjectKey, Snapshot};

/// Host → backend index for the admitted Ingresses (oldest first) that ask for passthrough.
pub fn table(
    snapshot: &Snapshot,
    opts: &Options,
    admitted: &[ObjectKey],
    routes: &[Arc<Route>],
    diags: &mut Diagnostics,
) -> HashMap<String, usize> {
    let mut table = HashMap::new();
    for key in admitted {
        let Some(ing) = snapshot.ingresses.get(key) else {
            continue;
        };
        let mut notes = Annotations::of(ing, key, diags, &snapshot.secrets);
        if !notes.bool("ssl-passthrough", false) {
            continue;
        }
        let mut warn = |msg: String| {
            diags.push(
                ObjectRef::ingress(key),
                Severity::Warning,
                Reason::InvalidAnnotation,
                msg,
            )
        };
        if !opts.enable_ssl_passthrough {
            warn("ssl-passthrough has no effect: Portico runs without --enable-ssl-passthrough".into());
            continue;
        }
        let mut any = false;
        // The Ingress's own hosts: as in ingress-nginx, a server-alias is not passed through
        // (its TLS is terminated and its requests go to the backend over TLS).
        let own: Vec<HostPattern> = super::hosts::rule_hosts(ing).collect();
        for r in routes.iter().filter(|r| r.ingress == *key && own.contains(&r.host)) {
            let root = r
                .path
                .as_ref()
                .is_some_and(|p| p.path == "/" && p.path_type != PathType::Exact);
            match &r.host {
                HostPattern::Exact(h) if root => {
                    any = true;
                    if let Some(&other) = table.get(h)
                        && other != r.backend
                    {
                        warn(format!(
                            "ssl-passthrough: host {h} is already passed through by an older Ingress"
                        ));
                        continue;
                    }
                    table.insert(h.clone(), r.backend);
                }
                HostPattern::Exact(h) => {
                    if let Some(p) = &r.path {
                        warn(format!(
                            "ssl-passthrough: path {} of host {h} is not used for TLS connections, which all go to the backend of path /",
                            p.path
                        ));
                    }
                }
                other => warn(format!(
                    "ssl-passthrough: host {other} is not an exact host name (SNI selects an exact host); not passed through"
                )),
            }
        }
        if !any {
            warn(
                "ssl-passthrough: the Ingress has no rule for path / on an exact host; nothing is passed through"
                    .into(),
            );
        }
    }
    table
}

/// A passed-through backend speaks TLS itself: plain HTTP requests routed to it (the host's
/// rules on the HTTP listener) go to it over TLS, as ingress-nginx proxies them with
/// `https://` (HTTP/2 with prior knowledge becomes HTTP/2 over TLS).
pub fn speak_tls(backends: &mut [Arc<Backend>], table: &HashMap<String, usize>) {
    for &i in table.values() {
        if let Some(b) = backends.get_mut(i) {
            let tls = match b.protocol {
                Protocol::Http => Protocol::Https,
                Protocol::H2c => Protocol::H2,
                other => other,
            };
            if tls != b.protocol {
                Arc::make_mut(b).protocol = tls;
            }
        }
    }
}
