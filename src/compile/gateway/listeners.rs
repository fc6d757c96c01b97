//! Gateway listeners grouped into serving points: each target port (`GatewayPort::target`)
//! with one route table per listener hostname, most specific first, holding only the routes
//! attached to those listeners.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Attached, GatewayState};
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::frontend_tls::FrontendValidation;
use crate::config::gateway::{GatewayPort, Via};
use crate::config::listeners::{ListenerTable, Point, Points, specificity};
use crate::config::route::{HostPattern, Route, RouteTableBuilder};

struct TableBuild {
    hostname: HostPattern,
    via: Vec<Via>,
    routes: Vec<usize>,
    builder: RouteTableBuilder,
}

struct PointBuild {
    tls: bool,
    tables: Vec<TableBuild>,
    frontend: Option<Arc<FrontendValidation>>,
}

/// The serving points of the usable listeners of `gateways` (`ports[i]`: the ports of
/// gateway `i` with their targets), with `routes` (each with the listeners it is served
/// through) in their listeners' tables. `None` when there is no usable listener.
pub(super) fn build(
    gateways: &[GatewayState],
    ports: &[Vec<GatewayPort>],
    routes: Vec<(Arc<Route>, Vec<Attached>)>,
    diags: &mut Diagnostics,
) -> Option<Arc<Points>> {
    let mut points: BTreeMap<u16, PointBuild> = BTreeMap::new();
    // (gateway, listener) → (target, table); `None` for TLS listeners (no HTTP routes).
    let mut place: BTreeMap<(usize, usize), (u16, Option<usize>)> = BTreeMap::new();
    for (gi, gw) in gateways.iter().enumerate() {
        for (li, l) in gw.listeners.iter().enumerate().filter(|(_, l)| l.usable) {
            let protocol = l.spec.protocol.as_str();
            let http = matches!(protocol, "HTTP" | "HTTPS");
            if !http && protocol != "TLS" {
                continue;
            }
            let Some(target) = u16::try_from(l.spec.port)
                .ok()
                .and_then(|port| ports.get(gi)?.iter().find(|p| p.port == port))
                .map(|p| p.target)
            else {
                continue;
            };
            let tls = protocol != "HTTP";
            let point = points.entry(target).or_insert_with(|| PointBuild {
                tls,
                tables: Vec::new(),
                frontend: None,
            });
            if point.tls != tls {
                diags.push(
                    ObjectRef::new("Gateway", &gw.key),
                    Severity::Error,
                    Reason::NotAccepted,
                    format!(
                        "listener {}: port {} is served with{} TLS for another Gateway; this listener is not served",
                        l.spec.name,
                        l.spec.port,
                        if point.tls { "" } else { "out" }
                    ),
                );
                continue;
            }
            // gwfront: one client-certificate validation per port; a listener without one
            // on a port that has one is validated too (stricter, never looser).
            if let Some(v) = &l.frontend {
                match &point.frontend {
                    None => point.frontend = Some(v.clone()),
                    Some(have) if have == v => {}
                    Some(_) => {
                        diags.push(
                            ObjectRef::new("Gateway", &gw.key),
                            Severity::Error,
                            Reason::NotAccepted,
                            format!(
                                "listener {}: port {} validates client certificates otherwise for another listener; this listener is not served",
                                l.spec.name, l.spec.port
                            ),
                        );
                        continue;
                    }
                }
            }
            if !http {
                place.insert((gi, li), (target, None));
                continue;
            }
            let hostname = l
                .spec
                .hostname
                .as_deref()
                .filter(|h| !h.is_empty())
                .map_or(Ok(HostPattern::Any), HostPattern::gateway)
                .unwrap_or(HostPattern::Any);
            let via = Via {
                gateway: gw.key.clone(),
                listener: l.spec.name.clone(),
                listener_set: super::listener_set::of(gw, li),
            };
            let table = match point.tables.iter().position(|t| t.hostname == hostname) {
                Some(t) => {
                    point.tables[t].via.push(via);
                    t
                }
                None => {
                    point.tables.push(TableBuild {
                        hostname,
                        via: vec![via],
                        routes: Vec::new(),
                        builder: RouteTableBuilder::default(),
                    });
                    point.tables.len() - 1
                }
            };
            place.insert((gi, li), (target, Some(table)));
        }
    }
    if points.is_empty() {
        return None;
    }
    for (route, via) in routes {
        let mut tables: Vec<(u16, usize)> = via
            .iter()
            .filter_map(|a| match place.get(&(a.gateway, a.listener)) {
                Some(&(target, Some(table))) => Some((target, table)),
                _ => None,
            })
            .collect();
        tables.sort_unstable();
        tables.dedup();
        for (target, table) in tables {
            if let Some(t) = points.get_mut(&target).and_then(|p| p.tables.get_mut(table)) {
                t.routes.push(route.id);
                t.builder.add_path(route.clone());
            }
        }
    }
    let points = points
        .into_iter()
        .map(|(target, p)| {
            let mut listeners: Vec<ListenerTable> = p
                .tables
                .into_iter()
                .map(|t| {
                    let (table, errors) = t.builder.build();
                    for (route, msg) in errors {
                        diags.push(
                            ObjectRef::new("HTTPRoute", &route.ingress),
                            Severity::Error,
                            Reason::RouteTable,
                            format!("path cannot be served: {msg}"),
                        );
                    }
                    ListenerTable {
                        hostname: t.hostname,
                        via: t.via,
                        routes: t.routes,
                        table: Arc::new(table),
                    }
                })
                .collect();
            listeners.sort_by_key(|l| specificity(&l.hostname));
            Point {
                target,
                tls: p.tls,
                listeners,
                frontend: p.frontend,
            }
        })
        .collect();
    Some(Arc::new(Points { points }))
}

/// Marks the listeners of `gw` whose port's target (`ports`) the data plane could not bind
/// (`Options::unbound_ports`) not Programmed (reason `Pending`: it is tried again), with a
/// diagnostic. They keep their routes, served once the port can be bound.
pub(super) fn unbound(
    opts: &crate::compile::Options,
    gw: &mut GatewayState,
    ports: &[GatewayPort],
    diags: &mut Diagnostics,
) {
    if opts.unbound_ports.is_empty() {
        return;
    }
    for l in gw.listeners.iter_mut().filter(|l| l.usable) {
        let Some((target, why)) = ports
            .iter()
            .find(|p| i64::from(p.port) == l.spec.port)
            .and_then(|p| Some((p.target, opts.unbound_ports.get(&p.target)?)))
        else {
            continue;
        };
        let msg = format!("port {target} cannot be bound: {why}");
        diags.push(
            ObjectRef::new("Gateway", &gw.key),
            Severity::Error,
            Reason::NotAccepted,
            format!("listener {}: {msg}", l.spec.name),
        );
        if let Some(c) = l
            .report
            .conditions
            .iter_mut()
            .find(|c| c.type_ == super::cond::PROGRAMMED)
        {
            *c = crate::config::gateway::Condition::new(super::cond::PROGRAMMED, false, "Pending", msg);
        }
    }
}
