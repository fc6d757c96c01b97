//! `ssl-ciphers` and `ssl-prefer-server-ciphers` of one host (nginx's `server`), which the
//! HTTPS listener applies to handshakes whose SNI name selects the host.

use std::sync::Arc;

use serde::Serialize;

/// A host's own TLS settings; what is `None` keeps the listener's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostTls {
    /// `ssl-ciphers`: an OpenSSL cipher list, checked by `tls_options::parse_ciphers`.
    pub ciphers: Option<String>,
    /// `ssl-prefer-server-ciphers`.
    pub prefer_server_ciphers: Option<bool>,
}

/// Host → its own TLS settings.
pub type HostTlsStore = super::sni::SniMap<Arc<HostTls>>;
