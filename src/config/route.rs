//! The route table: host index (exact, `*.` wildcard, Gateway suffix, any host) → path matcher
//! → the routes whose conditions a request meets, in precedence order.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::backend::BackendId;
use super::policy::Policy;
use crate::model::ObjectKey;

/// The host part of a rule, validated and lower-cased.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`, stored as `example.com`: matches exactly one extra label.
    Wildcard(String),
    /// A rule without host: matches every host.
    Any,
    /// A `server-alias` written `~REGEX` (nginx's regular-expression server name), compiled
    /// from what follows the `~`: searched for, case-insensitively, in the request host after
    /// exact and wildcard names.
    Regex(super::pattern::Pattern),
    /// A Gateway API `*.example.com`, stored as `example.com`: a suffix match, any number of
    /// extra labels (not `example.com` itself). Longer suffixes are tried first.
    Suffix(String),
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) | HostPattern::Suffix(s) => write!(f, "*.{s}"),
            HostPattern::Any => f.write_str("*"),
            HostPattern::Regex(r) => write!(f, "~{}", r.as_str()),
        }
    }
}

impl Serialize for HostPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl HostPattern {
    /// Parses an Ingress rule or TLS host. `None` or `""` is the any-host pattern.
    pub fn parse(host: Option<&str>) -> Result<Self, String> {
        let Some(raw) = host.filter(|h| !h.is_empty()) else {
            return Ok(HostPattern::Any);
        };
        let h = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
        let (wild, name) = match h.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, h.as_str()),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !valid {
            return Err(format!(
                "host {raw:?} is not a valid DNS name (a wildcard may only be a leading \"*.\")"
            ));
        }
        Ok(if wild {
            HostPattern::Wildcard(name.to_string())
        } else {
            HostPattern::Exact(h)
        })
    }

    /// Parses a Gateway API hostname (a Gateway listener's or an HTTPRoute's): an exact
    /// name, or `*.` + a name matching any number of extra labels ([`HostPattern::Suffix`]).
    /// IP addresses are not hostnames there.
    pub fn gateway(host: &str) -> Result<Self, String> {
        if host.contains('_') || host.ends_with('.') {
            return Err(format!("hostname {host:?} is not a valid DNS name"));
        }
        match Self::parse(Some(host))? {
            HostPattern::Any => Err("an empty hostname is not valid".into()),
            HostPattern::Wildcard(s) => Ok(HostPattern::Suffix(s)),
            HostPattern::Exact(h) if h.parse::<std::net::Ipv4Addr>().is_ok() => Err(format!(
                "hostname {host:?} is an IP address, which Gateway API hostnames may not be"
            )),
            p => Ok(p),
        }
    }
}

/// Lower-cases a host name (one trailing dot dropped) without allocating: borrows the input
/// when it has no upper-case letter, else writes into `buf`. `None` when too long to be a
/// DNS name.
pub fn lower_host<'a>(name: &'a str, buf: &'a mut [u8; 256]) -> Option<&'a str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > 253 {
        return None;
    }
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(name);
    }
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

/// An Ingress `pathType`, or a Gateway API path match type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
    /// Gateway API `RegularExpression`: the whole path matches `PathRule::regex` (see
    /// [`gateway_path_regex`]).
    RegularExpression,
}

impl PathType {
    /// How the path is matched: ImplementationSpecific is Prefix in Portico.
    pub fn is_exact(self) -> bool {
        matches!(self, PathType::Exact)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathRule {
    /// Normalized the same way request paths are (a regex path as written).
    pub path: String,
    #[serde(rename = "pathType")]
    pub path_type: PathType,
    /// `use-regex`: `path` is a case-insensitive regular expression anchored at the start.
    /// With [`PathType::RegularExpression`]: the Gateway API regex, see [`gateway_path_regex`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<PathRegex>,
}

/// A compiled path regex; compares and shows as its source.
pub type PathRegex = super::pattern::Pattern;

/// ingress-nginx's `location ~* "^PATH"`: case-insensitive, anchored at the start.
pub fn path_regex(path: &str) -> Result<PathRegex, String> {
    PathRegex::new(&format!("^(?:{path})"), true).map_err(|e| e.to_string())
}

/// A Gateway API `RegularExpression` value (paths, header and query values): Rust `regex`
/// syntax, case-sensitive, matching the whole value (as Envoy's RE2 matchers do).
pub fn gateway_regex(value: &str) -> Result<super::pattern::Pattern, String> {
    if value.len() > MAX_VALUE {
        return Err(format!("regular expression longer than {MAX_VALUE} bytes"));
    }
    super::pattern::Pattern::new(&format!("^(?:{value})$"), false)
        .map_err(|e| format!("invalid regular expression {value:?}: {e}"))
}

/// A Gateway API path match `RegularExpression` as a [`PathRule`]: matched against the
/// normalized request path, whole and case-sensitive. Its precedence (which the spec leaves
/// to implementations) is Envoy Gateway's: after Exact paths, before every PathPrefix.
pub fn gateway_path_regex(value: &str) -> Result<PathRule, String> {
    Ok(PathRule {
        path: value.to_string(),
        path_type: PathType::RegularExpression,
        regex: Some(gateway_regex(value)?),
    })
}

/// The longest header value or regex a condition holds (the CRD's 4096 for header values;
/// query values have 1024 there).
const MAX_VALUE: usize = 4096;
/// The longest header or query parameter name (the CRD's 256).
const MAX_NAME: usize = 256;
/// The most header or query conditions in one match (the CRD's 16).
const MAX_CONDITIONS: usize = 16;

/// What a request's value must be: a Gateway API `Exact` or `RegularExpression` match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value")]
pub enum ValueMatch {
    Exact(String),
    RegularExpression(super::pattern::Pattern),
}

impl ValueMatch {
    /// `kind` is the match `type` as written (`None`: the default, `Exact`).
    pub fn parse(kind: Option<&str>, value: &str) -> Result<ValueMatch, String> {
        match kind.unwrap_or("Exact") {
            "Exact" if value.len() > MAX_VALUE => Err(format!("value longer than {MAX_VALUE} bytes")),
            "Exact" => Ok(ValueMatch::Exact(value.to_string())),
            "RegularExpression" => gateway_regex(value).map(ValueMatch::RegularExpression),
            other => Err(format!("match type {other:?} is not Exact or RegularExpression")),
        }
    }

    fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(v) => v.as_bytes() == value,
            ValueMatch::RegularExpression(re) => std::str::from_utf8(value).is_ok_and(|v| re.0.is_match(v)),
        }
    }
}

/// One header a request must carry (`name` lower-case: header names compare
/// case-insensitively).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeaderCondition {
    pub name: String,
    #[serde(flatten)]
    pub value: ValueMatch,
}

/// One query parameter a request must carry (`name` compared exactly, case-sensitive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueryCondition {
    pub name: String,
    #[serde(flatten)]
    pub value: ValueMatch,
}

/// A Gateway API HTTPRouteMatch's conditions besides the path, all of which a request must
/// meet: method, headers, query parameters. A route without any has `conditions: None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Conditions {
    /// Upper-case, compared exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderCondition>,
    #[serde(rename = "queryParams", skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<QueryCondition>,
}

/// A header or query name as the CRD allows it (RFC 7230 token characters).
fn valid_name(name: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > MAX_NAME || !name.bytes().all(token) {
        return Err(format!("name {name:?} is not a token of 1 to {MAX_NAME} characters"));
    }
    Ok(())
}

impl Conditions {
    /// Sets the method (`GET`, `POST`, ... as the CRD lists them; compared exactly).
    pub fn set_method(&mut self, method: &str) -> Result<(), String> {
        const METHODS: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        if !METHODS.contains(&method) {
            return Err(format!("method {method:?} is not one of {}", METHODS.join(", ")));
        }
        self.method = Some(method.to_string());
        Ok(())
    }

    /// Adds a header match (`kind`: the match `type`, `None` for Exact). As the spec says, a
    /// later entry with an equivalent (case-insensitive) name is ignored: `Ok(false)`.
    pub fn add_header(&mut self, name: &str, kind: Option<&str>, value: &str) -> Result<bool, String> {
        valid_name(name)?;
        let name = name.to_ascii_lowercase();
        if self.headers.iter().any(|h| h.name == name) {
            return Ok(false);
        }
        if self.headers.len() >= MAX_CONDITIONS {
            return Err(format!("more than {MAX_CONDITIONS} header matches"));
        }
        let value = ValueMatch::parse(kind, value)?;
        self.headers.push(HeaderCondition { name, value });
        Ok(true)
    }

    /// Adds a query parameter match; a later entry with the same name is ignored: `Ok(false)`.
    pub fn add_query(&mut self, name: &str, kind: Option<&str>, value: &str) -> Result<bool, String> {
        valid_name(name)?;
        if self.query.iter().any(|q| q.name == name) {
            return Ok(false);
        }
        if self.query.len() >= MAX_CONDITIONS {
            return Err(format!("more than {MAX_CONDITIONS} query parameter matches"));
        }
        if value.len() > 1024 {
            return Err("query parameter value longer than 1024 bytes".into());
        }
        let value = ValueMatch::parse(kind, value)?;
        self.query.push(QueryCondition {
            name: name.to_string(),
            value,
        });
        Ok(true)
    }

    /// No condition at all: compile then leaves `Route::conditions` `None`.
    pub fn is_empty(&self) -> bool {
        self.method.is_none() && self.headers.is_empty() && self.query.is_empty()
    }

    /// Whether a request meets every condition.
    pub fn matches(&self, req: &RouteRequest<'_>) -> bool {
        self.method.as_deref().is_none_or(|m| m == req.method)
            && self.headers.iter().all(|h| header_matches(h, req.headers))
            && self
                .query
                .iter()
                .all(|q| query_value(req.query, &q.name).is_some_and(|v| q.value.matches(&v)))
    }
}

/// A header condition against the request's field lines of that name: one line's value as
/// is, several joined with `,` (RFC 9110's combination).
fn header_matches(h: &HeaderCondition, headers: Option<&http::HeaderMap>) -> bool {
    let Some(headers) = headers else {
        return false;
    };
    let mut values = headers.get_all(h.name.as_str()).iter();
    let Some(first) = values.next() else {
        return false;
    };
    match values.next() {
        None => h.value.matches(first.as_bytes()),
        Some(second) => {
            let mut joined = first.as_bytes().to_vec();
            for v in std::iter::once(second).chain(values) {
                joined.push(b',');
                joined.extend_from_slice(v.as_bytes());
            }
            h.value.matches(&joined)
        }
    }
}

/// The percent-decoded value of the first parameter named `name` (decoded too) in a query
/// string, as the spec recommends for repeated parameters. `+` is kept as is.
fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<std::borrow::Cow<'q, [u8]>> {
    query?.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(n).as_ref() == name.as_bytes()).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> std::borrow::Cow<'_, [u8]> {
    if !s.contains('%') {
        return std::borrow::Cow::Borrowed(s.as_bytes());
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).and_then(|&x| hex(x)),
            b.get(i + 2).and_then(|&x| hex(x)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// What a route's conditions may look at in a request. [`RouteRequest::default`] is a
/// request with no method, header or query known: it meets no condition.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteRequest<'a> {
    pub method: &'a str,
    pub headers: Option<&'a http::HeaderMap>,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
}

impl<'a> RouteRequest<'a> {
    pub fn of<B>(req: &'a http::Request<B>) -> Self {
        RouteRequest {
            method: req.method().as_str(),
            headers: Some(req.headers()),
            query: req.uri().query(),
        }
    }
}

/// One share of a weighted backend set: `weight` out of the set's total goes to `route` (the
/// rule's route with this backend, its own `Route::id`), or, when the backend is invalid
/// (`None`), is answered 500 as the spec says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedChoice {
    pub weight: u32,
    pub route: Option<Arc<Route>>,
}

impl Serialize for WeightedChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("WeightedChoice", 2)?;
        st.serialize_field("service", &self.route.as_ref().map(|r| r.service.to_string()))?;
        st.serialize_field("weight", &self.weight)?;
        st.end()
    }
}

/// A rule's several backends with weights (Gateway API `backendRefs`). A route with one
/// valid backend of non-zero weight has `weighted: None` and its `backend` set as usual.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Weighted {
    pub choices: Vec<WeightedChoice>,
    /// The sum of the weights (each capped at [`Weighted::MAX_WEIGHT`], at most 16 of them
    /// in a valid HTTPRoute; a u64 cannot overflow).
    #[serde(skip)]
    total: u64,
}

/// What a weighted set gives a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick<'w> {
    Route(&'w Arc<Route>),
    /// The share of an invalid backend, or every weight is 0: the spec's 500.
    Refused,
}

impl Weighted {
    /// The CRD's maximum weight.
    pub const MAX_WEIGHT: u32 = 1_000_000;

    /// Weights above [`Weighted::MAX_WEIGHT`] count as that.
    pub fn new(mut choices: Vec<WeightedChoice>) -> Self {
        for c in &mut choices {
            c.weight = c.weight.min(Self::MAX_WEIGHT);
        }
        let total = choices.iter().map(|c| u64::from(c.weight)).sum();
        Weighted { choices, total }
    }

    /// The choice for `r`, read as a fraction of 2^64: the choices divide [0, 1) in their
    /// order, each a part as wide as its share. A uniform `r` picks each with probability
    /// weight / total; an equidistributed sequence of `r`s (the data plane's) picks them in
    /// proportion to within a few requests.
    pub fn pick(&self, r: u64) -> Pick<'_> {
        if self.total == 0 {
            return Pick::Refused;
        }
        // < total, as r < 2^64.
        let mut at = ((u128::from(r) * u128::from(self.total)) >> 64) as u64;
        for c in &self.choices {
            let w = u64::from(c.weight);
            if at < w {
                return c.route.as_ref().map_or(Pick::Refused, Pick::Route);
            }
            at -= w;
        }
        Pick::Refused
    }
}

/// What a matched request is served by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Its index in `Config::route_list`: how the data plane keys what it keeps per route.
    #[serde(skip)]
    pub id: usize,
    pub ingress: ObjectKey,
    pub host: HostPattern,
    /// `None` for a default backend.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRule>,
    /// Index into `Config::backends`.
    #[serde(skip)]
    pub backend: BackendId,
    /// The Service the backend is (for logs and metrics).
    pub service: ObjectKey,
    /// Plain-HTTP requests get a 308 to https (the host has TLS and the Ingress did not opt out).
    pub ssl_redirect: bool,
    /// Endpoint choice for this route's Ingress (shared by its routes).
    pub policy: Arc<Policy>,
    /// The client-certificate policy of the route's host (`auth-tls-*`, set per host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<Arc<super::mtls::ClientAuth>>,
    /// A canary Ingress's alternative for this host and path (`canary` annotations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Arc<super::canary::Canary>>,
    /// Gateway API match conditions besides the path; `None` (every Ingress route): any
    /// request with the path matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Arc<Conditions>>,
    /// Gateway API weighted `backendRefs`: the data plane picks one per request; `None`: the
    /// route's own `backend` serves. compile sets it for two or more backendRefs, or one of
    /// weight 0 or invalid; each choice's route (this route with that backend, service and
    /// per-backend policy) goes into `Config::route_list` with its own id but not into the
    /// table, and this route's own `backend` must still name a backend (the first valid
    /// choice's, say): the lookup checks it before the pick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weighted: Option<Arc<Weighted>>,
}

impl Route {
    /// Whether a request meets the route's conditions (always, without any).
    #[inline]
    pub fn accepts(&self, req: &RouteRequest<'_>) -> bool {
        self.conditions.as_ref().is_none_or(|c| c.matches(req))
    }

    fn regex_matches(&self, path: &str) -> bool {
        self.path
            .as_ref()
            .and_then(|p| p.regex.as_ref())
            .is_some_and(|re| re.0.is_match(path))
    }
}

/// A matcher key's routes.
struct Slot {
    /// The best route for the key's paths.
    route: Arc<Route>,
    /// `None` when `route` takes every request the key matches (no conditions, no Gateway
    /// regex on the host: every Ingress host), so the lookup ends at this one test. Else every
    /// route whose path matches the key's paths, in precedence order, `route` first.
    more: Option<Box<Candidates>>,
}

struct Candidates {
    /// Exact paths equal to the key's: before the host's Gateway regex paths.
    exact: Box<[Arc<Route>]>,
    /// The longest prefix covering the key's paths, which links to the next shorter one:
    /// after the regex paths. Shared, so a host's memory grows with its rules, not with
    /// rules times keys.
    prefix: Option<Arc<PrefixGroup>>,
}

/// The routes of one prefix (trailing slash trimmed) in precedence order, and the longest
/// shorter prefix of the host that covers it.
struct PrefixGroup {
    routes: Box<[Arc<Route>]>,
    parent: Option<Arc<PrefixGroup>>,
}

struct HostRoutes {
    /// Ingress regex paths, longest pattern first: tried before the others, as nginx tries
    /// regex locations before prefix ones.
    regex: Vec<Arc<Route>>,
    paths: PathMatcher,
    /// Gateway API `RegularExpression` paths in precedence order: after Exact paths, before
    /// prefixes.
    gateway_regex: Vec<Arc<Route>>,
    default: Option<Arc<Route>>,
}

impl HostRoutes {
    fn lookup(&self, path: &str, req: &RouteRequest<'_>) -> Option<&Arc<Route>> {
        if let Some(r) = self.regex.iter().find(|r| r.regex_matches(path)) {
            return Some(r);
        }
        let found = match self.paths.at(path) {
            Some(slot) => match &slot.more {
                None => return Some(&slot.route),
                Some(c) => self.select(c, path, req),
            },
            None if !self.gateway_regex.is_empty() => self.regex_route(path, req),
            None => None,
        };
        found.or(self.default.as_ref())
    }

    /// The first candidate that takes the request, in Gateway API precedence.
    #[inline(never)]
    fn select<'a>(&'a self, c: &'a Candidates, path: &str, req: &RouteRequest<'_>) -> Option<&'a Arc<Route>> {
        c.exact
            .iter()
            .find(|r| r.accepts(req))
            .or_else(|| self.regex_route(path, req))
            .or_else(|| {
                let mut group = c.prefix.as_deref();
                while let Some(g) = group {
                    if let Some(r) = g.routes.iter().find(|r| r.accepts(req)) {
                        return Some(r);
                    }
                    group = g.parent.as_deref();
                }
                None
            })
    }

    fn regex_route(&self, path: &str, req: &RouteRequest<'_>) -> Option<&Arc<Route>> {
        self.gateway_regex
            .iter()
            .find(|r| r.regex_matches(path) && r.accepts(req))
    }
}

/// Up to this many matcher keys, a host's paths are compared one by one instead of going
/// into a router: a matchit router costs about 2 KB even for the five keys of a host with
/// two prefix paths (at 10k such hosts, 22 MB of a heap profile), the list a few hundred
/// bytes. Five keys is the usual Ingress (`/` and one more prefix); eight leaves room for a
/// third path of either type.
const FEW_KEYS: usize = 8;

/// A host's path matcher: what matchit would answer for the keys (a static path matches
/// itself; `{base}/{*rest}` any longer path under `base/`, the longest base first; a static
/// key before a catch-all).
enum PathMatcher {
    Few {
        statics: Box<[(Box<str>, Slot)]>,
        /// Catch-all bases, longest first.
        rests: Box<[(Box<str>, Slot)]>,
    },
    Router(matchit::Router<Slot>),
}

impl PathMatcher {
    /// Builds the matcher of `slots` (keys unique); insert failures of the router are
    /// returned with the route of the key.
    fn new(slots: Vec<(Key, Slot)>, few_keys: usize, errors: &mut Vec<(Arc<Route>, String)>) -> Self {
        if slots.len() <= few_keys {
            let mut statics = Vec::new();
            let mut rests = Vec::new();
            for (key, slot) in slots {
                match key {
                    Key::Static(p) => statics.push((p.into_boxed_str(), slot)),
                    Key::Rest(base) => rests.push((base.into_boxed_str(), slot)),
                }
            }
            rests.sort_by_key(|(base, _)| std::cmp::Reverse(base.len()));
            return PathMatcher::Few {
                statics: statics.into(),
                rests: rests.into(),
            };
        }
        let mut router = matchit::Router::new();
        for (key, slot) in slots {
            let route = slot.route.clone();
            if let Err(e) = router.insert(key.to_matchit(), slot) {
                errors.push((route, e.to_string()));
            }
        }
        PathMatcher::Router(router)
    }

    #[inline]
    fn at(&self, path: &str) -> Option<&Slot> {
        match self {
            PathMatcher::Few { statics, rests } => statics
                .iter()
                .find(|(p, _)| **p == *path)
                .or_else(|| rests.iter().find(|(base, _)| under(base, path)))
                .map(|(_, slot)| slot),
            PathMatcher::Router(r) => r.at(path).ok().map(|m| m.value),
        }
    }
}

/// Whether `path` is `base/` and at least one more byte (what `{base}/{*rest}` matches).
fn under(base: &str, path: &str) -> bool {
    path.len() > base.len() + 1 && path.as_bytes()[base.len()] == b'/' && path.starts_with(base)
}

/// Host → path → route, immutable once built.
#[derive(Default)]
pub struct RouteTable {
    exact: HashMap<Box<str>, HostRoutes>,
    wildcard: HashMap<Box<str>, HostRoutes>,
    /// Gateway API `*.` names (suffix matches), keyed by the suffix.
    suffix: HashMap<Box<str>, HostRoutes>,
    /// Regular-expression names, in the order compile() added them.
    regex: Vec<(super::pattern::Pattern, HostRoutes)>,
    any: Option<HostRoutes>,
    catch_all: Option<Arc<Route>>,
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("exact_hosts", &self.exact.len())
            .field("wildcard_hosts", &self.wildcard.len())
            .field("suffix_hosts", &self.suffix.len())
            .field("regex_hosts", &self.regex.len())
            .field("any_host", &self.any.is_some())
            .field("catch_all", &self.catch_all.is_some())
            .finish()
    }
}

/// The strict suffixes of a host one label at a time, longest first: `a.b.c` → `b.c`, `c`.
fn suffixes(host: &str) -> impl Iterator<Item = &str> {
    let mut rest = host;
    std::iter::from_fn(move || {
        let (first, r) = rest.split_once('.')?;
        if first.is_empty() || r.is_empty() {
            return None;
        }
        rest = r;
        Some(r)
    })
}

impl RouteTable {
    /// Finds the route for a request known only by host and path (no method, header or
    /// query: routes with conditions are passed over). See [`RouteTable::route_request`].
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.route_request(host, path, &RouteRequest::default())
    }

    /// Finds the route for a request. `host` is the request host without port (any case);
    /// `path` must already be normalized with [`crate::path::normalize`].
    ///
    /// Hosts are tried from most to least specific — exact, then wildcard, then Gateway API
    /// suffixes (longest first), then regular expressions (as nginx orders server names),
    /// then rules without host — and at each level the host's own default backend catches
    /// paths its rules don't; last come the catch-all default backend and then `None` (404).
    /// Inside a host, the first route in precedence order whose path and conditions match.
    pub fn route_request(&self, host: &str, path: &str, req: &RouteRequest<'_>) -> Option<&Arc<Route>> {
        self.route_hosts(host, path, req).or(self.catch_all.as_ref())
    }

    /// The catch-all default backend, if any.
    pub fn catch_all(&self) -> Option<&Arc<Route>> {
        self.catch_all.as_ref()
    }

    /// [`RouteTable::route_request`] without the catch-all: the route a host level has.
    #[inline]
    pub fn route_hosts(&self, host: &str, path: &str, req: &RouteRequest<'_>) -> Option<&Arc<Route>> {
        let mut buf = [0u8; 256];
        if let Some(host) = lower_host(host, &mut buf) {
            if let Some(r) = self.exact.get(host).and_then(|h| h.lookup(path, req)) {
                return Some(r);
            }
            if let Some((first, rest)) = host.split_once('.')
                && !first.is_empty()
                && let Some(r) = self.wildcard.get(rest).and_then(|h| h.lookup(path, req))
            {
                return Some(r);
            }
            if !self.suffix.is_empty()
                && let Some(r) = self.suffix_route(host, path, req)
            {
                return Some(r);
            }
            if !self.regex.is_empty()
                && let Some(r) = self.regex_route(host, path, req)
            {
                return Some(r);
            }
        }
        self.any.as_ref().and_then(|h| h.lookup(path, req))
    }

    fn suffix_route(&self, host: &str, path: &str, req: &RouteRequest<'_>) -> Option<&Arc<Route>> {
        suffixes(host).find_map(|s| self.suffix.get(s).and_then(|h| h.lookup(path, req)))
    }

    #[cold]
    fn regex_route(&self, host: &str, path: &str, req: &RouteRequest<'_>) -> Option<&Arc<Route>> {
        self.regex
            .iter()
            .filter(|(re, _)| re.0.is_match(host))
            .find_map(|(_, h)| h.lookup(path, req))
    }
}

/// A level of the host walk [`RouteTable::route`] makes, most specific first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Exact,
    Wildcard,
    /// Gateway API `*.` names, any number of labels, longest suffix first.
    Suffix,
    /// `server-alias` names written as `~regex`, tried in order.
    Regex,
    AnyHost,
    CatchAll,
}

/// One level of [`RouteTable::trace`]: the table key tried, whether the table has it, and
/// what that level's matcher answered.
#[derive(Debug)]
pub struct LevelTrace<'t> {
    pub level: Level,
    pub key: String,
    pub present: bool,
    pub found: Option<&'t Arc<Route>>,
}

impl RouteTable {
    /// The walk [`RouteTable::route`] makes, every level tried and recorded, for `portico
    /// explain`. It calls the same host normalization and per-host matchers; the request
    /// path never comes here. The first level with a route is the one `route` returns.
    pub fn trace(&self, host: &str, path: &str) -> Vec<LevelTrace<'_>> {
        let req = RouteRequest::default();
        let mut out = Vec::with_capacity(4);
        let mut buf = [0u8; 256];
        let level = |level, key: String, routes: Option<&HostRoutes>| LevelTrace {
            level,
            key,
            present: routes.is_some(),
            found: None,
        };
        if let Some(host) = lower_host(host, &mut buf) {
            let exact = self.exact.get(host);
            out.push(LevelTrace {
                found: exact.and_then(|h| h.lookup(path, &req)),
                ..level(Level::Exact, host.to_string(), exact)
            });
            if let Some((first, rest)) = host.split_once('.')
                && !first.is_empty()
            {
                let wild = self.wildcard.get(rest);
                out.push(LevelTrace {
                    found: wild.and_then(|h| h.lookup(path, &req)),
                    ..level(Level::Wildcard, format!("*.{rest}"), wild)
                });
            }
            for (s, h) in suffixes(host).filter_map(|s| Some((s, self.suffix.get(s)?))) {
                out.push(LevelTrace {
                    found: h.lookup(path, &req),
                    ..level(Level::Suffix, format!("*.{s}"), Some(h))
                });
            }
            for (re, h) in self.regex.iter().filter(|(re, _)| re.0.is_match(host)) {
                out.push(LevelTrace {
                    found: h.lookup(path, &req),
                    ..level(Level::Regex, format!("~{}", re.0.as_str()), Some(h))
                });
            }
        }
        out.push(LevelTrace {
            found: self.any.as_ref().and_then(|h| h.lookup(path, &req)),
            ..level(Level::AnyHost, "*".into(), self.any.as_ref())
        });
        out.push(LevelTrace {
            level: Level::CatchAll,
            key: "default backend".into(),
            present: self.catch_all.is_some(),
            found: self.catch_all.as_ref(),
        });
        out
    }
}

/// Precedence of a rule on one matcher key, best first, as the Gateway API orders matches:
/// an Exact path, then the longer path, then a method condition, then more header
/// conditions, then more query conditions, then the order rules were added in (compile adds
/// oldest Ingress or Route first, and a Route's rules in order). Ingress routes differ only
/// in path type and length, which this orders as ingress-nginx does (`location =` first).
type Rank = (
    bool,
    std::cmp::Reverse<usize>,
    bool,
    std::cmp::Reverse<usize>,
    std::cmp::Reverse<usize>,
    usize,
);

/// Ingress regex paths: longest first, then Exact, then added order.
type RegexRank = (std::cmp::Reverse<usize>, bool, usize);

fn rank(rule: &PathRule, conditions: Option<&Conditions>, added: usize) -> Rank {
    use std::cmp::Reverse;
    let (method, headers, query) =
        conditions.map_or((false, 0, 0), |c| (c.method.is_some(), c.headers.len(), c.query.len()));
    (
        !rule.path_type.is_exact(),
        Reverse(rule.path.len()),
        !method,
        Reverse(headers),
        Reverse(query),
        added,
    )
}

/// A matcher key, unescaped: a static path, or a catch-all `{base}/{*rest}` (`base` without
/// trailing slash, `""` for the root).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Static(String),
    Rest(String),
}

impl Key {
    /// matchit's syntax: `{` and `}` are parameter syntax, a literal brace is doubled.
    fn to_matchit(&self) -> String {
        let escape = |p: &str| p.replace('{', "{{").replace('}', "}}");
        match self {
            Key::Static(p) => escape(p),
            Key::Rest(base) => format!("{}/{{*rest}}", escape(base)),
        }
    }

    /// The prefixes (trailing slash trimmed, `""` the root) that cover every path of this
    /// key, segment-wise: `/a/b` → `""`, `/a`, `/a/b`.
    fn covering_prefixes(&self) -> impl Iterator<Item = &str> {
        let p = match self {
            Key::Static(p) | Key::Rest(p) => p.as_str(),
        };
        let inner = p
            .char_indices()
            .filter(|&(i, c)| c == '/' && i > 0)
            .map(move |(i, _)| &p[..i]);
        let whole = (!p.is_empty() && !p.ends_with('/')).then_some(p);
        std::iter::once("").chain(inner).chain(whole)
    }
}

/// The matcher keys one rule occupies. matchit's catch-all never matches an empty
/// remainder, so a Prefix needs the bare path, the path with `/`, and the catch-all.
fn keys_for(rule: &PathRule) -> Vec<Key> {
    if rule.path_type.is_exact() {
        return vec![Key::Static(rule.path.clone())];
    }
    let base = rule.path.trim_end_matches('/');
    if base.is_empty() {
        vec![Key::Static("/".into()), Key::Rest(String::new())]
    } else {
        vec![
            Key::Static(base.to_string()),
            Key::Static(format!("{base}/")),
            Key::Rest(base.to_string()),
        ]
    }
}

#[derive(Default)]
struct HostBuild {
    /// When the host was first seen (regex names are tried in this order).
    first: usize,
    /// The best rule on each key.
    keys: HashMap<Key, (Rank, Arc<Route>)>,
    /// Every non-regex path rule, kept for the candidate lists of a host with conditions.
    rules: Vec<(Rank, Arc<Route>)>,
    regex: Vec<(RegexRank, Arc<Route>)>,
    gateway_regex: Vec<(Rank, Arc<Route>)>,
    /// Some route on this host has conditions: its keys get candidate lists.
    conditional: bool,
    default: Option<Arc<Route>>,
}

impl HostBuild {
    /// The candidate lists of each key, when the host needs them: every rule whose path
    /// covers the key's paths, in precedence order.
    fn slots(self) -> (Vec<(Key, Slot)>, Vec<Arc<Route>>) {
        let mut gateway_regex = self.gateway_regex;
        gateway_regex.sort_by_key(|r| r.0);
        let gateway_regex: Vec<_> = gateway_regex.into_iter().map(|(_, r)| r).collect();
        if !self.conditional && gateway_regex.is_empty() {
            let slots = self
                .keys
                .into_iter()
                .map(|(k, (_, route))| (k, Slot { route, more: None }))
                .collect();
            return (slots, gateway_regex);
        }
        let mut exact: HashMap<&str, Vec<&(Rank, Arc<Route>)>> = HashMap::new();
        let mut prefix: HashMap<&str, Vec<&(Rank, Arc<Route>)>> = HashMap::new();
        for r in &self.rules {
            let Some(p) = &r.1.path else { continue };
            if p.path_type.is_exact() {
                exact.entry(p.path.as_str()).or_default().push(r);
            } else {
                prefix.entry(p.path.trim_end_matches('/')).or_default().push(r);
            }
        }
        let sorted = |mut v: Vec<&(Rank, Arc<Route>)>| -> Box<[Arc<Route>]> {
            v.sort_by_key(|r| r.0);
            v.into_iter().map(|r| r.1.clone()).collect()
        };
        // Shorter prefixes first, so that each group's parent is built before it.
        let mut prefixes: Vec<_> = prefix.into_iter().collect();
        prefixes.sort_by_key(|(p, _)| p.len());
        let mut groups: HashMap<&str, Arc<PrefixGroup>> = HashMap::new();
        for (p, routes) in prefixes {
            let parent = Key::Rest(p.to_string())
                .covering_prefixes()
                .filter(|a| *a != p)
                .filter_map(|a| groups.get(a))
                .last()
                .cloned();
            let group = Arc::new(PrefixGroup {
                routes: sorted(routes),
                parent,
            });
            groups.insert(p, group);
        }
        let mut slots = Vec::with_capacity(self.keys.len());
        for (key, (_, best)) in &self.keys {
            let more = Candidates {
                exact: match key {
                    Key::Static(p) => sorted(exact.get(p.as_str()).cloned().unwrap_or_default()),
                    Key::Rest(_) => Box::new([]),
                },
                prefix: key.covering_prefixes().filter_map(|p| groups.get(p)).last().cloned(),
            };
            let first = more
                .exact
                .first()
                .or(more.prefix.as_ref().and_then(|g| g.routes.first()));
            let route = first.unwrap_or(best).clone();
            slots.push((
                key.clone(),
                Slot {
                    route,
                    more: Some(Box::new(more)),
                },
            ));
        }
        (slots, gateway_regex)
    }
}

/// Collects routes, then builds the matchers.
#[derive(Default)]
pub struct RouteTableBuilder {
    hosts: HashMap<HostPattern, HostBuild>,
    /// Hosts seen so far.
    seen: usize,
    catch_all: Option<Arc<Route>>,
    added: usize,
}

impl RouteTableBuilder {
    /// Adds a path rule. Conflicts (the same host, path and type twice) must have been
    /// settled by the caller; here rules only compete by precedence. The order of calls
    /// breaks ties: the Gateway API's compile adds one route per HTTPRoute match, oldest
    /// HTTPRoute first (then namespace/name), then rule and match order; two matches with the
    /// same path and different conditions are no conflict.
    pub fn add_path(&mut self, route: Arc<Route>) {
        let Some(rule) = &route.path else {
            return;
        };
        let added = self.added;
        self.added += 1;
        let rank = rank(rule, route.conditions.as_deref(), added);
        let host = self.host(&route.host);
        if rule.path_type == PathType::RegularExpression {
            host.conditional = true;
            host.gateway_regex.push((rank, route));
            return;
        }
        if rule.regex.is_some() {
            let rank = (std::cmp::Reverse(rule.path.len()), !rule.path_type.is_exact(), added);
            host.regex.push((rank, route));
            return;
        }
        host.conditional |= route.conditions.is_some();
        for key in keys_for(rule) {
            match host.keys.get(&key) {
                Some((existing, _)) if *existing <= rank => {}
                _ => drop(host.keys.insert(key, (rank, route.clone()))),
            }
        }
        host.rules.push((rank, route));
    }

    /// Sets a host's default backend unless one is set; returns the one already set.
    pub fn set_host_default(&mut self, route: Arc<Route>) -> Option<Arc<Route>> {
        let host = self.host(&route.host);
        match &host.default {
            Some(existing) => Some(existing.clone()),
            None => {
                host.default = Some(route);
                None
            }
        }
    }

    fn host(&mut self, host: &HostPattern) -> &mut HostBuild {
        let seen = &mut self.seen;
        self.hosts.entry(host.clone()).or_insert_with(|| {
            *seen += 1;
            HostBuild {
                first: *seen,
                ..HostBuild::default()
            }
        })
    }

    /// Sets the catch-all unless one is set; returns the one already set.
    pub fn set_catch_all(&mut self, route: Arc<Route>) -> Option<Arc<Route>> {
        match &self.catch_all {
            Some(existing) => Some(existing.clone()),
            None => {
                self.catch_all = Some(route);
                None
            }
        }
    }

    /// Sets the catch-all, replacing any (compile updates it once canaries are attached).
    pub fn replace_catch_all(&mut self, route: Arc<Route>) {
        self.catch_all = Some(route);
    }

    pub fn has_catch_all(&self) -> bool {
        self.catch_all.is_some()
    }

    /// Builds the table. Matcher insert failures (which the key scheme should make
    /// impossible) are returned as messages rather than lost or panicking.
    pub fn build(self) -> (RouteTable, Vec<(Arc<Route>, String)>) {
        self.build_with(FEW_KEYS)
    }

    /// [`RouteTableBuilder::build`] with hosts of at most `few_keys` matcher keys matched
    /// without a router.
    fn build_with(self, few_keys: usize) -> (RouteTable, Vec<(Arc<Route>, String)>) {
        let mut table = RouteTable {
            catch_all: self.catch_all,
            ..Default::default()
        };
        let mut errors = Vec::new();
        let mut regex = Vec::new();
        for (host, mut build) in self.hosts {
            let first = build.first;
            let default = build.default.take();
            let mut paths = std::mem::take(&mut build.regex);
            paths.sort_by_key(|r| r.0);
            let (mut slots, gateway_regex) = build.slots();
            slots.sort_by(|a, b| a.0.cmp(&b.0));
            let hr = HostRoutes {
                regex: paths.into_iter().map(|(_, r)| r).collect(),
                paths: PathMatcher::new(slots, few_keys, &mut errors),
                gateway_regex,
                default,
            };
            match host {
                HostPattern::Exact(h) => drop(table.exact.insert(h.into_boxed_str(), hr)),
                HostPattern::Wildcard(s) => drop(table.wildcard.insert(s.into_boxed_str(), hr)),
                HostPattern::Suffix(s) => drop(table.suffix.insert(s.into_boxed_str(), hr)),
                HostPattern::Any => table.any = Some(hr),
                HostPattern::Regex(re) => regex.push((first, re, hr)),
            }
        }
        regex.sort_by_key(|(first, _, _)| *first);
        table.regex = regex.into_iter().map(|(_, re, hr)| (re, hr)).collect();
        (table, errors)
    }
}

#[cfg(test)]
mod tests;
