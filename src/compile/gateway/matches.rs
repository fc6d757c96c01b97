//! HTTPRoute and GRPCRoute matches as route-table paths with their conditions (method,
//! headers, query parameters), one per match in the spec's order.

use std::sync::Arc;

use crate::config::route::{Conditions, PathRule, PathType, gateway_path_regex};
use crate::model::gateway as api;
use crate::path;

/// One match: the path the table indexes, and what else a request must meet.
pub(super) type Match = (PathRule, Option<Arc<Conditions>>);

/// The CRD's default match: every path, no condition.
pub(super) fn any_path() -> Match {
    (prefix("/"), None)
}

pub(super) fn prefix(path: &str) -> PathRule {
    PathRule {
        path: path.into(),
        path_type: PathType::Prefix,
        regex: None,
    }
}

fn finish(c: Conditions) -> Option<Arc<Conditions>> {
    (!c.is_empty()).then(|| Arc::new(c))
}

fn headers(c: &mut Conditions, headers: &[api::ValueMatch]) -> Result<(), String> {
    for h in headers {
        c.add_header(&h.name, h.type_.as_deref(), &h.value)
            .map_err(|e| format!("header match {:?}: {e}", h.name))?;
    }
    Ok(())
}

/// An HTTPRouteMatch; `Err` says why it cannot be served.
pub(super) fn http_match(m: &api::HTTPRouteMatch) -> Result<Match, String> {
    let path = path_rule(m.path.as_ref())?;
    let mut c = Conditions::default();
    if let Some(method) = &m.method {
        c.set_method(method)?;
    }
    headers(&mut c, &m.headers)?;
    for q in &m.query_params {
        c.add_query(&q.name, q.type_.as_deref(), &q.value)
            .map_err(|e| format!("query parameter match {:?}: {e}", q.name))?;
    }
    Ok((path, finish(c)))
}

/// The path of a match (the CRD's defaults: PathPrefix `/`).
fn path_rule(p: Option<&api::HTTPPathMatch>) -> Result<PathRule, String> {
    let (kind, value) = match p {
        None => ("PathPrefix", "/"),
        Some(p) => (
            p.type_.as_deref().unwrap_or("PathPrefix"),
            p.value.as_deref().unwrap_or("/"),
        ),
    };
    let path_type = match kind {
        "Exact" => PathType::Exact,
        "PathPrefix" => PathType::Prefix,
        "RegularExpression" => return gateway_path_regex(value),
        other => {
            return Err(format!(
                "path match type {other:?} is not Exact, PathPrefix or RegularExpression"
            ));
        }
    };
    let normalized = path::normalize(value).map_err(|e| format!("path {value:?}: {e}"))?;
    Ok(PathRule {
        path: normalized.into_owned(),
        path_type,
        regex: None,
    })
}

/// The path prefix a rule's `ReplacePrefixMatch` rewrites: the rule has exactly one match
/// (no `matches` counts as one, PathPrefix `/`) and its path is a PathPrefix.
pub(super) fn rule_prefix(matches: Option<&[api::HTTPRouteMatch]>) -> Option<String> {
    match matches {
        None | Some([]) => Some("/".into()),
        Some([m]) => match &m.path {
            None => Some("/".into()),
            Some(p) if p.type_.as_deref().is_none_or(|t| t == "PathPrefix") => {
                Some(p.value.clone().unwrap_or_else(|| "/".into()))
            }
            Some(_) => None,
        },
        Some(_) => None,
    }
}

/// A GRPCRouteMatch: its method as a path (`/SERVICE/METHOD` exactly, every method of
/// `/SERVICE`, a method of any service, or regular expressions), its headers as conditions.
pub(super) fn grpc_match(m: &api::GRPCRouteMatch) -> Result<Match, String> {
    let mut c = Conditions::default();
    headers(&mut c, &m.headers)?;
    Ok((grpc_path(m.method.as_ref())?, finish(c)))
}

fn grpc_path(method: Option<&api::GRPCMethodMatch>) -> Result<PathRule, String> {
    let Some(method) = method else {
        return Ok(prefix("/"));
    };
    let (svc, m) = (method.service.as_deref(), method.method.as_deref());
    if svc.is_some_and(|s| s.len() > 1024) || m.is_some_and(|s| s.len() > 1024) {
        return Err("a method match's service or method is longer than 1024 bytes".into());
    }
    match method.type_.as_deref().unwrap_or("Exact") {
        "Exact" => {}
        "RegularExpression" => {
            if svc.is_none() && m.is_none() {
                return Ok(prefix("/"));
            }
            // Each part matches within its path segment.
            let part = |p: Option<&str>| p.map_or("[^/]+".to_string(), |p| format!("(?:{p})"));
            return gateway_path_regex(&format!("/{}/{}", part(svc), part(m)));
        }
        other => return Err(format!("method match type {other:?} is not Exact or RegularExpression")),
    }
    // Service and method names: letters, digits, `_` and `.` (in the service) only.
    let name_ok = |s: &str, dots: bool| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dots && b == b'.'))
    };
    match (svc, m) {
        (Some(svc), Some(m)) if name_ok(svc, true) && name_ok(m, false) => Ok(PathRule {
            path: format!("/{svc}/{m}"),
            path_type: PathType::Exact,
            regex: None,
        }),
        (Some(svc), None) if name_ok(svc, true) => Ok(prefix(&format!("/{svc}"))),
        // The method of any service: the names allowed hold nothing a regex treats specially.
        (None, Some(m)) if name_ok(m, false) => gateway_path_regex(&format!("/[^/]+/{m}")),
        (None, None) => Ok(prefix("/")),
        _ => Err("a method match's service or method is not a valid gRPC name".into()),
    }
}
