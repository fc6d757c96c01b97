//! Gateway listeners as serving points: which routes a request may reach, from the port it
//! came in on and its host (the most specific listener hostname wins), as plain data.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::gateway::Via;
use super::route::{HostPattern, Route, RouteRequest, RouteTable, lower_host};

/// Every port Portico serves Gateway listeners on, ascending by `target`. Empty when no
/// Gateway has a usable HTTP, HTTPS or TLS listener (`Config::gateway_listeners` is `None`).
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Points {
    pub points: Vec<Point>,
}

/// One port Portico's pods listen on for Gateway listeners (`GatewayPort::target`).
#[derive(Debug, PartialEq, Serialize)]
pub struct Point {
    pub target: u16,
    /// TLS is terminated (or passed through) on this port: its listeners are HTTPS or TLS.
    pub tls: bool,
    /// The HTTP routes of its listeners, one table per listener hostname, most specific
    /// first (see [`specificity`]).
    pub listeners: Vec<ListenerTable>,
    /// gwfront: the client-certificate validation of the Gateway port served here.
    pub frontend: Option<Arc<super::frontend_tls::FrontendValidation>>,
}

/// The routes of the listeners with one hostname on a [`Point`] (several only when
/// Gateways share Portico's address and each has such a listener).
#[derive(Serialize)]
pub struct ListenerTable {
    pub hostname: HostPattern,
    pub via: Vec<Via>,
    /// `Route::id`s of the routes in `table`, in the order they were added.
    pub routes: Vec<usize>,
    #[serde(skip)]
    pub table: Arc<RouteTable>,
}

/// Equal lists of routes in equal order build equal tables.
impl PartialEq for ListenerTable {
    fn eq(&self, other: &Self) -> bool {
        self.hostname == other.hostname && self.via == other.via && self.routes == other.routes
    }
}

impl fmt::Debug for ListenerTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerTable")
            .field("hostname", &self.hostname)
            .field("routes", &self.routes)
            .finish()
    }
}

/// The order listeners are tried in for a host: an exact name first, then `*.` names by
/// length (`*.foo.example.com` before `*.example.com`), then the listener without
/// hostname. Smaller is more specific.
pub fn specificity(h: &HostPattern) -> (u8, std::cmp::Reverse<usize>) {
    use std::cmp::Reverse;
    match h {
        HostPattern::Exact(n) => (0, Reverse(n.len())),
        HostPattern::Suffix(s) | HostPattern::Wildcard(s) => (1, Reverse(s.len())),
        HostPattern::Regex(_) => (2, Reverse(0)),
        HostPattern::Any => (3, Reverse(0)),
    }
}

/// Whether a listener hostname takes a (lower-case) host: Gateway `*.` names match any
/// number of extra labels.
fn takes(pattern: &HostPattern, host: &str) -> bool {
    match pattern {
        HostPattern::Exact(n) => n == host,
        HostPattern::Suffix(s) | HostPattern::Wildcard(s) => {
            host.len() > s.len() + 1 && host.ends_with(s.as_str()) && host.as_bytes()[host.len() - s.len() - 1] == b'.'
        }
        HostPattern::Regex(re) => re.0.is_match(host),
        HostPattern::Any => true,
    }
}

/// What a request on a Gateway serving point gets.
#[derive(Debug)]
pub enum Found<'c> {
    Route(&'c Arc<Route>),
    /// No route: 404.
    None,
    /// The Host belongs to another HTTPS listener than the one the TLS handshake's SNI
    /// chose: the spec's 421.
    Misdirected,
}

impl Point {
    /// The index of the most specific listener whose hostname takes `host`.
    pub fn listener(&self, host: &str) -> Option<usize> {
        let mut buf = [0u8; 256];
        let host = lower_host(host, &mut buf).unwrap_or("");
        self.listeners.iter().position(|l| takes(&l.hostname, host))
    }
}

impl Points {
    /// The serving point of a connection: on a socket of Gateway listeners, the one with
    /// its port; on Portico's own HTTP or HTTPS socket (`own`), its port's, else the
    /// well-known port's (80, 443) of the same protocol, as when Gateways share Portico's
    /// address.
    pub fn point(&self, socket: u16, own: bool, tls: bool) -> Option<&Point> {
        let find = |port: u16| {
            self.points
                .binary_search_by_key(&port, |p| p.target)
                .ok()
                .map(|i| &self.points[i])
                .filter(|p| p.tls == tls)
        };
        match find(socket) {
            Some(p) => Some(p),
            None if own => find(if tls { 443 } else { 80 }),
            None => None,
        }
    }

    /// The route for a request that came in on `socket` (`own`: one of Portico's own
    /// sockets, which serve the Ingresses as well), `sni` the TLS server name of its
    /// connection. On Portico's own sockets the Ingresses come first (their routes as
    /// always, without the catch-all default backend), then the listeners, then the
    /// catch-all. Elsewhere only the routes of the listener the host picks.
    pub fn route_request<'c>(
        &'c self,
        ingress: &'c RouteTable,
        (socket, own, tls): (u16, bool, bool),
        sni: Option<&str>,
        host: &str,
        path: &str,
        req: &RouteRequest<'_>,
    ) -> Found<'c> {
        if own && let Some(r) = ingress.route_hosts(host, path, req) {
            return Found::Route(r);
        }
        if let Some(point) = self.point(socket, own, tls)
            && let Some(i) = point.listener(host)
        {
            if tls
                && let Some(sni) = sni.filter(|s| !s.is_empty())
                && point.listener(sni) != Some(i)
            {
                return Found::Misdirected;
            }
            if let Some(r) = point.listeners[i].table.route_request(host, path, req) {
                return Found::Route(r);
            }
        }
        match own.then(|| ingress.catch_all()).flatten() {
            Some(r) => Found::Route(r),
            None => Found::None,
        }
    }
}

#[cfg(test)]
mod tests;
