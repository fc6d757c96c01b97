//! `proxy-set-headers` (the `--configmap`'s): headers set on every upstream request, their
//! variables filled in.

use http::HeaderMap;

use crate::config::global::Global;
use crate::proxy::vars::{Head, header_values, insert_headers, set_headers};

#[inline(always)]
pub fn set(global: &Global, head: &Head<'_>, headers: &mut HeaderMap) {
    if !global.proxy_set_headers.is_empty() {
        set_all(global, head, headers);
    }
}

#[inline(never)]
fn set_all(global: &Global, head: &Head<'_>, headers: &mut HeaderMap) {
    let list = &global.proxy_set_headers;
    if !list.has_variables() {
        return set_headers(list, None, headers);
    }
    // Every value read from the map before any is written.
    let values = header_values(list, &head.ctx(headers));
    insert_headers(values, headers);
}
