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
}

impl<T> ClientIo<T> {
    pub fn new(io: T, peer: Arc<Peer>, timeout: Duration) -> ClientIo<T> {
        ClientIo {
            io,
            peer,
            timeout,
            deadline: Deadline::new(deadline::after(Instant::now(), timeout)),
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

impl<T: AsyncRead + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Pending => self.poll_deadline(cx),
            ready => ready,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ClientIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
