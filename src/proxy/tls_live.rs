//! The HTTPS listener's rustls configurations for the live Config's `ssl-protocols`,
//! `ssl-ciphers` and `ssl-session-*`: built again when those change (the session caches stay), else shared by
//! every handshake; and, per set of CA names an `auth-tls` policy sends, the configuration
//! that asks for a client certificate naming them. Hosts with their own
//! `ssl-ciphers`/`ssl-prefer-server-ciphers` get configurations of their own, built on first
//! use and kept while the listener's hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{DistinguishedName, RootCertStore, ServerConfig};

use super::mtls::RequestClientCert;

use crate::config::global::Global;
use crate::config::host_tls::HostTls;
use crate::config::mtls::CaBundle;
use crate::config::tls_options::{SslSession, TlsOptions, parse_ciphers, parse_protocols};

/// Makes a configuration for some options with a client-certificate verifier: rustls's
/// `NoClientAuth` for the plain one, [`RequestClientCert`] for those that ask.
pub type Build =
    Box<dyn Fn(&TlsOptions, Arc<dyn ClientCertVerifier>) -> Result<ServerConfig, rustls::Error> + Send + Sync>;

/// The most configurations kept for distinct sets of CA names; past it they are built anew.
const MAX_ASKING: usize = 256;

/// The configurations for one pair of `ssl-protocols`/`ssl-ciphers` values.
pub struct Configs {
    /// The Config's values these were built for (`None`: the flags').
    key: (Option<String>, Option<String>, SslSession),
    opts: TlsOptions,
    pub plain: Arc<ServerConfig>,
    /// Asks for a certificate naming no CA.
    pub client_auth: Arc<ServerConfig>,
    /// Asks for a certificate naming these CAs (the DER names, as the key).
    asking: Mutex<HashMap<Vec<Vec<u8>>, Arc<ServerConfig>>>,
    /// Requires a certificate that verifies against these CAs (their DER, as the key).
    validating: Mutex<HashMap<Vec<Vec<u8>>, Arc<ServerConfig>>>,
}

pub struct LiveTls {
    /// `--ssl-protocols`.
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    /// `--ssl-ciphers`, checked at start.
    ciphers: Option<String>,
    build: Build,
    current: ArcSwap<Configs>,
    /// Per distinct host setting, the configurations built for it (their `key` is the
    /// listener's values they were built with).
    hosts: ArcSwap<Vec<(HostTls, Arc<Configs>)>>,
}

/// The most distinct host settings kept; past it the cache starts again.
const MAX_HOST_CONFIGS: usize = 256;

impl LiveTls {
    /// Builds the configurations for the flags' values.
    pub fn new(
        versions: Vec<&'static rustls::SupportedProtocolVersion>,
        ciphers: Option<String>,
        build: Build,
    ) -> Result<Self, String> {
        let opts = options(&versions, ciphers.as_deref(), None, None, SslSession::default())?;
        let configs = Configs::new(&build, (None, None, SslSession::default()), opts).map_err(|e| e.to_string())?;
        Ok(Self {
            versions,
            ciphers,
            build,
            current: ArcSwap::from_pointee(configs),
            hosts: ArcSwap::from_pointee(Vec::new()),
        })
    }

    /// [`Configs::validating`] with this listener's way of building.
    pub fn validating(&self, configs: &Configs, ca: &CaBundle) -> Option<Arc<ServerConfig>> {
        configs.validating(&self.build, ca)
    }

    /// [`Configs::asking`] with this listener's way of building.
    pub fn asking(&self, configs: &Configs, cas: Vec<DistinguishedName>) -> Arc<ServerConfig> {
        configs.asking(&self.build, cas)
    }

    /// The configurations for a handshake with server name `sni`: its host's own, if it has
    /// settings of its own, else the listener's.
    pub fn for_sni(&self, config: &crate::config::Config, sni: Option<&str>) -> Arc<Configs> {
        match sni.and_then(|sni| config.host_tls.resolve(sni)) {
            Some(host) => self.host_configs(&config.global, host),
            None => self.configs(&config.global),
        }
    }

    /// The configurations of a host with its own settings, on the listener's for the rest.
    pub fn host_configs(&self, global: &Global, host: &HostTls) -> Arc<Configs> {
        if let Some((_, c)) = self.hosts.load().iter().find(|(h, c)| h == host && c.is_for(global)) {
            return c.clone();
        }
        self.build_host(global, host).unwrap_or_else(|| self.configs(global))
    }

    #[cold]
    fn build_host(&self, global: &Global, host: &HostTls) -> Option<Arc<Configs>> {
        let built = options(
            &self.versions,
            self.ciphers.as_deref(),
            global.ssl_protocols.as_deref(),
            host.ciphers.as_deref().or(global.ssl_ciphers.as_deref()),
            global.ssl_session,
        )
        .and_then(|mut opts| {
            if let Some(prefer) = host.prefer_server_ciphers {
                opts.prefer_server_ciphers = prefer;
            }
            Configs::new(&self.build, key_of(global), opts).map_err(|e| e.to_string())
        });
        let configs = match built {
            Ok(c) => Arc::new(c),
            Err(e) => {
                // compile() checked the list against the ConfigMap's protocols; this is one
                // that --ssl-protocols rules out.
                tracing::warn!(error = %e, ciphers = ?host.ciphers, "a host's ssl-ciphers cannot be used; it gets the listener's");
                return None;
            }
        };
        self.hosts.rcu(|list| {
            let mut list: Vec<_> = list
                .iter()
                .filter(|(h, c)| h != host && c.is_for(global))
                .cloned()
                .collect();
            if list.len() >= MAX_HOST_CONFIGS {
                list.clear();
            }
            list.push((host.clone(), configs.clone()));
            list
        });
        Some(configs)
    }

    /// The configurations for `global`'s values: the current ones, unless those changed.
    pub fn configs(&self, global: &Global) -> Arc<Configs> {
        let cur = self.current.load_full();
        if cur.is_for(global) {
            return cur;
        }
        self.rebuild(global).unwrap_or(cur)
    }

    #[cold]
    fn rebuild(&self, global: &Global) -> Option<Arc<Configs>> {
        let built = options(
            &self.versions,
            self.ciphers.as_deref(),
            global.ssl_protocols.as_deref(),
            global.ssl_ciphers.as_deref(),
            global.ssl_session,
        )
        .and_then(|opts| Configs::new(&self.build, key_of(global), opts).map_err(|e| e.to_string()));
        let configs = match built {
            Ok(c) => Arc::new(c),
            Err(e) => {
                // compile() checked the values, so this is a combination rustls refuses
                // (say --ssl-ciphers without a suite for the ConfigMap's protocols).
                tracing::warn!(error = %e, "the ConfigMap's ssl-protocols/ssl-ciphers cannot be used; the previous TLS settings hold");
                return None;
            }
        };
        self.current.store(configs.clone());
        tracing::info!(protocols = ?global.ssl_protocols, ciphers = ?global.ssl_ciphers, session = ?global.ssl_session, "TLS settings applied to new handshakes");
        Some(configs)
    }
}

impl Configs {
    fn new(
        build: &Build,
        key: (Option<String>, Option<String>, SslSession),
        opts: TlsOptions,
    ) -> Result<Self, rustls::Error> {
        let plain = build(&opts, Arc::new(rustls::server::NoClientAuth))?;
        let algorithms = plain.crypto_provider().signature_verification_algorithms;
        let client_auth = build(&opts, RequestClientCert::new(algorithms, Vec::new()))?;
        Ok(Self {
            key,
            opts,
            plain: Arc::new(plain),
            client_auth: Arc::new(client_auth),
            asking: Mutex::default(),
            validating: Mutex::default(),
        })
    }

    /// The configuration that asks for a client certificate and names `cas` in its
    /// CertificateRequest, as nginx names the subjects of `ssl_client_certificate`.
    pub fn asking(&self, build: &Build, cas: Vec<DistinguishedName>) -> Arc<ServerConfig> {
        if cas.is_empty() {
            return self.client_auth.clone();
        }
        let key: Vec<Vec<u8>> = cas.iter().map(|n| n.as_ref().to_vec()).collect();
        let mut cache = self.asking.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return c.clone();
        }
        let algorithms = self.client_auth.crypto_provider().signature_verification_algorithms;
        let Ok(built) = build(&self.opts, RequestClientCert::new(algorithms, cas)) else {
            return self.client_auth.clone();
        };
        if cache.len() >= MAX_ASKING {
            cache.clear();
        }
        let built = Arc::new(built);
        cache.insert(key, built.clone());
        built
    }

    /// The configuration that requires a client certificate verifying against `ca` (a
    /// Gateway's `AllowValidOnly`); `None` when rustls cannot build one from these CAs.
    pub fn validating(&self, build: &Build, ca: &CaBundle) -> Option<Arc<ServerConfig>> {
        let key: Vec<Vec<u8>> = ca.certs.iter().map(|c| c.as_ref().to_vec()).collect();
        let mut cache = self.validating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return Some(c.clone());
        }
        let roots = RootCertStore {
            roots: ca.anchors.clone(),
        };
        let provider = self.client_auth.crypto_provider().clone();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .inspect_err(|e| tracing::warn!(error = %e, "cannot build a client-certificate verifier"))
            .ok()?;
        let built = Arc::new(build(&self.opts, verifier).ok()?);
        if cache.len() >= MAX_ASKING {
            cache.clear();
        }
        cache.insert(key, built.clone());
        Some(built)
    }

    /// Whether these were built for `global`'s TLS values.
    fn is_for(&self, global: &Global) -> bool {
        self.key.0 == global.ssl_protocols && self.key.1 == global.ssl_ciphers && self.key.2 == global.ssl_session
    }
}

fn key_of(global: &Global) -> (Option<String>, Option<String>, SslSession) {
    (
        global.ssl_protocols.clone(),
        global.ssl_ciphers.clone(),
        global.ssl_session,
    )
}

/// The options from the flags' values, each overridden by the ConfigMap's when given.
fn options(
    versions: &[&'static rustls::SupportedProtocolVersion],
    ciphers: Option<&str>,
    cm_protocols: Option<&str>,
    cm_ciphers: Option<&str>,
    session: SslSession,
) -> Result<TlsOptions, String> {
    let versions = match cm_protocols {
        Some(p) => parse_protocols(p)?,
        None => versions.to_vec(),
    };
    let cipher_suites = match cm_ciphers.or(ciphers) {
        Some(list) => {
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            Some(parse_ciphers(list, &provider, &versions)?.0)
        }
        None => None,
    };
    Ok(TlsOptions {
        versions,
        cipher_suites,
        session,
        ..TlsOptions::default()
    })
}
