//! `x-forwarded-prefix`: the X-Forwarded-Prefix field sent upstream, in place of any the
//! client sent (nginx's `proxy_set_header`), its variables and captures filled in.

use http::HeaderMap;
use http::header::HeaderName;

use crate::config::Policy;
use crate::config::vars::Template;
use crate::proxy::vars::{Head, header_value};

static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Sets the field when the route asks; other routes pay one test.
#[inline(always)]
pub fn apply(policy: &Policy, head: &Head<'_>, headers: &mut HeaderMap) {
    if let Some(p) = &policy.forwarded_prefix {
        set(p, head, headers);
    }
}

/// A value that is not a valid field value (a CR or LF from a variable) is not sent.
#[inline(never)]
fn set(prefix: &Template, head: &Head<'_>, headers: &mut HeaderMap) {
    let value = header_value(prefix, &head.ctx(headers));
    if let Some(v) = value {
        headers.insert(X_FORWARDED_PREFIX.clone(), v);
    }
}
