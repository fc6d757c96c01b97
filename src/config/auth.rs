//! Authentication a route asks for (`auth-type`/`auth-secret`, `auth-url`), as plain data:
//! password hashes, never passwords; nothing here is ever serialized beyond counts and names.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::vars::Template;

/// What a route's auth annotations compiled to. Checked in this order: `denied`, then
/// `basic`, then (later) the external service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Auth {
    /// An auth annotation that cannot be honoured (missing or unusable Secret, unsupported
    /// type): every request is answered 503, as ingress-nginx does for a denied location.
    /// The reason is in the diagnostics; the client never sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalAuth>,
    /// `auth-type: digest`, checked where `basic` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestAuth>,
}

/// `auth-url` and the rest of the external authentication family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExternalAuth {
    /// `https` or not; the host and port connected to, and sent as Host.
    pub tls: bool,
    /// The host name, or (with `host_from_request`) the variable that names it, as written.
    pub host: String,
    pub port: u16,
    /// The request target (path and query), variables allowed.
    pub target: Template,
    /// `auth-method`; `None`: GET, as nginx's auth subrequest, whatever the client's method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `auth-signin`: a 401 from the service becomes a 302 here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signin: Option<Template>,
    /// `auth-signin-redirect-param` (default `rd`): the query parameter given the original URL.
    pub signin_redirect_param: String,
    /// `auth-response-headers`, lowercased: copied from a 2xx answer to the upstream request
    /// (and removed from it when the service does not send them).
    pub response_headers: Vec<String>,
    /// `auth-request-redirect`: the `X-Auth-Request-Redirect` value (default: the request URI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<String>,
    /// `auth-cache-key` + `auth-cache-duration`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<AuthCache>,
    /// `auth-always-set-cookie`: the service's Set-Cookie goes on every response, not only on
    /// successful ones.
    pub always_set_cookie: bool,
    /// `auth-proxy-set-headers`: headers set on the auth request.
    #[serde(skip_serializing_if = "super::headers::HeaderList::is_empty")]
    pub proxy_set_headers: super::headers::HeaderList,
    /// `auth-keepalive` and family: connections to the auth service are kept for more auth
    /// requests; `None` (the default, `auth-keepalive: 0`): one new connection per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<AuthKeepalive>,
    /// `auth-keepalive-share-vars`: on a kept connection the auth request carries the
    /// request's X-Request-ID; `false` (the default): an id of its own unless the client sent
    /// one, as ingress-nginx's keepalive subrequest, which does not share `$request_id`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keepalive_share_vars: bool,
    /// `$host` (or `$http_host`, `$best_http_host`) in the URL's host part: the auth request
    /// goes to the request's host, which is one of the Ingress's exact host names.
    pub host_from_request: bool,
}

/// How connections to an auth service are reused (`auth-keepalive`, `-requests`, `-timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AuthKeepalive {
    /// The most idle connections kept (1 to [`Self::MAX_IDLE`]); past it the least recently
    /// used one is closed.
    pub idle: u32,
    /// Auth requests one connection carries before it is closed (1 to [`Self::MAX_REQUESTS`]).
    pub requests: u32,
    /// How long a connection may stay idle before it is closed (1 s to [`Self::MAX_TIMEOUT`]).
    pub timeout: std::time::Duration,
}

impl AuthKeepalive {
    pub const MAX_IDLE: u32 = 1024;
    pub const MAX_REQUESTS: u32 = 1_000_000;
    pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);
    /// ingress-nginx's defaults for `auth-keepalive-requests` and `auth-keepalive-timeout`.
    pub const DEFAULT_REQUESTS: u32 = 1000;
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
}

/// Which answers of the auth service are remembered, for how long, under which key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthCache {
    pub key: Template,
    /// Status codes and how long an answer with one of them is kept; an empty code list means
    /// 200, 301 and 302 (nginx's `proxy_cache_valid` without codes).
    pub valid: Vec<(Vec<u16>, std::time::Duration)>,
}

impl AuthCache {
    /// How long an answer with `status` is kept, if at all.
    pub fn ttl(&self, status: u16) -> Option<std::time::Duration> {
        self.valid.iter().find_map(|(codes, d)| {
            let hit = if codes.is_empty() {
                matches!(status, 200 | 301 | 302)
            } else {
                codes.contains(&status)
            };
            hit.then_some(*d)
        })
    }
}

/// `auth-type: basic`: users and their password hashes from the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    /// `auth-realm`: printable ASCII without `"` or `\`, so it can be quoted as is.
    pub realm: Arc<str>,
    /// The Secret the users came from (`namespace/name`).
    pub secret: Arc<str>,
    /// User → hash. Empty when the Secret had no usable entry: everyone gets 401.
    pub users: Arc<BTreeMap<String, PasswordHash>>,
}

/// Only the realm, the Secret and how many users it holds go to `/routes`.
impl Serialize for BasicAuth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        users_summary(s, "BasicAuth", &self.realm, &self.secret, self.users.len())
    }
}

/// What `/routes` shows of a user list: its realm, its Secret and how many users it holds.
fn users_summary<S: serde::Serializer>(
    s: S,
    name: &'static str,
    realm: &str,
    secret: &str,
    users: usize,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct(name, 3)?;
    st.serialize_field("realm", realm)?;
    st.serialize_field("secret", secret)?;
    st.serialize_field("users", &users)?;
    st.end()
}

/// `auth-type: digest`: the users of the Secret's htdigest lines whose realm is this realm,
/// each with its HA1 = MD5(user:realm:password), 32 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestAuth {
    /// `auth-realm`, as for basic: it is sent in the challenge's quoted string.
    pub realm: Arc<str>,
    /// The Secret the users came from (`namespace/name`).
    pub secret: Arc<str>,
    /// User → HA1. Empty when no line was usable: everyone gets 401.
    pub users: Arc<BTreeMap<String, Ha1>>,
}

/// MD5(user:realm:password) in lowercase hex; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Ha1(pub [u8; 32]);

impl std::fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ha1(..)")
    }
}

/// Only the realm, the Secret and how many users it holds go to `/routes`.
impl Serialize for DigestAuth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        users_summary(s, "DigestAuth", &self.realm, &self.secret, self.users.len())
    }
}

/// A password hash in one of the htpasswd forms Portico verifies.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$`, `$2a$`, `$2b$` (the whole modular-crypt string; cost checked at compile).
    Bcrypt(String),
    /// `$apr1$salt$hash` (Apache) or `$1$salt$hash` (crypt(3) MD5): the magic, the salt
    /// (at most 8 characters) and the 22-character hash.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        hash: String,
    },
    /// `{SHA}` base64(SHA-1(password)).
    Sha1([u8; 20]),
    /// `{SSHA}` base64(SHA-1(password + salt) + salt).
    Ssha { digest: [u8; 20], salt: Vec<u8> },
    /// `{PLAIN}password`, which nginx accepts too.
    Plain(Vec<u8>),
}

/// Hashes are never printed, not even in debug output.
impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PasswordHash::Bcrypt(_) => "Bcrypt(..)",
            PasswordHash::Md5Crypt { .. } => "Md5Crypt(..)",
            PasswordHash::Sha1(_) => "Sha1(..)",
            PasswordHash::Ssha { .. } => "Ssha(..)",
            PasswordHash::Plain(_) => "Plain(..)",
        })
    }
}

impl PasswordHash {
    /// The highest bcrypt cost accepted: 2^15 rounds take about a second on one core, and
    /// every request that misses the cache of verified passwords pays it.
    pub const MAX_BCRYPT_COST: u32 = 15;

    /// Whether verifying is slow enough that a verified password is worth remembering.
    pub fn slow(&self) -> bool {
        matches!(self, PasswordHash::Bcrypt(_))
    }
}
