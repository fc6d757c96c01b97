//! `mirror-target`: each request is also sent to the mirror, fire and forget (nginx's
//! `mirror` module): the copy's answer is dropped, and nothing about it delays or fails the
//! request. Bounded: at most [`MAX_IN_FLIGHT`] copies at once (past that a request is not
//! mirrored), each within [`TIMEOUT`], with a body only up to [`MAX_BODY`] bytes (a larger
//! body is not mirrored). A copy with a body leaves once the upstream has read the body
//! whole, as a tee of it; a request whose body never ends there is not mirrored.
//! Owns the runtime state: the in-flight limit and the TLS client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Uri};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::external::{Service, exchange};
use crate::config::mirror::Mirror;
use crate::config::{Route, Trusted};
use crate::proxy::headers::{Fields, Peer, strip_hop_by_hop};
use crate::proxy::upstream::tee::Tee;
use crate::proxy::vars::{Ctx, expand};

/// Copies on their way at once, at most; each holds at most [`MAX_BODY`] bytes of body.
pub const MAX_IN_FLIGHT: usize = 256;
/// The largest body a copy carries (with `mirror-request-body: on`); a request with a larger
/// one is not mirrored.
pub const MAX_BODY: usize = 64 * 1024;
/// One copy's whole exchange, connect included, up to the answer's head.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The data plane's mirror state, shared by all requests.
pub struct State {
    permits: Arc<Semaphore>,
    tls: tokio_rustls::TlsConnector,
    /// `--allow-loopback-mirror-target`: a mirror on the controller's own host.
    allow_loopback: bool,
}

impl State {
    pub fn new(allow_loopback: bool) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            tls: crate::proxy::upstream::tls_connector(b"http/1.1"),
            allow_loopback,
        }
    }
}

/// Starts the copy of a request when its route mirrors. `Some`: the request's body is to be
/// copied as it streams upstream ([`Tee`]), and the copy leaves when it ends.
#[inline(always)]
pub fn start(
    state: &State,
    route: &Route,
    req: &Request<Incoming>,
    fields: &Fields,
    peer: &Peer,
    trusted: &Trusted,
) -> Option<Tee> {
    let m = route.policy.mirror.as_ref()?;
    let ctx = Ctx::of(req, fields, peer, trusted).route(route, None);
    begin(state, m, req, &ctx)
}

#[inline(never)]
fn begin(state: &State, m: &Arc<Mirror>, req: &Request<Incoming>, ctx: &Ctx<'_>) -> Option<Tee> {
    let body = req.body();
    let with_body = m.request_body && !body.is_end_stream();
    if with_body && body.size_hint().lower() > MAX_BODY as u64 {
        tracing::debug!(mirror = %m.host, "request not mirrored: its body is larger than {MAX_BODY} bytes");
        return None;
    }
    let Ok(permit) = state.permits.clone().try_acquire_owned() else {
        tracing::debug!(mirror = %m.host, "request not mirrored: {MAX_IN_FLIGHT} copies on their way already");
        return None;
    };
    let copy = match head(m, req, ctx) {
        Ok(c) => c,
        Err(why) => {
            tracing::debug!(mirror = %m.host, "request not mirrored: {why}");
            return None;
        }
    };
    let to = (m.clone(), state.tls.clone(), state.allow_loopback);
    if !with_body {
        tokio::spawn(send(to, copy, Bytes::new(), permit));
        return None;
    }
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        // The sender is dropped when the body passed MAX_BODY or never ended.
        if let Ok(body) = rx.await {
            send(to, copy, body, permit).await;
        }
    });
    Some(Tee::new(MAX_BODY, tx))
}

/// The copy's head: the client's method, the expanded target, the client's end-to-end
/// fields with the mirror's Host.
fn head(m: &Mirror, req: &Request<Incoming>, ctx: &Ctx<'_>) -> Result<Request<()>, &'static str> {
    let mut target = Vec::new();
    if !expand(&m.target, ctx, None, &mut target) {
        return Err("the expanded mirror-target is too long");
    }
    // A target without variables gets the request's query, as nginx's proxy_pass with a URI.
    if !m.has_variables()
        && let Some(q) = req.uri().query()
    {
        target.push(if target.contains(&b'?') { b'&' } else { b'?' });
        target.extend_from_slice(q.as_bytes());
    }
    let uri = Uri::try_from(target).map_err(|_| "the expanded mirror-target is not a valid target")?;
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = uri;
    let mut h = req.headers().clone();
    strip_hop_by_hop(&mut h);
    for name in [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::EXPECT] {
        h.remove(name);
    }
    h.insert(
        header::HOST,
        HeaderValue::from_str(&m.host_header).map_err(|_| "mirror-host is not a header value")?,
    );
    *copy.headers_mut() = h;
    Ok(copy)
}

/// Sends the copy and drops the answer; failures are only logged (a Warning, as nginx's
/// error log has them).
async fn send(
    (m, tls, allow_loopback): (Arc<Mirror>, tokio_rustls::TlsConnector, bool),
    copy: Request<()>,
    body: Bytes,
    permit: OwnedSemaphorePermit,
) {
    let to = Service {
        tls: m.tls.then_some(&tls),
        host: &m.host,
        port: m.port,
        allow_loopback,
        flag: "--allow-loopback-mirror-target",
    };
    deliver(&to, copy, body).await;
    drop(permit);
}

/// One copy's exchange, its answer dropped, within [`TIMEOUT`].
async fn deliver(to: &Service<'_>, copy: Request<()>, body: Bytes) {
    let (mut parts, ()) = copy.into_parts();
    if !body.is_empty() {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let req = Request::from_parts(parts, Full::new(body));
    match tokio::time::timeout(TIMEOUT, exchange(to, req)).await {
        Ok(Ok(_dropped)) => {}
        Ok(Err(why)) => tracing::warn!(mirror = %to.host, "mirror request failed: {why}"),
        Err(_) => tracing::warn!(mirror = %to.host, "mirror request had no answer within {TIMEOUT:?}"),
    }
}

/// Copies of a request to endpoint addresses (the Gateway API's RequestMirror filters, whose
/// backends are Services like a route's own): the request's target and Host, plain HTTP/1.1,
/// under the same limits as `mirror-target`'s (one in-flight place per copy). `Some`: the
/// request's body is to be copied as it streams upstream, and the copies leave when it ends.
pub fn copies<B: hyper::body::Body>(state: &State, to: Vec<SocketAddr>, req: &Request<B>) -> Option<Tee> {
    let body = req.body();
    let with_body = !body.is_end_stream();
    if with_body && body.size_hint().lower() > MAX_BODY as u64 {
        tracing::debug!("request not mirrored: its body is larger than {MAX_BODY} bytes");
        return None;
    }
    // One place per copy, all or none.
    let Ok(permits) = to
        .iter()
        .map(|_| state.permits.clone().try_acquire_owned())
        .collect::<Result<Vec<_>, _>>()
    else {
        tracing::debug!("request not mirrored: {MAX_IN_FLIGHT} copies on their way already");
        return None;
    };
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = match req.uri().path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    };
    let mut h = req.headers().clone();
    strip_hop_by_hop(&mut h);
    for name in [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::EXPECT] {
        h.remove(name);
    }
    // An HTTP/2 request names its authority in the target, not in a Host field.
    if !h.contains_key(header::HOST)
        && let Some(a) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        h.insert(header::HOST, a);
    }
    *copy.headers_mut() = h;
    // Each copy on its own, so a slow endpoint delays no other.
    let go = move |copy: Request<()>, body: Bytes| {
        for (addr, permit) in to.into_iter().zip(permits) {
            let (parts, ()) = copy.clone().into_parts();
            let (copy, body) = (Request::from_parts(parts, ()), body.clone());
            tokio::spawn(async move {
                let host = addr.ip().to_string();
                // Endpoint addresses come from the cluster's EndpointSlices, as the route's
                // own upstreams do, so loopback is no more forbidden here than there.
                let service = Service {
                    tls: None,
                    host: &host,
                    port: addr.port(),
                    allow_loopback: true,
                    flag: "",
                };
                deliver(&service, copy, body).await;
                drop(permit);
            });
        }
    };
    if !with_body {
        go(copy, Bytes::new());
        return None;
    }
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        // The sender is dropped when the body passed MAX_BODY or never ended.
        if let Ok(body) = rx.await {
            go(copy, body);
        }
    });
    Some(Tee::new(MAX_BODY, tx))
}
