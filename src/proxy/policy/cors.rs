//! `enable-cors` and the `cors-*` family: preflights answered here, allowed origins' responses
//! given the Access-Control fields.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::config::Policy;
use crate::config::policy::Cors;
use crate::proxy::{Body, SERVER};

/// A request's Origin under a route with CORS, for the response step.
pub struct Origin<'p> {
    cors: &'p Cors,
    origin: String,
}

/// The request's Origin, when the route has CORS and the request names one.
#[inline(always)]
pub fn origin<'p, B>(policy: &'p Policy, req: &Request<B>) -> Option<Origin<'p>> {
    let cors = policy.cors.as_ref()?;
    let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
    Some(Origin {
        cors,
        origin: origin.to_string(),
    })
}

/// The answer to a preflight request (OPTIONS with Access-Control-Request-Method).
pub fn preflight<B>(origin: &Origin<'_>, req: &Request<B>) -> Option<Response<Body>> {
    if req.method() != Method::OPTIONS || !req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return None;
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    headers(origin, r.headers_mut(), true);
    r.headers_mut().insert(header::SERVER, SERVER);
    Some(r)
}

/// Adds the CORS fields to an upstream response.
#[inline(always)]
pub fn respond(origin: Option<&Origin<'_>>, resp: &mut Response<Body>) {
    if let Some(o) = origin {
        headers(o, resp.headers_mut(), false);
    }
}

/// CORS response fields for an allowed origin (nothing when it is not allowed); `preflight`
/// adds what a preflight answer carries.
fn headers(o: &Origin<'_>, h: &mut HeaderMap, preflight: bool) {
    let cors = o.cors;
    let Some(allow) = cors
        .origin_allowed(&o.origin)
        .and_then(|o| HeaderValue::from_str(o).ok())
    else {
        return;
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    if cors.allow_credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    let mut set = |name: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    };
    set(header::ACCESS_CONTROL_ALLOW_METHODS, &cors.allow_methods);
    set(header::ACCESS_CONTROL_ALLOW_HEADERS, &cors.allow_headers);
    if let Some(e) = &cors.expose_headers {
        set(header::ACCESS_CONTROL_EXPOSE_HEADERS, e);
    }
    if preflight {
        set(header::ACCESS_CONTROL_MAX_AGE, &cors.max_age.to_string());
    }
    if cors.allow_origin.iter().all(|o| o != "*") {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}
