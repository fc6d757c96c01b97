//! `proxy-http-version: "1.0"`: the route's requests go upstream as HTTP/1.0 (the request
//! line and `Connection: close` are written by [`crate::proxy::upstream::h1`], and the
//! connection is never pooled). HTTP/1.0 has no chunked coding, so a request body must go
//! with its length. As nginx (which buffers such a body even with `proxy_request_buffering
//! off`), a body the client sent without a length is read whole first, then sent with a
//! Content-Length: at most `proxy-body-size` (413 beyond; without a limit at most
//! [`MAX_WHOLE`]), and each piece within [`PIECE_TIMEOUT`] (408, nginx's
//! `client_body_timeout` default).

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;

use crate::config::Policy;
use crate::proxy::upstream::h1::Sending;
use crate::proxy::{Body, plain};

/// The most a body is read whole for when the route has no `proxy-body-size` limit: it is
/// held in memory.
pub const MAX_WHOLE: u64 = 64 << 20;
/// The longest wait for the next piece of a body being read whole.
pub const PIECE_TIMEOUT: Duration = Duration::from_secs(60);

/// On an HTTP/1.0 route (not for HTTP/2 upstreams, which `proxy-http-version` does not
/// concern), a body without a declared length: the reading of it whole, which on success
/// makes `sending` its length and sets the Content-Length in `headers`. Other routes pay one
/// test.
#[inline(always)]
pub fn whole<'a>(
    policy: &Policy,
    h2: bool,
    sending: &'a mut Sending,
    headers: &'a mut HeaderMap,
    body: &'a mut Incoming,
    counter: &'a Counter,
) -> Option<impl Future<Output = Result<Bytes, Response<Body>>> + 'a> {
    if policy.http10 && !h2 && *sending == Sending::Chunked {
        Some(read(policy.max_body_bytes, sending, headers, body, counter))
    } else {
        None
    }
}

async fn read(
    max: Option<u64>,
    sending: &mut Sending,
    headers: &mut HeaderMap,
    body: &mut Incoming,
    counter: &Counter,
) -> Result<Bytes, Response<Body>> {
    let max = max.map_or(MAX_WHOLE, |m| m.min(MAX_WHOLE));
    let mut data = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(PIECE_TIMEOUT, body.frame()).await {
            Err(_) => {
                return Err(plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "request timeout: the request body stopped coming",
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(plain(
                    StatusCode::BAD_REQUEST,
                    "bad request: the request body could not be read",
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers have no place in HTTP/1.0: left out.
        let Ok(piece) = frame.into_data() else { continue };
        counter.inc_by(piece.len() as u64);
        if (data.len() as u64).saturating_add(piece.len() as u64) > max {
            return Err(super::body::too_large(max));
        }
        data.extend_from_slice(&piece);
    }
    let data = data.freeze();
    *sending = Sending::Length(data.len() as u64);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(data.len()));
    Ok(data)
}
