//! Gateway API semantics: our GatewayClasses and Gateways, their listeners, and the
//! HTTPRoutes attached to them turned into the same routes, backends and certificates as
//! Ingresses, with every decision the objects' status needs recorded in a [`Report`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use rustls::sign::CertifiedKey;

use super::Options;
use super::backend::Resolver;
use super::gateway_filters::{BackendRef as MirrorRef, Rule as FilterRule, compile_filters};
use super::ingress::Compiled;
use super::tls::parse_tls_secret;
use crate::config::backend::BackendId;
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::filters::Filters;
use crate::config::gateway::{
    ClassReport, Condition, GatewayReport, ListenerReport, Origin, ParentRef, ParentReport, Report, RouteKind,
    RouteReport, Via,
};
use crate::config::global::Global;
use crate::config::route::{HostPattern, PathType, Route, Weighted, WeightedChoice};
use crate::config::upstream_tls::{ClientCert, UpstreamTls};
use crate::config::{CertStore, Policy, PortRef, Protocol};
use crate::model::gateway::{self as api, GROUP, Gateway, HTTPRoute, Listener};
use crate::model::{ObjectKey, Snapshot};
use matches::Match;

pub mod infra;
mod listener_set;
mod listeners;
mod matches;
pub mod ports;
mod retry;
mod timeouts;

/// The route kinds a listener of each protocol takes.
// gwcore: TLSRoute with TLS passthrough.
const HTTP_KINDS: [&str; 2] = ["HTTPRoute", "GRPCRoute"];

/// Condition types and reasons, as the spec spells them.
mod cond {
    pub const ACCEPTED: &str = "Accepted";
    pub const PROGRAMMED: &str = "Programmed";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const CONFLICTED: &str = "Conflicted";
    pub const INVALID: &str = "Invalid";
    pub const NO_CONFLICTS: &str = "NoConflicts";
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    pub const INVALID_KIND: &str = "InvalidKind";
}

/// A listener as compile sees it after validation.
struct ListenerState<'a> {
    spec: &'a Listener,
    /// Routes may attach (Accepted, not Conflicted, and Programmed).
    usable: bool,
    https: bool,
    supported_kinds: Vec<&'static str>,
    certificate: Option<(Arc<CertifiedKey>, ObjectKey)>,
    report: ListenerReport,
    /// Host names of the routes attached here, for the certificate of a listener without
    /// a hostname of its own.
    hosts: Vec<HostPattern>,
    /// Where it comes from: the Gateway itself (`None`) or its ListenerSet `sets[i]`.
    from: Option<usize>,
    /// gwfront: the client-certificate validation its port enforces.
    frontend: Option<Arc<crate::config::frontend_tls::FrontendValidation>>,
}

struct GatewayState<'a> {
    key: ObjectKey,
    gateway: &'a Gateway,
    /// The Gateway's own listeners, then those of the ListenerSets attached to it, in the
    /// spec's precedence.
    listeners: Vec<ListenerState<'a>>,
    /// The ListenerSets whose parentRef is this Gateway.
    sets: Vec<listener_set::SetState>,
    /// gwtls: `spec.tls.backend.clientCertificateRef` (`None`: none), or why it is unusable.
    backend_client: Option<Result<ClientCert, Condition>>,
}

/// Compiles the Gateway API objects of our classes into `compiled` (after the Ingresses,
/// which win any host and path, or certificate, both claim: a diagnostic says so).
pub fn compile<'s>(
    snapshot: &'s Snapshot,
    opts: &Options,
    global: &Global,
    resolver: &mut Resolver<'s>,
    diags: &mut Diagnostics,
    certs: &mut CertStore,
    compiled: &mut Compiled,
) -> Report {
    let mut report = Report {
        controller_name: opts.gateway_controller_name.clone(),
        ..Default::default()
    };
    let mut classes = HashSet::new();
    for (key, class) in snapshot.gateway_classes.iter() {
        if class.spec.controller_name != opts.gateway_controller_name {
            continue;
        }
        classes.insert(key.name.as_str());
        report.classes.push(ClassReport {
            name: key.name.clone(),
            generation: generation(&class.metadata),
            conditions: vec![Condition::new(cond::ACCEPTED, true, "Accepted", "accepted by Portico")],
            supported_features: infra::supported_features(opts),
            uid: uid(&class.metadata),
        });
    }
    if classes.is_empty() {
        return report;
    }
    let mut gateways: Vec<(&ObjectKey, &Gateway)> = snapshot
        .gateways
        .iter()
        .filter(|(_, g)| classes.contains(g.spec.gateway_class_name.as_str()))
        .map(|(k, g)| (k, g.as_ref()))
        .collect();
    gateways.sort_by(|(ka, a), (kb, b)| oldest_first((ka, &a.metadata), (kb, &b.metadata)));
    let mut states: Vec<GatewayState> = gateways
        .into_iter()
        .map(|(key, gateway)| GatewayState {
            key: key.clone(),
            gateway,
            listeners: listeners(snapshot, opts, key, gateway, diags),
            sets: Vec::new(),
            backend_client: backend_tls::client_certificate(snapshot, key, gateway.spec.tls.as_ref(), |s| {
                granted(snapshot, ("Gateway", &key.namespace), ("", "Secret"), s)
            }),
        })
        .collect();
    listener_set::attach(snapshot, opts, &mut states, diags);

    let wanted: Vec<(&ObjectKey, Vec<u16>)> = states
        .iter()
        .map(|gw| {
            let ports = gw
                .listeners
                .iter()
                .filter(|l| l.usable)
                .filter_map(|l| u16::try_from(l.spec.port).ok())
                .collect();
            (&gw.key, ports)
        })
        .collect();
    let assigned = ports::assign(&wanted, opts.gateway_services);
    let claims = compiled
        .routes
        .iter()
        .filter_map(|r| {
            let p = r.path.as_ref()?;
            Some((
                (r.host.clone(), p.path.clone(), p.path_type.is_exact()),
                r.ingress.clone(),
            ))
        })
        .collect();
    let backend_tls = backend_tls::Policies::compile(snapshot, diags);
    let mut pass = RoutePass {
        snapshot,
        resolver,
        diags,
        routes: &mut compiled.routes,
        claims,
        taken: HashSet::new(),
        table: Vec::new(),
        origins: Vec::new(),
        backend_tls,
    };
    let http = Arc::new(global.routes.policy());
    // gRPC goes to the pods as HTTP/2 with prior knowledge.
    let grpc = Arc::new(Policy {
        backend_protocol: Some(Protocol::H2c),
        ..global.routes.policy()
    });
    let mut views: Vec<RouteView> = snapshot
        .http_routes
        .iter()
        .map(|(k, r)| http_view(k, r, &http))
        .chain(snapshot.grpc_routes.iter().map(|(k, r)| grpc_view(k, r, &grpc)))
        .collect();
    // HTTPRoutes and GRPCRoutes share the table: the oldest claim on a host and path wins.
    views.sort_by(|a, b| oldest_first((a.key, a.meta), (b.key, b.meta)));
    for view in &views {
        if let Some(r) = pass.route(view, &mut states) {
            report.routes.push(r);
        }
    }
    // gwtls: TLSRoutes become passthrough hosts, merged into Config.passthrough by compile().
    compiled.gateway_passthrough = tls::routes(&mut pass, &mut states, &http, &mut report);
    report.origins = std::mem::take(&mut pass.origins);
    let backend_tls = std::mem::take(&mut pass.backend_tls);
    let table = std::mem::take(&mut pass.table);
    drop(pass);
    // gwlisten: each listener serves only the routes attached to it.
    compiled.gateway_listeners = listeners::build(&states, &assigned, table, diags);
    report.policies = backend_tls.reports(&compiled.routes, &report);
    let mut ports = assigned.into_iter();
    for gw in &mut states {
        let gw_ports = ports.next().unwrap_or_default();
        listeners::unbound(opts, gw, &gw_ports, diags);
        certificates(opts, gw, certs, diags);
        let own = || gw.listeners.iter().filter(|l| l.from.is_none());
        let programmed = own().filter(|l| l.usable).count();
        let all = own().count();
        let accepted = match programmed {
            n if n == all => Condition::new(cond::ACCEPTED, true, "Accepted", "accepted by Portico"),
            0 => not_accepted(cond::LISTENERS_NOT_VALID, "no listener is valid"),
            n => Condition::new(
                cond::ACCEPTED,
                true,
                cond::LISTENERS_NOT_VALID,
                format!("{} of {all} listeners are not valid", all - n),
            ),
        };
        let programmed = match programmed {
            0 => Condition::new(cond::PROGRAMMED, false, cond::INVALID, "no listener is programmed"),
            _ => Condition::new(cond::PROGRAMMED, true, "Programmed", "served by Portico"),
        };
        let infra = infra::check(&gw.key, gw.gateway, opts, diags);
        let (accepted, programmed) = infra.conditions(accepted, programmed);
        let mut conditions = vec![accepted, programmed];
        match &gw.backend_client {
            Some(Ok(_)) => conditions.push(Condition::new(
                cond::RESOLVED_REFS,
                true,
                cond::RESOLVED_REFS,
                "all references resolved",
            )),
            Some(Err(c)) => {
                let msg = format!(
                    "spec.tls.backend.clientCertificateRef: {}; not presented to backends",
                    c.message
                );
                diags.push(
                    ObjectRef::new("Gateway", &gw.key),
                    Severity::Error,
                    Reason::SecretNotFound,
                    msg,
                );
                conditions.push(c.clone());
            }
            None => {}
        }
        conditions.extend(frontend::insecure(gw.gateway));
        report.gateways.push(GatewayReport {
            key: gw.key.clone(),
            generation: generation(&gw.gateway.metadata),
            conditions,
            listeners: own().map(|l| l.report.clone()).collect(),
            ports: gw_ports,
            uid: uid(&gw.gateway.metadata),
            attached_listener_sets: listener_set::attached(gw),
            service: infra.service,
        });
    }
    report.listener_sets = listener_set::reports(&states);
    // gwtls: names TLS listeners claim, and each Gateway's own target ports.
    compiled.sni_gate = sni::gate(
        &states,
        &report.gateways,
        &mut compiled.gateway_passthrough,
        opts.gateway_services,
    );
    report
}

fn generation(meta: &ObjectMeta) -> i64 {
    meta.generation.unwrap_or(0)
}

fn uid(meta: &ObjectMeta) -> String {
    meta.uid.clone().unwrap_or_default()
}

/// The spec's tie-break between objects: oldest first, then by namespace/name. Objects
/// without a creation time (hand-written manifests) count as newest.
fn oldest_first(a: (&ObjectKey, &ObjectMeta), b: (&ObjectKey, &ObjectMeta)) -> std::cmp::Ordering {
    let ta = a.1.creation_timestamp.as_ref();
    let tb = b.1.creation_timestamp.as_ref();
    (ta.is_none(), ta, a.0).cmp(&(tb.is_none(), tb, b.0))
}

/// Validates a Gateway's listeners: protocol, hostname, conflicts, route kinds and TLS.
fn listeners<'a>(
    snapshot: &Snapshot,
    opts: &Options,
    key: &ObjectKey,
    gateway: &'a Gateway,
    diags: &mut Diagnostics,
) -> Vec<ListenerState<'a>> {
    let specs = &gateway.spec.listeners;
    let mut out = Vec::with_capacity(specs.len());
    for l in specs {
        let mut conflicted = Condition::new(cond::CONFLICTED, false, cond::NO_CONFLICTS, "no conflicts");
        // Another listener on the same port: a different protocol, or the same hostname.
        for other in specs.iter().filter(|o| o.name != l.name) {
            if let Some(c) = conflict(l, other) {
                let protocol = c.reason == cond::PROTOCOL_CONFLICT;
                conflicted = c;
                if protocol {
                    break;
                }
            }
        }
        let mut state = listener(snapshot, opts, ("Gateway", key), l, conflicted, diags);
        // gwtls/gwfront: spec.tls.frontend, enforced or fail closed (see gateway::frontend).
        frontend::apply(snapshot, opts, ("Gateway", key), (key, gateway), &mut state, diags);
        out.push(state);
    }
    out
}

/// Whether listener `l` conflicts with `other`: the same port with another protocol, or the
/// same port, protocol and hostname.
fn conflict(l: &Listener, other: &Listener) -> Option<Condition> {
    if other.port != l.port {
        return None;
    }
    // gwtls: HTTPS and TLS share a port (the SNI tells them apart), as the spec allows.
    let sni_pair = matches!(
        (l.protocol.as_str(), other.protocol.as_str()),
        ("HTTPS", "TLS") | ("TLS", "HTTPS")
    );
    if other.protocol != l.protocol && !sni_pair {
        return Some(Condition::new(
            cond::CONFLICTED,
            true,
            cond::PROTOCOL_CONFLICT,
            format!(
                "listener {} uses port {} with protocol {}",
                other.name, l.port, other.protocol
            ),
        ));
    }
    (hostname_key(&other.hostname) == hostname_key(&l.hostname)).then(|| {
        Condition::new(
            cond::CONFLICTED,
            true,
            cond::HOSTNAME_CONFLICT,
            format!("listener {} has the same port, protocol and hostname", other.name),
        )
    })
}

/// Validates one listener of `owner` (its kind and key: a Gateway, or a ListenerSet whose
/// listeners join its Gateway's), whose Conflicted condition is `conflicted`.
fn listener<'a>(
    snapshot: &Snapshot,
    opts: &Options,
    owner: (&'static str, &ObjectKey),
    l: &'a Listener,
    conflicted: Condition,
    diags: &mut Diagnostics,
) -> ListenerState<'a> {
    let key = owner.1;
    let mut accepted = Condition::new(cond::ACCEPTED, true, "Accepted", "accepted by Portico");
    let mut resolved = Condition::new(cond::RESOLVED_REFS, true, "ResolvedRefs", "all references resolved");
    let https = l.protocol == "HTTPS";
    let mut supported_kinds: Vec<&'static str> = Vec::new();
    match l.protocol.as_str() {
        "HTTP" | "HTTPS" => supported_kinds.extend(HTTP_KINDS),
        // gwtls: TLS listeners (Passthrough) take TLSRoutes.
        "TLS" => match tls::listener(l) {
            Ok(()) => supported_kinds.extend(tls::TLS_KINDS),
            Err(c) => accepted = c,
        },
        other => {
            accepted = not_accepted(
                cond::UNSUPPORTED_PROTOCOL,
                format!("protocol {other:?} is not supported (HTTP and HTTPS are)"),
            )
        }
    }
    if accepted.status && !(1..=65535).contains(&l.port) {
        accepted = not_accepted(
            cond::UNSUPPORTED_VALUE,
            format!("port {} is not from 1 to 65535", l.port),
        );
    }
    if accepted.status
        && let Some(h) = &l.hostname
        && let Err(msg) = HostPattern::parse(Some(h))
    {
        accepted = not_accepted(cond::UNSUPPORTED_VALUE, msg);
    }
    if let Some(kinds) = l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
        let mut valid = Vec::new();
        for k in kinds {
            let group = k.group.as_deref().unwrap_or(GROUP);
            match supported_kinds.iter().find(|s| group == GROUP && **s == k.kind) {
                Some(s) => valid.push(*s),
                None => {
                    resolved = Condition::new(
                        cond::RESOLVED_REFS,
                        false,
                        cond::INVALID_ROUTE_KINDS,
                        format!("route kind {group}/{} is not supported on this listener", k.kind),
                    )
                }
            }
        }
        valid.dedup();
        supported_kinds = valid;
    }
    let mut certificate = None;
    if https && accepted.status {
        match listener_certificate(snapshot, opts, owner, l) {
            Ok(c) => certificate = Some(c),
            Err((reason, msg)) => {
                diags.push(
                    ObjectRef::new(owner.0, key),
                    Severity::Error,
                    Reason::InvalidCertificate,
                    format!("listener {}: {msg}", l.name),
                );
                resolved = Condition::new(cond::RESOLVED_REFS, false, reason, msg);
            }
        }
    }
    let usable = accepted.status && !conflicted.status && (!https || certificate.is_some());
    let programmed = match usable {
        true => Condition::new(cond::PROGRAMMED, true, "Programmed", "served by Portico"),
        false => Condition::new(cond::PROGRAMMED, false, cond::INVALID, "the listener is not valid"),
    };
    if !accepted.status {
        diags.push(
            ObjectRef::new(owner.0, key),
            Severity::Error,
            Reason::NotAccepted,
            format!("listener {}: {}", l.name, accepted.message),
        );
    }
    if conflicted.status {
        diags.push(
            ObjectRef::new(owner.0, key),
            Severity::Error,
            Reason::NotAccepted,
            format!("listener {} is conflicted: {}", l.name, conflicted.message),
        );
    }
    ListenerState {
        spec: l,
        usable,
        https,
        certificate,
        report: ListenerReport {
            name: l.name.clone(),
            supported_kinds: supported_kinds.clone(),
            attached_routes: 0,
            conditions: vec![accepted, programmed, resolved, conflicted],
        },
        supported_kinds,
        hosts: Vec::new(),
        from: None,
        frontend: None,
    }
}

fn not_accepted(reason: &'static str, msg: impl Into<String>) -> Condition {
    Condition::new(cond::ACCEPTED, false, reason, msg)
}

fn hostname_key(h: &Option<String>) -> String {
    h.as_deref().unwrap_or("").to_ascii_lowercase()
}

/// The first usable certificate of an HTTPS listener; else the spec's reason and a message.
fn listener_certificate(
    snapshot: &Snapshot,
    opts: &Options,
    (owner, gateway): (&str, &ObjectKey),
    l: &Listener,
) -> Result<(Arc<CertifiedKey>, ObjectKey), (&'static str, String)> {
    let tls = l.tls.as_ref().ok_or((
        cond::INVALID_CERTIFICATE_REF,
        "an HTTPS listener needs tls.certificateRefs".to_string(),
    ))?;
    if tls.mode.as_deref().is_some_and(|m| m != "Terminate") {
        return Err((
            cond::INVALID_CERTIFICATE_REF,
            "an HTTPS listener terminates TLS (tls.mode Terminate)".into(),
        ));
    }
    let mut problem = (
        cond::INVALID_CERTIFICATE_REF,
        "tls.certificateRefs is empty".to_string(),
    );
    for r in &tls.certificate_refs {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Secret");
        if !group.is_empty() || kind != "Secret" {
            problem = (
                cond::INVALID_CERTIFICATE_REF,
                format!("certificateRef {group}/{kind} {} is not a Secret", r.name),
            );
            continue;
        }
        let ns = r.namespace.as_deref().unwrap_or(&gateway.namespace);
        let skey = ObjectKey::new(ns, r.name.clone());
        if ns != gateway.namespace && !granted(snapshot, (owner, &gateway.namespace), ("", "Secret"), &skey) {
            problem = (
                cond::REF_NOT_PERMITTED,
                format!("Secret {skey} is in another namespace and no ReferenceGrant allows it"),
            );
            continue;
        }
        let parsed = match snapshot.secrets.get(&skey) {
            None => Err((Reason::SecretNotFound, "the Secret does not exist".to_string())),
            Some(s) => parse_tls_secret(s, opts.now, opts.cert_cache.as_deref()),
        };
        match parsed {
            Ok(ck) => return Ok((ck, skey)),
            Err((_, msg)) => problem = (cond::INVALID_CERTIFICATE_REF, format!("Secret {skey}: {msg}")),
        }
    }
    Err(problem)
}

/// Whether a ReferenceGrant in `to`'s namespace lets objects of kind `from.0` in namespace
/// `from.1` (all of the Gateway API group) refer to `to` of (group, kind) `to_kind`.
fn granted(snapshot: &Snapshot, from: (&str, &str), to_kind: (&str, &str), to: &ObjectKey) -> bool {
    snapshot
        .reference_grants
        .range(ObjectKey::new(to.namespace.as_str(), "")..)
        .take_while(|(k, _)| k.namespace == to.namespace)
        .any(|(_, g)| {
            g.spec
                .from
                .iter()
                .any(|f| f.group == GROUP && f.kind == from.0 && f.namespace == from.1)
                && g.spec.to.iter().any(|t| {
                    t.group == to_kind.0
                        && t.kind == to_kind.1
                        && t.name.as_deref().is_none_or(|n| n.is_empty() || n == to.name)
                })
        })
}

/// Whether a label selector selects `labels`. An operator it does not know selects nothing.
fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = sel
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    by_labels
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or(&[]);
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// A Namespace's labels, with the `kubernetes.io/metadata.name` label the API server sets
/// (manifests may not list the Namespace at all).
fn namespace_labels(snapshot: &Snapshot, ns: &str) -> BTreeMap<String, String> {
    let mut labels = snapshot
        .namespaces
        .get(&ObjectKey::new("", ns))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), ns.into());
    labels
}

/// The host names a route serves through a listener: the spec's intersection of the
/// listener's hostname and the route's. `None`: they do not intersect. Gateway wildcards
/// match any number of labels.
fn intersect(listener: Option<&str>, route: &[String]) -> Option<Vec<String>> {
    let norm = |h: &str| h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    let Some(l) = listener.filter(|l| !l.is_empty()).map(norm) else {
        return Some(route.iter().map(|r| norm(r)).collect());
    };
    if route.is_empty() {
        return Some(vec![l]);
    }
    // `a` covered by wildcard suffix `s` (from `*.s`): `a` is `x.s` for one or more labels x.
    let under =
        |a: &str, s: &str| a.len() > s.len() + 1 && a.ends_with(s) && a.as_bytes()[a.len() - s.len() - 1] == b'.';
    let mut out = Vec::new();
    for r in route.iter().map(|r| norm(r)) {
        let hit = match (l.strip_prefix("*."), r.strip_prefix("*.")) {
            _ if l == r => Some(r.clone()),
            (Some(ls), None) => under(&r, ls).then(|| r.clone()),
            (None, Some(rs)) => under(&l, rs).then(|| l.clone()),
            (Some(ls), Some(rs)) if under(rs, ls) => Some(r.clone()),
            (Some(ls), Some(rs)) if under(ls, rs) => Some(l.clone()),
            _ => None,
        };
        if let Some(h) = hit
            && !out.contains(&h)
        {
            out.push(h);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The CRDs' `maxItems`, held to for routes no API server validated (the manifests
/// directory): rules of a route, matches and backendRefs of a rule.
const MAX_RULES: usize = 16;
const MAX_MATCHES: usize = 64;
const MAX_BACKEND_REFS: usize = 16;

/// A host + path + match kind an Ingress holds: Gateway API routes leave it to the Ingress.
type Claim = (HostPattern, String, bool);

/// A host, path, path type and conditions a Gateway API route holds: a later match with
/// all of them the same is left out (the spec's precedence: oldest route first).
type Taken = (HostPattern, String, PathType, String);

struct RoutePass<'s, 'r, 'x> {
    snapshot: &'s Snapshot,
    resolver: &'r mut Resolver<'s>,
    diags: &'r mut Diagnostics,
    routes: &'x mut Vec<Arc<Route>>,
    claims: HashMap<Claim, ObjectKey>,
    taken: HashSet<Taken>,
    /// The routes that go into the listeners' tables, with the listeners each is served
    /// through (weighted choices' routes do not).
    table: Vec<(Arc<Route>, Vec<Attached>)>,
    origins: Vec<Origin>,
    /// gwtls: BackendTLSPolicies by the Service (and port) they target.
    backend_tls: backend_tls::Policies,
}

/// A listener a route attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Attached {
    gateway: usize,
    listener: usize,
}

/// A listener a route attached to, with the host names served through it.
type AttachedHosts = (Attached, Vec<String>);

/// Why a backendRef cannot be used: the spec's reason and a message.
type RefProblem = (&'static str, String);

/// An HTTPRoute or GRPCRoute as the route pass reads it.
struct RouteView<'a> {
    kind: RouteKind,
    key: &'a ObjectKey,
    meta: &'a ObjectMeta,
    parent_refs: &'a [api::ParentRef],
    hostnames: &'a [String],
    rules: Vec<RuleView<'a>>,
    policy: &'a Arc<Policy>,
}

/// A rule: its matches in the spec's order (`Err`: why it cannot be served), and what it
/// sends to.
struct RuleView<'a> {
    matches: Result<Vec<Match>, String>,
    /// The PathPrefix a `ReplacePrefixMatch` may rewrite (see [`matches::rule_prefix`]).
    prefix: Option<String>,
    filters: &'a [serde_json::Value],
    backend_refs: &'a [api::HTTPBackendRef],
    timeouts: Option<&'a api::HTTPRouteTimeouts>,
    retry: Option<&'a api::HTTPRouteRetry>,
}

fn http_view<'a>(key: &'a ObjectKey, r: &'a HTTPRoute, policy: &'a Arc<Policy>) -> RouteView<'a> {
    let rules = match &r.spec.rules {
        // The CRD's default: one rule for every path, without backend.
        None => vec![RuleView {
            matches: Ok(vec![matches::any_path()]),
            prefix: Some("/".into()),
            filters: &[],
            backend_refs: &[],
            timeouts: None,
            retry: None,
        }],
        Some(rules) => rules
            .iter()
            .map(|rule| RuleView {
                matches: match rule.matches.as_deref() {
                    Some(m) if !m.is_empty() => m.iter().map(matches::http_match).collect(),
                    _ => Ok(vec![matches::any_path()]),
                },
                prefix: matches::rule_prefix(rule.matches.as_deref()),
                filters: &rule.filters,
                backend_refs: &rule.backend_refs,
                timeouts: rule.timeouts.as_ref(),
                retry: rule.retry.as_ref(),
            })
            .collect(),
    };
    RouteView {
        kind: RouteKind::HTTPRoute,
        key,
        meta: &r.metadata,
        parent_refs: &r.spec.parent_refs,
        hostnames: &r.spec.hostnames,
        rules,
        policy,
    }
}

fn grpc_view<'a>(key: &'a ObjectKey, r: &'a api::GRPCRoute, policy: &'a Arc<Policy>) -> RouteView<'a> {
    let rules = r
        .spec
        .rules
        .iter()
        .map(|rule| RuleView {
            matches: match rule.matches.as_slice() {
                [] => Ok(vec![matches::any_path()]),
                m => m.iter().map(matches::grpc_match).collect(),
            },
            prefix: None,
            filters: &rule.filters,
            backend_refs: &rule.backend_refs,
            timeouts: None,
            retry: None,
        })
        .collect();
    RouteView {
        kind: RouteKind::GRPCRoute,
        key,
        meta: &r.metadata,
        parent_refs: &r.spec.parent_refs,
        hostnames: &r.spec.hostnames,
        rules,
        policy,
    }
}

/// A parentRef that names a Gateway of ours: the reference with the spec's defaults, and
/// the Gateway's index.
/// A parentRef may also name a ListenerSet whose parent is a Gateway of ours: then the index
/// of that set in the Gateway's `sets` too.
fn parent(
    route: &ObjectKey,
    p: &api::ParentRef,
    gateways: &[GatewayState],
) -> Option<(ParentRef, usize, Option<usize>)> {
    let group = p.group.as_deref().unwrap_or(GROUP);
    let kind = p.kind.as_deref().unwrap_or("Gateway");
    if group != GROUP || !matches!(kind, "Gateway" | "ListenerSet") {
        return None;
    }
    let namespace = p.namespace.clone().unwrap_or_else(|| route.namespace.clone());
    let gkey = ObjectKey::new(namespace.as_str(), p.name.as_str());
    let (gi, set) = match kind {
        "Gateway" => (gateways.iter().position(|g| g.key == gkey)?, None),
        _ => listener_set::find(gateways, &gkey).map(|(gi, si)| (gi, Some(si)))?,
    };
    let parent_ref = ParentRef {
        group: group.into(),
        kind: kind.into(),
        namespace,
        name: p.name.clone(),
        section_name: p.section_name.clone(),
        port: p.port,
    };
    Some((parent_ref, gi, set))
}

impl RoutePass<'_, '_, '_> {
    fn warn(&mut self, view: &RouteView, severity: Severity, reason: Reason, msg: String) {
        self.diags
            .push(ObjectRef::new(view.kind.as_str(), view.key), severity, reason, msg);
    }

    /// Attaches a route to the listeners of ours its parentRefs allow, and compiles its
    /// rules. `None` when none of its parents is a Gateway of ours.
    fn route(&mut self, view: &RouteView, gateways: &mut [GatewayState]) -> Option<RouteReport> {
        let key = view.key;
        let (parents, attached) = self.parents(view, gateways);
        if parents.is_empty() {
            return None;
        }
        let (resolved, unsupported) = self.rules(view, &attached, gateways);
        let generation = generation(view.meta);
        Some(RouteReport {
            kind: view.kind,
            key: key.clone(),
            generation,
            parents: parents
                .into_iter()
                .map(|(parent_ref, accepted)| ParentReport {
                    parent_ref,
                    conditions: vec![
                        match &unsupported {
                            Some(msg) if accepted.status => not_accepted(cond::UNSUPPORTED_VALUE, msg.clone()),
                            _ => accepted,
                        },
                        resolved.clone(),
                    ],
                })
                .collect(),
            uid: uid(view.meta),
        })
    }

    /// Attaches a route through each of its parentRefs that names a Gateway of ours: the
    /// parents with their Accepted condition, and the listeners with the host names served
    /// through each.
    fn parents(
        &mut self,
        view: &RouteView,
        gateways: &mut [GatewayState],
    ) -> (Vec<(ParentRef, Condition)>, Vec<AttachedHosts>) {
        let mut parents = Vec::new();
        let mut attached = Vec::new();
        for p in view.parent_refs {
            // Parents that are not Gateways of ours belong to other controllers (or nobody).
            let Some((parent_ref, gi, set)) = parent(view.key, p, gateways) else {
                continue;
            };
            let accepted = self.attach(view, p, (gi, set), gateways, &mut attached);
            if !accepted.status {
                let gkey = &gateways[gi].key;
                self.warn(
                    view,
                    Severity::Error,
                    Reason::NotAccepted,
                    format!("not accepted by Gateway {gkey}: {}", accepted.message),
                );
            }
            parents.push((parent_ref, accepted));
        }
        (parents, attached)
    }

    /// The listeners of Gateway `gi` one parentRef attaches the route to (added to
    /// `attached` with the host names served through each), and the Accepted condition.
    fn attach(
        &mut self,
        view: &RouteView,
        p: &api::ParentRef,
        (gi, set): (usize, Option<usize>),
        gateways: &mut [GatewayState],
        attached: &mut Vec<(Attached, Vec<String>)>,
    ) -> Condition {
        let key = view.key;
        let gw = &mut gateways[gi];
        if let Some(refused) = set.and_then(|si| listener_set::refused(&gw.sets[si])) {
            return refused;
        }
        // A Gateway parentRef reaches the Gateway's own listeners, a ListenerSet one that
        // set's.
        let candidates: Vec<usize> = (0..gw.listeners.len())
            .filter(|&i| {
                let l = gw.listeners[i].spec;
                gw.listeners[i].from == set
                    && p.section_name.as_deref().is_none_or(|s| s == l.name)
                    && p.port.is_none_or(|port| port == l.port)
            })
            .collect();
        if candidates.is_empty() {
            return not_accepted(
                cond::NO_MATCHING_PARENT,
                "no listener matches the parentRef's sectionName and port",
            );
        }
        let route_labels = namespace_labels(self.snapshot, &key.namespace);
        let allowed: Vec<usize> = candidates
            .into_iter()
            .filter(|&i| {
                let l = &gw.listeners[i];
                let ns = l.spec.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref());
                let ns_ok = match ns.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
                    "All" => true,
                    "Same" => key.namespace == listener_set::owner_namespace(gw, l.from),
                    "Selector" => ns
                        .and_then(|n| n.selector.as_ref())
                        .is_some_and(|s| selects(s, &route_labels)),
                    _ => false,
                };
                ns_ok && l.supported_kinds.contains(&view.kind.as_str())
            })
            .collect();
        if allowed.is_empty() {
            return not_accepted(
                cond::NOT_ALLOWED_BY_LISTENERS,
                "no listener of the parent allows this route (its namespace or kind)",
            );
        }
        let mut any = false;
        for i in allowed {
            let l = &mut gw.listeners[i];
            let Some(hosts) = intersect(l.spec.hostname.as_deref(), view.hostnames) else {
                continue;
            };
            any = true;
            // Attached (and counted, as the spec counts) even to a listener that is not
            // programmed, whose routes are not served.
            l.report.attached_routes = l.report.attached_routes.saturating_add(1);
            if !l.usable {
                continue;
            }
            attached.push((
                Attached {
                    gateway: gi,
                    listener: i,
                },
                hosts,
            ));
        }
        match any {
            true => Condition::new(cond::ACCEPTED, true, "Accepted", "accepted by Portico"),
            false => not_accepted(
                cond::NO_MATCHING_LISTENER_HOSTNAME,
                "no hostname of the route matches a listener's hostname",
            ),
        }
    }

    /// Compiles the rules of an accepted route into routes on every host it was attached
    /// with; returns the ResolvedRefs condition of its backendRefs, and why a rule's filters
    /// or timeouts cannot be served (the parents' `Accepted: False`, `UnsupportedValue`).
    fn rules(
        &mut self,
        view: &RouteView,
        attached: &[(Attached, Vec<String>)],
        gateways: &mut [GatewayState],
    ) -> (Condition, Option<String>) {
        let mut resolved = Condition::new(cond::RESOLVED_REFS, true, "ResolvedRefs", "all references resolved");
        let mut unsupported = None;
        // Host → the listeners it is served through, in attachment order; one entry per
        // listener port (gwlisten: each port has tables of its own, and a redirect keeps it).
        let port_of = |a: &Attached| gateways[a.gateway].listeners[a.listener].spec.port;
        let mut hosts: Vec<(HostPattern, Vec<Attached>)> = Vec::new();
        for (at, names) in attached {
            let patterns: Vec<HostPattern> = match names.is_empty() {
                true => vec![HostPattern::Any],
                // `*.example.com` matches any number of labels here.
                false => names.iter().filter_map(|h| HostPattern::gateway(h).ok()).collect(),
            };
            for h in patterns {
                match hosts
                    .iter_mut()
                    .find(|(p, list)| *p == h && port_of(&list[0]) == port_of(at))
                {
                    Some((_, list)) => list.push(*at),
                    None => hosts.push((h, vec![*at])),
                }
            }
        }
        // A redirect without port or scheme keeps the listener's port, when the host is
        // reached through listeners of one port.
        let ports: Vec<Option<u16>> = hosts
            .iter()
            .map(|(_, via)| {
                let mut ports = via
                    .iter()
                    .map(|a| u16::try_from(gateways[a.gateway].listeners[a.listener].spec.port).ok());
                let first = ports.next().flatten();
                ports.all(|p| p == first).then_some(first).flatten()
            })
            .collect();
        let key = view.key;
        for (ri, rule) in view.rules.iter().enumerate() {
            let matches = match &rule.matches {
                _ if ri >= MAX_RULES => Err(format!("a route has at most {MAX_RULES} rules")),
                _ if rule.backend_refs.len() > MAX_BACKEND_REFS => {
                    Err(format!("a rule has at most {MAX_BACKEND_REFS} backendRefs"))
                }
                Ok(m) if m.len() > MAX_MATCHES => Err(format!("a rule has at most {MAX_MATCHES} matches")),
                Ok(m) => Ok(m),
                Err(msg) => Err(msg.clone()),
            };
            let matches = match matches {
                Ok(m) => m,
                Err(msg) => {
                    self.warn(
                        view,
                        Severity::Warning,
                        Reason::UnsupportedFeature,
                        format!("rule {ri} is not served: {msg}"),
                    );
                    continue;
                }
            };
            let mut problems: Vec<RefProblem> = Vec::new();
            let choices = self.choices(view, rule, &mut problems);
            let mut targets: Vec<(Option<u16>, Target)> = Vec::new();
            let mut failed = None;
            for port in &ports {
                if targets.iter().any(|(p, _)| p == port) {
                    continue;
                }
                match self.target(view, rule, &choices, *port, &mut problems) {
                    Ok(t) => targets.push((*port, t)),
                    Err(msg) => {
                        failed = Some(msg);
                        break;
                    }
                }
            }
            let mut seen = HashSet::new();
            problems.retain(|p| seen.insert(p.clone()));
            for (reason, msg) in problems {
                if resolved.status {
                    resolved = Condition::new(cond::RESOLVED_REFS, false, reason, msg.clone());
                }
                let msg = format!("rule {ri}: {msg}; requests it would get answer 500");
                self.warn(view, Severity::Error, reason_of(reason), msg);
            }
            if let Some(msg) = failed {
                self.warn(
                    view,
                    Severity::Error,
                    Reason::UnsupportedFeature,
                    format!("rule {ri} is not served: {msg}"),
                );
                unsupported.get_or_insert(format!("rule {ri}: {msg}"));
                continue;
            }
            for ((host, via), port) in hosts.iter().zip(&ports) {
                let Some((_, target)) = targets.iter().find(|(p, _)| p == port) else {
                    continue;
                };
                // Reached over plain HTTP only through an HTTP listener; else redirected.
                let plain = via.iter().any(|a| !gateways[a.gateway].listeners[a.listener].https);
                for (p, conditions) in matches {
                    let claim: Claim = (host.clone(), p.path.clone(), p.path_type.is_exact());
                    if p.path_type != PathType::RegularExpression
                        && let Some(ing) = self.claims.get(&claim)
                    {
                        let msg = format!(
                            "rule {ri}: host {host} path {} ({:?}) is served by Ingress {ing}; Ingresses come first",
                            p.path, p.path_type
                        );
                        self.warn(view, Severity::Warning, Reason::PathConflict, msg);
                        continue;
                    }
                    // An older route (or an earlier match) has the same match: the spec's
                    // precedence. The same path with other conditions is no conflict.
                    // ... on the same listeners (gwlisten: other listeners have tables of their own).
                    let taken = (
                        host.clone(),
                        p.path.clone(),
                        p.path_type,
                        format!("{conditions:?} {via:?}"),
                    );
                    if !self.taken.insert(taken) {
                        continue;
                    }
                    for a in via {
                        let l = &mut gateways[a.gateway].listeners[a.listener];
                        if !l.hosts.contains(host) {
                            l.hosts.push(host.clone());
                        }
                    }
                    let origin = Origin {
                        route: 0,
                        kind: view.kind,
                        object: key.clone(),
                        rule: ri,
                        via: via
                            .iter()
                            .map(|a| Via {
                                gateway: gateways[a.gateway].key.clone(),
                                listener: gateways[a.gateway].listeners[a.listener].spec.name.clone(),
                                listener_set: listener_set::of(&gateways[a.gateway], a.listener),
                            })
                            .collect(),
                    };
                    // gwtls: the (first) Gateway's client certificate, to TLS backends.
                    let client = via
                        .first()
                        .and_then(|a| gateways[a.gateway].backend_client.as_ref())
                        .and_then(|c| c.as_ref().ok());
                    let base = Route {
                        id: 0,
                        ingress: key.clone(),
                        host: host.clone(),
                        path: Some(p.clone()),
                        backend: target.backend,
                        service: target.service.clone(),
                        ssl_redirect: !plain,
                        policy: backend_tls::with_client(&target.policy, client),
                        client_auth: None,
                        canary: None,
                        conditions: conditions.clone(),
                        weighted: None,
                    };
                    // Each weighted choice is this route with that backend: listed, not indexed.
                    let weighted = target.choices.as_ref().map(|choices| {
                        let choices = choices
                            .iter()
                            .map(|c| WeightedChoice {
                                weight: c.weight,
                                route: c.backend.as_ref().map(|(backend, service, policy)| {
                                    let route = Route {
                                        backend: *backend,
                                        service: service.clone(),
                                        policy: backend_tls::with_client(policy, client),
                                        ..base.clone()
                                    };
                                    self.push(route, origin.clone())
                                }),
                            })
                            .collect();
                        Arc::new(Weighted::new(choices))
                    });
                    let route = self.push(Route { weighted, ..base }, origin);
                    self.table.push((route, via.clone()));
                }
            }
        }
        (resolved, unsupported)
    }

    /// Lists a route in `Config::route_list` with its origin.
    fn push(&mut self, mut route: Route, mut origin: Origin) -> Arc<Route> {
        route.id = self.routes.len();
        origin.route = route.id;
        let route = Arc::new(route);
        self.routes.push(route.clone());
        self.origins.push(origin);
        route
    }

    /// A rule's backendRefs, resolved (`None`: invalid, its problem in `problems`).
    fn choices<'v>(
        &mut self,
        view: &RouteView,
        rule: &RuleView<'v>,
        problems: &mut Vec<RefProblem>,
    ) -> Vec<Choice<'v>> {
        rule.backend_refs
            .iter()
            .map(|b| {
                let t = &b.target;
                let target = (t.group.as_deref(), t.kind.as_deref(), t.namespace.as_deref(), &t.name);
                let backend = match self.resolve_ref(view, target, t.port) {
                    Ok(r) => Some(r),
                    Err(p) => {
                        problems.push(p);
                        None
                    }
                };
                let port = t.port.and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
                let tls = backend
                    .as_ref()
                    .and_then(|(_, svc)| self.backend_tls.lookup(self.snapshot, svc, port).cloned());
                Choice {
                    // The CRD's range is 0 to 1,000,000 (default 1).
                    weight: b.weight.unwrap_or(1).clamp(0, i64::from(Weighted::MAX_WEIGHT)) as u32,
                    backend,
                    filters: &b.filters,
                    tls,
                }
            })
            .collect()
    }

    /// What a rule's routes serve for a listener port: its policy with filters and
    /// timeouts, and its backend or weighted backends. `Err`: what cannot be served.
    fn target(
        &mut self,
        view: &RouteView,
        rule: &RuleView,
        choices: &[Choice],
        listener_port: Option<u16>,
        problems: &mut Vec<RefProblem>,
    ) -> Result<Target, String> {
        let spec = FilterRule {
            prefix: rule.prefix.as_deref(),
            has_backends: !rule.backend_refs.is_empty(),
            listener_port,
            backend_ref: false,
            grpc: view.kind == RouteKind::GRPCRoute,
        };
        let filters = self.filters(view, rule.filters, &spec, problems)?;
        let mut policy = (**view.policy).clone();
        if let Some(t) = rule.timeouts {
            timeouts::apply(t, &mut policy)?;
        }
        if let Some(r) = rule.retry {
            retry::apply(r, rule.timeouts, &mut policy)?;
        }
        let redirect = filters.as_ref().is_some_and(|f| f.redirect.is_some());
        policy.filters = filters.clone().map(Arc::new);
        let shared = Arc::new(policy.clone());
        // One valid backend of its own, without filters of its own: no pick.
        if let [c] = choices
            && c.weight > 0
            && c.filters.is_empty()
            && let Some((backend, service)) = &c.backend
        {
            return Ok(Target {
                backend: *backend,
                service: service.clone(),
                policy: match &c.tls {
                    Some(tls) => Arc::new(backend_tls::Policies::apply(&policy, tls)),
                    None => shared,
                },
                choices: None,
            });
        }
        // Answered by the redirect: the backend is never used.
        if choices.is_empty() && redirect {
            let (backend, service) = self.no_backend(view, "the rule redirects");
            return Ok(Target {
                backend,
                service,
                policy: shared,
                choices: None,
            });
        }
        let mut out = Vec::with_capacity(choices.len());
        for c in choices {
            let backend = match &c.backend {
                None => None,
                Some((b, s)) if c.filters.is_empty() => match &c.tls {
                    Some(tls) => Some((*b, s.clone(), Arc::new(backend_tls::Policies::apply(&policy, tls)))),
                    None => Some((*b, s.clone(), shared.clone())),
                },
                Some((b, s)) => {
                    let own = self.filters(
                        view,
                        c.filters,
                        &FilterRule {
                            backend_ref: true,
                            ..spec
                        },
                        problems,
                    )?;
                    let merged = filters
                        .clone()
                        .unwrap_or_default()
                        .with_backend_ref(&own.unwrap_or_default());
                    let mut policy = Policy {
                        filters: (!merged.is_empty()).then(|| Arc::new(merged)),
                        ..policy.clone()
                    };
                    if let Some(tls) = &c.tls {
                        policy = backend_tls::Policies::apply(&policy, tls);
                    }
                    Some((*b, s.clone(), Arc::new(policy)))
                }
            };
            out.push(TargetChoice {
                weight: c.weight,
                backend,
            });
        }
        // The table's lookup wants a backend on the route itself: the first valid one's.
        let (backend, service) = match out.iter().find_map(|c| c.backend.as_ref()) {
            Some((b, s, _)) => (*b, s.clone()),
            None => self.no_backend(view, "no backendRef of the rule is valid"),
        };
        Ok(Target {
            backend,
            service,
            policy: shared,
            choices: Some(out),
        })
    }

    /// A backend that is never sent to (a rule answered by a redirect or with 500).
    fn no_backend(&mut self, view: &RouteView, why: &str) -> (BackendId, ObjectKey) {
        let key = ObjectKey::new(view.key.namespace.as_str(), format!("{} (no backend)", view.key.name));
        (self.resolver.refused(&key, why), key)
    }

    /// A rule's or backendRef's filters (`None`: none), their mirrors' backendRefs resolved
    /// (a problem drops that mirror only and goes into `problems`).
    fn filters(
        &mut self,
        view: &RouteView,
        raw: &[serde_json::Value],
        spec: &FilterRule,
        problems: &mut Vec<RefProblem>,
    ) -> Result<Option<Filters>, String> {
        if raw.is_empty() {
            return Ok(None);
        }
        let mut mirror = |r: &MirrorRef| {
            let target = (
                Some(r.group.as_str()),
                Some(r.kind.as_str()),
                r.namespace.as_deref(),
                &r.name,
            );
            match self.resolve_ref(view, target, r.port) {
                Ok((b, _)) => Some(b),
                Err(p) => {
                    problems.push(p);
                    None
                }
            }
        };
        let f = compile_filters(raw, spec, &mut mirror)?;
        Ok((!f.is_empty()).then_some(f))
    }

    /// A backendRef (group, kind, namespace, name) and port to a Service backend; else the
    /// spec's reason it is invalid.
    fn resolve_ref(
        &mut self,
        view: &RouteView,
        (group, kind, namespace, name): (Option<&str>, Option<&str>, Option<&str>, &String),
        port: Option<i64>,
    ) -> Result<(BackendId, ObjectKey), RefProblem> {
        let key = view.key;
        let group = group.unwrap_or("");
        let kind = kind.unwrap_or("Service");
        let ns = namespace.unwrap_or(&key.namespace);
        let skey = ObjectKey::new(ns, name.clone());
        if !group.is_empty() || kind != "Service" {
            return Err((
                cond::INVALID_KIND,
                format!("backendRef {group}/{kind} {name} is not a Service"),
            ));
        }
        if ns != key.namespace
            && !granted(
                self.snapshot,
                (view.kind.as_str(), &key.namespace),
                ("", "Service"),
                &skey,
            )
        {
            return Err((
                cond::REF_NOT_PERMITTED,
                format!("Service {skey} is in another namespace and no ReferenceGrant allows it"),
            ));
        }
        let Some(port) = port
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| (1..=65535).contains(p))
        else {
            return Err((
                cond::BACKEND_NOT_FOUND,
                format!("backendRef {skey} needs a port from 1 to 65535"),
            ));
        };
        match self.resolver.service(&skey, PortRef::Number(port)) {
            (id, (_, None)) => Ok((id, skey)),
            (_, (_, Some((_, msg)))) => Err((cond::BACKEND_NOT_FOUND, msg)),
        }
    }
}

/// A backendRef of a rule: its weight, its backend and Service (`None`: invalid), its own
/// filters.
struct Choice<'a> {
    weight: u32,
    backend: Option<(BackendId, ObjectKey)>,
    filters: &'a [serde_json::Value],
    /// The BackendTLSPolicy's TLS to its pods (gwtls).
    tls: Option<Arc<UpstreamTls>>,
}

/// What a rule's routes serve.
struct Target {
    backend: BackendId,
    service: ObjectKey,
    policy: Arc<Policy>,
    /// Weighted backends (each with its policy; `None`: invalid, answered 500). `None`: the
    /// route's own backend serves.
    choices: Option<Vec<TargetChoice>>,
}

struct TargetChoice {
    weight: u32,
    backend: Option<(BackendId, ObjectKey, Arc<Policy>)>,
}

fn reason_of(spec_reason: &str) -> Reason {
    match spec_reason {
        cond::REF_NOT_PERMITTED => Reason::RefNotPermitted,
        cond::INVALID_KIND => Reason::UnsupportedBackend,
        _ => Reason::ServiceNotFound,
    }
}
/// Puts each programmed HTTPS listener's certificate into the store: under the listener's
/// hostname, or (without one) under the host names of the routes attached to it and as
/// the default certificate when `--default-ssl-certificate` is not given. A name that
/// already has a certificate (from an Ingress, or an older Gateway) keeps it.
fn certificates(opts: &Options, gw: &mut GatewayState, certs: &mut CertStore, diags: &mut Diagnostics) {
    for l in gw.listeners.iter().filter(|l| l.usable) {
        let Some((ck, secret)) = &l.certificate else { continue };
        let source = format!("Gateway {} listener {} (secret {secret})", gw.key, l.spec.name);
        let hosts: Vec<HostPattern> = match l.spec.hostname.as_deref().map(|h| HostPattern::parse(Some(h))) {
            Some(Ok(h)) => vec![h],
            Some(Err(_)) => continue,
            None => {
                if opts.default_ssl_certificate.is_none() && !certs.sources.contains_key("*") {
                    certs.set_default(ck.clone());
                    certs.sources.insert("*".into(), source.clone());
                }
                // A Gateway suffix name's certificate goes under its one-label wildcard.
                l.hosts
                    .iter()
                    .filter_map(|h| match h {
                        HostPattern::Any => None,
                        HostPattern::Suffix(s) => Some(HostPattern::Wildcard(s.clone())),
                        h => Some(h.clone()),
                    })
                    .collect()
            }
        };
        for h in hosts {
            match certs.sources.get(&h.to_string()) {
                Some(from) if !from.starts_with("Gateway ") => diags.push(
                    ObjectRef::new("Gateway", &gw.key),
                    Severity::Warning,
                    Reason::CertificateConflict,
                    format!(
                        "listener {}: host {h} takes its certificate from an Ingress ({from}); Ingresses come first",
                        l.spec.name
                    ),
                ),
                Some(_) => {}
                None => certs.insert(&h, ck.clone(), source.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests;
// gwtls: TLSRoute passthrough.
mod sni;
pub mod tls;
// gwtls: BackendTLSPolicy.
pub mod backend_tls;
// gwtls/gwfront: frontend client-certificate validation.
mod frontend;
