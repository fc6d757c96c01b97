//! The data plane: listeners, the request handler, upstream forwarding and Portico's own answers.

pub mod access_log;
pub mod case;
pub mod client;
pub mod compress;
pub mod deadline;
pub mod front;
pub mod gateway_sockets;
pub mod handler;
pub mod headers;
pub mod keepalive;
pub mod listener;
pub mod live;
pub mod mtls;
pub mod otel;
pub mod passthrough;
pub mod policy;
pub mod proxy_protocol;
pub mod rewind;
pub mod ticket;
pub mod tls;
pub mod tls_live;
pub use crate::config::tls_options;
pub mod upstream;
pub mod vars;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Body as _, Frame, SizeHint};

/// The response body type: streamed from an upstream, or a short body of Portico's own;
/// not a boxed trait object, so no allocation and no dynamic call per response. It also
/// holds its request's `Serving` mark, ended when the body is done or dropped.
pub struct Body {
    inner: Inner,
    serving: Option<client::Serving>,
    /// The request's place under `limit-connections`, released when the body is done.
    held: Option<policy::limits::Held>,
    /// The request's access-log line (`--access-log-format nginx`), written when this is done.
    log: Option<Box<access_log::Pending>>,
    /// `limit-rate`: the pace this body is sent at.
    rate: Option<Box<policy::rate::Throttle>>,
}

enum Inner {
    Upstream(upstream::ResponseBody),
    Own(Full<Bytes>),
    /// An upstream body compressed on its way (boxed: the coder's state is large).
    Compressed(Box<compress::Encoder<upstream::ResponseBody>>),
}

impl Body {
    pub fn upstream(body: upstream::ResponseBody) -> Body {
        Body {
            inner: Inner::Upstream(body),
            serving: None,
            held: None,
            log: None,
            rate: None,
        }
    }

    pub fn own(data: Bytes) -> Body {
        Body {
            inner: Inner::Own(Full::new(data)),
            serving: None,
            held: None,
            log: None,
            rate: None,
        }
    }

    pub fn empty() -> Body {
        Body::own(Bytes::new())
    }

    /// Whether the body comes from an upstream, as it came.
    pub fn is_upstream(&self) -> bool {
        matches!(self.inner, Inner::Upstream(_))
    }

    /// Compresses an upstream body as it streams (Portico's own bodies stay as they are).
    pub fn encode(&mut self, coding: compress::Coding, level: u32, length: Option<u64>) {
        if let Inner::Upstream(_) = self.inner
            && let Inner::Upstream(b) = std::mem::replace(&mut self.inner, Inner::Own(Full::default()))
        {
            self.inner = Inner::Compressed(Box::new(compress::Encoder::new(b, coding, level, length)));
        }
    }

    /// Whether this is a body of Portico's own (not an upstream's).
    pub fn is_own(&self) -> bool {
        matches!(self.inner, Inner::Own(_))
    }

    /// Ties the request's `Serving` mark to this body.
    pub fn serving(&mut self, serving: client::Serving) {
        self.serving = Some(serving);
    }

    /// Ties a `limit-connections` mark to this body.
    pub fn hold(&mut self, held: policy::limits::Held) {
        self.held = Some(held);
    }

    /// Ties the request's access-log line to this body: written when the body is done.
    pub fn log(&mut self, line: Box<access_log::Pending>) {
        self.log = Some(line);
    }

    /// Sends this body at `rate` (`limit-rate`). Out of line: only paced routes come here.
    #[inline(never)]
    pub fn pace(&mut self, rate: crate::config::rate::ResponseRate) {
        self.rate = Some(Box::new(policy::rate::Throttle::new(rate)));
    }
}

impl Inner {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, upstream::BoxError>>> {
        match self {
            Inner::Upstream(b) => Pin::new(b).poll_frame(cx),
            Inner::Own(b) => Pin::new(b).poll_frame(cx).map_err(|e| match e {}),
            Inner::Compressed(b) => Pin::new(&mut **b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Own(b) => b.is_end_stream(),
            Inner::Compressed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Own(b) => b.size_hint(),
            Inner::Compressed(b) => b.size_hint(),
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = upstream::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, upstream::BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.rate {
            None => this.inner.poll_frame(cx),
            Some(t) => t.poll_frame(cx, |cx| this.inner.poll_frame(cx)),
        };
        if let (Some(log), Poll::Ready(Some(Ok(frame)))) = (&mut this.log, &polled)
            && let Some(data) = frame.data_ref()
        {
            log.sent(data.len());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.rate {
            None => self.inner.is_end_stream(),
            Some(t) => t.is_end_stream(self.inner.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.rate {
            None => self.inner.size_hint(),
            Some(t) => t.size_hint(self.inner.size_hint()),
        }
    }
}

/// Every limit and timeout a client or upstream can run into. Each is a flag of the binary.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Time to receive a complete request head, counted from the connection's start or the
    /// end of its last request; so also the keep-alive idle time (`client::ClientIo`).
    pub client_header_timeout: Duration,
    /// Largest request head, in bytes (HTTP/1 read buffer; HTTP/2 header list size).
    pub max_header_bytes: usize,
    /// Most header fields in one HTTP/1 request.
    pub max_headers: usize,
    /// HTTP/2: ping interval for idle connections; a peer that does not answer is dropped.
    pub h2_keepalive_interval: Duration,
    /// Most client connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// TLS handshake deadline.
    pub tls_handshake_timeout: Duration,
    /// Upstream connect timeout.
    pub upstream_connect_timeout: Duration,
    /// Time an upstream may take to send its response head.
    pub upstream_response_timeout: Duration,
    /// How long an idle upstream connection stays pooled.
    pub upstream_idle_timeout: Duration,
    /// HTTP/2: most concurrent streams per client connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: most streams a client may reset before being answered (rapid-reset flood cap).
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2: most streams Portico resets because of client errors before closing the connection.
    pub h2_max_local_error_reset_streams: usize,
    /// Endpoints tried for one request when connecting fails.
    pub max_tries: usize,
    /// The HTTPS port used in redirects (omitted when 443).
    pub https_redirect_port: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            client_header_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            h2_keepalive_interval: Duration::from_secs(60),
            max_connections: 65_536,
            tls_handshake_timeout: Duration::from_secs(10),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(60),
            h2_max_concurrent_streams: 250,
            h2_max_pending_accept_reset_streams: 50,
            h2_max_local_error_reset_streams: 256,
            max_tries: 3,
            https_redirect_port: 443,
        }
    }
}

pub const SERVER: HeaderValue = HeaderValue::from_static("portico");

/// A short plain-text answer of Portico's own.
pub fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Body::own(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(header::SERVER, SERVER);
    r
}
