//! The request handler: host and path → route → endpoint, headers rewritten, bodies streamed.

use std::borrow::Cow;
use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;

use super::client::Serving;
use super::h1;
use super::headers::{
    Fields, Peer, client_ip, forwarded, request_authority, request_host, strip_hop_by_hop, upgrade_protocol,
    upstream_target,
};
use super::live::{Live, RouteCounters};
use super::upstream::EndpointRuntime;
use super::upstream::{
    BodyLimit, Conn, RequestBody, SendError, SendProgress, Streamed, UpBody, Upstream, is_idempotent, resolve_external,
};
use super::{Body, SERVER, Settings, plain};
use crate::balance::choice::Choice;
use crate::balance::{now_ns, ns_at};
use crate::config::policy::Cors;
use crate::config::{Cidr, Endpoint, Route, Target};
use crate::metrics::{Metrics, status_index};
use crate::path::{PathError, normalize};

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    pub live: Arc<Live>,
    pub upstream: Upstream,
    pub settings: Settings,
    pub trusted: Vec<Cidr>,
    pub metrics: Arc<Metrics>,
    pub access_log: bool,
    /// Signs persistent-affinity cookie values (`--affinity-key`).
    pub affinity_key: aws_lc_rs::hmac::Key,
    /// Send Strict-Transport-Security on HTTPS responses (`--hsts`).
    pub hsts: bool,
}

/// Why no endpoint answered.
enum Failure {
    Connect,
    Exchange,
    Timeout,
}

const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");

/// The upstream path under `rewrite-target`: `$n` are the route regex's capture groups
/// (empty when missing); as in nginx, the whole path is replaced.
fn rewrite(route: &Route, target: &str, path: &str) -> String {
    let caps = route
        .path
        .as_ref()
        .and_then(|p| p.regex.as_ref())
        .and_then(|re| re.0.captures(path));
    let mut out = String::with_capacity(target.len() + path.len());
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().and_then(|d| d.to_digit(10))) {
            ('$', Some(n)) => {
                chars.next();
                if let Some(m) = caps.as_ref().and_then(|c| c.get(n as usize)) {
                    out.push_str(m.as_str());
                }
            }
            _ => out.push(c),
        }
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

/// A redirect answer of Portico's own.
fn redirect(code: u16, location: &str) -> Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
    let mut r = plain(status, "redirecting");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn too_large(max: u64) -> Response<Body> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("payload too large: the request body exceeds {max} bytes"),
    )
}

/// CORS response headers for an allowed `origin` (nothing when it is not allowed);
/// `preflight` adds what a preflight answer carries.
fn cors_headers(cors: &Cors, origin: &str, h: &mut http::HeaderMap, preflight: bool) {
    let Some(allow) = cors.origin_allowed(origin).and_then(|o| HeaderValue::from_str(o).ok()) else {
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

/// What the access log and metrics need to know about a handled request.
#[derive(Default)]
struct Outcome {
    route: Option<Arc<Route>>,
    /// The counters of the matched route's Config (indexed by `Route::id`).
    counters: Option<Arc<[RouteCounters]>>,
    upstream: Option<SocketAddr>,
    host: String,
    /// When the upstream's response head arrived (saves reading the clock again).
    answered: Option<Instant>,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().build_hasher().finish() | 1);
}

/// xorshift64*: request ids need to be unique, not secret.
fn next_random() -> u64 {
    RNG.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// The inbound X-Request-ID when it is sane, else a new random one.
fn request_id(given: Option<&HeaderValue>) -> HeaderValue {
    if let Some(v) = given
        && !v.is_empty()
        && v.len() <= 128
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    let random = [next_random().to_be_bytes(), next_random().to_be_bytes()];
    for (pair, byte) in buf.chunks_exact_mut(2).zip(random.iter().flatten()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

impl Proxy {
    /// Handles one request. Never fails: every problem becomes an HTTP answer.
    /// `serving` marks the request in flight until its response body is done.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: Arc<Peer>, serving: Serving) -> Response<Body> {
        let start = Instant::now();
        let fields = Fields::of(req.headers());
        let rid = request_id(fields.request_id.as_ref());
        // The id goes into the upstream request; a copy stays only for the access log.
        let log_rid = self.access_log.then(|| rid.clone());
        let method = req.method().clone();
        let path_for_log = if self.access_log {
            req.uri().path().to_string()
        } else {
            String::new()
        };
        let mut outcome = Outcome::default();
        let mut resp = self.dispatch(req, &fields, &peer, start, rid, &mut outcome).await;
        if peer.tls && self.hsts && !resp.headers().contains_key(header::STRICT_TRANSPORT_SECURITY) {
            resp.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
        }
        let status = resp.status().as_u16();
        let elapsed = outcome
            .answered
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(start);
        self.metrics.request_duration.observe(elapsed.as_secs_f64());
        if self.access_log {
            let (namespace, ingress, service) = match &outcome.route {
                Some(r) => (
                    r.ingress.namespace.as_str(),
                    r.ingress.name.as_str(),
                    r.service.name.as_str(),
                ),
                None => ("", "", ""),
            };
            tracing::info!(
                target: "portico::access",
                request_id = log_rid.as_ref().and_then(|r| r.to_str().ok()).unwrap_or(""),
                client = %peer.addr,
                method = %method,
                host = %outcome.host,
                path = %path_for_log,
                status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                upstream = %outcome.upstream.map(|a| a.to_string()).unwrap_or_default(),
                namespace = %namespace,
                ingress = %ingress,
                service = %service,
            );
        }
        match (
            &outcome.route,
            outcome
                .counters
                .as_ref()
                .and_then(|c| c.get(outcome.route.as_ref()?.id)),
        ) {
            (Some(r), Some(c)) => c.get_or_init(|| self.metrics.route_counters(r))[status_index(status)].inc(),
            _ => self.metrics.unrouted[status_index(status)].inc(),
        };
        if status == 101 {
            // A tunnel now: no request head will come on this connection again.
            peer.activity.tunnelled();
        }
        resp.body_mut().serving(serving);
        resp
    }

    async fn dispatch(
        &self,
        mut req: Request<Incoming>,
        fields: &Fields,
        peer: &Peer,
        start: Instant,
        rid: HeaderValue,
        out: &mut Outcome,
    ) -> Response<Body> {
        if req.method() == Method::CONNECT {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported");
        }
        let host = match request_host(req.uri(), fields) {
            Ok(h) => h,
            Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("bad request: {e}")),
        };
        if self.access_log {
            out.host = host.to_string();
        }
        let (route, normalized) = {
            let norm = match normalize(req.uri().path()) {
                Ok(n) => n,
                Err(e @ (PathError::BadEscape | PathError::EncodedTraversal | PathError::NotAbsolute)) => {
                    return plain(StatusCode::BAD_REQUEST, &format!("bad request: {e}"));
                }
            };
            // One load: the route, its backend and their runtime state come from one Plane.
            let plane = self.live.load();
            let found = plane.config.routes.route(host, &norm).and_then(|r| {
                let table = plane.backends.get(r.backend)?.clone();
                Some((r.clone(), plane.config.backend(r)?.clone(), table, plane.routes.clone()))
            });
            let normalized = match norm {
                Cow::Owned(s) => Some(s),
                Cow::Borrowed(_) => None,
            };
            (found, normalized)
        };
        let Some((route, backend, table, counters)) = route else {
            return plain(StatusCode::NOT_FOUND, "not found: no route for this host and path");
        };
        out.route = Some(route.clone());
        out.counters = Some(counters);
        let policy = &route.policy;

        if let Some(allow) = &policy.allow {
            let client = client_ip(req.headers(), peer.addr, &self.trusted);
            if !allow.iter().any(|c| c.contains(client)) {
                return plain(StatusCode::FORBIDDEN, "forbidden: the client address is not allowed");
            }
        }
        if !peer.tls && route.ssl_redirect {
            let port = match self.settings.https_redirect_port {
                443 => String::new(),
                p => format!(":{p}"),
            };
            let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let location = format!("https://{host}{port}{pq}");
            let mut r = plain(StatusCode::PERMANENT_REDIRECT, "redirecting to https");
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        if let Some(r) = &policy.redirect {
            return redirect(r.code, &r.location);
        }
        if let Some(root) = &policy.app_root
            && req.uri().path() == "/"
        {
            let scheme = if peer.tls { "https" } else { "http" };
            let authority = request_authority(req.uri(), fields);
            let host = authority.as_ref().and_then(|a| a.to_str().ok()).unwrap_or(host);
            return redirect(302, &format!("{scheme}://{host}{root}"));
        }
        let origin = policy
            .cors
            .as_ref()
            .and_then(|c| Some((c, req.headers().get(header::ORIGIN)?.to_str().ok()?.to_string())));
        if let Some((cors, origin)) = &origin
            && req.method() == Method::OPTIONS
            && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            cors_headers(cors, origin, r.headers_mut(), true);
            r.headers_mut().insert(header::SERVER, SERVER);
            return r;
        }
        if let Some(max) = policy.max_body_bytes
            && req.body().size_hint().lower() > max
        {
            return too_large(max);
        }

        // The endpoints to choose from: a Service's pods, or the one address an ExternalName
        // resolves to.
        let external;
        let external_state;
        let (ready, terminating, states): (&[Endpoint], &[Endpoint], &[Arc<EndpointRuntime>]) = match &backend.target {
            Target::Unavailable { reason } => {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("service unavailable: {reason}"),
                );
            }
            Target::Endpoints { ready, terminating } => (ready, terminating, &table.endpoints),
            Target::ExternalName { host, port } => match Box::pin(resolve_external(host, *port)).await {
                Ok(addr) => {
                    external = [Endpoint {
                        addr,
                        target: None,
                        zone: None,
                    }];
                    external_state = [self.live.registry().endpoint(addr, EndpointRuntime::new)];
                    (&external, &[], &external_state)
                }
                Err(e) => return plain(StatusCode::BAD_GATEWAY, &format!("bad gateway: {e}")),
            },
        };
        let now = ns_at(start);
        let choice = Choice {
            route: &route,
            backend: &backend,
            table: &table,
            ready,
            terminating,
            states,
        };
        let sticky = choice.sticky(
            req.headers(),
            || client_ip(req.headers(), peer.addr, &self.trusted),
            &self.affinity_key,
            now,
        );
        // Without ready endpoints only a session pinned to a terminating one is served.
        if sticky.index.is_none() && ready.is_empty() {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "service unavailable: Service {} has no ready endpoints",
                    backend.service
                ),
            );
        }

        // Prepare the upstream request once; each try gets a copy of the head.
        let upgrade = if fields.upgrade {
            upgrade_protocol(req.headers())
        } else {
            None
        };
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let authority = request_authority(req.uri(), fields);
        // An authority from the Host field is in the map already.
        let authority_from_uri = req.uri().authority().is_some();
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        // gRPC's `te: trailers`, the one TE value HTTP/2 allows, survives to HTTP/2 upstreams.
        let te_trailers = fields.te
            && headers
                .get_all(header::TE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers")));
        if fields.hop_by_hop {
            strip_hop_by_hop(&mut headers);
        }
        if let Some(up) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, up.clone());
        }
        let fwd = forwarded(&headers, peer, authority.as_ref(), &self.trusted, rid);
        if let Some(vhost) = policy
            .upstream_vhost
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(header::HOST, vhost);
        } else if authority_from_uri && let Some(a) = authority {
            headers.insert(header::HOST, a);
        }
        let uri = match (&normalized, parts.uri.scheme()) {
            // rewrite-target: the path the Ingress asks for, with the query kept.
            _ if policy.rewrite_target.is_some() => {
                let routed = normalized.as_deref().unwrap_or(parts.uri.path());
                let path = rewrite(&route, policy.rewrite_target.as_deref().unwrap_or("/"), routed);
                match parts.uri.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path,
                }
                .parse::<Uri>()
            }
            // An origin-form target that routing did not change goes upstream as it came.
            (None, None) => Ok(parts.uri),
            (Some(n), _) => upstream_target(&parts.uri, n).parse::<Uri>(),
            (None, Some(_)) => parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .parse::<Uri>(),
        };
        let Ok(uri) = uri else {
            return plain(StatusCode::BAD_REQUEST, "bad request: invalid request target");
        };
        let protocol = policy.backend_protocol.unwrap_or(backend.protocol);
        let (uri, version) = if protocol.http2() {
            if upgrade.is_some() {
                return plain(
                    StatusCode::BAD_GATEWAY,
                    "bad gateway: protocol upgrades cannot go to an HTTP/2 upstream",
                );
            }
            // HTTP/2 names the authority in the request target, not in a Host header.
            let host = headers.remove(header::HOST);
            let authority = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            let scheme = if protocol.tls() { "https" } else { "http" };
            let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let Ok(absolute) = format!("{scheme}://{authority}{pq}").parse::<Uri>() else {
                return plain(StatusCode::BAD_REQUEST, "bad request: invalid request target");
            };
            if te_trailers {
                headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
            (absolute, Version::HTTP_2)
        } else {
            (uri, Version::HTTP_11)
        };
        // A request is sent again after a failure past connecting only when repeating it is
        // harmless and possible: an idempotent method and no body (a streamed body is gone).
        let resendable = is_idempotent(&parts.method) && body.is_end_stream();
        // HTTP/1.1 requests without body and upgrade go on Portico's own client, which
        // writes the forwarding fields itself; hyper's client needs them in the map.
        let raw = body.is_end_stream() && upgrade.is_none() && !protocol.http2();
        if !raw {
            fwd.apply(&mut headers);
        }
        let limit = policy.max_body_bytes.map(|max| BodyLimit {
            max,
            seen: 0,
            exceeded: Arc::default(),
        });
        let exceeded = limit.as_ref().map(|l| l.exceeded.clone());
        let mut body = Some(RequestBody::Stream(Streamed {
            body,
            counter: self.metrics.request_bytes.clone(),
            limit,
            progress: policy.send_timeout.map(|_| SendProgress::new()),
        }));
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let tries = choice.tries();
        // The ready endpoints tried before this attempt; the current one joins them only if
        // another attempt follows, so a first try that succeeds allocates nothing.
        let mut tried: Vec<usize> = Vec::new();
        let mut current = None;
        let mut last_err = None;
        // Every request that is ready in this pass of the event loop gets this far before any
        // of them is written upstream: tokio resumes a yielded task only once the ready tasks
        // have run and the I/O driver has been polled. The upstream writes of one pass then
        // leave together, so the backend wakes once for several requests instead of once for
        // each, and so does the client for the responses; the write order nginx gets only
        // when it is saturated. A lone request costs one more turn of the event loop.
        tokio::task::yield_now().await;
        for attempt in 0..tries {
            tried.extend(current.take());
            let Some(i) = choice.next(&sticky, attempt, &tried, now, &mut next_random) else {
                break;
            };
            if i < ready.len() {
                current = Some(i);
            }
            let (Some(ep), Some(runtime)) = (choice.endpoint(i), choice.state(i)) else {
                break;
            };
            let state = &runtime.state;
            out.upstream = Some(ep.addr);
            let t = Instant::now();
            let mut conn = match self
                .upstream
                .connection(runtime, protocol, policy.connect_timeout, raw, t)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    let wait = state.failed(now_ns());
                    tracing::warn!(endpoint = %ep.addr, error = %e, backoff_ms = wait.as_millis() as u64, "upstream connect failed; endpoint skipped during backoff");
                    last_err = Some(Failure::Connect);
                    continue;
                }
            };
            let in_flight = state.start();
            let mut result = if raw {
                let req = h1::Request {
                    method: &parts.method,
                    target,
                    headers: &headers,
                    extra: &fwd,
                };
                self.upstream.send_raw(&mut conn, &req, policy.read_timeout, t).await
            } else {
                // Boxed: hyper's futures are large, and inline they would make every
                // request's future (the own client's path included) as large.
                Box::pin(async {
                    let mut up = Request::new(body.take().unwrap_or(RequestBody::Empty));
                    *up.method_mut() = parts.method.clone();
                    *up.uri_mut() = uri.clone();
                    *up.version_mut() = version;
                    *up.headers_mut() = if resendable && attempt + 1 < tries {
                        headers.clone()
                    } else {
                        std::mem::take(&mut headers)
                    };
                    self.upstream
                        .send(&mut conn, up, policy.read_timeout, policy.send_timeout)
                        .await
                })
                .await
            };
            // A pooled connection the peer closed just now never got the request: send it
            // on a fresh connection to the same endpoint. That is not the endpoint failing.
            if let Err(SendError::NotSent(req)) = result {
                // Boxed, as the rare path: inline, its futures would double every request's.
                result = Box::pin(async {
                    match self
                        .upstream
                        .connect(ep.addr, protocol, policy.connect_timeout, raw)
                        .await
                    {
                        Ok(fresh) => {
                            conn = fresh;
                            match req {
                                Some(req) => {
                                    self.upstream
                                        .send(&mut conn, *req, policy.read_timeout, policy.send_timeout)
                                        .await
                                }
                                None => {
                                    let req = h1::Request {
                                        method: &parts.method,
                                        target,
                                        headers: &headers,
                                        extra: &fwd,
                                    };
                                    self.upstream
                                        .send_raw(&mut conn, &req, policy.read_timeout, Instant::now())
                                        .await
                                }
                            }
                        }
                        Err(e) => Err(SendError::Failed(e.to_string())),
                    }
                })
                .await;
            }
            drop(in_flight);
            let end = Instant::now();
            let elapsed = end.saturating_duration_since(t);
            self.metrics.upstream_duration.observe(elapsed.as_secs_f64());
            match result {
                Ok(resp) => {
                    state.succeeded();
                    state.observe(elapsed, ns_at(end));
                    out.answered = Some(end);
                    let cookie = choice.remember(&sticky, i, peer.tls, &self.affinity_key);
                    let mut resp = self.respond(resp, conn, runtime.clone(), client_upgrade, policy.read_timeout);
                    if let Some(c) = cookie {
                        resp.headers_mut().append(header::SET_COOKIE, c);
                    }
                    if let Some((cors, origin)) = &origin {
                        cors_headers(cors, origin, resp.headers_mut(), false);
                    }
                    return resp;
                }
                Err(SendError::Timeout(d) | SendError::SendTimeout(d)) => {
                    tracing::warn!(endpoint = %ep.addr, "upstream timed out after {d:?}");
                    last_err = Some(Failure::Timeout);
                    break;
                }
                Err(_) if exceeded.as_ref().is_some_and(|e| e.load(Ordering::Relaxed)) => {
                    return too_large(policy.max_body_bytes.unwrap_or(0));
                }
                Err(e) => {
                    let msg = match e {
                        SendError::Failed(m) => m,
                        _ => "request not sent".to_string(),
                    };
                    tracing::warn!(endpoint = %ep.addr, error = %msg, "upstream failed");
                    last_err = Some(Failure::Exchange);
                    if !resendable {
                        break;
                    }
                }
            }
        }
        match last_err {
            Some(Failure::Timeout) => plain(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway timeout: the upstream did not answer in time",
            ),
            _ => plain(StatusCode::BAD_GATEWAY, "bad gateway: no endpoint could be reached"),
        }
    }

    fn respond(
        &self,
        mut resp: Response<UpBody>,
        conn: Conn,
        ep: Arc<EndpointRuntime>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        read_timeout: Option<Duration>,
    ) -> Response<Body> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client) = client_upgrade else {
                return plain(
                    StatusCode::BAD_GATEWAY,
                    "bad gateway: the upstream switched protocols unasked",
                );
            };
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match tokio::try_join!(client, upstream) {
                    Ok((c, u)) => {
                        let mut c = TokioIo::new(c);
                        let mut u = TokioIo::new(u);
                        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                            tracing::debug!(error = %e, "upgraded connection ended");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
        } else if !matches!(resp.body(), UpBody::Raw { .. }) {
            // The own client's heads come without hop-by-hop fields already.
            strip_hop_by_hop(resp.headers_mut());
        }
        let (mut parts, body) = resp.into_parts();
        if !parts.headers.contains_key(header::SERVER) {
            parts.headers.insert(header::SERVER, SERVER);
        }
        let body = self
            .upstream
            .body(body, conn, ep, self.metrics.response_bytes.clone(), read_timeout);
        Response::from_parts(parts, Body::upstream(body))
    }
}
