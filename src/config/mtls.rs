//! Client-certificate authentication (`auth-tls-*`) as plain data: per host, the trusted CAs,
//! CRLs and what to do with a certificate that is missing or does not verify.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, TrustAnchor};
use serde::Serialize;

/// `auth-tls-verify-client`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyClient {
    /// A certificate that verifies is required: anything else is answered 400.
    #[default]
    On,
    /// No certificate is asked for; upstreams are told `NONE`.
    Off,
    /// Without a certificate the request goes through (`NONE`); one that does not verify is 400.
    Optional,
    /// As `Optional`, but a certificate from an unknown CA goes through too (`FAILED:...`).
    OptionalNoCa,
}

impl VerifyClient {
    /// Whether the TLS handshake asks the client for a certificate.
    pub fn requests_certificate(self) -> bool {
        self != VerifyClient::Off
    }
}

/// The trusted CAs (`ca.crt`) and revocation lists (`ca.crl`) of an `auth-tls-secret`.
#[derive(Clone, Debug)]
pub struct CaBundle {
    /// The certificates of `ca.crt`, in file order.
    pub certs: Vec<CertificateDer<'static>>,
    /// One per certificate of `certs`: the certificate as a trust anchor.
    pub anchors: Vec<TrustAnchor<'static>>,
    /// One per certificate of `certs`: its DER-encoded (subject, issuer). OpenSSL counts the
    /// CAs of `ca.crt` above the one a chain ends at towards the verify depth; this lets the
    /// data plane do the same.
    pub names: Vec<(Vec<u8>, Vec<u8>)>,
    /// The CRLs of `ca.crl` as DER (what equality compares) and parsed.
    pub crl_der: Vec<Vec<u8>>,
    pub crls: Vec<Arc<webpki::CertRevocationList<'static>>>,
}

/// Bundles are equal when built from the same certificates and CRLs.
impl PartialEq for CaBundle {
    fn eq(&self, other: &Self) -> bool {
        self.certs == other.certs && self.crl_der == other.crl_der
    }
}
impl Eq for CaBundle {}

/// `auth-tls-match-cn`: a regex searched for in the subject DN (`CN=...,O=...`), as nginx's
/// `$ssl_client_s_dn ~ "CN=..."`; compares and shows as its source.
pub type MatchCn = super::pattern::Pattern;

/// `auth-tls-error-page`, as nginx's `error_page 495 496 = VALUE` treats the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPage {
    /// An http(s) URL, or `host[:port][/path]` without a scheme: a 302 with the value as the
    /// Location, as it is.
    Redirect(String),
    /// A path (and query) on the same host: nginx's internal redirect. The request is routed
    /// again to it as GET (HEAD stays HEAD) without its body, the certificate is not checked
    /// again, and that route's answer, with its status, is the client's.
    Path(String),
}

/// The client-certificate policy of one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAuth {
    /// The Ingress whose annotations these are (the oldest one on the host that has them).
    pub ingress: String,
    /// `auth-tls-secret` as `namespace/name`.
    pub secret: Arc<str>,
    /// The Secret cannot be used: every request to the host is answered 403, as
    /// ingress-nginx does for a server whose auth-tls configuration failed. The reason is in
    /// the diagnostics.
    pub denied: Option<Arc<str>>,
    pub verify: VerifyClient,
    /// `auth-tls-verify-depth`: how many CA certificates may stand between the client
    /// certificate and the top of its chain (OpenSSL's `verify_depth`).
    pub depth: u8,
    /// `auth-tls-pass-certificate-to-upstream`: send the PEM (URL-encoded) as `ssl-client-cert`.
    pub pass_certificate: bool,
    /// `auth-tls-error-page`: where certificate errors (not the CN check) go.
    pub error_page: Option<ErrorPage>,
    pub match_cn: Option<MatchCn>,
    pub ca: Arc<CaBundle>,
}

impl ClientAuth {
    pub const DEFAULT_DEPTH: u8 = 1;
    /// Larger `auth-tls-verify-depth` values act as this one. No chain is that long: webpki
    /// builds paths of at most 6 intermediates, and the CAs of `ca.crt` above the anchor would
    /// have to be some 250 in one line.
    pub const MAX_DEPTH: u8 = u8::MAX;

    /// Whether the handshake asks for a certificate.
    pub fn requests_certificate(&self) -> bool {
        self.denied.is_none() && self.verify.requests_certificate()
    }
}

/// What `/routes` shows: the settings, the Secret and how many CAs it holds.
impl Serialize for ClientAuth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ClientAuth", 9)?;
        st.serialize_field("ingress", &self.ingress)?;
        st.serialize_field("secret", &*self.secret)?;
        st.serialize_field("denied", &self.denied.is_some())?;
        st.serialize_field("verify", &self.verify)?;
        st.serialize_field("depth", &self.depth)?;
        st.serialize_field("pass_certificate", &self.pass_certificate)?;
        st.serialize_field("error_page", &self.error_page)?;
        st.serialize_field("match_cn", &self.match_cn.as_ref().map(|m| m.0.as_str()))?;
        st.serialize_field("cas", &self.ca.certs.len())?;
        st.end()
    }
}

/// Host → client-certificate policy, for the TLS handshake: the SNI name picks it as it picks
/// the certificate (exact name, then `*.` one label up).
pub type ClientAuthStore = super::sni::SniMap<Arc<ClientAuth>>;
