//! `proxy-redirect-from`/`-to`, `proxy-cookie-path`, `proxy-cookie-domain`: the upstream
//! response's Location, Refresh and Set-Cookie fields rewritten as nginx's `proxy_redirect`
//! and `proxy_cookie_*` do. Portico's own fields (its affinity cookie) are added after.

use http::HeaderMap;
use http::header::{self, HeaderValue};

use crate::config::Policy;
use crate::config::response::ResponseRewrite;

/// Rewrites the upstream's response fields when the route asks; other routes pay one test.
#[inline(always)]
pub fn rewrite(policy: &Policy, headers: &mut HeaderMap) {
    if let Some(r) = &policy.response {
        apply(r, headers);
    }
}

#[inline(never)]
fn apply(r: &ResponseRewrite, headers: &mut HeaderMap) {
    if r.redirect.is_some() {
        if let Some(v) = headers.get_mut(header::LOCATION)
            && let Some(new) = v.to_str().ok().and_then(|s| r.redirect(s))
            && let Ok(new) = HeaderValue::from_str(&new)
        {
            *v = new;
        }
        if let Some(v) = headers.get_mut(header::REFRESH)
            && let Some(new) = v.to_str().ok().and_then(|s| refresh(r, s))
            && let Ok(new) = HeaderValue::from_str(&new)
        {
            *v = new;
        }
    }
    if (r.cookie_path.is_some() || r.cookie_domain.is_some())
        && let header::Entry::Occupied(mut e) = headers.entry(header::SET_COOKIE)
    {
        for v in e.iter_mut() {
            if let Some(new) = v.to_str().ok().and_then(|s| r.cookie(s))
                && let Ok(new) = HeaderValue::from_str(&new)
            {
                *v = new;
            }
        }
    }
}

/// `Refresh: 5; url=http://...`: the URL after `url=` (any case) is what is rewritten.
fn refresh(r: &ResponseRewrite, value: &str) -> Option<String> {
    let at = value.to_ascii_lowercase().find("url=")? + 4;
    let new = r.redirect(&value[at..])?;
    Some(format!("{}{new}", &value[..at]))
}
