//! Gateway frontend client-certificate validation in the handshake: on a socket whose
//! serving point has a [`FrontendValidation`], `AllowValidOnly` takes only clients whose
//! certificate verifies against the CAs (the handshake fails otherwise, and a session
//! resumed from a handshake that did not verify them is dropped), while
//! `AllowInsecureFallback` asks for a certificate naming the CAs and takes any answer.

use std::sync::Arc;

use rustls::server::Acceptor as HelloReader;
use rustls_pki_types::UnixTime;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use super::{Acceptor, ca_names, verify};
use crate::config::frontend_tls::{FrontendMode, FrontendValidation};
use crate::config::listeners::Points;
use crate::config::mtls::ClientAuth;

/// The validation of the serving point on `port`, if it has one.
#[inline]
pub(super) fn of(points: &Points, port: u16) -> Option<Arc<FrontendValidation>> {
    points.point(port, false, true)?.frontend.clone()
}

impl Acceptor {
    /// The handshake on a port that validates client certificates.
    #[inline(never)]
    pub(super) async fn accept_validating<IO: AsyncRead + AsyncWrite + Unpin>(
        &self,
        v: &FrontendValidation,
        io: IO,
    ) -> std::io::Result<TlsStream<IO>> {
        let start = LazyConfigAcceptor::new(HelloReader::default(), io).await?;
        let config = {
            let plane = self.live.load();
            let configs = self.tls.for_sni(&plane.config, start.client_hello().server_name());
            match v.mode {
                FrontendMode::AllowInsecureFallback => Some(self.tls.asking(&configs, ca_names(&v.ca))),
                FrontendMode::AllowValidOnly => self.tls.validating(&configs, &v.ca),
            }
        };
        let Some(config) = config else {
            return Err(refused("no TLS configuration can validate these CAs"));
        };
        let stream = start.into_stream(config).await?;
        if v.mode == FrontendMode::AllowValidOnly {
            // A resumed session skips the certificate: it must have been verified against
            // these CAs when it was made (sessions are shared by every port and host).
            let chain = stream.get_ref().1.peer_certificates().unwrap_or_default();
            if chain.is_empty()
                || verify(&v.ca, ClientAuth::MAX_DEPTH, chain, UnixTime::now(), &self.algorithms).is_err()
            {
                return Err(refused("no client certificate that verifies"));
            }
        }
        Ok(stream)
    }
}

fn refused(why: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, why)
}
