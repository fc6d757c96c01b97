//! The `--configmap`: ingress-nginx's controller ConfigMap read into [`Global`] over the
//! command line's values. A bad value is a Warning and the value before it holds; a key
//! Portico does not honour is a Warning naming why (see [`super::known_keys`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::model::Ing as Ingress;

use super::Options;
use super::annotations::{parse_size, parse_timeout};
use super::auth::{self, parse_auth_url};
use super::header_maps;
use super::ingress::annotation;
use super::known::Support;
use super::known_keys;
use crate::config::auth::{Auth, ExternalAuth};
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::global::{Global, Hsts, RouteDefaults, UpstreamReuse};
use crate::config::headers::HeaderList;
use crate::config::policy::Policy;
use crate::config::retry::NextUpstream;
use crate::config::tls_options::SslSession;
use crate::config::{Cidr, tls_options};
use crate::model::{ObjectKey, Snapshot};

/// The settings every route and connection of this compile uses.
pub fn settings(snapshot: &Snapshot, opts: &Options, diags: &mut Diagnostics) -> Global {
    let mut g = opts.global.clone();
    g.compression = opts.compression.clone();
    if g.global_auth.is_none() {
        g.global_auth = opts.global_auth.clone();
    }
    let Some(key) = &opts.configmap else {
        return g;
    };
    g.configmap = Some(key.clone());
    let Some(cm) = snapshot.config_maps.get(key) else {
        diags.push(
            ObjectRef::new("ConfigMap", key),
            Severity::Warning,
            Reason::ConfigMapNotFound,
            format!("--configmap {key} does not exist; the command-line settings apply"),
        );
        return g;
    };
    let empty = BTreeMap::new();
    let mut r = Reader {
        key,
        data: cm.data.as_ref().unwrap_or(&empty),
        diags,
        snapshot,
    };
    r.unsupported();
    r.route_defaults(&mut g.routes);
    r.hsts(&mut g.hsts);
    r.forwarded(&mut g.trusted.ranges);
    if let Some(h) = r.parsed(
        "forwarded-for-header",
        "a header name (letters, digits, '-', at most 64)",
        forwarded_for_header,
    ) {
        g.trusted.header = h;
    }
    r.global_auth(&mut g.global_auth, &mut g.global_auth_denied);
    if let Some(list) = r.parsed(
        "no-auth-locations",
        "a comma-separated list of paths",
        super::no_auth::parse_locations,
    ) {
        g.no_auth_locations = list;
    }
    g.add_headers = r.headers("add-headers");
    g.proxy_set_headers = r.headers("proxy-set-headers");
    g.allowed_response_headers = r
        .parsed(
            "global-allowed-response-headers",
            "a comma-separated list of header names",
            auth::response_headers,
        )
        .unwrap_or_default();
    g.allow_snippet_annotations = r.bool("allow-snippet-annotations").unwrap_or(false);
    if let Some(on) = r.bool("use-proxy-protocol") {
        g.use_proxy_protocol = on;
    }
    r.tls(&mut g);
    g.worker_processes = r.parsed(
        "worker-processes",
        "\"auto\" or a number of worker threads from 1 to 1024",
        worker_processes,
    );
    let max = Policy::MAX_TIMEOUT.as_secs();
    g.upstream_keepalive_timeout = r.parsed(
        "upstream-keepalive-timeout",
        &format!("a number of seconds from 1 to {max}"),
        parse_timeout,
    );
    // `0` is nginx's `keepalive_timeout 0`: keep-alive off, see below.
    let keep_alive_off = r
        .data
        .get("keep-alive")
        .is_some_and(|v| matches!(v.trim(), "0" | "0s" | "0m"));
    if !keep_alive_off {
        g.keep_alive = r.parsed(
            "keep-alive",
            &format!("a number of seconds from 0 to {max}"),
            parse_timeout,
        );
    }
    let most = Global::MAX_REQUESTS_PER_CONNECTION;
    // Without the key (or with a bad value) the command line's value holds: ingress-nginx's
    // defaults, see `Global::default`.
    let reuse = &mut g.upstream_reuse;
    if let Some(n) = r.parsed("keep-alive-requests", &format!("a number from 1 to {most}"), requests) {
        g.keep_alive_requests = Some(n);
    }
    if keep_alive_off {
        // Each connection serves one request: its answer says `Connection: close`.
        g.keep_alive_requests = Some(1);
    }
    if let Some(n) = r.parsed(
        "upstream-keepalive-connections",
        &format!("a number from 0 to {}", UpstreamReuse::MAX_IDLE),
        |v| v.parse().ok().filter(|n| *n <= UpstreamReuse::MAX_IDLE),
    ) {
        reuse.idle = Some(n);
    }
    if let Some(n) = r.parsed(
        "upstream-keepalive-requests",
        &format!("a number from 1 to {most}"),
        requests,
    ) {
        reuse.requests = Some(n);
    }
    if let Some(t) = r.parsed(
        "upstream-keepalive-time",
        "a time like 1h, 30m or 90s, at most 7d",
        |v| nginx_time(v).filter(|t| *t <= UpstreamReuse::MAX_TIME),
    ) {
        reuse.time = Some(t);
    }
    g.ssl_session = ssl_session(&mut r);
    if let Some(full) = r.bool("compute-full-forwarded-for") {
        g.compute_full_forwarded_for = full;
    }
    g.custom_http_errors = r
        .parsed(
            "custom-http-errors",
            &format!(
                "a comma-separated list of status codes from 300 to 599 (at most {})",
                crate::config::errors::ErrorPages::MAX_CODES
            ),
            super::errors::parse_codes,
        )
        .unwrap_or_default();
    for (name, field) in [
        ("limit-req-status-code", &mut g.limit_req_status),
        ("limit-conn-status-code", &mut g.limit_conn_status),
    ] {
        let code = r.parsed(name, "a status code from 400 to 599", |v| {
            v.parse::<u16>().ok().filter(|c| (400..=599).contains(c))
        });
        if let Some(code) = code {
            *field = code;
        }
    }
    let data = r.data;
    let (compression, problems) = super::compress::read(g.compression.clone(), |k| data.get(k).map(String::as_str));
    for problem in problems {
        r.warn(Reason::InvalidConfigMapKey, format!("--configmap {key}: {problem}"));
    }
    g.compression = compression;
    let (log_format, problems) = super::access_log::read(|k| data.get(k).map(String::as_str));
    for problem in problems {
        r.warn(Reason::InvalidConfigMapKey, format!("--configmap {key}: {problem}"));
    }
    g.log_format = log_format;
    let (otel, problems) = super::otel::read(g.otel.clone(), |k| data.get(k).map(String::as_str));
    for problem in problems {
        r.warn(Reason::InvalidConfigMapKey, format!("--configmap {key}: {problem}"));
    }
    g.otel = otel;
    g
}

/// What the ConfigMaps add to an Ingress's Policy: the `--configmap`'s route defaults,
/// a broken `global-auth-url`'s denial, and the header lists of `custom-headers` and
/// `auth-proxy-set-headers` (ConfigMaps in the Ingress's namespace).
pub fn route_policy(
    p: &mut Policy,
    ing: &Ingress,
    key: &ObjectKey,
    g: &Global,
    snapshot: &Snapshot,
    diags: &mut Diagnostics,
) {
    apply_route_defaults(p, ing, &g.routes);
    if let Some(l) = &mut p.limits
        && (l.req_status, l.conn_status) != (g.limit_req_status, g.limit_conn_status)
    {
        let l = Arc::make_mut(l);
        (l.req_status, l.conn_status) = (g.limit_req_status, g.limit_conn_status);
    }
    p.otel = super::otel::route(ing, &g.otel, |prefix, name, value, expected| {
        let msg = format!("annotation {prefix}{name}={value:?} is not {expected}; the ConfigMap's setting holds");
        diags.push(
            ObjectRef::ingress(key),
            Severity::Warning,
            Reason::InvalidAnnotation,
            msg,
        );
    });
    // Most Ingresses carry no annotations: nothing below applies to them but the denial.
    let noted = !ing.metadata.annotations.is_empty();
    if let Some(why) = &g.global_auth_denied
        && annotation(ing, "auth-url").is_none()
        && annotation(ing, "enable-global-auth").is_none_or(|(_, v)| v.trim() != "false")
    {
        let mut auth = p.auth.as_deref().cloned().unwrap_or(Auth {
            denied: None,
            basic: None,
            external: None,
            digest: None,
        });
        auth.denied.get_or_insert_with(|| why.clone());
        p.auth = Some(Arc::new(auth));
    }
    let mut warn = |prefix: &str, name: &str, why: String, then: &str| {
        diags.push(
            ObjectRef::ingress(key),
            Severity::Warning,
            Reason::InvalidAnnotation,
            format!("annotation {prefix}{name}: {why}; {then}"),
        );
    };
    p.keep_request = p.response.is_some() || g.add_headers.has_variables();
    if !noted {
        return;
    }
    if let Some((prefix, reference)) = annotation(ing, "custom-headers") {
        match header_maps::key(reference, &key.namespace, true).and_then(|k| header_maps::read(snapshot, &k)) {
            Ok(list) => match list
                .0
                .iter()
                .find(|h| !g.allowed_response_headers.iter().any(|a| a == h.name.as_str()))
            {
                Some(h) => warn(
                    prefix,
                    "custom-headers",
                    format!(
                        "header {} is not in the --configmap's global-allowed-response-headers",
                        h.name
                    ),
                    "no header is added",
                ),
                None => p.custom_headers = (!list.is_empty()).then(|| Arc::new(list)),
            },
            Err(why) => warn(prefix, "custom-headers", why, "no header is added"),
        }
        p.keep_request |= p.custom_headers.as_ref().is_some_and(|l| l.has_variables());
    }
    if let Some((prefix, reference)) = annotation(ing, "auth-proxy-set-headers")
        && let Some(auth) = p.auth.as_mut()
        && auth.external.is_some()
        && annotation(ing, "auth-url").is_some()
    {
        let auth = Arc::make_mut(auth);
        match header_maps::key(reference, &key.namespace, true).and_then(|k| header_maps::read(snapshot, &k)) {
            Ok(list) => {
                if let Some(e) = auth.external.as_mut() {
                    e.proxy_set_headers = list;
                }
            }
            Err(why) => {
                let then = "every request to this Ingress is answered 503, as ingress-nginx denies it";
                warn(prefix, "auth-proxy-set-headers", why.clone(), then);
                auth.denied
                    .get_or_insert_with(|| Arc::from(format!("auth-proxy-set-headers: {why}")));
            }
        }
    }
}

/// An Ingress's Policy with the ConfigMap's defaults where its annotation is absent or invalid.
pub fn apply_route_defaults(p: &mut Policy, ing: &Ingress, d: &RouteDefaults) {
    // Without ConfigMap defaults, the annotations' reading already gave Portico's own.
    if *d == RouteDefaults::default() {
        return;
    }
    let set = |name: &str, valid: fn(&str) -> bool| annotation(ing, name).is_some_and(|(_, v)| valid(v.trim()));
    if !set("proxy-body-size", |v| parse_size(v).is_some()) {
        p.max_body_bytes = d.max_body_bytes;
    }
    if !set("proxy-connect-timeout", |v| parse_timeout(v).is_some()) {
        p.connect_timeout = d.connect_timeout;
    }
    if !set("proxy-read-timeout", |v| parse_timeout(v).is_some()) {
        p.read_timeout = d.read_timeout;
    }
    if !set("proxy-send-timeout", |v| parse_timeout(v).is_some()) {
        p.send_timeout = d.send_timeout;
    }
    if !set("proxy-next-upstream-tries", |v| tries(v).is_some()) {
        p.tries = d.tries;
    }
    if !set("proxy-next-upstream", |v| {
        super::retry::parse_next_upstream(v).is_some()
    }) {
        p.next_upstream = NextUpstream {
            budget: p.next_upstream.budget,
            ..d.next_upstream
        };
    }
    if !set("proxy-next-upstream-timeout", |v| {
        super::retry::parse_budget(v).is_some()
    }) {
        p.next_upstream.budget = d.next_upstream.budget;
    }
    super::rate::apply_defaults(p, ing, d);
}

/// `worker-processes`: `auto` (0: one per CPU) or 1 to 1024.
pub fn worker_processes(v: &str) -> Option<usize> {
    match v.trim() {
        "auto" => Some(0),
        n => n.parse().ok().filter(|n| (1..=1024).contains(n)),
    }
}

/// `proxy-next-upstream-tries`: up to [`Policy::MAX_TRIES`]; 0 is every endpoint.
fn tries(v: &str) -> Option<usize> {
    let n = v.parse::<usize>().ok().filter(|n| *n <= Policy::MAX_TRIES)?;
    Some(if n == 0 { usize::MAX } else { n })
}

/// `ssl-session-cache`, `ssl-session-cache-size` (bytes, as nginx's shared cache: about
/// 4000 sessions a megabyte), `ssl-session-timeout`, `ssl-session-tickets`.
fn ssl_session(r: &mut Reader<'_>) -> SslSession {
    let max = SslSession::MAX_CACHE_BYTES >> 20;
    let size = r.parsed(
        "ssl-session-cache-size",
        &format!("a size like 10m or 512k, from 1k to {max}m"),
        |v| parse_size(v).filter(|b| (1024..=SslSession::MAX_CACHE_BYTES).contains(b)),
    );
    let sessions = match r.bool("ssl-session-cache") {
        Some(false) => Some(0),
        _ => size.map(|b| (b.saturating_mul(SslSession::SESSIONS_PER_MIB) >> 20).max(1) as usize),
    };
    let timeout = r.parsed("ssl-session-timeout", "a time like 10m, 1h or 600s, at most 24h", |v| {
        nginx_time(v).filter(|t| *t <= SslSession::MAX_TIMEOUT)
    });
    SslSession {
        sessions,
        timeout,
        tickets: r.bool("ssl-session-tickets").unwrap_or(false),
    }
}

/// An nginx time (`90`, `90s`, `30m`, `1h`, `1d`, or a sequence like `1h30m`), above zero.
fn nginx_time(v: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    (total > 0).then(|| Duration::from_secs(total))
}

/// A number of requests per connection: 1 to [`Global::MAX_REQUESTS_PER_CONNECTION`].
fn requests(v: &str) -> Option<u32> {
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=Global::MAX_REQUESTS_PER_CONNECTION).contains(n))
}

/// `forwarded-for-header`: the header the client address is read from (when the peer is a
/// trusted proxy). X-Forwarded-For itself is `None`, the default.
fn forwarded_for_header(v: &str) -> Option<Option<http::HeaderName>> {
    let ok = !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let name = http::HeaderName::from_bytes(v.as_bytes()).ok().filter(|_| ok)?;
    Some((name != "x-forwarded-for").then_some(name))
}

/// Reads the keys of one ConfigMap, reporting bad values against it.
struct Reader<'a> {
    key: &'a ObjectKey,
    data: &'a BTreeMap<String, String>,
    diags: &'a mut Diagnostics,
    snapshot: &'a Snapshot,
}

impl Reader<'_> {
    fn warn(&mut self, reason: Reason, msg: String) {
        self.diags
            .push(ObjectRef::new("ConfigMap", self.key), Severity::Warning, reason, msg);
    }

    /// A value parsed by `parse`; `None` when absent or invalid (invalid is reported).
    fn parsed<T>(&mut self, name: &str, expected: &str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        let raw = self.data.get(name)?;
        let v = parse(raw.trim());
        if v.is_none() {
            let shown: String = raw.chars().take(200).collect();
            self.warn(
                Reason::InvalidConfigMapKey,
                format!("ConfigMap key {name}={shown:?} is not {expected}; the command line's value (or Portico's default) holds"),
            );
        }
        v
    }

    fn bool(&mut self, name: &str) -> Option<bool> {
        self.parsed(name, "\"true\" or \"false\"", |v| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
    }

    fn unsupported(&mut self) {
        for name in self.data.keys() {
            let msg = match known_keys::support(name) {
                Some(Support::Yes | Support::Partly(_)) => continue,
                Some(Support::No(why)) => format!("ConfigMap key {name} is not supported ({why}); it has no effect"),
                None => format!("ConfigMap key {name} is not one Portico or ingress-nginx knows; it has no effect"),
            };
            self.warn(Reason::UnsupportedConfigMapKey, msg);
        }
    }

    fn route_defaults(&mut self, d: &mut RouteDefaults) {
        if let Some(n) = self.parsed("proxy-body-size", "a size like 8m, 512k or 0", parse_size) {
            d.max_body_bytes = Some(n).filter(|n| *n > 0);
        }
        let max = Policy::MAX_TIMEOUT.as_secs();
        let expected = format!("a number of seconds from 1 to {max}");
        for (name, field) in [
            ("proxy-connect-timeout", &mut d.connect_timeout),
            ("proxy-read-timeout", &mut d.read_timeout),
            ("proxy-send-timeout", &mut d.send_timeout),
        ] {
            if let Some(t) = self.parsed(name, &expected, parse_timeout) {
                *field = Some(t);
            }
        }
        let expected = format!("a number of tries up to {} (0: every endpoint)", Policy::MAX_TRIES);
        if let Some(n) = self.parsed("proxy-next-upstream-tries", &expected, tries) {
            d.tries = n;
        }
        if let Some(n) = self.parsed(
            "proxy-next-upstream",
            "a space-separated list of error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent or off",
            super::retry::parse_next_upstream,
        ) {
            d.next_upstream = NextUpstream {
                budget: d.next_upstream.budget,
                ..n
            };
        }
        let expected = format!(
            "a whole number of seconds up to {} (0: no limit)",
            NextUpstream::MAX_BUDGET.as_secs()
        );
        if let Some(b) = self.parsed("proxy-next-upstream-timeout", &expected, super::retry::parse_budget) {
            d.next_upstream.budget = b;
        }
        use super::rate::{AFTER, RATE, kib};
        for (setting, field) in [(RATE, &mut d.limit_rate), (AFTER, &mut d.limit_rate_after)] {
            if let Some(n) = self.parsed(setting.0, &super::rate::expected(setting), |v| kib(setting, v)) {
                *field = n;
            }
        }
    }

    fn hsts(&mut self, hsts: &mut Option<Hsts>) {
        let base = hsts.clone().unwrap_or_default();
        let on = self.bool("hsts").unwrap_or(hsts.is_some());
        let expected = format!("a number of seconds up to {}", Hsts::MAX_AGE);
        let max_age = self
            .parsed("hsts-max-age", &expected, |v| {
                v.parse().ok().filter(|n| *n <= Hsts::MAX_AGE)
            })
            .unwrap_or(base.max_age);
        let include = self.bool("hsts-include-subdomains").unwrap_or(base.include_subdomains);
        let preload = self.bool("hsts-preload").unwrap_or(base.preload);
        *hsts = on.then(|| Hsts::new(max_age, include, preload));
    }

    /// `use-forwarded-headers: "true"` believes the X-Forwarded-* of the peers in
    /// `proxy-real-ip-cidr` (default: every peer, as ingress-nginx). An invalid entry is
    /// dropped: a typo narrows trust, never widens it.
    fn forwarded(&mut self, trusted: &mut Vec<Cidr>) {
        if self.bool("use-forwarded-headers") != Some(true) {
            return;
        }
        let Some(raw) = self.data.get("proxy-real-ip-cidr").cloned() else {
            *trusted = vec![Cidr::ANY_V4, Cidr::ANY_V6];
            return;
        };
        let mut list = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()).take(1024) {
            match entry.parse::<Cidr>() {
                Ok(c) => list.push(c),
                Err(_) => self.warn(
                    Reason::InvalidConfigMapKey,
                    format!("ConfigMap key proxy-real-ip-cidr: {entry:?} is not a CIDR; it is left out"),
                ),
            }
        }
        *trusted = list;
    }

    /// `ssl-protocols` and `ssl-ciphers`, checked as the flags are; the handshake parses them
    /// again (see `proxy::tls_live`).
    fn tls(&mut self, g: &mut Global) {
        let mut versions = vec![&rustls::version::TLS13, &rustls::version::TLS12];
        let mut problem = None;
        if let Some(raw) = self.data.get("ssl-protocols") {
            match tls_options::parse_protocols(raw) {
                Ok(v) => {
                    versions = v;
                    g.ssl_protocols = Some(raw.trim().to_string());
                }
                Err(why) => problem = Some(("ssl-protocols", raw.clone(), why)),
            }
        }
        if let Some(raw) = self.data.get("ssl-ciphers") {
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            match tls_options::parse_ciphers(raw, &provider, &versions) {
                Ok((_, skipped)) => {
                    for w in skipped {
                        self.warn(Reason::InvalidConfigMapKey, format!("ConfigMap key ssl-ciphers: {w}"));
                    }
                    g.ssl_ciphers = Some(raw.trim().to_string());
                }
                Err(why) => problem = Some(("ssl-ciphers", raw.clone(), why)),
            }
        }
        if let Some((name, raw, why)) = problem {
            let shown: String = raw.chars().take(200).collect();
            self.warn(
                Reason::InvalidConfigMapKey,
                format!("ConfigMap key {name}={shown:?}: {why}; the command line's value (or Portico's default) holds"),
            );
        }
    }

    /// `add-headers`, `proxy-set-headers`: a ConfigMap (`namespace/name`, or `name` in this
    /// ConfigMap's namespace) of headers. A bad list is a Warning and none of it is used.
    fn headers(&mut self, name: &str) -> HeaderList {
        let Some(reference) = self.data.get(name) else {
            return HeaderList::default();
        };
        match header_maps::key(reference, &self.key.namespace, false)
            .and_then(|key| header_maps::read(self.snapshot, &key))
        {
            Ok(list) => list,
            Err(why) => {
                self.warn(
                    Reason::InvalidConfigMapKey,
                    format!("ConfigMap key {name}: {why}; no header is added"),
                );
                HeaderList::default()
            }
        }
    }

    /// `global-auth-url` and its family. An invalid URL keeps the command line's global auth;
    /// without one, the Ingresses it would cover answer 503 (never unauthenticated).
    fn global_auth(&mut self, out: &mut Option<Arc<ExternalAuth>>, denied: &mut Option<Arc<str>>) {
        let Some(raw) = self.data.get("global-auth-url").map(|v| v.trim().to_string()) else {
            return;
        };
        let mut e = match parse_auth_url(&raw, false) {
            Ok(e) => e,
            Err(why) => {
                let then = match out {
                    Some(_) => "--global-auth-url applies",
                    None => "every Ingress it would cover (no auth-url, enable-global-auth not \"false\") answers 503",
                };
                let msg = format!("ConfigMap key global-auth-url={raw:?}: {why}; {then}");
                self.warn(Reason::InvalidConfigMapKey, msg.clone());
                if out.is_none() {
                    *denied = Some(msg.into());
                }
                return;
            }
        };
        e.method = self.parsed("global-auth-method", auth::AUTH_METHOD, auth::auth_method);
        e.signin = self.parsed("global-auth-signin", auth::SIGNIN, auth::signin);
        if let Some(p) = self.parsed(
            "global-auth-signin-redirect-param",
            "a query parameter name",
            auth::redirect_param,
        ) {
            e.signin_redirect_param = p;
        }
        e.response_headers = self
            .parsed(
                "global-auth-response-headers",
                "a comma-separated list of header names",
                auth::response_headers,
            )
            .unwrap_or_default();
        e.request_redirect = self.parsed(
            "global-auth-request-redirect",
            "a URL or path (printable, no spaces)",
            auth::request_redirect,
        );
        e.always_set_cookie = self.bool("global-auth-always-set-cookie").unwrap_or(false);
        e.cache = super::no_auth::global_auth_cache(
            self.parsed(
                "global-auth-cache-key",
                "text and the variables $host, $request_uri, $remote_addr, $http_<header>",
                |v| auth::template(v).ok().filter(|k| !k.parts().is_empty()),
            ),
            self.parsed(
                "global-auth-cache-duration",
                "status codes then a duration in ms, s, m, h, d, w, M or y up to 1y (200 202 401 5m), comma-separated",
                auth::parse_cache_durations,
            ),
        );
        *out = Some(Arc::new(e));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fixture;

    fn read(data: &[(&str, &str)]) -> (Global, Vec<String>) {
        let snapshot = fixture::snapshot([fixture::config_map("ingress-nginx", "c", data).into()]);
        let opts = Options {
            configmap: Some(ObjectKey::new("ingress-nginx", "c")),
            ..Default::default()
        };
        let mut diags = Diagnostics::default();
        let g = settings(&snapshot, &opts, &mut diags);
        (g, diags.into_sorted().iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn keys_are_read_and_bad_values_keep_the_default() {
        let (g, d) = read(&[
            ("proxy-body-size", "8m"),
            ("proxy-read-timeout", "120"),
            ("proxy-connect-timeout", "99999999"),
            ("proxy-next-upstream-tries", "0"),
            ("hsts-max-age", "600"),
            ("hsts-preload", "yes"),
        ]);
        assert_eq!(g.routes.max_body_bytes, Some(8 << 20));
        assert_eq!(g.routes.read_timeout, Some(Duration::from_secs(120)));
        assert_eq!(g.routes.connect_timeout, None);
        assert_eq!(g.routes.tries, usize::MAX);
        assert_eq!(
            g.hsts.as_ref().map(|h| h.value.clone()).unwrap(),
            "max-age=600; includeSubDomains"
        );
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().any(|m| m.contains("proxy-connect-timeout")), "{d:?}");
        assert!(d.iter().any(|m| m.contains("hsts-preload")), "{d:?}");
    }

    #[test]
    fn worker_processes_values() {
        assert_eq!(worker_processes("auto"), Some(0));
        assert_eq!(worker_processes("4"), Some(4));
        for bad in ["0", "1025", "-1", "many"] {
            assert_eq!(worker_processes(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_and_unsupported_keys_are_reported() {
        let (_, d) = read(&[("server-snippet", "x"), ("no-such-key", "1"), ("hsts", "false")]);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().any(|m| m.contains("server-snippet is not supported")), "{d:?}");
        assert!(d.iter().any(|m| m.contains("no-such-key is not one")), "{d:?}");
    }

    #[test]
    fn a_missing_configmap_is_a_warning_and_flags_hold() {
        let opts = Options {
            configmap: Some(ObjectKey::new("x", "y")),
            ..Default::default()
        };
        let mut diags = Diagnostics::default();
        let g = settings(&Snapshot::default(), &opts, &mut diags);
        assert_eq!(g.hsts, Some(Hsts::default()));
        let d = diags.into_sorted();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].reason, Reason::ConfigMapNotFound);
    }

    #[test]
    fn requests_per_connection_values() {
        assert_eq!(requests("1"), Some(1));
        assert_eq!(requests("10000000"), Some(10_000_000));
        for bad in ["0", "10000001", "-1", "1k", "", "99999999999"] {
            assert_eq!(requests(bad), None, "{bad}");
        }
        let (g, d) = read(&[("keep-alive-requests", "0")]);
        assert_eq!((g.keep_alive_requests, d.len()), (Some(1000), 1), "{d:?}");
        // keep-alive: 0 turns keep-alive off whatever keep-alive-requests says.
        let (g, d) = read(&[("keep-alive", "0"), ("keep-alive-requests", "50")]);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!((g.keep_alive_requests, g.keep_alive), (Some(1), None));
        let (g, _) = read(&[("keep-alive-requests", "3")]);
        assert_eq!(g.keep_alive_requests, Some(3));
    }

    #[test]
    fn nginx_times() {
        assert_eq!(nginx_time("90"), Some(Duration::from_secs(90)));
        assert_eq!(nginx_time("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(nginx_time("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(nginx_time("2d"), Some(Duration::from_secs(172_800)));
        for bad in [
            "",
            "0",
            "0s",
            "h",
            "1w",
            "1.5h",
            "-1",
            "99999999999999999999",
            "18446744073709551615d",
        ] {
            assert_eq!(nginx_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn upstream_reuse_keys() {
        let (g, d) = read(&[
            ("upstream-keepalive-connections", "0"),
            ("upstream-keepalive-requests", "100"),
            ("upstream-keepalive-time", "1h"),
        ]);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            g.upstream_reuse,
            UpstreamReuse {
                idle: Some(0),
                requests: Some(100),
                time: Some(Duration::from_secs(3600)),
            }
        );
        let (g, d) = read(&[
            ("upstream-keepalive-connections", "4097"),
            ("upstream-keepalive-requests", "0"),
            ("upstream-keepalive-time", "8d"),
        ]);
        assert_eq!(g.upstream_reuse, UpstreamReuse::default());
        assert_eq!(d.len(), 3, "{d:?}");
        // ingress-nginx's defaults, without a key or with a bad one.
        let want = UpstreamReuse {
            idle: None,
            requests: Some(10_000),
            time: Some(Duration::from_secs(3600)),
        };
        assert_eq!((g.upstream_reuse, UpstreamReuse::DEFAULT_IDLE), (want, 320));
        let (g, d) = read(&[]);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!((g.upstream_reuse, g.keep_alive_requests), (want, Some(1000)));
    }

    #[test]
    fn ssl_session_keys() {
        let (g, d) = read(&[
            ("ssl-session-cache-size", "1m"),
            ("ssl-session-timeout", "1h"),
            ("ssl-session-tickets", "true"),
        ]);
        assert!(d.is_empty(), "{d:?}");
        let want = SslSession {
            sessions: Some(4000),
            timeout: Some(Duration::from_secs(3600)),
            tickets: true,
        };
        assert_eq!(g.ssl_session, want);
        let (g, _) = read(&[("ssl-session-cache", "false"), ("ssl-session-cache-size", "1m")]);
        assert_eq!(g.ssl_session.sessions, Some(0));
        let (g, d) = read(&[
            ("ssl-session-cache", "no"),
            ("ssl-session-cache-size", "101m"),
            ("ssl-session-timeout", "25h"),
            ("ssl-session-tickets", "1"),
        ]);
        assert_eq!(g.ssl_session, SslSession::default());
        assert_eq!(d.len(), 4, "{d:?}");
    }

    #[test]
    fn forwarded_for_header_values() {
        let (g, d) = read(&[("forwarded-for-header", "X-Client-IP")]);
        assert_eq!(g.trusted.header.as_ref().map(|h| h.as_str()), Some("x-client-ip"));
        assert!(d.is_empty(), "{d:?}");
        let (g, _) = read(&[("forwarded-for-header", "X-Forwarded-For")]);
        assert_eq!(g.trusted.header, None, "the default");
        let long = "x".repeat(65);
        for bad in ["", "X Client", "x:y", "é", long.as_str()] {
            let (g, d) = read(&[("forwarded-for-header", bad)]);
            assert_eq!(g.trusted.header, None, "{bad}");
            assert_eq!(d.len(), 1, "{bad}: {d:?}");
        }
    }

    #[test]
    fn forwarded_headers_trust_only_valid_ranges() {
        let (g, _) = read(&[("use-forwarded-headers", "true")]);
        assert!(g.trusted.iter().any(|c| c.contains("203.0.113.9".parse().unwrap())));
        let (g, d) = read(&[
            ("use-forwarded-headers", "true"),
            ("proxy-real-ip-cidr", "10.0.0.0/8, nonsense"),
        ]);
        assert!(g.trusted.iter().any(|c| c.contains("10.1.2.3".parse().unwrap())));
        assert!(!g.trusted.iter().any(|c| c.contains("203.0.113.9".parse().unwrap())));
        assert_eq!(d.len(), 1, "{d:?}");
        let (g, _) = read(&[("use-forwarded-headers", "false"), ("proxy-real-ip-cidr", "0.0.0.0/0")]);
        assert!(g.trusted.is_empty());
    }

    #[test]
    fn annotations_win_over_configmap_defaults() {
        let d = RouteDefaults {
            max_body_bytes: Some(10),
            tries: 7,
            ..Default::default()
        };
        let ing = fixture::ingress("default", "i")
            .annotation("nginx.ingress.kubernetes.io/proxy-body-size", "0")
            .annotation("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "bad")
            .ing();
        // As the annotations read: "0" is no limit.
        let mut p = Policy {
            max_body_bytes: None,
            ..Policy::default()
        };
        apply_route_defaults(&mut p, &ing, &d);
        assert_eq!(p.max_body_bytes, None, "the annotation's 0 (no limit) wins");
        assert_eq!(p.tries, 7, "an invalid annotation falls back to the ConfigMap");
    }

    #[test]
    fn next_upstream_defaults_apply_key_by_key() {
        use crate::compile::retry::{parse_budget, parse_next_upstream};
        let d = RouteDefaults {
            next_upstream: NextUpstream {
                budget: parse_budget("5").unwrap(),
                ..parse_next_upstream("error http_503").unwrap()
            },
            ..Default::default()
        };
        let plain = fixture::ingress("default", "plain").ing();
        let mut p = Policy::default();
        apply_route_defaults(&mut p, &plain, &d);
        assert_eq!(p.next_upstream, d.next_upstream);
        // The annotation's list wins; the ConfigMap's timeout still applies.
        let own = fixture::ingress("default", "own")
            .annotation("nginx.ingress.kubernetes.io/proxy-next-upstream", "off")
            .ing();
        let mut p = Policy {
            next_upstream: NextUpstream::OFF,
            ..Policy::default()
        };
        apply_route_defaults(&mut p, &own, &d);
        assert_eq!(
            p.next_upstream,
            NextUpstream {
                budget: d.next_upstream.budget,
                ..NextUpstream::OFF
            }
        );
    }
}
