//! Portico's HTTP/1.1 client: the one send path for HTTP/1.1 upstreams, plain and TLS, with
//! and without request bodies, and for protocol upgrades. The request is written and the
//! response head read on the request's own task, with no connection task and no channels
//! between them, and the connection goes back to its endpoint's pool when the response body
//! ends. A request body is streamed as it comes (Content-Length as the client declared it,
//! else chunked), while the response is read: an upstream that answers before taking the
//! whole body (413, 401) is answered from at once.
//!
//! Parsing is strict: httparse for the head (no obs-fold, no space before the colon), one
//! Content-Length value, no transfer coding but `chunked` (as nginx), bounded head, chunk-size
//! line and trailer sizes; trailers are filtered like any response field. Generic over the
//! connection's I/O, so tests drive it with scripted peers.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::{Body as HttpBody, Frame};
use smallvec::SmallVec;

use super::BoxError;
use crate::config::global::UpstreamReuse;
use crate::proxy::case::{self, Names};
use crate::proxy::deadline::{self, Deadline};
use crate::proxy::headers::{Forwarded, is_trailer_allowed};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Largest response head accepted from an upstream.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response header fields accepted from an upstream (and in trailers).
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Read granularity.
const READ_CHUNK: usize = 16 * 1024;
/// `written` of a request head once it is written and flushed.
const FLUSHED: usize = usize::MAX;

/// A plain or TLS connection to an upstream.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        }
    }
}

/// What the client needs of a connection besides reading and writing.
pub trait Conn: AsyncRead + AsyncWrite + Unpin {
    /// Whether the connection has become readable while idle, as far as the reactor has seen
    /// (asks the kernel nothing): the upstream closed it or sent bytes nobody asked for.
    fn readable(&self) -> bool;
}

impl Conn for Io {
    fn readable(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.tcp().poll_read_ready(&mut cx).is_ready()
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One upstream connection and its read buffer.
pub struct H1<T = Io> {
    io: T,
    buf: BytesMut,
    /// Scratch space for request heads, kept with the connection.
    head: Vec<u8>,
    /// Whether an exchange has completed on it before (it came from the pool).
    pub reused: bool,
    /// Exchanges completed on it (`upstream-keepalive-requests`).
    pub served: u32,
    /// When it was opened (`upstream-keepalive-time`).
    pub born: Instant,
    /// The deadline of the exchange under way, one timer for the connection's life.
    deadline: Deadline,
    /// The endpoint's pool it goes back to, and the `upstream-keepalive-*` limits it was
    /// taken under: kept here rather than in the response body that returns it (moved from
    /// function to function on its way to the client, that body is better small).
    pub(super) pool: super::Pool,
    pub(super) reuse: UpstreamReuse,
}

/// How a request body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sending {
    /// No body.
    None,
    /// Exactly this many bytes, as the request's Content-Length says.
    Length(u64),
    /// Chunked (the client declared no length): the head gets `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request as the client writes it.
pub struct Request<'a> {
    pub method: &'a Method,
    /// The request-target, origin-form.
    pub target: &'a str,
    /// The fields to forward (hop-by-hop ones already removed, Content-Length only with
    /// [`Sending::Length`]).
    pub headers: &'a HeaderMap,
    /// The forwarding fields, written after `headers`' (replacing any of the same name).
    pub extra: &'a Forwarded<'a>,
    pub body: Sending,
    /// The names as the client spelled them, when not all in lower case.
    pub names: Option<&'a Names>,
    /// `proxy-http-version: "1.0"`: an `HTTP/1.0` request line and, unless the request
    /// names its own Connection (an upgrade), `Connection: close`. Never with
    /// [`Sending::Chunked`]: HTTP/1.0 has no chunked coding.
    pub http10: bool,
}

/// The time limits of one exchange.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From the end of the request to the complete response head.
    pub response: Duration,
    /// The longest the upstream may hold back the request body (not take any of it).
    pub send: Duration,
}

/// How an exchange failed, and whether the request may be sent again.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kept-alive connection closed before any byte of a response: the upstream most
    /// likely closed it while it was idle. `resend`: nothing it could have acted on reached
    /// it (an idempotent request, or one whose body it never got), so the request may go
    /// again on a fresh connection.
    #[error("the upstream closed a kept-alive connection as the request went out")]
    Closed { resend: bool },
    #[error("no response head within {0:?}")]
    Timeout(Duration),
    #[error("the upstream took no part of the request body for {0:?}")]
    SendTimeout(Duration),
    /// The client's body failed: the client went away, or the body passed its limit.
    #[error("request body: {0}")]
    Body(BoxError),
    #[error("writing the request: {0}")]
    Write(io::Error),
    #[error("reading the response: {0}")]
    Read(io::Error),
    #[error("upstream closed the connection before a full response head")]
    Eof,
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Whether the request may be sent again on a fresh connection to the same endpoint.
    pub fn resendable(&self) -> bool {
        matches!(self, Error::Closed { resend: true })
    }
}

/// How the response body is delimited (RFC 9112, 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD, 204, 304.
    Empty,
    /// Content-Length bytes left.
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    Close,
    /// Read to its end.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Bytes of chunk data left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer fields up to an empty line.
    Trailers,
}

/// A response head from upstream.
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection may carry another request once the body is read.
    pub keep_alive: bool,
    /// The forwarded names as the upstream spelled them, when not all in lower case.
    pub names: Option<Names>,
    /// The head has a Server field (found while the fields are copied: asking the map
    /// afterwards costs a hash lookup).
    pub server: bool,
}

const CRLF: Bytes = Bytes::from_static(b"\r\n");
const LAST_CHUNK: Bytes = Bytes::from_static(b"0\r\n\r\n");

impl<T: Conn> H1<T> {
    pub fn new(io: T) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            head: Vec::new(),
            reused: false,
            served: 0,
            born: Instant::now(),
            deadline: Deadline::new(Instant::now()),
            pool: super::Pool::Plain,
            reuse: UpstreamReuse::default(),
        }
    }

    /// The connection and the bytes read past the last response head: what a tunnel
    /// continues with after `101 Switching Protocols`.
    pub fn into_parts(self) -> (T, BytesMut) {
        (self.io, self.buf)
    }

    /// Gives back the read buffer (when it holds nothing) and the head scratch space of a
    /// connection waiting in the pool: the next exchange takes new ones. What a burst opened
    /// would otherwise hold 16 KiB each for as long as it stays pooled.
    pub fn release_buffers(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        self.head = Vec::new();
    }

    /// Whether this idle connection can no longer carry a request (see [`Conn::readable`]).
    /// Reading a response to its end leaves no readiness behind (the last read is short), so
    /// a healthy idle connection is not readable.
    pub fn peer_closed(&self) -> bool {
        self.io.readable()
    }

    /// Writes a request, its body streamed from `body` when it has one, and reads the
    /// response head. `started`: when the exchange began, for a request without body.
    pub async fn exchange<B>(
        &mut self,
        req: &Request<'_>,
        body: Option<&mut B>,
        limits: Limits,
        started: Instant,
    ) -> Result<Head, Error>
    where
        B: HttpBody<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        // Each response is read from the buffer's start once nothing holds the previous
        // ones, instead of further on: the same cache lines serve every exchange.
        if self.buf.is_empty() {
            let _ = self.buf.try_reclaim(READ_CHUNK);
        }
        encode_head(&mut self.head, req);
        let head_only = *req.method == Method::HEAD;
        match body {
            Some(body) if req.body != Sending::None => {
                let resend = is_idempotent(req.method);
                self.send_streaming(req.body, body, head_only, limits, resend).await
            }
            _ => {
                self.deadline.set(deadline::after(started, limits.response));
                let resend = is_idempotent(req.method);
                let (mut written, mut received) = (0, false);
                // One poll function for the write and the read: no nested futures to move
                // the head through on the path most requests take.
                std::future::poll_fn(|cx| {
                    self.poll_bodiless(cx, &mut written, &mut received, head_only, limits.response, resend)
                })
                .await
            }
        }
    }

    /// A request without body: writes the head (until `written` is [`FLUSHED`]) and reads
    /// the response head, under the deadline set. `resend`: whether a closed kept-alive
    /// connection may have the request sent again.
    #[inline(always)]
    fn poll_bodiless(
        &mut self,
        cx: &mut Context<'_>,
        written: &mut usize,
        received: &mut bool,
        head_only: bool,
        limit: Duration,
        resend: bool,
    ) -> Poll<Result<Head, Error>> {
        while *written != FLUSHED {
            let progress = if *written < self.head.len() {
                Pin::new(&mut self.io).poll_write(cx, &self.head[*written..])
            } else {
                Pin::new(&mut self.io).poll_flush(cx).map_ok(|()| usize::MAX)
            };
            let failed = match progress {
                Poll::Ready(Ok(0)) => io::ErrorKind::WriteZero.into(),
                Poll::Ready(Ok(usize::MAX)) => {
                    *written = FLUSHED;
                    continue;
                }
                Poll::Ready(Ok(n)) => {
                    *written += n;
                    continue;
                }
                Poll::Ready(Err(e)) => e,
                Poll::Pending => match self.deadline.poll_expired(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => timed_out(),
                },
            };
            return Poll::Ready(Err(match failed {
                e if e.kind() == io::ErrorKind::TimedOut => Error::Timeout(limit),
                e if self.reused && early_close(&e) => Error::Closed { resend },
                e => Error::Write(e),
            }));
        }
        loop {
            if !self.buf.is_empty() {
                *received = true;
                match self.take_head(head_only) {
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            let read = match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) if self.reused && !*received => return Poll::Ready(Err(Error::Closed { resend })),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Error::Eof)),
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => e,
                Poll::Pending => match self.deadline.poll_expired(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => timed_out(),
                },
            };
            return Poll::Ready(Err(match read {
                e if e.kind() == io::ErrorKind::TimedOut => Error::Timeout(limit),
                e if self.reused && !*received && early_close(&e) => Error::Closed { resend },
                e => Error::Read(e),
            }));
        }
    }

    /// The final response head at the start of the buffer, informational ones (100
    /// Continue, 103 Early Hints) skipped; `None` when more bytes are needed.
    #[inline(always)]
    fn take_head(&mut self, head_only: bool) -> Result<Option<Head>, Error> {
        loop {
            match parse_head(&mut self.buf, head_only).map_err(Error::Invalid)? {
                Some(head) if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS => {}
                Some(head) => return Ok(Some(head)),
                None if self.buf.len() >= MAX_HEAD_BYTES => {
                    return Err(Error::Invalid(format!(
                        "response head larger than {MAX_HEAD_BYTES} bytes"
                    )));
                }
                None => return Ok(None),
            }
        }
    }

    /// Writes the head and streams the body while reading: the response may come before
    /// the body is done, and then the rest of the body is not sent (nor the connection
    /// reused). The send limit runs while the upstream holds back what is ready to go; the
    /// response limit from the end of the request.
    async fn send_streaming<B>(
        &mut self,
        sending: Sending,
        body: &mut B,
        head_only: bool,
        limits: Limits,
        idempotent: bool,
    ) -> Result<Head, Error>
    where
        B: HttpBody<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let mut queue: VecDeque<Bytes> = VecDeque::with_capacity(4);
        queue.push_back(Bytes::copy_from_slice(&self.head));
        let mut left = match sending {
            Sending::Length(n) => n,
            _ => 0,
        };
        let chunked = sending == Sending::Chunked;
        let (mut body_done, mut body_started, mut sent, mut received) = (false, false, false, false);
        let mut write_err: Option<io::Error> = None;
        self.deadline.set(deadline::after(Instant::now(), limits.send));
        std::future::poll_fn(|cx| {
            loop {
                let mut moved = false;
                let mut socket_full = false;
                if write_err.is_none() && !sent {
                    if let Some(front) = queue.front_mut() {
                        match Pin::new(&mut self.io).poll_write(cx, front) {
                            Poll::Ready(Ok(0)) => write_err = Some(io::ErrorKind::WriteZero.into()),
                            Poll::Ready(Ok(n)) => {
                                front.advance(n);
                                if front.is_empty() {
                                    queue.pop_front();
                                }
                                self.deadline.set(deadline::after(Instant::now(), limits.send));
                                moved = true;
                            }
                            Poll::Ready(Err(e)) => write_err = Some(e),
                            Poll::Pending => socket_full = true,
                        }
                    } else if !body_done {
                        match Pin::new(&mut *body).poll_frame(cx) {
                            Poll::Ready(Some(Ok(frame))) => {
                                body_started = true;
                                moved = true;
                                match frame.into_data() {
                                    Ok(data) if data.is_empty() => {}
                                    Ok(data) if chunked => {
                                        queue.push_back(Bytes::from(format!("{:x}\r\n", data.len())));
                                        queue.push_back(data);
                                        queue.push_back(CRLF);
                                    }
                                    Ok(data) => {
                                        let n = data.len() as u64;
                                        if n > left {
                                            let e = "request body longer than its Content-Length";
                                            return Poll::Ready(Err(Error::Body(e.into())));
                                        }
                                        left -= n;
                                        queue.push_back(data);
                                    }
                                    Err(frame) => {
                                        if let (true, Ok(trailers)) = (chunked, frame.into_trailers()) {
                                            queue.push_back(encode_trailers(&trailers));
                                            body_done = true;
                                        }
                                    }
                                }
                            }
                            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(Error::Body(e.into()))),
                            Poll::Ready(None) if !body_done => {
                                body_done = true;
                                moved = true;
                                if chunked {
                                    queue.push_back(LAST_CHUNK);
                                } else if left > 0 {
                                    let e = "request body shorter than its Content-Length";
                                    return Poll::Ready(Err(Error::Body(e.into())));
                                }
                            }
                            Poll::Ready(None) => {}
                            // The client's turn: no limit runs while Portico waits for it.
                            Poll::Pending => {}
                        }
                    } else {
                        match Pin::new(&mut self.io).poll_flush(cx) {
                            Poll::Ready(Ok(())) => {
                                sent = true;
                                self.deadline.set(deadline::after(Instant::now(), limits.response));
                                moved = true;
                            }
                            Poll::Ready(Err(e)) => write_err = Some(e),
                            Poll::Pending => socket_full = true,
                        }
                    }
                    if write_err.is_some() {
                        // What the upstream said before it stopped reading may still come.
                        self.deadline.set(deadline::after(Instant::now(), limits.response));
                    }
                }
                // Whatever the upstream has sent so far: an early answer, or its close.
                match self.poll_fill(cx) {
                    Poll::Ready(Ok(0)) => {
                        let closed = self.reused && !received;
                        return Poll::Ready(Err(match write_err.take() {
                            _ if closed => Error::Closed {
                                resend: idempotent || !body_started,
                            },
                            Some(e) => Error::Write(e),
                            None => Error::Eof,
                        }));
                    }
                    Poll::Ready(Ok(_)) => {
                        received = true;
                        if let Some(mut head) = self.take_head(head_only)? {
                            // An answer before the whole request: the connection is mid-message.
                            if !sent {
                                head.keep_alive = false;
                            }
                            return Poll::Ready(Ok(head));
                        }
                        moved = true;
                    }
                    Poll::Ready(Err(e)) if self.reused && !received && early_close(&e) => {
                        return Poll::Ready(Err(Error::Closed {
                            resend: idempotent || !body_started,
                        }));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Read(e))),
                    Poll::Pending => {}
                }
                if moved {
                    continue;
                }
                // Nothing moved: wait, under the limit that applies now.
                if (socket_full || sent || write_err.is_some()) && self.deadline.poll_expired(cx).is_ready() {
                    return Poll::Ready(Err(if socket_full && write_err.is_none() {
                        Error::SendTimeout(limits.send)
                    } else {
                        Error::Timeout(limits.response)
                    }));
                }
                return Poll::Pending;
            }
        })
        .await
    }

    /// Reads more into the buffer; `Ok(0)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// The next piece of a response body: a data frame, trailers, or the end (`None`).
    /// `framing` advances as the body is read.
    pub fn poll_body(
        &mut self,
        framing: &mut Framing,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Frame<Bytes>>, String>> {
        loop {
            match decode(framing, &mut self.buf)? {
                Step::Frame(f) => return Poll::Ready(Ok(Some(f))),
                Step::End => return Poll::Ready(Ok(None)),
                Step::More => {}
            }
            match self.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(format!("reading the response body: {e}"))),
                Poll::Ready(Ok(0)) if *framing == Framing::Close => {
                    *framing = Framing::Done;
                    return Poll::Ready(Ok(None));
                }
                Poll::Ready(Ok(0)) => return Poll::Ready(Err("upstream closed the connection mid-body".into())),
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    /// Whether the connection can go back to the pool: nothing unread left behind.
    pub fn clean(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Methods whose repetition has the effect of one request (RFC 9110, 9.2.2).
pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn early_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// The last chunk and a trailer section.
fn encode_trailers(trailers: &HeaderMap) -> Bytes {
    let mut out = b"0\r\n".to_vec();
    for (name, value) in trailers.iter().filter(|(n, _)| is_trailer_allowed(n)) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// `METHOD target HTTP/1.1`, the fields (those of `headers` that `extra` does not replace,
/// then `extra`'s), an empty line. Header names and values cannot hold CR or LF (the http
/// crate refuses them), so no field can smuggle in another.
pub fn encode_head(out: &mut Vec<u8>, req: &Request<'_>) {
    let Request {
        method,
        target,
        headers,
        extra,
        body,
        names,
        http10,
    } = req;
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(if *http10 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
    // An HTTP/2 client may send each cookie as a field of its own; HTTP/1.1 takes one Cookie
    // field, the values joined with "; " (RFC 9113, 8.2.3). A name's values come together.
    let mut cookie_line = false;
    let mut speller = names.map(Names::speller);
    for (name, value) in headers.iter().filter(|(n, _)| !extra.replaces(n)) {
        let cookie = name == header::COOKIE;
        if cookie && cookie_line {
            out.truncate(out.len() - 2);
            out.extend_from_slice(b"; ");
        } else {
            match &mut speller {
                None => out.extend_from_slice(name.as_str().as_bytes()),
                Some(s) => s.spell_into(name, out),
            }
            out.extend_from_slice(b": ");
        }
        cookie_line = cookie;
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (start, value) in extra.lines() {
        out.extend_from_slice(start);
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if *http10 {
        // No keep-alive, as nginx's `proxy_http_version 1.0`; the connection is never pooled.
        if !headers.contains_key(header::CONNECTION) {
            out.extend_from_slice(b"connection: close\r\n");
        }
    } else if *body == Sending::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Trailer fields as a header map, without those a trailer may not carry.
fn fields(raw: &[httparse::Header<'_>]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(raw.len());
    for h in raw {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| format!("invalid header name {:?}", h.name))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| format!("invalid value of header {}", h.name))?;
        if is_trailer_allowed(&name) {
            map.append(name, value);
        }
    }
    Ok(map)
}

/// What a response field means to the proxy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connection,
    /// Hop-by-hop, but a 101 keeps it: it names the protocol switched to.
    Upgrade,
    TransferEncoding,
    ContentLength,
    /// Not forwarded (RFC 9110, 7.6.1). `Trailer` is not one: it is end to end, announcing
    /// the trailer fields, which hyper's server then sends.
    HopByHop,
    /// A common end-to-end field, named without `HeaderName`'s general parser.
    Common(&'static HeaderName),
    Other,
}

/// The end-to-end fields most responses carry.
static COMMON: [(&str, HeaderName); 16] = [
    ("age", header::AGE),
    ("via", header::VIA),
    ("date", header::DATE),
    ("etag", header::ETAG),
    ("vary", header::VARY),
    ("link", header::LINK),
    ("server", header::SERVER),
    ("expires", header::EXPIRES),
    ("location", header::LOCATION),
    ("set-cookie", header::SET_COOKIE),
    ("content-type", header::CONTENT_TYPE),
    ("cache-control", header::CACHE_CONTROL),
    ("last-modified", header::LAST_MODIFIED),
    ("accept-ranges", header::ACCEPT_RANGES),
    ("content-encoding", header::CONTENT_ENCODING),
    ("strict-transport-security", header::STRICT_TRANSPORT_SECURITY),
];

/// Whether the field name `name` is `lower` (lowercase letters and `-` only) in any case.
/// A name is a token (httparse checked), and the only token bytes that OR-ing 0x20 turns into
/// a lowercase letter or `-` are that letter in either case and `-` itself: so this is a case
/// fold here, at a third of `eq_ignore_ascii_case`'s cost.
fn is_name(name: &str, lower: &str) -> bool {
    name.len() == lower.len() && name.bytes().zip(lower.bytes()).all(|(a, b)| a | 0x20 == b)
}

fn kind(name: &str) -> Kind {
    let is = |s: &str| is_name(name, s);
    match name.len() {
        2 if is("te") => Kind::HopByHop,
        7 if is("upgrade") => Kind::Upgrade,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::HopByHop,
        14 if is("content-length") => Kind::ContentLength,
        16 if is("proxy-connection") => Kind::HopByHop,
        17 if is("transfer-encoding") => Kind::TransferEncoding,
        18 if is("proxy-authenticate") => Kind::HopByHop,
        19 if is("proxy-authorization") => Kind::HopByHop,
        n => COMMON
            .iter()
            .find(|(s, _)| s.len() == n && is(s))
            .map_or(Kind::Other, |(_, h)| Kind::Common(h)),
    }
}

/// What [`kind`] says of a name spelled in conventional case (`Content-Length`), as most
/// backends spell the fields most responses carry: one comparison of whole words, where
/// `kind`'s case fold and the name's case check (a name spelled so needs no respelling) cost
/// several times that. `None` for any other spelling.
fn titled(name: &[u8]) -> Option<Kind> {
    let is = |s: &[u8]| same_bytes(name, s);
    let common = |i: usize| COMMON.get(i).map_or(Kind::Other, |(_, h)| Kind::Common(h));
    Some(match name.len() {
        3 if is(b"Age") => common(0),
        3 if is(b"Via") => common(1),
        4 if is(b"Date") => common(2),
        4 if is(b"Etag") => common(3),
        4 if is(b"Vary") => common(4),
        4 if is(b"Link") => common(5),
        6 if is(b"Server") => common(6),
        7 if is(b"Expires") => common(7),
        7 if is(b"Upgrade") => Kind::Upgrade,
        8 if is(b"Location") => common(8),
        10 if is(b"Set-Cookie") => common(9),
        10 if is(b"Connection") => Kind::Connection,
        10 if is(b"Keep-Alive") => Kind::HopByHop,
        12 if is(b"Content-Type") => common(10),
        13 if is(b"Cache-Control") => common(11),
        13 if is(b"Last-Modified") => common(12),
        13 if is(b"Accept-Ranges") => common(13),
        14 if is(b"Content-Length") => Kind::ContentLength,
        16 if is(b"Content-Encoding") => common(14),
        17 if is(b"Transfer-Encoding") => Kind::TransferEncoding,
        25 if is(b"Strict-Transport-Security") => common(15),
        _ => return None,
    })
}

/// Whether `a` and `b` (of 3 bytes or more) are the same bytes: two overlapping loads of
/// each, a word or half a word wide, for the lengths most names have.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    let word = |s: &[u8], at: usize| {
        s.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_le_bytes)
    };
    let half = |s: &[u8], at: usize| {
        s.get(at..at + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map(u32::from_le_bytes)
    };
    n == b.len()
        && match n {
            8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
            4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
            _ => a == b,
        }
}

/// The elements of a comma-separated field value.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The deadline's error, told apart from the stream's own by its kind (a socket read or
/// write never fails with `TimedOut` here: no socket timeouts are set).
fn timed_out() -> io::Error {
    io::ErrorKind::TimedOut.into()
}

/// Parses a response head at the start of `buf` and takes it out of `buf`; `None` when more
/// bytes are needed. Hop-by-hop fields are left out of the head: their facts (framing, reuse)
/// are in it instead.
pub fn parse_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<Head>, String> {
    // Most heads have few fields: a small array first, the full allowance only when needed.
    let config = httparse::ParserConfig::default();
    let mut small = [MaybeUninit::uninit(); 24];
    let mut large;
    let mut res = httparse::Response::new(&mut []);
    let mut parsed = config.parse_response_with_uninit_headers(&mut res, buf, &mut small);
    if matches!(parsed, Err(httparse::Error::TooManyHeaders)) {
        large = vec![MaybeUninit::uninit(); MAX_HEADERS];
        res = httparse::Response::new(&mut []);
        parsed = config.parse_response_with_uninit_headers(&mut res, buf, &mut large);
    }
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid response head from upstream: {e}")),
    };
    let code = res.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| format!("invalid status code {code} from upstream"))?;
    let http11 = res.version == Some(1);

    // Framing and reuse from the hop-by-hop fields, in one pass.
    let (mut close, mut keep) = (false, false);
    let (mut te, mut chunked) = (false, false);
    let mut length: Result<Option<u64>, &str> = Ok(None);
    let mut named: Vec<&[u8]> = Vec::new();
    // The forwarded fields (name, value range in the head, Content-Length?), their values
    // to share one buffer with the head.
    let base = buf.as_ptr() as usize;
    let mut kept: SmallVec<[(HeaderName, usize, usize, bool); 16]> = SmallVec::new();
    // Whether a forwarded name is not in conventional case (hyper writes that by itself), and
    // where the names are.
    let mut untitled = false;
    let mut raw_names: SmallVec<[(usize, usize); 16]> = SmallVec::new();
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    for h in res.headers.iter() {
        let (k, title) = match titled(h.name.as_bytes()) {
            Some(k) => (k, true),
            None => (kind(h.name), false),
        };
        if matches!(k, Kind::Common(_) | Kind::Other | Kind::ContentLength) || (switching && k == Kind::Upgrade) {
            let name = match k {
                Kind::Common(name) => name.clone(),
                Kind::ContentLength => header::CONTENT_LENGTH,
                Kind::Upgrade => header::UPGRADE,
                _ => HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| format!("invalid header name {:?}", h.name))?,
            };
            let start = h.value.as_ptr() as usize - base;
            kept.push((name, start, start + h.value.len(), k == Kind::ContentLength));
            untitled |= !title && !case::name_case(h.name.as_bytes()).title;
            raw_names.push((h.name.as_ptr() as usize - base, h.name.len()));
        }
        match k {
            Kind::Connection => {
                for t in tokens(h.value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        keep = true;
                    } else {
                        named.push(t);
                    }
                }
            }
            Kind::TransferEncoding => {
                // Only `chunked`, as nginx: another coding (`gzip, chunked`) would reach the
                // client decoded of its chunks but still in that coding, with nothing to say so.
                for t in tokens(h.value) {
                    if !t.eq_ignore_ascii_case(b"chunked") {
                        return Err(format!(
                            "upstream sent Transfer-Encoding {:?}; only chunked is accepted",
                            String::from_utf8_lossy(h.value)
                        ));
                    }
                    if chunked {
                        return Err("upstream applied the chunked transfer coding twice".into());
                    }
                    chunked = true;
                }
                te = true;
            }
            Kind::ContentLength => {
                for t in h.value.split(|b| *b == b',') {
                    length = match (length, parse_decimal(t.trim_ascii())) {
                        (Err(e), _) => Err(e),
                        (_, None) => Err("invalid Content-Length from upstream"),
                        (Ok(Some(l)), Some(n)) if l != n => Err("conflicting Content-Length values from upstream"),
                        (_, Some(n)) => Ok(Some(n)),
                    };
                }
            }
            Kind::HopByHop | Kind::Upgrade | Kind::Common(_) | Kind::Other => {}
        }
    }
    // An HTTP/1.0 message cannot be chunked: one that says so has faulty framing (RFC 9112,
    // 6.1), and reading it until the close would pass the chunk lines on as the body.
    if te && !http11 {
        return Err("upstream sent Transfer-Encoding in an HTTP/1.0 response".into());
    }
    // A connection that switched protocols (unasked: the own client sends no upgrades) is
    // no longer HTTP.
    let mut keep_alive = status != StatusCode::SWITCHING_PROTOCOLS && if http11 { !close } else { keep && !close };
    let framing = if head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if te {
        // Transfer-Encoding wins over Content-Length, which then goes (RFC 9112, 6.3); a
        // response framed both ways is suspect, so its connection is not reused.
        if !matches!(length, Ok(None)) {
            keep_alive = false;
        }
        if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            keep_alive = false;
            Framing::Close
        }
    } else {
        match length? {
            Some(0) => Framing::Done,
            Some(n) => Framing::Length(n),
            None => {
                keep_alive = false;
                Framing::Close
            }
        }
    };

    // Content-Length goes when Transfer-Encoding frames the body; fields Connection names go.
    if te || !named.is_empty() {
        let mut i = 0;
        kept.retain(|(name, _, _, cl)| {
            let framing_field = te && *cl;
            let named_field = named.iter().any(|n| name.as_str().as_bytes().eq_ignore_ascii_case(n))
                && !(switching && *name == header::UPGRADE);
            let keep = !framing_field && !named_field;
            if !keep {
                raw_names.remove(i);
            } else {
                i += 1;
            }
            keep
        });
    }
    // The names go to the client as spelled: Names hold them only when one is not in
    // conventional case.
    let names = if untitled {
        Some(Names::new(raw_names.iter().map(|&(at, len)| &buf[at..at + len])))
    } else {
        None
    };
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(kept.len() + 1);
    if switching {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let mut server = false;
    // Drained in place: taken by value, the list (about 900 bytes inline) would be copied
    // into its iterator first.
    for (name, start, end, _) in kept.drain(..) {
        // SAFETY: httparse let through only the bytes a field value may hold (tab, visible
        // ASCII, space and obs-text: its `is_header_value_token`), the very set `HeaderValue`
        // checks for (`is_valid` in the http crate), so checking each byte again is waste.
        // Debug builds still check (and would panic if the two ever disagreed).
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(start..end)) };
        server |= name == header::SERVER;
        headers.append(name, value);
    }
    Ok(Some(Head {
        status,
        headers,
        framing,
        keep_alive,
        names,
        server,
    }))
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter()
        .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// What [`decode`] took out of the buffer.
pub enum Step {
    Frame(Frame<Bytes>),
    End,
    /// Needs more bytes.
    More,
}

/// Takes what the buffer holds of the body.
pub fn decode(framing: &mut Framing, buf: &mut BytesMut) -> Result<Step, String> {
    loop {
        match *framing {
            Framing::Empty | Framing::Done => {
                *framing = Framing::Done;
                return Ok(Step::End);
            }
            Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let data = buf.split_to(take).freeze();
                let left = left - take as u64;
                *framing = match *framing {
                    Framing::Length(_) if left == 0 => Framing::Done,
                    Framing::Length(_) => Framing::Length(left),
                    _ if left == 0 => Framing::Chunked(Chunk::DataEnd),
                    _ => Framing::Chunked(Chunk::Data(left)),
                };
                return Ok(Step::Frame(Frame::data(data)));
            }
            Framing::Close => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let data = buf.split().freeze();
                return Ok(Step::Frame(Frame::data(data)));
            }
            Framing::Chunked(Chunk::Size) => {
                let Some(eol) = find_crlf(buf) else {
                    return if buf.len() > MAX_CHUNK_LINE {
                        Err("chunk-size line too long".into())
                    } else {
                        Ok(Step::More)
                    };
                };
                let size = chunk_size(&buf[..eol])?;
                buf.advance(eol + 2);
                *framing = Framing::Chunked(if size == 0 { Chunk::Trailers } else { Chunk::Data(size) });
            }
            Framing::Chunked(Chunk::DataEnd) => {
                if buf.len() < 2 {
                    return Ok(Step::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("missing CRLF after chunk data".into());
                }
                buf.advance(2);
                *framing = Framing::Chunked(Chunk::Size);
            }
            Framing::Chunked(Chunk::Trailers) => {
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                    *framing = Framing::Done;
                    return Ok(Step::End);
                }
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return if buf.len() > MAX_HEAD_BYTES {
                        Err("trailer section too large".into())
                    } else {
                        Ok(Step::More)
                    };
                };
                let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let trailers = match httparse::parse_headers(&buf[..end + 4], &mut raw) {
                    Ok(httparse::Status::Complete((_, parsed))) => fields(parsed)?,
                    _ => return Err("invalid trailer section".into()),
                };
                buf.advance(end + 4);
                *framing = Framing::Done;
                return Ok(Step::Frame(Frame::trailers(trailers)));
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// `chunk-size [ chunk-ext ]`: hexadecimal, extensions ignored.
fn chunk_size(line: &[u8]) -> Result<u64, String> {
    let digits = line
        .iter()
        .position(|b| *b == b';' || *b == b' ' || *b == b'\t')
        .map_or(line, |i| &line[..i]);
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err("invalid chunk size".into());
    }
    let rest = &line[digits.len()..];
    if rest.iter().any(|b| *b == b'\n' || *b == b'\r' || *b == 0) {
        return Err("invalid chunk extension".into());
    }
    let text = std::str::from_utf8(digits).map_err(|_| "invalid chunk size")?;
    u64::from_str_radix(text, 16).map_err(|_| "invalid chunk size".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn body(framing: Framing, wire: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), String> {
        let mut f = framing;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut trailers = None;
        // Feed one byte at a time: every split point is exercised.
        for b in wire {
            buf.extend_from_slice(&[*b]);
            while let Step::Frame(fr) = decode(&mut f, &mut buf)? {
                match fr.into_data() {
                    Ok(d) => out.extend_from_slice(&d),
                    Err(fr) => trailers = fr.into_trailers().ok(),
                }
            }
        }
        if f != Framing::Done {
            return Err(format!("not finished: {f:?}"));
        }
        if !buf.is_empty() {
            return Err("bytes left over".into());
        }
        Ok((out, trailers))
    }

    /// Every name in conventional case that `kind` knows is known by `titled` as `kind`
    /// knows it; other spellings of them, and other names, are left to `kind`.
    #[test]
    fn titled_names_are_what_kind_says() {
        let known = [
            "te",
            "upgrade",
            "connection",
            "keep-alive",
            "content-length",
            "proxy-connection",
            "transfer-encoding",
            "proxy-authenticate",
            "proxy-authorization",
        ];
        let mut found = 0;
        for lower in known.iter().copied().chain(COMMON.iter().map(|(s, _)| *s)) {
            let mut title = lower.as_bytes().to_vec();
            let mut start = true;
            for b in &mut title {
                if start {
                    b.make_ascii_uppercase();
                }
                start = *b == b'-';
            }
            let title = String::from_utf8(title).unwrap();
            assert!(case::is_title(title.as_bytes()), "{title}");
            if let Some(k) = titled(title.as_bytes()) {
                assert!(k == kind(&title), "{title}");
                found += 1;
            }
            for other in [
                lower.to_string(),
                lower.to_ascii_uppercase(),
                format!("{title}x"),
                format!("x{title}"),
            ] {
                assert!(titled(other.as_bytes()).is_none(), "{other}");
            }
            // One byte changed anywhere: not the name any more.
            for i in 0..title.len() {
                let mut changed = title.clone().into_bytes();
                changed[i] ^= 0x01;
                assert!(titled(&changed).is_none(), "{title} at {i}");
            }
        }
        // All but TE (whose conventional spelling `Te` no backend writes) and the three
        // proxy fields no response carries.
        assert_eq!(found, known.len() + COMMON.len() - 4);
    }

    #[test]
    fn field_kinds_fold_case() {
        for (s, _) in &COMMON {
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{s}");
            assert!(matches!(kind(&s.to_ascii_uppercase()), Kind::Common(_)), "{s}");
        }
        assert!(matches!(kind("Content-Length"), Kind::ContentLength));
        assert!(matches!(kind("CONNECTION"), Kind::Connection));
        assert!(matches!(kind("Transfer-Encoding"), Kind::TransferEncoding));
        assert!(matches!(kind("Keep-Alive"), Kind::HopByHop));
        assert!(matches!(kind("TE"), Kind::HopByHop));
        // Bytes that differ only in 0x20 but are not letters must not match.
        assert!(matches!(kind("x-server"), Kind::Other));
        assert!(!is_name("server", "serve"));
        assert!(!is_name("Servfr", "server"));
    }

    #[test]
    fn chunked_bodies_decode_at_every_split() {
        let (data, trailers) = body(
            Framing::Chunked(Chunk::Size),
            b"5;ext=1\r\nhello\r\nB\r\n, world!!!!\r\n0\r\nx-sum: 7\r\n\r\n",
        )
        .unwrap();
        assert_eq!(data, b"hello, world!!!!");
        assert_eq!(trailers.unwrap()["x-sum"], "7");
        // Trailers that would change framing, routing or caching are dropped; gRPC's pass.
        let (_, trailers) = body(
            Framing::Chunked(Chunk::Size),
            b"1\r\na\r\n0\r\ngrpc-status: 0\r\ncontent-length: 9\r\nset-cookie: a=b\r\ntransfer-encoding: x\r\n\r\n",
        )
        .unwrap();
        let trailers = trailers.unwrap();
        assert_eq!(trailers.len(), 1, "{trailers:?}");
        assert_eq!(trailers["grpc-status"], "0");
        let (data, trailers) = body(Framing::Chunked(Chunk::Size), b"3\r\nabc\r\n0\r\n\r\n").unwrap();
        assert_eq!(data, b"abc");
        assert!(trailers.is_none());
        let (data, _) = body(Framing::Length(4), b"abcd").unwrap();
        assert_eq!(data, b"abcd");
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for wire in [
            &b"g\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"ffffffffffffffff\r\n",
            b"\r\nabc",
            b"3\r\0\nabc",
        ] {
            assert!(body(Framing::Chunked(Chunk::Size), wire).is_err(), "{wire:?}");
        }
    }

    #[test]
    fn heads_frame_as_rfc_9112_says() {
        let parse = |wire: &[u8], head_only: bool| parse_head(&mut BytesMut::from(wire), head_only);
        let framing = |wire: &[u8], head_only: bool| parse(wire, head_only).unwrap().unwrap();
        let h = framing(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", false);
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(12), true));
        let h = framing(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", true);
        assert_eq!(h.framing, Framing::Empty);
        let h = framing(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 12\r\n\r\n", false);
        assert_eq!(h.framing, Framing::Empty);
        let h = framing(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false);
        assert_eq!(h.framing, Framing::Done);
        let h = framing(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            false,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked(Chunk::Size), false));
        assert!(!h.headers.contains_key(header::CONTENT_LENGTH));
        let h = framing(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
            false,
        );
        assert!(!h.keep_alive);
        let h = framing(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false);
        assert!(!h.keep_alive);
        let h = framing(
            b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n",
            false,
        );
        assert!(h.keep_alive);
        let h = framing(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n", false);
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, false));
        let h = framing(b"HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = framing(b"HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n", false);
        assert_eq!(h.framing, Framing::Length(7));
        assert!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n", false)
                .unwrap()
                .is_none()
        );
        // Hop-by-hop fields and those Connection names stay behind; the rest keep their order.
        let h = framing(
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\nconnection: keep-alive, x-private\r\nkeep-alive: timeout=5\r\nx-private: s\r\nx-b: 2\r\nx-a: 3\r\ncontent-length: 1\r\n\r\n",
            false,
        );
        let names: Vec<_> = h
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap()))
            .collect();
        assert_eq!(names, ["x-a=1", "x-a=3", "x-b=2", "content-length=1"]);
        // Many fields: past the small first try.
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("x-{i}: {i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(framing(&many, false).headers.len(), 100);
        for bad in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\ncontent-length: 8\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header : x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx: a\r\n folded\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            // Transfer codings other than chunked would reach the client still coded.
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
        ] {
            assert!(parse(bad, false).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn heads_encode_fields_verbatim_and_one_cookie_field() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("foo.com"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        h.append("x-forwarded-port", HeaderValue::from_static("1"));
        let mut out = Vec::new();
        let peer = crate::proxy::headers::Peer::new("10.1.2.3".parse().unwrap(), 80, false);
        let extra =
            crate::proxy::headers::forwarded(&h, &peer, None, &Default::default(), HeaderValue::from_static("rid"));
        let req = Request {
            method: &Method::GET,
            target: "/p?q=1",
            headers: &h,
            extra: &extra,
            body: Sending::None,
            names: None,
            http10: false,
        };
        encode_head(&mut out, &req);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /p?q=1 HTTP/1.1\r\nhost: foo.com\r\nx-a: 1\r\nx-a: 2\r\ncookie: a=1; b=2; c=3\r\n\
             x-forwarded-for: 10.1.2.3\r\n\
             x-real-ip: 10.1.2.3\r\nx-forwarded-proto: http\r\nx-forwarded-port: 80\r\nx-request-id: rid\r\n\r\n"
        );
    }

    #[test]
    fn http10_heads_ask_for_the_close_unless_the_request_names_its_connection() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("foo.com"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let extra = forwarded();
        let head = |h: &HeaderMap| {
            let req = Request {
                method: &Method::POST,
                target: "/p",
                headers: h,
                extra: &extra,
                body: Sending::Length(5),
                names: None,
                http10: true,
            };
            let mut out = Vec::new();
            encode_head(&mut out, &req);
            String::from_utf8(out).unwrap()
        };
        let out = head(&h);
        assert!(
            out.starts_with("POST /p HTTP/1.0\r\nhost: foo.com\r\ncontent-length: 5\r\n"),
            "{out}"
        );
        assert!(
            out.ends_with("\r\nx-request-id: rid\r\nconnection: close\r\n\r\n"),
            "{out}"
        );
        // An upgrade names its own Connection, as nginx's `proxy_set_header Connection` does.
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        let out = head(&h);
        assert!(out.contains("\r\nconnection: upgrade\r\n"), "{out}");
        assert!(
            !out.contains("close") && out.ends_with("x-request-id: rid\r\n\r\n"),
            "{out}"
        );
    }

    #[test]
    fn names_keep_their_case_both_ways() {
        // The upstream's spellings of the forwarded fields, the hop-by-hop ones left out.
        let wire = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: keep-alive, X-Private\r\nx-private: s\r\nset-COOKIE: a\r\nContent-Length: 0\r\n\r\n";
        let h = parse_head(&mut BytesMut::from(&wire[..]), false).unwrap().unwrap();
        let names = h.names.expect("mixed case");
        let mut s = names.speller();
        let spelled: Vec<&[u8]> = h.headers.keys().map(|k| s.spell(k)).collect();
        assert_eq!(spelled, [&b"X-A"[..], b"set-COOKIE", b"Content-Length"]);
        // Names all in conventional case are hyper's own way of writing: nothing is kept.
        let title = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n";
        assert!(
            parse_head(&mut BytesMut::from(&title[..]), false)
                .unwrap()
                .unwrap()
                .names
                .is_none()
        );

        // A request head spelled as the client did; Portico's own fields as they are.
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("foo.com"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        let names = Names::new([&b"HOST"[..], b"x-A", b"Cookie", b"cookie"].into_iter());
        let peer = crate::proxy::headers::Peer::new("10.1.2.3".parse().unwrap(), 80, false);
        let extra =
            crate::proxy::headers::forwarded(&h, &peer, None, &Default::default(), HeaderValue::from_static("rid"));
        let req = Request {
            method: &Method::GET,
            target: "/",
            headers: &h,
            extra: &extra,
            body: Sending::Chunked,
            names: Some(&names),
            http10: false,
        };
        let mut out = Vec::new();
        encode_head(&mut out, &req);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("GET / HTTP/1.1\r\nHOST: foo.com\r\nx-A: 1\r\nCookie: a=1; b=2\r\nx-forwarded-for: "),
            "{out}"
        );
        assert!(out.ends_with("transfer-encoding: chunked\r\n\r\n"), "{out}");
    }

    // The client over scripted peers: a duplex pipe, the peer's side driven by the test.

    use http_body_util::{BodyExt, Full, StreamBody};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    impl Conn for DuplexStream {
        fn readable(&self) -> bool {
            false
        }
    }

    const LIMITS: Limits = Limits {
        response: Duration::from_secs(5),
        send: Duration::from_secs(5),
    };

    fn forwarded() -> Forwarded<'static> {
        // The fields borrow the peer's values: a peer for the whole test run.
        let peer: &'static _ = Box::leak(Box::new(crate::proxy::headers::Peer::new(
            "10.1.2.3".parse().unwrap(),
            80,
            false,
        )));
        crate::proxy::headers::forwarded(
            &HeaderMap::new(),
            peer,
            None,
            &Default::default(),
            HeaderValue::from_static("rid"),
        )
    }

    /// Reads from the peer side until `needle` has arrived; returns all read.
    async fn read_until(peer: &mut DuplexStream, needle: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(needle.len()).any(|w| w == needle) {
            let n = peer.read(&mut buf).await.unwrap();
            assert!(n > 0, "peer closed; got {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    type NoBody = Full<Bytes>;

    async fn exchange_with<B>(
        c: &mut H1<DuplexStream>,
        method: &Method,
        headers: &HeaderMap,
        sending: Sending,
        body: Option<&mut B>,
        limits: Limits,
    ) -> Result<Head, Error>
    where
        B: HttpBody<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let extra = forwarded();
        let req = Request {
            method,
            target: "/up",
            headers,
            extra: &extra,
            body: sending,
            names: None,
            http10: false,
        };
        c.exchange(&req, body, limits, Instant::now()).await
    }

    #[tokio::test]
    async fn a_chunked_upload_streams_and_its_trailers_follow() {
        let (ours, mut peer) = tokio::io::duplex(1 << 16);
        let mut c = H1::new(ours);
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"hello "))),
            Ok(Frame::data(Bytes::from_static(b"world"))),
            Ok(Frame::trailers({
                let mut t = HeaderMap::new();
                t.insert("x-sum", HeaderValue::from_static("11"));
                t.insert("content-length", HeaderValue::from_static("99"));
                t
            })),
        ];
        let mut body = StreamBody::new(futures_util::stream::iter(frames));
        let server = tokio::spawn(async move {
            let got = read_until(&mut peer, b"x-sum: 11\r\n\r\n").await;
            peer.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let head = exchange_with(
            &mut c,
            &Method::POST,
            &HeaderMap::new(),
            Sending::Chunked,
            Some(&mut body),
            LIMITS,
        )
        .await
        .unwrap();
        assert_eq!(
            (head.status, head.framing, head.keep_alive),
            (StatusCode::CREATED, Framing::Length(2), true)
        );
        let wire = server.await.unwrap();
        assert!(wire.starts_with("POST /up HTTP/1.1\r\n"), "{wire}");
        assert!(wire.contains("transfer-encoding: chunked\r\n"), "{wire}");
        assert!(
            wire.ends_with("\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\nx-sum: 11\r\n\r\n"),
            "{wire}"
        );
        assert!(!wire.contains("99"), "a trailer cannot carry framing: {wire}");
    }

    #[tokio::test]
    async fn a_sized_upload_goes_as_declared_and_too_long_a_body_is_refused() {
        let (ours, mut peer) = tokio::io::duplex(1 << 16);
        let mut c = H1::new(ours);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let mut body = Full::new(Bytes::from_static(b"abcde"));
        let server = tokio::spawn(async move {
            let got = read_until(&mut peer, b"abcde").await;
            peer.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            (peer, String::from_utf8(got).unwrap())
        });
        let head = exchange_with(&mut c, &Method::PUT, &h, Sending::Length(5), Some(&mut body), LIMITS)
            .await
            .unwrap();
        assert_eq!(head.status, StatusCode::NO_CONTENT);
        let (_peer, wire) = server.await.unwrap();
        assert!(
            wire.contains("content-length: 5\r\n") && !wire.contains("chunked"),
            "{wire}"
        );
        assert!(wire.ends_with("\r\n\r\nabcde"), "{wire}");

        let (ours, _peer) = tokio::io::duplex(1 << 16);
        let mut c = H1::new(ours);
        let mut long = Full::new(Bytes::from_static(b"abcdef"));
        let e = exchange_with(&mut c, &Method::PUT, &h, Sending::Length(5), Some(&mut long), LIMITS)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, Error::Body(_)), "{e}");
        assert!(!e.resendable());
    }

    #[tokio::test]
    async fn an_early_answer_ends_the_upload_and_the_connection() {
        let (ours, mut peer) = tokio::io::duplex(1 << 16);
        let mut c = H1::new(ours);
        // A body that never ends: the upstream answers after the head.
        let mut body = StreamBody::new(futures_util::stream::pending::<Result<Frame<Bytes>, BoxError>>());
        let server = tokio::spawn(async move {
            read_until(&mut peer, b"\r\n\r\n").await;
            peer.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            peer
        });
        let head = exchange_with(
            &mut c,
            &Method::POST,
            &HeaderMap::new(),
            Sending::Chunked,
            Some(&mut body),
            LIMITS,
        )
        .await
        .unwrap();
        assert_eq!(head.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!head.keep_alive, "the connection is mid-request");
        drop(server.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_takes_no_body_times_out_and_one_that_does_not_answer_too() {
        // A pipe of 64 bytes fills at once; the peer never reads.
        let (ours, _peer) = tokio::io::duplex(64);
        let mut c = H1::new(ours);
        let mut big = Full::new(Bytes::from(vec![b'x'; 4096]));
        let limits = Limits {
            response: Duration::from_secs(30),
            send: Duration::from_secs(2),
        };
        let e = exchange_with(
            &mut c,
            &Method::POST,
            &HeaderMap::new(),
            Sending::Length(4096),
            Some(&mut big),
            limits,
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, Error::SendTimeout(d) if d == Duration::from_secs(2)), "{e}");

        let (ours, mut peer) = tokio::io::duplex(1 << 16);
        let mut c = H1::new(ours);
        let reader = tokio::spawn(async move {
            read_until(&mut peer, b"\r\n\r\n").await;
            peer
        });
        let e = exchange_with::<NoBody>(&mut c, &Method::GET, &HeaderMap::new(), Sending::None, None, limits)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, Error::Timeout(d) if d == Duration::from_secs(30)), "{e}");
        drop(reader.await.unwrap());
    }

    #[tokio::test]
    async fn a_closed_kept_alive_connection_says_whether_the_request_may_go_again() {
        for (method, sending, resend) in [
            (Method::GET, Sending::None, true),
            (Method::POST, Sending::None, false),
            // The upstream never saw any of the body: nothing it could have acted on.
            (Method::POST, Sending::Length(3), true),
        ] {
            let (ours, peer) = tokio::io::duplex(1 << 16);
            let mut c = H1::new(ours);
            c.reused = true;
            drop(peer);
            let mut body = StreamBody::new(futures_util::stream::pending::<Result<Frame<Bytes>, BoxError>>());
            let e = exchange_with(&mut c, &method, &HeaderMap::new(), sending, Some(&mut body), LIMITS)
                .await
                .err()
                .unwrap();
            assert!(matches!(e, Error::Closed { .. }), "{method} {e}");
            assert_eq!(e.resendable(), resend, "{method} {sending:?}");
        }
        // A fresh connection closing is the endpoint failing, not a stale pool entry.
        let (ours, peer) = tokio::io::duplex(1 << 16);
        let mut c = H1::new(ours);
        drop(peer);
        let e = exchange_with::<NoBody>(&mut c, &Method::GET, &HeaderMap::new(), Sending::None, None, LIMITS)
            .await
            .err()
            .unwrap();
        assert!(!e.resendable(), "{e}");
    }

    #[tokio::test]
    async fn a_pooled_connection_gives_back_its_buffers_and_serves_again() {
        let (ours, mut peer) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            for body in ["one", "two"] {
                read_until(&mut peer, b"\r\n\r\n").await;
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{body}");
                peer.write_all(answer.as_bytes()).await.unwrap();
            }
            peer
        });
        let mut c = H1::new(ours);
        for (round, want) in ["one", "two"].into_iter().enumerate() {
            let mut head =
                exchange_with::<NoBody>(&mut c, &Method::GET, &HeaderMap::new(), Sending::None, None, LIMITS)
                    .await
                    .unwrap();
            let mut data = Vec::new();
            while let Some(f) = std::future::poll_fn(|cx| c.poll_body(&mut head.framing, cx))
                .await
                .unwrap()
            {
                data.extend_from_slice(&f.into_data().unwrap());
                if head.framing == Framing::Done {
                    break;
                }
            }
            assert_eq!(data, want.as_bytes(), "round {round}");
            assert!(c.buf.capacity() > 0 && !c.head.is_empty(), "round {round}");
            c.release_buffers();
            assert_eq!((c.buf.capacity(), c.head.capacity()), (0, 0), "round {round}");
        }
        drop(server.await.unwrap());
    }

    #[tokio::test]
    async fn a_switch_of_protocols_keeps_upgrade_and_what_followed_it() {
        let (ours, mut peer) = tokio::io::duplex(1 << 16);
        let mut c = H1::new(ours);
        let server = tokio::spawn(async move {
            read_until(&mut peer, b"\r\n\r\n").await;
            peer.write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: x\r\n\r\nFIRST")
                .await
                .unwrap();
            peer
        });
        let head = exchange_with::<NoBody>(&mut c, &Method::GET, &HeaderMap::new(), Sending::None, None, LIMITS)
            .await
            .unwrap();
        assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(head.headers[header::UPGRADE], "websocket");
        assert_eq!(head.headers[header::CONNECTION], "upgrade");
        assert!(!head.keep_alive);
        let (_, early) = c.into_parts();
        assert_eq!(&early[..], b"FIRST");
        drop(server.await.unwrap());
    }

    /// The same response bytes through this client and through hyper's: both accept or both
    /// refuse, and accepted ones give the same status, end-to-end fields, body and trailers.
    #[tokio::test]
    async fn responses_read_as_hyper_reads_them() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-b: 2\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nx-t: 1\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nx-c: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
            b"HTTP/1.0 200 OK\r\n\r\nold style",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\nx-a: 2\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 1\r\n\r\nz",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
            b"HTTP/1.1 200 OK\r\ncontent-length: -3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nbad header: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx: a\r\n folded\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ];
        for wire in cases {
            let ours = read_with_ours(wire).await;
            let theirs = read_with_hyper(wire).await;
            let show = String::from_utf8_lossy(wire);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{show}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{show}: ours {ours:?}, hyper {theirs:?}"),
            }
        }
    }

    type Read = (u16, Vec<(String, String)>, Vec<u8>, Vec<(String, String)>);

    fn fields_of(h: &HeaderMap) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = h
            .iter()
            .filter(|(n, _)| {
                !matches!(
                    n.as_str(),
                    "connection" | "transfer-encoding" | "keep-alive" | "content-length"
                )
            })
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        v.sort();
        v
    }

    async fn read_with_ours(wire: &'static [u8]) -> Result<Read, String> {
        let (ours, mut peer) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            read_until(&mut peer, b"\r\n\r\n").await;
            peer.write_all(wire).await.unwrap();
        });
        let mut c = H1::new(ours);
        let mut head = exchange_with::<NoBody>(&mut c, &Method::GET, &HeaderMap::new(), Sending::None, None, LIMITS)
            .await
            .map_err(|e| e.to_string())?;
        server.await.unwrap();
        let (mut data, mut trailers) = (Vec::new(), Vec::new());
        while let Some(f) = std::future::poll_fn(|cx| c.poll_body(&mut head.framing, cx)).await? {
            match f.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => trailers = fields_of(&f.into_trailers().unwrap_or_default()),
            }
            if head.framing == Framing::Done {
                break;
            }
        }
        Ok((head.status.as_u16(), fields_of(&head.headers), data, trailers))
    }

    async fn read_with_hyper(wire: &'static [u8]) -> Result<Read, String> {
        let (ours, mut peer) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            read_until(&mut peer, b"\r\n\r\n").await;
            peer.write_all(wire).await.unwrap();
            // Close the write side, so bodies delimited by the close end.
            drop(peer);
        });
        let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(ours))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::get("/up").body(NoBody::default()).unwrap();
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        server.await.unwrap();
        let status = resp.status().as_u16();
        let head = fields_of(resp.headers());
        let collected = resp.into_body().collect().await.map_err(|e| e.to_string())?;
        let trailers = collected.trailers().map(fields_of).unwrap_or_default();
        Ok((status, head, collected.to_bytes().to_vec(), trailers))
    }
}
