//! Upstream side: connections to endpoints, kept alive per endpoint; one send path per
//! protocol (Portico's own HTTP/1.1 client, [`h1`], for HTTP/1.1 plain and TLS; hyper's
//! HTTP/2 client for h2c and h2); timeouts; request and response bodies that count bytes and
//! hand a finished connection back to its pool; and ExternalName resolution.
//!
//! Connecting is a separate step from sending, so a failed connect never consumes the
//! request: it can go to another endpoint whatever its method or body.

pub mod h1;
pub mod tee;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;

use super::Settings;
use super::deadline::Deadline;
use super::headers::filter_trailers;
use h1::Framing;
use tls::TlsClient;
pub(crate) use tls::tls_connector;

/// A connection of the own client, boxed once for its life: requests and response bodies
/// then move a pointer, not the connection.
type Raw = Box<h1::H1>;
use crate::balance::{EndpointState, Tracked};
use crate::config::backend::Protocol;
use crate::config::global::{Global, UpstreamReuse};

/// The body of a request sent upstream: the client's, streamed and counted, or none.
pub enum RequestBody {
    Empty,
    Stream(Streamed),
    /// A body read whole before it is sent (an HTTP/1.0 upstream needs its length); `None`
    /// once sent.
    Whole(Option<Bytes>),
}

impl RequestBody {
    /// A body read whole; `tee` (`mirror-target`) gets its copy at once.
    pub fn whole(data: Bytes, tee: Option<tee::Tee>) -> Self {
        if let Some(mut t) = tee {
            t.push(&data, true);
        }
        RequestBody::Whole(Some(data))
    }
}

pub struct Streamed {
    pub body: Incoming,
    pub counter: Counter,
    pub limit: Option<BodyLimit>,
    /// Set when `proxy-send-timeout` applies.
    pub progress: Option<Arc<SendProgress>>,
    /// Set when the body is copied for `mirror-target`.
    pub tee: Option<tee::Tee>,
}

/// `proxy-body-size` for a streamed body: past `max` bytes the upload fails and `exceeded`
/// tells the handler to answer 413.
pub struct BodyLimit {
    pub max: u64,
    pub seen: u64,
    pub exceeded: Arc<AtomicBool>,
}

/// How an upload to the upstream goes, for `proxy-send-timeout`: the clock runs only while
/// the upstream connection holds the next chunk back (the body waits to be taken), not while
/// Portico waits for the client.
#[derive(Default)]
pub struct SendProgress {
    /// `now_ns()` of the last chunk taken by the upstream connection.
    last: AtomicU64,
    /// 0: the upstream's turn; 1: waiting for the client; 2: the body is done.
    state: AtomicU8,
}

impl SendProgress {
    pub fn new() -> Arc<Self> {
        let p = Arc::new(Self::default());
        p.last.store(crate::balance::now_ns(), Ordering::Relaxed);
        p
    }

    fn mark(&self, state: u8) {
        self.last.store(crate::balance::now_ns(), Ordering::Relaxed);
        self.state.store(state, Ordering::Relaxed);
    }

    /// Whether the upstream has held the body back for longer than `limit`.
    fn stalled(&self, limit: Duration) -> bool {
        self.state.load(Ordering::Relaxed) == 0
            && crate::balance::now_ns().saturating_sub(self.last.load(Ordering::Relaxed))
                > u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX)
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let s = match self.get_mut() {
            RequestBody::Stream(s) => s,
            RequestBody::Whole(data) => return Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RequestBody::Empty => return Poll::Ready(None),
        };
        let polled = Pin::new(&mut s.body).poll_frame(cx);
        if let Some(p) = &s.progress {
            p.mark(match &polled {
                Poll::Pending => 1,
                Poll::Ready(Some(_)) if !s.body.is_end_stream() => 0,
                Poll::Ready(_) => 2,
            });
        }
        match polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    s.counter.inc_by(d.len() as u64);
                    if let Some(l) = &mut s.limit {
                        l.seen = l.seen.saturating_add(d.len() as u64);
                        if l.seen > l.max {
                            l.exceeded.store(true, Ordering::Relaxed);
                            let msg = format!("request body larger than {} bytes", l.max);
                            return Poll::Ready(Some(Err(msg.into())));
                        }
                    }
                    // After the limit: a body refused for its size is not mirrored.
                    if let Some(t) = &mut s.tee {
                        t.push(d, s.body.is_end_stream());
                    }
                } else if let Some(t) = &mut s.tee
                    && s.body.is_end_stream()
                {
                    // Trailers end the body (the mirror gets none).
                    t.end();
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                if let Some(t) = &mut s.tee {
                    t.end();
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Stream(s) => s.body.is_end_stream(),
            RequestBody::Whole(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Stream(s) => s.body.size_hint(),
            RequestBody::Whole(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

type H2 = http2::SendRequest<RequestBody>;

/// What the data plane keeps per endpoint address, shared by every Config that lists it:
/// the balancer's view of it and its kept-alive connections.
pub struct EndpointRuntime {
    pub state: EndpointState,
    /// Allocated on first use: at scale most endpoints are never dialled by a given replica.
    idle: std::sync::OnceLock<Box<IdlePool>>,
}

impl EndpointRuntime {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            state: EndpointState::new(addr),
            idle: std::sync::OnceLock::new(),
        }
    }

    /// The endpoint's upstream connections.
    fn idle(&self) -> &IdlePool {
        self.idle.get_or_init(Box::default)
    }

    /// The endpoint's upstream connections, if it ever had any.
    fn idle_if_used(&self) -> Option<&IdlePool> {
        self.idle.get().map(|b| &**b)
    }
}

impl Tracked for EndpointRuntime {
    fn state(&self) -> &EndpointState {
        &self.state
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// How long a connection that comes back to a pool holding `upstream-keepalive-connections`
/// idle ones already is kept for another request. Under a load whose concurrency swings
/// around that number (HTTP/2 clients with many streams each), closing it at once means
/// opening another a few milliseconds later: with 50 clients of 10 streams each, 0.06-0.09
/// new upstream connections per request (TCP handshake, and a socket left in TIME_WAIT),
/// 11-14 % of the proxy's CPU time per request and its slowest requests (benches/h2.sh,
/// docs/performance.md). One that is not taken again within this time is closed on the next
/// visit to the pool or by the reaper.
const LINGER: Duration = Duration::from_secs(1);

/// At most this many times `upstream-keepalive-connections` idle connections, lingering
/// ones included.
const OVER: usize = 4;

/// `upstream-keepalive-connections` as a count.
fn kept(reuse: &UpstreamReuse) -> usize {
    reuse.idle.unwrap_or(UpstreamReuse::DEFAULT_IDLE) as usize
}

/// An endpoint's upstream connections: idle HTTP/1.1 ones (plain and TLS), most recently used
/// last, and one shared HTTP/2 connection each for h2c and h2 over TLS; apart from those, the
/// connections made under each `proxy-ssl-*` setting.
#[derive(Default)]
pub struct IdlePool {
    raw: Mutex<Vec<Idle<Raw>>>,
    raw_tls: Mutex<Vec<Idle<Raw>>>,
    h2c: Mutex<Option<H2>>,
    h2_tls: Mutex<Option<H2>>,
    /// By [`TlsClient`] id; rare, so one short list behind one lock.
    keyed: Mutex<Vec<Keyed>>,
}

/// The connections made by one [`TlsClient`].
struct Keyed {
    id: u64,
    raw: Vec<Idle<Raw>>,
    h2: Option<H2>,
}

/// Which of an endpoint's pools a connection belongs to: a connection is only ever reused by
/// requests that would have made the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pool {
    Plain,
    /// TLS with the default client (no `proxy-ssl-*` settings).
    Tls,
    /// TLS with the [`TlsClient`] of this id.
    Client(u64),
}

impl Pool {
    fn of(protocol: Protocol, tls: Option<&TlsClient>) -> Pool {
        match (protocol.tls(), tls) {
            (false, _) => Pool::Plain,
            (true, None) => Pool::Tls,
            (true, Some(c)) => Pool::Client(c.id),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl IdlePool {
    fn keyed<R>(&self, id: u64, f: impl FnOnce(&mut Keyed) -> R) -> R {
        let mut all = lock(&self.keyed);
        let i = match all.iter().position(|k| k.id == id) {
            Some(i) => i,
            None => {
                all.push(Keyed {
                    id,
                    raw: Vec::new(),
                    h2: None,
                });
                all.len() - 1
            }
        };
        f(&mut all[i])
    }

    fn raw_in<R>(&self, pool: Pool, f: impl FnOnce(&mut Vec<Idle<Raw>>) -> R) -> R {
        match pool {
            Pool::Plain => f(&mut lock(&self.raw)),
            Pool::Tls => f(&mut lock(&self.raw_tls)),
            Pool::Client(id) => self.keyed(id, |k| f(&mut k.raw)),
        }
    }

    fn h2_in<R>(&self, pool: Pool, f: impl FnOnce(&mut Option<H2>) -> R) -> R {
        match pool {
            Pool::Plain => f(&mut lock(&self.h2c)),
            Pool::Tls => f(&mut lock(&self.h2_tls)),
            Pool::Client(id) => self.keyed(id, |k| f(&mut k.h2)),
        }
    }

    /// The newest idle HTTP/1.1 connection that the upstream has not closed. Connections past
    /// `most` that have lingered their time are closed first (see [`LINGER`]).
    fn take_raw(&self, pool: Pool, idle_timeout: Duration, most: usize, now: Instant) -> Option<Raw> {
        self.raw_in(pool, |pool| {
            Self::trim(pool, most, now);
            Self::newest_open(pool, idle_timeout, now)
        })
    }

    /// Closes the oldest idle connections beyond `most` once they have waited [`LINGER`]. The
    /// list is in the order connections came back, so the oldest are first.
    fn trim<C>(pool: &mut Vec<Idle<C>>, most: usize, now: Instant) {
        let excess = pool.len().saturating_sub(most);
        if excess > 0 {
            let stale = pool[..excess]
                .iter()
                .take_while(|i| now.saturating_duration_since(i.since) >= LINGER)
                .count();
            pool.drain(..stale);
        }
    }

    fn newest_open(pool: &mut Vec<Idle<Raw>>, idle_timeout: Duration, now: Instant) -> Option<Raw> {
        while let Some(idle) = pool.pop() {
            if now.saturating_duration_since(idle.since) <= idle_timeout && !idle.conn.peer_closed() {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request, unless `upstream-keepalive-requests` or `-time` says
    /// it has served enough, or `upstream-keepalive-connections` is 0. Past that many idle
    /// ones it is kept for [`LINGER`] at most (and no more than [`OVER`] times as many).
    fn put_raw(&self, pool: Pool, mut conn: Raw, reuse: &UpstreamReuse) {
        conn.reused = true;
        conn.served = conn.served.saturating_add(1);
        // One reading of the clock for the connection's age and its idle mark.
        let now = Instant::now();
        if reuse.retires(conn.served, now.saturating_duration_since(conn.born.into_std())) {
            return;
        }
        let most = kept(reuse);
        if most == 0 {
            return;
        }
        self.raw_in(pool, |pool| {
            Self::trim(pool, most, now);
            if pool.len() < most.saturating_mul(OVER) {
                pool.push(Idle { conn, since: now });
            }
        });
    }

    /// The endpoint's live HTTP/2 connection, if any.
    fn h2(&self, pool: Pool) -> Option<H2> {
        self.h2_in(pool, |slot| Self::live(slot).cloned())
    }

    /// The HTTP/2 connection in `slot`, forgotten when closed.
    fn live(slot: &mut Option<H2>) -> Option<&H2> {
        if slot.as_ref().is_some_and(|s| s.is_closed()) {
            *slot = None;
        }
        slot.as_ref()
    }

    /// Drops connections the peer closed, HTTP/1.1 ones idle longer than `idle_timeout`, and
    /// those past `most` that have lingered their time; the others that have waited
    /// `RELEASE_AFTER` give back their buffers.
    pub fn reap(&self, idle_timeout: Duration, most: usize) {
        let keep = |i: &mut Idle<Raw>| {
            let idle = i.since.elapsed();
            if i.conn.peer_closed() || idle > idle_timeout {
                return false;
            }
            if idle >= RELEASE_AFTER {
                i.conn.release_buffers();
            }
            true
        };
        let now = Instant::now();
        for pool in [Pool::Plain, Pool::Tls] {
            self.raw_in(pool, |list| {
                Self::trim(list, most, now);
                list.retain_mut(keep)
            });
            let _ = self.h2(pool);
        }
        lock(&self.keyed).retain_mut(|k| {
            Self::trim(&mut k.raw, most, now);
            k.raw.retain_mut(keep);
            Self::live(&mut k.h2).is_some() || !k.raw.is_empty()
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} failed: {1}")]
    Failed(SocketAddr, std::io::Error),
    #[error("connect to {0} timed out after {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(SocketAddr, std::io::Error),
    #[error("HTTP handshake with {0} failed: {1}")]
    Handshake(SocketAddr, hyper::Error),
}

pub enum SendError {
    /// The request was not taken (the connection had just closed): it may go again on a
    /// fresh connection, as it is (`Some`: an HTTP/2 request handed back; `None`: the caller
    /// still has it).
    NotSent(Option<Box<Request<RequestBody>>>),
    /// The exchange failed after the request started.
    Failed(String),
    /// No response head within the response timeout.
    Timeout(Duration),
    /// The upstream took no part of the request body for `proxy-send-timeout`.
    SendTimeout(Duration),
    /// What came back is no HTTP/1.1 response head (nginx's `invalid_header`).
    Invalid(String),
}

impl From<h1::Error> for SendError {
    fn from(e: h1::Error) -> SendError {
        match e {
            e if e.resendable() => SendError::NotSent(None),
            h1::Error::Timeout(d) => SendError::Timeout(d),
            h1::Error::SendTimeout(d) => SendError::SendTimeout(d),
            e @ h1::Error::Invalid(_) => SendError::Invalid(e.to_string()),
            e => SendError::Failed(e.to_string()),
        }
    }
}

enum Sender {
    /// Portico's own HTTP/1.1 client.
    Raw(Raw),
    H2(H2),
}

/// A response body as it comes from the upstream connection.
pub enum UpBody {
    /// HTTP/2, from hyper.
    Hyper(Incoming),
    /// Read by Portico's own client from the connection it came on.
    Raw {
        framing: Framing,
        keep_alive: bool,
        /// The head has a Server field.
        server: bool,
    },
}

pub use h1::is_idempotent;

/// A connection ready to carry one request.
pub struct Conn {
    sender: Sender,
    pool: Pool,
    /// The Config's `upstream-keepalive-*` when the connection was taken.
    reuse: UpstreamReuse,
}

impl Conn {
    /// After `101 Switching Protocols`: the connection and what the upstream sent past the
    /// response head, for the tunnel. `None` for an HTTP/2 connection.
    pub fn into_tunnel(self) -> Option<(h1::Io, bytes::BytesMut)> {
        match self.sender {
            Sender::Raw(c) => Some(c.into_parts()),
            Sender::H2(_) => None,
        }
    }
}

/// Connects and sends; shared by all requests.
pub struct Upstream {
    connect_timeout: Duration,
    response_timeout: Duration,
    idle_timeout: Duration,
    http2: http2::Builder<TokioExecutor>,
    tls_h1: tokio_rustls::TlsConnector,
    tls_h2: tokio_rustls::TlsConnector,
}

impl Upstream {
    pub fn new(s: &Settings) -> Self {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Self {
            connect_timeout: s.upstream_connect_timeout,
            response_timeout: s.upstream_response_timeout,
            idle_timeout: s.upstream_idle_timeout,
            http2,
            tls_h1: tls_connector(b"http/1.1"),
            tls_h2: tls_connector(b"h2"),
        }
    }

    /// A pooled connection to the endpoint, else a new one (within `timeout`, default
    /// `--upstream-connect-timeout`).
    /// `tls`: the route's `proxy-ssl-*` client, `None` for the default one.
    pub async fn connection(
        &self,
        ep: &EndpointRuntime,
        protocol: Protocol,
        tls: Option<&TlsClient>,
        timeout: Option<Duration>,
        global: &Global,
        now: Instant,
    ) -> Result<Conn, ConnectError> {
        match self.pooled(ep, protocol, tls, global, now) {
            Some(conn) => Ok(conn),
            None => self.fresh(ep, protocol, tls, timeout, global).await,
        }
    }

    /// The endpoint's pooled connection for `protocol` and `tls`, if one is there: no future
    /// to make, poll and move the connection out of on the path most requests take (see
    /// [`Upstream::connection`]).
    #[inline]
    pub fn pooled(
        &self,
        ep: &EndpointRuntime,
        protocol: Protocol,
        tls: Option<&TlsClient>,
        global: &Global,
        now: Instant,
    ) -> Option<Conn> {
        let reuse = global.upstream_reuse;
        let pool = Pool::of(protocol, tls);
        let sender = if protocol.http2() {
            ep.idle().h2(pool).map(Sender::H2)
        } else {
            let idle_timeout = global.upstream_keepalive_timeout.unwrap_or(self.idle_timeout);
            ep.idle()
                .take_raw(pool, idle_timeout, kept(&reuse), now)
                .map(Sender::Raw)
        }?;
        Some(Conn { sender, pool, reuse })
    }

    /// A new connection to the endpoint for a request, when none was pooled (an HTTP/2 one
    /// is then shared through the pool).
    pub async fn fresh(
        &self,
        ep: &EndpointRuntime,
        protocol: Protocol,
        tls: Option<&TlsClient>,
        timeout: Option<Duration>,
        global: &Global,
    ) -> Result<Conn, ConnectError> {
        // Boxed: connecting (TCP, TLS, HTTP/2 handshakes) is the rare path and its future is
        // large; inline it would make every request's future as large.
        let mut conn = Box::pin(self.connect(ep.state.addr, protocol, tls, timeout)).await?;
        conn.reuse = global.upstream_reuse;
        if let Sender::H2(s) = &conn.sender {
            ep.idle().h2_in(Pool::of(protocol, tls), |slot| *slot = Some(s.clone()));
        }
        Ok(conn)
    }

    /// A new connection, never pooled before.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        protocol: Protocol,
        tls: Option<&TlsClient>,
        timeout: Option<Duration>,
    ) -> Result<Conn, ConnectError> {
        let limit = timeout.unwrap_or(self.connect_timeout);
        let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout(addr, limit)),
            Ok(Err(e)) => return Err(ConnectError::Failed(addr, e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let pool = Pool::of(protocol, tls);
        let io = if protocol.tls() {
            let (connector, name) = match tls {
                Some(c) => (c.connector(protocol.http2()), c.server_name(addr.ip())),
                // Named by address: no SNI is sent, as ingress-nginx does by default.
                None => (
                    if protocol.http2() { &self.tls_h2 } else { &self.tls_h1 },
                    rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
                ),
            };
            match tokio::time::timeout(limit, connector.connect(name, stream)).await {
                Err(_) => return Err(ConnectError::Timeout(addr, limit)),
                Ok(Err(e)) => return Err(ConnectError::Tls(addr, e)),
                Ok(Ok(s)) => h1::Io::Tls(Box::new(s)),
            }
        } else {
            h1::Io::Plain(stream)
        };
        if !protocol.http2() {
            return Ok(Conn {
                sender: Sender::Raw(Box::new(h1::H1::new(io))),
                pool,
                reuse: UpstreamReuse::default(),
            });
        }
        let (sender, conn) = self
            .http2
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| ConnectError::Handshake(addr, e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(endpoint = %addr, error = %e, "upstream HTTP/2 connection ended");
            }
        });
        Ok(Conn {
            sender: Sender::H2(sender),
            pool,
            reuse: UpstreamReuse::default(),
        })
    }

    /// Sends one request on an HTTP/2 connection and waits for the response head (within
    /// `timeout`, default `--upstream-response-timeout`; and, with `send_timeout`, failing
    /// when the upstream takes no part of the body for that long).
    pub async fn send_h2(
        &self,
        conn: &mut Conn,
        req: Request<RequestBody>,
        timeout: Option<Duration>,
        send_timeout: Option<Duration>,
    ) -> Result<Response<UpBody>, SendError> {
        let limit = timeout.unwrap_or(self.response_timeout);
        let Sender::H2(sender) = &mut conn.sender else {
            return Err(SendError::Failed("no HTTP/2 connection for this request".into()));
        };
        // Watched from the moment the upload can start; a request without body has none.
        let watch = match req.body() {
            RequestBody::Stream(Streamed {
                progress: Some(p),
                body,
                ..
            }) if !body.is_end_stream() => {
                p.mark(0);
                Some(p.clone())
            }
            _ => None,
        };
        let exchange = tokio::time::timeout(limit, sender.try_send_request(req));
        let sent = match (watch, send_timeout) {
            (Some(progress), Some(send_limit)) => {
                let stalled = async {
                    let every = (send_limit / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
                    while !progress.stalled(send_limit) {
                        tokio::time::sleep(every).await;
                    }
                };
                tokio::select! {
                    sent = exchange => sent,
                    () = stalled => return Err(SendError::SendTimeout(send_limit)),
                }
            }
            _ => exchange.await,
        };
        match sent {
            Err(_) => Err(SendError::Timeout(limit)),
            Ok(Ok(resp)) => Ok(resp.map(UpBody::Hyper)),
            Ok(Err(mut e)) => match e.take_message() {
                Some(req) => Err(SendError::NotSent(Some(Box::new(req)))),
                None => Err(SendError::Failed(source_chain(e.error()))),
            },
        }
    }

    /// A request on Portico's own HTTP/1.1 client, its body (if any) streamed from `body`,
    /// within `timeout` (default `--upstream-response-timeout`) for the response head from
    /// the end of the request (counted from `started` for a request without body) and
    /// `send_timeout` (default the same) for the upstream to take the body.
    pub async fn send_h1(
        &self,
        conn: &mut Conn,
        req: &h1::Request<'_>,
        body: Option<&mut RequestBody>,
        timeout: Option<Duration>,
        send_timeout: Option<Duration>,
        started: Instant,
    ) -> Result<Response<UpBody>, SendError> {
        let response = timeout.unwrap_or(self.response_timeout);
        let limits = h1::Limits {
            response,
            send: send_timeout.unwrap_or(response),
        };
        let Sender::Raw(c) = &mut conn.sender else {
            return Err(SendError::Failed("no HTTP/1.1 connection for this request".into()));
        };
        let head = c
            .exchange(req, body, limits, tokio::time::Instant::from_std(started))
            .await?;
        let mut resp = Response::new(UpBody::Raw {
            framing: head.framing,
            // An HTTP/1.0 exchange asked for the close: its connection is never pooled.
            keep_alive: head.keep_alive && !req.http10,
            server: head.server,
        });
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        if let Some(names) = head.names {
            resp.extensions_mut().insert(names);
        }
        Ok(resp)
    }

    /// Wraps a response body so that the connection returns to its endpoint's pool once the
    /// body has been read to its end.
    /// `idle`: the longest wait between two reads of the body (`proxy-read-timeout`; by
    /// default `--upstream-response-timeout`, as ingress-nginx's `proxy_read_timeout` applies
    /// to the whole response).
    pub fn body(
        &self,
        body: UpBody,
        conn: Conn,
        ep: Arc<EndpointRuntime>,
        counter: Counter,
        idle: Option<Duration>,
    ) -> ResponseBody {
        let Conn { sender, pool, reuse } = conn;
        let inner = match (body, sender) {
            (
                UpBody::Raw {
                    framing, keep_alive, ..
                },
                Sender::Raw(mut c),
            ) => {
                (c.pool, c.reuse) = (pool, reuse);
                Inner::Raw {
                    conn: Some(c),
                    framing,
                    keep_alive,
                }
            }
            // An HTTP/2 connection is shared, never checked out.
            (UpBody::Hyper(body), _) => Inner::Hyper { body },
            (UpBody::Raw { .. }, _) => Inner::Broken,
        };
        let mut body = ResponseBody {
            inner,
            ep,
            counter,
            idle: idle.unwrap_or(self.response_timeout),
            wait: None,
            armed: false,
        };
        // A response without body may never be polled: its connection goes back now.
        if body.is_end_stream() {
            body.done();
        }
        body
    }
}

enum Inner {
    Hyper {
        body: Incoming,
    },
    Raw {
        /// None once back in the pool or given up.
        conn: Option<Raw>,
        framing: Framing,
        keep_alive: bool,
    },
    /// A response head without its connection (cannot happen; answered as an error).
    Broken,
}

/// A response body from upstream, counted, that gives its connection back when done.
///
/// Kept at most 144 bytes, so that the client's `Response<Body>` is at most 256: the response
/// is moved from function to function on its way to hyper, and each move of more than 256
/// bytes costs `memcpy` twice the instructions (its loop instead of eight vector moves).
/// Hence the connection's pool and limits travel in the connection's own box, and the wait's
/// deadline is boxed.
pub struct ResponseBody {
    inner: Inner,
    ep: Arc<EndpointRuntime>,
    counter: Counter,
    /// The longest wait for the next piece of the body.
    idle: Duration,
    /// Made the first time the body has to wait, so a body that never waits (most) costs no
    /// timer; moved on at each new wait.
    wait: Option<Box<Deadline>>,
    /// A wait is under way (nothing has come since its deadline was set).
    armed: bool,
}

impl ResponseBody {
    /// The body has been read to its end: the connection goes back to the pool.
    fn done(&mut self) {
        match &mut self.inner {
            Inner::Hyper { .. } => {}
            Inner::Raw {
                conn,
                framing: Framing::Done | Framing::Empty,
                keep_alive: true,
            } => {
                if let Some(c) = conn.take().filter(|c| c.clean()) {
                    let (pool, reuse) = (c.pool, c.reuse);
                    self.ep.idle().put_raw(pool, c, &reuse);
                }
            }
            Inner::Raw { conn, .. } => *conn = None,
            Inner::Broken => {}
        }
    }

    /// A broken body leaves a broken connection: it is not pooled.
    fn abandon(&mut self) {
        match &mut self.inner {
            Inner::Hyper { .. } => {}
            Inner::Raw { conn, .. } => *conn = None,
            Inner::Broken => {}
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled: Poll<Option<Result<Frame<Bytes>, BoxError>>> = match &mut this.inner {
            Inner::Hyper { body, .. } => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Inner::Raw {
                conn: Some(c), framing, ..
            } => c.poll_body(framing, cx).map(|r| r.map_err(Into::into).transpose()),
            Inner::Raw { conn: None, .. } => Poll::Ready(None),
            Inner::Broken => Poll::Ready(Some(Err("upstream response without its connection".into()))),
        };
        let mut polled = polled;
        match &mut polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(t) = f.trailers_mut() {
                    filter_trailers(t);
                }
                if let Some(d) = f.data_ref() {
                    this.counter.inc_by(d.len() as u64);
                }
                if this.is_end_stream() {
                    this.done();
                }
                this.armed = false;
            }
            Poll::Ready(None) => this.done(),
            Poll::Ready(Some(Err(_))) => this.abandon(),
            Poll::Pending => {
                if !this.armed {
                    let at = super::deadline::after(tokio::time::Instant::now(), this.idle);
                    this.wait.get_or_insert_with(|| Box::new(Deadline::new(at))).set(at);
                    this.armed = true;
                }
                if let Some(wait) = &mut this.wait
                    && wait.poll_expired(cx).is_ready()
                {
                    let msg = format!("upstream sent nothing for {:?}", this.idle);
                    this.abandon();
                    return Poll::Ready(Some(Err(msg.into())));
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Hyper { body, .. } => body.is_end_stream(),
            Inner::Raw { framing, .. } => matches!(framing, Framing::Done | Framing::Empty),
            Inner::Broken => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Hyper { body, .. } => body.size_hint(),
            Inner::Raw { framing, .. } => match framing {
                Framing::Length(n) => SizeHint::with_exact(*n),
                Framing::Done | Framing::Empty => SizeHint::with_exact(0),
                _ => SizeHint::default(),
            },
            Inner::Broken => SizeHint::default(),
        }
    }
}

/// How long a pooled HTTP/1.1 connection waits before [`IdlePool::reap`] takes its buffers:
/// the ones a steady load reuses keep theirs.
const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// Closes idle upstream connections past the idle timeout, lets those idle for a while give
/// back their buffers, and lets the registry forget endpoints no Config names any more. Runs
/// for the life of the process, at least every 5 s, so that what a burst of requests opened
/// holds little memory soon after (benches/connmem.sh).
pub async fn reap_idle(live: Arc<super::live::Live>, default_idle: Duration) {
    loop {
        // `upstream-keepalive-timeout` as the live Config says, else the default.
        // Read, not held across the sleep: an old Config is not kept alive by the reaper.
        let (idle_timeout, most) = {
            let config = live.config();
            let global = &config.global;
            (
                global.upstream_keepalive_timeout.unwrap_or(default_idle),
                kept(&global.upstream_reuse),
            )
        };
        let every = (idle_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(5));
        tokio::time::sleep(every).await;
        for ep in live.registry().sweep() {
            if let Some(pool) = ep.idle_if_used() {
                pool.reap(idle_timeout, most);
            }
        }
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Addresses an ExternalName may never point Portico at: the controller itself and the
/// node's metadata-style link-local services.
pub fn forbidden_target(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Resolves an ExternalName host, refusing loopback, link-local and unspecified answers.
pub async fn resolve_external(host: &str, port: u16) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve ExternalName {host}: {e}"))?
        .collect();
    addrs
        .iter()
        .copied()
        .find(|a| !forbidden_target(a.ip()))
        .ok_or_else(|| format!("ExternalName {host} resolves only to loopback, link-local or unspecified addresses"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// See [`ResponseBody`]: past 256 bytes, each move of the client's response (about ten
    /// per request) costs `memcpy`'s loop.
    #[test]
    fn client_responses_move_in_vector_moves() {
        let (body, resp) = (
            std::mem::size_of::<ResponseBody>(),
            std::mem::size_of::<Response<crate::proxy::Body>>(),
        );
        assert!(
            body <= 144 && resp <= 256,
            "ResponseBody {body} bytes, Response<Body> {resp}"
        );
    }

    fn idle(since: Instant) -> Idle<u32> {
        Idle { conn: 0, since }
    }

    /// Past `most`, the connections that came back first go once they have lingered; the
    /// newer ones, and any within `most`, stay however long they have waited.
    #[test]
    fn only_the_lingered_excess_is_trimmed() {
        let now = Instant::now() + Duration::from_secs(10);
        let long_ago = now - LINGER - Duration::from_millis(1);
        let just_now = now - Duration::from_millis(10);
        let mut pool: Vec<Idle<u32>> = [long_ago, long_ago, just_now, just_now, just_now].map(idle).into();
        for (i, c) in pool.iter_mut().enumerate() {
            c.conn = i as u32;
        }
        IdlePool::trim(&mut pool, 1, now);
        let left: Vec<u32> = pool.iter().map(|c| c.conn).collect();
        assert_eq!(left, [2, 3, 4], "4 past most = 1, the two oldest lingered");

        IdlePool::trim(&mut pool, 5, now);
        assert_eq!(pool.len(), 3, "within most nothing goes");
        IdlePool::trim(&mut pool, 0, now + LINGER);
        assert!(pool.is_empty(), "all lingered, none kept");
    }
}
