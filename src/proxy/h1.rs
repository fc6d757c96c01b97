//! A lean HTTP/1.1 client for upstream requests without a body (GET, HEAD, DELETE, … — most
//! of the traffic): the request head is written and the response read on the request's own
//! task, with no connection task and no channels between them, and the connection goes back
//! to its endpoint's pool when the response body ends. Requests with a body and protocol
//! upgrades go through hyper's client (`upstream.rs`), which reads a response while it still
//! writes the request.
//!
//! Parsing is strict: httparse for the head (no obs-fold, no space before the colon), one
//! Content-Length value, Transfer-Encoding over Content-Length (and then no reuse), bounded
//! head, chunk-size line and trailer sizes.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::Frame;
use smallvec::SmallVec;

use super::deadline::Deadline;
use super::headers::Forwarded;
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
pub struct H1 {
    io: Io,
    buf: BytesMut,
    /// Scratch space for request heads, kept with the connection.
    head: Vec<u8>,
    /// Whether an exchange has completed on it before (it came from the pool).
    pub reused: bool,
    /// The response timeout of the exchange under way, one timer for the connection's life.
    deadline: Deadline,
}

/// A request without body, as the own client writes it.
pub struct Request<'a> {
    pub method: &'a Method,
    /// The request-target, origin-form.
    pub target: &'a str,
    /// The fields to forward (hop-by-hop ones already removed).
    pub headers: &'a HeaderMap,
    /// The forwarding fields, written after `headers`' (replacing any of the same name).
    pub extra: &'a Forwarded,
}

/// How an exchange failed.
#[derive(Debug)]
pub enum Error {
    /// A kept-alive connection closed before any byte of a response: the upstream most
    /// likely closed it while it was idle, and did not act on the request.
    Closed,
    /// No complete response head within the response timeout.
    Timeout,
    /// Anything else, described.
    Failed(String),
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
}

impl H1 {
    pub fn new(io: Io) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            head: Vec::new(),
            reused: false,
            deadline: Deadline::new(Instant::now()),
        }
    }

    pub fn into_io(self) -> Io {
        self.io
    }

    /// Whether this idle connection has become readable, as far as the reactor has seen (asks
    /// the kernel nothing): the upstream closed it or sent bytes nobody asked for, and either
    /// way it cannot carry a request. Reading a response to its end leaves no readiness behind
    /// (the last read is short), so a healthy idle connection is not readable.
    pub fn peer_closed(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.io.tcp().poll_read_ready(&mut cx).is_ready()
    }

    /// Writes a request head (the request has no body) and reads the response head, both
    /// before `deadline`.
    pub async fn exchange(&mut self, req: &Request<'_>, deadline: Instant) -> Result<Head, Error> {
        self.deadline.set(deadline);
        // Each response is read from the buffer's start once nothing holds the previous
        // ones, instead of further on: the same cache lines serve every exchange.
        if self.buf.is_empty() {
            let _ = self.buf.try_reclaim(READ_CHUNK);
        }
        encode_head(&mut self.head, req);
        let mut written = 0;
        let sent = std::future::poll_fn(|cx| {
            while written < self.head.len() {
                match Pin::new(&mut self.io).poll_write(cx, &self.head[written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return self.deadline.poll_expired(cx).map(|()| Err(timed_out())),
                }
            }
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Pending => self.deadline.poll_expired(cx).map(|()| Err(timed_out())),
                done => done,
            }
        })
        .await;
        match sent {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(Error::Timeout),
            Err(e) if self.reused && early_close(&e) => return Err(Error::Closed),
            Err(e) => return Err(Error::Failed(format!("writing the request: {e}"))),
        }
        let head_only = *req.method == Method::HEAD;
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                received = true;
                match parse_head(&mut self.buf, head_only).map_err(Error::Failed)? {
                    Some(head) => {
                        // 100 Continue, 103 Early Hints: informational, not forwarded.
                        if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                            continue;
                        }
                        return Ok(head);
                    }
                    None if self.buf.len() >= MAX_HEAD_BYTES => {
                        return Err(Error::Failed(format!(
                            "response head larger than {MAX_HEAD_BYTES} bytes"
                        )));
                    }
                    None => {}
                }
            }
            let read = std::future::poll_fn(|cx| match self.poll_fill(cx) {
                Poll::Pending => self.deadline.poll_expired(cx).map(|()| Err(timed_out())),
                done => done,
            })
            .await;
            match read {
                Ok(0) if self.reused && !received => return Err(Error::Closed),
                Ok(0) => {
                    return Err(Error::Failed(
                        "upstream closed the connection before a full response head".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(Error::Timeout),
                Err(e) if self.reused && !received && early_close(&e) => return Err(Error::Closed),
                Err(e) => return Err(Error::Failed(format!("reading the response: {e}"))),
            }
        }
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

fn early_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
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
    } = req;
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers.iter().filter(|(n, _)| !extra.replaces(n)) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (start, value) in extra.lines() {
        out.extend_from_slice(start);
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Trailer fields as a header map.
fn fields(raw: &[httparse::Header<'_>]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(raw.len());
    for h in raw {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| format!("invalid header name {:?}", h.name))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| format!("invalid value of header {}", h.name))?;
        map.append(name, value);
    }
    Ok(map)
}

/// What a response field means to the proxy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connection,
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
        7 if is("upgrade") => Kind::HopByHop,
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
    for h in res.headers.iter() {
        let k = kind(h.name);
        if matches!(k, Kind::Common(_) | Kind::Other | Kind::ContentLength) {
            let name = match k {
                Kind::Common(name) => name.clone(),
                Kind::ContentLength => header::CONTENT_LENGTH,
                _ => HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| format!("invalid header name {:?}", h.name))?,
            };
            let start = h.value.as_ptr() as usize - base;
            kept.push((name, start, start + h.value.len(), k == Kind::ContentLength));
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
                te = true;
                if let Some(last) = tokens(h.value).last() {
                    chunked = last.eq_ignore_ascii_case(b"chunked");
                }
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
            Kind::HopByHop | Kind::Common(_) | Kind::Other => {}
        }
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
        if http11 && chunked {
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
        kept.retain(|(name, _, _, cl)| {
            let framing_field = te && *cl;
            let named_field = named.iter().any(|n| name.as_str().as_bytes().eq_ignore_ascii_case(n));
            !framing_field && !named_field
        });
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(kept.len());
    for (name, start, end, _) in kept {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| format!("invalid value of header {name}"))?;
        headers.append(name, value);
    }
    Ok(Some(Head {
        status,
        headers,
        framing,
        keep_alive,
    }))
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter()
        .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

enum Step {
    Frame(Frame<Bytes>),
    End,
    /// Needs more bytes.
    More,
}

/// Takes what the buffer holds of the body.
fn decode(framing: &mut Framing, buf: &mut BytesMut) -> Result<Step, String> {
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
        let h = framing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false);
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
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
        ] {
            assert!(parse(bad, false).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn heads_encode_fields_verbatim() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("foo.com"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append("x-forwarded-port", HeaderValue::from_static("1"));
        let mut out = Vec::new();
        let peer = super::super::headers::Peer::new("10.1.2.3".parse().unwrap(), 80, false);
        let extra = super::super::headers::forwarded(&h, &peer, None, &[], HeaderValue::from_static("rid"));
        let req = Request {
            method: &Method::GET,
            target: "/p?q=1",
            headers: &h,
            extra: &extra,
        };
        encode_head(&mut out, &req);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /p?q=1 HTTP/1.1\r\nhost: foo.com\r\nx-a: 1\r\nx-a: 2\r\nx-forwarded-for: 10.1.2.3\r\n\
             x-real-ip: 10.1.2.3\r\nx-forwarded-proto: http\r\nx-forwarded-port: 80\r\nx-request-id: rid\r\n\r\n"
        );
    }
}
