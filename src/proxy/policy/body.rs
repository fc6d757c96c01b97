//! `proxy-body-size`: a request body larger than the limit gets 413, at once when its
//! declared length says so, else when the streamed body passes the limit.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use hyper::body::{Body as _, Incoming};

use crate::config::Policy;
use crate::proxy::upstream::BodyLimit;
use crate::proxy::{Body, plain};
use http::{Response, StatusCode};

/// The 413 answer when the declared body length is over the limit.
#[inline(always)]
pub fn check(policy: &Policy, body: &Incoming) -> Option<Response<Body>> {
    let max = policy.max_body_bytes?;
    (body.size_hint().lower() > max).then(|| too_large(max))
}

/// The limit a streamed body is held to, and the flag it raises when passed.
#[inline(always)]
pub fn limit(policy: &Policy) -> Option<(BodyLimit, Arc<AtomicBool>)> {
    let max = policy.max_body_bytes?;
    let exceeded = Arc::new(AtomicBool::new(false));
    Some((
        BodyLimit {
            max,
            seen: 0,
            exceeded: exceeded.clone(),
        },
        exceeded,
    ))
}

pub fn too_large(max: u64) -> Response<Body> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("payload too large: the request body exceeds {max} bytes"),
    )
}
