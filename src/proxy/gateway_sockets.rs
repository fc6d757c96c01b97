//! The sockets of Gateway listeners: one per serving point of the live Config that Portico's
//! own sockets do not serve, opened and closed as Configs are published; and the choice of a
//! Gateway request's route by the socket it came in on.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use tokio::sync::watch;

use super::handler::Unrouted;
use super::headers::Peer;
use super::listener::{self, Server};
use super::live::Live;
use super::mtls::Acceptor;
use super::{Body, plain};
use crate::config::listeners::{Found, Points};
use crate::config::route::RouteRequest;
use crate::config::{Config, Route, RouteTable};

/// The accept loops' name (metrics label) for Gateway listener sockets.
pub const NAME: &str = "gateway";

/// The route of a request when the live Config has Gateway listeners (out of line: an
/// Ingress-only Config never comes here).
#[inline(never)]
pub fn route<'c>(
    points: &'c Points,
    ingress: &'c RouteTable,
    peer: &Peer,
    host: &str,
    path: &str,
    req: &Request<Incoming>,
) -> Result<Option<&'c Arc<Route>>, Unrouted> {
    let sni = peer.sni.get().map(|s| &**s);
    let at = (peer.socket.port, peer.socket.own, peer.tls);
    match points.route_request(ingress, at, sni, host, path, &RouteRequest::of(req)) {
        Found::Route(r) => Ok(Some(r)),
        Found::None => Ok(None),
        Found::Misdirected => Err(Unrouted::Misdirected),
    }
}

/// The answer to a request whose host is another HTTPS listener's than its TLS server
/// name's: the client should open a connection for that host.
pub fn misdirected() -> http::Response<Body> {
    plain(
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected request: this host is not served on this TLS connection",
    )
}

/// The ports (with whether TLS) a Config wants sockets for: its serving points, except those
/// Portico's own sockets serve (their ports, and 80 and 443, see [`Points::point`]).
pub fn wanted(config: &Config, own: [u16; 2]) -> BTreeMap<u16, bool> {
    let Some(points) = &config.gateway_listeners else {
        return BTreeMap::new();
    };
    points
        .points
        .iter()
        .filter(|p| match p.tls {
            false => p.target != own[0] && p.target != 80,
            true => p.target != own[1] && p.target != 443,
        })
        .filter(|p| !own.contains(&p.target))
        .map(|p| (p.target, p.tls))
        .collect()
}

struct Open {
    tls: bool,
    stop: watch::Sender<bool>,
}

/// Keeps a socket on `ip` open for each port the live Config [`wanted`] (`own`: the ports
/// of Portico's HTTP and HTTPS sockets), serving it like those (TLS with `tls`), until
/// `shutdown`. A port that cannot be bound is logged, recorded in `live` (the next compile
/// reports its listeners not Programmed) and tried again with the next Config.
pub async fn run(
    live: Arc<Live>,
    ip: IpAddr,
    own: [u16; 2],
    server: Server,
    tls: Acceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut published = live.subscribe();
    let mut open: BTreeMap<u16, Open> = BTreeMap::new();
    loop {
        let wanted = wanted(&live.config(), own);
        for port in live.unbound_ports().into_keys().filter(|p| !wanted.contains_key(p)) {
            live.set_unbound(port, None);
        }
        open.retain(|port, o| {
            let keep = wanted.get(port) == Some(&o.tls);
            if !keep {
                let _ = o.stop.send(true);
                tracing::info!(port, "Gateway listener socket closed");
            }
            keep
        });
        for (&port, &is_tls) in &wanted {
            if open.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(ip, port);
            match listener::bind(addr) {
                Ok(l) => {
                    let (stop, stopped) = watch::channel(false);
                    let acceptor = is_tls.then(|| tls.clone());
                    tokio::spawn(listener::serve(NAME, l, acceptor, server.clone(), stopped));
                    open.insert(port, Open { tls: is_tls, stop });
                    live.set_unbound(port, None);
                    tracing::info!(%addr, tls = is_tls, "Gateway listener socket open");
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot bind a Gateway listener's port");
                    live.set_unbound(port, Some(e.to_string()));
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            changed = published.changed() => if changed.is_err() { break },
        }
    }
    for o in open.values() {
        let _ = o.stop.send(true);
    }
}
