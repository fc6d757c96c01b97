//! SSL passthrough: the SNI of a ClientHello read without terminating TLS (a strict, bounded
//! parser of client bytes), and the splice of a passthrough host's connection to a pod.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Backend;

/// The longest ClientHello looked at (the handshake message, without record headers). Hellos
/// with post-quantum key shares are about 1.8 KiB; 16 KiB is one full TLS record.
pub const MAX_HELLO: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not a TLS handshake record")]
    NotHandshake,
    #[error("malformed TLS record or ClientHello")]
    Malformed,
    #[error("ClientHello longer than {MAX_HELLO} bytes")]
    TooLong,
}

/// What the start of a TLS connection says. `Ok(None)`: more bytes needed;
/// `Ok(Some(sni))`: the ClientHello is complete, with its host name if it sent one
/// (lower-cased, one trailing dot dropped).
pub fn sni(buf: &[u8]) -> Result<Option<Option<String>>, Error> {
    let mut handshake: Vec<u8> = Vec::new();
    let mut pos = 0usize;
    loop {
        let Some(head) = buf.get(pos..pos + 5) else {
            return Ok(None);
        };
        // Content type handshake, and a 3.x record version (TLS 1.3 clients say 3.1).
        if head[0] != 22 {
            return Err(Error::NotHandshake);
        }
        if head[1] != 3 {
            return Err(Error::Malformed);
        }
        let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
        if len == 0 || len > 16384 {
            return Err(Error::Malformed);
        }
        let Some(fragment) = buf.get(pos + 5..pos + 5 + len) else {
            return Ok(None);
        };
        handshake.extend_from_slice(fragment);
        pos += 5 + len;
        if handshake.len() < 4 {
            continue;
        }
        if handshake[0] != 1 {
            return Err(Error::Malformed);
        }
        let msg_len = usize::from(handshake[1]) << 16 | usize::from(handshake[2]) << 8 | usize::from(handshake[3]);
        if msg_len > MAX_HELLO {
            return Err(Error::TooLong);
        }
        if let Some(body) = handshake.get(4..4 + msg_len) {
            return client_hello_sni(body).map(Some);
        }
    }
}

/// A cursor over client bytes: every read is checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.0.len() {
            return Err(Error::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<usize, Error> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u16(&mut self) -> Result<usize, Error> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A vector with a one-byte length.
    fn vec8(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u8()?;
        self.take(n)
    }

    /// A vector with a two-byte length.
    fn vec16(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// The `server_name` host name of a ClientHello body (RFC 8446 4.1.2, RFC 6066 3).
fn client_hello_sni(body: &[u8]) -> Result<Option<String>, Error> {
    let mut c = Cursor(body);
    c.take(2 + 32)?; // legacy_version, random
    let session_id = c.vec8()?;
    if session_id.len() > 32 {
        return Err(Error::Malformed);
    }
    let suites = c.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(Error::Malformed);
    }
    c.vec8()?; // legacy_compression_methods
    if c.0.is_empty() {
        return Ok(None);
    }
    let mut exts = Cursor(c.vec16()?);
    if !c.0.is_empty() {
        return Err(Error::Malformed);
    }
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut list = Cursor(data);
        let mut names = Cursor(list.vec16()?);
        if !list.0.is_empty() {
            return Err(Error::Malformed);
        }
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec16()?;
            if name_type != 0 {
                continue;
            }
            return host_name(name).map(Some);
        }
        return Ok(None);
    }
    Ok(None)
}

/// A DNS host name as SNI carries it: ASCII letters, digits, `-`, `_` and dots, at most
/// 253 bytes (a trailing dot dropped), lower-cased.
fn host_name(name: &[u8]) -> Result<String, Error> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty()
        || name.len() > 253
        || !name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Error::Malformed);
    }
    Ok(String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// Reads from `io` (after what `buf` already holds) until the ClientHello is complete, within
/// `timeout`. `Ok(Some(name))` / `Ok(None)`: the SNI, or none; everything read stays in `buf`.
/// A connection that is not TLS as this parser reads it gives `Err`: it is handed to rustls
/// unchanged, which answers it as any other bad handshake.
pub async fn read_sni<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Option<String>, ReadError> {
    let work = async {
        loop {
            match sni(buf) {
                Ok(Some(name)) => return Ok(name),
                Ok(None) => {}
                Err(e) => return Err(ReadError::Hello(e)),
            }
            let mut chunk = [0u8; 2048];
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
            // Record headers on top of the hello's own cap: a hello in 1-byte records is
            // malformed in spirit, and refused here.
            if buf.len() > MAX_HELLO + 1024 {
                return Err(ReadError::Hello(Error::TooLong));
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ReadError::Timeout)?
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Hello(Error),
    #[error("no complete ClientHello within the TLS handshake timeout")]
    Timeout,
    #[error("connection closed before a complete ClientHello")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Where passthrough connections start in a backend's endpoint list, so that they spread.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Connects to one of `backend`'s ready endpoints (the next ones on a failed connect, at most
/// three in all), sends what the client sent so far, and copies bytes both ways until either
/// side closes. Returns the endpoint address and the bytes copied (client → pod, pod → client).
pub async fn splice(
    mut client: TcpStream,
    hello: &[u8],
    backend: &Backend,
    connect_timeout: Duration,
) -> std::io::Result<(std::net::SocketAddr, u64, u64)> {
    let endpoints = backend.ready();
    if endpoints.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("Service {} has no ready endpoint", backend.service),
        ));
    }
    let start = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut last = None;
    for i in 0..endpoints.len().min(3) {
        let addr = endpoints[(start + i) % endpoints.len()].addr;
        match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(mut upstream)) => {
                let _ = upstream.set_nodelay(true);
                upstream.write_all(hello).await?;
                let (up, down) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
                return Ok((addr, up + hello.len() as u64, down));
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(std::io::ErrorKind::TimedOut.into()),
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls's client writes it, for `name` (or without SNI).
    fn hello(name: Option<&str>) -> Vec<u8> {
        use std::sync::Arc;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        cfg.enable_sni = name.is_some();
        let server = rustls::pki_types::ServerName::try_from(name.unwrap_or("ignored.invalid").to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn sni_of_a_real_client_hello() {
        let h = hello(Some("Pass.Example.COM"));
        assert_eq!(sni(&h), Ok(Some(Some("pass.example.com".into()))));
        for end in 0..h.len() {
            assert_eq!(sni(&h[..end]), Ok(None), "{end}");
        }
        assert_eq!(sni(&hello(None)), Ok(Some(None)));
    }

    #[test]
    fn a_hello_split_over_records() {
        let h = hello(Some("a.example"));
        let body = &h[5..];
        let mut split = Vec::new();
        for piece in body.chunks(100) {
            split.extend_from_slice(&[22, 3, 1]);
            split.extend_from_slice(&(piece.len() as u16).to_be_bytes());
            split.extend_from_slice(piece);
        }
        assert_eq!(sni(&split), Ok(Some(Some("a.example".into()))));
    }

    #[test]
    fn refusals() {
        assert_eq!(sni(b"GET / HTTP/1.1\r\n"), Err(Error::NotHandshake));
        assert_eq!(sni(&[22, 2, 0, 0, 1, 1]), Err(Error::Malformed));
        assert_eq!(sni(&[22, 3, 1, 0, 0]), Err(Error::Malformed));
        assert_eq!(sni(&[22, 3, 1, 0x40, 1]), Err(Error::Malformed));
        // Not a ClientHello (a ServerHello), and a hello claiming 16 MiB.
        assert_eq!(sni(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Err(Error::Malformed));
        assert_eq!(sni(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]), Err(Error::TooLong));
        // A complete record holding a ClientHello cut anywhere: always a decision, never a panic.
        let h = hello(Some("a.example"));
        let body = &h[9..];
        for end in 0..body.len() {
            let mut r = vec![22, 3, 1];
            r.extend_from_slice(&((end + 4) as u16).to_be_bytes());
            r.extend_from_slice(&[1, 0, (end >> 8) as u8, end as u8]);
            r.extend_from_slice(&body[..end]);
            assert_ne!(sni(&r), Ok(None), "{end}");
        }
        // Every byte of a real hello replaced by awkward values: no panic, and a name found
        // is a valid one.
        for i in 0..h.len() {
            for v in [0u8, 0xff, 0x01, 0x7f, b'A'] {
                let mut m = h.clone();
                m[i] = v;
                if let Ok(Some(Some(name))) = sni(&m) {
                    assert!(host_name(name.as_bytes()).is_ok(), "{name:?}");
                }
            }
        }
        assert_eq!(host_name(b"bad name"), Err(Error::Malformed));
        assert_eq!(host_name(b""), Err(Error::Malformed));
        assert_eq!(host_name(b"ok.example."), Ok("ok.example".into()));
    }
}
