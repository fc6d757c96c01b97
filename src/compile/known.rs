//! Every ingress-nginx annotation, and what Portico does with it. One table feeds the
//! warnings compile() gives for annotations it does not honour and `docs/annotations.md`
//! (`portico annotations` prints the table; a test keeps the document in step).

/// What Portico does with an annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    Yes,
    /// Honoured with a difference, given.
    Partly(&'static str),
    /// Not honoured, and why.
    No(&'static str),
}

use Support::{No, Partly, Yes};

pub(super) const SNIPPET: &str =
    "never: it injects configuration text, the bug class behind ingress-nginx's CVEs; Portico renders no configuration";
// The snippets people write most, each with the typed annotations that do the same.
const CONFIGURATION_SNIPPET: &str = "never: it injects configuration text, the bug class behind ingress-nginx's CVEs; use the typed annotations instead: rewrite-target, permanent-redirect or temporal-redirect, whitelist-source-range, enable-cors, proxy-body-size, proxy-read-timeout, upstream-vhost";
const SERVER_SNIPPET: &str = "never: it injects configuration text, the bug class behind ingress-nginx's CVEs; use the typed annotations instead: permanent-redirect, temporal-redirect, app-root, ssl-redirect or force-ssl-redirect, whitelist-source-range";
const AUTH_SNIPPET: &str = "never: it injects configuration text, the bug class behind ingress-nginx's CVEs; use the typed annotations instead: auth-url, auth-method, auth-signin, auth-response-headers, auth-cache-key";
const STREAM_SNIPPET: &str = "never: it injects configuration text, the bug class behind ingress-nginx's CVEs; use the typed annotation ssl-passthrough (with --enable-ssl-passthrough) for TLS that the backend terminates";
const STREAMS: &str = "not applicable: Portico streams bodies both ways and never buffers them to disk or memory";

/// `nginx.ingress.kubernetes.io/` names (the same names under `portico.dev/`).
pub const ANNOTATIONS: &[(&str, Support)] = &[
    ("affinity", Yes),
    ("affinity-canary-behavior", Yes),
    ("affinity-mode", Yes),
    ("allowlist-source-range", Yes),
    ("app-root", Yes),
    ("auth-always-set-cookie", Yes),
    ("auth-cache-duration", Yes),
    ("auth-cache-key", Yes),
    ("auth-keepalive", Yes),
    ("auth-keepalive-requests", Yes),
    ("auth-keepalive-share-vars", Yes),
    ("auth-keepalive-timeout", Yes),
    ("auth-method", Yes),
    (
        "auth-proxy-set-headers",
        Partly(
            "values with nginx variables (see Variables); a framing, hop-by-hop or X-Forwarded-* name, an unknown variable, or more than 64 headers refuse the whole list and the Ingress answers 503",
        ),
    ),
    ("auth-realm", Yes),
    ("auth-request-redirect", Yes),
    ("auth-response-headers", Yes),
    ("auth-secret", Yes),
    ("auth-secret-type", Yes),
    ("auth-signin", Yes),
    ("auth-signin-redirect-param", Yes),
    ("auth-snippet", No(AUTH_SNIPPET)),
    (
        "auth-tls-error-page",
        Partly(
            "as ingress-nginx: an http(s) URL, or a host[:port][/path] without a scheme, answers 302 with the value as Location; a path is nginx's internal redirect (routed again on the same host as GET without the body, the certificate not checked again, that route's answer and status served); only @location names differ: a Warning, as no named location exists to go to",
        ),
    ),
    ("auth-tls-match-cn", Yes),
    ("auth-tls-pass-certificate-to-upstream", Yes),
    ("auth-tls-secret", Yes),
    ("auth-tls-verify-client", Yes),
    ("auth-tls-verify-depth", Yes),
    (
        "auth-type",
        Partly(
            "digest as nginx-http-auth-digest with its defaults (MD5, qop=auth, 60 s to answer a challenge, a nonce reused for 10 s and nonce counts 1 to 19, 5 failures from an address ignore it for 300 s), except that an empty auth-realm still asks for credentials (the module then lets every request through) and only lines of the auth-realm count (the module takes a line of whatever realm the client names)",
        ),
    ),
    (
        "auth-url",
        Partly(
            "nginx variables in the path and query (see Variables); in the host part only $host, $http_host or $best_http_host alone (the request's host, port from the URL), and only when every host of the Ingress is an exact name (else a Warning and 503); loopback and link-local addresses only with --allow-loopback-auth-url; https is not verified, as ingress-nginx by default",
        ),
    ),
    (
        "backend-protocol",
        Partly(
            "HTTP, HTTPS, GRPC, GRPCS and H2C, not AJP or FCGI; without proxy-ssl-* annotations upstream certificates are not verified and no SNI is sent, as ingress-nginx does by default",
        ),
    ),
    ("canary", Yes),
    ("canary-by-cookie", Yes),
    ("canary-by-header", Yes),
    (
        "canary-by-header-pattern",
        Partly("Rust regex syntax (linear time, no look-around or backreferences) instead of PCRE, at most 1024 bytes"),
    ),
    ("canary-by-header-value", Yes),
    ("canary-weight", Yes),
    ("canary-weight-total", Yes),
    ("client-body-buffer-size", No(STREAMS)),
    ("configuration-snippet", No(CONFIGURATION_SNIPPET)),
    (
        "connection-proxy-header",
        No("not applicable: Portico manages upstream connections itself"),
    ),
    ("cors-allow-credentials", Yes),
    ("cors-allow-headers", Yes),
    ("cors-allow-methods", Yes),
    ("cors-allow-origin", Yes),
    ("cors-expose-headers", Yes),
    ("cors-max-age", Yes),
    (
        "custom-headers",
        Partly(
            "values with nginx variables (see Variables); a framing, hop-by-hop or X-Forwarded-* name, an unknown variable, or more than 64 headers refuse the whole list (a Warning, no header added); names must be in global-allowed-response-headers",
        ),
    ),
    (
        "custom-http-errors",
        Partly(
            "codes 300 to 599; the error backend gets a GET (HEAD for HEAD) of / with the query, the client's headers and X-Code, X-Format, X-Original-URI, X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port, X-Request-ID; Portico's own 502, 503 and 504 are intercepted too; without the default-backend annotation or --default-backend-service it is a Warning; when the error backend cannot answer the client gets the original answer; the ConfigMap's custom-http-errors covers Ingresses without the annotation",
        ),
    ),
    ("default-backend", Yes),
    ("denylist-source-range", Yes),
    ("enable-access-log", Yes),
    ("enable-cors", Yes),
    ("enable-global-auth", Yes),
    ("enable-influxdb", No("not applicable: removed from ingress-nginx")),
    (
        "enable-modsecurity",
        No("not applicable: Portico has no web application firewall"),
    ),
    (
        "enable-opentelemetry",
        Partly(
            "one server span per request, from the request head to the response head, with W3C traceparent/tracestate sent upstream; exported over OTLP/HTTP (protobuf, POST /v1/traces, port 4318), not OTLP/gRPC (4317) as ingress-nginx's module; auth subrequests, mirror copies and error-page requests carry the request's traceparent but get no span of their own; see docs/tracing.md",
        ),
    ),
    ("enable-opentracing", No("not applicable: removed from ingress-nginx")),
    (
        "enable-owasp-core-rules",
        No("not applicable: Portico has no web application firewall"),
    ),
    (
        "enable-rewrite-log",
        No("not applicable: there is no nginx rewrite module to log"),
    ),
    ("force-ssl-redirect", Yes),
    ("from-to-www-redirect", Yes),
    ("global-rate-limit", No("not applicable: removed from ingress-nginx")),
    (
        "global-rate-limit-ignored-cidrs",
        No("not applicable: removed from ingress-nginx"),
    ),
    (
        "global-rate-limit-key",
        No("not applicable: removed from ingress-nginx"),
    ),
    (
        "global-rate-limit-window",
        No("not applicable: removed from ingress-nginx"),
    ),
    (
        "http2-push-preload",
        No("not applicable: browsers removed HTTP/2 server push"),
    ),
    ("influxdb-host", No("not applicable: removed from ingress-nginx")),
    ("influxdb-measurement", No("not applicable: removed from ingress-nginx")),
    ("influxdb-port", No("not applicable: removed from ingress-nginx")),
    ("influxdb-server-name", No("not applicable: removed from ingress-nginx")),
    ("limit-allowlist", Yes),
    ("limit-burst-multiplier", Yes),
    ("limit-connections", Yes),
    (
        "limit-rate",
        Partly(
            "kilobytes per second of each response, as ingress-nginx; the pace counts from the response body's start (nginx: the request's) and needs no proxy-buffering: the upstream is held back instead",
        ),
    ),
    ("limit-rate-after", Yes),
    ("limit-rpm", Yes),
    ("limit-rps", Yes),
    ("limit-whitelist", Yes),
    ("load-balance", Yes),
    ("mirror-host", Yes),
    (
        "mirror-request-body",
        Partly(
            "\"on\" (default) copies bodies up to 64 KiB only: a request with a larger body is not mirrored (see mirror-target)",
        ),
    ),
    (
        "mirror-target",
        Partly(
            "fire and forget: a slow mirror never delays the request (nginx's does); at most 256 copies in flight (past that a request is not mirrored), each within 15 s; a copy with a body leaves once the upstream has read the body whole; nginx variables (see Variables) only after the host, directly after it only $request_uri or $uri; loopback and link-local addresses only with --allow-loopback-mirror-target; https is not verified, as ingress-nginx by default",
        ),
    ),
    ("modsecurity-snippet", No(SNIPPET)),
    (
        "modsecurity-transaction-id",
        No("not applicable: Portico has no web application firewall"),
    ),
    ("opentelemetry-operation-name", Yes),
    ("opentelemetry-trust-incoming-span", Yes),
    (
        "opentracing-trust-incoming-span",
        No("not applicable: removed from ingress-nginx"),
    ),
    ("permanent-redirect", Yes),
    ("permanent-redirect-code", Yes),
    ("preserve-trailing-slash", Yes),
    ("proxy-body-size", Yes),
    ("proxy-buffer-size", No(STREAMS)),
    (
        "proxy-buffering",
        Partly(
            "\"off\" (ingress-nginx's default) is what Portico does: responses stream to the client as they arrive; \"on\" is accepted and responses still stream (no buffering of slow clients' responses in memory or on disk)",
        ),
    ),
    ("proxy-buffers-number", No(STREAMS)),
    ("proxy-connect-timeout", Yes),
    ("proxy-cookie-domain", Yes),
    ("proxy-cookie-path", Yes),
    (
        "proxy-http-version",
        Partly(
            "\"1.0\" sends HTTP/1.0 requests with Connection: close on connections never pooled, and takes HTTP/1.0 answers; a request body without Content-Length is read whole first, as nginx buffers it, and sent with its length: at most proxy-body-size (413 beyond) and, without a limit, at most 64 MiB (held in memory, where nginx spools to disk), each piece within 60 s (408, client-body-timeout's default)",
        ),
    ),
    ("proxy-max-temp-file-size", No(STREAMS)),
    (
        "proxy-next-upstream",
        Partly(
            "every condition, default \"error timeout\"; a request with a body is never sent to a second endpoint once it reached one, even with non_idempotent: Portico streams bodies where nginx buffers them (a refused connect still moves on)",
        ),
    ),
    ("proxy-next-upstream-timeout", Yes),
    ("proxy-next-upstream-tries", Yes),
    ("proxy-read-timeout", Yes),
    ("proxy-redirect-from", Yes),
    ("proxy-redirect-to", Yes),
    (
        "proxy-request-buffering",
        Partly(
            "\"off\" is what Portico does: request bodies stream to the upstream as they arrive (proxy-send-timeout bounds a slow upload); \"on\" (ingress-nginx's default, which reads the whole body first) is accepted and bodies still stream",
        ),
    ),
    ("proxy-send-timeout", Yes),
    (
        "proxy-ssl-ciphers",
        Partly(
            "OpenSSL cipher lists mapped to rustls's TLS 1.2 suites (ECDHE with AES-GCM or ChaCha20-Poly1305); names of other suites are Warnings",
        ),
    ),
    ("proxy-ssl-name", Yes),
    (
        "proxy-ssl-protocols",
        Partly("TLSv1.2 and TLSv1.3 (default both); TLSv1 and TLSv1.1 are Warnings"),
    ),
    ("proxy-ssl-secret", Yes),
    ("proxy-ssl-server-name", Yes),
    ("proxy-ssl-verify", Yes),
    ("proxy-ssl-verify-depth", Yes),
    ("rewrite-target", Yes),
    ("satisfy", Yes),
    (
        "server-alias",
        Partly(
            "host names, `*.` wildcards and nginx's `~` regular-expression names in Rust regex syntax (linear time, at most 1024 bytes, case-insensitive, no captures as variables), tried after exact and wildcard names in sorted order; a wildcard or regex alias gets the default certificate",
        ),
    ),
    ("server-snippet", No(SERVER_SNIPPET)),
    ("service-upstream", Yes),
    ("session-cookie-change-on-failure", Yes),
    ("session-cookie-conditional-samesite-none", Yes),
    ("session-cookie-domain", Yes),
    ("session-cookie-expires", Yes),
    (
        "session-cookie-hash",
        No("not applicable: deprecated in ingress-nginx; Portico's values are always opaque"),
    ),
    ("session-cookie-max-age", Yes),
    ("session-cookie-name", Yes),
    ("session-cookie-path", Yes),
    ("session-cookie-samesite", Yes),
    ("session-cookie-secure", Yes),
    (
        "ssl-ciphers",
        Partly(
            "per host and its server-alias names (not `~` regex ones), from the oldest Ingress on the host that sets it: suite names only, rustls's ECDHE-GCM, CHACHA20 and TLS 1.3 suites; DHE, CBC and static-RSA names and OpenSSL keywords (ALL, HIGH, !aNULL) are skipped with a Warning, and a list left without a TLS 1.2 suite is a Warning and the host keeps the listener's suites",
        ),
    ),
    (
        "ssl-passthrough",
        Partly(
            "TLS connections go to a pod of the backend of the host's / rule, not to the Service's cluster IP as in ingress-nginx; as there: only with --enable-ssl-passthrough, for the exact SNI host name (not its server-alias names), and the host's rules are served on plain HTTP, to that backend over TLS",
        ),
    ),
    ("ssl-prefer-server-ciphers", Yes),
    ("ssl-redirect", Yes),
    ("stream-snippet", No(STREAM_SNIPPET)),
    ("temporal-redirect", Yes),
    (
        "upstream-hash-by",
        Partly(
            "nginx variables (see Variables) and text of letters, digits, - and _; an unknown variable is a Warning and the annotation is ignored; Portico's own ring (keys land on other pods than under ingress-nginx, as few move); an endpoint in failure backoff passes its keys to the next on the ring",
        ),
    ),
    ("upstream-hash-by-subset", Yes),
    (
        "upstream-hash-by-subset-size",
        Partly(
            "a whole number up to 1000 (a cap); 0 means 3 as in ingress-nginx; an invalid value is a Warning and 3 is used, where ingress-nginx drops the Ingress's upstream-hash-by altogether",
        ),
    ),
    ("upstream-vhost", Yes),
    ("use-regex", Yes),
    ("whitelist-source-range", Yes),
    ("x-forwarded-prefix", Yes),
];

/// What Portico does with annotation `name` (without prefix); `None` for names
/// ingress-nginx does not have either.
pub fn support(name: &str) -> Option<Support> {
    lookup(ANNOTATIONS, name)
}

/// The table of docs/annotations.md.
pub fn markdown_table() -> String {
    markdown("annotation", ANNOTATIONS)
}

/// `name`'s row of a sorted table.
pub fn lookup(table: &[(&str, Support)], name: &str) -> Option<Support> {
    table.binary_search_by(|(n, _)| n.cmp(&name)).ok().map(|i| table[i].1)
}

/// A table as Markdown, its first column headed `what`.
pub fn markdown(what: &str, table: &[(&str, Support)]) -> String {
    let mut s = format!("| {what} | Portico |\n|---|---|\n");
    for (name, support) in table {
        let what = match support {
            Yes => "supported".to_string(),
            Partly(how) => format!("partly: {how}"),
            No(why) => format!("not supported — {why}"),
        };
        s.push_str(&format!("| `{name}` | {what} |\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_documented() {
        assert!(
            ANNOTATIONS.windows(2).all(|w| w[0].0 < w[1].0),
            "keep ANNOTATIONS sorted"
        );
        let doc = include_str!("../../docs/annotations.md");
        assert!(
            doc.contains(&markdown_table()),
            "docs/annotations.md is out of date: paste the output of `portico annotations`"
        );
        assert_eq!(support("ssl-redirect"), Some(Yes));
        assert_eq!(support("no-such-thing"), None);
        // Each refused snippet names the typed annotations to use instead.
        for (snippet, typed) in [
            ("configuration-snippet", "rewrite-target"),
            ("server-snippet", "permanent-redirect"),
            ("auth-snippet", "auth-url"),
            ("stream-snippet", "ssl-passthrough"),
        ] {
            let Some(No(why)) = support(snippet) else {
                panic!("{snippet}")
            };
            assert!(why.contains(typed), "{snippet}: {why}");
            assert!(matches!(support(typed), Some(Yes | Partly(_))), "{typed}");
        }
    }
}
