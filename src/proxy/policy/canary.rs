//! The canary step: which of a route's two sides, primary or canary, serves a request, as
//! ingress-nginx's balancer decides it (a session pinned to a side, then header, then
//! cookie, then weight).

use std::sync::Arc;

use http::HeaderMap;

use crate::balance::affinity::request_cookie;
use crate::config::Route;
use crate::config::canary::{Canary, HeaderMatch};

/// The canary's route when the request goes to the canary; `None` (the route as matched)
/// otherwise, and for every route without a canary.
#[inline(always)]
pub fn check<'r>(route: &'r Route, headers: &HeaderMap, rand: impl FnOnce() -> u64) -> Option<&'r Arc<Route>> {
    match &route.canary {
        None => None,
        Some(c) => decide(route, c, headers, rand).then_some(&c.route),
    }
}

#[inline(never)]
fn decide(primary: &Route, c: &Canary, headers: &HeaderMap, rand: impl FnOnce() -> u64) -> bool {
    // A session cookie decides first: the primary's keeps the primary, the canary's (its
    // value ends in the canary's tag) keeps the canary; another side's is no session here.
    if let Some(a) = &primary.policy.affinity
        && let Some(v) = request_cookie(headers, &a.name)
        && !v.contains('|')
    {
        return false;
    }
    if let Some(a) = &c.route.policy.affinity
        && let Some(tag) = &a.backend_tag
        && request_cookie(headers, &a.name)
            .and_then(|v| v.rsplit_once('|'))
            .is_some_and(|(_, t)| t == tag)
    {
        return true;
    }
    if let Some(rule) = &c.header
        && let Some(v) = headers.get(rule.name.as_str())
    {
        let v = v.as_bytes();
        match &rule.matches {
            HeaderMatch::Value(want) if v == want.as_bytes() => return true,
            HeaderMatch::Pattern(re) if std::str::from_utf8(v).is_ok_and(|v| re.0.is_match(v)) => return true,
            HeaderMatch::AlwaysNever if v == b"always" => return true,
            HeaderMatch::AlwaysNever if v == b"never" => return false,
            _ => {}
        }
    }
    if let Some(name) = &c.cookie
        && let Some(v) = request_cookie(headers, name)
    {
        match v {
            "always" => return true,
            "never" => return false,
            _ => {}
        }
    }
    // nginx: math.random(total) <= weight, uniform in 1..=total.
    match c.weight {
        0 => false,
        w if w >= c.weight_total => true,
        w => (rand() % u64::from(c.weight_total)) < u64::from(w),
    }
}
