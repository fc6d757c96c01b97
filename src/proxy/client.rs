//! Client connections: the deadline for a request head and for the keep-alive wait before it,
//! kept with one timer per connection (`Deadline`).
//!
//! The clock starts when a connection is accepted and again whenever its last request in
//! flight is done (the response sent, or the request abandoned). From then the client has
//! `--client-header-timeout` to deliver a complete request head; a client that trickles one
//! byte at a time is not given more. While a request is served (its body may be uploaded
//! slowly) and after a protocol upgrade, the clock does not run.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::deadline::{self, Deadline};
use super::headers::Peer;

/// What a connection's requests tell its reader.
#[derive(Debug, Default)]
pub struct Activity {
    /// Requests in flight (one at a time on HTTP/1, any number of streams on HTTP/2).
    serving: AtomicU32,
    /// A request finished since the reader last looked: the wait for the next head starts.
    finished: AtomicBool,
    /// The connection became a tunnel: no head will come again.
    tunnelled: AtomicBool,
    /// The reader waited while a request was served. hyper does not read again by itself
    /// after such a wait, so the last request to end wakes it to start the clock. The
    /// reader's waker is stored before `parked` is set.
    parked: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl Activity {
    pub fn tunnelled(&self) {
        self.tunnelled.store(true, Ordering::Relaxed);
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Held from a request's head until its response body is done or dropped.
#[derive(Debug)]
pub struct Serving(Arc<Peer>);

impl Serving {
    pub fn new(peer: Arc<Peer>) -> Serving {
        peer.activity.serving.fetch_add(1, Ordering::Relaxed);
        Serving(peer)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let a = &self.0.activity;
        a.finished.store(true, Ordering::Relaxed);
        // SeqCst with the reader's `parked` then `serving`: either it sees the count fall
        // (and `finished`), or this sees it parked and wakes it.
        if a.serving.fetch_sub(1, Ordering::SeqCst) == 1
            && a.parked.swap(false, Ordering::SeqCst)
            && let Some(w) = a.reader().as_ref()
        {
            w.wake_by_ref();
        }
    }
}

/// The client's stream, with the head deadline applied to its reads.
pub struct ClientIo<T> {
    io: T,
    peer: Arc<Peer>,
    timeout: Duration,
    deadline: Deadline,
    /// Reads still go to the peer's [`super::case::Tap`].
    tapping: bool,
    /// Writes go through the header-case writer.
    out: super::case::Out,
}

impl<T> ClientIo<T> {
    pub fn new(io: T, peer: Arc<Peer>, timeout: Duration) -> ClientIo<T> {
        ClientIo {
            io,
            peer,
            timeout,
            deadline: Deadline::new(deadline::after(Instant::now(), timeout)),
            tapping: true,
            out: Default::default(),
        }
    }

    /// Called when a read would wait: Pending while there is time, an error once the client
    /// has run out of it.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let a = &self.peer.activity;
        if a.tunnelled.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        if a.serving.load(Ordering::Acquire) > 0 {
            {
                let mut reader = a.reader();
                if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *reader = Some(cx.waker().clone());
                }
            }
            a.parked.store(true, Ordering::SeqCst);
            if a.serving.load(Ordering::SeqCst) > 0 {
                return Poll::Pending;
            }
        }
        if a.finished.load(Ordering::Relaxed) {
            a.finished.store(false, Ordering::Relaxed);
            self.deadline.set(deadline::after(Instant::now(), self.timeout));
        }
        self.deadline.poll_expired(cx).map(|()| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete request head within the client header timeout",
            ))
        })
    }
}

impl<T> ClientIo<T> {
    /// Hands what was read to the tap, until it stops (HTTP/2, a tunnel, out of step).
    #[inline(never)]
    fn tap(&mut self, read: &[u8]) {
        let mut tap = self.peer.case.tap.lock().unwrap_or_else(|e| e.into_inner());
        if self.peer.activity.tunnelled.load(Ordering::Relaxed) {
            tap.stop();
        }
        tap.read(read);
        self.tapping = !tap.off();
        if tap.h2() {
            self.out.stop();
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Pending => self.poll_deadline(cx),
            Poll::Ready(Ok(())) if self.tapping => {
                self.tap(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            ready => ready,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ClientIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.out
            .poll_write(&this.peer.case, Pin::new(&mut this.io), cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.out.poll_write(&this.peer.case, Pin::new(&mut this.io), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let idle = this.peer.activity.serving.load(Ordering::Acquire) == 0;
        this.out.flushed(&this.peer.case, idle);
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(500);

    /// A connection with the head deadline on the server side, and its client side.
    fn connection() -> (ClientIo<DuplexStream>, DuplexStream, Arc<Peer>) {
        let (client, server) = tokio::io::duplex(1024);
        let peer = Arc::new(Peer::new([192, 0, 2, 1].into(), 80, false));
        (ClientIo::new(server, peer.clone(), TIMEOUT), client, peer)
    }

    /// Reads until the deadline cuts the connection; returns when that was.
    async fn cut_after(io: &mut ClientIo<DuplexStream>, start: Instant) -> Duration {
        let mut buf = [0u8; 64];
        loop {
            match io.read(&mut buf).await {
                Ok(0) => panic!("closed, not timed out"),
                Ok(_) => continue,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
                    return start.elapsed();
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_cut_at_the_deadline() {
        let start = Instant::now();
        let (mut io, _client, _) = connection();
        assert_eq!(cut_after(&mut io, start).await, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_does_not_move_the_deadline() {
        let start = Instant::now();
        let (mut io, mut client, _) = connection();
        // One byte every 100 ms: the head would take 4 s.
        tokio::spawn(async move {
            for _ in 0..40 {
                if client.write_all(b"a").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        assert_eq!(cut_after(&mut io, start).await, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_stop_the_clock_and_the_next_head_gets_a_full_timeout() {
        let (mut io, mut client, peer) = connection();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        // A request longer than the deadline (a slow upstream, a slow upload).
        let serving = Serving::new(peer.clone());
        let mut read = Box::pin(async move {
            let r = io.read(&mut buf).await.map(|_| ());
            (r, Instant::now())
        });
        assert!(
            tokio::time::timeout(TIMEOUT * 4, &mut read).await.is_err(),
            "cut while a request was served"
        );
        // Done: from now the client has the whole timeout for its next head.
        let done = Instant::now();
        drop(serving);
        let (r, at) = read.await;
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(at - done, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_may_stay_quiet() {
        let (mut io, mut client, peer) = connection();
        peer.activity.tunnelled();
        let mut buf = [0u8; 2];
        assert!(tokio::time::timeout(TIMEOUT * 10, io.read(&mut buf)).await.is_err());
        client.write_all(b"hi").await.unwrap();
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
    }
}
