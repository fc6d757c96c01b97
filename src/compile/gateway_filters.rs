//! HTTPRoute filters (Gateway API v1.6 standard channel) from their JSON to
//! [`Filters`], checked as the CRD's schema and CEL rules check them, so that a route from
//! the manifests directory (which no API server validated) is held to the same rules.

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use crate::config::BackendId;
use crate::config::filters::{
    CorsOrigin, Filters, GatewayCors, HeaderModifier, PathModifier, RequestMirror, RequestRedirect, Scheme, UrlRewrite,
};

/// Most filters on a rule or backendRef (the CRD's `maxItems`).
pub const MAX_FILTERS: usize = 16;
/// Longest path in a path modifier (the CRD's `maxLength`).
const MAX_PATH: usize = 1024;
/// Longest header value (the CRD's `maxLength`).
const MAX_VALUE: usize = 4096;
/// Longest header name (the CRD's `maxLength` of `HeaderName`).
const MAX_NAME: usize = 256;

/// What the filters of one rule need to know about the rule.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rule<'a> {
    /// The rule's path match when it has exactly one match and that match's path is a
    /// PathPrefix: the only case in which `ReplacePrefixMatch` is valid. The CRD's defaults
    /// count: no `matches` is one match, and a match without `path` (or a path without
    /// `type`) is PathPrefix `/` (or PathPrefix).
    pub prefix: Option<&'a str>,
    /// The rule has backendRefs (a RequestRedirect may not be used with them).
    pub has_backends: bool,
    /// The port of the Gateway listener the route is compiled for: a redirect that names
    /// neither scheme nor port keeps it. `None`: the port the request's Host names.
    pub listener_port: Option<u16>,
    /// These are a backendRef's filters: only the header modifiers are supported there.
    /// (Their result goes on that weighted choice's route with `Filters::with_backend_ref`.)
    pub backend_ref: bool,
    /// These are a GRPCRoute's filters: only the header modifiers and RequestMirror exist
    /// there (the GRPCRoute CRD's list).
    pub grpc: bool,
}

/// A RequestMirror's `backendRef` as written, for compile to resolve like the rule's
/// backendRefs (ReferenceGrant, Service port).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    /// `""` (core) by default.
    #[serde(default)]
    pub group: String,
    /// `Service` by default.
    #[serde(default = "service")]
    pub kind: String,
    pub name: String,
    /// `None`: the route's namespace.
    pub namespace: Option<String>,
    pub port: Option<i64>,
}

fn service() -> String {
    "Service".into()
}

/// Parses and checks a rule's (or backendRef's) `filters`. `mirror_backend` resolves a
/// RequestMirror's backendRef to an index in `Config::backends`; `None` drops that mirror and
/// nothing else, as the spec asks (the caller records why, for the route's `ResolvedRefs:
/// False` with `BackendNotFound` or `RefNotPermitted`). `Err`: why the filters cannot be
/// served, for the route's status (the spec's `Accepted: False`, `UnsupportedValue`, for an
/// unknown type or value).
pub fn compile_filters(
    raw: &[Value],
    rule: &Rule<'_>,
    mirror_backend: &mut dyn FnMut(&BackendRef) -> Option<BackendId>,
) -> Result<Filters, String> {
    if raw.len() > MAX_FILTERS {
        return Err(format!("more than {MAX_FILTERS} filters"));
    }
    let mut out = Filters::default();
    for (i, v) in raw.iter().enumerate() {
        let f: RawFilter = RawFilter::deserialize(v).map_err(|e| format!("filters[{i}]: {e}"))?;
        let at = |e: String| format!("filters[{i}] ({}): {e}", f.kind);
        f.only_its_own_field().map_err(at)?;
        if rule.backend_ref && !matches!(f.kind.as_str(), "RequestHeaderModifier" | "ResponseHeaderModifier") {
            return Err(at(
                "only RequestHeaderModifier and ResponseHeaderModifier are supported on a backendRef".into(),
            ));
        }
        if rule.grpc
            && !matches!(
                f.kind.as_str(),
                "RequestHeaderModifier" | "ResponseHeaderModifier" | "RequestMirror"
            )
        {
            return Err(at(
                "a GRPCRoute supports only RequestHeaderModifier, ResponseHeaderModifier and RequestMirror".into(),
            ));
        }
        // Whether the filter's slot was free: each type but RequestMirror is there once.
        let first = match f.kind.as_str() {
            "RequestHeaderModifier" => {
                let m = header_modifier(f.request_header_modifier.as_ref(), true).map_err(at)?;
                out.request_headers.replace(m).is_none()
            }
            "ResponseHeaderModifier" => {
                let m = header_modifier(f.response_header_modifier.as_ref(), false).map_err(at)?;
                out.response_headers.replace(m).is_none()
            }
            "RequestRedirect" => {
                if rule.has_backends {
                    return Err(at(
                        "a RequestRedirect filter must not be used together with backendRefs".into(),
                    ));
                }
                let r = redirect(f.request_redirect.as_ref(), rule).map_err(at)?;
                out.redirect.replace(r).is_none()
            }
            "URLRewrite" => {
                let r = rewrite(f.url_rewrite.as_ref(), rule).map_err(at)?;
                out.rewrite.replace(r).is_none()
            }
            "RequestMirror" => {
                let m = mirror(f.request_mirror.as_ref(), mirror_backend).map_err(at)?;
                out.mirrors.extend(m);
                true
            }
            "CORS" => {
                let c = cors_filter(f.cors.as_ref()).map_err(at)?;
                out.cors.replace(c).is_none()
            }
            "ExtensionRef" => {
                return Err(at(
                    "ExtensionRef filters are not supported (Portico knows no extension kind)".into(),
                ));
            }
            "ExternalAuth" => return Err(at("ExternalAuth (experimental channel) is not supported".into())),
            other => return Err(format!("filters[{i}]: unknown filter type {other:?}")),
        };
        if !first {
            return Err(at("the filter cannot be repeated".into()));
        }
    }
    if out.redirect.is_some() && out.rewrite.is_some() {
        return Err("a RequestRedirect and a URLRewrite filter cannot be used together".into());
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFilter {
    #[serde(rename = "type")]
    kind: String,
    request_header_modifier: Option<RawHeaderFilter>,
    response_header_modifier: Option<RawHeaderFilter>,
    request_mirror: Option<RawMirror>,
    request_redirect: Option<RawRedirect>,
    url_rewrite: Option<RawRewrite>,
    cors: Option<RawCors>,
    extension_ref: Option<Value>,
    external_auth: Option<Value>,
}

impl RawFilter {
    /// The CRD's CEL rules: the field named by `type` is set, and no other.
    fn only_its_own_field(&self) -> Result<(), String> {
        let fields = [
            (
                "RequestHeaderModifier",
                "requestHeaderModifier",
                self.request_header_modifier.is_some(),
            ),
            (
                "ResponseHeaderModifier",
                "responseHeaderModifier",
                self.response_header_modifier.is_some(),
            ),
            ("RequestMirror", "requestMirror", self.request_mirror.is_some()),
            ("RequestRedirect", "requestRedirect", self.request_redirect.is_some()),
            ("URLRewrite", "urlRewrite", self.url_rewrite.is_some()),
            ("CORS", "cors", self.cors.is_some()),
            ("ExtensionRef", "extensionRef", self.extension_ref.is_some()),
            ("ExternalAuth", "externalAuth", self.external_auth.is_some()),
        ];
        for (kind, field, set) in fields {
            if set && kind != self.kind {
                return Err(format!("{field} must not be set when the type is not {kind}"));
            }
            if !set && kind == self.kind {
                return Err(format!("{field} must be specified for a {kind} filter"));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderFilter {
    #[serde(default)]
    set: Vec<RawHeader>,
    #[serde(default)]
    add: Vec<RawHeader>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPath {
    #[serde(rename = "type")]
    kind: String,
    replace_full_path: Option<String>,
    replace_prefix_match: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRedirect {
    scheme: Option<String>,
    hostname: Option<String>,
    path: Option<RawPath>,
    port: Option<i64>,
    status_code: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRewrite {
    hostname: Option<String>,
    path: Option<RawPath>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFraction {
    numerator: i64,
    denominator: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMirror {
    backend_ref: BackendRef,
    percent: Option<i64>,
    fraction: Option<RawFraction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    allow_origins: Vec<String>,
    allow_credentials: Option<bool>,
    #[serde(default)]
    allow_methods: Vec<String>,
    #[serde(default)]
    allow_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    max_age: Option<i64>,
}

/// A `HeaderName` as the CRD's pattern allows it (an RFC 9110 token).
fn token(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a header name"))
    }
}

/// Fields a filter may not touch: they frame the message or belong to one connection, so
/// changing them would let a route's owner confuse the upstream (or client) about where a
/// message ends.
fn framing(name: &HeaderName) -> bool {
    use http::header;
    [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
    ]
    .contains(name)
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

fn header_modifier(raw: Option<&RawHeaderFilter>, request: bool) -> Result<HeaderModifier, String> {
    let raw = raw.ok_or("missing")?;
    let mut m = HeaderModifier::default();
    let mut seen: Vec<HeaderName> = Vec::new();
    let mut name = |n: &str, action: &str| -> Result<HeaderName, String> {
        token(n)?;
        let name = HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("{n:?} is not a header name"))?;
        if framing(&name) {
            return Err(format!("{n} cannot be changed by a filter"));
        }
        if request && name == http::header::HOST && action != "set" {
            return Err(format!("Host can only be set, not {action}"));
        }
        if seen.contains(&name) {
            return Err(format!("{n} is named more than once (one action per header)"));
        }
        seen.push(name.clone());
        Ok(name)
    };
    for (list, action) in [(&raw.set, "set"), (&raw.add, "add")] {
        if list.len() > HeaderModifier::MAX_ITEMS {
            return Err(format!("more than {} headers in {action}", HeaderModifier::MAX_ITEMS));
        }
        for h in list {
            let n = name(&h.name, action)?;
            if h.value.is_empty() || h.value.len() > MAX_VALUE {
                return Err(format!("the value of {} must have 1 to {MAX_VALUE} characters", h.name));
            }
            let v = HeaderValue::from_str(&h.value)
                .ok()
                .filter(|_| h.value.is_ascii())
                .ok_or_else(|| format!("the value of {} is not a header value", h.name))?;
            match action {
                "set" => m.set.push((n, v)),
                _ => m.add.push((n, v)),
            }
        }
    }
    if raw.remove.len() > HeaderModifier::MAX_ITEMS {
        return Err(format!("more than {} headers in remove", HeaderModifier::MAX_ITEMS));
    }
    for r in &raw.remove {
        m.remove.push(name(r, "remove")?);
    }
    Ok(m)
}

/// A `PreciseHostname`: lower-case DNS labels, no wildcard.
fn precise_hostname(h: &str) -> Result<String, String> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(h.to_string())
    } else {
        Err(format!("hostname {h:?} is not a lower-case DNS name"))
    }
}

/// A replacement path: `/`-rooted (empty allowed for a prefix), of characters a request
/// target may hold, without query or fragment.
fn replacement(p: &str, may_be_empty: bool) -> Result<(), String> {
    if p.len() > MAX_PATH {
        return Err(format!("a path longer than {MAX_PATH} characters"));
    }
    if p.is_empty() && may_be_empty {
        return Ok(());
    }
    if !p.starts_with('/') || p.contains(['?', '#']) || p.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(format!("{p:?} is not an absolute path"));
    }
    Ok(())
}

fn path_modifier(raw: &RawPath, rule: &Rule<'_>, filter: &str) -> Result<PathModifier, String> {
    match (raw.kind.as_str(), &raw.replace_full_path, &raw.replace_prefix_match) {
        ("ReplaceFullPath", Some(p), None) => {
            replacement(p, false)?;
            Ok(PathModifier::ReplaceFullPath(p.clone()))
        }
        ("ReplacePrefixMatch", None, Some(with)) => {
            replacement(with, true)?;
            let prefix = rule.prefix.ok_or_else(|| {
                format!(
                    "when using {filter} with path.replacePrefixMatch, exactly one PathPrefix match must be specified"
                )
            })?;
            Ok(PathModifier::ReplacePrefixMatch {
                prefix: prefix.trim_end_matches('/').to_string(),
                with: with.trim_end_matches('/').to_string(),
            })
        }
        ("ReplaceFullPath", _, _) => {
            Err("replaceFullPath (and only it) must be specified when type is ReplaceFullPath".into())
        }
        ("ReplacePrefixMatch", _, _) => {
            Err("replacePrefixMatch (and only it) must be specified when type is ReplacePrefixMatch".into())
        }
        (other, _, _) => Err(format!("unsupported path modifier type {other:?}")),
    }
}

fn port(p: i64) -> Result<u16, String> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {p} is not in 1-65535"))
}

fn redirect(raw: Option<&RawRedirect>, rule: &Rule<'_>) -> Result<RequestRedirect, String> {
    let raw = raw.ok_or("missing")?;
    let scheme = match raw.scheme.as_deref() {
        None => None,
        Some("http") => Some(Scheme::Http),
        Some("https") => Some(Scheme::Https),
        Some(other) => return Err(format!("unsupported scheme {other:?} (http or https)")),
    };
    let status = match raw.status_code {
        None => 302,
        Some(c @ (301 | 302 | 303 | 307 | 308)) => c as u16,
        Some(c) => return Err(format!("unsupported statusCode {c} (301, 302, 303, 307 or 308)")),
    };
    Ok(RequestRedirect {
        scheme,
        hostname: raw.hostname.as_deref().map(precise_hostname).transpose()?,
        path: raw
            .path
            .as_ref()
            .map(|p| path_modifier(p, rule, "RequestRedirect"))
            .transpose()?,
        port: raw.port.map(port).transpose()?,
        status,
        listener_port: rule.listener_port,
    })
}

fn rewrite(raw: Option<&RawRewrite>, rule: &Rule<'_>) -> Result<UrlRewrite, String> {
    let raw = raw.ok_or("missing")?;
    let hostname = match raw.hostname.as_deref() {
        None => None,
        Some(h) => Some(HeaderValue::from_str(&precise_hostname(h)?).map_err(|e| e.to_string())?),
    };
    Ok(UrlRewrite {
        hostname,
        path: raw
            .path
            .as_ref()
            .map(|p| path_modifier(p, rule, "URLRewrite"))
            .transpose()?,
    })
}

/// `Ok(None)`: a valid mirror whose backend does not resolve (dropped).
fn mirror(
    raw: Option<&RawMirror>,
    resolve: &mut dyn FnMut(&BackendRef) -> Option<BackendId>,
) -> Result<Option<RequestMirror>, String> {
    let raw = raw.ok_or("missing")?;
    let (numerator, denominator) = match (raw.percent, &raw.fraction) {
        (Some(_), Some(_)) => return Err("only one of percent or fraction may be specified".into()),
        (None, None) => (100, 100),
        (Some(p), None) => match u32::try_from(p) {
            Ok(p) if p <= 100 => (p, 100),
            _ => return Err(format!("percent {p} is not in 0-100")),
        },
        (None, Some(f)) => {
            let d = f.denominator.unwrap_or(100);
            match (u32::try_from(f.numerator), u32::try_from(d)) {
                (Ok(n), Ok(d)) if d >= 1 && n <= d => (n, d),
                _ => {
                    return Err(format!(
                        "fraction {}/{d}: the denominator must be at least 1 and the numerator between 0 and it",
                        f.numerator
                    ));
                }
            }
        }
    };
    if let Some(p) = raw.backend_ref.port {
        port(p)?;
    }
    Ok(resolve(&raw.backend_ref).map(|backend| RequestMirror {
        backend,
        numerator,
        denominator,
    }))
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn cors_origin(o: &str) -> Result<CorsOrigin, String> {
    let bad = || format!("allowOrigins: {o:?} is not `*` or scheme://host[:port]");
    if o == "*" {
        return Ok(CorsOrigin::Any);
    }
    if o.len() > 253 {
        return Err(bad());
    }
    let (scheme, rest) = o.split_once("://").ok_or_else(bad)?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad()),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            (h, p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?)
        }
        None => (rest, scheme.default_port()),
    };
    let labels = host.strip_prefix("*.").unwrap_or(host);
    let valid_labels = labels
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if host != "*" && !valid_labels {
        return Err(bad());
    }
    Ok(CorsOrigin::Origin {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// `*` only alone, at most `max` entries, none repeated.
fn list_rules(list: &[String], field: &str, max: usize) -> Result<(), String> {
    if list.len() > max {
        return Err(format!("{field}: more than {max} entries"));
    }
    if list.len() > 1 && list.iter().any(|x| x == "*") {
        return Err(format!("{field} cannot contain '*' alongside other entries"));
    }
    Ok(())
}

fn header_names(list: &[String], field: &str) -> Result<Vec<String>, String> {
    list_rules(list, field, 64)?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for h in list {
        token(h).map_err(|e| format!("{field}: {e}"))?;
        let lower = h.to_ascii_lowercase();
        if !out.contains(&lower) {
            out.push(lower);
        }
    }
    Ok(out)
}

fn cors_filter(raw: Option<&RawCors>) -> Result<GatewayCors, String> {
    let raw = raw.ok_or("missing")?;
    list_rules(&raw.allow_origins, "allowOrigins", 64)?;
    list_rules(&raw.allow_methods, "allowMethods", 9)?;
    let allow_origins = raw
        .allow_origins
        .iter()
        .map(|o| cors_origin(o))
        .collect::<Result<Vec<_>, _>>()?;
    let mut allow_methods: Vec<String> = Vec::new();
    for m in &raw.allow_methods {
        if m != "*" && !METHODS.contains(&m.as_str()) {
            return Err(format!("allowMethods: {m:?} is not a method the CRD allows"));
        }
        if !allow_methods.contains(m) {
            allow_methods.push(m.clone());
        }
    }
    let max_age = match raw.max_age {
        None => GatewayCors::DEFAULT_MAX_AGE,
        Some(a) if (1..=i64::from(i32::MAX)).contains(&a) => (a as u32).min(GatewayCors::MAX_AGE_LIMIT),
        Some(a) => return Err(format!("maxAge {a} is not a positive number of seconds")),
    };
    Ok(GatewayCors {
        allow_origins,
        allow_credentials: raw.allow_credentials.unwrap_or(false),
        allow_methods,
        allow_headers: header_names(&raw.allow_headers, "allowHeaders")?,
        expose_headers: header_names(&raw.expose_headers, "exposeHeaders")?,
        max_age,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule() -> Rule<'static> {
        Rule {
            prefix: Some("/prefix/one"),
            has_backends: true,
            listener_port: None,
            backend_ref: false,
            grpc: false,
        }
    }

    fn no_mirrors(_: &BackendRef) -> Option<BackendId> {
        None
    }

    fn compile(raw: Value, rule: &Rule<'_>) -> Result<Filters, String> {
        compile_filters(raw.as_array().unwrap(), rule, &mut no_mirrors)
    }

    fn name(n: &'static str) -> HeaderName {
        HeaderName::from_static(n)
    }

    #[test]
    fn header_modifiers_parse_set_add_remove_lower_cased() {
        let f = compile(
            json!([
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                    "set": [{"name": "X-Header-Set", "value": "set-overwrites-values"}],
                    "add": [{"name": "X-Header-Add", "value": "add-appends-values"}],
                    "remove": ["X-Header-Remove"]}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                    "add": [{"name": "X-Header-Add-1", "value": "header-add-1"}]}}
            ]),
            &rule(),
        )
        .unwrap();
        let req = f.request_headers.unwrap();
        assert_eq!(
            req.set,
            vec![(name("x-header-set"), HeaderValue::from_static("set-overwrites-values"))]
        );
        assert_eq!(
            req.add,
            vec![(name("x-header-add"), HeaderValue::from_static("add-appends-values"))]
        );
        assert_eq!(req.remove, vec![name("x-header-remove")]);
        let resp = f.response_headers.unwrap();
        assert_eq!(resp.add.len(), 1);
        assert!(resp.set.is_empty() && resp.remove.is_empty());
    }

    #[test]
    fn header_modifiers_refuse_what_the_spec_or_framing_forbids() {
        let one = |m: Value| {
            compile(
                json!([{"type": "RequestHeaderModifier", "requestHeaderModifier": m}]),
                &rule(),
            )
        };
        let refused = [
            // One action per name, case-insensitively.
            json!({"set": [{"name": "X-A", "value": "1"}], "remove": ["x-a"]}),
            json!({"add": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}]}),
            // Not a token; empty or controlling values.
            json!({"set": [{"name": ":authority", "value": "1"}]}),
            json!({"set": [{"name": "X A", "value": "1"}]}),
            json!({"set": [{"name": "X-A", "value": ""}]}),
            json!({"set": [{"name": "X-A", "value": "a\r\nInjected: yes"}]}),
            json!({"set": [{"name": "X-A", "value": "x".repeat(4097)}]}),
            // Message framing and connection fields.
            json!({"set": [{"name": "Content-Length", "value": "0"}]}),
            json!({"add": [{"name": "Transfer-Encoding", "value": "chunked"}]}),
            json!({"remove": ["Connection"]}),
            json!({"add": [{"name": "Host", "value": "two.example"}]}),
            // Unknown fields are mistakes.
            json!({"sett": [{"name": "X-A", "value": "1"}]}),
        ];
        for m in refused {
            assert!(one(m.clone()).is_err(), "{m} should be refused");
        }
        let many: Vec<Value> = (0..17)
            .map(|i| json!({"name": format!("x-{i}"), "value": "v"}))
            .collect();
        assert!(one(json!({ "set": many })).is_err(), "more than 16");
        assert!(one(json!({"set": [{"name": "Host", "value": "backend.example"}]})).is_ok());
    }

    #[test]
    fn a_type_must_come_with_its_own_field_only() {
        for raw in [
            json!([{"type": "RequestHeaderModifier"}]),
            json!([{"type": "RequestHeaderModifier", "requestHeaderModifier": {}, "responseHeaderModifier": {}}]),
            json!([{"type": "Bogus"}]),
            json!([{"type": "ExtensionRef", "extensionRef": {"group": "x.io", "kind": "Thing", "name": "t"}}]),
            json!([{"requestHeaderModifier": {}}]),
            json!(["RequestHeaderModifier"]),
        ] {
            let e = compile(raw.clone(), &rule()).unwrap_err();
            assert!(!e.is_empty(), "{raw}");
        }
    }

    #[test]
    fn repeats_and_redirect_with_rewrite_are_refused() {
        let rhm = json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x-a"]}});
        assert!(compile(json!([rhm, rhm]), &rule()).unwrap_err().contains("repeated"));
        let cors = json!({"type": "CORS", "cors": {"allowOrigins": ["*"]}});
        assert!(compile(json!([cors, cors]), &rule()).unwrap_err().contains("repeated"));
        let redirect = json!({"type": "RequestRedirect", "requestRedirect": {"hostname": "example.org"}});
        let rewrite = json!({"type": "URLRewrite", "urlRewrite": {"hostname": "example.org"}});
        let no_backends = Rule {
            has_backends: false,
            ..rule()
        };
        assert!(
            compile(json!([redirect, rewrite]), &no_backends)
                .unwrap_err()
                .contains("together")
        );
        assert!(compile(json!([redirect]), &rule()).unwrap_err().contains("backendRefs"));
        assert!(compile(json!([redirect]), &no_backends).is_ok());
        let seventeen: Vec<Value> = (0..17).map(|_| rhm.clone()).collect();
        assert!(compile(Value::Array(seventeen), &rule()).unwrap_err().contains("16"));
    }

    #[test]
    fn redirect_defaults_and_checks() {
        let no_backends = Rule {
            has_backends: false,
            listener_port: Some(8080),
            ..rule()
        };
        let one = |r: Value| compile(json!([{"type": "RequestRedirect", "requestRedirect": r}]), &no_backends);
        let r = one(json!({})).unwrap().redirect.unwrap();
        assert_eq!(
            (r.status, r.scheme, r.port, r.listener_port),
            (302, None, None, Some(8080))
        );
        let r = one(
            json!({"scheme": "https", "hostname": "example.org", "port": 8443, "statusCode": 308,
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/replacement-prefix/"}}),
        )
        .unwrap()
        .redirect
        .unwrap();
        assert_eq!(r.scheme, Some(Scheme::Https));
        assert_eq!(r.hostname.as_deref(), Some("example.org"));
        assert_eq!((r.port, r.status), (Some(8443), 308));
        assert_eq!(
            r.path,
            Some(PathModifier::ReplacePrefixMatch {
                prefix: "/prefix/one".into(),
                with: "/replacement-prefix".into()
            })
        );
        for bad in [
            json!({"statusCode": 304}),
            json!({"statusCode": 200}),
            json!({"scheme": "ftp"}),
            json!({"port": 0}),
            json!({"port": 65536}),
            json!({"port": -1}),
            json!({"hostname": "Example.org"}),
            json!({"hostname": "*.example.org"}),
            json!({"hostname": "a b"}),
            json!({"path": {"type": "ReplaceFullPath"}}),
            json!({"path": {"type": "ReplaceFullPath", "replacePrefixMatch": "/x"}}),
            json!({"path": {"type": "ReplaceFullPath", "replaceFullPath": "no-slash"}}),
            json!({"path": {"type": "ReplaceFullPath", "replaceFullPath": "/x?y=1"}}),
            json!({"path": {"type": "ReplaceFullPath", "replaceFullPath": "/x y"}}),
            json!({"path": {"type": "Regex", "replaceFullPath": "/x"}}),
        ] {
            assert!(one(bad.clone()).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn replace_prefix_match_needs_a_single_path_prefix_match() {
        let f = json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]);
        let exact = Rule { prefix: None, ..rule() };
        assert!(
            compile(f.clone(), &exact)
                .unwrap_err()
                .contains("exactly one PathPrefix")
        );
        let r = compile(f, &rule()).unwrap().rewrite.unwrap();
        assert_eq!(r.path.unwrap().apply("/prefix/one/two"), "/two");
    }

    #[test]
    fn rewrite_hostname_becomes_a_host_value() {
        let r = compile(
            json!([{"type": "URLRewrite", "urlRewrite": {"hostname": "one.example.org"}}]),
            &rule(),
        )
        .unwrap()
        .rewrite
        .unwrap();
        assert_eq!(r.hostname, Some(HeaderValue::from_static("one.example.org")));
        assert_eq!(r.path, None);
    }

    #[test]
    fn mirrors_resolve_their_backend_and_take_a_share() {
        let mut asked = Vec::new();
        let mut resolve = |b: &BackendRef| {
            asked.push(b.clone());
            (b.name == "infra-backend-v2").then_some(7)
        };
        let m = |extra: Value| {
            let mut m = json!({"backendRef": {"name": "infra-backend-v2", "namespace": "infra", "port": 8080}});
            m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            json!({"type": "RequestMirror", "requestMirror": m})
        };
        let raw = json!([
            m(json!({})),
            m(json!({"percent": 20})),
            m(json!({"fraction": {"numerator": 25, "denominator": 50}}))
        ]);
        let f = compile_filters(raw.as_array().unwrap(), &rule(), &mut resolve).unwrap();
        let shares: Vec<_> = f
            .mirrors
            .iter()
            .map(|m| (m.backend, m.numerator, m.denominator))
            .collect();
        assert_eq!(shares, vec![(7, 100, 100), (7, 20, 100), (7, 25, 50)]);
        for bad in [
            json!({"percent": 101}),
            json!({"percent": -1}),
            json!({"percent": 10, "fraction": {"numerator": 1}}),
            json!({"fraction": {"numerator": 5, "denominator": 0}}),
            json!({"fraction": {"numerator": 51, "denominator": 50}}),
        ] {
            let raw = json!([m(bad.clone())]);
            assert!(
                compile_filters(raw.as_array().unwrap(), &rule(), &mut resolve).is_err(),
                "{bad}"
            );
        }
        // A backendRef that does not resolve drops its mirror, and only it.
        let unknown = json!([
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "gone"}}},
            m(json!({"percent": 5}))
        ]);
        let f = compile_filters(unknown.as_array().unwrap(), &rule(), &mut resolve).unwrap();
        assert_eq!(f.mirrors.len(), 1);
        assert_eq!(asked[asked.len() - 2].name, "gone");
        let last = &asked[asked.len() - 2];
        assert_eq!(
            (last.group.as_str(), last.kind.as_str(), last.namespace.as_deref()),
            ("", "Service", None)
        );
    }

    #[test]
    fn cors_parses_as_the_conformance_routes_write_it() {
        let f = compile(
            json!([{"type": "CORS", "cors": {
                "allowOrigins": ["https://www.foo.com", "https://*.bar.com"],
                "allowMethods": ["GET", "OPTIONS"],
                "allowHeaders": ["x-header-1", "X-Header-2"],
                "exposeHeaders": ["x-header-3", "x-header-4"],
                "allowCredentials": true,
                "maxAge": 3600}}]),
            &rule(),
        )
        .unwrap();
        let c = f.cors.unwrap();
        assert!(c.allows("https://www.foo.com") && c.allows("https://a.b.bar.com"));
        assert!(!c.allows("https://foobar.com") && !c.allows("http://www.foo.com"));
        assert_eq!(c.allow_headers, vec!["x-header-1", "x-header-2"]);
        assert_eq!((c.allow_credentials, c.max_age), (true, 3600));
        let d = compile(json!([{"type": "CORS", "cors": {}}]), &rule())
            .unwrap()
            .cors
            .unwrap();
        assert_eq!((d.allow_credentials, d.max_age), (false, GatewayCors::DEFAULT_MAX_AGE));
        assert!(!d.allows("https://a.com"), "no origin allowed unless listed");
        for bad in [
            json!({"allowOrigins": ["*", "https://a.com"]}),
            json!({"allowOrigins": ["ftp://a.com"]}),
            json!({"allowOrigins": ["https://a.com:0"]}),
            json!({"allowOrigins": ["https://a.com:70000"]}),
            json!({"allowOrigins": ["https://a.com/path"]}),
            json!({"allowMethods": ["*", "GET"]}),
            json!({"allowMethods": ["get"]}),
            json!({"allowHeaders": ["x a"]}),
            json!({"maxAge": 0}),
            json!({"maxAge": 1e3}),
        ] {
            let raw = json!([{"type": "CORS", "cors": bad.clone()}]);
            assert!(compile(raw, &rule()).is_err(), "{bad} should be refused");
        }
        let big = compile(json!([{"type": "CORS", "cors": {"maxAge": 2_000_000_000}}]), &rule()).unwrap();
        assert_eq!(big.cors.unwrap().max_age, GatewayCors::MAX_AGE_LIMIT);
    }

    #[test]
    fn grpc_routes_take_header_modifiers_and_mirrors_only() {
        let grpc = Rule { grpc: true, ..rule() };
        let rhm = json!([{"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x-a"]}}]);
        assert!(compile(rhm, &grpc).is_ok());
        let cors = json!([{"type": "CORS", "cors": {}}]);
        assert!(compile(cors.clone(), &rule()).is_ok());
        assert!(compile(cors, &grpc).unwrap_err().contains("GRPCRoute"));
    }

    #[test]
    fn backend_ref_filters_are_header_modifiers_only() {
        let on_backend = Rule {
            backend_ref: true,
            ..rule()
        };
        let rhm = json!([{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}]}}]);
        assert!(compile(rhm, &on_backend).is_ok());
        let rewrite = json!([{"type": "URLRewrite", "urlRewrite": {"hostname": "a.example"}}]);
        assert!(compile(rewrite, &on_backend).unwrap_err().contains("backendRef"));
    }
}
