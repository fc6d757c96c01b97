//! `portico explain`: which listener, certificate, route, policy steps and endpoints a request
//! would get from a Config, and why every other candidate lost — found by the data plane's own
//! lookups (route table walk, SNI resolve, canary decision), never by a second matcher.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use serde::Serialize;

use crate::config::backend::Target;
use crate::config::canary::Canary;
use crate::config::diagnostic::Reason;
use crate::config::route::{Level, RouteTableBuilder};
use crate::config::{Config, HostPattern, Route};
use crate::proxy::policy::canary;

/// At most this many request headers in a question (it comes from a user).
pub const MAX_HEADERS: usize = 64;
/// At most this many entries in each list of an answer (losing routes, ignored Ingresses).
pub const MAX_LISTED: usize = 100;

/// The request to explain.
#[derive(Clone, Debug, Default)]
pub struct Question {
    /// `http://host[:port]/path` or `https://…`; a bare `/path` is plain HTTP with the Host
    /// header's host.
    pub url: String,
    /// `K: V` pairs as a client would send them. A `Host` header overrides the URL's host for
    /// routing (as `curl -H Host:` does); the URL's host stays the TLS SNI.
    pub headers: Vec<(String, String)>,
}

/// Why a question cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum Bad {
    #[error("url {0:?}: {1}")]
    Url(String, String),
    #[error("header {0:?}: {1}")]
    Header(String, String),
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
}

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub request: Req,
    pub listener: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Certificate>,
    /// The host levels the route table tried, most specific first.
    pub lookup: Vec<LevelStep>,
    /// The route that matched, `None` for a 404.
    pub route: Option<RouteView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStep>,
    /// What the client gets before any endpoint is asked, when Portico answers itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by_portico: Option<String>,
    /// Policy steps that run for this route, in the handler's order.
    pub steps: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// Routes on hosts this request matches that did not take it, and why.
    pub lost: Vec<Lost>,
    /// Routes on other hosts (not listed).
    pub other_hosts: usize,
    /// Path and default-backend conflicts compile settled on this request's hosts.
    pub conflicts: Vec<String>,
    /// Ingresses that are not Portico's (class), and why.
    pub ignored: Vec<Ignored>,
}

#[derive(Debug, Serialize)]
pub struct Req {
    pub scheme: &'static str,
    pub host: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Certificate {
    pub sni: String,
    /// `exact`, `wildcard` or `default`.
    pub chosen: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LevelStep {
    pub level: Level,
    pub key: String,
    pub present: bool,
    pub matched: bool,
}

#[derive(Debug, Serialize)]
pub struct RouteView {
    pub ingress: String,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(rename = "pathType")]
    pub path_type: String,
    pub service: String,
}

#[derive(Debug, Serialize)]
pub struct CanaryStep {
    pub canary_ingress: String,
    /// `canary`, `primary`, or `weight` (random per request).
    pub decision: &'static str,
    pub why: String,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Endpoints {
    pub service: String,
    pub balance: String,
    pub ready: Vec<String>,
    pub terminating: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Lost {
    pub ingress: String,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(rename = "pathType")]
    pub path_type: String,
    pub why: String,
}

#[derive(Debug, Serialize)]
pub struct Ignored {
    pub ingress: String,
    pub reason: String,
}

fn view(r: &Route) -> RouteView {
    let (path, path_type) = describe_path(r);
    RouteView {
        ingress: r.ingress.to_string(),
        host: r.host.to_string(),
        path,
        path_type,
        service: r.service.to_string(),
    }
}

fn describe_path(r: &Route) -> (Option<String>, String) {
    match &r.path {
        Some(p) if p.regex.is_some() => (Some(p.path.clone()), "Regex".into()),
        Some(p) => (Some(p.path.clone()), format!("{:?}", p.path_type)),
        None => (None, "DefaultBackend".into()),
    }
}

/// The level a route sits on in the host walk.
fn level_of(r: &Route) -> Level {
    match (&r.host, &r.path) {
        (HostPattern::Exact(_), _) => Level::Exact,
        (HostPattern::Wildcard(_), _) => Level::Wildcard,
        (HostPattern::Suffix(_), _) => Level::Suffix,
        (HostPattern::Regex(_), _) => Level::Regex,
        (HostPattern::Any, Some(_)) => Level::AnyHost,
        (HostPattern::Any, None) => Level::CatchAll,
    }
}

fn rank(l: Level) -> u8 {
    match l {
        Level::Exact => 0,
        Level::Wildcard => 1,
        Level::Suffix => 2,
        Level::Regex => 3,
        Level::AnyHost => 4,
        Level::CatchAll => 5,
    }
}

/// What the table built from this one route answers: (host level present, route found).
fn alone(r: &Arc<Route>, host: &str, path: &str) -> (bool, bool) {
    let mut b = RouteTableBuilder::default();
    match (&r.path, &r.host) {
        (Some(_), _) => b.add_path(r.clone()),
        (None, HostPattern::Any) => drop(b.set_catch_all(r.clone())),
        (None, _) => drop(b.set_host_default(r.clone())),
    }
    let (table, _) = b.build();
    let trace = table.trace(host, path);
    let level = level_of(r);
    let step = trace.iter().find(|t| t.level == level);
    (step.is_some_and(|t| t.present), step.is_some_and(|t| t.found.is_some()))
}

/// A question's URL: scheme, host (if absolute) and path with query.
struct Url {
    scheme: &'static str,
    host: Option<String>,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, Bad> {
    let bad = |why: &str| Bad::Url(url.to_string(), why.to_string());
    if url.len() > 8192 {
        return Err(bad("longer than 8192 bytes"));
    }
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    let scheme = match uri.scheme_str() {
        None | Some("http") => "http",
        Some("https") => "https",
        Some(other) => return Err(bad(&format!("scheme {other:?} is neither http nor https"))),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(Url {
        scheme,
        host: uri.host().map(str::to_string),
        path: if path.is_empty() { "/".into() } else { path.to_string() },
    })
}

/// Answers a question from a Config with the data plane's lookups.
pub fn explain(cfg: &Config, q: &Question) -> Result<Explanation, Bad> {
    if q.headers.len() > MAX_HEADERS {
        return Err(Bad::TooManyHeaders);
    }
    let Url {
        scheme,
        host: url_host,
        path: full_path,
    } = parse_url(&q.url)?;
    let mut headers = HeaderMap::new();
    for (k, v) in &q.headers {
        let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|e| Bad::Header(k.clone(), e.to_string()))?;
        let value = HeaderValue::from_str(v.trim()).map_err(|e| Bad::Header(k.clone(), e.to_string()))?;
        headers.append(name, value);
    }
    let host_field = headers.get(http::header::HOST).and_then(|v| v.to_str().ok());
    let host = match (host_field, &url_host) {
        (Some(h), _) => strip_port(h).to_string(),
        (None, Some(h)) => h.clone(),
        (None, None) => {
            return Err(Bad::Url(
                q.url.clone(),
                "no host: give an absolute URL or a Host header".into(),
            ));
        }
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let raw_path = full_path.split('?').next().unwrap_or("/").to_string();
    let norm = crate::path::normalize(&raw_path).map_err(|e| Bad::Url(q.url.clone(), e.to_string()))?;
    let tls = scheme == "https";

    let mut x = Explanation {
        request: Req {
            scheme,
            host: host.clone(),
            path: raw_path.clone(),
            normalized: (norm != raw_path).then(|| norm.to_string()),
        },
        listener: String::new(),
        certificate: None,
        lookup: Vec::new(),
        route: None,
        canary: None,
        answered_by_portico: None,
        steps: Vec::new(),
        endpoints: None,
        lost: Vec::new(),
        other_hosts: 0,
        conflicts: Vec::new(),
        ignored: Vec::new(),
    };

    if tls {
        let sni = url_host.clone().unwrap_or_else(|| host.clone()).to_ascii_lowercase();
        x.listener = "https (--https-addr): TLS, certificate by SNI".into();
        x.certificate = Some(certificate(cfg, &sni));
        if let Some(b) = cfg.passthrough_backend(Some(&sni)) {
            x.listener =
                "https (--https-addr): passthrough (ssl-passthrough or TLSRoute), TLS spliced unterminated".into();
            let service = b.service.to_string();
            x.answered_by_portico = Some(format!(
                "none: SNI {sni} is a passthrough host (ssl-passthrough or TLSRoute); the TLS connection goes to Service {service} as it is, no HTTP routing"
            ));
            x.certificate = None;
            return Ok(x);
        }
    } else {
        x.listener = "http (--http-addr): plain HTTP".into();
    }

    let trace = cfg.routes.trace(&host, &norm);
    // Gateway listeners' routes are in tables of their own: those of ports 80 and 443,
    // which Portico's own sockets serve after the Ingresses.
    let winner = trace.iter().find_map(|t| t.found).cloned().or_else(|| {
        let points = cfg.gateway_listeners.as_ref()?;
        let req = crate::config::route::RouteRequest::default();
        match points.route_request(&cfg.routes, (0, true, tls), Some(&host), &host, &norm, &req) {
            crate::config::listeners::Found::Route(r) => Some(r.clone()),
            _ => None,
        }
    });
    x.lookup = trace
        .iter()
        .map(|t| LevelStep {
            level: t.level,
            key: t.key.clone(),
            present: t.present,
            matched: t.found.is_some(),
        })
        .collect();
    let host_keys: Vec<String> = trace
        .iter()
        .filter(|t| matches!(t.level, Level::Exact | Level::Wildcard | Level::Regex | Level::AnyHost))
        .map(|t| t.key.clone())
        .collect();

    // Canary routes, by id, and the primary each belongs to.
    let canaries: HashSet<usize> = cfg
        .route_list
        .iter()
        .filter_map(|r| r.canary.as_ref().map(|c| c.route.id))
        .collect();

    let mut served = winner.clone();
    if let Some(w) = &winner {
        x.route = Some(view(w));
        if let Some(c) = &w.canary {
            // The same decision, asked twice with the weight pinned at either end: what the
            // session, header and cookie rules settle, both answers agree on.
            let with_weight = |weight| {
                let mut pinned = (**w).clone();
                pinned.canary = Some(Arc::new(Canary {
                    weight,
                    ..(**c).clone()
                }));
                canary::check(&pinned, &headers, || 0).is_some()
            };
            let (never, always) = (with_weight(0), with_weight(c.weight_total.max(1)));
            let (decision, why) = match (never, always) {
                (true, _) => (
                    "canary",
                    "a session cookie, the canary header or the canary cookie sends it to the canary".to_string(),
                ),
                (false, false) => (
                    "primary",
                    "a session cookie, the canary header or the canary cookie keeps it on the primary".to_string(),
                ),
                (false, true) if c.weight == 0 => (
                    "primary",
                    "no header or cookie decides and canary-weight is 0".to_string(),
                ),
                (false, true) if c.weight >= c.weight_total => (
                    "canary",
                    "no header or cookie decides and canary-weight sends every request".to_string(),
                ),
                (false, true) => (
                    "weight",
                    format!(
                        "no header or cookie decides: canary-weight {} of {} requests go to the canary",
                        c.weight, c.weight_total
                    ),
                ),
            };
            if decision == "canary" {
                served = Some(c.route.clone());
            }
            x.canary = Some(CanaryStep {
                canary_ingress: c.route.ingress.to_string(),
                decision,
                why,
            });
        }
    }

    if let Some(r) = &served {
        x.steps = steps(r, tls);
        x.answered_by_portico = x
            .steps
            .iter()
            .find(|s| s.step == "ssl-redirect" || s.step == "redirect")
            .map(|s| s.detail.clone());
        if let Some(b) = cfg.backend(r) {
            let alg = match (&r.policy.affinity, &r.policy.hash_by) {
                (Some(a), _) => format!("cookie affinity ({}), else {:?}", a.name, r.policy.load_balance),
                (None, Some(_)) => "upstream-hash-by".to_string(),
                (None, None) => format!("{:?}", r.policy.load_balance),
            };
            let mut e = Endpoints {
                service: b.service.to_string(),
                balance: alg,
                ready: Vec::new(),
                terminating: Vec::new(),
                unavailable: None,
            };
            match &b.target {
                Target::Endpoints { ready, terminating } => {
                    e.ready = ready.iter().take(MAX_LISTED).map(|p| p.addr.to_string()).collect();
                    e.terminating = terminating
                        .iter()
                        .take(MAX_LISTED)
                        .map(|p| p.addr.to_string())
                        .collect();
                    if ready.is_empty() && x.answered_by_portico.is_none() {
                        x.answered_by_portico = Some(format!("503: Service {} has no ready endpoints", b.service));
                    }
                }
                Target::ExternalName { host, port } => e.ready = vec![format!("{host}:{port} (ExternalName, by DNS)")],
                Target::Unavailable { reason } => {
                    e.unavailable = Some(reason.clone());
                    if x.answered_by_portico.is_none() {
                        x.answered_by_portico = Some(format!("503: {reason}"));
                    }
                }
            }
            x.endpoints = Some(e);
        }
    } else {
        x.answered_by_portico = Some("404: no route for this host and path, and no default backend".into());
    }

    let winner_level = winner.as_ref().map(|w| rank(level_of(w)));
    for r in cfg.route_list.iter() {
        if winner.as_ref().is_some_and(|w| Arc::ptr_eq(w, r)) {
            continue;
        }
        let (host_ok, path_ok) = alone(r, &host, &norm);
        if !host_ok {
            x.other_hosts += 1;
            continue;
        }
        if x.lost.len() >= MAX_LISTED {
            continue;
        }
        let why = if canaries.contains(&r.id) {
            let primary_won = winner
                .as_ref()
                .and_then(|w| w.canary.as_ref())
                .is_some_and(|c| Arc::ptr_eq(&c.route, r));
            if primary_won {
                "canary of the matched route: the canary decision above picks between them".to_string()
            } else {
                "canary: only reached through its primary route, which did not match".to_string()
            }
        } else if !path_ok {
            match &r.path {
                Some(p) if p.regex.is_some() => format!("regex {} does not match {norm}", p.path),
                Some(p) if p.path_type.is_exact() => format!("Exact path {} is not {norm}", p.path),
                Some(p) => format!(
                    "Prefix {} does not cover {norm} (prefixes match whole path elements)",
                    p.path
                ),
                None => "default backend".to_string(),
            }
        } else {
            lost_why(r, winner.as_deref(), winner_level)
        };
        let (path, path_type) = describe_path(r);
        x.lost.push(Lost {
            ingress: r.ingress.to_string(),
            host: r.host.to_string(),
            path,
            path_type,
            why,
        });
    }

    x.conflicts = cfg
        .diagnostics
        .iter()
        .filter(|d| matches!(d.reason, Reason::PathConflict | Reason::DefaultBackendConflict))
        .filter(|d| {
            d.reason == Reason::DefaultBackendConflict
                || host_keys.iter().any(|k| d.message.contains(&format!("host {k} ")))
        })
        .take(MAX_LISTED)
        .map(|d| format!("{}: {}", d.object, d.message))
        .collect();
    x.ignored = cfg
        .ignored
        .iter()
        .take(MAX_LISTED)
        .map(|(k, why)| Ignored {
            ingress: k.to_string(),
            reason: why.clone(),
        })
        .collect();
    Ok(x)
}

/// Why a route whose host and path both match lost to the winner.
fn lost_why(r: &Route, winner: Option<&Route>, winner_level: Option<u8>) -> String {
    let Some(w) = winner else {
        return "matches, but the table did not return it".into();
    };
    let level = rank(level_of(r));
    if winner_level.is_some_and(|wl| wl < level) {
        return format!(
            "host {} is more specific than {} (exact > wildcard > any host > default backend)",
            w.host, r.host
        );
    }
    match (&w.path, &r.path) {
        (Some(_), None) => format!("a host default backend: only for paths no rule of {} matches", r.host),
        (Some(wp), Some(rp)) if wp.regex.is_some() && rp.regex.is_none() => {
            "regex paths (use-regex) are tried before Prefix and Exact ones".to_string()
        }
        (Some(wp), Some(rp)) if wp.path.len() > rp.path.len() => {
            format!("longer path wins: {} is longer than {}", wp.path, rp.path)
        }
        (Some(wp), Some(rp))
            if wp.path.len() == rp.path.len() && wp.path_type.is_exact() && !rp.path_type.is_exact() =>
        {
            "on equal paths Exact beats Prefix".to_string()
        }
        _ => "an older Ingress (or an earlier rule) claims the same match first".to_string(),
    }
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split(']').next().map_or(h, |s| s.trim_start_matches('['));
    }
    h.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(h, |(h, _)| h)
}

/// The certificate SNI picks, found by the handshake's own resolve.
fn certificate(cfg: &Config, sni: &str) -> Certificate {
    let chosen = cfg.certs.resolve(Some(sni));
    let is = |k: Option<&Arc<rustls::sign::CertifiedKey>>| match (k, &chosen) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    };
    let exact = HostPattern::Exact(sni.to_string());
    let wild = sni
        .split_once('.')
        .filter(|(first, _)| !first.is_empty())
        .map(|(_, rest)| HostPattern::Wildcard(rest.to_string()));
    let (kind, pattern) = if is(cfg.certs.own(&exact)) {
        ("exact", Some(exact))
    } else if let Some(w) = wild.filter(|w| is(cfg.certs.own(w))) {
        ("wildcard", Some(w))
    } else {
        ("default", None)
    };
    let name = chosen
        .as_ref()
        .and_then(|k| k.cert.first())
        .and_then(|der| {
            x509_parser::parse_x509_certificate(der)
                .ok()
                .map(|(_, c)| c.subject().to_string())
        })
        .unwrap_or_else(|| "the default certificate (self-signed at start, or --default-ssl-certificate)".into());
    Certificate {
        sni: sni.to_string(),
        chosen: kind,
        name,
        source: pattern.and_then(|p| cfg.certs.sources.get(&p.to_string()).cloned()),
    }
}

/// The policy steps the handler runs for a route, in its order.
fn steps(r: &Route, tls: bool) -> Vec<Step> {
    let p = &r.policy;
    let mut s = Vec::new();
    let mut add = |step: &'static str, detail: String| s.push(Step { step, detail });
    if let Some(w) = &p.www_redirect {
        add(
            "www",
            format!("from-to-www-redirect: the other form of the host ({w}) gets 308"),
        );
    }
    if r.client_auth.is_some() {
        add("mtls", "auth-tls-*: the client certificate is verified".into());
    }
    if p.deny.is_some() {
        add("allow", "denylist-source-range: listed clients get 403".into());
    }
    if p.allow.is_some() {
        add("allow", "allowlist-source-range: other clients get 403".into());
    }
    if r.ssl_redirect && !tls {
        add("ssl-redirect", "308 to https: the host has TLS".into());
    }
    if let Some(rd) = &p.redirect {
        add("redirect", format!("{} to {}", rd.code, rd.location));
    }
    if let Some(a) = &p.app_root {
        add("app-root", format!("/ gets 302 to {a}"));
    }
    if p.cors.is_some() {
        add("cors", "enable-cors: preflights answered, response fields added".into());
    }
    if p.limits.is_some() {
        add(
            "limits",
            "limit-*: over the limit gets 503 (or limit-rate-status)".into(),
        );
    }
    if p.auth.is_some() {
        add("auth", "auth-*: basic, digest or external authentication".into());
    }
    if let Some(n) = p.max_body_bytes {
        add("body", format!("proxy-body-size: bodies over {n} bytes get 413"));
    }
    if p.mirror.is_some() {
        add("mirror", "mirror-target: a copy of the request is sent".into());
    }
    if p.hash_by.is_some() {
        add(
            "hash",
            "upstream-hash-by: the endpoint is chosen by a hash of the key".into(),
        );
    } else if let Some(a) = &p.affinity {
        add(
            "affinity",
            format!("cookie {}: a session stays on its endpoint", a.name),
        );
    }
    if p.error_pages.is_some() || p.default_backend.is_some() {
        add(
            "errors",
            "custom-http-errors / default-backend: listed answers are replaced".into(),
        );
    }
    if let Some(pre) = &p.forwarded_prefix {
        add("prefix", format!("x-forwarded-prefix: {}", pre.source()));
    }
    if let Some(t) = &p.rewrite_target {
        add("rewrite", format!("rewrite-target: the upstream path becomes {t}"));
    }
    if p.http10 {
        add(
            "http10",
            "HTTP/1.0 upstream: a body without a length is read whole first (413 past proxy-body-size)".into(),
        );
    }
    add(
        "upstream",
        format!(
            "up to {} tries on other endpoints where safe (proxy-next-upstream-tries)",
            p.tries
        ),
    );
    if p.response.is_some() {
        add(
            "response",
            "proxy-redirect / proxy-cookie-*: response fields rewritten".into(),
        );
    }
    if p.custom_headers.is_some() {
        add(
            "response-headers",
            "custom-headers: fields added to the response".into(),
        );
    }
    s
}

/// The explanation as text for a terminal.
pub fn text(x: &Explanation) -> String {
    let mut o = String::new();
    let r = &x.request;
    let _ = writeln!(o, "request    {}://{}{}", r.scheme, r.host, r.path);
    if let Some(n) = &r.normalized {
        let _ = writeln!(o, "normalized {n}");
    }
    let _ = writeln!(o, "listener   {}", x.listener);
    if let Some(c) = &x.certificate {
        let _ = write!(o, "cert       SNI {} -> {} certificate {}", c.sni, c.chosen, c.name);
        if let Some(s) = &c.source {
            let _ = write!(o, " (from {s})");
        }
        o.push('\n');
    }
    o.push_str("lookup\n");
    for l in &x.lookup {
        let what = match (l.present, l.matched) {
            (_, true) => "matched",
            (true, false) => "host known, no path matched",
            (false, _) => "none",
        };
        let _ = writeln!(o, "  {:<10} {:<30} {what}", format!("{:?}", l.level), l.key);
    }
    match &x.route {
        Some(v) => {
            let _ = writeln!(
                o,
                "route      Ingress {} host {} path {} ({}) -> Service {}",
                v.ingress,
                v.host,
                v.path.as_deref().unwrap_or("-"),
                v.path_type,
                v.service
            );
        }
        None => o.push_str("route      none\n"),
    }
    if let Some(c) = &x.canary {
        let _ = writeln!(o, "canary     Ingress {}: {} ({})", c.canary_ingress, c.decision, c.why);
    }
    if !x.steps.is_empty() {
        o.push_str("steps\n");
        for s in &x.steps {
            let _ = writeln!(o, "  {:<16} {}", s.step, s.detail);
        }
    }
    if let Some(a) = &x.answered_by_portico {
        let _ = writeln!(o, "answer     {a}");
    }
    if let Some(e) = &x.endpoints {
        let _ = writeln!(
            o,
            "endpoints  Service {} by {}: ready [{}]",
            e.service,
            e.balance,
            e.ready.join(", ")
        );
        if !e.terminating.is_empty() {
            let _ = writeln!(o, "           terminating [{}]", e.terminating.join(", "));
        }
    }
    if !x.lost.is_empty() {
        o.push_str("lost\n");
        for l in &x.lost {
            let _ = writeln!(
                o,
                "  Ingress {} host {} path {} ({}): {}",
                l.ingress,
                l.host,
                l.path.as_deref().unwrap_or("-"),
                l.path_type,
                l.why
            );
        }
    }
    if x.other_hosts > 0 {
        let _ = writeln!(
            o,
            "           ({} other routes are on hosts this request does not match)",
            x.other_hosts
        );
    }
    for c in &x.conflicts {
        let _ = writeln!(o, "conflict   {c}");
    }
    for i in &x.ignored {
        let _ = writeln!(o, "ignored    Ingress {}: {}", i.ingress, i.reason);
    }
    o
}

/// Reads `url=…&header=K:V&…` (percent-encoded) into a question; `json` is true unless
/// `format=text`.
pub fn from_query(query: &str) -> Result<(Question, bool), Bad> {
    let mut q = Question::default();
    let mut json = true;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| Bad::Url(v.to_string(), "bad percent-encoding".into()))?;
        match k {
            "url" => q.url = v,
            "header" => {
                if q.headers.len() >= MAX_HEADERS {
                    return Err(Bad::TooManyHeaders);
                }
                q.headers.push(split_header(&v)?);
            }
            "format" => json = v != "text",
            _ => {}
        }
    }
    Ok((q, json))
}

/// `K:V` → (K, V).
pub fn split_header(kv: &str) -> Result<(String, String), Bad> {
    kv.split_once(':')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| Bad::Header(kv.to_string(), "expected NAME:VALUE".into()))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn percent_encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// The admin listener's `/explain?url=…&header=K:V&format=text|json`: status, body, type.
pub fn serve(cfg: &Config, query: &str) -> (http::StatusCode, String, &'static str) {
    let answer = from_query(query).and_then(|(q, json)| Ok((explain(cfg, &q)?, json)));
    match answer {
        Ok((x, true)) => (
            http::StatusCode::OK,
            serde_json::to_string_pretty(&x).unwrap_or_default() + "\n",
            "application/json",
        ),
        Ok((x, false)) => (http::StatusCode::OK, text(&x), "text/plain; charset=utf-8"),
        Err(e) => (
            http::StatusCode::BAD_REQUEST,
            format!("{e}\n"),
            "text/plain; charset=utf-8",
        ),
    }
}

/// Where `portico explain` gets its Config.
pub enum Source<'a> {
    /// Compile a manifests directory, as `portico --manifests DIR` would.
    Manifests(&'a std::path::Path, &'a crate::compile::Options),
    /// Ask a running Portico's full admin listener.
    Admin(&'a str),
}

impl<'a> Source<'a> {
    /// The admin listener when given, else the manifests directory (default `.`).
    pub fn pick(
        manifests: Option<&'a std::path::Path>,
        admin: Option<&'a str>,
        opts: &'a crate::compile::Options,
    ) -> Self {
        match (admin, manifests) {
            (Some(a), _) => Source::Admin(a),
            (None, Some(dir)) => Source::Manifests(dir, opts),
            (None, None) => Source::Manifests(std::path::Path::new("."), opts),
        }
    }

    /// The explanation of one request, as text or JSON.
    pub fn ask(&self, url: &str, headers: &[String], json: bool) -> Result<String, String> {
        match self {
            Source::Manifests(dir, opts) => {
                let headers = headers
                    .iter()
                    .map(|h| split_header(h))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let (snapshot, errors) =
                    crate::source::files::load_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
                let cfg = crate::compile(&snapshot, opts);
                let x = explain(
                    &cfg,
                    &Question {
                        url: url.to_string(),
                        headers,
                    },
                )
                .map_err(|e| e.to_string())?;
                let mut out = if json {
                    serde_json::to_string_pretty(&x).map_err(|e| e.to_string())? + "\n"
                } else {
                    text(&x)
                };
                for e in errors {
                    let _ = writeln!(out, "error reading manifests: {e}");
                }
                Ok(out)
            }
            Source::Admin(addr) => {
                let mut query = format!("url={}", percent_encode(url));
                for h in headers {
                    let _ = write!(query, "&header={}", percent_encode(h));
                }
                if !json {
                    query.push_str("&format=text");
                }
                admin_get(addr, &format!("/explain?{query}"))
            }
        }
    }
}

/// One GET to an admin listener (HTTP/1.1, `Connection: close`); the body of a 200.
fn admin_get(addr: &str, target: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    use std::time::Duration;
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("admin address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("admin address {addr}: no address"))?;
    let mut s =
        std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(5)).map_err(|e| format!("{addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    write!(s, "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.take(16 << 20).read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("no HTTP answer from the admin listener")?;
    let status = head.split(' ').nth(1).unwrap_or("");
    match status {
        "200" => Ok(body.to_string()),
        "404" => Err(format!(
            "{addr} has no /explain (an older Portico, or the probes-only listener)"
        )),
        _ => Err(format!("{addr} answered {status}: {body}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip_through_percent_encoding() {
        let q = format!(
            "url={}&header={}&format=text",
            percent_encode("https://a.example.com/x?y=1&z"),
            percent_encode("X-Canary: always")
        );
        let (q, json) = from_query(&q).unwrap();
        assert_eq!(q.url, "https://a.example.com/x?y=1&z");
        assert_eq!(q.headers, vec![("X-Canary".to_string(), "always".to_string())]);
        assert!(!json);
        assert!(from_query("url=%zz").is_err());
        let many = "header=a:b&".repeat(MAX_HEADERS + 1);
        assert!(matches!(from_query(&many), Err(Bad::TooManyHeaders)));
    }

    #[test]
    fn gateway_routes_of_ports_80_and_443_are_explained() {
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: portico
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [shop.test]
  rules: [{backendRefs: [{name: web, port: 80}]}]
"#;
        let mut objects = crate::source::files::parse_manifests(yaml).unwrap();
        objects.push(crate::fixture::service("default", "web").port("http", 80).into());
        let cfg = crate::compile::compile(&crate::fixture::snapshot(objects), &Default::default());
        let ask = |url: &str| {
            let q = Question {
                url: url.into(),
                headers: Vec::new(),
            };
            explain(&cfg, &q).unwrap().route.map(|r| r.ingress)
        };
        assert_eq!(ask("http://shop.test/x").as_deref(), Some("default/shop"));
        // The listener is plain HTTP: its routes are not served over TLS.
        assert_eq!(ask("https://shop.test/x"), None);
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(strip_port("a.example.com:8080"), "a.example.com");
        assert_eq!(strip_port("a.example.com"), "a.example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
