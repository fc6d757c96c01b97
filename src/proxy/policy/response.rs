//! `proxy-redirect-from`/`-to`, `proxy-cookie-path`, `proxy-cookie-domain`: the upstream
//! response's Location, Refresh and Set-Cookie fields rewritten as nginx's `proxy_redirect`
//! and `proxy_cookie_*` do. Portico's own fields (its affinity cookie) are added after.

use http::HeaderMap;
use http::header::{self, HeaderValue};

use crate::config::response::{Expand, ResponseRewrite};
use crate::config::vars::Template;
use crate::config::{Policy, Route, Trusted};
use crate::proxy::headers::Peer;
use crate::proxy::vars::{self, Ctx, Held};

/// The request's head, kept until its response when the route's response phase reads its
/// variables (rewrites, response headers with variables); other routes pay one test.
#[inline(always)]
pub fn keep<B>(policy: &Policy, req: &http::Request<B>, trusted: &Trusted, rid: &HeaderValue) -> Option<Box<Held>> {
    if !policy.keep_request {
        return None;
    }
    Some(Held::of(req, trusted, rid))
}

/// Rewrites the upstream's response fields when the route asks; other routes pay one test.
#[inline(always)]
pub fn rewrite(route: &Route, req: Option<&Held>, peer: &Peer, headers: &mut HeaderMap) {
    if let (Some(r), Some(req)) = (&route.policy.response, req) {
        with_vars(r, req.ctx(peer).route(route, None), headers);
    }
}

#[inline(never)]
fn with_vars(r: &ResponseRewrite, ctx: Ctx<'_>, headers: &mut HeaderMap) {
    apply(
        r,
        &|t: &Template, caps: Option<&regex::Captures<'_>>| vars::string(t, &ctx, caps),
        headers,
    );
}

#[inline(never)]
fn apply(r: &ResponseRewrite, vars: Expand<'_>, headers: &mut HeaderMap) {
    if r.redirect.is_some() {
        if let Some(v) = headers.get_mut(header::LOCATION)
            && let Some(new) = v.to_str().ok().and_then(|s| r.redirect(s, vars))
            && let Ok(new) = HeaderValue::from_str(&new)
        {
            *v = new;
        }
        if let Some(v) = headers.get_mut(header::REFRESH)
            && let Some(new) = v.to_str().ok().and_then(|s| refresh(r, s, vars))
            && let Ok(new) = HeaderValue::from_str(&new)
        {
            *v = new;
        }
    }
    if (r.cookie_path.is_some() || r.cookie_domain.is_some())
        && let header::Entry::Occupied(mut e) = headers.entry(header::SET_COOKIE)
    {
        for v in e.iter_mut() {
            if let Some(new) = v.to_str().ok().and_then(|s| r.cookie(s, vars))
                && let Ok(new) = HeaderValue::from_str(&new)
            {
                *v = new;
            }
        }
    }
}

/// `Refresh: 5; url=http://...`: the URL after `url=` (any case) is what is rewritten.
fn refresh(r: &ResponseRewrite, value: &str, vars: Expand<'_>) -> Option<String> {
    let at = value.to_ascii_lowercase().find("url=")? + 4;
    let new = r.redirect(&value[at..], vars)?;
    Some(format!("{}{new}", &value[..at]))
}
