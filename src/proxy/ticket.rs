//! Sends a TLS 1.3 session ticket together with the connection's first response.
//!
//! rustls queues the ticket when the client's Finished arrives, and tokio-rustls writes it
//! out before it hands the connection over: a packet of its own, for which the client wakes
//! and reads once more before the response arrives. [`TicketHold`] sits under the TLS stream
//! and keeps back what the server writes after its handshake flight has gone out and the
//! client has answered, until [`TicketHold::release`] (called once the handshake is done) and
//! the next write, which then carries both in one `writev`. Clients do not wait for tickets:
//! with HTTP/1.1 the first response takes it along; with HTTP/2 the server's SETTINGS do.
//!
//! What is held is recognised by the TLS record layer, not guessed: in TLS 1.3 the server's
//! first flight ends with encrypted records (type 23), and after it the server writes nothing
//! before the client's Finished arrives, and then only the tickets (or a fatal alert). TLS 1.2
//! sends no type-23 record before the handshake ends, so nothing is held there. A flight that
//! went out only in part is never held back, since only a write after a fully taken one and
//! after a read from the client qualifies.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// TLS record content type of encrypted records in TLS 1.3 (`application_data`).
const ENCRYPTED: u8 = 23;
/// At most this much is held; beyond it, writes go straight out (a few tickets are < 1 KiB).
const MAX_HELD: usize = 16 * 1024;

#[derive(Debug)]
pub struct TicketHold<T> {
    io: T,
    held: Vec<u8>,
    handshake: Option<Handshake>,
}

/// What the handshake has sent and read so far.
#[derive(Debug, Default)]
struct Handshake {
    /// An encrypted record has gone out (TLS 1.3's flight after ServerHello).
    encrypted_sent: bool,
    /// The client sent something after that.
    read_since: bool,
    /// The last write took every byte offered, so no part of a flight is waiting.
    drained: bool,
    records: Records,
}

impl<T> TicketHold<T> {
    pub fn new(io: T) -> Self {
        TicketHold {
            io,
            held: Vec::new(),
            handshake: Some(Handshake {
                drained: true,
                ..Handshake::default()
            }),
        }
    }

    /// The handshake is over: what was held leaves with the next write (or the shutdown),
    /// and nothing more is held.
    pub fn release(&mut self) {
        self.handshake = None;
    }
}

impl<T: AsyncWrite + Unpin> TicketHold<T> {
    /// Writes out what is held; Ready once nothing is left.
    fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        self.held = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TicketHold<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.io).poll_read(cx, buf));
        if let Some(hs) = &mut self.handshake
            && hs.encrypted_sent
            && buf.filled().len() > before
        {
            hs.read_since = true;
        }
        Poll::Ready(result)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TicketHold<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let offered: usize = bufs.iter().map(|b| b.len()).sum();
        if let Some(hs) = &this.handshake {
            let first = bufs.iter().find_map(|b| b.first().copied());
            let after_flight = hs.encrypted_sent && hs.read_since && hs.drained && hs.records.at_boundary();
            let hold = !this.held.is_empty() || (after_flight && first == Some(ENCRYPTED));
            if hold && this.held.len() + offered <= MAX_HELD {
                for b in bufs {
                    this.held.extend_from_slice(b);
                }
                return Poll::Ready(Ok(offered));
            }
            ready!(this.poll_write_held(cx))?;
            let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
            if let Some(hs) = &mut this.handshake {
                hs.drained = n == offered;
                let mut left = n;
                for b in bufs {
                    let take = left.min(b.len());
                    hs.encrypted_sent |= hs.records.feed(&b[..take]);
                    left -= take;
                }
            }
            return Poll::Ready(Ok(n));
        }
        if this.held.is_empty() {
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        }
        // The held records and the first data in one write.
        loop {
            let mut slices = Vec::with_capacity(bufs.len() + 1);
            slices.push(IoSlice::new(&this.held));
            slices.extend(bufs.iter().map(|b| IoSlice::new(b)));
            let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n < this.held.len() {
                this.held.drain(..n);
                continue;
            }
            let data = n - this.held.len();
            this.held = Vec::new();
            if data > 0 || offered == 0 {
                return Poll::Ready(Ok(data));
            }
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    /// Does not push out what is held: HTTP servers flush after every read, and the point is
    /// that the held records wait for the next data.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_held(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Follows TLS record boundaries through the bytes written.
#[derive(Debug, Default)]
struct Records {
    /// Header bytes of the current record seen so far (0..5).
    header: [u8; 5],
    header_len: usize,
    /// Body bytes of the current record still to come.
    body_left: usize,
}

impl Records {
    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.body_left == 0
    }

    /// Takes the next bytes written; true when an encrypted record began among them.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut encrypted = false;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let take = self.body_left.min(bytes.len());
                self.body_left -= take;
                bytes = &bytes[take..];
                continue;
            }
            let take = (5 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len == 5 {
                encrypted |= self.header[0] == ENCRYPTED;
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.header_len = 0;
            }
        }
        encrypted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, len: usize) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(len as u16).to_be_bytes());
        r.resize(5 + len, 0xaa);
        r
    }

    #[test]
    fn records_follow_boundaries_across_writes() {
        let mut flight = record(22, 90);
        flight.extend(record(20, 1));
        flight.extend(record(ENCRYPTED, 300));
        let mut r = Records::default();
        assert!(!r.feed(&flight[..3]));
        assert!(!r.at_boundary());
        assert!(!r.feed(&flight[3..101]));
        assert!(r.feed(&flight[101..110]));
        assert!(!r.at_boundary());
        assert!(!r.feed(&flight[110..]));
        assert!(r.at_boundary());
    }

    #[test]
    fn plaintext_records_are_not_encrypted() {
        let mut r = Records::default();
        let mut tls12 = record(22, 4000);
        tls12.extend(record(20, 1));
        tls12.extend(record(22, 40));
        assert!(!r.feed(&tls12));
        assert!(r.at_boundary());
    }
}
