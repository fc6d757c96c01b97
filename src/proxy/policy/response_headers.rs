//! `add-headers` (the `--configmap`'s, every route) and `custom-headers` (an Ingress's):
//! headers set on the responses of the upstream, the Ingress's list last so that it wins;
//! variables are the request's.

use http::Response;

use crate::config::global::Global;
use crate::config::{Policy, Route};
use crate::proxy::Body;
use crate::proxy::headers::Peer;
use crate::proxy::vars::{Held, set_headers};

#[inline(always)]
pub fn add(global: &Global, route: &Route, req: Option<&Held>, peer: &Peer, resp: &mut Response<Body>) {
    if global.add_headers.is_empty() && route.policy.custom_headers.is_none() {
        return;
    }
    set(global, &route.policy, route, req, peer, resp);
}

#[inline(never)]
fn set(global: &Global, policy: &Policy, route: &Route, req: Option<&Held>, peer: &Peer, resp: &mut Response<Body>) {
    let ctx = req.map(|r| r.ctx(peer).route(route, None));
    set_headers(&global.add_headers, ctx.as_ref(), resp.headers_mut());
    if let Some(list) = &policy.custom_headers {
        set_headers(list, ctx.as_ref(), resp.headers_mut());
    }
}
