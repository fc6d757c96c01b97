//! The request target sent upstream: as the client sent it, normalized when routing changed
//! it, or rewritten by `rewrite-target` with the route regex's groups.

use http::Uri;

use crate::config::Route;
use crate::proxy::headers::upstream_target;

/// The origin-form target for the upstream when it differs from the request's: `None` when
/// the request's target goes as it came. `normalized`: the routed path when normalization
/// changed it. `Some(Err)` when the result is no valid target.
#[inline]
pub fn target(route: &Route, uri: &Uri, normalized: Option<&str>) -> Option<Result<Uri, http::uri::InvalidUri>> {
    if let Some(to) = route.policy.rewrite_target.as_deref() {
        // The path the Ingress asks for, with the query kept.
        let path = rewrite(route, to, normalized.unwrap_or(uri.path()));
        return Some(
            match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            }
            .parse(),
        );
    }
    match (normalized, uri.scheme()) {
        // An origin-form target that routing did not change goes upstream as it came.
        (None, None) => None,
        (Some(n), _) => Some(upstream_target(uri, n).parse()),
        (None, Some(_)) => Some(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").parse()),
    }
}

/// The upstream path under `rewrite-target`: `$n` are the route regex's capture groups
/// (empty when missing); as in nginx, the whole path is replaced.
fn rewrite(route: &Route, target: &str, path: &str) -> String {
    let caps = route
        .path
        .as_ref()
        .and_then(|p| p.regex.as_ref())
        .and_then(|re| re.0.captures(path));
    let mut out = String::with_capacity(target.len() + path.len());
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().and_then(|d| d.to_digit(10))) {
            ('$', Some(n)) => {
                chars.next();
                if let Some(m) = caps.as_ref().and_then(|c| c.get(n as usize)) {
                    out.push_str(m.as_str());
                }
            }
            _ => out.push(c),
        }
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}
