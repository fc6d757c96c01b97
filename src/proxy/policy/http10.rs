//! `proxy-http-version: "1.0"`: the route's requests go upstream as HTTP/1.0 (the request
//! line and `Connection: close` are written by [`crate::proxy::upstream::h1`], and the
//! connection is never pooled). HTTP/1.0 has no chunked coding, so a request body must go
//! with its length. nginx learns the length of a body the client sent without one by
//! buffering it (it turns `proxy_request_buffering off` back on for such bodies); Portico
//! streams bodies and does not hold one in memory to count it: a body without a declared
//! length is answered 411 Length Required, before any endpoint is tried.

use http::{Response, StatusCode};

use crate::config::Policy;
use crate::proxy::upstream::h1::Sending;
use crate::proxy::{Body, plain};

/// The 411 answer for a body of unknown length on an HTTP/1.0 route (not for HTTP/2
/// upstreams, which `proxy-http-version` does not concern); other routes pay one test.
#[inline(always)]
pub fn refuse(policy: &Policy, h2: bool, sending: Sending) -> Option<Response<Body>> {
    if policy.http10 {
        length_required(h2, sending)
    } else {
        None
    }
}

#[inline(never)]
fn length_required(h2: bool, sending: Sending) -> Option<Response<Body>> {
    (!h2 && sending == Sending::Chunked).then(|| {
        plain(
            StatusCode::LENGTH_REQUIRED,
            "length required: this route sends requests as HTTP/1.0, which needs a Content-Length",
        )
    })
}
