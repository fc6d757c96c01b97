//! `from-to-www-redirect`: a host's other name (`www.` added or taken away) answers every
//! request with 308 to the host, as ingress-nginx's redirect server does.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Uri};

use crate::config::Policy;
use crate::proxy::headers::Peer;
use crate::proxy::{Body, plain};

/// The 308 answer on the route compile made for the other name; other routes pay one test.
#[inline(always)]
pub fn check(policy: &Policy, uri: &Uri, peer: &Peer) -> Option<Response<Body>> {
    let to = policy.www_redirect.as_deref()?;
    Some(redirect(to, uri, peer))
}

/// `$scheme://HOST:$server_port$request_uri`, one trailing `/` of the request target dropped
/// (so `/` itself goes to the bare origin), as ingress-nginx's `ngx_srv_redirect.lua`.
#[inline(never)]
fn redirect(to: &str, uri: &Uri, peer: &Peer) -> Response<Body> {
    let scheme = if peer.tls { "https" } else { "http" };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = target.strip_suffix('/').unwrap_or(target);
    let mut r = plain(StatusCode::PERMANENT_REDIRECT, "redirecting");
    if let Ok(v) = HeaderValue::from_str(&format!("{scheme}://{to}:{}{target}", peer.local_port)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
