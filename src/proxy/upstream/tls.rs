//! TLS clients to upstreams: the default one (no verification, as ingress-nginx's
//! `proxy-ssl-verify: off`) and one per distinct `proxy-ssl-*` setting, built once when a
//! Config that uses it is published and kept for as long as Configs use it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme, SupportedCipherSuite};
use tokio_rustls::TlsConnector;

use crate::config::backend::Protocol;
use crate::config::upstream_tls::{KeyForm, SubjectAltName, Tls12Suite, UpstreamTls, Verify};
use crate::config::{Config, Route};

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// TLS to upstreams without `proxy-ssl-*` settings: TLS 1.2/1.3 with the process's provider.
/// Certificates are not verified, as with ingress-nginx's default (`proxy-ssl-verify: off`):
/// upstreams are pods addressed by IP, with certificates rarely issued for those addresses.
pub(crate) fn tls_connector(alpn: &[u8]) -> TlsConnector {
    let provider = provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(Verifier {
                    anchors: None,
                    sans: Arc::new([]),
                    provider,
                }))
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    cfg.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// A TLS client for one `proxy-ssl-*` setting.
pub struct TlsClient {
    /// Never reused by another client: the key of this client's connections in an endpoint's
    /// pool, so no route gets a connection made under another route's TLS identity.
    pub(super) id: u64,
    h1: TlsConnector,
    h2: TlsConnector,
    /// `proxy-ssl-name`; without it, the endpoint's address.
    name: Option<ServerName<'static>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl TlsClient {
    /// The rustls configurations for a setting (once for HTTP/1.1, once for h2 ALPN).
    pub fn build(s: &UpstreamTls) -> Result<TlsClient, String> {
        let base = provider();
        let mut provider = (*base).clone();
        if let Some(chosen) = &s.ciphers {
            let tls13 = base
                .cipher_suites
                .iter()
                .filter(|cs| matches!(cs, SupportedCipherSuite::Tls13(_)));
            let tls12 = chosen
                .iter()
                .filter_map(|c| base.cipher_suites.iter().find(|cs| cs.suite() == rustls_suite(*c)));
            provider.cipher_suites = tls13.chain(tls12).copied().collect();
        }
        let provider = Arc::new(provider);
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if s.protocols.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if s.protocols.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        let verifier = Arc::new(Verifier::new(s.verify.as_ref(), provider.clone())?);
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS settings: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut cfg = match &s.client_cert {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let chain = c.chain.iter().map(|d| CertificateDer::from(d.to_vec())).collect();
                let der = c.key.der.to_vec();
                let key = match c.key.form {
                    KeyForm::Pkcs1 => PrivateKeyDer::Pkcs1(der.into()),
                    KeyForm::Pkcs8 => PrivateKeyDer::Pkcs8(der.into()),
                    KeyForm::Sec1 => PrivateKeyDer::Sec1(der.into()),
                };
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate: {e}"))?
            }
        };
        let name = match &s.name {
            Some(n) => Some(ServerName::try_from(n.to_string()).map_err(|e| format!("proxy-ssl-name: {e}"))?),
            None => None,
        };
        // SNI carries a DNS name only, and only when asked (nginx's proxy_ssl_server_name).
        cfg.enable_sni = s.server_name && matches!(name, Some(ServerName::DnsName(_)));
        let mut h2 = cfg.clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        h2.alpn_protocols = vec![b"h2".to_vec()];
        Ok(TlsClient {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            h1: TlsConnector::from(Arc::new(cfg)),
            h2: TlsConnector::from(Arc::new(h2)),
            name,
        })
    }

    pub(super) fn connector(&self, h2: bool) -> &TlsConnector {
        if h2 { &self.h2 } else { &self.h1 }
    }

    /// The name verified (and, with SNI on, sent) when dialling `addr`.
    pub(super) fn server_name(&self, addr: IpAddr) -> ServerName<'static> {
        self.name.clone().unwrap_or(ServerName::IpAddress(addr.into()))
    }
}

fn rustls_suite(s: Tls12Suite) -> rustls::CipherSuite {
    use rustls::CipherSuite as C;
    match s {
        Tls12Suite::EcdheEcdsaAes128Gcm => C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        Tls12Suite::EcdheEcdsaAes256Gcm => C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        Tls12Suite::EcdheEcdsaChacha20 => C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        Tls12Suite::EcdheRsaAes128Gcm => C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        Tls12Suite::EcdheRsaAes256Gcm => C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        Tls12Suite::EcdheRsaChacha20 => C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    }
}

/// The TLS clients of a Config's routes, for the routes with `proxy-ssl-*` settings.
#[derive(Default)]
pub struct Clients {
    /// Route id → its client, or why it could not be built.
    by_route: HashMap<usize, Result<Arc<TlsClient>, Arc<str>>>,
}

impl Clients {
    /// The clients for `config`, reusing those of the previous Config whose settings did not
    /// change (their pooled connections stay usable); a setting seen first is built here.
    pub fn reconcile(prev: Option<(&Config, &Clients)>, config: &Config) -> Clients {
        let mut known: HashMap<&UpstreamTls, Result<Arc<TlsClient>, Arc<str>>> = HashMap::new();
        if let Some((prev_config, prev)) = prev {
            for route in prev_config.route_list.iter() {
                if let (Some(s), Some(c)) = (&route.policy.upstream_tls, prev.by_route.get(&route.id)) {
                    known.entry(&**s).or_insert_with(|| c.clone());
                }
            }
        }
        let mut fresh: HashMap<&UpstreamTls, Result<Arc<TlsClient>, Arc<str>>> = HashMap::new();
        let mut by_route = HashMap::new();
        for route in config.route_list.iter() {
            let Some(s) = route.policy.upstream_tls.as_deref().filter(|s| s.denied.is_none()) else {
                continue;
            };
            let client = fresh
                .entry(s)
                .or_insert_with(|| match known.get(s) {
                    Some(c) => c.clone(),
                    None => TlsClient::build(s).map(Arc::new).map_err(|e| {
                        tracing::warn!(ingress = %route.ingress, error = %e, "TLS to the upstream cannot be set up; requests are answered 503");
                        Arc::from(e)
                    }),
                })
                .clone();
            by_route.insert(route.id, client);
        }
        Clients { by_route }
    }

    /// The route's TLS client (`None`: the default one, or no TLS), or why the route is
    /// answered 503. Denial does not depend on the protocol, as in ingress-nginx.
    #[inline(always)]
    pub fn for_route<'a>(&'a self, route: &'a Route, protocol: Protocol) -> Result<Option<&'a TlsClient>, &'a str> {
        match &route.policy.upstream_tls {
            None => Ok(None),
            Some(s) => self.configured(route, s, protocol),
        }
    }

    fn configured<'a>(
        &'a self,
        route: &'a Route,
        s: &'a UpstreamTls,
        protocol: Protocol,
    ) -> Result<Option<&'a TlsClient>, &'a str> {
        if let Some(why) = &s.denied {
            return Err(why);
        }
        if !protocol.tls() {
            return Ok(None);
        }
        match self.by_route.get(&route.id) {
            Some(Ok(c)) => Ok(Some(c)),
            Some(Err(why)) => Err(why),
            None => Err("TLS to the upstream is not set up"),
        }
    }
}

/// Checks the upstream's certificate. Without anchors any certificate is accepted (the
/// handshake's signatures are still checked against it); with them it must chain to one,
/// through at most `depth` intermediate certificates (OpenSSL's meaning of the verify depth),
/// and be valid for the name dialled.
#[derive(Debug)]
struct Verifier {
    anchors: Option<(Vec<rustls::pki_types::TrustAnchor<'static>>, usize)>,
    /// Names one of which the certificate must carry, instead of the name dialled.
    sans: Arc<[SubjectAltName]>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn new(v: Option<&Verify>, provider: Arc<CryptoProvider>) -> Result<Verifier, String> {
        let anchors = match v {
            None => None,
            Some(v) => {
                let roots = v
                    .roots
                    .iter()
                    .map(|der| {
                        webpki::anchor_from_trusted_cert(&CertificateDer::from(&der[..]))
                            .map(|a| a.to_owned())
                            .map_err(|e| format!("ca.crt: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
                Some((roots, usize::from(v.depth)))
            }
        };
        let sans = v.map(|v| v.subject_alt_names.clone()).unwrap_or_else(|| Arc::new([]));
        Ok(Verifier {
            anchors,
            sans,
            provider,
        })
    }
}

/// Whether the certificate carries the name: a DNS name as webpki matches it, a URI exactly.
fn carries(cert: &webpki::EndEntityCert<'_>, der: &CertificateDer<'_>, san: &SubjectAltName) -> bool {
    match san {
        SubjectAltName::Dns(h) => {
            ServerName::try_from(h.as_ref()).is_ok_and(|n| cert.verify_is_valid_for_subject_name(&n).is_ok())
        }
        SubjectAltName::Uri(u) => x509_parser::parse_x509_certificate(der.as_ref())
            .ok()
            .and_then(|(_, x)| {
                x.subject_alternative_name()
                    .ok()
                    .flatten()
                    .map(|ext| ext.value.general_names.clone())
            })
            .is_some_and(|names| {
                names
                    .iter()
                    .any(|g| matches!(g, x509_parser::extensions::GeneralName::URI(v) if *v == u.as_ref()))
            }),
    }
}

fn pki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => CertificateError::UnknownIssuer.into(),
        E::CertNotValidForName(_) => CertificateError::NotValidForName.into(),
        E::CertExpired { .. } | E::InvalidCertValidity => CertificateError::Expired.into(),
        E::CertNotValidYet { .. } => CertificateError::NotValidYet.into(),
        E::BadDer | E::BadDerTime => CertificateError::BadEncoding.into(),
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature.into(),
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))).into(),
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some((roots, depth)) = &self.anchors else {
            return Ok(ServerCertVerified::assertion());
        };
        let depth = *depth;
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        let within_depth = |path: &webpki::VerifiedPath<'_>| {
            if path.intermediate_certificates().count() > depth {
                Err(webpki::Error::MaximumPathDepthExceeded)
            } else {
                Ok(())
            }
        };
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&within_depth),
        )
        .map_err(pki_error)?;
        if self.sans.is_empty() {
            cert.verify_is_valid_for_subject_name(name).map_err(pki_error)?;
        } else if !self.sans.iter().any(|san| carries(&cert, end_entity, san)) {
            return Err(CertificateError::NotValidForName.into());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
