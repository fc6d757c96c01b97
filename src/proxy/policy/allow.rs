//! `whitelist-source-range`: clients outside every listed range get 403.

use http::{HeaderMap, Response, StatusCode};

use crate::config::{Cidr, Policy};
use crate::proxy::headers::{Peer, client_ip};
use crate::proxy::{Body, plain};

/// The 403 answer when the route lists ranges and the client (after trusted proxies'
/// X-Forwarded-For) is in none of them. An empty list (every entry was invalid) lets nobody in.
#[inline(always)]
pub fn check(policy: &Policy, headers: &HeaderMap, peer: &Peer, trusted: &[Cidr]) -> Option<Response<Body>> {
    let allow = policy.allow.as_ref()?;
    let client = client_ip(headers, peer.addr, trusted);
    (!allow.iter().any(|c| c.contains(client)))
        .then(|| plain(StatusCode::FORBIDDEN, "forbidden: the client address is not allowed"))
}
