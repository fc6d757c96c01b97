//! Listeners: accept, connection limits, TLS handshakes, HTTP/1.1 + HTTP/2 serving, graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, Semaphore, watch};

use super::Settings;
use super::client::{ClientIo, Serving};
use super::front::{Front, Start};
use super::handler::Proxy;
use super::headers::{Peer, Socket};
use super::keepalive::{self, Budget};
use super::mtls::Acceptor;
use super::ticket::TicketHold;
use crate::metrics::{ListenerLabels, OutcomeLabels};

/// Pending-connection queue of the client listeners; the kernel caps it at
/// `net.core.somaxconn` (4096 on current kernels), as ingress-nginx sizes its `backlog`.
/// tokio's `TcpListener::bind` asks for 128, which a burst of new connections overflows,
/// and a dropped handshake is retried by the client only after a second.
pub const BACKLOG: u32 = 4096;

/// A listening socket on `addr` (address reuse on, as tokio's `bind`) with [`BACKLOG`], for
/// protocols where the client speaks first (HTTP, TLS): a connection is handed over once its
/// first bytes are there (see [`defer_accept`]).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    defer_accept(&socket)?;
    socket.listen(BACKLOG)
}

/// `TCP_DEFER_ACCEPT` (nginx's `listen ... deferred`, HAProxy's `defer-accept`): the kernel
/// queues a connection for accept only when its first data (request line, ClientHello)
/// arrives, or after about a second without. Each new connection then wakes Portico once
/// instead of twice and its first read finds data; a connection that never sends anything
/// costs no task. Measured with `h2load` making a resumed TLS connection per request:
/// function-call interrupts into the proxy's core fell from 1.8-2.6 to 1.3-1.4 per
/// connection.
#[cfg(target_os = "linux")]
fn defer_accept(socket: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // Seconds; nginx uses 1 as well (the kernel turns it into SYN-ACK retransmissions).
    let secs: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a pointer to a live c_int,
    // on a descriptor `socket` owns for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const secs).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn defer_accept(_: &TcpSocket) -> std::io::Result<()> {
    Ok(())
}

/// The HTTP/1.1 + HTTP/2 server settings from the limits.
pub fn http_builder(s: &Settings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        // Names in conventional case (`Content-Type`), as nginx writes its own; an upstream's
        // other spellings are kept by `case`.
        .title_case_headers(true)
        .timer(TokioTimer::new())
        // The head deadline is kept by `ClientIo`, with one timer per connection.
        .header_read_timeout(None)
        // A client that closes its sending side after a request still gets the response;
        // hyper also skips its read for an early close while each request is served.
        .half_close(true)
        .max_buf_size(s.max_header_bytes.max(8192))
        .max_headers(s.max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(s.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(s.h2_max_local_error_reset_streams)
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(s.h2_keepalive_interval)
        .keep_alive_timeout(s.client_header_timeout.min(s.h2_keepalive_interval));
    b
}

/// Graceful shutdown of client connections. Whether a drain has begun is one atomic load
/// per poll of a connection, whose task is registered for the wake-up once, rather than a
/// channel polled at every turn.
#[derive(Default)]
pub struct Drain {
    draining: AtomicBool,
    begun: Arc<Notify>,
    open: AtomicUsize,
    closed: Notify,
}

impl Drain {
    /// Counts a connection as open until the returned handle is dropped. Taken in the
    /// accept loop, so a drain that begins after it waits for the connection.
    pub fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::SeqCst);
        Open(self.clone())
    }

    /// Tells every connection to finish its requests in flight and close; waits until all
    /// have closed, at most `grace`. False when some were still open.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        self.begun.notify_waiters();
        let all_closed = async {
            loop {
                let mut closed = pin!(self.closed.notified());
                closed.as_mut().enable();
                if self.open.load(Ordering::SeqCst) == 0 {
                    return;
                }
                closed.await;
            }
        };
        tokio::time::timeout(grace, all_closed).await.is_ok()
    }
}

/// An open connection of a `Drain`.
pub struct Open(Arc<Drain>);

impl Open {
    /// Serves `conn` to its end; once a drain begins, the connection finishes what is in
    /// flight and closes (HTTP/1: after the current response; HTTP/2: GOAWAY).
    /// `budget`, when given, closes it the same way once spent (`keep-alive-requests`).
    pub fn serve<C: GracefulConnection>(self, conn: C, budget: Option<Arc<Budget>>) -> Watched<C> {
        Watched {
            conn: Box::pin(conn),
            begun: Box::pin(self.0.begun.clone().notified_owned()),
            spent: budget.map(|b| (Box::pin(b.spent().notified_owned()), b)),
            registered: false,
            shut: false,
            open: self,
        }
    }
}

/// A connection served until it ends, told to close when a drain begins.
pub struct Watched<C> {
    conn: Pin<Box<C>>,
    begun: Pin<Box<OwnedNotified>>,
    /// The connection's last request has come in (`keep-alive-requests`): notified then, and
    /// the budget that says so.
    spent: Option<(Pin<Box<OwnedNotified>>, Arc<Budget>)>,
    /// `begun` and `spent` have been polled once: the task is woken when a drain begins or
    /// the last request has come in. From then on a poll reads their flags (one atomic load
    /// each) instead of polling them, which takes the notifier's lock.
    registered: bool,
    shut: bool,
    open: Open,
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = Result<(), C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.shut {
            let mut draining = this.open.0.draining.load(Ordering::Relaxed);
            if !this.registered {
                this.registered = true;
                draining |= this.begun.as_mut().poll(cx).is_ready();
                if let Some((spent, _)) = &mut this.spent {
                    draining |= spent.as_mut().poll(cx).is_ready();
                }
            } else if let Some((_, budget)) = &this.spent {
                draining |= budget.is_spent();
            }
            if draining {
                this.conn.as_mut().graceful_shutdown();
                this.shut = true;
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

/// What every accept loop shares.
#[derive(Clone)]
pub struct Server {
    pub proxy: Arc<Proxy>,
    pub builder: Arc<auto::Builder<TokioExecutor>>,
    /// Tracks open connections so that shutdown can drain them.
    pub drain: Arc<Drain>,
    /// `max_connections` permits.
    pub limit: Arc<Semaphore>,
    /// PROXY protocol and SSL passthrough, when enabled.
    pub front: Front,
}

/// One accept loop. Returns when `shutdown` turns true; connections it started are
/// tracked by `graceful` and drained by the caller.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Acceptor>,
    server: Server,
    mut shutdown: watch::Receiver<bool>,
) {
    let Server {
        proxy,
        builder,
        drain,
        limit,
        front,
    } = server;
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let tls = tls.map(|a| a.on_port(local_port));
    let socket = Socket {
        port: local_port,
        own: name != super::gateway_sockets::NAME,
    };
    loop {
        let (stream, peer_addr) = tokio::select! {
            biased;
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(listener = name, client = %peer_addr, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let open = drain.open();
        let gauge = proxy
            .metrics
            .open_connections
            .get_or_create(&ListenerLabels { listener: name })
            .clone();
        let is_tls = tls.is_some();
        gauge.inc();
        let held = Held {
            gauge,
            _permit: permit,
            peer_addr,
        };
        // Without the PROXY protocol or passthrough the task is the connection's own future,
        // one layer less for every poll of it.
        // `use-proxy-protocol` as the Config says now (`--use-proxy-protocol`, `--configmap`).
        // Passthrough hosts (ssl-passthrough Ingresses, TLSRoutes): the SNI is read first.
        let (proxy_protocol, passthrough) = {
            let plane = proxy.live.load();
            (
                plane.config.global.use_proxy_protocol,
                is_tls && plane.config.reads_sni(),
            )
        };
        if front.active(passthrough, proxy_protocol) {
            tokio::spawn(async move {
                match front
                    .start(stream, peer_addr, socket, is_tls, proxy_protocol, &proxy)
                    .await
                {
                    Start::Serve(io, peer) => connection(io, peer, tls, proxy, builder, open, held).await,
                    Start::Done => drop(held),
                }
            });
        } else {
            let server_addr = stream.local_addr().ok().map(|a| a.ip());
            let peer = Peer::new(peer_addr.ip(), local_port, is_tls).ends(peer_addr.port(), server_addr);
            let peer = Arc::new(peer.socket(socket));
            tokio::spawn(connection(stream, peer, tls, proxy, builder, open, held));
        }
    }
}

/// What a connection holds until it ends: its place under the connection limit and in the
/// open-connections gauge.
struct Held {
    gauge: prometheus_client::metrics::gauge::Gauge,
    _permit: tokio::sync::OwnedSemaphorePermit,
    peer_addr: SocketAddr,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Serves one client connection (TLS first when `tls` is given) until it ends or is drained.
async fn connection<IO>(
    stream: IO,
    peer: Arc<Peer>,
    tls: Option<Acceptor>,
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    open: Open,
    held: Held,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // `keep-alive` from the `--configmap` for connections opened after it changed, else
    // `--client-header-timeout`: the idle time between requests, and the time a head may take.
    let header_timeout = proxy
        .live
        .load()
        .config
        .global
        .keep_alive
        .unwrap_or(proxy.settings.client_header_timeout);
    // `keep-alive-requests` as the Config says when the connection opens.
    let budget = Budget::new(proxy.live.load().config.global.keep_alive_requests);
    let spent = budget.clone();
    let service = {
        let proxy = proxy.clone();
        let peer = peer.clone();
        service_fn(move |req| {
            let proxy = proxy.clone();
            let peer = peer.clone();
            let serving = Serving::new(peer.clone());
            let last = keepalive::last(&budget, req.version());
            proxy.handle(req, peer, serving, last)
        })
    };
    let result = match tls {
        None => {
            let io = ClientIo::new(stream, peer.clone(), header_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            open.serve(conn.into_owned(), spent).await
        }
        Some(acceptor) => {
            let hs = tokio::time::timeout(
                proxy.settings.tls_handshake_timeout,
                acceptor.accept(TicketHold::new(stream)),
            )
            .await;
            let outcome = match &hs {
                Ok(Ok(_)) => "ok",
                Ok(Err(_)) => "error",
                Err(_) => "timeout",
            };
            proxy
                .metrics
                .tls_handshakes
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
            match hs {
                Ok(Ok(mut tls_stream)) => {
                    acceptor.inspect(&peer, tls_stream.get_ref().1);
                    if let Some(name) = tls_stream.get_ref().1.server_name() {
                        let _ = peer.sni.set(name.into());
                    }
                    tls_stream.get_mut().0.release();
                    let io = ClientIo::new(tls_stream, peer.clone(), header_timeout);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                    open.serve(conn.into_owned(), spent).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(client = %peer.addr, error = %e, "TLS handshake failed");
                    Ok(())
                }
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %held.peer_addr, error = %e, "connection ended with an error");
    }
}
