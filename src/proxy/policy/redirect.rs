//! Redirects a route answers itself: HTTPS for TLS hosts (`ssl-redirect`), the whole route
//! (`permanent-redirect`, `temporal-redirect`) and `/` (`app-root`).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Uri};

use crate::config::Route;
use crate::proxy::headers::{Fields, request_authority};
use crate::proxy::{Body, plain};

/// What the redirect step needs to know about the request.
pub struct Request<'a> {
    pub uri: &'a Uri,
    pub fields: &'a Fields,
    /// The request host, port stripped.
    pub host: &'a str,
    pub tls: bool,
    /// The HTTPS port named in redirects (left out when 443).
    pub https_port: u16,
}

/// The redirect answer, if the route asks for one, in order of precedence.
#[inline]
pub fn check(route: &Route, req: &Request<'_>) -> Option<Response<Body>> {
    if !req.tls && route.ssl_redirect {
        let port = match req.https_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let pq = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        // As ingress-nginx: one trailing `/` goes unless `preserve-trailing-slash`.
        let pq = match route.policy.preserve_trailing_slash {
            true => pq,
            false => pq.strip_suffix('/').unwrap_or(pq),
        };
        let mut r = plain(StatusCode::PERMANENT_REDIRECT, "redirecting to https");
        if let Ok(v) = HeaderValue::from_str(&format!("https://{}{port}{pq}", req.host)) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return Some(r);
    }
    let policy = &route.policy;
    if let Some(r) = &policy.redirect {
        return Some(to(r.code, &r.location));
    }
    if let Some(root) = &policy.app_root
        && req.uri.path() == "/"
    {
        let scheme = if req.tls { "https" } else { "http" };
        let authority = request_authority(req.uri, req.fields);
        let host = authority.as_ref().and_then(|a| a.to_str().ok()).unwrap_or(req.host);
        return Some(to(302, &format!("{scheme}://{host}{root}")));
    }
    None
}

/// A redirect answer of Portico's own.
fn to(code: u16, location: &str) -> Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
    let mut r = plain(status, "redirecting");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
