//! The request handler: host and path → route → endpoint, headers rewritten, bodies streamed.

use std::borrow::Cow;
use std::cell::Cell;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::client::Serving;
use super::headers::{
    Fields, Peer, client_ip, forwarded, request_authority, request_host, strip_hop_by_hop, upgrade_protocol,
};
use super::live::{Live, Plane, RouteCounters};
use super::policy::filters;
use super::policy::retry::{self, Failure};
use super::policy::{
    self, allow, auth, body, canary, cors, errors, hash, limits, mirror, mtls, otel, prefix, rate, redirect,
    request_headers, response, response_headers, rewrite, weighted, www,
};
use super::upstream::h1::{self, Sending};
use super::upstream::tee::Tee;
use super::upstream::{
    Conn, ConnectError, EndpointRuntime, RequestBody, SendError, SendProgress, Streamed, UpBody, Upstream,
    resolve_external,
};
use super::{Body, SERVER, Settings, access_log, compress, plain, vars};
use crate::balance::choice::{Choice, Sticky};
use crate::balance::table::BackendState;
use crate::balance::{now_ns, ns_at};
use crate::config::route::RouteRequest;
use crate::config::{Backend, Endpoint, Route, Target};
use crate::metrics::{Metrics, status_index};
use crate::path::{PathError, normalize};

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    pub live: Arc<Live>,
    pub upstream: Upstream,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub access_log: bool,
    /// Signs persistent-affinity cookie values (`--affinity-key`).
    pub affinity_key: aws_lc_rs::hmac::Key,
    /// The auth step's runtime state (verified passwords).
    pub auth: auth::State,
    /// `mirror-target`'s runtime state (copies in flight).
    pub mirror: mirror::State,
    /// `--access-log-format nginx`: where ingress-nginx-format lines go (`None`: the JSON
    /// tracing line).
    pub access_sink: Option<access_log::Sink>,
    /// Where traced requests' spans go (`enable-opentelemetry`).
    pub otel: super::otel::Exporter,
}

/// Why a request has no route: its path cannot be normalized, or (Gateway HTTPS listeners)
/// its host is another listener's than its TLS server name's.
pub enum Unrouted {
    Path(PathError),
    Misdirected,
}

/// A request's route and the Plane it came from, kept for the request's whole life: the
/// backend and runtime state it names are that Plane's.
struct Routed {
    plane: Arc<Plane>,
    route: Arc<Route>,
    /// The path as routed, when normalizing changed it.
    normalized: Option<String>,
    /// The primary's route when its canary took the request (the access log names both).
    primary: Option<Arc<Route>>,
    /// The internal redirect to a path `auth-tls-error-page`: the client's body is not sent.
    internal: bool,
}

impl Routed {
    // `Proxy::route` made sure the indexes are in range.
    fn backend(&self) -> &Backend {
        &self.plane.config.backends[self.route.backend]
    }

    fn table(&self) -> &BackendState<EndpointRuntime> {
        &self.plane.backends[self.route.backend]
    }

    fn counters(&self) -> Option<&RouteCounters> {
        self.plane.routes.get(self.route.id)
    }

    /// The [`weighted`] step: a route with weighted backends goes on with the one picked;
    /// `Err` (answered 500) when the pick is an invalid backend or every weight is 0.
    #[inline(always)]
    fn weighted(mut self) -> Result<Self, Self> {
        let Some(pick) = weighted::check(&self.route, weighted::next) else {
            return Ok(self);
        };
        match weighted::chosen(&pick) {
            Some(r) if self.plane.config.backend(r).is_some() && self.plane.backends.get(r.backend).is_some() => {
                self.route = r.clone();
                Ok(self)
            }
            _ => Err(self),
        }
    }

    /// The [`canary`] step: the request goes on with the canary's route when it decides so.
    #[inline(always)]
    fn canary(mut self, headers: &http::HeaderMap) -> Self {
        if let Some(c) = canary::check(&self.route, headers, next_random)
            && self.plane.config.backend(c).is_some()
            && self.plane.backends.get(c.backend).is_some()
        {
            let c = c.clone();
            self.primary = Some(std::mem::replace(&mut self.route, c));
        }
        self
    }
}

/// What the access log and metrics need to know about a handled request.
#[derive(Default)]
struct Outcome {
    routed: Option<Routed>,
    host: String,
    exchanged: Exchanged,
    /// A traced request's span, when sampled.
    span: Option<Box<otel::Span>>,
}

/// What the exchange tells the access log and metrics.
#[derive(Default)]
struct Exchanged {
    /// The endpoint last tried.
    addr: Option<SocketAddr>,
    /// When the upstream's response head arrived (saves reading the clock again).
    answered: Option<Instant>,
    /// The request's `limit-connections` mark: moved into the response body, or into the
    /// tunnel of an upgraded connection, which it then lasts as long as.
    held: Option<limits::Held>,
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

/// Eight lowercase hex digits of `x`, its nibbles in an order of their own (request ids are
/// random, so any fixed order will do), computed eight at a time in one word.
fn hex8(x: u32) -> [u8; 8] {
    let mut v = u64::from(x);
    v = (v | v << 16) & 0x0000_ffff_0000_ffff;
    v = (v | v << 8) & 0x00ff_00ff_00ff_00ff;
    v = (v | v << 4) & 0x0f0f_0f0f_0f0f_0f0f;
    // Each byte is a nibble n: '0' + n, plus 'a' - '0' - 10 where n > 9.
    let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (v + 0x3030_3030_3030_3030 + letters * 0x27).to_le_bytes()
}

/// The inbound X-Request-ID when it is sane, else a new random one.
pub(crate) fn request_id(given: Option<&HeaderValue>) -> HeaderValue {
    if let Some(v) = given
        && !v.is_empty()
        && v.len() <= 128
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    let mut buf = [0u8; 32];
    for (out, half) in buf.chunks_exact_mut(8).zip(
        [next_random(), next_random()]
            .iter()
            .flat_map(|r| [*r as u32, (*r >> 32) as u32]),
    ) {
        out.copy_from_slice(&hex8(half));
    }
    // SAFETY: every byte is an ASCII hex digit, which a field value may hold. (Checking
    // them again cost more than making them; debug builds still check.)
    unsafe { HeaderValue::from_maybe_shared_unchecked(bytes::Bytes::copy_from_slice(&buf)) }
}

/// The answer should a step find the request already taken from its slot (see
/// `Proxy::serve`): no step takes it before `forward`, which is the last.
#[cold]
fn taken() -> Response<Body> {
    tracing::error!("request handled twice");
    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
}

impl Proxy {
    /// Handles one request. Never fails: every problem becomes an HTTP answer (the `Result`
    /// is hyper's service signature, so the connection polls this future and no wrapper).
    /// `serving` marks the request in flight until its response body is done; `last`: the
    /// connection's `keep-alive-requests` are spent, so the response says `Connection: close`.
    ///
    /// The request's whole future (routing, policy, the upstream exchange) comes in one box,
    /// allocated before the future is made so that it can be made in the box: hyper moves the
    /// future it gets (from the service into its connection, twice), and a pointer is what
    /// moves; and no step needs a box of its own for its state to stay out of those moves.
    pub fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: Arc<Peer>,
        serving: Serving,
        last: bool,
    ) -> Pin<Box<impl Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send + use<>>> {
        Box::into_pin(Box::write(Box::new_uninit(), self.serve(req, peer, serving, last)))
    }

    async fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: Arc<Peer>,
        serving: Serving,
        last: bool,
    ) -> Result<Response<Body>, std::convert::Infallible> {
        let start = Instant::now();
        let (begun, names) = super::case::request(&peer, &req);
        let mut fields = Fields::of(req.headers());
        fields.names = names;
        let rid = request_id(fields.request_id.as_ref());
        // The id goes into the upstream request; a copy stays only for the access log.
        let json_log = self.access_log && self.access_sink.is_none();
        let log_rid = json_log.then(|| rid.clone());
        let method = req.method().clone();
        let path_for_log = if json_log {
            req.uri().path().to_string()
        } else {
            String::new()
        };
        let line = access_log::begin(self.access_sink.as_ref(), &self.live, &req, &peer, &rid, start);
        let mut outcome = Outcome::default();
        // The request stays here; the steps borrow it and `forward` takes it out at the end.
        // Passed down by value it would be copied (264 bytes, past what `memcpy` moves in
        // eight vector moves) into each function's future and again into its locals.
        let mut req = Some(req);
        let mut resp = self
            .dispatch(&mut req, &fields, &peer, start, rid, &mut outcome, false)
            .await;
        if peer.tls && !resp.headers().contains_key(header::STRICT_TRANSPORT_SECURITY) {
            self.hsts(outcome.routed.as_ref(), &mut resp);
        }
        let status = resp.status().as_u16();
        let elapsed = outcome
            .exchanged
            .answered
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(start);
        self.metrics.request_duration.observe(elapsed.as_secs_f64());
        // `enable-access-log: "false"` on the route's Ingress leaves its requests out.
        let logged = self.access_log && outcome.routed.as_ref().is_none_or(|r| r.route.policy.access_log);
        if let Some(line) = line.filter(|_| logged) {
            let a = access_log::Answer {
                host: std::mem::take(&mut outcome.host),
                routed: outcome.routed.as_ref().map(|r| (&r.route, r.backend())),
                primary: outcome.routed.as_ref().and_then(|r| {
                    let p = r.primary.as_ref()?;
                    Some((p, &**r.plane.config.backend(p)?))
                }),
                upstream: outcome.exchanged.addr,
                answered: outcome.exchanged.answered,
            };
            let line = line.answered(a, &resp);
            resp.body_mut().log(line);
        } else if logged {
            let (namespace, ingress, service) = match outcome.routed.as_ref().map(|r| &r.route) {
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
                upstream = %outcome.exchanged.addr.map(|a| a.to_string()).unwrap_or_default(),
                namespace = %namespace,
                ingress = %ingress,
                service = %service,
            );
        }
        match outcome.routed.as_ref().and_then(|r| Some((&r.route, r.counters()?))) {
            Some((r, c)) => c.get_or_init(|| self.metrics.route_counters(r))[status_index(status)].inc(),
            None => self.metrics.unrouted[status_index(status)].inc(),
        };
        if let (Some(span), Some(r)) = (outcome.span.take(), outcome.routed.as_ref()) {
            let (settings, port) = (&r.plane.config.global.otel, &r.backend().port);
            let (addr, answered) = (outcome.exchanged.addr, outcome.exchanged.answered);
            otel::finish(
                &self.otel, span, settings, &r.route, port, &peer, status, addr, answered,
            );
        }
        if status == 101 {
            // A tunnel now: no request head will come on this connection again.
            peer.activity.tunnelled();
        }
        resp.body_mut().serving(serving);
        if let Some(held) = outcome.exchanged.held {
            resp.body_mut().hold(held);
        }
        super::case::response(&peer, begun, &mut resp);
        if last {
            super::keepalive::close(&mut resp);
        }
        Ok(resp)
    }

    /// Strict-Transport-Security as the request's Config (or, unrouted, the current one) says.
    fn hsts(&self, routed: Option<&Routed>, resp: &mut Response<Body>) {
        let value = match routed {
            Some(r) => r.plane.config.global.hsts.as_ref().map(|h| h.value.clone()),
            None => self.live.load().config.global.hsts.as_ref().map(|h| h.value.clone()),
        };
        if let Some(v) = value {
            resp.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, v);
        }
    }

    /// The pipeline: route, then the policy steps in their fixed order (see [`super::policy`]),
    /// then endpoint choice and the upstream exchange. `internal`: the request is nginx's
    /// internal redirect to an `auth-tls-error-page` path.
    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        slot: &mut Option<Request<Incoming>>,
        fields: &Fields,
        peer: &Peer,
        start: Instant,
        rid: HeaderValue,
        out: &mut Outcome,
        internal: bool,
    ) -> Response<Body> {
        let Some(req) = slot.as_mut() else {
            return taken();
        };
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
        let routed = match self.route(host, req, peer, internal) {
            Ok(Some(r)) => match r.weighted() {
                Ok(r) => r.canary(req.headers()),
                Err(r) => {
                    out.routed = Some(r);
                    return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error: no backend");
                }
            },
            Ok(None) => return plain(StatusCode::NOT_FOUND, "not found: no route for this host and path"),
            Err(Unrouted::Misdirected) => return super::gateway_sockets::misdirected(),
            Err(Unrouted::Path(e)) => return plain(StatusCode::BAD_REQUEST, &format!("bad request: {e}")),
        };
        // Kept in the outcome (metrics and the access log read it), borrowed from there.
        let routed = &*out.routed.insert(routed);
        let route = &*routed.route;
        let policy = &route.policy;
        // Whose X-Forwarded-* are believed: the Config's (`--trusted-proxies`, `--configmap`).
        let trusted = &routed.plane.config.global.trusted;
        // Traced from here, Portico's own answers below too.
        let propagation = otel::start(policy, &routed.plane.config.global.otel, req, start, next_random).map(
            |(propagation, span)| {
                out.span = span;
                propagation
            },
        );

        if let Some(r) = www::check(policy, req.uri(), peer) {
            return r;
        }
        let verified = match mtls::check(route, peer, internal) {
            Ok(v) => v,
            Err(r) => match r.page() {
                Some(page) if mtls::to_page(req, page) => {
                    // Boxed, as the rare path; it never comes back here (`internal`).
                    return Box::pin(self.dispatch(slot, fields, peer, start, rid, out, true)).await;
                }
                _ => return r.response(),
            },
        };
        if let Some(r) = allow::check(policy, req.headers(), peer, trusted) {
            return r;
        }
        let here = redirect::Request {
            uri: req.uri(),
            fields,
            host,
            tls: peer.tls,
            https_port: self.settings.https_redirect_port,
        };
        if let Some(r) = redirect::check(route, &here) {
            return r;
        }
        let gw = match filters::request(policy, req, fields, peer.tls, routed.normalized.as_deref()) {
            Ok(applied) => applied,
            Err(r) => return *r,
        };
        if let Some(p) = propagation {
            p.apply(req.headers_mut());
        }
        let origin = cors::origin(policy, req);
        if let Some(r) = origin.as_ref().and_then(|o| cors::preflight(o, req)) {
            return r;
        }
        match limits::check(&routed.plane.limits, route, req.headers(), peer, trusted) {
            Ok(held) => out.exchanged.held = held,
            Err(over) => return over.response(),
        }
        verified.apply(req.headers_mut());
        let passed = match auth::check(&self.auth, route, req, fields, peer, &rid, trusted) {
            None => auth::Passed::default(),
            Some(authenticating) => match authenticating.await {
                Ok(p) => p,
                Err(mut r) => {
                    cors::respond(origin.as_ref(), &mut r);
                    return r;
                }
            },
        };
        if !internal && let Some(r) = body::check(policy, req.body()) {
            return r;
        }
        // An error page's answer is not replaced again (nginx's recursive_error_pages off).
        let asked = errors::asked(policy, req, &rid).filter(|_| !internal);
        let tee = mirror::start(&self.mirror, route, req, fields, peer, trusted)
            .or_else(|| filters::mirror(gw.as_ref(), &self.mirror, &routed.plane.config, req, next_random));
        let compression = routed.plane.config.compression.as_ref();
        let encodings = compress::asked(compression, req);
        let kept = response::keep(policy, req, trusted, &rid);
        let mut resp = self
            .forward(
                slot,
                fields,
                peer,
                start,
                rid,
                routed,
                tee,
                kept.as_deref(),
                &mut out.exchanged,
            )
            .await;
        if let Some(asked) = asked
            && asked.intercepts(resp.status())
        {
            let via = errors::Via {
                upstream: &self.upstream,
                plane: &routed.plane,
                route,
                peer,
                trusted,
                counter: self.metrics.response_bytes.clone(),
            };
            // Boxed, as the rare path: inline, its future would enlarge every request's.
            resp = Box::pin(errors::page(asked, resp, via)).await;
        }
        compress::respond(compression, encodings, &mut resp);
        rate::pace(policy, &mut resp);
        cors::respond(origin.as_ref(), &mut resp);
        passed.respond(&mut resp);
        response_headers::add(&routed.plane.config.global, route, kept.as_deref(), peer, &mut resp);
        filters::respond(gw.as_ref(), &mut resp);
        resp
    }

    /// The route for a request, with its backend and their runtime state, all from one load
    /// of the live Plane. `Err` when the path cannot be normalized, or (Gateway HTTPS
    /// listeners) the host is another listener's than the SNI's. With Gateway listeners in
    /// the Config the choice depends on the socket (out of line, see `gateway_sockets`).
    fn route(
        &self,
        host: &str,
        req: &Request<Incoming>,
        peer: &Peer,
        internal: bool,
    ) -> Result<Option<Routed>, Unrouted> {
        let norm = normalize(req.uri().path()).map_err(Unrouted::Path)?;
        let plane = self.live.load();
        let found = match &plane.config.gateway_listeners {
            None => plane.config.routes.route_request(host, &norm, &RouteRequest::of(req)),
            Some(points) => super::gateway_sockets::route(points, &plane.config.routes, peer, host, &norm, req)?,
        };
        let Some(route) = found else {
            return Ok(None);
        };
        if plane.config.backend(route).is_none() || plane.backends.get(route.backend).is_none() {
            return Ok(None);
        }
        Ok(Some(Routed {
            plane: Arc::clone(&plane),
            route: route.clone(),
            normalized: match norm {
                Cow::Owned(s) => Some(s),
                Cow::Borrowed(_) => None,
            },
            primary: None,
            internal,
        }))
    }

    /// Portico's own 5xx answer: generic text for the client, the detail in the log with the
    /// request id (the route is in the access log and `/routes`).
    fn fail(&self, status: StatusCode, detail: &dyn std::fmt::Display, routed: &Routed, rid: &str) -> Response<Body> {
        tracing::warn!(
            request_id = rid,
            ingress = %routed.route.ingress,
            service = %routed.route.service,
            status = status.as_u16(),
            "{detail}"
        );
        let text = match status {
            StatusCode::SERVICE_UNAVAILABLE => "service unavailable",
            StatusCode::GATEWAY_TIMEOUT => "gateway timeout: the upstream did not answer in time",
            _ => "bad gateway",
        };
        plain(status, text)
    }

    /// Endpoint choice (affinity first) and the upstream exchange, with retries on other
    /// endpoints where that is safe.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        slot: &mut Option<Request<Incoming>>,
        fields: &Fields,
        peer: &Peer,
        start: Instant,
        rid: HeaderValue,
        routed: &Routed,
        tee: Option<Tee>,
        rewrites: Option<&vars::Held>,
        out: &mut Exchanged,
    ) -> Response<Body> {
        let route = &*routed.route;
        let policy = &route.policy;
        let (backend, table) = errors::backend(policy, &routed.plane, routed.backend(), routed.table());
        let trusted = &routed.plane.config.global.trusted;
        // The endpoints to choose from: a Service's pods, or the one address an ExternalName
        // resolves to.
        let external;
        let external_state;
        let (ready, terminating, states): (&[Endpoint], &[Endpoint], &[Arc<EndpointRuntime>]) = match &backend.target {
            Target::Unavailable { reason } => {
                return self.fail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    reason,
                    routed,
                    rid.to_str().unwrap_or(""),
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
                Err(e) => return self.fail(StatusCode::BAD_GATEWAY, &e, routed, rid.to_str().unwrap_or("")),
            },
        };
        let Some(req) = slot.as_mut() else {
            return taken();
        };
        let now = ns_at(start);
        let choice = Choice {
            route,
            backend,
            table,
            ready,
            terminating,
            states,
        };
        let inputs = hash::Inputs {
            fields,
            peer,
            trusted,
            normalized: routed.normalized.as_deref(),
            route: Some(route),
        };
        let sticky = match hash::key(policy, req, &inputs) {
            Some((key, subset)) => choice.hashed(&key, subset, now, next_random()),
            None => choice.sticky(
                req.headers(),
                || client_ip(req.headers(), peer.addr, trusted),
                &self.affinity_key,
                now,
            ),
        };
        // Without ready endpoints only a session pinned to a terminating one is served.
        if sticky.index.is_none() && ready.is_empty() {
            let detail = format_args!("Service {} has no ready endpoints", backend.service);
            return self.fail(
                StatusCode::SERVICE_UNAVAILABLE,
                &detail,
                routed,
                rid.to_str().unwrap_or(""),
            );
        }

        // Prepare the upstream request once; each try gets a copy of the head.
        let upgrade = if fields.upgrade {
            upgrade_protocol(req.headers())
        } else {
            None
        };
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut *req));
        let authority = request_authority(req.uri(), fields);
        // An authority from the Host field is in the map already.
        let authority_from_uri = req.uri().authority().is_some();
        let Some((parts, mut body)) = slot.take().map(Request::into_parts) else {
            return taken();
        };
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
        // The id goes upstream in `fwd`; log lines read it from there.
        let mut fwd = forwarded(&headers, peer, authority.as_ref(), trusted, rid);
        if !routed.plane.config.global.compute_full_forwarded_for {
            fwd.client_only();
        }
        {
            let head = vars::Head {
                rid: fwd.request_id_value(),
                route: Some(route),
                service_port: Some(&backend.port),
                normalized: routed.normalized.as_deref(),
                ..vars::Head::new(&parts.method, &parts.uri, parts.version, fields, peer, trusted)
            };
            prefix::apply(policy, &head, &mut headers);
            request_headers::set(&routed.plane.config.global, &head, &mut headers);
        }
        if let Some(vhost) = policy
            .upstream_vhost
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(header::HOST, vhost);
        } else if authority_from_uri && let Some(a) = &authority {
            headers.insert(header::HOST, a.clone());
        }
        let uri = match rewrite::target(route, &parts.uri, routed.normalized.as_deref()) {
            None => parts.uri,
            Some(Ok(changed)) => changed,
            Some(Err(_)) => return plain(StatusCode::BAD_REQUEST, "bad request: invalid request target"),
        };
        let uri = filters::rewrite(policy, uri, &mut headers);
        let protocol = policy.backend_protocol.unwrap_or(backend.protocol);
        let tls = match routed.plane.upstream_tls.for_route(route, protocol) {
            Ok(tls) => tls,
            Err(why) => return self.fail(StatusCode::SERVICE_UNAVAILABLE, &why, routed, fwd.request_id()),
        };
        let (uri, version) = if protocol.http2() {
            if upgrade.is_some() {
                let detail = "a protocol upgrade cannot go to an HTTP/2 upstream";
                return self.fail(StatusCode::BAD_GATEWAY, &detail, routed, fwd.request_id());
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
        // A request is sent again after it reached an endpoint only when `proxy-next-upstream`
        // allows it for its method and it has no body (a streamed body is gone).
        let no_body = body.is_end_stream() || routed.internal;
        let resendable = retry::resendable(policy, &parts.method, !no_body);
        // HTTP/1.1 upstreams get Portico's own client, which writes the forwarding fields
        // itself; hyper's HTTP/2 client needs them in the map. A body goes as the client
        // framed it: its declared length, else chunked.
        let h2 = protocol.http2();
        let mut sending = if no_body {
            Sending::None
        } else if let Some(n) = body.size_hint().exact()
            && headers.contains_key(header::CONTENT_LENGTH)
        {
            Sending::Length(n)
        } else {
            headers.remove(header::CONTENT_LENGTH);
            Sending::Chunked
        };
        let counter = &self.metrics.request_bytes;
        let whole = match policy::http10::whole(policy, h2, &mut sending, &mut headers, &mut body, counter) {
            None => None,
            // Boxed, as the rare path.
            Some(reading) => match Box::pin(reading).await {
                Ok(data) => Some(data),
                Err(r) => return r,
            },
        };
        if h2 {
            fwd.apply(&mut headers);
        }
        // A declared length passed `body::check` already; only a body without one is counted.
        let (limit, exceeded) = match sending {
            Sending::Chunked => policy::body::limit(policy).unzip(),
            _ => (None, None),
        };
        // A request without body has none to stream (HTTP/2 sends it empty).
        let mut body = match whole {
            Some(data) => Some(RequestBody::whole(data, tee)),
            // An `if`, not `bool::then`: its closure stayed a call of its own.
            None if sending != Sending::None => Some(RequestBody::Stream(Streamed {
                body,
                counter: self.metrics.request_bytes.clone(),
                limit,
                // HTTP/1.1 watches the upload itself.
                progress: policy.send_timeout.filter(|_| h2).map(|_| SendProgress::new()),
                tee,
            })),
            None => {
                // Let go at once, as before: a mirror's copy ends with its tee.
                drop((body, tee));
                None
            }
        };
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let tries = choice.tries();
        // The ready endpoints tried before this attempt; the current one joins them only if
        // another attempt follows, so a first try that succeeds allocates nothing.
        let mut tried: Vec<usize> = Vec::new();
        let mut current = None;
        let mut last_err = None;
        // An answer whose status the route retries on, kept until another endpoint is found
        // to try (else it is the answer). Boxed: it lives across the next try's awaits, and
        // inline it would make every request's future larger.
        let mut held = None;
        // Every request that is ready in this pass of the event loop gets this far before any
        // of them is written upstream: tokio resumes a yielded task only once the ready tasks
        // have run and the I/O driver has been polled. The upstream writes of one pass then
        // leave together, so the backend wakes once for several requests instead of once for
        // each, and so does the client for the responses; the write order nginx gets only
        // when it is saturated. A lone request costs one more turn of the event loop.
        tokio::task::yield_now().await;
        // When the first try began (read from its clock; `proxy-next-upstream-timeout`).
        let mut first = None;
        let again = &policy.next_upstream;
        for attempt in 0..tries {
            tried.extend(current.take());
            if attempt > 0 {
                // A Gateway `retry` tries the backend again, its endpoints over again once
                // each was tried, after its backoff.
                if again.revisit && tried.len() >= ready.len() {
                    tried.clear();
                }
                if !again.backoff.is_zero() {
                    Box::pin(tokio::time::sleep(again.backoff)).await;
                }
            }
            let Some(i) = choice.next(&sticky, attempt, &tried, now, &mut next_random) else {
                break;
            };
            held = None;
            if i < ready.len() {
                current = Some(i);
            }
            let (Some(ep), Some(runtime)) = (choice.endpoint(i), choice.state(i)) else {
                break;
            };
            let state = &runtime.state;
            out.addr = Some(ep.addr);
            let t = Instant::now();
            let began = *first.get_or_insert(t);
            // A pooled connection without a future (most requests), else a new one.
            let global = &routed.plane.config.global;
            let connected = match self.upstream.pooled(runtime, protocol, tls, global, t) {
                Some(c) => Ok(c),
                None => {
                    self.upstream
                        .fresh(runtime, protocol, tls, policy.connect_timeout, global)
                        .await
                }
            };
            let mut conn = match connected {
                Ok(c) => c,
                Err(e) => {
                    let wait = state.failed(now_ns());
                    tracing::warn!(request_id = fwd.request_id(), endpoint = %ep.addr, error = %e, backoff_ms = wait.as_millis() as u64, "upstream connect failed; endpoint skipped during backoff");
                    let why = match e {
                        ConnectError::Timeout(..) => Failure::ConnectTimeout,
                        _ => Failure::Connect,
                    };
                    last_err = Some(why);
                    if retry::again(policy, why, resendable, began.elapsed()) {
                        continue;
                    }
                    break;
                }
            };
            let in_flight = state.start();
            let read_timeout = retry::wait(policy, || began.elapsed());
            let mut result = if !h2 {
                let req = h1::Request {
                    method: &parts.method,
                    target,
                    headers: &headers,
                    extra: &fwd,
                    body: sending,
                    names: fields.names.as_ref(),
                    http10: policy.http10,
                };
                self.upstream
                    .send_h1(&mut conn, &req, body.as_mut(), read_timeout, policy.send_timeout, t)
                    .await
            } else {
                // Boxed: hyper's futures are large, and inline they would make every
                // request's future (the HTTP/1.1 path's included) as large.
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
                        .send_h2(&mut conn, up, read_timeout, policy.send_timeout)
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
                        .connect(ep.addr, protocol, tls, policy.connect_timeout)
                        .await
                    {
                        Ok(fresh) => {
                            conn = fresh;
                            match req {
                                Some(req) => {
                                    self.upstream
                                        .send_h2(&mut conn, *req, read_timeout, policy.send_timeout)
                                        .await
                                }
                                None => {
                                    let req = h1::Request {
                                        method: &parts.method,
                                        target,
                                        headers: &headers,
                                        extra: &fwd,
                                        body: sending,
                                        names: fields.names.as_ref(),
                                        http10: policy.http10,
                                    };
                                    self.upstream
                                        .send_h1(
                                            &mut conn,
                                            &req,
                                            body.as_mut(),
                                            read_timeout,
                                            policy.send_timeout,
                                            Instant::now(),
                                        )
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
                    if retry::on_status(policy, resp.status())
                        && attempt + 1 < tries
                        && retry::again(policy, Failure::Status, resendable, began.elapsed())
                    {
                        tracing::warn!(request_id = fwd.request_id(), endpoint = %ep.addr, status = resp.status().as_u16(), "upstream answered a status the route retries on");
                        held = Some(Box::new((resp, conn, i, runtime)));
                        continue;
                    }
                    return self.answer(
                        resp,
                        conn,
                        &choice,
                        &sticky,
                        i,
                        runtime,
                        peer,
                        client_upgrade,
                        &mut out.held,
                        rewrites,
                    );
                }
                Err(SendError::Timeout(d) | SendError::SendTimeout(d)) => {
                    tracing::warn!(request_id = fwd.request_id(), endpoint = %ep.addr, "upstream timed out after {d:?}");
                    last_err = Some(Failure::Timeout);
                    if !retry::again(policy, Failure::Timeout, resendable, began.elapsed()) {
                        break;
                    }
                }
                Err(_) if exceeded.as_ref().is_some_and(|e| e.load(Ordering::Relaxed)) => {
                    return policy::body::too_large(policy.max_body_bytes.unwrap_or(0));
                }
                Err(e) => {
                    let (why, msg) = match e {
                        SendError::Invalid(m) => (Failure::InvalidHead, m),
                        SendError::Failed(m) => (Failure::Exchange, m),
                        _ => (Failure::Exchange, "request not sent".to_string()),
                    };
                    tracing::warn!(request_id = fwd.request_id(), endpoint = %ep.addr, error = %msg, "upstream failed");
                    last_err = Some(why);
                    if !retry::again(policy, why, resendable, began.elapsed()) {
                        break;
                    }
                }
            }
        }
        // No endpoint left to try after an answer the route retries on: that answer goes.
        if let Some(h) = held {
            let (resp, conn, i, runtime) = *h;
            return self.answer(
                resp,
                conn,
                &choice,
                &sticky,
                i,
                runtime,
                peer,
                client_upgrade,
                &mut out.held,
                rewrites,
            );
        }
        match last_err.map(Failure::status) {
            Some(StatusCode::GATEWAY_TIMEOUT) => plain(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway timeout: the upstream did not answer in time",
            ),
            _ => plain(StatusCode::BAD_GATEWAY, "bad gateway"),
        }
    }

    /// The client's answer from endpoint `i`'s response, with what affinity must remember.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        resp: Response<UpBody>,
        conn: Conn,
        choice: &Choice<'_, EndpointRuntime>,
        sticky: &Sticky,
        i: usize,
        runtime: &Arc<EndpointRuntime>,
        peer: &Peer,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        limit_place: &mut Option<limits::Held>,
        rewrites: Option<&vars::Held>,
    ) -> Response<Body> {
        let policy = &choice.route.policy;
        let cookie = choice.remember(sticky, i, peer.tls, &self.affinity_key);
        // A tunnel keeps the client's `limit-connections` place until it closes.
        let held = if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            limit_place.take()
        } else {
            None
        };
        let mut resp = self.respond(resp, conn, runtime.clone(), client_upgrade, policy.read_timeout, held);
        response::rewrite(choice.route, rewrites, peer, resp.headers_mut());
        if let Some(c) = cookie {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        resp
    }

    fn respond(
        &self,
        mut resp: Response<UpBody>,
        conn: Conn,
        ep: Arc<EndpointRuntime>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        read_timeout: Option<Duration>,
        held: Option<limits::Held>,
    ) -> Response<Body> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let (Some(client), Some((upstream, early))) = (client_upgrade, conn.into_tunnel()) else {
                tracing::warn!("the upstream switched protocols unasked");
                return plain(StatusCode::BAD_GATEWAY, "bad gateway");
            };
            tokio::spawn(async move {
                // A `limit-connections` place lasts as long as the tunnel.
                let _held = held;
                let mut client = match client.await {
                    Ok(c) => TokioIo::new(c),
                    Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
                };
                let mut upstream = upstream;
                // What the upstream sent right after its 101 goes first.
                if !early.is_empty()
                    && let Err(e) = client.write_all(&early).await
                {
                    return tracing::debug!(error = %e, "upgraded connection ended");
                }
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %e, "upgraded connection ended");
                }
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, Body::empty());
        }
        let server = match resp.body() {
            // The own client's heads come without hop-by-hop fields already, and say whether
            // they have a Server field.
            UpBody::Raw { server, .. } => *server,
            UpBody::Hyper(_) => {
                strip_hop_by_hop(resp.headers_mut());
                resp.headers().contains_key(header::SERVER)
            }
        };
        let (mut parts, body) = resp.into_parts();
        if !server {
            parts.headers.insert(header::SERVER, SERVER);
        }
        let body = self
            .upstream
            .body(body, conn, ep, self.metrics.response_bytes.clone(), read_timeout);
        Response::from_parts(parts, Body::upstream(body))
    }
}

#[cfg(test)]
mod gateway_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_when_sane_else_new() {
        let given = HeaderValue::from_static("abc-123");
        assert_eq!(request_id(Some(&given)), given);
        let made = request_id(Some(&HeaderValue::from_static("has space")));
        assert_eq!(made.len(), 32);
        assert!(
            made.as_bytes()
                .iter()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(request_id(None), request_id(None));
    }

    #[test]
    fn hex8_writes_every_nibble_once_in_lowercase() {
        for x in [0u32, 1, 0xdead_beef, 0x0123_4567, u32::MAX, 0x89ab_cdef] {
            let mut got = hex8(x).to_vec();
            let mut want = format!("{x:08x}").into_bytes();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{x:#x}");
        }
        assert_eq!(&hex8(0x0123_4567), b"76543210");
    }
}
