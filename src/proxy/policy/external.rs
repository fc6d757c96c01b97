//! `auth-url`: the request's head is first sent to the auth service (as a GET, unless
//! `auth-method`), never its body; 2xx lets it through with the listed answer fields copied,
//! 401/403 go to the client (401 becomes the `auth-signin` redirect), anything else is 500.
//! Part of the [`super::auth`] step.
//! Owns the runtime cache of auth answers (`auth-cache-key`) and, through [`pool`], the
//! connections kept to auth services (`auth-keepalive`).

mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::auth::{AuthKeepalive, ExternalAuth};
use crate::config::route::HostPattern;
use crate::config::vars::Template;
use crate::config::{Route, Trusted};
use crate::proxy::headers::{Fields, Peer, client_ip, request_authority};
use crate::proxy::upstream::forbidden_target;
use crate::proxy::vars::{self, Ctx};
use crate::proxy::{Body, plain};

/// Connecting to the auth service.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole auth exchange, connect included, up to the answer's head.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// The most auth answers remembered; past it the cache starts over.
const CACHE_MAX: usize = 4096;
/// The answer's head, at most (hyper's HTTP/1 read buffer).
const MAX_HEAD: usize = 64 * 1024;
/// The most of an answer's body read (and dropped) to keep its connection for the next
/// auth request; a longer body closes the connection instead.
const MAX_DRAINED: usize = 64 * 1024;

/// Runtime state: the TLS client for `https://` auth URLs, the cache of answers and the
/// kept connections.
pub struct State {
    tls: tokio_rustls::TlsConnector,
    cache: Mutex<HashMap<[u8; 32], Answer>>,
    pools: pool::Pools,
    /// `--allow-loopback-auth-url`: an auth service on the controller's own host (a sidecar).
    pub allow_loopback: bool,
}

impl State {
    pub fn new(allow_loopback: bool) -> Self {
        Self {
            tls: crate::proxy::upstream::tls_connector(b"http/1.1"),
            cache: Mutex::new(HashMap::new()),
            pools: pool::Pools::default(),
            allow_loopback,
        }
    }
}

/// What the auth service answered, as far as the decision needs it.
#[derive(Clone)]
struct Answer {
    status: u16,
    /// `auth-response-headers` present in the answer (first value each).
    copy: Vec<(HeaderName, HeaderValue)>,
    cookies: Vec<HeaderValue>,
    www_authenticate: Option<HeaderValue>,
    until: Instant,
}

/// Set-Cookie values for the client response, and whether they go on any status.
pub struct Cookies {
    pub values: Vec<HeaderValue>,
    pub always: bool,
}

/// What the auth request is built from: the request's variables and its plain values.
struct Vars<'a> {
    ctx: Ctx<'a>,
    /// Where the auth request goes: the annotation's host, or the request's (`$host`).
    host: String,
    http_host: String,
    scheme: &'static str,
    request_uri: &'a str,
    client: std::net::IpAddr,
}

impl Vars<'_> {
    fn expand(&self, t: &Template, out: &mut Vec<u8>) {
        vars::expand(t, &self.ctx, None, out);
    }
}

/// Fields of the client request never sent to the auth service: the body's framing and
/// hop-by-hop fields, and those Portico sets itself.
fn not_forwarded(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-proto"
            | "x-forwarded-port"
            | "x-real-ip"
            | "x-original-url"
            | "x-original-method"
            | "x-original-uri"
            | "x-scheme"
            | "x-auth-request-redirect"
            | "x-sent-from"
            | "x-request-id"
    )
}

#[allow(clippy::too_many_arguments)]
pub async fn check<B>(
    state: &State,
    key: &hmac::Key,
    e: &ExternalAuth,
    route: &Route,
    req: &mut Request<B>,
    fields: &Fields,
    peer: &Peer,
    rid: &HeaderValue,
    trusted: &Trusted,
) -> Result<Cookies, Response<Body>> {
    let mut vars = vars(e, route, req, fields, peer, trusted)?;
    vars.ctx = vars.ctx.rid(rid);
    let cache_key = e.cache.as_ref().map(|c| {
        let mut k = format!("{}\0{}\0{}\0", vars.host, e.port, e.target.source()).into_bytes();
        vars.expand(&c.key, &mut k);
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(key, &k).as_ref());
        out
    });
    let now = Instant::now();
    let cached = cache_key.and_then(|k| {
        let cache = state.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&k).filter(|a| a.until > now).cloned()
    });
    let answer = match cached {
        Some(a) => a,
        None => {
            let a = match ask(state, e, req, &vars, rid).await {
                Ok(a) => a,
                Err(why) => {
                    tracing::warn!(request_id = rid.to_str().unwrap_or(""), auth_host = %vars.host, "auth request failed: {why}");
                    return Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error"));
                }
            };
            if let (Some(k), Some(ttl)) = (cache_key, e.cache.as_ref().and_then(|c| c.ttl(a.status))) {
                let mut cache = state.cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= CACHE_MAX {
                    cache.retain(|_, v| v.until > now);
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                }
                cache.insert(
                    k,
                    Answer {
                        until: now + ttl,
                        ..a.clone()
                    },
                );
            }
            a
        }
    };
    let cookies = Cookies {
        values: answer.cookies,
        always: e.always_set_cookie,
    };
    let deny = |status: StatusCode, text: &str, cookies: &Cookies| {
        let mut r = plain(status, text);
        if cookies.always {
            for c in &cookies.values {
                r.headers_mut().append(header::SET_COOKIE, c.clone());
            }
        }
        r
    };
    match answer.status {
        200..=299 => {
            skipped(e, req);
            let headers = req.headers_mut();
            for (name, value) in answer.copy {
                headers.insert(name, value);
            }
            Ok(cookies)
        }
        401 => match &e.signin {
            Some(signin) => {
                let mut r = to_signin(e, signin, &vars);
                if r.status() == StatusCode::FOUND {
                    for c in &cookies.values {
                        r.headers_mut().append(header::SET_COOKIE, c.clone());
                    }
                }
                Err(r)
            }
            None => {
                let mut r = deny(StatusCode::UNAUTHORIZED, "unauthorized", &cookies);
                if let Some(w) = answer.www_authenticate {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, w);
                }
                Err(r)
            }
        },
        403 => Err(deny(StatusCode::FORBIDDEN, "forbidden", &cookies)),
        other => {
            tracing::warn!(request_id = rid.to_str().unwrap_or(""), auth_host = %vars.host, status = other, "auth service answered neither 2xx, 401 nor 403");
            Err(deny(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error",
                &cookies,
            ))
        }
    }
}

/// The request variables of `req` on `route`; 500 when the auth URL takes its host from a
/// request on a route without an exact host (compile allows that nowhere).
#[allow(clippy::result_large_err)]
fn vars<'a, B>(
    e: &ExternalAuth,
    route: &'a Route,
    req: &'a Request<B>,
    fields: &'a Fields,
    peer: &'a Peer,
    trusted: &'a Trusted,
) -> Result<Vars<'a>, Response<Body>> {
    let http_host = request_authority(req.uri(), fields)
        .and_then(|a| a.to_str().ok().map(str::to_string))
        .unwrap_or_default();
    let host = match (e.host_from_request, &route.host) {
        (false, _) => e.host.clone(),
        // compile allows it only where every host of the Ingress is an exact name: the one
        // the request matched, as its owner wrote it.
        (true, HostPattern::Exact(h)) => h.clone(),
        (true, _) => return Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")),
    };
    Ok(Vars {
        ctx: Ctx::of(req, fields, peer, trusted).route(route, None),
        host,
        http_host,
        scheme: if peer.tls { "https" } else { "http" },
        request_uri: req.uri().path_and_query().map_or("/", |p| p.as_str()),
        client: client_ip(req.headers(), peer.addr, trusted),
    })
}

/// The `auth-signin` redirect: a 302 there with the original URL in the redirect parameter
/// (unless the URL has it already); 500 if the result cannot be a Location.
fn to_signin(e: &ExternalAuth, signin: &Template, vars: &Vars<'_>) -> Response<Body> {
    let mut location = Vec::new();
    vars.expand(signin, &mut location);
    let param = &e.signin_redirect_param;
    let at = location.iter().position(|b| *b == b'?');
    let query = at.map_or(&[][..], |i| &location[i + 1..]);
    if !query
        .split(|b| *b == b'&')
        .any(|kv| kv.split(|b| *b == b'=').next() == Some(param.as_bytes()))
    {
        location.push(if at.is_some() { b'&' } else { b'?' });
        location.extend_from_slice(param.as_bytes());
        location.push(b'=');
        location.extend_from_slice(vars.scheme.as_bytes());
        location.extend_from_slice(b"://");
        location.extend_from_slice(vars.http_host.as_bytes());
        vars::escape(vars.request_uri, &mut location);
    }
    let mut r = plain(StatusCode::FOUND, "redirecting to sign in");
    match HeaderValue::from_bytes(&location) {
        Ok(v) => drop(r.headers_mut().insert(header::LOCATION, v)),
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error"),
    }
    r
}

/// What a 401 of another access check becomes when the route's external auth has an
/// `auth-signin` (ingress-nginx's `error_page 401` covers the whole location): the redirect.
pub fn signin<B>(
    e: &ExternalAuth,
    route: &Route,
    req: &Request<B>,
    fields: &Fields,
    peer: &Peer,
    trusted: &Trusted,
) -> Option<Response<Body>> {
    let signin = e.signin.as_ref()?;
    Some(match vars(e, route, req, fields, peer, trusted) {
        Ok(v) => to_signin(e, signin, &v),
        Err(r) => r,
    })
}

/// The `auth-response-headers` are only ever the service's: removed from `req` before its
/// answer's are copied, or when the request goes through without asking (`satisfy: any`).
pub fn skipped<B>(e: &ExternalAuth, req: &mut Request<B>) {
    let headers = req.headers_mut();
    for name in &e.response_headers {
        headers.remove(name.as_str());
    }
}

/// The auth subrequest: the client's fields (no body) plus what ingress-nginx adds.
async fn ask<B>(
    state: &State,
    e: &ExternalAuth,
    req: &Request<B>,
    vars: &Vars<'_>,
    rid: &HeaderValue,
) -> Result<Answer, String> {
    let mut target = Vec::new();
    vars.expand(&e.target, &mut target);
    let uri = Uri::try_from(target).map_err(|_| "the expanded auth-url is not a valid target".to_string())?;
    // nginx's auth_request subrequest is a GET whatever the client's method (ingress-nginx
    // changes it only with auth-method); auth services that serve GET and HEAD only rely on it.
    let method = match &e.method {
        Some(m) => Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?,
        None => Method::GET,
    };
    let mut out = Request::builder()
        .method(method)
        .uri(uri)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let h = out.headers_mut();
    for (name, value) in req.headers() {
        if !not_forwarded(name) && name != header::COOKIE {
            h.append(name, value.clone());
        }
    }
    // One Cookie field: an HTTP/2 client may send each cookie as a field of its own, which
    // must be joined with "; " before going on over HTTP/1.1 (RFC 9113, 8.2.3); auth services
    // that read only the first field would miss the session (oauth2-proxy splits big ones).
    let mut cookies = req.headers().get_all(header::COOKIE).iter();
    if let Some(first) = cookies.next() {
        let mut joined = first.as_bytes().to_vec();
        for c in cookies {
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(c.as_bytes());
        }
        let joined = HeaderValue::from_bytes(&joined).map_err(|_| "the cookies cannot be joined".to_string())?;
        h.insert(header::COOKIE, joined);
    }
    vars::set_headers(&e.proxy_set_headers, Some(&vars.ctx), h);
    let default_port = if e.tls { 443 } else { 80 };
    let host = match (vars.host.contains(':'), e.port == default_port) {
        (false, true) => vars.host.clone(),
        (false, false) => format!("{}:{}", vars.host, e.port),
        (true, true) => format!("[{}]", vars.host),
        (true, false) => format!("[{}]:{}", vars.host, e.port),
    };
    let value =
        |s: &str| HeaderValue::from_str(s).map_err(|_| "a request value cannot be sent as a header".to_string());
    h.insert(header::HOST, value(&host)?);
    h.insert(
        "x-original-url",
        value(&format!("{}://{}{}", vars.scheme, vars.http_host, vars.request_uri))?,
    );
    h.insert("x-original-method", value(req.method().as_str())?);
    h.insert("x-sent-from", HeaderValue::from_static("nginx-ingress-controller"));
    let client = value(&vars.client.to_string())?;
    h.insert("x-real-ip", client.clone());
    h.insert("x-forwarded-for", client);
    if !vars.http_host.is_empty() {
        h.insert("x-forwarded-host", value(&vars.http_host)?);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static(vars.scheme));
    // On a kept connection without `auth-keepalive-share-vars` the auth request is
    // ingress-nginx's Lua subrequest, whose `$request_id` is its own: the client's
    // X-Request-ID when it sent one, else a new id.
    let rid = if e.keepalive.is_some() && !e.keepalive_share_vars {
        crate::proxy::handler::request_id(req.headers().get("x-request-id"))
    } else {
        rid.clone()
    };
    h.insert("x-request-id", rid);
    let redirect = e.request_redirect.as_deref().unwrap_or(vars.request_uri);
    h.insert("x-auth-request-redirect", value(redirect)?);
    if e.method.is_some() {
        h.insert("x-original-uri", value(vars.request_uri)?);
        h.insert("x-scheme", HeaderValue::from_static(vars.scheme));
    }
    let to = Service {
        tls: e.tls.then_some(&state.tls),
        host: &vars.host,
        port: e.port,
        allow_loopback: state.allow_loopback,
        flag: "--allow-loopback-auth-url",
    };
    let asking = async {
        match e.keepalive {
            None => exchange(&to, out).await.map(|r| r.into_parts().0),
            Some(settings) => pooled(&state.pools, &to, settings, out).await,
        }
    };
    let head = tokio::time::timeout(EXCHANGE_TIMEOUT, asking)
        .await
        .map_err(|_| format!("no answer within {EXCHANGE_TIMEOUT:?}"))??;
    let headers = &head.headers;
    Ok(Answer {
        status: head.status.as_u16(),
        copy: e
            .response_headers
            .iter()
            .filter_map(|n| {
                let name = HeaderName::from_bytes(n.as_bytes()).ok()?;
                let v = headers.get(&name)?.clone();
                Some((name, v))
            })
            .collect(),
        cookies: headers.get_all(header::SET_COOKIE).iter().cloned().collect(),
        www_authenticate: headers.get(header::WWW_AUTHENTICATE).cloned(),
        until: Instant::now(),
    })
}

/// Where a subrequest goes: a host and port from the configuration, never from the request.
pub(super) struct Service<'a> {
    /// `Some` for https (not verified, as ingress-nginx by default).
    pub tls: Option<&'a tokio_rustls::TlsConnector>,
    pub host: &'a str,
    pub port: u16,
    pub allow_loopback: bool,
    /// The flag that allows loopback addresses, for the message when one is refused.
    pub flag: &'static str,
}

/// One HTTP/1.1 exchange on a new connection (ingress-nginx keeps none to the auth service by
/// default either), up to the answer's head; its body is not read. (Mirrored requests go the
/// same way.)
pub(super) async fn exchange<B>(to: &Service<'_>, req: Request<B>) -> Result<Response<hyper::body::Incoming>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, _) = connect(to, Some(EXCHANGE_TIMEOUT)).await?;
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// The auth request on a kept connection to the service when one is open, else on a new
/// one; the answer's body is read (up to [`MAX_DRAINED`]) so that the connection can be kept
/// for the next auth request, as its settings allow.
async fn pooled(
    pools: &pool::Pools,
    to: &Service<'_>,
    settings: AuthKeepalive,
    mut req: Request<Empty<Bytes>>,
) -> Result<http::response::Parts, String> {
    let key = pool::Key {
        tls: to.tls.is_some(),
        host: to.host.to_string(),
        port: to.port,
        settings,
    };
    // Each turn takes a kept connection out of the pool (or makes a new one, the last turn),
    // so this ends.
    loop {
        let (mut conn, kept) = match pools.take(&key) {
            Some(c) => (c, true),
            None => {
                let (sender, task) = connect(to, None).await?;
                (pool::Conn::new(sender, task), false)
            }
        };
        if conn.sender.ready().await.is_err() {
            if kept {
                continue;
            }
            return Err("the auth service closed the connection".into());
        }
        match conn.sender.try_send_request(req).await {
            Ok(resp) => {
                conn.served = conn.served.saturating_add(1);
                let (head, body) = resp.into_parts();
                if drained(body).await {
                    pools.put(&key, conn);
                }
                return Ok(head);
            }
            // A kept connection the service closed just now never got the request.
            Err(mut e) => match e.take_message() {
                Some(r) if kept => req = r,
                _ => return Err(e.into_error().to_string()),
            },
        }
    }
}

/// Reads `body` to its end unless it is longer than [`MAX_DRAINED`]: whether it ended.
async fn drained(mut body: hyper::body::Incoming) -> bool {
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return false };
        if let Some(data) = frame.data_ref() {
            read = read.saturating_add(data.len());
            if read > MAX_DRAINED {
                return false;
            }
        }
    }
    true
}

/// A new HTTP/1.1 connection to `to` (refusing loopback and link-local addresses unless
/// allowed), its task running for at most `limit` (`None`: until the sender is dropped, or
/// the task aborted through the handle).
async fn connect<B>(
    to: &Service<'_>,
    limit: Option<Duration>,
) -> Result<(hyper::client::conn::http1::SendRequest<B>, tokio::task::AbortHandle), String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = resolve(to.host, to.port, to.allow_loopback, to.flag).await?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match to.tls {
        Some(connector) => {
            let name = rustls::pki_types::ServerName::try_from(to.host.to_string()).map_err(|e| e.to_string())?;
            let tls = connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
            handshake(TokioIo::new(tls), limit).await
        }
        None => handshake(TokioIo::new(tcp), limit).await,
    }
}

async fn handshake<T, B>(
    io: TokioIo<T>,
    limit: Option<Duration>,
) -> Result<(hyper::client::conn::http1::SendRequest<B>, tokio::task::AbortHandle), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        match limit {
            // Ends when the answer is dropped or the service closes; the exchange's timeout
            // bounds only the wait for the head, so the rest gets a deadline of its own.
            Some(limit) => drop(tokio::time::timeout(limit, conn).await),
            None => drop(conn.await),
        }
    });
    Ok((sender, task.abort_handle()))
}

async fn resolve(host: &str, port: u16, allow_loopback: bool, flag: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("resolving {host} timed out"))?
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    addrs
        .iter()
        .copied()
        .find(|a| allow_loopback || !forbidden_target(a.ip()))
        .ok_or_else(|| format!("{host} resolves only to loopback or link-local addresses (see {flag})"))
}
