//! TLS to a route's HTTPS and GRPCS upstreams (`proxy-ssl-*`), as plain data: certificates
//! and the client key as DER bytes; the data plane builds the rustls objects from them.

use std::sync::Arc;

use serde::Serialize;

/// DER bytes of one certificate or key.
pub type Der = Arc<[u8]>;

/// What a route's `proxy-ssl-*` annotations compiled to. Two routes with equal values may
/// share upstream connections; routes with different values never do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct UpstreamTls {
    /// `proxy-ssl-secret`, as `namespace/name` (`None`: `proxy-ssl-verify: on` without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Arc<str>>,
    /// The annotations cannot be honoured (Secret missing or unusable, verification asked
    /// without a CA): every request is answered 503, as ingress-nginx does for a denied
    /// location. The reason is in the diagnostics; the client never sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<Arc<str>>,
    /// `proxy-ssl-verify: on`: the upstream's certificate must chain to one of these CAs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
    /// `tls.crt`/`tls.key` of the Secret: presented when the upstream asks for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<ClientCert>,
    /// `proxy-ssl-name`: the name verified (and sent as SNI with `server_name`). `None`: the
    /// endpoint's address, and no SNI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    /// `proxy-ssl-server-name: on`.
    pub server_name: bool,
    /// `proxy-ssl-protocols`.
    pub protocols: Protocols,
    /// `proxy-ssl-ciphers`: the TLS 1.2 suites offered, in this order; `None`: all of them.
    /// As with OpenSSL's cipher list, TLS 1.3 suites are not affected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<Vec<Tls12Suite>>,
}

/// Verification of the upstream's certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Verify {
    /// The trust anchors (`ca.crt`), each a certificate that parsed as one.
    pub roots: Arc<[Der]>,
    /// `proxy-ssl-verify-depth`: the most intermediate certificates between the upstream's
    /// certificate and a trust anchor (OpenSSL's meaning of the verify depth).
    pub depth: u8,
    /// BackendTLSPolicy `subjectAltNames`: when given, the certificate must carry one of
    /// these instead of being valid for the name dialled.
    pub subject_alt_names: Arc<[SubjectAltName]>,
}

/// A name the upstream's certificate may carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum SubjectAltName {
    /// A DNS name (`*.` wildcards in the certificate match as usual).
    Dns(Arc<str>),
    /// A URI, compared exactly (`spiffe://...`).
    Uri(Arc<str>),
}

impl Verify {
    pub const DEFAULT_DEPTH: u8 = 1;
    /// OpenSSL's own default limit.
    pub const MAX_DEPTH: u8 = 100;
}

impl Serialize for Verify {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Verify", 2)?;
        st.serialize_field("cas", &self.roots.len())?;
        st.serialize_field("depth", &self.depth)?;
        st.end()
    }
}

/// The certificate chain and private key Portico presents to the upstream.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientCert {
    pub chain: Arc<[Der]>,
    pub key: PrivateKey,
}

/// Only the length of the chain goes to `/routes`; the key is never printed.
impl Serialize for ClientCert {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ClientCert", 1)?;
        st.serialize_field("certificates", &self.chain.len())?;
        st.end()
    }
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// A private key's DER encoding and its form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PrivateKey {
    pub form: KeyForm,
    pub der: Der,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyForm {
    Pkcs1,
    Pkcs8,
    Sec1,
}

/// TLS protocol versions allowed to the upstream (at least one is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Protocols {
    pub tls12: bool,
    pub tls13: bool,
}

impl Default for Protocols {
    fn default() -> Self {
        Self {
            tls12: true,
            tls13: true,
        }
    }
}

/// The TLS 1.2 cipher suites rustls offers, by their OpenSSL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Tls12Suite {
    #[serde(rename = "ECDHE-ECDSA-AES128-GCM-SHA256")]
    EcdheEcdsaAes128Gcm,
    #[serde(rename = "ECDHE-ECDSA-AES256-GCM-SHA384")]
    EcdheEcdsaAes256Gcm,
    #[serde(rename = "ECDHE-ECDSA-CHACHA20-POLY1305")]
    EcdheEcdsaChacha20,
    #[serde(rename = "ECDHE-RSA-AES128-GCM-SHA256")]
    EcdheRsaAes128Gcm,
    #[serde(rename = "ECDHE-RSA-AES256-GCM-SHA384")]
    EcdheRsaAes256Gcm,
    #[serde(rename = "ECDHE-RSA-CHACHA20-POLY1305")]
    EcdheRsaChacha20,
}

impl Tls12Suite {
    pub const ALL: [Tls12Suite; 6] = [
        Tls12Suite::EcdheEcdsaAes256Gcm,
        Tls12Suite::EcdheEcdsaAes128Gcm,
        Tls12Suite::EcdheEcdsaChacha20,
        Tls12Suite::EcdheRsaAes256Gcm,
        Tls12Suite::EcdheRsaAes128Gcm,
        Tls12Suite::EcdheRsaChacha20,
    ];

    /// The suite's OpenSSL name.
    pub fn openssl_name(self) -> &'static str {
        match self {
            Tls12Suite::EcdheEcdsaAes128Gcm => "ECDHE-ECDSA-AES128-GCM-SHA256",
            Tls12Suite::EcdheEcdsaAes256Gcm => "ECDHE-ECDSA-AES256-GCM-SHA384",
            Tls12Suite::EcdheEcdsaChacha20 => "ECDHE-ECDSA-CHACHA20-POLY1305",
            Tls12Suite::EcdheRsaAes128Gcm => "ECDHE-RSA-AES128-GCM-SHA256",
            Tls12Suite::EcdheRsaAes256Gcm => "ECDHE-RSA-AES256-GCM-SHA384",
            Tls12Suite::EcdheRsaChacha20 => "ECDHE-RSA-CHACHA20-POLY1305",
        }
    }
}
