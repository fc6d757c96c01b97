//! Response compression (gzip, brotli): which responses are compressed, as nginx's gzip and
//! ngx_brotli filters decide, and the body that encodes them piece by piece as they stream.

use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::{Body as HttpBody, Frame};

use super::Body;
use super::upstream::BoxError;
use crate::config::compress::{BROTLI_LEVELS, Codec, Compression, GZIP_LEVELS};

/// Compressed output is sent once this much has gathered, even while more input is ready.
const OUT_HIGH: usize = 16 * 1024;
/// brotli's window: 512 KiB, ngx_brotli's default (brotli's own, 4 MiB, would cost that much
/// memory per response).
const BROTLI_LGWIN: u8 = 19;
/// brotli's internal output buffer.
const BROTLI_BUFFER: usize = 4096;

/// A content coding Portico produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Brotli,
}

/// What a request allows, read before it is forwarded: its weights for each coding, in
/// thousandths (0: not acceptable), and whether gzip may answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asked {
    gzip: u16,
    br: u16,
    /// gzip_http_version 1.1, as ingress-nginx sets it: HTTP/1.0 requests are not gzipped.
    http11: bool,
}

/// The request side: `None` when compression is off (one test) or the request cannot have
/// a compressed answer (HEAD).
#[inline(always)]
pub fn asked<B>(compression: Option<&Arc<Compression>>, req: &Request<B>) -> Option<Asked> {
    compression?;
    read_request(req.method(), req.version(), req.headers())
}

#[inline(never)]
fn read_request(method: &Method, version: Version, headers: &HeaderMap) -> Option<Asked> {
    if method == Method::HEAD {
        return None;
    }
    let (gzip, br) = accepted(headers);
    Some(Asked {
        gzip,
        br,
        http11: version >= Version::HTTP_11,
    })
}

/// The response side: when `asked` is `Some`, adds `Vary: Accept-Encoding` to a response that
/// is compressible, and compresses it if the client accepts a coding that is on.
#[inline(always)]
pub fn respond(compression: Option<&Arc<Compression>>, asked: Option<Asked>, resp: &mut Response<Body>) {
    // `asked` is `None` whenever compression is off: one test.
    if let Some(a) = asked {
        compress(compression, a, resp);
    }
}

#[inline(never)]
fn compress(c: Option<&Arc<Compression>>, asked: Asked, resp: &mut Response<Body>) {
    let Some(c) = c else { return };
    // Portico's own answers are short texts; only upstream bodies are compressed.
    if !resp.body().is_upstream() {
        return;
    }
    let Some((coding, level, length)) = choose(c, asked, resp.status(), resp.headers_mut()) else {
        return;
    };
    resp.body_mut().encode(coding, level, length);
}

/// Decides for one response head, and rewrites it when compressing: the coding and level, or
/// `None` (the head then only gained Vary where a compressed variant exists). The third value
/// is the body's declared length.
fn choose(c: &Compression, asked: Asked, status: StatusCode, h: &mut HeaderMap) -> Option<(Coding, u32, Option<u64>)> {
    // nginx's set: others carry no body (1xx, 204, 304), a byte range (206) or are left alone.
    if !matches!(status, StatusCode::OK | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) {
        return None;
    }
    if h.get(header::CONTENT_ENCODING).is_some_and(|v| !v.is_empty()) || no_transform(h) {
        return None;
    }
    let length = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let media = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let fits = |k: &Codec| k.enabled && length.is_none_or(|n| n >= k.min_length) && k.compresses(media);
    let (br, gzip) = (fits(&c.brotli), fits(&c.gzip));
    if !br && !gzip {
        return None;
    }
    vary(h);
    let br = br && asked.br > 0;
    let gzip = gzip && asked.gzip > 0 && asked.http11;
    let coding = match (br, gzip) {
        // The higher weight wins; brotli on a tie, as ngx_brotli runs before gzip.
        (true, true) if asked.gzip > asked.br => Coding::Gzip,
        (true, _) => Coding::Brotli,
        (false, true) => Coding::Gzip,
        (false, false) => return None,
    };
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    weak_etag(h);
    let level = match coding {
        Coding::Gzip => {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            c.gzip.level.clamp(*GZIP_LEVELS.start(), *GZIP_LEVELS.end())
        }
        Coding::Brotli => {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
            c.brotli.level.clamp(*BROTLI_LEVELS.start(), *BROTLI_LEVELS.end())
        }
    };
    Some((coding, level, length))
}

/// The weights of gzip (or x-gzip) and br in Accept-Encoding, in thousandths, `*` standing
/// for a coding not named. A malformed weight refuses the coding, as nginx reads it.
fn accepted(headers: &HeaderMap) -> (u16, u16) {
    let (mut gzip, mut br, mut any) = (None, None, None);
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let mut q = 1000;
            for p in parts {
                let p = p.trim();
                if let Some(w) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                    q = qvalue(w.trim()).unwrap_or(0);
                }
            }
            let slot = if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                &mut gzip
            } else if name.eq_ignore_ascii_case("br") {
                &mut br
            } else if name == "*" {
                &mut any
            } else {
                continue;
            };
            *slot = Some(q);
        }
    }
    (gzip.or(any).unwrap_or(0), br.or(any).unwrap_or(0))
}

/// An RFC 9110 weight in thousandths: `0`, `0.xxx`, `1`, `1.000`.
fn qvalue(w: &str) -> Option<u16> {
    let (int, frac) = w.split_once('.').unwrap_or((w, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// `Cache-Control: no-transform`: an intermediary must not change the representation
/// (RFC 9111 5.2.2.6).
fn no_transform(h: &HeaderMap) -> bool {
    h.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-transform")))
    })
}

/// Adds `Vary: Accept-Encoding` unless the response already varies on it (or on everything).
fn vary(h: &mut HeaderMap) {
    let covered = h.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|f| {
                let f = f.trim();
                f == "*" || f.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !covered {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// A compressed body is no longer byte-identical: a strong ETag becomes weak (as nginx's
/// ngx_http_weak_etag), one that is not a valid tag is dropped.
fn weak_etag(h: &mut HeaderMap) {
    let Some(tag) = h.get(header::ETAG) else { return };
    let bytes = tag.as_bytes();
    if bytes.starts_with(b"W/") {
        return;
    }
    if bytes.first() == Some(&b'"') {
        let mut weak = Vec::with_capacity(bytes.len() + 2);
        weak.extend_from_slice(b"W/");
        weak.extend_from_slice(bytes);
        if let Ok(v) = HeaderValue::from_bytes(&weak) {
            h.insert(header::ETAG, v);
            return;
        }
    }
    h.remove(header::ETAG);
}

/// The encoder's state: its output gathers in a Vec.
// Large (brotli's state is over 5 KiB inline), on purpose: the whole Encoder is boxed once in
// the response Body, so a compressed response makes one allocation of its own.
#[allow(clippy::large_enum_variant)]
enum State {
    Gzip(flate2::Compress, Vec<u8>),
    Brotli(brotli::CompressorWriter<Vec<u8>>),
    Finished,
}

/// The window for a body of `length` bytes, if known: as small as still covers the body
/// (nginx's gzip and ngx_brotli shrink theirs the same way), so a short response does not
/// allocate and clear the largest tables.
fn window(max: u8, min: u8, length: Option<u64>) -> u8 {
    let mut bits = max;
    if let Some(n) = length.filter(|n| *n > 0) {
        while bits > min && n < (1u64 << (bits - 1)) {
            bits -= 1;
        }
    }
    bits
}

impl State {
    fn new(coding: Coding, level: u32, length: Option<u64>) -> State {
        match coding {
            // zlib's gzip wrapper (header, CRC, trailer) over a window of 2^9..2^15 bytes.
            Coding::Gzip => State::Gzip(
                flate2::Compress::new_gzip(flate2::Compression::new(level), window(15, 9, length)),
                Vec::new(),
            ),
            Coding::Brotli => {
                let params = brotli::enc::BrotliEncoderParams {
                    // At most 11: `compress` clamped it.
                    quality: level as i32,
                    lgwin: i32::from(window(BROTLI_LGWIN, 10, length)),
                    // Lets brotli pick smaller hash tables for a short body.
                    size_hint: length.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)),
                    ..Default::default()
                };
                State::Brotli(brotli::CompressorWriter::with_params(
                    Vec::new(),
                    BROTLI_BUFFER,
                    &params,
                ))
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            State::Gzip(z, out) => deflate(z, data, out, flate2::FlushCompress::None),
            State::Brotli(e) => e.write_all(data),
            State::Finished => Ok(()),
        }
    }

    /// Makes everything written so far decodable (a sync flush).
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            State::Gzip(z, out) => deflate(z, &[], out, flate2::FlushCompress::Sync),
            State::Brotli(e) => e.flush(),
            State::Finished => Ok(()),
        }
    }

    /// The output so far.
    fn take(&mut self) -> Bytes {
        match self {
            State::Gzip(_, out) => Bytes::from(std::mem::take(out)),
            State::Brotli(e) => Bytes::from(std::mem::take(e.get_mut())),
            State::Finished => Bytes::new(),
        }
    }

    fn pending(&self) -> usize {
        match self {
            State::Gzip(_, out) => out.len(),
            State::Brotli(e) => e.get_ref().len(),
            State::Finished => 0,
        }
    }

    /// Ends the stream: the rest of the output.
    fn finish(&mut self) -> std::io::Result<Bytes> {
        match std::mem::replace(self, State::Finished) {
            State::Gzip(mut z, mut out) => {
                deflate(&mut z, &[], &mut out, flate2::FlushCompress::Finish)?;
                Ok(Bytes::from(out))
            }
            State::Brotli(e) => Ok(Bytes::from(e.into_inner())),
            State::Finished => Ok(Bytes::new()),
        }
    }
}

/// Feeds `input` to zlib, appending what it gives to `out`, until all input is taken and,
/// for a flush or the finish, all output is out.
fn deflate(
    z: &mut flate2::Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    flush: flate2::FlushCompress,
) -> std::io::Result<()> {
    const ROOM: usize = 8 * 1024;
    loop {
        if out.capacity() - out.len() < ROOM {
            out.reserve(ROOM);
        }
        let before = z.total_in();
        let status = z.compress_vec(input, out, flush).map_err(std::io::Error::other)?;
        let taken = usize::try_from(z.total_in() - before).unwrap_or(input.len());
        input = input.get(taken..).unwrap_or_default();
        // Output that filled the room may have more behind it.
        let room_left = out.len() < out.capacity();
        match status {
            flate2::Status::StreamEnd => return Ok(()),
            // No progress possible: nothing more to give.
            flate2::Status::BufError if room_left => return Ok(()),
            _ if input.is_empty() && room_left && flush != flate2::FlushCompress::Finish => return Ok(()),
            _ => {}
        }
    }
}

/// A body compressed as it streams. Input is taken only when the connection asks for more,
/// so memory stays bounded (the coder's window and at most about `OUT_HIGH` of output);
/// whenever the upstream has nothing more for now, what was written is flushed and sent, so a
/// slow stream reaches the client piece by piece.
pub struct Encoder<B> {
    body: B,
    state: State,
    /// Input written since the last flush.
    dirty: bool,
    /// The upstream's trailers, sent after the last compressed bytes.
    trailers: Option<HeaderMap>,
}

impl<B> Encoder<B> {
    /// `length`: the body's length when the upstream declared it (smaller tables for short ones).
    pub fn new(body: B, coding: Coding, level: u32, length: Option<u64>) -> Self {
        Encoder {
            body,
            state: State::new(coding, level, length),
            dirty: false,
            trailers: None,
        }
    }
}

fn io_error(e: std::io::Error) -> BoxError {
    format!("compressing the response: {e}").into()
}

impl<B> HttpBody for Encoder<B>
where
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if matches!(this.state, State::Finished) {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if data.is_empty() {
                            continue;
                        }
                        this.state.write(&data).map_err(io_error)?;
                        this.dirty = true;
                        if this.state.pending() >= OUT_HIGH {
                            return Poll::Ready(Some(Ok(Frame::data(this.state.take()))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            this.trailers = Some(t);
                        }
                        return Poll::Ready(Some(this.state.finish().map(Frame::data).map_err(io_error)));
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    return Poll::Ready(Some(this.state.finish().map(Frame::data).map_err(io_error)));
                }
                Poll::Pending => {
                    if this.dirty {
                        this.dirty = false;
                        this.state.flush().map_err(io_error)?;
                        let out = this.state.take();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Finished) && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn weights(ae: &str) -> (u16, u16) {
        accepted(&headers(&[("accept-encoding", ae)]))
    }

    #[test]
    fn accept_encoding_weights() {
        assert_eq!(weights("gzip, deflate, br"), (1000, 1000));
        assert_eq!(weights("gzip;q=0.5, br;q=0.25"), (500, 250));
        assert_eq!(weights("GZIP ; Q=1.000"), (1000, 0));
        assert_eq!(weights("x-gzip"), (1000, 0));
        assert_eq!(weights("br;q=0, *"), (1000, 0));
        assert_eq!(weights("*;q=0.1, gzip;q=0"), (0, 100));
        assert_eq!(weights("identity"), (0, 0));
        assert_eq!(weights("gzip;q=2, br;q=0.1234, *;q=abc"), (0, 0));
        assert_eq!(weights(""), (0, 0));
        let two = headers(&[("accept-encoding", "gzip"), ("accept-encoding", "br;q=0.9")]);
        assert_eq!(accepted(&two), (1000, 900));
    }

    #[test]
    fn windows_cover_the_declared_length() {
        assert_eq!(window(15, 9, None), 15);
        assert_eq!(window(15, 9, Some(0)), 15);
        assert_eq!(window(15, 9, Some(10_240)), 14);
        assert_eq!(window(15, 9, Some(100)), 9);
        assert_eq!(window(15, 9, Some(u64::MAX)), 15);
        assert_eq!(window(19, 10, Some(10_240)), 14);
        assert_eq!(window(19, 10, Some(1 << 20)), 19);
    }

    #[test]
    fn qvalues() {
        for (w, q) in [
            ("0", 0),
            ("0.", 0),
            ("0.5", 500),
            ("0.001", 1),
            ("1", 1000),
            ("1.0", 1000),
        ] {
            assert_eq!(qvalue(w), Some(q), "{w}");
        }
        for w in ["1.5", "2", "0.0001", "-1", "", "0.a", "+1"] {
            assert_eq!(qvalue(w), None, "{w}");
        }
    }

    fn on() -> Compression {
        let mut c = Compression::default();
        c.gzip.enabled = true;
        c.brotli.enabled = true;
        c
    }

    const BOTH: Asked = Asked {
        gzip: 1000,
        br: 1000,
        http11: true,
    };

    #[test]
    fn choice_follows_status_type_length_and_weights() {
        let c = on();
        let text = || headers(&[("content-type", "text/plain"), ("content-length", "1000")]);
        let mut h = text();
        assert_eq!(
            choose(&c, BOTH, StatusCode::OK, &mut h),
            Some((Coding::Brotli, 4, Some(1000)))
        );
        assert_eq!(h.get("content-encoding").unwrap(), "br");
        assert!(h.get("content-length").is_none());
        assert_eq!(h.get("vary").unwrap(), "Accept-Encoding");
        let gzip_more = Asked { br: 999, ..BOTH };
        assert_eq!(
            choose(&c, gzip_more, StatusCode::OK, &mut text()),
            Some((Coding::Gzip, 1, Some(1000)))
        );
        let http10 = Asked {
            br: 0,
            http11: false,
            ..BOTH
        };
        assert_eq!(choose(&c, http10, StatusCode::OK, &mut text()), None);
        for s in [
            StatusCode::PARTIAL_CONTENT,
            StatusCode::NO_CONTENT,
            StatusCode::NOT_MODIFIED,
            StatusCode::FOUND,
        ] {
            let mut h = text();
            assert_eq!(choose(&c, BOTH, s, &mut h), None);
            assert!(h.get("vary").is_none(), "{s}");
        }
        assert!(choose(&c, BOTH, StatusCode::NOT_FOUND, &mut text()).is_some());
        // Between brotli's minimum (20) and gzip's (256): brotli only.
        let mut short = headers(&[("content-type", "text/plain"), ("content-length", "100")]);
        let gzip_only = Asked { br: 0, ..BOTH };
        assert_eq!(choose(&c, gzip_only, StatusCode::OK, &mut short), None);
        assert_eq!(short.get("vary").unwrap(), "Accept-Encoding", "a br variant exists");
        let mut tiny = headers(&[("content-type", "text/plain"), ("content-length", "19")]);
        assert_eq!(choose(&c, BOTH, StatusCode::OK, &mut tiny), None);
        assert!(tiny.get("vary").is_none());
        // Unknown length: compressed.
        let mut streamed = headers(&[("content-type", "text/css")]);
        assert!(choose(&c, BOTH, StatusCode::OK, &mut streamed).is_some());
        let mut png = headers(&[("content-type", "image/png")]);
        assert_eq!(choose(&c, BOTH, StatusCode::OK, &mut png), None);
        let mut encoded = headers(&[("content-type", "text/plain"), ("content-encoding", "gzip")]);
        assert_eq!(choose(&c, BOTH, StatusCode::OK, &mut encoded), None);
        let mut kept = headers(&[
            ("content-type", "text/plain"),
            ("cache-control", "public, No-Transform"),
        ]);
        assert_eq!(choose(&c, BOTH, StatusCode::OK, &mut kept), None);
        let none = Asked {
            gzip: 0,
            br: 0,
            http11: true,
        };
        let mut h = headers(&[("content-type", "text/plain"), ("vary", "Origin, accept-encoding")]);
        assert_eq!(choose(&c, none, StatusCode::OK, &mut h), None);
        assert_eq!(h.get_all("vary").iter().count(), 1, "already varies on it");
    }

    #[test]
    fn etags_become_weak_and_ranges_go() {
        let c = on();
        let mut h = headers(&[
            ("content-type", "text/plain"),
            ("etag", "\"abc\""),
            ("accept-ranges", "bytes"),
        ]);
        choose(&c, BOTH, StatusCode::OK, &mut h).unwrap();
        assert_eq!(h.get("etag").unwrap(), "W/\"abc\"");
        assert!(h.get("accept-ranges").is_none());
        let mut weak = headers(&[("content-type", "text/plain"), ("etag", "W/\"x\"")]);
        choose(&c, BOTH, StatusCode::OK, &mut weak).unwrap();
        assert_eq!(weak.get("etag").unwrap(), "W/\"x\"");
        let mut bad = headers(&[("content-type", "text/plain"), ("etag", "abc")]);
        choose(&c, BOTH, StatusCode::OK, &mut bad).unwrap();
        assert!(bad.get("etag").is_none());
    }

    fn stream(pieces: Vec<&'static [u8]>) -> impl HttpBody<Data = Bytes, Error = BoxError> + Unpin {
        let frames = pieces
            .into_iter()
            .map(|p| Ok::<_, BoxError>(Frame::data(Bytes::from_static(p))));
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap(),
            Coding::Brotli => brotli::Decompressor::new(data, 4096).read_to_end(&mut out).unwrap(),
        };
        out
    }

    #[tokio::test]
    async fn encodes_to_what_decodes_back() {
        let big: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let big: &'static [u8] = big.leak();
        let whole = Some(12 + big.len() as u64);
        // Any declared length only sizes the window: a wrong one still gives a valid stream.
        for (coding, length) in [Coding::Gzip, Coding::Brotli]
            .into_iter()
            .flat_map(|c| [(c, None), (c, whole), (c, Some(300))])
        {
            for level in [0, 1, 4, 9, 11] {
                let level = if coding == Coding::Gzip {
                    level.clamp(1, 9)
                } else {
                    level
                };
                let pieces = vec![&b"hello "[..], &b""[..], &b"world\n"[..], big];
                let got = Encoder::new(stream(pieces), coding, level, length)
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes();
                let mut want = b"hello world\n".to_vec();
                want.extend_from_slice(big);
                assert!(got.len() < want.len() / 2, "{coding:?} {level}: {}", got.len());
                assert_eq!(decode(coding, &got), want, "{coding:?} {level} {length:?}");
            }
            let empty = Encoder::new(stream(vec![]), coding, 1, None)
                .collect()
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(decode(coding, &empty), b"");
        }
    }

    #[tokio::test]
    async fn trailers_follow_the_last_compressed_bytes() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"some text"))),
            Ok(Frame::trailers(t.clone())),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let collected = Encoder::new(body, Coding::Gzip, 1, None).collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&t));
        assert_eq!(decode(Coding::Gzip, &collected.to_bytes()), b"some text");
    }

    #[tokio::test]
    async fn each_piece_is_sent_when_the_upstream_waits() {
        // A body fed through a channel: the encoder must hand out a decodable piece while
        // the second has not been written yet.
        for coding in [Coding::Gzip, Coding::Brotli] {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
            let body = StreamBody::new(tokio_stream_from(rx));
            let mut enc = Encoder::new(body, coding, 4, None);
            tx.send(Ok(Frame::data(Bytes::from_static(b"first piece;"))))
                .await
                .unwrap();
            let first = enc.frame().await.unwrap().unwrap().into_data().unwrap();
            let mut all = first.to_vec();
            // What came so far decodes to the first piece (a streaming decoder reads it).
            assert_eq!(decode_prefix(coding, &all), b"first piece;", "{coding:?}");
            tx.send(Ok(Frame::data(Bytes::from_static(b"second")))).await.unwrap();
            drop(tx);
            while let Some(f) = enc.frame().await {
                all.extend_from_slice(&f.unwrap().into_data().unwrap());
            }
            assert_eq!(decode(coding, &all), b"first piece;second");
        }
    }

    fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// Decodes what a stream has sent so far (it has no end yet).
    fn decode_prefix(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 1024];
        let n = match coding {
            Coding::Gzip => flate2::read::GzDecoder::new(data).read(&mut out).unwrap(),
            Coding::Brotli => brotli::Decompressor::new(data, 4096).read(&mut out).unwrap(),
        };
        out.truncate(n);
        out
    }
}
