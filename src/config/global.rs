//! Controller-wide settings: the command line's values, overridden by the keys of the
//! ingress-nginx ConfigMap (`--configmap`), as plain data published in each Config.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::Serialize;

use super::Trusted;
use super::auth::ExternalAuth;
use super::headers::HeaderList;
use super::policy::Policy;
use crate::model::ObjectKey;

/// What applies to every route and connection unless an Ingress says otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Global {
    /// The ConfigMap these settings were read from (`None`: command-line values only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configmap: Option<ObjectKey>,
    /// Defaults of the route settings an Ingress's annotations can override:
    /// `proxy-body-size`, `proxy-*-timeout`, `proxy-next-upstream-tries`, `limit-rate`,
    /// `limit-rate-after`.
    pub routes: RouteDefaults,
    /// Peers whose X-Forwarded-* headers are believed (`--trusted-proxies`, or
    /// `use-forwarded-headers` with `proxy-real-ip-cidr`), and `forwarded-for-header`.
    pub trusted: Trusted,
    /// `hsts` and its settings; `None`: no Strict-Transport-Security header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
    /// `global-auth-url` and its family (or `--global-auth-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_auth: Option<Arc<ExternalAuth>>,
    /// `allow-snippet-annotations`: accepted, and without effect (snippets stay refused).
    pub allow_snippet_annotations: bool,
    /// Why the ConfigMap's `global-auth-url` cannot be used, when there is no other global
    /// auth: Ingresses it would cover answer 503 rather than go unauthenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_auth_denied: Option<Arc<str>>,
    /// `add-headers`: headers added to every response.
    #[serde(skip_serializing_if = "HeaderList::is_empty")]
    pub add_headers: HeaderList,
    /// `proxy-set-headers`: headers set on every upstream request.
    #[serde(skip_serializing_if = "HeaderList::is_empty")]
    pub proxy_set_headers: HeaderList,
    /// `global-allowed-response-headers`, lowercased: the only names an Ingress's
    /// `custom-headers` may set.
    pub allowed_response_headers: Vec<String>,
    /// `use-proxy-protocol` (or `--use-proxy-protocol`): every new connection starts with a
    /// PROXY protocol header.
    pub use_proxy_protocol: bool,
    /// `ssl-protocols` as the `--configmap` gives it (checked); `None`: `--ssl-protocols`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_protocols: Option<String>,
    /// `ssl-ciphers` as the `--configmap` gives it (checked); `None`: `--ssl-ciphers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_ciphers: Option<String>,
    /// `compute-full-forwarded-for`: X-Forwarded-For from a trusted peer is its chain with
    /// the peer appended (Portico's default); `false`: the client address alone.
    pub compute_full_forwarded_for: bool,
    /// `worker-processes` (0: `auto`): read when Portico starts; a later change is logged as
    /// needing a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_processes: Option<usize>,
    /// `upstream-keepalive-timeout`: how long an idle upstream connection is kept for reuse
    /// (`None`: 60 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_keepalive_timeout: Option<Duration>,
    /// `keep-alive`: how long a client connection may idle between requests (`None`:
    /// `--client-header-timeout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Duration>,
    /// `custom-http-errors`: the codes every Ingress without the annotation intercepts (with
    /// an error backend: its `default-backend` or `--default-backend-service`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_http_errors: Vec<u16>,
    /// `limit-req-status-code`: the answer over `limit-rps`/`limit-rpm`.
    pub limit_req_status: u16,
    /// `limit-conn-status-code`: the answer over `limit-connections`.
    pub limit_conn_status: u16,
    /// `use-gzip`, `enable-brotli` and their settings (`--use-gzip`, `--enable-brotli`).
    pub compression: crate::config::compress::Compression,
    /// `log-format-upstream` and its escaping: the access log's line (`--access-log-format nginx`).
    pub log_format: Arc<crate::config::access_log::LogFormat>,
    /// `keep-alive-requests`: requests one client connection serves before Portico closes
    /// it (`None`: no limit; ingress-nginx's default, 1000, unless the ConfigMap says
    /// otherwise), for connections opened after a change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive_requests: Option<u32>,
    /// `upstream-keepalive-connections`, `-requests` and `-time`.
    pub upstream_reuse: UpstreamReuse,
    /// `ssl-session-cache`, `ssl-session-cache-size`, `ssl-session-timeout`,
    /// `ssl-session-tickets`: for handshakes after a change.
    pub ssl_session: crate::config::tls_options::SslSession,
    /// `no-auth-locations`: Ingress paths starting with one of these get no authentication
    /// (ingress-nginx's default: the ACME HTTP-01 challenge path).
    pub no_auth_locations: Vec<String>,
    /// OpenTelemetry tracing: `--otlp-endpoint`, `enable-opentelemetry` and the `otel-*` keys.
    pub otel: crate::config::otel::Otel,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            configmap: None,
            routes: RouteDefaults::default(),
            trusted: Trusted::default(),
            hsts: Some(Hsts::default()),
            global_auth: None,
            allow_snippet_annotations: false,
            global_auth_denied: None,
            add_headers: HeaderList::default(),
            proxy_set_headers: HeaderList::default(),
            allowed_response_headers: Vec::new(),
            use_proxy_protocol: false,
            ssl_protocols: None,
            ssl_ciphers: None,
            compute_full_forwarded_for: true,
            worker_processes: None,
            upstream_keepalive_timeout: None,
            keep_alive: None,
            custom_http_errors: Vec::new(),
            limit_req_status: crate::config::limits::Limits::DEFAULT_STATUS,
            limit_conn_status: crate::config::limits::Limits::DEFAULT_STATUS,
            compression: Default::default(),
            log_format: Default::default(),
            keep_alive_requests: Some(Self::DEFAULT_KEEP_ALIVE_REQUESTS),
            upstream_reuse: UpstreamReuse::default(),
            ssl_session: Default::default(),
            no_auth_locations: vec![Self::ACME_CHALLENGE.to_string()],
            otel: Default::default(),
        }
    }
}

impl Global {
    /// ingress-nginx's default `no-auth-locations`.
    pub const ACME_CHALLENGE: &str = "/.well-known/acme-challenge";
    /// The most `keep-alive-requests` (and `upstream-keepalive-requests`) takes.
    pub const MAX_REQUESTS_PER_CONNECTION: u32 = 10_000_000;
    /// ingress-nginx's `keep-alive-requests` default.
    pub const DEFAULT_KEEP_ALIVE_REQUESTS: u32 = 1000;
}

/// How upstream HTTP/1.1 connections are kept for reuse; by default as ingress-nginx's
/// defaults (320 idle, 10000 requests, 1h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamReuse {
    /// `upstream-keepalive-connections`: idle connections kept per endpoint (`None`:
    /// [`UpstreamReuse::DEFAULT_IDLE`]; 0: none, each request on a new connection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<u32>,
    /// `upstream-keepalive-requests`: requests one connection carries before it is closed
    /// (`None`: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u32>,
    /// `upstream-keepalive-time`: how long after it was opened a connection is still put back
    /// for reuse (`None`: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
}

impl Default for UpstreamReuse {
    fn default() -> Self {
        Self {
            idle: None,
            requests: Some(Self::DEFAULT_REQUESTS),
            time: Some(Self::DEFAULT_TIME),
        }
    }
}

impl UpstreamReuse {
    /// ingress-nginx's defaults of `upstream-keepalive-connections`, `-requests` and `-time`.
    pub const DEFAULT_IDLE: u32 = 320;
    pub const DEFAULT_REQUESTS: u32 = 10_000;
    pub const DEFAULT_TIME: Duration = Duration::from_secs(3600);
    /// Whether a connection that has carried `served` requests and was opened `age` ago is
    /// closed after its request instead of kept.
    pub fn retires(&self, served: u32, age: Duration) -> bool {
        self.requests.is_some_and(|n| served >= n) || self.time.is_some_and(|t| age >= t)
    }

    /// The most `upstream-keepalive-connections` takes.
    pub const MAX_IDLE: u32 = 4096;
    /// The longest `upstream-keepalive-time`.
    pub const MAX_TIME: Duration = Duration::from_secs(7 * 24 * 3600);
}

/// Route settings for Ingresses that do not set the annotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteDefaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_timeout: Option<Duration>,
    /// As [`Policy::tries`].
    pub tries: usize,
    /// `proxy-next-upstream` and `proxy-next-upstream-timeout`.
    pub next_upstream: crate::config::retry::NextUpstream,
    /// `limit-rate`, in bytes per second (0: no limit).
    pub limit_rate: u64,
    /// `limit-rate-after`, in bytes.
    pub limit_rate_after: u64,
}

impl Default for RouteDefaults {
    fn default() -> Self {
        Self {
            max_body_bytes: Some(Policy::DEFAULT_MAX_BODY_BYTES),
            connect_timeout: None,
            read_timeout: None,
            send_timeout: None,
            tries: Policy::DEFAULT_TRIES,
            next_upstream: Default::default(),
            limit_rate: 0,
            limit_rate_after: 0,
        }
    }
}

impl RouteDefaults {
    /// The Policy of an Ingress without annotations.
    pub fn policy(&self) -> Policy {
        Policy {
            max_body_bytes: self.max_body_bytes,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            send_timeout: self.send_timeout,
            tries: self.tries,
            rate: super::rate::ResponseRate::new(self.limit_rate, self.limit_rate_after),
            ..Policy::default()
        }
    }
}

/// Strict-Transport-Security on HTTPS responses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hsts {
    /// At most [`Hsts::MAX_AGE`].
    pub max_age: u64,
    pub include_subdomains: bool,
    pub preload: bool,
    /// The header value, made once per Config.
    #[serde(skip)]
    pub value: HeaderValue,
}

impl Default for Hsts {
    fn default() -> Self {
        Self::new(31_536_000, true, false)
    }
}

impl Hsts {
    /// Ten years: a longer max-age is a mistake (browsers cap it anyway).
    pub const MAX_AGE: u64 = 315_360_000;

    pub fn new(max_age: u64, include_subdomains: bool, preload: bool) -> Self {
        let mut v = format!("max-age={}", max_age.min(Self::MAX_AGE));
        if include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if preload {
            v.push_str("; preload");
        }
        Self {
            max_age,
            include_subdomains,
            preload,
            // Digits, letters, `=`, `;` and spaces only: always a valid header value.
            value: HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("max-age=0")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ingress-nginx's defaults retire a connection after its 10000th request or once it is
    /// an hour old; no limit is no limit.
    #[test]
    fn upstream_reuse_defaults_retire_as_ingress_nginx() {
        let d = UpstreamReuse::default();
        let minute = Duration::from_secs(60);
        assert!(!d.retires(9_999, 59 * minute));
        assert!(d.retires(10_000, Duration::ZERO));
        assert!(d.retires(1, 60 * minute));
        let none = UpstreamReuse {
            idle: None,
            requests: None,
            time: None,
        };
        assert!(!none.retires(u32::MAX, Duration::MAX));
        assert_eq!(Global::default().keep_alive_requests, Some(1000));
    }

    #[test]
    fn hsts_values() {
        assert_eq!(Hsts::default().value, "max-age=31536000; includeSubDomains");
        assert_eq!(Hsts::new(0, false, false).value, "max-age=0");
        assert_eq!(
            Hsts::new(600, true, true).value,
            "max-age=600; includeSubDomains; preload"
        );
    }
}
