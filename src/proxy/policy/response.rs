//! `proxy-redirect-from`/`-to`, `proxy-cookie-path`, `proxy-cookie-domain`: the upstream
//! response's Location, Refresh and Set-Cookie fields rewritten as nginx's `proxy_redirect`
//! and `proxy_cookie_*` do. Portico's own fields (its affinity cookie) are added after.

use http::header::{self, HeaderValue};
use http::{HeaderMap, Uri};

use crate::config::Policy;
use crate::config::response::{ResponseRewrite, Vars};
use crate::proxy::headers::{Fields, request_authority, request_host};

/// What the variables are for one request, kept until its response: only routes that
/// rewrite responses pay for it.
#[derive(Debug, Default)]
pub struct Request {
    tls: bool,
    host: String,
    http_host: String,
    port: u16,
}

/// The request's variables when the route rewrites responses; other routes pay one test.
#[inline(always)]
pub fn request(policy: &Policy, uri: &Uri, fields: &Fields, tls: bool, port: u16) -> Option<Box<Request>> {
    policy.response.as_ref()?;
    Some(remember(uri, fields, tls, port))
}

#[inline(never)]
fn remember(uri: &Uri, fields: &Fields, tls: bool, port: u16) -> Box<Request> {
    Box::new(Request {
        tls,
        host: request_host(uri, fields).unwrap_or("").to_ascii_lowercase(),
        http_host: request_authority(uri, fields)
            .and_then(|h| h.to_str().ok().map(str::to_string))
            .unwrap_or_default(),
        port,
    })
}

/// Rewrites the upstream's response fields when the route asks; other routes pay one test.
#[inline(always)]
pub fn rewrite(policy: &Policy, req: Option<&Request>, headers: &mut HeaderMap) {
    if let (Some(r), Some(req)) = (&policy.response, req) {
        apply(r, req, headers);
    }
}

#[inline(never)]
fn apply(r: &ResponseRewrite, req: &Request, headers: &mut HeaderMap) {
    let vars = Vars {
        scheme: if req.tls { "https" } else { "http" },
        host: &req.host,
        http_host: &req.http_host,
        server_port: req.port,
    };
    let vars = &vars;
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
fn refresh(r: &ResponseRewrite, value: &str, vars: &Vars<'_>) -> Option<String> {
    let at = value.to_ascii_lowercase().find("url=")? + 4;
    let new = r.redirect(&value[at..], vars)?;
    Some(format!("{}{new}", &value[..at]))
}
