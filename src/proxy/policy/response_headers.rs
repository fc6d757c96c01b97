//! `add-headers` (the `--configmap`'s, every route) and `custom-headers` (an Ingress's):
//! headers set on the responses of the upstream, the Ingress's list last so that it wins.

use http::Response;

use crate::config::Policy;
use crate::config::global::Global;
use crate::proxy::Body;

#[inline(always)]
pub fn add(global: &Global, policy: &Policy, resp: &mut Response<Body>) {
    if global.add_headers.is_empty() && policy.custom_headers.is_none() {
        return;
    }
    set(global, policy, resp);
}

#[inline(never)]
fn set(global: &Global, policy: &Policy, resp: &mut Response<Body>) {
    global.add_headers.set(resp.headers_mut());
    if let Some(list) = &policy.custom_headers {
        list.set(resp.headers_mut());
    }
}
