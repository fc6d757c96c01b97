//! A Gateway port's client-certificate validation (`spec.tls.frontend`) as plain data: the
//! CAs a client certificate must chain to and what happens without a valid one.

use std::sync::Arc;

use serde::Serialize;

use super::mtls::CaBundle;

/// `validation.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FrontendMode {
    /// The handshake fails without a certificate that verifies against the CAs.
    AllowValidOnly,
    /// A certificate is asked for, but connections without one, or with one that does not
    /// verify, are served all the same.
    AllowInsecureFallback,
}

/// The validation of one serving point (a Gateway port's target port).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FrontendValidation {
    /// The Gateway (`namespace/name`) and its port this is for.
    pub gateway: String,
    pub port: u16,
    pub mode: FrontendMode,
    /// The ConfigMaps the CAs come from (`namespace/name`).
    pub sources: Vec<String>,
    /// The CAs of all usable references, in reference order.
    #[serde(skip)]
    pub ca: Arc<CaBundle>,
}
