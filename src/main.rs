//! The `portico` binary: command line and wiring only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use portico::admin::{Admin, Pages};
use portico::compile::Options;
use portico::config::Cidr;
use portico::config::global::Hsts;
use portico::metrics::Metrics;
use portico::model::ObjectKey;
use portico::proxy::front::Front;
use portico::proxy::handler::Proxy;
use portico::proxy::live::Live;
use portico::proxy::upstream::Upstream;
use portico::proxy::{Settings, listener, mtls, tls, tls_options};
use portico::source::Publisher;
use portico::source::kube::KubeOptions;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

#[derive(Parser, Debug)]
#[command(
    name = "portico",
    version,
    about = "A Kubernetes ingress controller: Ingress rules → atomically swapped routes, TLS by SNI, traffic straight to pods."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the diagnostics and route table of a manifests directory; exit 1 on errors.
    Check {
        #[arg(long, env = "PORTICO_MANIFESTS")]
        manifests: PathBuf,
        #[command(flatten)]
        class: ClassArgs,
    },
    /// Explain which listener, certificate, route, policy steps and endpoints a request gets,
    /// and why every other candidate lost, from a manifests directory or a running Portico.
    Explain {
        /// http(s)://host[:port]/path?query
        url: String,
        /// A request header NAME:VALUE (repeatable); Host overrides the URL's host.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// Compile this manifests directory (as `portico --manifests DIR` would).
        #[arg(long, conflicts_with = "admin")]
        manifests: Option<PathBuf>,
        /// Ask a running Portico's admin listener (HOST:PORT) instead.
        #[arg(long)]
        admin: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        class: ClassArgs,
    },
    /// Serve examples/quickstart on 127.0.0.1:8080 and :8443 with built-in echo pods.
    Demo,
    /// Print every ingress-nginx annotation and what Portico does with it (Markdown).
    Annotations,
    /// Print every ingress-nginx ConfigMap key and what Portico does with it (Markdown).
    ConfigmapKeys,
    /// Run one echo pod (answers with what it received), e.g. inside a test's network namespace.
    #[command(hide = true)]
    Echo {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value = "echo")]
        name: String,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct ClassArgs {
    /// IngressClasses whose spec.controller equals this are ours.
    #[arg(
        long,
        env = "PORTICO_CONTROLLER_NAME",
        default_value = "portico.dev/ingress-controller"
    )]
    controller_name: String,
    /// The kubernetes.io/ingress.class annotation value that is ours.
    #[arg(long, env = "PORTICO_INGRESS_CLASS", default_value = "portico")]
    ingress_class: String,
    /// Also take Ingresses that name no class.
    #[arg(long, env = "PORTICO_WATCH_INGRESS_WITHOUT_CLASS")]
    watch_ingress_without_class: bool,
    /// NS/NAME of a TLS Secret to serve when SNI matches no Ingress host.
    #[arg(long, env = "PORTICO_DEFAULT_SSL_CERTIFICATE", value_parser = parse_key)]
    default_ssl_certificate: Option<ObjectKey>,
    /// NS/NAME of a Service (its first port) for requests no rule matches.
    #[arg(long, env = "PORTICO_DEFAULT_BACKEND_SERVICE", value_parser = parse_key)]
    default_backend_service: Option<ObjectKey>,
    /// External authentication for every Ingress that has no auth-url of its own and does not
    /// set enable-global-auth: "false" (ingress-nginx's global-auth-url). http(s)://host[:port]/path;
    /// the path and query may hold nginx variables ($request_uri, $http_NAME, ...).
    #[arg(long, env = "PORTICO_GLOBAL_AUTH_URL", value_parser = parse_auth_url)]
    global_auth_url: Option<Box<portico::config::auth::ExternalAuth>>,
    /// NS/NAME of ingress-nginx's controller ConfigMap (e.g. ingress-nginx/ingress-nginx-controller),
    /// followed live: its keys override the flags that have one (docs/configmap.md).
    #[arg(long, env = "PORTICO_CONFIGMAP", value_parser = parse_key)]
    configmap: Option<ObjectKey>,
    /// GatewayClasses whose spec.controllerName equals this are ours (Gateway API).
    #[arg(
        long,
        env = "PORTICO_GATEWAY_CONTROLLER_NAME",
        default_value = "portico.dev/gateway-controller"
    )]
    gateway_controller_name: String,
    /// Kubernetes mode: each Gateway gets a Service of its own (its own address) in its own
    /// namespace, with EndpointSlices listing the --publish-service's pods; the leader creates,
    /// updates and deletes them.
    #[arg(long, env = "PORTICO_GATEWAY_SERVICES")]
    gateway_services: bool,
    /// Where a Gateway's static spec.addresses (IPAddress) may come from, as CIDRs
    /// (comma-separated; default none): they become its Service's external IPs.
    #[arg(long, env = "PORTICO_GATEWAY_ADDRESS_CIDRS", value_delimiter = ',')]
    gateway_address_cidrs: Vec<Cidr>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum AccessLogFormat {
    Nginx,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum OnOff {
    On,
    Off,
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// Read Ingress, IngressClass, Service, EndpointSlice, Endpoints and Secret objects from
    /// the *.yaml, *.yml and *.json files of DIR and follow their changes.
    #[arg(long, env = "PORTICO_MANIFESTS")]
    manifests: Option<PathBuf>,
    /// Plain HTTP listener (HTTP/1.1 and prior-knowledge h2c).
    #[arg(long, env = "PORTICO_HTTP_ADDR", default_value = "0.0.0.0:80")]
    http_addr: SocketAddr,
    /// TLS listener (TLS 1.2/1.3; HTTP/2 and HTTP/1.1 by ALPN).
    #[arg(long, env = "PORTICO_HTTPS_ADDR", default_value = "0.0.0.0:443")]
    https_addr: SocketAddr,
    /// Admin listener: /healthz, /readyz, /routes, /metrics. `/routes` shows every host,
    /// Service and endpoint: keep this on a loopback address and give probes and scrapers
    /// --metrics-addr.
    #[arg(long, env = "PORTICO_ADMIN_ADDR", default_value = "127.0.0.1:10254")]
    admin_addr: SocketAddr,
    /// A second admin listener with /healthz, /readyz and /metrics only (no /routes), for
    /// kubelet probes and Prometheus (deploy/ binds it to 0.0.0.0:10254, as ingress-nginx's).
    #[arg(long, env = "PORTICO_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    class: ClassArgs,
    /// Strict-Transport-Security on HTTPS responses (never on plain HTTP), as ingress-nginx
    /// sends by default (its ConfigMap key hsts).
    #[arg(long, env = "PORTICO_HSTS", value_enum, default_value = "on")]
    hsts: OnOff,
    /// HSTS max-age in seconds, at most 315360000 (ingress-nginx's hsts-max-age).
    #[arg(long, env = "PORTICO_HSTS_MAX_AGE", default_value_t = 31_536_000, value_parser = count::<u64>(0..=315_360_000))]
    hsts_max_age: u64,
    /// HSTS includeSubDomains (ingress-nginx's hsts-include-subdomains).
    #[arg(long, env = "PORTICO_HSTS_INCLUDE_SUBDOMAINS", value_enum, default_value = "on")]
    hsts_include_subdomains: OnOff,
    /// HSTS preload (ingress-nginx's hsts-preload).
    #[arg(long, env = "PORTICO_HSTS_PRELOAD", value_enum, default_value = "off")]
    hsts_preload: OnOff,
    /// TLS versions of the HTTPS listener, as ingress-nginx's ssl-protocols: "TLSv1.2 TLSv1.3"
    /// or "TLSv1.3" (TLSv1 and TLSv1.1 are refused: rustls does not implement them).
    #[arg(long, env = "PORTICO_SSL_PROTOCOLS", default_value = "TLSv1.2 TLSv1.3", value_parser = tls_options::parse_protocols)]
    // Spelled out so that clap takes one value (the parsed list), not one per occurrence.
    ssl_protocols: std::vec::Vec<&'static rustls::SupportedProtocolVersion>,
    /// Cipher suites of the HTTPS listener, OpenSSL names separated by ':' as ingress-nginx's
    /// ssl-ciphers (default: rustls's suites). Suites rustls lacks (DHE, CBC) are skipped
    /// with a warning; unknown names are an error. TLS 1.3 suites (TLS_AES_128_GCM_SHA256,
    /// ...) named here limit TLS 1.3 to them.
    #[arg(long, env = "PORTICO_SSL_CIPHERS")]
    ssl_ciphers: Option<String>,
    /// Every connection to the HTTP and HTTPS listeners starts with a PROXY protocol v1 or v2
    /// header (from a load balancer), whose client address Portico uses; connections without
    /// one are closed. As ingress-nginx's use-proxy-protocol.
    #[arg(long, env = "PORTICO_USE_PROXY_PROTOCOL")]
    use_proxy_protocol: bool,
    /// Time a PROXY protocol header may take to arrive (at most 24h).
    #[arg(long, env = "PORTICO_PROXY_PROTOCOL_HEADER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    proxy_protocol_header_timeout: Duration,
    /// Honour the ssl-passthrough annotation: TLS connections whose SNI names such a host go
    /// to its pods unterminated. Every HTTPS connection's ClientHello is then read first
    /// (as it is when a TLSRoute asks for passthrough, without this flag).
    #[arg(long, env = "PORTICO_ENABLE_SSL_PASSTHROUGH")]
    enable_ssl_passthrough: bool,
    /// gzip responses whose client accepts it, with ingress-nginx's gzip-level, gzip-min-length
    /// and gzip-types defaults (its ConfigMap key use-gzip).
    #[arg(long, env = "PORTICO_USE_GZIP")]
    use_gzip: bool,
    /// brotli responses whose client accepts it, preferred to gzip, with ingress-nginx's
    /// brotli-level, brotli-min-length and brotli-types defaults (its ConfigMap key enable-brotli).
    #[arg(long, env = "PORTICO_ENABLE_BROTLI")]
    enable_brotli: bool,
    /// Secret that signs persistent-affinity cookie values; give every replica the same one
    /// (at least 16 bytes). Without it a random key is used, valid for this process only.
    #[arg(long, env = "PORTICO_AFFINITY_KEY", hide_env_values = true)]
    affinity_key: Option<String>,
    /// Let auth-url and --global-auth-url reach loopback and link-local addresses (an auth
    /// service running beside Portico, as a sidecar). Off: an Ingress cannot aim auth requests
    /// at the controller itself.
    #[arg(long, env = "PORTICO_ALLOW_LOOPBACK_AUTH_URL")]
    allow_loopback_auth_url: bool,
    /// Let mirror-target reach loopback and link-local addresses. Off: an Ingress cannot aim
    /// its request copies at the controller itself.
    #[arg(long, env = "PORTICO_ALLOW_LOOPBACK_MIRROR_TARGET")]
    allow_loopback_mirror_target: bool,
    /// Peers (CIDRs, comma-separated) whose X-Forwarded-* headers are believed.
    #[arg(long, env = "PORTICO_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<Cidr>,
    /// Time in-flight requests get to finish after SIGTERM (at most 24h).
    #[arg(long, env = "PORTICO_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// Log lines as text or as JSON objects (RUST_LOG sets the level).
    #[arg(long, env = "PORTICO_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// One log line per request (target portico::access), written off the request path.
    #[arg(long, env = "PORTICO_ACCESS_LOG", value_enum, default_value = "on")]
    access_log: OnOff,
    /// The access log's lines: `nginx`, ingress-nginx's format (the ConfigMap's
    /// log-format-upstream), or `json`, a tracing event with fixed fields. Default: `nginx`
    /// with `--log-format text`, `json` with `--log-format json` (every line stays JSON).
    #[arg(long, env = "PORTICO_ACCESS_LOG_FORMAT", value_enum)]
    access_log_format: Option<AccessLogFormat>,
    /// Worker threads, 1 to 1024 (default: the CPUs this process may use).
    #[arg(long, env = "PORTICO_WORKER_THREADS", value_parser = count::<usize>(1..=1024))]
    worker_threads: Option<usize>,
    /// Time to receive a request head, counted from the connection's start or its last
    /// response; so also the keep-alive idle time (HTTP/1 and HTTP/2). At most 24h.
    #[arg(long, env = "PORTICO_CLIENT_HEADER_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    client_header_timeout: Duration,
    /// Largest request head in bytes, at most 16 MiB.
    #[arg(long, env = "PORTICO_MAX_HEADER_BYTES", default_value_t = 64 * 1024, value_parser = count::<usize>(1..=16 << 20))]
    max_header_bytes: usize,
    /// Most header fields in one request, 1 to 10000.
    #[arg(long, env = "PORTICO_MAX_HEADERS", default_value_t = 100, value_parser = count::<usize>(1..=10_000))]
    max_headers: usize,
    /// Most client connections open at once, 1 to 16777216.
    #[arg(long, env = "PORTICO_MAX_CONNECTIONS", default_value_t = 65_536, value_parser = count::<usize>(1..=1 << 24))]
    max_connections: usize,
    /// TLS handshake deadline (at most 24h).
    #[arg(long, env = "PORTICO_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    tls_handshake_timeout: Duration,
    /// TLS sessions kept for resumption (0: no resumption), at most 1000000; about 300 bytes each.
    #[arg(long, env = "PORTICO_TLS_SESSION_CACHE", default_value_t = 20_000, value_parser = count::<usize>(0..=1_000_000))]
    tls_session_cache: usize,
    /// How long a TLS session can be resumed (at most 24h).
    #[arg(long, env = "PORTICO_TLS_SESSION_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    tls_session_timeout: Duration,
    /// Time to connect to an endpoint; a failed connect moves a body-less request to the next
    /// one. At most 24h.
    #[arg(long, env = "PORTICO_UPSTREAM_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    upstream_connect_timeout: Duration,
    /// Time an upstream may take to send its response head (at most 24h).
    #[arg(long, env = "PORTICO_UPSTREAM_RESPONSE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    upstream_response_timeout: Duration,
    /// HTTP/2 concurrent streams per connection, 1 to 10000.
    #[arg(long, env = "PORTICO_H2_MAX_CONCURRENT_STREAMS", default_value_t = 250, value_parser = count::<u32>(1..=10_000))]
    h2_max_concurrent_streams: u32,
    /// HTTP/2 streams a client may reset before they are accepted (rapid-reset protection),
    /// at most 10000.
    #[arg(long, env = "PORTICO_H2_MAX_PENDING_RESETS", default_value_t = 50, value_parser = count::<usize>(0..=10_000))]
    h2_max_pending_resets: usize,
    /// How often the manifests directory is checked for changes (more than 0, at most 24h).
    #[arg(long, env = "PORTICO_MANIFESTS_POLL", default_value = "500ms", value_parser = parse_period)]
    manifests_poll: Duration,
    /// Kubernetes mode: watch only this namespace (default: all).
    #[arg(long, env = "PORTICO_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Kubernetes mode: NS/NAME of the Service whose address goes into Ingress status (its
    /// load-balancer ingress, else its external IPs, else its cluster IP).
    #[arg(long, env = "PORTICO_PUBLISH_SERVICE", value_parser = parse_key)]
    publish_service: Option<ObjectKey>,
    /// Kubernetes mode: addresses (IPs or names, comma-separated) to write into Ingress status instead.
    #[arg(long, env = "PORTICO_PUBLISH_STATUS_ADDRESS", value_delimiter = ',')]
    publish_status_address: Vec<String>,
    /// Kubernetes mode, with --gateway-services: the type of the Gateways' Services
    /// (ClusterIP, NodePort or LoadBalancer).
    #[arg(long, env = "PORTICO_GATEWAY_SERVICE_TYPE", default_value = "LoadBalancer")]
    gateway_service_type: portico::source::gateway_services::ServiceType,
    /// Kubernetes mode: name of the leader-election Lease; only the leader writes status and Events.
    #[arg(long, env = "PORTICO_ELECTION_ID", default_value = "portico-leader")]
    election_id: String,
    /// Kubernetes mode: namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    election_namespace: String,
    /// Kubernetes mode: this replica's identity in the Lease (default: host name and pid).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Kubernetes mode: how long changes are coalesced before a compile (at most 24h).
    #[arg(long, env = "PORTICO_DEBOUNCE", default_value = "20ms", value_parser = parse_duration)]
    debounce: Duration,
    /// The HTTPS port named in http→https redirects (default: the --https-addr port).
    #[arg(long, env = "PORTICO_HTTPS_REDIRECT_PORT", value_parser = count::<u16>(1..=65_535))]
    https_redirect_port: Option<u16>,
    /// NS/NAME of Portico's own Service: each route's limit-rps, limit-rpm and
    /// limit-connections become the whole cluster's, divided by the ready endpoints (the live
    /// replicas) of this Service's EndpointSlices (default: per replica, as ingress-nginx).
    #[arg(long, env = "PORTICO_LIMITS_PER_CLUSTER", value_parser = parse_key)]
    limits_per_cluster: Option<ObjectKey>,
    /// The OTLP/HTTP collector request spans are exported to, as protobuf POSTed to
    /// http://HOST:PORT/v1/traces (port 4318 unless given). Turns tracing on for every Ingress;
    /// the ConfigMap's enable-opentelemetry and otlp-collector-* keys and an Ingress's
    /// enable-opentelemetry annotation override it.
    #[arg(long, env = "PORTICO_OTLP_ENDPOINT", value_parser = parse_collector)]
    otlp_endpoint: Option<portico::config::otel::Collector>,
}

// The proxy allocates small, short-lived buffers per request; mimalloc's thread-local free
// lists make that cheaper than glibc malloc (measured with benches/load.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's own defaults keep what a burst of connections freed: emptied pages are purged a
// second later (mimalloc 3), and only when the allocator is next called, and its first arena
// is committed whole. After 2,000 concurrent TLS handshakes that left 118 MB resident, still
// so ten seconds later (benches/connmem.sh, median of 3; 27 MB before the burst). So the
// binary sets the defaults the Deployment sets as environment variables: purge at once
// (`MIMALLOC_PURGE_DELAY=0`) and commit arenas as they are used
// (`MIMALLOC_ARENA_EAGER_COMMIT=0`); the same runs then end at 29 MB (19 MB before). A
// `MIMALLOC_*` variable still overrides its option.
//
// mimalloc reads its options once, in a constructor of priority 101, before its first arena;
// a default set in `main` would come after both. So this runs as a constructor of priority
// 100, which the loader calls first, and only sets defaults: mimalloc then reads the
// environment as usual.
#[cfg(target_os = "linux")]
mod allocator_defaults {
    use std::ffi::{c_int, c_long};

    // `mi_option_t` values, the same in mimalloc 2 and 3 (mimalloc.h).
    const ARENA_EAGER_COMMIT: c_int = 4;
    const PURGE_DELAY: c_int = 15;

    unsafe extern "C" {
        // In the mimalloc library that libmimalloc-sys links in.
        fn mi_option_set_default(option: c_int, value: c_long);
    }

    extern "C" fn set() {
        // SAFETY: writes two entries of mimalloc's static option table before any thread or
        // allocation exists; both indices are in range for the linked mimalloc.
        unsafe {
            mi_option_set_default(PURGE_DELAY, 0);
            mi_option_set_default(ARENA_EAGER_COMMIT, 0);
        }
    }

    #[used]
    #[unsafe(link_section = ".init_array.00100")]
    static SET: extern "C" fn() = set;
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "portico".into())
}

fn parse_auth_url(v: &str) -> Result<Box<portico::config::auth::ExternalAuth>, String> {
    portico::compile::auth::parse_auth_url(v, false).map(Box::new)
}

fn parse_collector(v: &str) -> Result<portico::config::otel::Collector, String> {
    let c = portico::config::otel::Collector::DEFAULT_PORT;
    portico::config::otel::Collector::parse(v, c).ok_or_else(|| format!("{v:?} is not http://HOST[:PORT][/PATH]"))
}

fn parse_key(s: &str) -> Result<ObjectKey, String> {
    ObjectKey::parse(s).ok_or_else(|| format!("{s:?} is not NAMESPACE/NAME"))
}

/// The longest value of any duration flag. Each is a timeout, a grace period or a polling
/// period, none sensibly longer than a day, and a bounded one is safe to add to a clock.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 5s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    // `Duration::from_secs_f64` panics past u64::MAX seconds; the number can be any length.
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(|| format!("{s:?} is too long: at most 24h"))
}

/// A polling period: more than zero, since `tokio::time::interval` panics on zero.
fn parse_period(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be more than 0")),
        d => Ok(d),
    }
}

/// A count flag's parser: a whole number in `range`, else a usage error that names it.
fn count<T>(range: std::ops::RangeInclusive<u64>) -> clap::builder::RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: std::fmt::Display,
{
    clap::builder::RangedU64ValueParser::new().range(range)
}

fn options(class: &ClassArgs, fallback: Option<Arc<rustls::sign::CertifiedKey>>, passthrough: bool) -> Options {
    Options {
        enable_ssl_passthrough: passthrough,
        // Filled by the publisher from the data plane (gateway_sockets).
        unbound_ports: Default::default(),
        controller_name: class.controller_name.clone(),
        ingress_class: class.ingress_class.clone(),
        watch_without_class: class.watch_ingress_without_class,
        default_backend_service: class.default_backend_service.clone(),
        global_auth: class.global_auth_url.clone().map(|g| std::sync::Arc::new(*g)),
        default_ssl_certificate: class.default_ssl_certificate.clone(),
        fallback_certificate: fallback,
        now: std::time::SystemTime::now(),
        cert_cache: Some(Arc::new(portico::compile::tls::CertCache::default())),
        limits_service: None,
        configmap: class.configmap.clone(),
        global: Default::default(),
        compression: Default::default(),
        gateway_controller_name: class.gateway_controller_name.clone(),
        gateway_services: class.gateway_services,
        gateway_address_cidrs: class.gateway_address_cidrs.clone(),
    }
}

fn compression(gzip: bool, brotli: bool) -> portico::config::compress::Compression {
    let mut c = portico::config::compress::Compression::default();
    c.gzip.enabled = gzip;
    c.brotli.enabled = brotli;
    c
}

fn main() -> anyhow::Result<()> {
    // Exactly one crypto provider, installed before anything touches rustls.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    match cli.command {
        Some(Command::Check { manifests, class }) => check(&manifests, &class),
        Some(Command::Explain {
            url,
            headers,
            manifests,
            admin,
            json,
            class,
        }) => {
            let opts = options(&class, None, false);
            let q = portico::explain::Source::pick(manifests.as_deref(), admin.as_deref(), &opts);
            print!("{}", q.ask(&url, &headers, json).map_err(anyhow::Error::msg)?);
            Ok(())
        }
        Some(Command::Annotations) => {
            print!("{}", portico::compile::known::markdown_table());
            Ok(())
        }
        Some(Command::ConfigmapKeys) => {
            print!("{}", portico::compile::known_keys::markdown_table());
            Ok(())
        }
        Some(Command::Demo) => {
            let mut run = cli.run;
            if !given("http_addr") {
                run.http_addr = "127.0.0.1:8080".parse()?;
            }
            if !given("https_addr") {
                run.https_addr = "127.0.0.1:8443".parse()?;
            }
            let dir = std::env::temp_dir().join(format!("portico-demo-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            for (name, text) in portico::demo::QUICKSTART {
                std::fs::write(dir.join(name), text)?;
            }
            run.manifests = Some(dir);
            start(run, true)
        }
        Some(Command::Echo { listen, name }) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                let l = TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                portico::demo::serve_echo(l, &name).await;
                Ok(())
            }),
        None => start(cli.run, false),
    }
}

fn check(dir: &std::path::Path, class: &ClassArgs) -> anyhow::Result<()> {
    let (snapshot, errors) =
        portico::source::files::load_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let cfg = portico::compile(&snapshot, &options(class, None, false));
    for e in &errors {
        println!("error: {e}");
    }
    for d in cfg.diagnostics.iter() {
        println!("{d}");
    }
    let failed = cfg.has_errors() || !errors.is_empty();
    let live = Live::new();
    live.publish(cfg);
    println!(
        "{}",
        serde_json::to_string_pretty(&portico::admin::routes_json(&live.load()))?
    );
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Log lines queued for the writer thread; more are dropped (and counted by tracing-appender).
const LOG_QUEUE_LINES: usize = 16_384;

fn start(args: RunArgs, demo: bool) -> anyhow::Result<()> {
    // The default queue (128 000 lines) is 4 MB resident from the start, whatever is logged;
    // 16 384 lines are a third of a second of access-log lines at 50 000 requests/s, which
    // the writer thread drains as they come.
    let (writer, _guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .finish(std::io::stdout());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let nginx_lines = match (args.access_log_format, args.log_format) {
        (Some(f), _) => f == AccessLogFormat::Nginx,
        (None, LogFormat::Text) => true,
        (None, LogFormat::Json) => false,
    };
    let access_sink =
        (args.access_log == OnOff::On && nginx_lines).then(|| portico::proxy::access_log::Sink::new(writer.clone()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    // `worker-processes` of a `--configmap` in the manifests directory, read once here: the
    // runtime cannot change its threads later (a change is logged as needing a restart).
    let from_configmap = match (&args.manifests, &args.class.configmap, args.worker_threads) {
        (Some(dir), Some(key), None) => portico::source::files::load_dir(dir)
            .ok()
            .and_then(|(s, _)| {
                s.config_maps
                    .get(key)
                    .and_then(|c| c.data.as_ref()?.get("worker-processes").cloned())
            })
            .and_then(|v| portico::compile::global::worker_processes(&v))
            .filter(|n| *n > 0),
        _ => None,
    };
    // One worker: a current-thread runtime does the same work without the cross-thread
    // task handoffs of the work-stealing scheduler.
    let mut rt = match args.worker_threads.or(from_configmap) {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all();
    rt.build()?.block_on(run(args, demo, access_sink))
}

async fn run(args: RunArgs, demo: bool, access_sink: Option<portico::proxy::access_log::Sink>) -> anyhow::Result<()> {
    let live = Arc::new(Live::new());
    let metrics = Arc::new(Metrics::new());
    let fallback = if args.class.ingress_class == "nginx" {
        // Tools written for ingress-nginx look for its placeholder certificate's subject.
        tls::self_signed("Kubernetes Ingress Controller Fake Certificate", Some("Acme Co"))
    } else {
        tls::self_signed("Portico Default Certificate", Some("Portico"))
    }
    .map_err(|e| anyhow::anyhow!("cannot generate the default certificate: {e}"))?;
    if let (Some(own), Some(ns)) = (&args.limits_per_cluster, &args.watch_namespace)
        && own.namespace != *ns
    {
        // Its EndpointSlices would never be seen, and every replica would count itself alone.
        anyhow::bail!("--limits-per-cluster {own}: the Service must be in --watch-namespace {ns}");
    }
    let mut opts = options(&args.class, Some(fallback), args.enable_ssl_passthrough);
    // The flags that have a ConfigMap key: defaults that the `--configmap` overrides.
    opts.global.trusted.ranges = args.trusted_proxies.clone();
    opts.global.use_proxy_protocol = args.use_proxy_protocol;
    opts.global.hsts = (args.hsts == OnOff::On).then(|| {
        Hsts::new(
            args.hsts_max_age,
            args.hsts_include_subdomains == OnOff::On,
            args.hsts_preload == OnOff::On,
        )
    });
    opts.compression = compression(args.use_gzip, args.enable_brotli);
    opts.global.otel.enabled = args.otlp_endpoint.is_some();
    opts.global.otel.collector = args.otlp_endpoint.clone();
    opts.limits_service = args.limits_per_cluster.clone();
    let publisher = Arc::new(Publisher::new(live.clone(), opts, metrics.clone()));
    let affinity_key = match &args.affinity_key {
        Some(k) if k.len() >= 16 => aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k.as_bytes()),
        Some(_) => anyhow::bail!("--affinity-key must be at least 16 bytes"),
        None => aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot generate the affinity key"))?,
    };

    if demo {
        for (pod, addr) in portico::demo::QUICKSTART_PODS {
            portico::demo::spawn_echo(addr.parse()?, pod)
                .await
                .with_context(|| format!("starting the demo echo pod on {addr}"))?;
        }
    }

    let source = match args.manifests.clone() {
        Some(dir) => {
            tokio::spawn(portico::source::files::follow(
                dir.clone(),
                publisher.clone(),
                args.manifests_poll,
            ));
            format!("manifests {}", dir.display())
        }
        None => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API (in-cluster config, KUBECONFIG or ~/.kube/config)")?;
            let identity = args
                .pod_name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
            let opts = KubeOptions {
                watch_namespace: args.watch_namespace.clone(),
                publish_service: args.publish_service.clone(),
                publish_status_addresses: args.publish_status_address.clone(),
                election_id: args.election_id.clone(),
                election_namespace: args.election_namespace.clone(),
                identity,
                debounce: args.debounce,
                controller_name: "portico".into(),
                configmap: args.class.configmap.clone(),
                gateway_service_type: args.gateway_service_type,
            };
            if opts.publish_service.is_none() && opts.publish_status_addresses.is_empty() {
                tracing::warn!(
                    "neither --publish-service nor --publish-status-address is set: Ingress status is not written"
                );
            }
            tokio::spawn(portico::source::kube::run(client, opts, publisher.clone()));
            match &args.watch_namespace {
                Some(ns) => format!("kubernetes (namespace {ns})"),
                None => "kubernetes (all namespaces)".to_string(),
            }
        }
    };

    let http = listener::bind(args.http_addr).with_context(|| format!("binding HTTP on {}", args.http_addr))?;
    let https = listener::bind(args.https_addr).with_context(|| format!("binding HTTPS on {}", args.https_addr))?;
    let admin_l = listener::bind(args.admin_addr).with_context(|| format!("binding admin on {}", args.admin_addr))?;
    let metrics_l = match args.metrics_addr {
        Some(a) => Some(listener::bind(a).with_context(|| format!("binding metrics on {a}"))?),
        None => None,
    };
    let settings = Settings {
        client_header_timeout: args.client_header_timeout,
        max_header_bytes: args.max_header_bytes,
        max_headers: args.max_headers,
        max_connections: args.max_connections,
        tls_handshake_timeout: args.tls_handshake_timeout,
        upstream_connect_timeout: args.upstream_connect_timeout,
        upstream_response_timeout: args.upstream_response_timeout,
        h2_max_concurrent_streams: args.h2_max_concurrent_streams,
        h2_max_pending_accept_reset_streams: args.h2_max_pending_resets,
        https_redirect_port: args.https_redirect_port.unwrap_or(https.local_addr()?.port()),
        ..Settings::default()
    };
    // The bound addresses (not the flags): with port 0 the kernel picks, and tests read them.
    let bound = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let (http_bound, https_bound, admin_bound) = (bound(&http), bound(&https), bound(&admin_l));
    // Checked here so that a bad flag stops the start with a clear message.
    if let Some(list) = &args.ssl_ciphers {
        let (_, warnings) = tls_options::parse_ciphers(
            list,
            &rustls::crypto::aws_lc_rs::default_provider(),
            &args.ssl_protocols,
        )
        .map_err(|e| anyhow::anyhow!("--ssl-ciphers: {e}"))?;
        for w in warnings {
            tracing::warn!("--ssl-ciphers: {w}");
        }
    }
    // Separate session caches: a session made without asking for a client certificate must
    // not resume where one is asked for (nginx's session id context does the same). Both
    // outlive the configurations a `--configmap` change rebuilds.
    let sessions = (
        tls::Sessions::new(args.tls_session_cache, args.tls_session_timeout),
        tls::Sessions::new(args.tls_session_cache, args.tls_session_timeout),
    );
    let build_live = live.clone();
    let build: portico::proxy::tls_live::Build = Box::new(move |opts, verifier| {
        let sessions = if verifier.offer_client_auth() {
            &sessions.1
        } else {
            &sessions.0
        };
        tls::server_config(build_live.clone(), sessions.clone(), opts, verifier)
    });
    let live_tls = portico::proxy::tls_live::LiveTls::new(args.ssl_protocols.clone(), args.ssl_ciphers.clone(), build)
        .map_err(|e| anyhow::anyhow!("TLS settings: {e}"))?;
    let tls_acceptor = mtls::Acceptor::new(live_tls, live.clone());
    let own_ports = [http.local_addr()?.port(), https.local_addr()?.port()];

    let proxy = Arc::new(Proxy {
        live: live.clone(),
        upstream: Upstream::new(&settings),
        settings: settings.clone(),
        metrics: metrics.clone(),
        access_log: args.access_log == OnOff::On,
        affinity_key,
        auth: portico::proxy::policy::auth::State::new(args.allow_loopback_auth_url),
        mirror: portico::proxy::policy::mirror::State::new(args.allow_loopback_mirror_target),
        access_sink,
        otel: portico::proxy::otel::Exporter::new(live.clone(), &metrics),
    });
    tokio::spawn(portico::proxy::upstream::reap_idle(
        live.clone(),
        settings.upstream_idle_timeout,
    ));
    let builder = Arc::new(listener::http_builder(&settings));
    let drain = Arc::new(listener::Drain::default());
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let admin = Arc::new(Admin {
        live: live.clone(),
        metrics: metrics.clone(),
        accepting: AtomicBool::new(true),
    });
    // The admin listener outlives the drain, so that /readyz can say "not ready" meanwhile.
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let metrics_bound = metrics_l.as_ref().map(bound).unwrap_or_default();
    if let Some(l) = metrics_l {
        tokio::spawn(admin.clone().serve(l, Pages::Probes, admin_stop_rx.clone()));
    }
    tokio::spawn(admin.clone().serve(admin_l, Pages::All, admin_stop_rx));
    let server = listener::Server {
        proxy: proxy.clone(),
        builder,
        drain: drain.clone(),
        limit,
        front: Front {
            proxy_protocol_timeout: args.proxy_protocol_header_timeout,
        },
    };
    let loops = [
        tokio::spawn(listener::serve("http", http, None, server.clone(), stop_rx.clone())),
        tokio::spawn(listener::serve(
            "https",
            https,
            Some(tls_acceptor.clone()),
            server.clone(),
            stop_rx.clone(),
        )),
    ];
    // Sockets for Gateway listener ports that these two do not serve.
    tokio::spawn(portico::proxy::gateway_sockets::run(
        live.clone(),
        args.http_addr.ip(),
        own_ports,
        server.clone(),
        tls_acceptor,
        stop_rx.clone(),
    ));
    drop(server);
    tracing::info!(http = %http_bound, https = %https_bound, admin = %admin_bound, metrics = %metrics_bound, source = %source, "portico is serving");
    if demo {
        let port = |a: &str| a.rsplit(':').next().unwrap_or_default().to_string();
        let (h, s) = (port(&http_bound), port(&https_bound));
        println!("\nPortico demo is serving examples/quickstart. Try:\n");
        println!("  curl -k --resolve foo.com:{s}:127.0.0.1 https://foo.com:{s}/bar");
        println!("  curl -k --resolve foo.com:{s}:127.0.0.1 https://foo.com:{s}/api/users");
        println!("  curl -i --resolve foo.com:{h}:127.0.0.1 http://foo.com:{h}/bar      # 308 to https");
        println!("  curl --resolve bar.com:{h}:127.0.0.1 http://bar.com:{h}/anything");
        println!("  curl -i --resolve nope.com:{h}:127.0.0.1 http://nope.com:{h}/        # 404");
        println!("  curl http://{admin_bound}/routes\n");
    }

    shutdown_signal().await;
    tracing::info!(grace = ?args.shutdown_grace, "shutting down: not ready, no new connections, draining");
    admin.accepting.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    drop(proxy);
    if !drain.drain(args.shutdown_grace).await {
        tracing::warn!("shutdown grace period over; closing the remaining connections");
    }
    let _ = admin_stop_tx.send(true);
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        for bad in ["", "s", ".", "1..2s", "-1s", "5d", "1e30s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    /// `Duration::from_secs_f64` panicked past u64::MAX seconds: a flag value must be a
    /// clear CLI error, never a panic.
    #[test]
    fn durations_out_of_range_are_errors() {
        for huge in [
            "100000000000000000000000s",
            "18446744073709551616",
            "99999999999999999999h",
            "25h",
            "86401s",
        ] {
            let e = parse_duration(huge).expect_err(huge);
            assert!(e.contains("at most"), "{huge}: {e}");
        }
        let long = "9".repeat(400);
        assert!(parse_duration(&long).is_err());
    }
}
