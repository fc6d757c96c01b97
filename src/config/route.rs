//! The route table: host index (exact, `*.` wildcard, any host) → path matcher → route.

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
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
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

/// An Ingress `pathType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<PathRegex>,
}

/// A compiled path regex; compares and shows as its source.
pub type PathRegex = super::pattern::Pattern;

/// ingress-nginx's `location ~* "^PATH"`: case-insensitive, anchored at the start.
pub fn path_regex(path: &str) -> Result<PathRegex, String> {
    PathRegex::new(&format!("^(?:{path})"), true).map_err(|e| e.to_string())
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
}

struct HostRoutes {
    /// Regex paths, longest pattern first: tried before the others, as nginx tries regex
    /// locations before prefix ones.
    regex: Vec<Arc<Route>>,
    paths: matchit::Router<Arc<Route>>,
    default: Option<Arc<Route>>,
}

impl HostRoutes {
    fn lookup(&self, path: &str) -> Option<&Arc<Route>> {
        self.regex
            .iter()
            .find(|r| {
                r.path
                    .as_ref()
                    .and_then(|p| p.regex.as_ref())
                    .is_some_and(|re| re.0.is_match(path))
            })
            .or_else(|| self.paths.at(path).ok().map(|m| m.value))
            .or(self.default.as_ref())
    }
}

/// Host → path → route, immutable once built.
#[derive(Default)]
pub struct RouteTable {
    exact: HashMap<Box<str>, HostRoutes>,
    wildcard: HashMap<Box<str>, HostRoutes>,
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
            .field("regex_hosts", &self.regex.len())
            .field("any_host", &self.any.is_some())
            .field("catch_all", &self.catch_all.is_some())
            .finish()
    }
}

impl RouteTable {
    /// Finds the route for a request. `host` is the request host without port (any case);
    /// `path` must already be normalized with [`crate::path::normalize`].
    ///
    /// Hosts are tried from most to least specific — exact, then wildcard, then regular
    /// expressions (as nginx orders server names), then rules without host — and at each
    /// level the host's own default backend catches paths its rules don't; last come the
    /// catch-all default backend and then `None` (404).
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        let mut buf = [0u8; 256];
        if let Some(host) = lower_host(host, &mut buf) {
            if let Some(r) = self.exact.get(host).and_then(|h| h.lookup(path)) {
                return Some(r);
            }
            if let Some((first, rest)) = host.split_once('.')
                && !first.is_empty()
                && let Some(r) = self.wildcard.get(rest).and_then(|h| h.lookup(path))
            {
                return Some(r);
            }
            if !self.regex.is_empty()
                && let Some(r) = self.regex_route(host, path)
            {
                return Some(r);
            }
        }
        if let Some(r) = self.any.as_ref().and_then(|h| h.lookup(path)) {
            return Some(r);
        }
        self.catch_all.as_ref()
    }

    #[cold]
    fn regex_route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.regex
            .iter()
            .filter(|(re, _)| re.0.is_match(host))
            .find_map(|(_, h)| h.lookup(path))
    }
}

/// A level of the host walk [`RouteTable::route`] makes, most specific first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Exact,
    Wildcard,
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
                found: exact.and_then(|h| h.lookup(path)),
                ..level(Level::Exact, host.to_string(), exact)
            });
            if let Some((first, rest)) = host.split_once('.')
                && !first.is_empty()
            {
                let wild = self.wildcard.get(rest);
                out.push(LevelTrace {
                    found: wild.and_then(|h| h.lookup(path)),
                    ..level(Level::Wildcard, format!("*.{rest}"), wild)
                });
            }
            for (re, h) in self.regex.iter().filter(|(re, _)| re.0.is_match(host)) {
                out.push(LevelTrace {
                    found: h.lookup(path),
                    ..level(Level::Regex, format!("~{}", re.0.as_str()), Some(h))
                });
            }
        }
        out.push(LevelTrace {
            found: self.any.as_ref().and_then(|h| h.lookup(path)),
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

/// Precedence of a rule on one matcher key: longer rule path first, then Exact over
/// Prefix, then the order rules were added in (compile adds oldest Ingress first).
type Rank = (std::cmp::Reverse<usize>, bool, usize);

#[derive(Default)]
struct HostBuild {
    /// When the host was first seen (regex names are tried in this order).
    first: usize,
    keys: HashMap<String, (Rank, Arc<Route>)>,
    regex: Vec<(Rank, Arc<Route>)>,
    default: Option<Arc<Route>>,
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

/// matchit treats `{` and `}` as parameter syntax; a literal brace must be doubled.
fn escape(path: &str) -> String {
    path.replace('{', "{{").replace('}', "}}")
}

/// The matcher keys one rule occupies. matchit's catch-all never matches an empty
/// remainder, so a Prefix needs the bare path, the path with `/`, and the catch-all.
fn keys_for(rule: &PathRule) -> Vec<String> {
    if rule.path_type.is_exact() {
        return vec![escape(&rule.path)];
    }
    let base = escape(rule.path.trim_end_matches('/'));
    if base.is_empty() {
        vec!["/".into(), "/{*rest}".into()]
    } else {
        vec![base.clone(), format!("{base}/"), format!("{base}/{{*rest}}")]
    }
}

impl RouteTableBuilder {
    /// Adds a path rule. Conflicts (the same host, path and type twice) must have been
    /// settled by the caller; here rules only compete by precedence.
    pub fn add_path(&mut self, route: Arc<Route>) {
        let Some(rule) = &route.path else {
            return;
        };
        let rank: Rank = (
            std::cmp::Reverse(rule.path.len()),
            !rule.path_type.is_exact(),
            self.added,
        );
        self.added += 1;
        let host = self.host(&route.host);
        if rule.regex.is_some() {
            host.regex.push((rank, route));
            return;
        }
        for key in keys_for(rule) {
            match host.keys.get(&key) {
                Some((existing, _)) if *existing <= rank => {}
                _ => drop(host.keys.insert(key, (rank, route.clone()))),
            }
        }
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
        let mut table = RouteTable {
            catch_all: self.catch_all,
            ..Default::default()
        };
        let mut errors = Vec::new();
        let mut regex = Vec::new();
        for (host, build) in self.hosts {
            let first = build.first;
            let mut router = matchit::Router::new();
            let mut keys: Vec<_> = build.keys.into_iter().collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, (_, route)) in keys {
                if let Err(e) = router.insert(key, route.clone()) {
                    errors.push((route, e.to_string()));
                }
            }
            let mut paths = build.regex;
            paths.sort_by_key(|r| r.0);
            let hr = HostRoutes {
                regex: paths.into_iter().map(|(_, r)| r).collect(),
                paths: router,
                default: build.default,
            };
            match host {
                HostPattern::Exact(h) => drop(table.exact.insert(h.into_boxed_str(), hr)),
                HostPattern::Wildcard(s) => drop(table.wildcard.insert(s.into_boxed_str(), hr)),
                HostPattern::Any => table.any = Some(hr),
                HostPattern::Regex(re) => regex.push((first, re, hr)),
            }
        }
        regex.sort_by_key(|(first, _, _)| *first);
        table.regex = regex.into_iter().map(|(_, re, hr)| (re, hr)).collect();
        (table, errors)
    }
}
