//! The admin listeners: /healthz, /readyz, /metrics (Prometheus text) and, on the full admin
//! listener only, /routes (JSON: every host, Service and endpoint, so never for the network)
//! and /explain (`portico explain` for one request).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::proxy::live::{Live, Plane};

pub struct Admin {
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// Cleared when shutdown starts, so that load balancers stop sending traffic first.
    pub accepting: AtomicBool,
}

/// The `/routes` document: hosts → paths → backend → endpoints (with each one's current
/// failure streak), TLS hosts, diagnostics.
pub fn routes_json(plane: &Plane) -> Value {
    let cfg = &plane.config;
    let mut hosts: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in cfg.route_list.iter() {
        let (path, path_type) = match &r.path {
            Some(p) => (json!(p.path), json!(p.path_type)),
            None => (Value::Null, json!("DefaultBackend")),
        };
        let mut entry = json!({
            "path": path,
            "pathType": path_type,
            "ingress": r.ingress.to_string(),
            "sslRedirect": r.ssl_redirect,
            "backend": backend_json(plane, r.backend),
            "limits": r.policy.limits,
            "rate": r.policy.rate,
        });
        // The canary's own route is listed too; the primary says which it is and its rules.
        if let Some(c) = &r.canary {
            entry["canary"] = json!({"ingress": c.route.ingress.to_string(), "rules": c});
        }
        // A Gateway API route: its HTTPRoute (in "ingress"), rule and parent listeners.
        if let Some(o) = cfg.gateway.origin(r.id) {
            entry["gateway"] = json!(o);
        }
        hosts.entry(r.host.to_string()).or_default().push(entry);
    }
    json!({
        "generation": cfg.generation,
        "hosts": hosts,
        "tls": cfg.certs.sources,
        "passthrough": cfg
            .passthrough
            .iter()
            .map(|(host, &id)| (host.clone(), backend_json(plane, id)))
            .collect::<BTreeMap<_, _>>(),
        "admitted": cfg.admitted.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        "ignored": cfg.ignored.iter().map(|(k, why)| json!({"ingress": k.to_string(), "reason": why})).collect::<Vec<_>>(),
        "diagnostics": cfg.diagnostics,
        "replicas": cfg.replicas,
        "settings": cfg.global,
        "gatewayApi": cfg.gateway,
        // The ports Gateway listeners are served on, each listener hostname's route ids.
        "gatewayListeners": cfg.gateway_listeners,
    })
}

/// A backend as compiled, its endpoints with their failure streaks.
fn backend_json(plane: &Plane, id: usize) -> Value {
    let (Some(b), Some(state)) = (plane.config.backends.get(id), plane.backends.get(id)) else {
        return Value::Null;
    };
    let mut v = json!(b);
    let endpoints = b.ready().iter().chain(b.terminating()).zip(state.endpoints.iter());
    let failures: Vec<u32> = endpoints.map(|(_, s)| s.state.failures()).collect();
    if let Some(target) = v.get_mut("target") {
        for (list, skip) in [("ready", 0), ("terminating", b.ready().len())] {
            if let Some(Value::Array(eps)) = target.get_mut(list) {
                for (i, ep) in eps.iter_mut().enumerate() {
                    ep["failures"] = json!(failures.get(skip + i).copied().unwrap_or(0));
                }
            }
        }
    }
    v
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// What an admin listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pages {
    /// Everything, `/routes` included: for a loopback address.
    All,
    /// Probes and metrics only: for an address pods and scrapers reach.
    Probes,
}

impl Admin {
    fn answer(&self, req: &Request<Incoming>, pages: Pages) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
            "/readyz" => {
                if self.live.is_ready() && self.accepting.load(Ordering::Acquire) {
                    text(StatusCode::OK, "ready\n".into(), "text/plain")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into(), "text/plain")
                }
            }
            "/routes" if pages == Pages::All => {
                let doc = routes_json(&self.live.load());
                let body = serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                text(StatusCode::OK, body + "\n", "application/json")
            }
            "/explain" if pages == Pages::All => {
                let (status, body, content_type) =
                    crate::explain::serve(&self.live.load().config, req.uri().query().unwrap_or(""));
                text(status, body, content_type)
            }
            "/metrics" => text(
                StatusCode::OK,
                self.metrics.encode(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
        }
    }

    /// Serves until `shutdown` turns true.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, pages: Pages, mut shutdown: watch::Receiver<bool>) {
        loop {
            let stream = tokio::select! {
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
                a = listener.accept() => match a {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.answer(&req, pages)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }
}
