//! `default-backend` and `custom-http-errors` on the request path. A route whose Service has
//! no ready endpoints is served by its `default-backend` Service instead; an answer whose
//! status is listed (the upstream's, or Portico's own 502, 503 or 504) is replaced by the
//! error backend's answer to a bodiless GET of `/` that carries what ingress-nginx's custom
//! error backends read: `X-Code`, `X-Format`, `X-Original-URI`, `X-Namespace`,
//! `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port` and `X-Request-ID`.

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};

use crate::balance::table::BackendState;
use crate::balance::{Tracked, now_ns, pick};
use crate::config::errors::ErrorPages;
use crate::config::policy::Algorithm;
use crate::config::{Backend, Policy, Route, Target, Trusted};
use crate::proxy::headers::{Peer, forwarded, strip_hop_by_hop};
use crate::proxy::live::Plane;
use crate::proxy::upstream::h1::{self, Sending};
use crate::proxy::upstream::{EndpointRuntime, SendError, Upstream};
use crate::proxy::{Body, SERVER};
use prometheus_client::metrics::counter::Counter;

/// Endpoints of the error backend tried for one error page.
const TRIES: usize = 2;

type Table = BackendState<EndpointRuntime>;

/// The backend (and its runtime table) a request goes to: the route's own, or while that has
/// no ready endpoints, the route's `default-backend`.
#[inline(always)]
pub fn backend<'p>(policy: &Policy, plane: &'p Plane, own: &'p Backend, table: &'p Table) -> (&'p Backend, &'p Table) {
    match policy.default_backend {
        None => (own, table),
        Some(id) => fallback(id, plane, own, table),
    }
}

#[inline(never)]
fn fallback<'p>(id: usize, plane: &'p Plane, own: &'p Backend, table: &'p Table) -> (&'p Backend, &'p Table) {
    let empty = match &own.target {
        Target::Unavailable { .. } => true,
        Target::Endpoints { ready, .. } => ready.is_empty(),
        Target::ExternalName { .. } => false,
    };
    match (plane.config.backends.get(id), plane.backends.get(id)) {
        (Some(b), Some(t)) if empty => (b, t),
        _ => (own, table),
    }
}

/// What an error page needs of the request, kept before the request goes upstream.
pub struct Asked {
    pages: Arc<ErrorPages>,
    head: HeadOnly,
}

struct HeadOnly {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    rid: HeaderValue,
}

/// The request's head, when its route intercepts errors (`None`, at the cost of one test,
/// otherwise).
#[inline(always)]
pub fn asked<B>(policy: &Policy, req: &Request<B>, rid: &HeaderValue) -> Option<Box<Asked>> {
    let pages = policy.error_pages.as_ref()?;
    Some(keep(pages, req, rid))
}

/// Boxed: it is kept across the upstream exchange, and inline it would make every
/// request's future larger.
#[inline(never)]
fn keep<B>(pages: &Arc<ErrorPages>, req: &Request<B>, rid: &HeaderValue) -> Box<Asked> {
    Box::new(Asked {
        pages: pages.clone(),
        head: HeadOnly {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
            rid: rid.clone(),
        },
    })
}

impl Asked {
    pub fn intercepts(&self, status: http::StatusCode) -> bool {
        self.pages.intercepts(status.as_u16())
    }
}

/// Where the error page comes from.
pub struct Via<'a> {
    pub upstream: &'a Upstream,
    pub plane: &'a Plane,
    pub route: &'a Route,
    pub peer: &'a Peer,
    pub trusted: &'a Trusted,
    pub counter: Counter,
}

static X_CODE: HeaderName = HeaderName::from_static("x-code");
static X_FORMAT: HeaderName = HeaderName::from_static("x-format");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_NAMESPACE: HeaderName = HeaderName::from_static("x-namespace");
static X_INGRESS_NAME: HeaderName = HeaderName::from_static("x-ingress-name");
static X_SERVICE_NAME: HeaderName = HeaderName::from_static("x-service-name");
static X_SERVICE_PORT: HeaderName = HeaderName::from_static("x-service-port");

/// The error backend's answer in place of `original`, whose status is listed; `original`
/// itself when the error backend cannot answer (no ready endpoint, connect or exchange
/// failure), so the client still gets the real error.
pub async fn page(asked: Box<Asked>, original: Response<Body>, via: Via<'_>) -> Response<Body> {
    let status = original.status();
    match fetch(asked, status, &via).await {
        Some(resp) => resp,
        None => original,
    }
}

async fn fetch(asked: Box<Asked>, status: http::StatusCode, via: &Via<'_>) -> Option<Response<Body>> {
    let asked = *asked;
    let id = asked.pages.backend;
    let (backend, table) = (via.plane.config.backends.get(id)?, via.plane.backends.get(id)?);
    if !matches!(backend.target, Target::Endpoints { .. }) || backend.protocol.http2() || table.ready == 0 {
        return None;
    }
    let HeadOnly {
        method,
        uri,
        mut headers,
        rid,
    } = asked.head;
    strip_hop_by_hop(&mut headers);
    for h in [header::CONTENT_LENGTH, header::EXPECT, header::UPGRADE] {
        headers.remove(h);
    }
    let route = via.route;
    let port = via
        .plane
        .config
        .backends
        .get(route.backend)
        .map(|b| b.port.to_string())
        .unwrap_or_default();
    let request_uri = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let format = headers.get(header::ACCEPT).cloned();
    let set = [
        (&X_CODE, HeaderValue::from(status.as_u16())),
        (&X_ORIGINAL_URI, HeaderValue::from_str(request_uri).ok()?),
        (&X_NAMESPACE, HeaderValue::from_str(&route.ingress.namespace).ok()?),
        (&X_INGRESS_NAME, HeaderValue::from_str(&route.ingress.name).ok()?),
        (&X_SERVICE_NAME, HeaderValue::from_str(&route.service.name).ok()?),
        (&X_SERVICE_PORT, HeaderValue::from_str(&port).ok()?),
    ];
    for (name, value) in set {
        headers.insert(name.clone(), value);
    }
    match format {
        Some(f) => headers.insert(X_FORMAT.clone(), f),
        None => headers.remove(&X_FORMAT),
    };
    // An HTTP/2 client names the host in the request target.
    if !headers.contains_key(header::HOST)
        && let Some(a) = uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(header::HOST, a);
    }
    let host = headers.get(header::HOST).cloned();
    let fwd = forwarded(&headers, via.peer, host.as_ref(), via.trusted, rid);
    // As ingress-nginx's error location: the path becomes `/`, the query stays.
    let target = match uri.query() {
        Some(q) => format!("/?{q}"),
        None => "/".to_string(),
    };
    let method = if method == Method::HEAD {
        Method::HEAD
    } else {
        Method::GET
    };
    let req = h1::Request {
        method: &method,
        target: &target,
        headers: &headers,
        extra: &fwd,
        body: Sending::None,
        // The error backend gets the names as Portico holds them (lower case).
        names: None,
        http10: false,
    };
    let states = &table.endpoints[..table.ready];
    let mut tried = Vec::new();
    for _ in 0..TRIES {
        let now = now_ns();
        let i = pick(Algorithm::RoundRobin, states, &tried, &table.rotation, now, &mut || 0)?;
        tried.push(i);
        let runtime = &states[i];
        let t = Instant::now();
        let mut conn = match via
            .upstream
            .connection(runtime, backend.protocol, None, None, &via.plane.config.global, t)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                runtime.state().failed(now);
                tracing::warn!(request_id = fwd.request_id(), endpoint = %runtime.state().addr, error = %e, "error backend connect failed");
                continue;
            }
        };
        let mut sent = via.upstream.send_h1(&mut conn, &req, None, None, None, t).await;
        // A pooled connection the error backend closed just now never got the request.
        if let Err(SendError::NotSent(_)) = sent
            && let Ok(fresh) = via
                .upstream
                .connect(runtime.state().addr, backend.protocol, None, None)
                .await
        {
            conn = fresh;
            sent = via
                .upstream
                .send_h1(&mut conn, &req, None, None, None, Instant::now())
                .await;
        }
        match sent {
            Ok(resp) => {
                runtime.state().succeeded();
                let (mut parts, body) = resp.into_parts();
                if !parts.headers.contains_key(header::SERVER) {
                    parts.headers.insert(header::SERVER, SERVER);
                }
                let body = via
                    .upstream
                    .body(body, conn, runtime.clone(), via.counter.clone(), None);
                return Some(Response::from_parts(parts, Body::upstream(body)));
            }
            Err(_) => {
                tracing::warn!(request_id = fwd.request_id(), endpoint = %runtime.state().addr, "error backend failed");
            }
        }
    }
    None
}
