//! What comes before HTTP or TLS on a client connection, when asked for: the PROXY protocol
//! header (`--use-proxy-protocol`) and, on the HTTPS listener, the ClientHello's SNI that
//! sends a passthrough host's connection to its pod unterminated (`ssl-passthrough` Ingresses
//! with `--enable-ssl-passthrough`, TLSRoutes) or refuses a name a Gateway TLS listener
//! claims but nothing serves (`Config::sni_start`). When the live Config has none of these,
//! connections never come here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::handler::Proxy;
use super::headers::{Peer, Socket};
use super::rewind::Rewind;
use super::{passthrough, proxy_protocol};
use crate::config::SniStart;

/// Whether every connection starts with a PROXY protocol v1 or v2 header (one without is
/// closed) is the live Config's `use_proxy_protocol`, and whether TLS connections are looked
/// at for a passthrough host before termination is whether its `passthrough` table has any,
/// both read once per connection.
#[derive(Clone, Copy, Debug)]
pub struct Front {
    /// How long the header may take to arrive (ingress-nginx's `proxy-protocol-header-timeout`).
    pub proxy_protocol_timeout: Duration,
}

/// What to do with a connection once its front is read.
pub enum Start {
    /// Serve it (HTTP, or TLS then HTTP) as the client at `Peer`, the bytes read so far first.
    Serve(Rewind<TcpStream>, Arc<Peer>),
    /// Passed through to a pod, or closed.
    Done,
}

impl Front {
    /// Whether a connection needs [`Front::start`]: `passthrough` is whether the listener is
    /// TLS and the live Config has passthrough hosts.
    #[inline(always)]
    pub fn active(&self, passthrough: bool, proxy_protocol: bool) -> bool {
        proxy_protocol || passthrough
    }

    pub async fn start(
        &self,
        mut stream: TcpStream,
        peer_addr: SocketAddr,
        socket: Socket,
        tls: bool,
        proxy_protocol: bool,
        proxy: &Proxy,
    ) -> Start {
        let (mut client, mut port, mut https) = (peer_addr.ip(), socket.port, tls);
        let (mut client_port, mut server_addr) = (peer_addr.port(), stream.local_addr().ok().map(|a| a.ip()));
        let mut read = Vec::new();
        if proxy_protocol {
            match proxy_protocol::read(&mut stream, self.proxy_protocol_timeout).await {
                Ok((header, rest)) => {
                    if let Some(src) = header.source {
                        client = src.ip();
                        client_port = src.port();
                    }
                    if let Some(dst) = header.destination {
                        server_addr = Some(dst.ip());
                        // As ingress-nginx: X-Forwarded-Port is the port the client connected
                        // to, and plain HTTP to port 443 is a load balancer that terminated TLS.
                        port = dst.port();
                        https |= dst.port() == 443;
                    }
                    read = rest;
                }
                Err(e) => {
                    tracing::debug!(client = %peer_addr, error = %e, "connection closed: no valid PROXY protocol header");
                    return Start::Done;
                }
            }
        }
        if tls && proxy.live.load().config.reads_sni() {
            let sni = passthrough::read_sni(&mut stream, &mut read, proxy.settings.tls_handshake_timeout).await;
            let name = match sni {
                Ok(name) => name,
                // Not a ClientHello this parser reads: rustls answers it as a bad handshake.
                Err(passthrough::ReadError::Hello(_)) => None,
                Err(e) => {
                    tracing::debug!(client = %client, error = %e, "TLS connection closed before its ClientHello");
                    return Start::Done;
                }
            };
            let backend = match proxy.live.load().config.sni_start(socket.port, name.as_deref()) {
                SniStart::Splice(b) => Some(b.clone()),
                SniStart::Terminate => None,
                SniStart::Refuse => {
                    // Gateway semantics: no listener serves the name, so no certificate is shown.
                    tracing::debug!(client = %client, sni = ?name, "TLS connection refused: no Gateway listener serves its SNI");
                    return Start::Done;
                }
            };
            if let Some(backend) = backend {
                let name = name.unwrap_or_default();
                let started = std::time::Instant::now();
                match passthrough::splice(stream, &read, &backend, proxy.settings.upstream_connect_timeout).await {
                    Ok((upstream, sent, received)) if proxy.access_log => tracing::info!(
                        target: "portico::access",
                        client = %client,
                        sni = %name,
                        passthrough = true,
                        upstream = %upstream,
                        service = %backend.service,
                        bytes_sent = sent,
                        bytes_received = received,
                        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(client = %client, sni = %name, service = %backend.service, error = %e, "passthrough connection failed")
                    }
                }
                return Start::Done;
            }
        }
        Start::Serve(
            Rewind::new(read, stream),
            Arc::new(
                Peer::new(client, port, https)
                    .ends(client_port, server_addr)
                    .socket(socket),
            ),
        )
    }
}
