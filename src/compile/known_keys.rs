//! Every ingress-nginx ConfigMap key, and what Portico does with it. One table feeds the
//! warnings compile() gives for keys of the `--configmap` it does not honour and
//! `docs/configmap.md` (`portico configmap-keys` prints the table; a test keeps them in step).

use super::known::{self, SNIPPET, Support};
use Support::{No, Partly, Yes};

const NGINX_INTERNAL: &str =
    "not applicable: an nginx buffer, table or process setting; Portico streams bodies and sizes its own tables";
const TRACING: &str = "not applicable: removed from ingress-nginx; its OpenTelemetry keys (otel-*, otlp-*) replace it, see docs/tracing.md";
const MODULE: &str = "not supported: Portico has no WAF and no GeoIP database";
const LOGS: &str = "not applicable: Portico logs to stdout (RUST_LOG sets the level, --log-format the form)";
const STREAM: &str = "not applicable: Portico proxies no TCP/UDP services";
const LATER: &str = "not yet";

/// ConfigMap keys, sorted.
pub const KEYS: &[(&str, Support)] = &[
    ("access-log-params", No(LOGS)),
    ("access-log-path", No(LOGS)),
    (
        "add-headers",
        Partly(
            "values with nginx variables (see docs/annotations.md, Variables); a framing, hop-by-hop or X-Forwarded-* name, an unknown variable, or more than 64 headers refuse the whole list (a Warning, no header added); a ConfigMap name without namespace is looked up in the --configmap's namespace",
        ),
    ),
    ("allow-backend-server-header", No(LATER)),
    ("allow-cross-namespace-resources", No(LATER)),
    (
        "allow-snippet-annotations",
        Partly(
            "accepted, and snippet annotations stay refused whatever its value: Portico renders no configuration text",
        ),
    ),
    ("annotation-value-word-blocklist", No(LATER)),
    ("annotations-risk-level", No(LATER)),
    ("bind-address", No(LATER)),
    ("block-cidrs", No(LATER)),
    ("block-referers", No(LATER)),
    ("block-user-agents", No(LATER)),
    ("brotli-level", Yes),
    ("brotli-min-length", Yes),
    ("brotli-types", Yes),
    ("client-body-buffer-size", No(NGINX_INTERNAL)),
    ("client-body-timeout", No(LATER)),
    ("client-header-buffer-size", No(NGINX_INTERNAL)),
    (
        "client-header-timeout",
        No("not yet from the ConfigMap: --client-header-timeout sets it at start"),
    ),
    (
        "compute-full-forwarded-for",
        Partly(
            "without the key Portico sends the full chain (its behaviour before the ConfigMap; ingress-nginx's default is false); \"false\": the client address alone",
        ),
    ),
    (
        "custom-http-errors",
        Partly(
            "for Ingresses without the annotation, with their default-backend annotation or --default-backend-service as the error backend; see the annotation's row in docs/annotations.md",
        ),
    ),
    ("debug-connections", No(NGINX_INTERNAL)),
    ("default-type", No(LATER)),
    ("denylist-source-range", No(LATER)),
    ("disable-access-log", No(LATER)),
    ("disable-ipv6", No(LATER)),
    ("disable-ipv6-dns", No(LATER)),
    ("enable-access-log-for-default-backend", No(LATER)),
    ("enable-aio-write", No(NGINX_INTERNAL)),
    (
        "enable-brotli",
        Partly(
            "streamed; the higher Accept-Encoding weight wins between br and gzip (br on a tie); Cache-Control: no-transform is honoured",
        ),
    ),
    ("enable-modsecurity", No(MODULE)),
    ("enable-multi-accept", No(NGINX_INTERNAL)),
    ("enable-ocsp", No(LATER)),
    (
        "enable-opentelemetry",
        Partly(
            "see the annotation's row in docs/annotations.md and docs/tracing.md: spans go over OTLP/HTTP (protobuf), not OTLP/gRPC",
        ),
    ),
    ("enable-owasp-modsecurity-crs", No(MODULE)),
    ("enable-real-ip", No(LATER)),
    ("enable-serial-reloads", No(NGINX_INTERNAL)),
    ("enable-syslog", No(LOGS)),
    ("enable-underscores-in-headers", No(LATER)),
    ("error-log-level", No(LOGS)),
    ("error-log-path", No(LOGS)),
    (
        "force-ssl-redirect",
        No("not yet from the ConfigMap: the force-ssl-redirect annotation sets it per Ingress"),
    ),
    (
        "forwarded-for-header",
        Partly(
            "read from peers trusted by use-forwarded-headers/proxy-real-ip-cidr or --trusted-proxies, also with use-proxy-protocol (ingress-nginx then reads forwarded-for-proxy-protocol-header); a name of letters, digits, '-' and '_', at most 64",
        ),
    ),
    ("forwarded-for-proxy-protocol-header", No(LATER)),
    ("generate-request-id", No(LATER)),
    ("geoip2-autoreload-in-minutes", No(MODULE)),
    ("global-allowed-response-headers", Yes),
    ("global-auth-always-set-cookie", Yes),
    ("global-auth-cache-duration", Yes),
    (
        "global-auth-cache-key",
        Partly(
            "variables $host, $http_host, $scheme, $request_uri, $escaped_request_uri, $remote_addr and $http_<header> only; anything else turns caching off with a Warning",
        ),
    ),
    ("global-auth-method", Yes),
    ("global-auth-request-redirect", Yes),
    ("global-auth-response-headers", Yes),
    ("global-auth-signin", Yes),
    ("global-auth-signin-redirect-param", Yes),
    ("global-auth-snippet", No(SNIPPET)),
    (
        "global-auth-url",
        Partly("nginx variables in the path and query; none in the host part, which no Ingress vouches for"),
    ),
    ("grpc-buffer-size-kb", No(NGINX_INTERNAL)),
    (
        "gzip-disable",
        No("not yet: no User-Agent patterns; gzip follows Accept-Encoding only"),
    ),
    ("gzip-level", Yes),
    ("gzip-min-length", Yes),
    ("gzip-types", Yes),
    ("hide-headers", No(LATER)),
    ("hsts", Yes),
    ("hsts-include-subdomains", Yes),
    ("hsts-max-age", Yes),
    ("hsts-preload", Yes),
    ("http-access-log-path", No(LOGS)),
    ("http-redirect-code", No(LATER)),
    ("http-snippet", No(SNIPPET)),
    (
        "http2-max-concurrent-streams",
        No("not yet from the ConfigMap: --h2-max-concurrent-streams sets it at start"),
    ),
    ("http2-max-field-size", No(LATER)),
    ("http2-max-header-size", No(LATER)),
    ("http2-max-requests", No(LATER)),
    ("ignore-invalid-headers", No(LATER)),
    ("jaeger-baggage-header", No(TRACING)),
    ("jaeger-collector-host", No(TRACING)),
    ("jaeger-collector-port", No(TRACING)),
    ("jaeger-debug-header", No(TRACING)),
    ("jaeger-endpoint", No(TRACING)),
    ("jaeger-propagation-format", No(TRACING)),
    ("jaeger-sampler-host", No(TRACING)),
    ("jaeger-sampler-param", No(TRACING)),
    ("jaeger-sampler-port", No(TRACING)),
    ("jaeger-sampler-type", No(TRACING)),
    ("jaeger-service-name", No(TRACING)),
    ("jaeger-trace-baggage-header-prefix", No(TRACING)),
    ("jaeger-trace-context-header-name", No(TRACING)),
    ("jaeger-tracer-baggage-header-prefix", No(TRACING)),
    (
        "keep-alive",
        Partly(
            "0 (keep-alive off: every answer says Connection: close; HTTP/2: GOAWAY after the first stream) to 86400 seconds; for connections opened after a change; it is also the time a request head may take (as --client-header-timeout, its default), and HTTP/2 keeps the flag's ping timeout",
        ),
    ),
    (
        "keep-alive-requests",
        Partly(
            "1 to 10000000, for connections opened after a change; without the key 1000, as ingress-nginx; HTTP/1: Connection: close on the last answer; HTTP/2: GOAWAY after that many streams",
        ),
    ),
    ("large-client-header-buffers", No(NGINX_INTERNAL)),
    ("limit-conn-status-code", Yes),
    (
        "limit-conn-zone-variable",
        No("not yet: connection limits are keyed by the client address ($binary_remote_addr)"),
    ),
    (
        "limit-rate",
        Partly(
            "kilobytes per second, as ingress-nginx renders it (its documentation says bytes); the pace counts from the response body's start (nginx: the request's)",
        ),
    ),
    ("limit-rate-after", Yes),
    ("limit-req-status-code", Yes),
    (
        "load-balance",
        No("not yet from the ConfigMap: the load-balance annotation sets it per Ingress (default round_robin)"),
    ),
    ("location-snippet", No(SNIPPET)),
    ("log-format-escape-json", Yes),
    ("log-format-escape-none", Yes),
    ("log-format-stream", No(STREAM)),
    (
        "log-format-upstream",
        Partly(
            "with --access-log-format nginx (the default with --log-format text); the variables Portico knows are listed in README and docs/annotations.md, Variables (others are a Warning and written as -); times are UTC; $request_length and $bytes_sent count the HTTP/1 form of the head",
        ),
    ),
    ("lua-shared-dicts", No(NGINX_INTERNAL)),
    ("main-snippet", No(SNIPPET)),
    ("map-hash-bucket-size", No(NGINX_INTERNAL)),
    ("max-worker-connections", No(NGINX_INTERNAL)),
    ("max-worker-open-files", No(NGINX_INTERNAL)),
    ("modsecurity-snippet", No(SNIPPET)),
    ("nginx-status-ipv4-whitelist", No(LATER)),
    ("nginx-status-ipv6-whitelist", No(LATER)),
    ("no-auth-locations", Yes),
    ("no-tls-redirect-locations", No(LATER)),
    (
        "opentelemetry-config",
        No("not applicable: the nginx module's file; the otel-* and otlp-* keys set everything Portico uses"),
    ),
    (
        "opentelemetry-operation-name",
        Partly(
            "variables $request_method, $uri, $host, $scheme, $namespace, $ingress_name, $service_name, $service_port and $location_path only; without it the name is METHOD and the Ingress path (nginx's module names the location)",
        ),
    ),
    ("opentelemetry-trust-incoming-span", Yes),
    ("otel-max-export-batch-size", Yes),
    (
        "otel-max-queuesize",
        Partly(
            "at most 65536; spans past it are dropped and counted in portico_otel_spans_total{outcome=\"dropped\"}; a batch being sent counts until it is sent",
        ),
    ),
    (
        "otel-sampler",
        Partly(
            "AlwaysOn, AlwaysOff and TraceIdRatioBased (on the trace id's low 56 bits); remote is refused with a Warning",
        ),
    ),
    ("otel-sampler-parent-based", Yes),
    ("otel-sampler-ratio", Yes),
    (
        "otel-schedule-delay-millis",
        Partly("at most 60000: the longest a span waits for its batch to fill"),
    ),
    ("otel-service-name", Yes),
    (
        "otlp-collector-host",
        Partly(
            "a host name or an http:// URL; spans are POSTed as OTLP/HTTP protobuf to /v1/traces (or the URL's path); no TLS to the collector",
        ),
    ),
    (
        "otlp-collector-port",
        Partly("default 4318 (OTLP/HTTP), not 4317: Portico speaks no OTLP/gRPC, and port 4317 gets a Warning"),
    ),
    ("proxy-add-original-uri-header", No(LATER)),
    ("proxy-body-size", Yes),
    ("proxy-buffer-size", No(NGINX_INTERNAL)),
    ("proxy-buffering", No(NGINX_INTERNAL)),
    ("proxy-buffers-number", No(NGINX_INTERNAL)),
    ("proxy-busy-buffers-size", No(NGINX_INTERNAL)),
    ("proxy-connect-timeout", Yes),
    ("proxy-cookie-domain", No(LATER)),
    ("proxy-cookie-path", No(LATER)),
    ("proxy-headers-hash-bucket-size", No(NGINX_INTERNAL)),
    ("proxy-headers-hash-max-size", No(NGINX_INTERNAL)),
    (
        "proxy-next-upstream",
        Partly("the default for Ingresses without the annotation; see the annotation's row"),
    ),
    ("proxy-next-upstream-timeout", Yes),
    ("proxy-next-upstream-tries", Yes),
    (
        "proxy-protocol-header-timeout",
        No("not yet from the ConfigMap: --proxy-protocol-header-timeout sets it at start"),
    ),
    ("proxy-read-timeout", Yes),
    ("proxy-real-ip-cidr", Yes),
    ("proxy-redirect-from", No(LATER)),
    ("proxy-request-buffering", No(NGINX_INTERNAL)),
    ("proxy-send-timeout", Yes),
    (
        "proxy-set-headers",
        Partly(
            "values with nginx variables (see docs/annotations.md, Variables); a framing, hop-by-hop or X-Forwarded-* name, an unknown variable, or more than 64 headers refuse the whole list (a Warning, no header added); a ConfigMap name without namespace is looked up in the --configmap's namespace",
        ),
    ),
    ("proxy-ssl-location-only", No(LATER)),
    ("proxy-stream-next-upstream", No(STREAM)),
    ("proxy-stream-next-upstream-timeout", No(STREAM)),
    ("proxy-stream-next-upstream-tries", No(STREAM)),
    ("proxy-stream-responses", No(STREAM)),
    ("proxy-stream-timeout", No(STREAM)),
    ("relative-redirects", No(LATER)),
    ("retry-non-idempotent", No(LATER)),
    ("reuse-port", No(NGINX_INTERNAL)),
    ("server-name-hash-bucket-size", No(NGINX_INTERNAL)),
    ("server-name-hash-max-size", No(NGINX_INTERNAL)),
    ("server-snippet", No(SNIPPET)),
    ("server-tokens", No(LATER)),
    ("service-upstream", No(LATER)),
    ("skip-access-log-urls", No(LATER)),
    ("ssl-buffer-size", No(NGINX_INTERNAL)),
    (
        "ssl-ciphers",
        Partly(
            "suite names only, rustls's ECDHE-GCM, CHACHA20 and TLS 1.3 suites; DHE, CBC and static-RSA names and OpenSSL keywords are skipped with a Warning; applies to new handshakes",
        ),
    ),
    ("ssl-dh-param", No(LATER)),
    ("ssl-early-data", No(LATER)),
    ("ssl-ecdh-curve", No(LATER)),
    (
        "ssl-protocols",
        Partly("TLSv1.2 and TLSv1.3 only (rustls implements no older version); applies to new handshakes"),
    ),
    (
        "ssl-redirect",
        No("not yet from the ConfigMap: the ssl-redirect annotation sets it per Ingress (default true)"),
    ),
    ("ssl-reject-handshake", No(LATER)),
    (
        "ssl-session-cache",
        Partly(
            "for handshakes after a change; \"false\" turns session-id resumption off and empties the cache (ssl-session-tickets can still resume); without the key --tls-session-cache holds",
        ),
    ),
    (
        "ssl-session-cache-size",
        Partly(
            "1k to 100m, counted as nginx's about 4000 sessions a megabyte (10m: 40000 sessions), for handshakes after a change; without the key --tls-session-cache (a number of sessions) holds",
        ),
    ),
    ("ssl-session-ticket-key", No(LATER)),
    (
        "ssl-session-tickets",
        Partly(
            "\"true\": stateless tickets sealed with keys Portico makes and rotates (rustls's, 6 h; ssl-session-ticket-key is not read), for handshakes after a change; ssl-session-timeout does not shorten them; default false, as ingress-nginx: tickets carry only a session id",
        ),
    ),
    (
        "ssl-session-timeout",
        Partly(
            "nginx times up to 24h, for handshakes after a change (also to sessions already cached, when they are looked up); without the key --tls-session-timeout holds",
        ),
    ),
    ("stream-access-log-path", No(LOGS)),
    ("stream-snippet", No(SNIPPET)),
    ("strict-validate-path-type", No(LATER)),
    ("syslog-host", No(LOGS)),
    ("syslog-port", No(LOGS)),
    (
        "upstream-keepalive-connections",
        Partly(
            "0 to 4096 idle HTTP/1.1 connections kept per endpoint (and per TLS client), not per nginx worker; without the key 320, as ingress-nginx; 0 keeps none; past that many, a connection that comes back is kept up to 1 s more (at most 4× as many in all) for the next request of a burst instead of being closed at once; HTTP/2 upstreams share one connection",
        ),
    ),
    (
        "upstream-keepalive-requests",
        Partly(
            "1 to 10000000, HTTP/1.1 upstream connections; without the key 10000, as ingress-nginx; a connection that served that many is closed instead of pooled",
        ),
    ),
    (
        "upstream-keepalive-time",
        Partly(
            "nginx times (90s, 30m, 1h, 1d) up to 7d, HTTP/1.1 upstream connections; without the key 1h, as ingress-nginx; an older connection is closed instead of pooled after its request",
        ),
    ),
    ("upstream-keepalive-timeout", Yes),
    (
        "use-forwarded-headers",
        Partly(
            "true: X-Forwarded-* from the peers proxy-real-ip-cidr lists are believed and appended to; false: only from --trusted-proxies (none by default)",
        ),
    ),
    ("use-geoip", No(MODULE)),
    ("use-geoip2", No(MODULE)),
    (
        "use-gzip",
        Partly(
            "streamed, flushed whenever the upstream pauses; not for HTTP/1.0 clients, HEAD, or statuses other than 200, 403 and 404, as nginx",
        ),
    ),
    ("use-http2", No(LATER)),
    (
        "use-proxy-protocol",
        Partly("applies to connections accepted after the change; open ones keep how they started"),
    ),
    ("variables-hash-bucket-size", No(NGINX_INTERNAL)),
    ("variables-hash-max-size", No(NGINX_INTERNAL)),
    (
        "whitelist-source-range",
        No("not yet from the ConfigMap: the annotation sets it per Ingress"),
    ),
    ("worker-cpu-affinity", No(NGINX_INTERNAL)),
    (
        "worker-processes",
        Partly(
            "worker threads, read at start from a manifests directory (--worker-threads wins); in Kubernetes mode use --worker-threads; a change is logged as needing a restart",
        ),
    ),
    ("worker-shutdown-timeout", No(NGINX_INTERNAL)),
];

/// What Portico does with ConfigMap key `name`; `None` for keys ingress-nginx does not have
/// either.
pub fn support(name: &str) -> Option<Support> {
    known::lookup(KEYS, name)
}

/// The table of docs/configmap.md.
pub fn markdown_table() -> String {
    known::markdown("key", KEYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_documented() {
        assert!(KEYS.windows(2).all(|w| w[0].0 < w[1].0), "keep KEYS sorted");
        let doc = include_str!("../../docs/configmap.md");
        assert!(
            doc.contains(&markdown_table()),
            "docs/configmap.md is out of date: paste the output of `portico configmap-keys`"
        );
        assert_eq!(support("hsts"), Some(Yes));
        assert_eq!(support("no-such-key"), None);
        assert!(matches!(support("server-snippet"), Some(No(SNIPPET))));
    }
}
