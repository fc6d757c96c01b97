//! Upstream side: connections to endpoints, kept alive per endpoint; timeouts; request and
//! response bodies that count bytes and hand a finished connection back to its pool; and
//! ExternalName resolution.
//!
//! Connecting is a separate step from sending, so a failed connect never consumes the
//! request: it can go to another endpoint whatever its method or body.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;

use super::Settings;
use crate::balance::EndpointState;

/// The body of a request sent upstream: the client's, streamed and counted, or none.
pub enum RequestBody {
    Empty,
    Stream(Incoming, Counter, Option<BodyLimit>),
}

/// `proxy-body-size` for a streamed body: past `max` bytes the upload fails and `exceeded`
/// tells the handler to answer 413.
pub struct BodyLimit {
    pub max: u64,
    pub seen: u64,
    pub exceeded: Arc<std::sync::atomic::AtomicBool>,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Stream(body, counter, limit) => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        counter.inc_by(d.len() as u64);
                        if let Some(l) = limit {
                            l.seen += d.len() as u64;
                            if l.seen > l.max {
                                l.exceeded.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Poll::Ready(Some(Err(
                                    format!("request body larger than {} bytes", l.max).into()
                                )));
                            }
                        }
                    }
                    Poll::Ready(Some(Ok(f)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Stream(b, _, _) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Stream(b, _, _) => b.size_hint(),
        }
    }
}

type Sender = http1::SendRequest<RequestBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// An endpoint's idle kept-alive connections, most recently used last.
#[derive(Default)]
pub struct IdlePool(Mutex<Vec<Idle>>);

/// Most idle connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

impl IdlePool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A ready idle connection, newest first. Closed and expired ones are dropped; ones
    /// still finishing their last exchange stay pooled.
    fn take(&self, idle_timeout: Duration) -> Option<Sender> {
        let mut pool = self.lock();
        let mut busy = Vec::new();
        let mut found = None;
        while let Some(idle) = pool.pop() {
            if idle.sender.is_closed() || idle.since.elapsed() > idle_timeout {
                continue;
            }
            if idle.sender.is_ready() {
                found = Some(idle.sender);
                break;
            }
            busy.push(idle);
        }
        pool.extend(busy);
        found
    }

    fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut pool = self.lock();
        if pool.len() < MAX_IDLE_PER_ENDPOINT {
            pool.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Drops closed connections and those idle longer than `idle_timeout`.
    pub fn reap(&self, idle_timeout: Duration) {
        self.lock()
            .retain(|i| !i.sender.is_closed() && i.since.elapsed() <= idle_timeout);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} failed: {1}")]
    Failed(SocketAddr, std::io::Error),
    #[error("connect to {0} timed out after {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("HTTP/1.1 handshake with {0} failed: {1}")]
    Handshake(SocketAddr, hyper::Error),
}

pub enum SendError {
    /// The request was not written (the pooled connection had just closed): it comes back
    /// untouched, for another connection.
    NotSent(Box<Request<RequestBody>>),
    /// The exchange failed after the request started.
    Failed(String),
    /// No response head within the response timeout.
    Timeout(Duration),
}

/// A connection ready to carry one request.
pub struct Conn {
    sender: Sender,
    /// Whether it came from the pool (a reused connection may have been closed by the peer
    /// just now, which is not the endpoint failing).
    pub reused: bool,
}

/// Connects and sends; shared by all requests.
pub struct Upstream {
    connect_timeout: Duration,
    response_timeout: Duration,
    idle_timeout: Duration,
    http1: http1::Builder,
}

impl Upstream {
    pub fn new(s: &Settings) -> Self {
        let mut http1 = http1::Builder::new();
        http1.max_headers(s.max_headers.max(100));
        Self {
            connect_timeout: s.upstream_connect_timeout,
            response_timeout: s.upstream_response_timeout,
            idle_timeout: s.upstream_idle_timeout,
            http1,
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// A pooled connection to the endpoint, else a new one (within `timeout`, default
    /// `--upstream-connect-timeout`).
    pub async fn connection(&self, ep: &EndpointState, timeout: Option<Duration>) -> Result<Conn, ConnectError> {
        if let Some(sender) = ep.idle.take(self.idle_timeout) {
            return Ok(Conn { sender, reused: true });
        }
        self.connect(ep.addr, timeout).await
    }

    /// A new connection, never pooled before.
    pub async fn connect(&self, addr: SocketAddr, timeout: Option<Duration>) -> Result<Conn, ConnectError> {
        let limit = timeout.unwrap_or(self.connect_timeout);
        let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout(addr, limit)),
            Ok(Err(e)) => return Err(ConnectError::Failed(addr, e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = self
            .http1
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Handshake(addr, e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(endpoint = %addr, error = %e, "upstream connection ended");
            }
        });
        Ok(Conn { sender, reused: false })
    }

    /// Sends one request and waits for the response head (within `timeout`, default
    /// `--upstream-response-timeout`).
    pub async fn send(
        &self,
        conn: &mut Conn,
        req: Request<RequestBody>,
        timeout: Option<Duration>,
    ) -> Result<Response<Incoming>, SendError> {
        let limit = timeout.unwrap_or(self.response_timeout);
        match tokio::time::timeout(limit, conn.sender.try_send_request(req)).await {
            Err(_) => Err(SendError::Timeout(limit)),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(mut e)) => match e.take_message() {
                Some(req) => Err(SendError::NotSent(Box::new(req))),
                None => Err(SendError::Failed(source_chain(e.error()))),
            },
        }
    }

    /// Wraps a response body so that the connection returns to its endpoint's pool once the
    /// body has been read to its end.
    /// `idle`: the longest wait between two reads of the body (`proxy-read-timeout`).
    pub fn body(
        &self,
        body: Incoming,
        conn: Conn,
        ep: Arc<EndpointState>,
        counter: Counter,
        idle: Option<Duration>,
    ) -> ResponseBody {
        ResponseBody {
            inner: body,
            checkin: Some((conn.sender, ep)),
            counter,
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
        }
    }
}

/// A response body from upstream, counted, that gives its connection back when done.
pub struct ResponseBody {
    inner: Incoming,
    checkin: Option<(Sender, Arc<EndpointState>)>,
    counter: Counter,
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl ResponseBody {
    fn done(&mut self) {
        if let Some((sender, ep)) = self.checkin.take() {
            ep.idle.put(sender);
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.counter.inc_by(d.len() as u64);
                }
                if this.inner.is_end_stream() {
                    this.done();
                }
                if let Some((d, sleep)) = &mut this.idle {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *d);
                }
            }
            Poll::Ready(None) => this.done(),
            // A broken body leaves a broken connection: it is not pooled.
            Poll::Ready(Some(Err(_))) => this.checkin = None,
            Poll::Pending => {
                if let Some((d, sleep)) = &mut this.idle
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    this.checkin = None;
                    return Poll::Ready(Some(Err(format!("upstream sent nothing for {d:?}").into())));
                }
            }
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Closes idle upstream connections past the idle timeout, and lets the registry forget
/// endpoints no Config names any more. Runs for the life of the process.
pub async fn reap_idle(registry: Arc<crate::balance::Registry>, idle_timeout: Duration) {
    let every = (idle_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        tokio::time::sleep(every).await;
        for ep in registry.sweep() {
            ep.idle.reap(idle_timeout);
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
