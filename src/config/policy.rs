//! What an Ingress's annotations ask of its requests, as typed values.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::Cidr;
use super::auth::Auth;
use super::backend::{BackendId, Protocol};
use super::errors::ErrorPages;
use super::hash::HashBy;
use super::limits::Limits;
use super::mirror::Mirror;
use super::response::ResponseRewrite;
use super::retry::NextUpstream;
use super::upstream_tls::UpstreamTls;

/// What an Ingress's annotations ask of its requests: endpoint choice and retries,
/// redirects, limits, timeouts, access and CORS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<CookieAffinity>,
    pub load_balance: Algorithm,
    /// Most endpoints tried for one request (`proxy-next-upstream-tries`, at most
    /// [`Self::MAX_TRIES`]; 0 there: all).
    pub tries: usize,
    /// `permanent-redirect` / `temporal-redirect`: every request is answered with this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    /// `app-root`: requests for `/` are redirected (302) here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_root: Option<String>,
    /// `proxy-body-size`: larger request bodies get 413 (`None`: no limit, the value "0";
    /// by default [`Self::DEFAULT_MAX_BODY_BYTES`], as ingress-nginx).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// `proxy-connect-timeout`. This and the other timeouts are at most [`Self::MAX_TIMEOUT`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// `proxy-read-timeout`: the wait for the response head, and between two reads of the
    /// response body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_timeout: Option<Duration>,
    /// `proxy-send-timeout`: the longest the upstream may hold back the request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_timeout: Option<Duration>,
    /// `whitelist-source-range`: clients outside every range get 403. An empty list (with
    /// `ranges_invalid`) lets nobody in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<Cidr>>,
    /// `upstream-vhost`: the Host header sent upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_vhost: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// `backend-protocol`: overrides the Service port's `appProtocol`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_protocol: Option<Protocol>,
    /// `use-regex` (also implied by `rewrite-target`): non-Exact paths are regexes.
    pub use_regex: bool,
    /// `rewrite-target`: the path sent upstream, `$n` taken from the path regex's groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite_target: Option<Arc<str>>,
    /// `auth-type`/`auth-secret` (and later `auth-url`): `None` when the route asks for no
    /// authentication, the one field the request path looks at to know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Arc<Auth>>,
    /// `proxy-ssl-*`: how to talk TLS to HTTPS and GRPCS upstreams; `None` for the
    /// defaults (no verification, no client certificate, no SNI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<Arc<UpstreamTls>>,
    /// `upstream-hash-by`: requests go to the ready endpoint their key maps to on a
    /// consistent-hash ring (`None` when unset, or when cookie affinity wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_by: Option<Arc<HashBy>>,
    /// `default-backend`: where requests go while the route's Service has no ready
    /// endpoints (an index in `Config::backends`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<BackendId>,
    /// `custom-http-errors`: answers with these codes are replaced by the error backend's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_pages: Option<Arc<ErrorPages>>,
    /// `proxy-next-upstream` and `proxy-next-upstream-timeout`: when a failed try goes on to
    /// the next endpoint (at most `tries` in all).
    pub next_upstream: NextUpstream,
    /// `mirror-target` and its family: each request is also sent there, its answer dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Arc<Mirror>>,
    /// `from-to-www-redirect`, set only on the route compile adds for a host's other name
    /// (`www.` added or taken away): every request gets 308 to this host, same scheme, port
    /// and path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub www_redirect: Option<Arc<str>>,
    /// `denylist-source-range`: clients in any range get 403, before the allowlist is
    /// looked at (nginx's `deny` lines come first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<Cidr>>,
    /// `x-forwarded-prefix`: the X-Forwarded-Prefix field sent upstream (nginx variables and
    /// the route regex's `$1`..`$9` allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_prefix: Option<super::vars::Template>,
    /// `preserve-trailing-slash`: the HTTPS redirect keeps a trailing `/` of the request
    /// target (ingress-nginx drops one by default).
    pub preserve_trailing_slash: bool,
    /// `enable-access-log`: `false` leaves the route's requests out of the access log
    /// (which `--access-log` turns on for the process).
    pub access_log: bool,
    /// `service-upstream`: routes send to the Service's cluster IP (compile picks the backend).
    pub service_upstream: bool,
    /// `proxy-redirect-*`, `proxy-cookie-path`, `proxy-cookie-domain`: response fields to
    /// rewrite; `None` when the route asks for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Arc<ResponseRewrite>>,
    /// `limit-rps`, `limit-rpm`, `limit-connections` and their settings; `None` when the
    /// route has no limit, the one field the request path looks at to know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Arc<Limits>>,
    /// `custom-headers`: headers added to every response (from a ConfigMap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_headers: Option<Arc<super::headers::HeaderList>>,
    /// `proxy-http-version: "1.0"`: requests go upstream as HTTP/1.0 with `Connection:
    /// close` on a connection of their own, never pooled; a body must have a length.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub http10: bool,
    /// `satisfy: any`: a request passes when any one of the route's access checks (source
    /// ranges, basic auth, external auth) does; `false` (`all`, the default): when every one does.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub satisfy_any: bool,
    /// `limit-rate` and `limit-rate-after`: how fast responses go to the client; `None`
    /// when unlimited, the one field the request path looks at to know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<super::rate::ResponseRate>,
    /// `enable-opentelemetry` (or the ConfigMap's) and its family: `None` when the route is
    /// not traced, the one field the request path looks at to know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otel: Option<Arc<super::otel::RouteOtel>>,
    /// The response phase reads request variables (response rewrites, `custom-headers` or
    /// `add-headers` with variables): the request's head is kept for it. Set by compile.
    #[serde(skip)]
    pub keep_request: bool,
    /// A `whitelist-`/`allowlist-` or `denylist-source-range` entry is no address or CIDR
    /// (or the list is empty): the location answers 503, as ingress-nginx's denied location.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ranges_invalid: bool,
    /// An HTTPRoute rule's filters (Gateway API); `None` when it has none (and on Ingress
    /// routes), the one field the request path looks at to know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filters: Option<Arc<super::filters::Filters>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Redirect {
    pub code: u16,
    pub location: String,
}

/// `enable-cors` and the `cors-*` family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cors {
    /// Allowed origins; `*` allows any.
    pub allow_origin: Vec<String>,
    pub allow_methods: String,
    pub allow_headers: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<String>,
    pub allow_credentials: bool,
    pub max_age: u64,
}

impl Default for Cors {
    fn default() -> Self {
        Self {
            allow_origin: vec!["*".into()],
            allow_methods: "GET, PUT, POST, DELETE, PATCH, OPTIONS".into(),
            allow_headers:
                "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
                    .into(),
            expose_headers: None,
            allow_credentials: true,
            max_age: 1_728_000,
        }
    }
}

impl Cors {
    /// The longest `cors-max-age`, a year (browsers keep a preflight for hours at most).
    pub const MAX_AGE_LIMIT: u64 = 365 * 86400;

    /// The Access-Control-Allow-Origin value for a request's Origin, when it is allowed.
    pub fn origin_allowed<'o>(&'o self, origin: &'o str) -> Option<&'o str> {
        self.allow_origin.iter().find_map(|allowed| {
            if allowed == "*" {
                return Some("*");
            }
            let ok = match allowed.split_once("://*.") {
                // `https://*.example.com`: any subdomain, same scheme.
                Some((scheme, domain)) => origin
                    .strip_prefix(scheme)
                    .and_then(|o| o.strip_prefix("://"))
                    .and_then(|host| host.strip_suffix(domain))
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => allowed.eq_ignore_ascii_case(origin),
            };
            ok.then_some(origin)
        })
    }
}

impl Policy {
    pub const DEFAULT_TRIES: usize = 3;
    /// The longest `proxy-connect-timeout`, `proxy-read-timeout` or `proxy-send-timeout`: a
    /// day. ingress-nginx users go as far as 86400 for WebSockets and long polls; beyond
    /// that a value is a mistake, and a far deadline is one `Instant + Duration` away from
    /// overflowing.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
    /// The most `proxy-next-upstream-tries` (0 still means every endpoint).
    pub const MAX_TRIES: usize = 100;
    /// `proxy-body-size` unless an annotation or the ConfigMap says otherwise: 1m, as
    /// ingress-nginx (nginx's `client_max_body_size` default).
    pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            affinity: None,
            load_balance: Algorithm::RoundRobin,
            tries: Self::DEFAULT_TRIES,
            redirect: None,
            app_root: None,
            max_body_bytes: Some(Self::DEFAULT_MAX_BODY_BYTES),
            connect_timeout: None,
            read_timeout: None,
            send_timeout: None,
            allow: None,
            upstream_vhost: None,
            cors: None,
            backend_protocol: None,
            use_regex: false,
            rewrite_target: None,
            auth: None,
            upstream_tls: None,
            hash_by: None,
            default_backend: None,
            error_pages: None,
            next_upstream: NextUpstream::default(),
            mirror: None,
            www_redirect: None,
            deny: None,
            forwarded_prefix: None,
            preserve_trailing_slash: false,
            access_log: true,
            service_upstream: false,
            response: None,
            limits: None,
            custom_headers: None,
            http10: false,
            satisfy_any: false,
            rate: None,
            otel: None,
            keep_request: false,
            ranges_invalid: false,
            filters: None,
        }
    }
}

/// Endpoint choice among a backend's ready endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    RoundRobin,
    /// Peak-EWMA latency × in-flight requests, lower of two random endpoints.
    Ewma,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Consistent hashing of a random session key.
    #[default]
    Balanced,
    /// The session stays on its endpoint while that endpoint exists.
    Persistent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SameSite {
    None,
    Lax,
    Strict,
}

/// Cookie affinity as an Ingress's annotations configure it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CookieAffinity {
    pub mode: Mode,
    pub name: String,
    /// `None`: the matched Ingress path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// Seconds from the response until the cookie's `Expires` date (at most
    /// [`Self::MAX_LIFETIME`], as `max_age`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
    /// Leave `SameSite=None` out for browsers known to mishandle it.
    pub conditional_same_site_none: bool,
    /// `None`: Secure when the request came over HTTPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// When the pinned endpoint fails, pin the session to the endpoint that answered.
    pub change_on_failure: bool,
    /// A canary route's sessions: the cookie value ends in `|` and this, which tells them
    /// from the primary's (ingress-nginx's backend key); `None` elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_tag: Option<String>,
}

impl CookieAffinity {
    /// The longest `session-cookie-expires` or `session-cookie-max-age`, ten years: longer
    /// than any browser keeps a cookie (400 days, RFC 6265bis), and an `Expires` date that
    /// stays far from the year 9999 an HTTP date can name.
    pub const MAX_LIFETIME: u64 = 10 * 365 * 86400;
}

impl Default for CookieAffinity {
    fn default() -> Self {
        Self {
            mode: Mode::Balanced,
            name: "INGRESSCOOKIE".into(),
            path: None,
            domain: None,
            max_age: None,
            expires: None,
            same_site: None,
            conditional_same_site_none: false,
            secure: None,
            change_on_failure: false,
            backend_tag: None,
        }
    }
}
