//! HTTPRoute filters (Gateway API) on the request path: [`request`] answers redirects and
//! CORS preflights and changes the request's headers, [`mirror`] starts the copies,
//! [`rewrite`] changes the upstream Host and path, [`respond`] adds CORS fields and changes
//! the answer's headers. Every entry point tests one `Option` first; routes without filters
//! (every Ingress route) go no further.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};

use super::mirror;
use crate::config::filters::{Filters, GatewayCors, HeaderModifier, RequestRedirect, Scheme};
use crate::config::{Config, Policy, Target};
use crate::proxy::headers::{Fields, request_authority, request_host};
use crate::proxy::upstream::tee::Tee;
use crate::proxy::{Body, SERVER, plain};

/// What the request phase leaves for the rest of the request: `None` for a route without
/// filters.
pub struct Applied<'f> {
    filters: &'f Filters,
    /// The request's Origin, when the CORS filter allows it (the answer gets the fields).
    /// Boxed: this lives in every request's future, most of them without CORS.
    origin: Option<Box<HeaderValue>>,
}

/// The request as the redirect needs it.
struct Here<'a> {
    fields: &'a Fields,
    /// The request host, port stripped.
    host: &'a str,
    tls: bool,
    /// The path as routed (normalized), which a ReplacePrefixMatch replaces the match of.
    path: &'a str,
}

/// The request phase: `Err` is the answer (a redirect, a CORS preflight's; boxed, as the
/// rare path), `Ok(Some)` what the response phase needs.
#[inline(always)]
pub fn request<'f, B>(
    policy: &'f Policy,
    req: &mut Request<B>,
    fields: &Fields,
    tls: bool,
    normalized: Option<&str>,
) -> Result<Option<Applied<'f>>, Box<Response<Body>>> {
    match policy.filters.as_deref() {
        None => Ok(None),
        Some(f) => run(f, req, fields, tls, normalized).map(Some),
    }
}

#[inline(never)]
fn run<'f, B>(
    f: &'f Filters,
    req: &mut Request<B>,
    fields: &Fields,
    tls: bool,
    normalized: Option<&str>,
) -> Result<Applied<'f>, Box<Response<Body>>> {
    if let Some(r) = &f.redirect {
        // Routing found the host valid already.
        let host = request_host(req.uri(), fields).unwrap_or_default();
        let here = Here {
            fields,
            host,
            tls,
            path: normalized.unwrap_or(req.uri().path()),
        };
        return Err(Box::new(redirect(r, req.uri(), &here)));
    }
    let mut origin = None;
    if let Some(c) = &f.cors
        && let Some(o) = req.headers().get(header::ORIGIN)
    {
        let allowed = o.to_str().is_ok_and(|o| c.allows(o));
        if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            // A preflight is answered here, with the fields only when the origin is allowed
            // (the spec's 204 without them, else).
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r.headers_mut().insert(header::SERVER, SERVER);
            if allowed {
                cors_fields(c, o, Some(req.headers()), r.headers_mut());
            }
            return Err(Box::new(r));
        }
        origin = allowed.then(|| Box::new(o.clone()));
    }
    // The rule's, then the chosen backendRef's own.
    for m in [&f.request_headers, &f.backend_request_headers].into_iter().flatten() {
        modify(m, req.headers_mut());
    }
    Ok(Applied { filters: f, origin })
}

/// The redirect's answer: the request's URL with what the filter sets changed.
fn redirect(r: &RequestRedirect, uri: &Uri, here: &Here<'_>) -> Response<Body> {
    let asked = if here.tls { Scheme::Https } else { Scheme::Http };
    let scheme = r.scheme.unwrap_or(asked);
    let port = match (r.port, r.scheme) {
        (Some(p), _) => p,
        (None, Some(s)) => s.default_port(),
        // The listener's port: compile's, else the one the client named in Host.
        (None, None) => r.listener_port.unwrap_or_else(|| {
            request_authority(uri, here.fields)
                .as_ref()
                .and_then(|a| a.to_str().ok())
                .and_then(|a| a.get(here.host.len()..)?.strip_prefix(':')?.parse().ok())
                .unwrap_or(asked.default_port())
        }),
    };
    let host = r.hostname.as_deref().unwrap_or(here.host);
    let path = match &r.path {
        Some(m) => std::borrow::Cow::Owned(m.apply(here.path)),
        None => std::borrow::Cow::Borrowed(uri.path()),
    };
    let mut location = format!("{}://{host}", scheme.as_str());
    if port != scheme.default_port() {
        location.push_str(&format!(":{port}"));
    }
    location.push_str(if path.is_empty() { "/" } else { &path });
    if let Some(q) = uri.query() {
        location.push('?');
        location.push_str(q);
    }
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
    let mut resp = plain(status, "redirecting");
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        // Only a request's own (already parsed) host and path go in, so this is not expected.
        Err(_) => return plain(StatusCode::BAD_REQUEST, "bad request: invalid request target"),
    }
    resp
}

/// A header modifier on a header map: set replaces, add appends a field line, remove removes.
pub fn modify(m: &HeaderModifier, h: &mut HeaderMap) {
    for (name, value) in &m.set {
        h.insert(name.clone(), value.clone());
    }
    for (name, value) in &m.add {
        h.append(name.clone(), value.clone());
    }
    for name in &m.remove {
        h.remove(name);
    }
}

/// The CORS fields of an allowed origin's answer; `preflight`: the preflight request's
/// fields, whose method and headers are answered.
fn cors_fields(c: &GatewayCors, origin: &HeaderValue, preflight: Option<&HeaderMap>, h: &mut HeaderMap) {
    // The origin itself, never `*`: right with or without credentials.
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if c.allow_credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    let joined = |list: &[String]| HeaderValue::from_str(&list.join(", ")).ok();
    if let Some(req) = preflight {
        // What the preflight asks for is answered only when asked; `*` answers with what was
        // asked (the only answer allowed with credentials).
        let answers = [
            (
                header::ACCESS_CONTROL_REQUEST_METHOD,
                header::ACCESS_CONTROL_ALLOW_METHODS,
                &c.allow_methods,
            ),
            (
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                &c.allow_headers,
            ),
        ];
        for (asking, allowing, list) in answers {
            let Some(asked) = req.get(asking) else { continue };
            let v = match list.as_slice() {
                [any] if any == "*" => Some(asked.clone()),
                _ => joined(list),
            };
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                h.insert(allowing, v);
            }
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(c.max_age));
    }
    let expose_any = c.expose_headers.iter().any(|e| e == "*");
    if !(c.expose_headers.is_empty() || expose_any && c.allow_credentials)
        && let Some(v) = joined(&c.expose_headers)
    {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// Starts the copies the route's RequestMirror filters ask for: each filter draws whether
/// this request is copied, then one ready endpoint of its backend. `Some`: the body is to be
/// copied as it streams upstream.
#[inline(always)]
pub fn mirror<B: hyper::body::Body>(
    applied: Option<&Applied<'_>>,
    state: &mirror::State,
    config: &Config,
    req: &Request<B>,
    random: fn() -> u64,
) -> Option<Tee> {
    let f = applied?.filters;
    if f.mirrors.is_empty() {
        return None;
    }
    copies(f, state, config, req, random)
}

#[inline(never)]
fn copies<B: hyper::body::Body>(
    f: &Filters,
    state: &mirror::State,
    config: &Config,
    req: &Request<B>,
    random: fn() -> u64,
) -> Option<Tee> {
    let to: Vec<SocketAddr> = f
        .mirrors
        .iter()
        .filter(|m| m.picks(random()))
        .filter_map(|m| match &config.backends.get(m.backend)?.target {
            Target::Endpoints { ready, .. } if !ready.is_empty() => {
                Some(ready[(random() % ready.len() as u64) as usize].addr)
            }
            // A backend without ready endpoints (or an ExternalName) gets no copy.
            _ => None,
        })
        .collect();
    if to.is_empty() {
        return None;
    }
    mirror::copies(state, to, req)
}

/// The upstream target and Host under a URLRewrite filter: `uri` as it would go upstream
/// otherwise (its path the routed one), `headers` the upstream request's.
#[inline(always)]
pub fn rewrite(policy: &Policy, uri: Uri, headers: &mut HeaderMap) -> Uri {
    match policy.filters.as_deref().and_then(|f| f.rewrite.as_ref()) {
        None => uri,
        Some(_) => rewritten(policy, uri, headers),
    }
}

#[inline(never)]
fn rewritten(policy: &Policy, uri: Uri, headers: &mut HeaderMap) -> Uri {
    let Some(r) = policy.filters.as_deref().and_then(|f| f.rewrite.as_ref()) else {
        return uri;
    };
    if let Some(host) = &r.hostname {
        headers.insert(header::HOST, host.clone());
    }
    let Some(m) = &r.path else {
        return uri;
    };
    let mut target = m.apply(uri.path());
    if let Some(q) = uri.query() {
        target.push('?');
        target.push_str(q);
    }
    match target.parse::<Uri>() {
        Ok(u) => u,
        Err(_) => {
            // Compile checked the replacement, and the rest is the request's own path.
            tracing::warn!(target = %target, "URLRewrite gave an invalid target; the path goes unchanged");
            uri
        }
    }
}

/// The response phase: CORS fields for an allowed origin, then the ResponseHeaderModifier.
#[inline(always)]
pub fn respond(applied: Option<&Applied<'_>>, resp: &mut Response<Body>) {
    if let Some(a) = applied {
        answer(a, resp.headers_mut());
    }
}

#[inline(never)]
fn answer(a: &Applied<'_>, h: &mut HeaderMap) {
    if let (Some(c), Some(o)) = (&a.filters.cors, &a.origin) {
        cors_fields(c, o, None, h);
    }
    for m in [&a.filters.response_headers, &a.filters.backend_response_headers]
        .into_iter()
        .flatten()
    {
        modify(m, h);
    }
}

#[cfg(test)]
mod tests;
