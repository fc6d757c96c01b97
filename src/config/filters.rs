//! HTTPRoute filters (Gateway API) as plain data: header changes both ways, redirect, URL
//! rewrite, request mirrors and CORS, checked and typed at compile.

use http::{HeaderName, HeaderValue};
use serde::Serialize;

use super::backend::BackendId;

/// A rule's (or a backendRef's) filters. `Policy::filters` is `None` when there are none,
/// the one field the request path looks at to know.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Filters {
    /// `RequestHeaderModifier`: applied before the request goes upstream (and before its
    /// mirrors are copied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeaderModifier>,
    /// `ResponseHeaderModifier`: applied to the upstream's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeaderModifier>,
    /// `RequestRedirect`: every request is answered with a redirect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RequestRedirect>,
    /// `URLRewrite`: the Host and path sent upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<UrlRewrite>,
    /// `RequestMirror` (the filter may repeat): copies of each request, answers dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<RequestMirror>,
    /// `CORS`: preflights answered here, allowed origins' answers given the fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<GatewayCors>,
    /// A backendRef's own RequestHeaderModifier, on the route of that weighted choice:
    /// applied after the rule's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_request_headers: Option<HeaderModifier>,
    /// A backendRef's own ResponseHeaderModifier: applied after the rule's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_response_headers: Option<HeaderModifier>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    /// The filters of a weighted choice's route: the rule's (`self`), and the header
    /// modifiers of that backendRef's own filters (compiled with `backend_ref: true`, so
    /// they have nothing else) applied after them.
    pub fn with_backend_ref(&self, backend: &Filters) -> Filters {
        Filters {
            backend_request_headers: backend.request_headers.clone(),
            backend_response_headers: backend.response_headers.clone(),
            ..self.clone()
        }
    }
}

/// `set`, `add` and `remove` of a header modifier, names lower-case (one action per name,
/// as the spec asks), values checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    /// Replaces every field of the name.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Appended as another field line (its values join the existing ones).
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    pub const MAX_ITEMS: usize = 16;
}

impl Serialize for HeaderModifier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let pairs = |list: &[(HeaderName, HeaderValue)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect()
        };
        let mut m = s.serialize_map(None)?;
        if !self.set.is_empty() {
            m.serialize_entry("set", &pairs(&self.set))?;
        }
        if !self.add.is_empty() {
            m.serialize_entry("add", &pairs(&self.add))?;
        }
        if !self.remove.is_empty() {
            let names: Vec<&str> = self.remove.iter().map(|n| n.as_str()).collect();
            m.serialize_entry("remove", &names)?;
        }
        m.end()
    }
}

/// How a redirect or rewrite changes the path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PathModifier {
    /// The whole path becomes this.
    ReplaceFullPath(String),
    /// The rule's PathPrefix match (`prefix`, without a trailing `/`) is replaced by `with`
    /// (without a trailing `/`), element-wise as the spec's table says.
    ReplacePrefixMatch { prefix: String, with: String },
}

impl PathModifier {
    /// The modified path of a request path the rule matched. The query is not part of `path`.
    pub fn apply(&self, path: &str) -> String {
        match self {
            PathModifier::ReplaceFullPath(p) => p.clone(),
            PathModifier::ReplacePrefixMatch { prefix, with } => {
                // The rule matched, so `path` starts with the prefix element-wise; a path
                // that does not (a canary, a changed Config) keeps its whole self as the rest.
                let rest = path.strip_prefix(prefix.as_str()).unwrap_or(path);
                let mut out = String::with_capacity(with.len() + rest.len() + 1);
                out.push_str(with);
                out.push_str(rest);
                if out.is_empty() {
                    out.push('/');
                }
                out
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// `RequestRedirect`: the Location is the request's own URL with what is set here changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestRedirect {
    /// `None`: the request's scheme.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    /// `None`: the request's host (without its port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `None`: the request's path. The query is kept either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// `None`: the scheme's well-known port when `scheme` is set, else the listener's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// 301, 302 (the default), 303, 307 or 308.
    pub status: u16,
    /// The port of the Gateway listener the route is served on (the spec's default when
    /// neither `scheme` nor `port` is set); `None`: the port the request's Host names, else
    /// the request scheme's well-known one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener_port: Option<u16>,
}

/// `URLRewrite`: what goes upstream instead of the request's Host and path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UrlRewrite {
    /// The Host header sent upstream.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "value_str")]
    pub hostname: Option<HeaderValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

fn value_str<S: serde::Serializer>(v: &Option<HeaderValue>, s: S) -> Result<S::Ok, S::Error> {
    match v.as_ref().and_then(|v| v.to_str().ok()) {
        Some(v) => s.serialize_str(v),
        None => s.serialize_none(),
    }
}

/// `RequestMirror`: a copy of `numerator` in `denominator` requests goes to one endpoint of
/// `backend`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestMirror {
    /// An index in `Config::backends` (compile resolved the backendRef).
    pub backend: BackendId,
    /// How many requests in `denominator` are copied (`percent` is n in 100; neither: all).
    pub numerator: u32,
    pub denominator: u32,
}

impl RequestMirror {
    /// Whether the request that drew `random` is copied.
    pub fn picks(&self, random: u64) -> bool {
        self.numerator >= self.denominator || random % u64::from(self.denominator.max(1)) < u64::from(self.numerator)
    }
}

/// The Gateway API's `CORS` filter (its rules differ from ingress-nginx's `enable-cors`:
/// credentials only when asked, methods and headers answered only when the preflight asks,
/// `*` never sent back with credentials).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayCors {
    /// Empty: no origin is allowed.
    pub allow_origins: Vec<CorsOrigin>,
    pub allow_credentials: bool,
    /// Method names; `["*"]` allows any.
    pub allow_methods: Vec<String>,
    /// Header names, lower-case; `["*"]` allows any.
    pub allow_headers: Vec<String>,
    /// Header names, lower-case; `*` is left out when credentials are allowed.
    pub expose_headers: Vec<String>,
    /// Seconds (`Access-Control-Max-Age`, 5 by default).
    pub max_age: u32,
}

impl GatewayCors {
    pub const DEFAULT_MAX_AGE: u32 = 5;
    /// The longest `maxAge` honoured, a day (browsers cap it lower still).
    pub const MAX_AGE_LIMIT: u32 = 86400;

    /// Whether a request's Origin is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        let Some(o) = CorsOrigin::parse_request(origin) else {
            return false;
        };
        self.allow_origins.iter().any(|a| a.matches(&o))
    }
}

/// One allowed origin: `*`, or a scheme, a host (`*.` in front: any number of labels
/// there; `*` alone: any host) and a port (the scheme's when not written).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CorsOrigin {
    Any,
    Origin {
        scheme: Scheme,
        /// Lower-case; a leading `*.` kept as written, `*` alone for any host.
        host: String,
        port: u16,
    },
}

/// A request's Origin, split.
pub struct RequestOrigin<'a> {
    pub scheme: Scheme,
    pub host: &'a str,
    pub port: u16,
}

impl CorsOrigin {
    /// An `Origin` field's value: `scheme://host[:port]`; `None` when it is none (`null`,
    /// another scheme, a path).
    pub fn parse_request(origin: &str) -> Option<RequestOrigin<'_>> {
        let (scheme, rest) = origin.split_once("://")?;
        let scheme = match scheme {
            s if s.eq_ignore_ascii_case("http") => Scheme::Http,
            s if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => return None,
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
                Ok(p) if p > 0 => (h, p),
                _ => return None,
            },
            _ => (rest, scheme.default_port()),
        };
        if host.is_empty() || host.contains(['/', '?', '#', '@']) {
            return None;
        }
        Some(RequestOrigin { scheme, host, port })
    }

    pub fn matches(&self, o: &RequestOrigin<'_>) -> bool {
        match self {
            CorsOrigin::Any => true,
            CorsOrigin::Origin { scheme, host, port } => {
                if *scheme != o.scheme || *port != o.port {
                    return false;
                }
                if host == "*" {
                    return true;
                }
                match host.strip_prefix('*') {
                    // `*.bar.com`: greedy to the left, so `a.b.bar.com` too, not `bar.com`.
                    Some(suffix) => {
                        o.host.len() > suffix.len()
                            && o.host
                                .get(o.host.len() - suffix.len()..)
                                .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
                    }
                    None => o.host.eq_ignore_ascii_case(host),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(prefix: &str, with: &str) -> PathModifier {
        // As compile stores them: trailing `/` dropped from both.
        PathModifier::ReplacePrefixMatch {
            prefix: prefix.trim_end_matches('/').into(),
            with: with.trim_end_matches('/').into(),
        }
    }

    #[test]
    fn replace_prefix_match_follows_the_spec_table() {
        // The table in the HTTPPathModifier documentation, row by row.
        let rows = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            // The conformance suite's: a `/` prefix, and stripping a prefix away.
            ("/strip-prefix/three", "/strip-prefix", "/", "/three"),
            ("/strip-prefix", "/strip-prefix", "/", "/"),
            ("/anything", "/", "/xyz", "/xyz/anything"),
        ];
        for (path, p, with, want) in rows {
            assert_eq!(prefix(p, with).apply(path), want, "{path} with prefix {p} → {with:?}");
        }
        assert_eq!(
            PathModifier::ReplaceFullPath("/one".into()).apply("/full/one/two"),
            "/one"
        );
    }

    #[test]
    fn mirror_fraction_picks_its_share() {
        let m = |numerator, denominator| RequestMirror {
            backend: 0,
            numerator,
            denominator,
        };
        assert!((0..1000).all(|r| m(100, 100).picks(r)));
        assert!((0..1000).all(|r| !m(0, 100).picks(r)));
        assert_eq!((0..1000).filter(|r| m(20, 100).picks(*r)).count(), 200);
        assert_eq!((0..1000).filter(|r| m(25, 50).picks(*r)).count(), 500);
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let o = |scheme, host: &str, port| CorsOrigin::Origin {
            scheme,
            host: host.into(),
            port,
        };
        let req = |s| CorsOrigin::parse_request(s).unwrap();
        let exact = o(Scheme::Https, "www.foo.com", 443);
        assert!(exact.matches(&req("https://www.foo.com")));
        assert!(exact.matches(&req("https://WWW.foo.com:443")));
        assert!(!exact.matches(&req("http://www.foo.com")));
        assert!(!exact.matches(&req("https://www.foo.com:8443")));
        let wild = o(Scheme::Https, "*.bar.com", 443);
        assert!(wild.matches(&req("https://www.bar.com")));
        assert!(wild.matches(&req("https://xpto.www.bar.com")));
        assert!(!wild.matches(&req("https://bar.com")));
        assert!(!wild.matches(&req("https://foobar.com")));
        assert!(o(Scheme::Http, "*", 8080).matches(&req("http://any.where:8080")));
        assert!(CorsOrigin::Any.matches(&req("https://foobar.com:12345")));
        assert!(CorsOrigin::parse_request("null").is_none());
        assert!(CorsOrigin::parse_request("https://a.com/path").is_none());
        assert!(CorsOrigin::parse_request("https://a.com:0").is_none());
    }
}
