//! TLSRoute (GATEWAY-TLS, core): Gateway listeners of protocol TLS in mode Passthrough, and
//! the TLSRoutes attached to them turned into passthrough hosts (the ClientHello's SNI name
//! → the backend its connection is spliced to, unterminated), with their status decisions.

use std::collections::HashMap;
use std::sync::Arc;

use super::{
    Condition, GatewayState, RoutePass, RouteView, cond, generation, not_accepted, oldest_first, reason_of, uid,
};
use crate::config::Policy;
use crate::config::backend::BackendId;
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::gateway::{ParentReport, Report, RouteKind, RouteReport};
use crate::config::route::HostPattern;
use crate::model::ObjectKey;
use crate::model::gateway::{Listener, TLSRouteRule};

/// The route kinds a TLS listener takes.
pub(super) const TLS_KINDS: [&str; 1] = ["TLSRoute"];

/// A passthrough host a TLSRoute compiled to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The SNI key: an exact name, `*.suffix` for any number of labels before `suffix`, or
    /// `*` for every name.
    pub name: String,
    pub backend: usize,
    pub route: ObjectKey,
    /// The Gateway (index in the compile's Gateway list) and listener port it came through.
    pub via: (usize, u16),
}

/// Whether a `protocol: TLS` listener can be served: Passthrough only (Terminate is the
/// extended feature TLSRouteModeTerminate, which Portico does not claim).
pub(super) fn listener(l: &Listener) -> Result<(), Condition> {
    match l.tls.as_ref().and_then(|t| t.mode.as_deref()).unwrap_or("Terminate") {
        "Passthrough" => Ok(()),
        "Terminate" => Err(not_accepted(
            cond::UNSUPPORTED_VALUE,
            "a TLS listener in tls.mode Terminate is not supported (Passthrough is)",
        )),
        other => Err(not_accepted(
            cond::UNSUPPORTED_VALUE,
            format!("tls.mode {other:?} is not Passthrough"),
        )),
    }
}

/// Attaches the TLSRoutes (oldest first) to our Gateways' TLS listeners and returns their
/// passthrough hosts; a host an older route holds stays with it. Route reports go to `report`.
pub(super) fn routes(
    pass: &mut RoutePass,
    gateways: &mut [GatewayState],
    policy: &Arc<Policy>,
    report: &mut Report,
) -> Vec<Host> {
    let mut routes: Vec<_> = pass.snapshot.tls_routes.iter().collect();
    routes.sort_by(|(ka, a), (kb, b)| oldest_first((ka, &a.metadata), (kb, &b.metadata)));
    let mut hosts: Vec<Host> = Vec::new();
    let mut owner: HashMap<(String, (usize, u16)), usize> = HashMap::new();
    for (key, route) in routes {
        let view = RouteView {
            kind: RouteKind::TLSRoute,
            key,
            meta: &route.metadata,
            parent_refs: &route.spec.parent_refs,
            hostnames: &route.spec.hostnames,
            rules: Vec::new(),
            policy,
        };
        let (parents, attached) = pass.parents(&view, gateways);
        if parents.is_empty() {
            continue;
        }
        let (backend, resolved) = rule_backend(pass, &view, &route.spec.rules);
        if let Some(backend) = backend {
            for (at, names) in &attached {
                let port = u16::try_from(gateways[at.gateway].listeners[at.listener].spec.port).unwrap_or(0);
                let via = (at.gateway, port);
                let keys: Vec<String> = match names.is_empty() {
                    true => vec!["*".into()],
                    false => names.clone(),
                };
                for k in keys {
                    if k != "*"
                        && let Err(msg) = HostPattern::gateway(&k)
                    {
                        pass.warn(&view, Severity::Warning, Reason::InvalidHost, msg);
                        continue;
                    }
                    // Per Gateway and port: Gateways with addresses of their own
                    // (`--gateway-services`) may pass the same name to different routes.
                    let at_key = (k.clone(), via);
                    match owner.get(&at_key) {
                        Some(&i) if hosts[i].route != *key => pass.warn(
                            &view,
                            Severity::Warning,
                            Reason::PathConflict,
                            format!("host {k} is passed through by the older TLSRoute {}", hosts[i].route),
                        ),
                        Some(_) => {}
                        None => {
                            owner.insert(at_key, hosts.len());
                            hosts.push(Host {
                                name: k,
                                backend,
                                route: key.clone(),
                                via,
                            });
                        }
                    }
                }
            }
        }
        report.routes.push(RouteReport {
            kind: RouteKind::TLSRoute,
            key: key.clone(),
            generation: generation(&route.metadata),
            parents: parents
                .into_iter()
                .map(|(parent_ref, accepted)| ParentReport {
                    parent_ref,
                    conditions: vec![accepted, resolved.clone()],
                })
                .collect(),
            uid: uid(&route.metadata),
        });
    }
    hosts
}

/// The backend a TLSRoute's connections go to, and its ResolvedRefs condition. A reference
/// that cannot be used gives a backend without endpoints (its connections are closed);
/// `None`: the rule cannot be served at all (a Warning says why).
fn rule_backend(pass: &mut RoutePass, view: &RouteView, rules: &[TLSRouteRule]) -> (Option<BackendId>, Condition) {
    let ok = Condition::new(cond::RESOLVED_REFS, true, "ResolvedRefs", "all references resolved");
    let unsupported = |pass: &mut RoutePass, msg: &str| {
        let msg = format!("the route is not served: {msg}");
        pass.warn(view, Severity::Warning, Reason::UnsupportedFeature, msg);
    };
    // The CRD allows one rule.
    let refs = match rules {
        [rule, ..] => rule.backend_refs.as_slice(),
        [] => {
            unsupported(pass, "it has no rule");
            return (None, ok);
        }
    };
    let b = match refs {
        [b] => b,
        [] => {
            unsupported(pass, "its rule has no backendRef");
            return (None, ok);
        }
        _ => {
            unsupported(pass, "several backendRefs are not supported for TLSRoute");
            return (None, ok);
        }
    };
    let t = &b.target;
    let target = (t.group.as_deref(), t.kind.as_deref(), t.namespace.as_deref(), &t.name);
    match pass.resolve_ref(view, target, t.port) {
        Ok(_) if b.weight == Some(0) => (Some(pass.no_backend(view, "its one backendRef has weight 0").0), ok),
        Ok((id, _)) => (Some(id), ok),
        Err((reason, msg)) => {
            let warn = format!("{msg}; its TLS connections are closed");
            pass.warn(view, Severity::Error, reason_of(reason), warn);
            let id = pass.no_backend(view, &msg).0;
            (Some(id), Condition::new(cond::RESOLVED_REFS, false, reason, msg))
        }
    }
}

/// Adds the TLSRoutes' passthrough hosts to the Ingresses' `ssl-passthrough` table, which
/// keeps a host both claim (Ingresses come first, as for HTTP routes; between TLSRoutes, the
/// older one, which comes first in `hosts`).
pub fn merge(table: &mut HashMap<String, usize>, hosts: Vec<Host>, diags: &mut Diagnostics) {
    let mut from_routes: HashMap<String, ObjectKey> = HashMap::new();
    for Host {
        name: host,
        backend,
        route,
        ..
    } in hosts
    {
        if table.contains_key(&host) {
            let msg = match from_routes.get(&host) {
                Some(older) if *older == route => continue,
                Some(older) => format!("host {host} is passed through by the older TLSRoute {older}"),
                None => format!("host {host} is passed through by an Ingress (ssl-passthrough); Ingresses come first"),
            };
            diags.push(
                ObjectRef::new(RouteKind::TLSRoute.as_str(), &route),
                Severity::Warning,
                Reason::PathConflict,
                msg,
            );
            continue;
        }
        table.insert(host.clone(), backend);
        from_routes.insert(host, route);
    }
}

#[cfg(test)]
mod tests;
