//! `denylist-source-range` and `whitelist-source-range`: clients in a denied range, or
//! outside every allowed one, get 403; a list with an entry that is no address or CIDR gets
//! everybody 503, as ingress-nginx's denied location.

use http::{HeaderMap, Response, StatusCode};

use crate::config::{Policy, Trusted};
use crate::proxy::headers::{Peer, client_ip};
use crate::proxy::{Body, plain};

/// The 403 answer when the route lists ranges and the client (after trusted proxies'
/// X-Forwarded-For) is denied: in a denylist range, or (nginx checks `deny` lines first,
/// then `allow` ones and `deny all`) in no allowlist range.
#[inline(always)]
pub fn check(policy: &Policy, headers: &HeaderMap, peer: &Peer, trusted: &Trusted) -> Option<Response<Body>> {
    if policy.allow.is_none() && policy.deny.is_none() {
        return None;
    }
    ranges(policy, headers, peer, trusted)
}

#[inline(never)]
fn ranges(policy: &Policy, headers: &HeaderMap, peer: &Peer, trusted: &Trusted) -> Option<Response<Body>> {
    if policy.ranges_invalid {
        // ingress-nginx's denied location: `return 503` for everybody.
        return Some(plain(StatusCode::SERVICE_UNAVAILABLE, "service unavailable"));
    }
    // `satisfy: any` with authentication: the auth step weighs the ranges with the rest.
    if policy.satisfy_any && policy.auth.is_some() {
        return None;
    }
    (!admits(policy, headers, peer, trusted)).then(forbidden)
}

/// Whether the client is in no denied range and, when the route lists allowed ones, in one.
pub fn admits(policy: &Policy, headers: &HeaderMap, peer: &Peer, trusted: &Trusted) -> bool {
    let client = client_ip(headers, peer.addr, trusted);
    let denied = policy
        .deny
        .as_ref()
        .is_some_and(|d| d.iter().any(|c| c.contains(client)))
        || policy
            .allow
            .as_ref()
            .is_some_and(|a| !a.iter().any(|c| c.contains(client)));
    !denied
}

pub fn forbidden() -> Response<Body> {
    plain(StatusCode::FORBIDDEN, "forbidden: the client address is not allowed")
}
