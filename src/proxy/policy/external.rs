//! `auth-url`: the request's head is first sent to the auth service (as a GET, unless
//! `auth-method`), never its body; 2xx lets it through with the listed answer fields copied,
//! 401/403 go to the client (401 becomes the `auth-signin` redirect), anything else is 500.
//! Part of the [`super::auth`] step.
//! Owns the runtime cache of auth answers (`auth-cache-key`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::auth::ExternalAuth;
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

/// Runtime state: the TLS client for `https://` auth URLs and the cache of answers.
pub struct State {
    tls: tokio_rustls::TlsConnector,
    cache: Mutex<HashMap<[u8; 32], Answer>>,
    /// `--allow-loopback-auth-url`: an auth service on the controller's own host (a sidecar).
    pub allow_loopback: bool,
}

impl State {
    pub fn new(allow_loopback: bool) -> Self {
        Self {
            tls: crate::proxy::upstream::tls_connector(b"http/1.1"),
            cache: Mutex::new(HashMap::new()),
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
    let vars = Vars {
        ctx: Ctx::of(&*req, fields, peer, trusted).route(route, None).rid(rid),
        host,
        http_host,
        scheme: if peer.tls { "https" } else { "http" },
        request_uri: req.uri().path_and_query().map_or("/", |p| p.as_str()),
        client: client_ip(req.headers(), peer.addr, trusted),
    };
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
            let headers = req.headers_mut();
            for name in &e.response_headers {
                headers.remove(name.as_str());
            }
            for (name, value) in answer.copy {
                headers.insert(name, value);
            }
            Ok(cookies)
        }
        401 => match &e.signin {
            Some(signin) => {
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
                    Err(_) => return Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")),
                }
                for c in &cookies.values {
                    r.headers_mut().append(header::SET_COOKIE, c.clone());
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
    h.insert("x-request-id", rid.clone());
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
    let resp = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(&to, out))
        .await
        .map_err(|_| format!("no answer within {EXCHANGE_TIMEOUT:?}"))??;
    let headers = resp.headers();
    Ok(Answer {
        status: resp.status().as_u16(),
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

/// Connects to `to` (refusing loopback and link-local addresses unless allowed) and sends
/// `req` there, up to the answer's head.
pub(super) async fn exchange<B>(to: &Service<'_>, req: Request<B>) -> Result<Response<hyper::body::Incoming>, String>
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
            send(TokioIo::new(tls), req).await
        }
        None => send(TokioIo::new(tcp), req).await,
    }
}

/// One HTTP/1.1 exchange on a new connection (ingress-nginx keeps none to the auth service by
/// default either); the answer's body is not read. (Mirrored requests go the same way.)
async fn send<T, B>(io: TokioIo<T>, req: Request<B>) -> Result<Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // Ends when the answer is dropped or the service closes; bounded by the exchange
        // timeout only up to the head, so give the rest a deadline of its own.
        let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, conn).await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
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
