//! `proxy-set-headers` (the `--configmap`'s): headers set on every upstream request.

use http::HeaderMap;

use crate::config::global::Global;

#[inline(always)]
pub fn set(global: &Global, headers: &mut HeaderMap) {
    if !global.proxy_set_headers.is_empty() {
        set_all(global, headers);
    }
}

#[inline(never)]
fn set_all(global: &Global, headers: &mut HeaderMap) {
    global.proxy_set_headers.set(headers);
}
