//! Upstream side: the pooled HTTP/1.1 client, timeouts, and ExternalName resolution.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{Body, Settings};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing was sent: the request may go to another endpoint.
    #[error("connect to {0} failed: {1}")]
    Connect(SocketAddr, String),
    #[error("{0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("{0}: {1}")]
    Failed(SocketAddr, String),
}

/// Keep-alive connections per endpoint, HTTP/1.1.
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(s: &Settings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(s.upstream_connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(s.upstream_idle_timeout)
            .set_host(false)
            .build(connector);
        Self {
            client,
            response_timeout: s.upstream_response_timeout,
        }
    }

    /// Sends a request whose URI already names the endpoint (`http://ip:port/path`).
    pub async fn send(&self, addr: SocketAddr, req: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(addr, self.response_timeout)),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(addr, source_chain(&e))),
            Ok(Err(e)) => {
                // A connect timeout is reported as a connect error by the connector; anything
                // else happened after the request started.
                Err(UpstreamError::Failed(addr, source_chain(&e)))
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
