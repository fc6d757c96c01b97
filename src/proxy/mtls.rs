//! Client certificates on the TLS listener: the handshake asks for one only when the SNI
//! name's host has an `auth-tls` policy, and what the client presented is verified once per
//! connection against that policy; the request step (`policy::mtls`) acts on the outcome.
//! Like nginx, the handshake never fails over a missing or bad client certificate: the
//! request is answered instead (400, or the error page), or passed on with the result.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use http::HeaderValue;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{Acceptor as HelloReader, ServerConnection};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use super::headers::Peer;
use super::live::Live;
use super::tls_live::LiveTls;
use crate::config::mtls::{CaBundle, ClientAuth};

/// Asks every client for a certificate and takes whatever chain comes, checking only that
/// the client holds its key (the CertificateVerify signature). The chain itself is verified
/// after the handshake, against the policy of the host the SNI name selected, so that a bad
/// certificate gets nginx's HTTP answer rather than a failed handshake.
#[derive(Debug)]
pub struct RequestClientCert {
    algorithms: WebPkiSupportedAlgorithms,
    /// The CA names the CertificateRequest carries.
    cas: Vec<DistinguishedName>,
}

impl RequestClientCert {
    pub fn new(algorithms: WebPkiSupportedAlgorithms, cas: Vec<DistinguishedName>) -> Arc<Self> {
        Arc::new(Self { algorithms, cas })
    }
}

/// The subjects of the CAs of `ca.crt`, in file order without repeats: what nginx's
/// `ssl_client_certificate` names in the CertificateRequest.
pub fn ca_names(ca: &CaBundle) -> Vec<DistinguishedName> {
    let mut out: Vec<DistinguishedName> = Vec::with_capacity(ca.anchors.len());
    for a in &ca.anchors {
        let name = DistinguishedName::in_sequence(a.subject.as_ref());
        if !out.iter().any(|n| n.as_ref() == name.as_ref()) {
            out.push(name);
        }
    }
    out
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// The policy's CA names (the acceptor picks the configuration by SNI name).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.cas
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The HTTPS listener's TLS acceptor: the plain configuration, or, when the ClientHello's SNI
/// names a host with a client-certificate policy, the one that asks for a certificate.
#[derive(Clone)]
pub struct Acceptor {
    /// The plain configuration and the one built with [`RequestClientCert`] as its verifier,
    /// for the live Config's `ssl-protocols`/`ssl-ciphers`.
    tls: Arc<LiveTls>,
    live: Arc<Live>,
    algorithms: WebPkiSupportedAlgorithms,
    /// The port of the socket it serves (0 until [`Acceptor::on_port`]): a Gateway port's
    /// client-certificate validation is looked up by it.
    port: u16,
}

impl Acceptor {
    pub fn new(tls: LiveTls, live: Arc<Live>) -> Self {
        let algorithms = tls
            .configs(&Default::default())
            .client_auth
            .crypto_provider()
            .signature_verification_algorithms;
        Self {
            tls: Arc::new(tls),
            live,
            algorithms,
            port: 0,
        }
    }

    /// This acceptor for the socket on `port`.
    pub fn on_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The handshake. Without any client-certificate policy or host TLS setting in the live
    /// Config it is the plain acceptor's; else the ClientHello is read first to pick the
    /// configuration.
    pub async fn accept<IO: AsyncRead + AsyncWrite + Unpin>(&self, io: IO) -> std::io::Result<TlsStream<IO>> {
        {
            let plane = self.live.load();
            // gwfront: a Gateway port that validates client certificates (out of line).
            if let Some(points) = &plane.config.gateway_listeners
                && let Some(v) = frontend::of(points, self.port)
            {
                drop(plane);
                return self.accept_validating(&v, io).await;
            }
            if plane.config.client_auth.is_empty() && plane.config.host_tls.is_empty() {
                let plain = self.tls.configs(&plane.config.global).plain.clone();
                drop(plane);
                return TlsAcceptor::from(plain).accept(io).await;
            }
        }
        let start = LazyConfigAcceptor::new(HelloReader::default(), io).await?;
        let config = {
            let plane = self.live.load();
            let hello = start.client_hello();
            let sni = hello.server_name();
            let configs = self.tls.for_sni(&plane.config, sni);
            let asking = sni.and_then(|sni| {
                let policy = plane.config.client_auth.resolve(sni)?;
                policy.requests_certificate().then(|| ca_names(&policy.ca))
            });
            match asking {
                Some(cas) => self.tls.asking(&configs, cas),
                None => configs.plain.clone(),
            }
        };
        start.into_stream(config).await
    }

    /// After the handshake: records on the connection what the request step needs (the SNI
    /// name's policy and the outcome of verifying the client's chain against it). Nothing
    /// is recorded while no host has a policy.
    pub fn inspect(&self, peer: &Peer, conn: &ServerConnection) {
        let plane = self.live.load();
        let store = &plane.config.client_auth;
        if store.is_empty() {
            return;
        }
        let sni = conn.server_name();
        let policy = sni.and_then(|s| store.resolve(s)).cloned();
        let outcome = match (&policy, conn.peer_certificates()) {
            (Some(p), Some(chain)) if p.requests_certificate() && !chain.is_empty() => {
                Outcome::of(p, chain, UnixTime::now(), &self.algorithms)
            }
            _ => Outcome::None,
        };
        let _ = peer.client_tls.set(ClientTls {
            sni: sni.is_some(),
            policy,
            outcome,
        });
    }
}

/// What a TLS connection presented, recorded after its handshake.
#[derive(Debug)]
pub struct ClientTls {
    /// The client sent an SNI name.
    pub sni: bool,
    /// The policy that name selected when the connection was made.
    pub policy: Option<Arc<ClientAuth>>,
    /// The client certificate checked against `policy`.
    pub outcome: Outcome,
}

/// A presented certificate, as the upstream headers carry it.
#[derive(Debug)]
pub struct Presented {
    /// `ssl-client-subject-dn` / `ssl-client-issuer-dn`: RFC 2253, as OpenSSL prints it.
    pub subject: HeaderValue,
    pub issuer: HeaderValue,
    /// `ssl-client-cert`: the PEM, URL-encoded (only when the policy passes it on).
    pub pem: Option<HeaderValue>,
}

/// Why a chain did not verify, in OpenSSL's words (what nginx puts after `FAILED:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub reason: &'static str,
    /// The failure is only that no trusted CA issued the chain (`optional_no_ca` lets it by).
    pub unknown_ca: bool,
}

#[derive(Debug)]
pub enum Outcome {
    /// No certificate (none asked for, or none sent).
    None,
    Success(Presented),
    Failed(Failure, Option<Presented>),
}

impl Outcome {
    fn of(auth: &ClientAuth, chain: &[CertificateDer<'_>], now: UnixTime, algs: &WebPkiSupportedAlgorithms) -> Self {
        let presented = present(&chain[0], auth.pass_certificate);
        match verify(&auth.ca, auth.depth, chain, now, algs) {
            Ok(()) => match presented {
                Some(p) => Outcome::Success(p),
                // webpki took a certificate x509-parser cannot read: not one to vouch for.
                None => Outcome::Failed(FAILURE_UNREADABLE, None),
            },
            Err(f) => Outcome::Failed(f, presented),
        }
    }
}

const FAILURE_UNREADABLE: Failure = Failure {
    reason: "unable to decode issuer public key",
    unknown_ca: false,
};

/// Verifies `chain` (end entity first, then what the client sent along) for client
/// authentication against `ca`, with OpenSSL's reading of the verify depth: at most `depth`
/// CA certificates between the end entity and the self-signed top of the chain.
pub fn verify(
    ca: &CaBundle,
    depth: u8,
    chain: &[CertificateDer<'_>],
    now: UnixTime,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<(), Failure> {
    let Some(ee) = chain.first() else {
        return Err(FAILURE_UNREADABLE);
    };
    let self_issued = is_self_issued(ee);
    let ee = webpki::EndEntityCert::try_from(ee).map_err(|e| failure(&e, self_issued))?;
    let crls: Vec<&webpki::CertRevocationList<'_>> = ca.crls.iter().map(|c| &**c).collect();
    // nginx's `ssl_crl` checks the whole chain and needs a CRL for each CA in it.
    let revocation = webpki::RevocationOptionsBuilder::new(&crls).ok().map(|b| {
        b.with_depth(webpki::RevocationCheckDepth::Chain)
            .with_status_policy(webpki::UnknownStatusPolicy::Deny)
            .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
            .build()
    });
    let within_depth = |path: &webpki::VerifiedPath<'_>| {
        if levels(ca, path) <= usize::from(depth) {
            Ok(())
        } else {
            Err(webpki::Error::MaximumPathDepthExceeded)
        }
    };
    ee.verify_for_usage(
        algs.all,
        &ca.anchors,
        &chain[1..],
        now,
        webpki::KeyUsage::client_auth(),
        revocation,
        Some(&within_depth),
    )
    .map(|_| ())
    .map_err(|e| failure(&e, self_issued))
}

/// CA certificates above the end entity: the intermediates of the path, then the CAs of
/// `ca.crt` from the anchor up to a self-issued one (OpenSSL builds its chain on up through
/// the trust store and counts them all).
fn levels(ca: &CaBundle, path: &webpki::VerifiedPath<'_>) -> usize {
    let mut n = path.intermediate_certificates().count();
    let Some(mut at) = ca.anchors.iter().position(|a| a == path.anchor()) else {
        return n;
    };
    for _ in 0..ca.names.len() {
        let (subject, issuer) = &ca.names[at];
        if subject == issuer {
            break;
        }
        match ca.names.iter().position(|(s, _)| s == issuer) {
            Some(up) => {
                n += 1;
                at = up;
            }
            None => break,
        }
    }
    n
}

fn is_self_issued(der: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(der.as_ref()).is_ok_and(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
}

/// webpki's verdict in the words of OpenSSL's `X509_verify_cert_error_string`.
fn failure(e: &webpki::Error, self_issued: bool) -> Failure {
    use webpki::Error as E;
    let (reason, unknown_ca) = match e {
        E::UnknownIssuer if self_issued => ("self-signed certificate", true),
        E::UnknownIssuer => ("unable to get local issuer certificate", true),
        E::CertExpired { .. } => ("certificate has expired", false),
        E::CertNotValidYet { .. } => ("certificate is not yet valid", false),
        E::CertRevoked => ("certificate revoked", false),
        E::UnknownRevocationStatus => ("unable to get certificate CRL", false),
        E::CrlExpired { .. } => ("CRL has expired", false),
        E::MaximumPathDepthExceeded | E::MaximumPathBuildCallsExceeded => ("certificate chain too long", false),
        E::InvalidSignatureForPublicKey => ("certificate signature failure", false),
        E::InvalidCrlSignatureForPublicKey => ("CRL signature failure", false),
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension | E::CaUsedAsEndEntity => {
            ("unsupported certificate purpose", false)
        }
        E::EndEntityUsedAsCa => ("invalid CA certificate", false),
        E::PathLenConstraintViolated => ("path length constraint exceeded", false),
        E::NameConstraintViolation => ("permitted subtree violation", false),
        E::CertDistrusted => ("certificate rejected", false),
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | E::SignatureAlgorithmMismatch => ("certificate signature failure", false),
        _ => ("unable to decode issuer public key", false),
    };
    Failure { reason, unknown_ca }
}

/// The subject and issuer of `der` and, when asked, its URL-encoded PEM; `None` when
/// x509-parser cannot read it.
fn present(der: &CertificateDer<'_>, with_pem: bool) -> Option<Presented> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let value = |s: String| HeaderValue::try_from(s).ok();
    Some(Presented {
        subject: value(rfc2253(cert.subject()))?,
        issuer: value(rfc2253(cert.issuer()))?,
        pem: if with_pem {
            value(escaped_pem(der.as_ref()))
        } else {
            None
        },
    })
}

/// A distinguished name as OpenSSL's `XN_FLAG_RFC2253` prints it (nginx's
/// `$ssl_client_s_dn`): last RDN first, `,` between RDNs and `+` inside one, short names,
/// RFC 2253 escapes, control and non-ASCII bytes as `\XX`, other value types as `#` and
/// their DER in hex.
pub fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name.iter_rdn().collect::<Vec<_>>().into_iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type().to_id_string();
            out.push_str(short_name(&oid).unwrap_or(&oid));
            out.push('=');
            let value = atv.attr_value();
            match text_of(value.tag().0, value.data) {
                Some(text) => escape_2253(&text, &mut out),
                None => {
                    out.push('#');
                    for b in der_of(value.tag().0, value.data) {
                        let _ = write!(out, "{b:02X}");
                    }
                }
            }
        }
    }
    out
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.17" => "postalCode",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.97" => "organizationIdentifier",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// The text of an ASN.1 string value, as UTF-8; `None` for other types.
fn text_of(tag: u32, data: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, VisibleString
        12 | 19 | 22 | 26 => Some(String::from_utf8_lossy(data).into_owned()),
        // T61String: OpenSSL reads it as Latin-1.
        20 => Some(data.iter().map(|&b| char::from(b)).collect()),
        // BMPString (UTF-16BE)
        30 => {
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| Some(u16::from_be_bytes([c[0], *c.get(1)?])))
                .collect::<Option<_>>()?;
            Some(String::from_utf16_lossy(&units))
        }
        // UniversalString (UTF-32BE)
        28 => data
            .chunks(4)
            .map(|c| {
                let b: [u8; 4] = c.try_into().ok()?;
                char::from_u32(u32::from_be_bytes(b))
            })
            .collect(),
        _ => None,
    }
}

/// Tag, length and contents of a universal-class primitive value.
fn der_of(tag: u32, data: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::try_from(tag).unwrap_or(0)];
    let len = data.len();
    if len < 0x80 {
        v.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        v.push(0x80 | bytes.len() as u8);
        v.extend(bytes);
    }
    v.extend_from_slice(data);
    v
}

fn escape_2253(text: &str, out: &mut String) {
    let bytes = text.as_bytes();
    let last = bytes.len().saturating_sub(1);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'#' if i == 0 => out.push_str("\\#"),
            b' ' if i == 0 || i == last => out.push_str("\\ "),
            0..0x20 | 0x7f.. => {
                let _ = write!(out, "\\{b:02X}");
            }
            _ => out.push(char::from(b)),
        }
    }
}

/// The certificate as PEM, then percent-encoded except for RFC 3986's unreserved
/// characters (nginx's `$ssl_client_escaped_cert`).
pub fn escaped_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or(""));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::with_capacity(pem.len() * 3 / 2);
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

mod frontend;

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject as _;

    use super::*;

    #[test]
    fn dn_escapes_as_openssl_rfc2253() {
        let mut s = String::new();
        escape_2253("Acme, Inc.", &mut s);
        assert_eq!(s, "Acme\\, Inc.");
        s.clear();
        escape_2253("#x y ", &mut s);
        assert_eq!(s, "\\#x y\\ ");
        s.clear();
        escape_2253("é\u{1}", &mut s);
        assert_eq!(s, "\\C3\\A9\\01");
        assert_eq!(der_of(19, b"ab"), [19, 2, b'a', b'b']);
        assert_eq!(der_of(4, &[0; 200])[..3], [4, 0x81, 200]);
    }

    #[test]
    fn rfc2253_of_the_test_ca() {
        let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.crt")).unwrap();
        let der = CertificateDer::pem_slice_iter(&pem).next().unwrap().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let dn = rfc2253(cert.subject());
        assert!(dn.starts_with("CN="), "{dn}");
    }

    #[test]
    fn pem_is_url_encoded_like_nginx() {
        let e = escaped_pem(&[0xfb, 0xff, 0x3e]);
        assert_eq!(
            e,
            "-----BEGIN%20CERTIFICATE-----%0A%2B%2F8%2B%0A-----END%20CERTIFICATE-----%0A"
        );
    }
}
