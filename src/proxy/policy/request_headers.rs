//! `proxy-set-headers` (the `--configmap`'s): headers set on every upstream request, their
//! variables filled in.

use http::HeaderMap;

use crate::config::global::Global;
use crate::proxy::vars::{Head, header_values, insert_headers};

#[inline(always)]
pub fn set(global: &Global, head: &Head<'_>, headers: &mut HeaderMap) {
    if !global.proxy_set_headers.is_empty() {
        set_all(global, head, headers);
    }
}

#[inline(never)]
fn set_all(global: &Global, head: &Head<'_>, headers: &mut HeaderMap) {
    let values = header_values(&global.proxy_set_headers, Some(&head.ctx(headers)));
    insert_headers(values, headers);
}
