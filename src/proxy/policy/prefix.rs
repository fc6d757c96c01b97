//! `x-forwarded-prefix`: the X-Forwarded-Prefix field sent upstream, in place of any the
//! client sent (nginx's `proxy_set_header`).

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use crate::config::Policy;

static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Sets the field when the route asks; other routes pay one test.
#[inline(always)]
pub fn apply(policy: &Policy, headers: &mut HeaderMap) {
    if let Some(p) = &policy.forwarded_prefix {
        set(p, headers);
    }
}

#[inline(never)]
fn set(prefix: &str, headers: &mut HeaderMap) {
    // compile admitted only header-safe bytes.
    if let Ok(v) = HeaderValue::from_str(prefix) {
        headers.insert(X_FORWARDED_PREFIX.clone(), v);
    }
}
