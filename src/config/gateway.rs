//! What compile decided about Gateway API objects, as plain data: each object's conditions
//! (the status the spec asks for), which route came from which Gateway listener, and the
//! status updates built from them.

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::ObjectKey;

mod listener_set;
pub use listener_set::ListenerSetReport;

/// One status condition. `lastTransitionTime` is not here: compile has no clock of its own
/// (see [`status_updates`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    pub fn new(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// A GatewayClass of ours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClassReport {
    pub name: String,
    pub generation: i64,
    pub conditions: Vec<Condition>,
    /// The Gateway API features Portico implements (`status.supportedFeatures`, which the
    /// conformance suite reads to choose its tests): [`SUPPORTED_FEATURES`], less those that
    /// need `--gateway-services` when it is off.
    pub supported_features: Vec<&'static str>,
    /// `metadata.uid`: which object of that name the status is for.
    pub uid: String,
}

/// The conformance suite's feature names (Gateway API v1.6) that Portico implements, sorted
/// (the API server wants them that way). Each is shown by the suite's tests of that feature
/// passing against Portico (`tests/gateway/conformance.sh`); add a name only with them.
/// GatewayStaticAddresses, GatewayPort8080, HTTPRouteParentRefPort, GatewayInfrastructure and
/// the GatewayFrontendClientCertificateValidation pair are claimed only with
/// `--gateway-services` (see `compile::gateway::infra::supported_features`): without it
/// Gateways share Portico's Service, which has only the ports its manifest gives it and is
/// no Gateway's infrastructure.
pub const SUPPORTED_FEATURES: &[&str] = &[
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "GRPCRoute",
    "Gateway",
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayInfrastructure",
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteCORS",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteRetryConnectionError",
    "HTTPRouteSchemeRedirect",
    "ListenerSet",
    "ReferenceGrant",
    "TLSRoute",
];

/// A Gateway of one of our classes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewayReport {
    pub key: ObjectKey,
    pub generation: i64,
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerReport>,
    /// The ports its usable listeners are served on, ascending by `port`.
    pub ports: Vec<GatewayPort>,
    /// `metadata.uid`: which object of that name the status is for.
    pub uid: String,
    /// ListenerSets attached to it (`status.attachedListenerSets`).
    pub attached_listener_sets: u32,
    /// With `--gateway-services`, for a Gateway that gets its Service: what goes into it
    /// besides `ports` (`None`: no Service, and no address in status).
    pub service: Option<GatewayService>,
}

/// A port a Gateway's listeners are served on: `port` as its listeners say (what clients
/// connect to at the Gateway's address), and `target`, the port Portico's pods listen on
/// for it. With a Service per Gateway (`Options::gateway_services`) each Gateway's ports get
/// targets of their own (see `compile::gateway::ports`), which that Service maps `port` to;
/// without, `target` is `port` and every Gateway shares Portico's own address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GatewayPort {
    pub port: u16,
    pub target: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerReport {
    pub name: String,
    /// Route kinds (group `gateway.networking.k8s.io`) the listener takes.
    pub supported_kinds: Vec<&'static str>,
    pub attached_routes: u32,
    pub conditions: Vec<Condition>,
}

/// A route kind of the Gateway API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum RouteKind {
    HTTPRoute,
    GRPCRoute,
    TLSRoute,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::HTTPRoute => "HTTPRoute",
            RouteKind::GRPCRoute => "GRPCRoute",
            RouteKind::TLSRoute => "TLSRoute",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            RouteKind::HTTPRoute => "httproutes",
            RouteKind::GRPCRoute => "grpcroutes",
            RouteKind::TLSRoute => "tlsroutes",
        }
    }
}

/// A parent reference as the route wrote it, with the spec's defaults filled in (it is
/// echoed back in the route's status).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReport {
    pub parent_ref: ParentRef,
    pub conditions: Vec<Condition>,
}

/// A route with at least one parent that is a Gateway of ours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteReport {
    pub kind: RouteKind,
    pub key: ObjectKey,
    pub generation: i64,
    pub parents: Vec<ParentReport>,
    /// `metadata.uid`: which object of that name the status is for.
    pub uid: String,
}

/// Where a compiled route (`Config::route_list[route]`) comes from: which Gateway API route
/// and rule, through which Gateway listeners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    #[serde(skip)]
    pub route: usize,
    pub kind: RouteKind,
    pub object: ObjectKey,
    pub rule: usize,
    /// The listeners it is served through.
    pub via: Vec<Via>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Via {
    pub gateway: ObjectKey,
    pub listener: String,
    /// The ListenerSet the listener comes from (`None`: the Gateway's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener_set: Option<ObjectKey>,
}

/// Everything compile decided about the Gateway API objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub controller_name: String,
    pub classes: Vec<ClassReport>,
    pub gateways: Vec<GatewayReport>,
    pub routes: Vec<RouteReport>,
    /// Ordered by route id.
    pub origins: Vec<Origin>,
    /// ListenerSets whose parent is a Gateway of ours.
    pub listener_sets: Vec<ListenerSetReport>,
    /// gwtls: BackendTLSPolicies.
    pub policies: Vec<PolicyReport>,
}

/// A BackendTLSPolicy: its conditions, reported for each Gateway of ours whose routes use a
/// Service it targets (`status.ancestors`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    pub key: ObjectKey,
    pub generation: i64,
    pub ancestors: Vec<ObjectKey>,
    pub conditions: Vec<Condition>,
    /// `metadata.uid` (see [`GatewayReport::uid`]).
    pub uid: String,
}

impl Report {
    /// Where the route with id `route` comes from, if from the Gateway API.
    pub fn origin(&self, route: usize) -> Option<&Origin> {
        self.origins
            .binary_search_by_key(&route, |o| o.route)
            .ok()
            .map(|i| &self.origins[i])
    }
}

/// One object's new `status`, to be written to its `/status` subresource (by the leader,
/// when it differs from what the object has).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusUpdate {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    /// Empty for cluster-scoped objects (GatewayClass).
    pub namespace: String,
    pub name: String,
    pub status: Value,
    /// The object's `metadata.uid` (empty: unknown): an object deleted and created again
    /// under the same name is another object, whose status is written anew.
    pub uid: String,
}

const GROUP: &str = "gateway.networking.k8s.io";

fn conditions(list: &[Condition], generation: i64, now: &str) -> Value {
    list.iter()
        .map(|c| {
            json!({
                "type": c.type_,
                "status": if c.status { "True" } else { "False" },
                "reason": c.reason,
                // The API server caps messages at 32768 bytes.
                "message": truncate(&c.message, 32_000),
                "observedGeneration": generation,
                "lastTransitionTime": now,
            })
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn update(kind: &str, plural: &str, key: &ObjectKey, uid: &str, status: Value) -> StatusUpdate {
    StatusUpdate {
        group: GROUP.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        status,
        uid: uid.into(),
    }
}

/// The status of every object of ours, as the spec wants it. `now` (RFC 3339) is every
/// condition's `lastTransitionTime`: the writer keeps an object's existing time where the
/// condition's status did not change, as the spec asks.
///
/// Route `parents` list only the parents of ours; the writer merges them with the entries
/// other controllers own (those with another `controllerName`).
pub fn status_updates(report: &Report, now: &str) -> Vec<StatusUpdate> {
    let mut out = Vec::new();
    for c in &report.classes {
        let features: Vec<Value> = c.supported_features.iter().map(|f| json!({"name": f})).collect();
        let status = json!({
            "conditions": conditions(&c.conditions, c.generation, now),
            "supportedFeatures": features,
        });
        out.push(update(
            "GatewayClass",
            "gatewayclasses",
            &ObjectKey::new("", c.name.clone()),
            &c.uid,
            status,
        ));
    }
    for g in &report.gateways {
        let listeners: Vec<Value> = g
            .listeners
            .iter()
            .map(|l| listener_status(l, g.generation, now))
            .collect();
        let status = json!({
            "conditions": conditions(&g.conditions, g.generation, now),
            "listeners": listeners,
            "attachedListenerSets": g.attached_listener_sets,
        });
        out.push(update("Gateway", "gateways", &g.key, &g.uid, status));
    }
    for r in &report.routes {
        let parents: Vec<Value> = r
            .parents
            .iter()
            .map(|p| {
                json!({
                    "parentRef": p.parent_ref,
                    "controllerName": report.controller_name,
                    "conditions": conditions(&p.conditions, r.generation, now),
                })
            })
            .collect();
        out.push(update(
            r.kind.as_str(),
            r.kind.plural(),
            &r.key,
            &r.uid,
            json!({"parents": parents}),
        ));
    }
    out.extend(report.listener_sets.iter().map(|r| listener_set::status_update(r, now)));
    for p in &report.policies {
        let ancestors: Vec<Value> = p
            .ancestors
            .iter()
            .map(|g| {
                json!({
                    "ancestorRef": {"group": GROUP, "kind": "Gateway", "namespace": g.namespace, "name": g.name},
                    "controllerName": report.controller_name,
                    "conditions": conditions(&p.conditions, p.generation, now),
                })
            })
            .collect();
        out.push(update(
            "BackendTLSPolicy",
            "backendtlspolicies",
            &p.key,
            &p.uid,
            json!({"ancestors": ancestors}),
        ));
    }
    out
}

/// A listener's entry in a Gateway's or ListenerSet's `status.listeners`.
fn listener_status(l: &ListenerReport, generation: i64, now: &str) -> Value {
    json!({
        "name": l.name,
        "supportedKinds": l.supported_kinds.iter().map(|k| json!({"group": GROUP, "kind": k})).collect::<Vec<_>>(),
        "attachedRoutes": l.attached_routes,
        "conditions": conditions(&l.conditions, generation, now),
    })
}

/// A Gateway's own Service (`--gateway-services`): its metadata from
/// `spec.infrastructure`, and the static addresses it is given as external IPs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayService {
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub external_ips: Vec<std::net::IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_has_the_fields_the_spec_requires() {
        let report = Report {
            controller_name: "portico.dev/gateway-controller".into(),
            classes: vec![ClassReport {
                name: "portico".into(),
                generation: 2,
                conditions: vec![Condition::new("Accepted", true, "Accepted", "ok")],
                supported_features: vec!["Gateway", "HTTPRoute"],
                uid: "c1".into(),
            }],
            gateways: vec![GatewayReport {
                key: ObjectKey::new("ns", "gw"),
                generation: 3,
                conditions: vec![Condition::new("Programmed", false, "Invalid", "no")],
                listeners: vec![ListenerReport {
                    name: "http".into(),
                    supported_kinds: vec!["HTTPRoute"],
                    attached_routes: 1,
                    conditions: vec![Condition::new("Accepted", true, "Accepted", "")],
                }],
                ports: vec![GatewayPort { port: 80, target: 80 }],
                uid: "g1".into(),
                attached_listener_sets: 0,
                service: None,
            }],
            routes: vec![RouteReport {
                kind: RouteKind::HTTPRoute,
                key: ObjectKey::new("ns", "r"),
                generation: 4,
                parents: vec![ParentReport {
                    parent_ref: ParentRef {
                        group: GROUP.into(),
                        kind: "Gateway".into(),
                        namespace: "ns".into(),
                        name: "gw".into(),
                        section_name: Some("http".into()),
                        port: None,
                    },
                    conditions: vec![Condition::new("ResolvedRefs", false, "BackendNotFound", "x")],
                }],
                uid: "r1".into(),
            }],
            origins: vec![],
            listener_sets: vec![],
            policies: vec![],
        };
        let u = status_updates(&report, "2026-01-01T00:00:00Z");
        assert_eq!(u.len(), 3);
        assert_eq!((u[0].kind.as_str(), u[0].namespace.as_str()), ("GatewayClass", ""));
        assert_eq!(
            u[0].status["conditions"][0],
            json!({"type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok",
                   "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"})
        );
        assert_eq!(
            u[0].status["supportedFeatures"],
            json!([{"name": "Gateway"}, {"name": "HTTPRoute"}])
        );
        assert_eq!(u[1].plural, "gateways");
        assert_eq!(u[1].status["conditions"][0]["status"], "False");
        assert_eq!(u[1].status["listeners"][0]["supportedKinds"][0]["kind"], "HTTPRoute");
        assert_eq!(u[1].status["listeners"][0]["attachedRoutes"], 1);
        assert_eq!(u[1].status["listeners"][0]["conditions"][0]["observedGeneration"], 3);
        let parent = &u[2].status["parents"][0];
        assert_eq!(parent["controllerName"], "portico.dev/gateway-controller");
        assert_eq!(
            parent["parentRef"],
            json!({"group": GROUP, "kind": "Gateway", "namespace": "ns", "name": "gw", "sectionName": "http"})
        );
        assert_eq!(parent["conditions"][0]["reason"], "BackendNotFound");
        assert_eq!((u[2].plural.as_str(), u[2].name.as_str()), ("httproutes", "r"));
        assert_eq!([&u[0].uid, &u[1].uid, &u[2].uid], ["c1", "g1", "r1"]);
    }

    #[test]
    fn supported_features_are_sorted_and_unique() {
        assert!(SUPPORTED_FEATURES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let s = "é".repeat(20_000);
        let t = truncate(&s, 32_000);
        assert!(t.len() <= 32_000 && t.chars().all(|c| c == 'é'));
    }
}
