//! Response compression (`--use-gzip`, `--enable-brotli`, ingress-nginx's use-gzip and
//! enable-brotli with their default settings) end to end: a scripted upstream writes exact
//! bytes, clients (hyper, raw sockets, curl) ask with Accept-Encoding and decode what they get.

mod support;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// 10 KiB of text that compresses well but not trivially.
fn text() -> Vec<u8> {
    (0..)
        .flat_map(|i: u32| format!("line {i}: the quick brown fox {}\n", i * 7919 % 1000).into_bytes())
        .take(10 * 1024)
        .collect()
}

/// Waits of the streamed response: the upstream writes its second piece only when released.
type Release = Arc<Mutex<Option<oneshot::Receiver<()>>>>;

/// The head and body the upstream answers for a method and path.
fn script(method: &str, path: &str) -> Vec<u8> {
    let with_body = |head: &str, body: &[u8]| {
        let mut v = format!("HTTP/1.1 {head}\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        if method != "HEAD" {
            v.extend_from_slice(body);
        }
        v
    };
    let t = text();
    match path {
        "/text" => with_body(
            "200 OK\r\ncontent-type: text/plain; charset=utf-8\r\netag: \"v1\"\r\naccept-ranges: bytes",
            &t,
        ),
        "/html" => with_body("200 OK\r\ncontent-type: text/html", &t),
        "/missing" => with_body("404 Not Found\r\ncontent-type: application/json", &t),
        "/error" => with_body("500 Internal Server Error\r\ncontent-type: text/plain", &t),
        "/png" => with_body("200 OK\r\ncontent-type: image/png", &t),
        "/events" => with_body("200 OK\r\ncontent-type: text/event-stream", &t),
        "/small" => with_body("200 OK\r\ncontent-type: text/plain", &t[..100]),
        "/tiny" => with_body("200 OK\r\ncontent-type: text/plain", &t[..10]),
        "/encoded" => with_body("200 OK\r\ncontent-type: text/plain\r\ncontent-encoding: gzip", &t),
        "/no-transform" => with_body("200 OK\r\ncontent-type: text/plain\r\ncache-control: no-transform", &t),
        "/range" => with_body(
            "206 Partial Content\r\ncontent-type: text/plain\r\ncontent-range: bytes 0-4095/10240",
            &t[..4096],
        ),
        "/nocontent" => b"HTTP/1.1 204 No Content\r\ncontent-type: text/plain\r\n\r\n".to_vec(),
        "/notmodified" => b"HTTP/1.1 304 Not Modified\r\ncontent-type: text/plain\r\netag: \"v1\"\r\n\r\n".to_vec(),
        // Chunked, length unknown: compressed whatever its size.
        "/chunked" => {
            let mut v =
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for piece in t.chunks(3000) {
                v.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                v.extend_from_slice(piece);
                v.extend_from_slice(b"\r\n");
            }
            v.extend_from_slice(b"0\r\n\r\n");
            v
        }
        _ => with_body("404 Not Found\r\ncontent-type: text/plain", b"no such script"),
    }
}

const FIRST: &[u8] = b"data: the first piece of a slow stream\n\n";
const SECOND: &[u8] = b"data: the second piece, written once the first was read\n\n";

/// The scripted upstream: answers each request on a connection from [`script`]; `/stream`
/// writes [`FIRST`], waits for the test's release, then writes [`SECOND`].
async fn upstream(release: Release) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let release = release.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_head(&mut s, &mut buf).await {
                    let mut words = head.split_whitespace();
                    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                    if path == "/stream" {
                        let chunk = |b: &[u8]| [format!("{:x}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat();
                        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                        if s.write_all(&[&head[..], &chunk(FIRST)].concat()).await.is_err() {
                            return;
                        }
                        let wait = release.lock().unwrap().take();
                        if let Some(wait) = wait {
                            let _ = wait.await;
                        }
                        let _ = s.write_all(&[chunk(SECOND), b"0\r\n\r\n".to_vec()].concat()).await;
                        continue;
                    }
                    if s.write_all(&script(method, path)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn start(flags: &[&str]) -> (Portico, Release) {
    let release: Release = Arc::new(Mutex::new(None));
    let addr = upstream(release.clone()).await;
    let manifests = class() + &service("up", &[addr]) + &annotated_ingress("i", "c.test", "/", "up", &[]);
    (Portico::start(&[("all.yaml", manifests)], flags).await, release)
}

const BOTH: &[&str] = &["--use-gzip", "--enable-brotli"];

/// One request with these extra fields: status, head and the raw (undecoded) body.
async fn fetch(addr: SocketAddr, method: &str, path: &str, fields: &[(&str, &str)]) -> (u16, http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path).header("host", "c.test");
    for (k, v) in fields {
        req = req.header(*k, *v);
    }
    let resp = send(addr, req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status.as_u16(), parts.headers, body)
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

fn field<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn gzip_and_brotli_by_accept_encoding() {
    let (p, _) = start(BOTH).await;
    let t = text();
    for (ae, coding) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("gzip, deflate, br", "br"),
        ("br;q=0.5, gzip", "gzip"),
        ("gzip;q=0, *", "br"),
        ("*", "br"),
        ("br;q=0, deflate, x-gzip;q=0.1", "gzip"),
    ] {
        let (status, h, body) = fetch(p.http, "GET", "/text", &[("accept-encoding", ae)]).await;
        assert_eq!(status, 200, "{ae}");
        assert_eq!(field(&h, "content-encoding"), Some(coding), "{ae}");
        assert_eq!(field(&h, "content-length"), None, "{ae}");
        assert_eq!(field(&h, "accept-ranges"), None, "{ae}");
        assert_eq!(field(&h, "vary"), Some("Accept-Encoding"), "{ae}");
        assert_eq!(field(&h, "etag"), Some("W/\"v1\""), "a strong ETag becomes weak: {ae}");
        let plain = if coding == "gzip" {
            gunzip(&body)
        } else {
            unbrotli(&body)
        };
        assert_eq!(plain, t, "{ae}");
        assert!(body.len() < t.len() / 2, "{ae}: {} bytes", body.len());
    }
    // Always text/html; 404s as well; a body of unknown length (chunked upstream).
    for path in ["/html", "/missing", "/chunked"] {
        let (_, h, body) = fetch(p.http, "GET", path, &[("accept-encoding", "gzip")]).await;
        assert_eq!(field(&h, "content-encoding"), Some("gzip"), "{path}");
        assert_eq!(gunzip(&body), t, "{path}");
    }
    // No coding acceptable: the bytes as sent, marked as varying.
    for ae in [None, Some("identity"), Some("gzip;q=0, br;q=0"), Some("deflate")] {
        let fields: Vec<_> = ae.iter().map(|v| ("accept-encoding", *v)).collect();
        let (status, h, body) = fetch(p.http, "GET", "/text", &fields).await;
        assert_eq!(status, 200);
        assert_eq!(field(&h, "content-encoding"), None, "{ae:?}");
        assert_eq!(field(&h, "content-length"), Some("10240"), "{ae:?}");
        assert_eq!(field(&h, "etag"), Some("\"v1\""), "{ae:?}");
        assert_eq!(field(&h, "vary"), Some("Accept-Encoding"), "{ae:?}");
        assert_eq!(body, t, "{ae:?}");
    }
}

#[tokio::test]
async fn what_stays_plain() {
    let (p, _) = start(BOTH).await;
    let t = text();
    let ae = [("accept-encoding", "gzip, br")];
    // Not a listed type (text/event-stream is not in ingress-nginx's lists either), already
    // encoded, no-transform, a status other than 200/403/404.
    for (path, len) in [
        ("/png", 10240),
        ("/events", 10240),
        ("/encoded", 10240),
        ("/no-transform", 10240),
        ("/error", 10240),
    ] {
        let (_, h, body) = fetch(p.http, "GET", path, &ae).await;
        assert_eq!(
            field(&h, "content-encoding"),
            (path == "/encoded").then_some("gzip"),
            "{path}"
        );
        assert_eq!(field(&h, "content-length"), Some(len.to_string().as_str()), "{path}");
        assert_eq!(body, t, "{path}: untouched");
    }
    // Under brotli's minimum (20): plain. Under gzip's (256) only: brotli, or plain for a
    // gzip-only client.
    let (_, h, body) = fetch(p.http, "GET", "/tiny", &ae).await;
    assert_eq!((field(&h, "content-encoding"), &body[..]), (None, &t[..10]));
    let (_, h, body) = fetch(p.http, "GET", "/small", &[("accept-encoding", "gzip")]).await;
    assert_eq!((field(&h, "content-encoding"), &body[..]), (None, &t[..100]));
    assert_eq!(field(&h, "vary"), Some("Accept-Encoding"), "a br variant exists");
    let (_, h, body) = fetch(p.http, "GET", "/small", &ae).await;
    assert_eq!(field(&h, "content-encoding"), Some("br"));
    assert_eq!(unbrotli(&body), &t[..100]);
    // HEAD: the head as the upstream sent it.
    let (status, h, body) = fetch(p.http, "HEAD", "/text", &ae).await;
    assert_eq!((status, field(&h, "content-encoding"), body.len()), (200, None, 0));
    assert_eq!(field(&h, "content-length"), Some("10240"));
    assert_eq!(field(&h, "vary"), None);
    // A range answered with 206, 204 and 304: never compressed.
    let (status, h, body) = fetch(
        p.http,
        "GET",
        "/range",
        &[("accept-encoding", "gzip, br"), ("range", "bytes=0-4095")],
    )
    .await;
    assert_eq!((status, field(&h, "content-encoding")), (206, None));
    assert_eq!(body, &t[..4096]);
    for (path, code) in [("/nocontent", 204), ("/notmodified", 304)] {
        let (status, h, body) = fetch(p.http, "GET", path, &ae).await;
        assert_eq!(
            (status, field(&h, "content-encoding"), body.len()),
            (code, None, 0),
            "{path}"
        );
    }
    // HTTP/1.0 clients are not gzipped (ingress-nginx's gzip_http_version 1.1).
    let mut s = TcpStream::connect(p.http).await.unwrap();
    s.write_all(b"GET /text HTTP/1.0\r\nhost: c.test\r\naccept-encoding: gzip\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(raw.starts_with("http/1.") && !raw.contains("content-encoding"), "{raw}");
    assert!(raw.ends_with(&String::from_utf8_lossy(&t).to_ascii_lowercase()));
}

#[tokio::test]
async fn off_unless_enabled() {
    let (p, _) = start(&[]).await;
    let (_, h, body) = fetch(p.http, "GET", "/text", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!((field(&h, "content-encoding"), field(&h, "vary")), (None, None));
    assert_eq!(body, text());
    // gzip alone: a br-only client gets plain text.
    let (p, _) = start(&["--use-gzip"]).await;
    let (_, h, body) = fetch(p.http, "GET", "/text", &[("accept-encoding", "br")]).await;
    assert_eq!(field(&h, "content-encoding"), None);
    assert_eq!(body, text());
    let (_, h, body) = fetch(p.http, "GET", "/text", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(field(&h, "content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&body), text());
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed")
}

#[tokio::test]
async fn curl_compressed_and_raw() {
    let (p, _) = start(BOTH).await;
    let url = format!("http://c.test:{}/text", p.http.port());
    let resolve = format!("c.test:{}:127.0.0.1", p.http.port());
    let t = text();
    // --compressed asks for everything this curl decodes (gzip and br among them), decodes it.
    let out = tokio::task::spawn_blocking({
        let (url, resolve) = (url.clone(), resolve.clone());
        move || curl(&["--compressed", "--resolve", &resolve, "-D", "/dev/stderr", &url])
    })
    .await
    .unwrap();
    let head = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(head.contains("content-encoding: br"), "{head}");
    assert_eq!(out.stdout, t);
    // Raw: the bytes on the wire, decoded here.
    for (ae, decode) in [("gzip", gunzip as fn(&[u8]) -> Vec<u8>), ("br", unbrotli)] {
        let out = tokio::task::spawn_blocking({
            let (url, resolve) = (url.clone(), resolve.clone());
            let field = format!("accept-encoding: {ae}");
            move || curl(&["--resolve", &resolve, "-H", &field, &url])
        })
        .await
        .unwrap();
        assert_eq!(decode(&out.stdout), t, "{ae}");
    }
}

/// A streamed decoder for either coding: what the client can read of what came so far.
#[allow(clippy::large_enum_variant)] // one, on the test's stack
enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Brotli(brotli::DecompressorWriter<Vec<u8>>),
}

impl Decoder {
    fn feed(&mut self, data: &[u8]) -> &[u8] {
        match self {
            Decoder::Gzip(d) => {
                d.write_all(data).unwrap();
                d.flush().unwrap();
                d.get_ref()
            }
            Decoder::Brotli(d) => {
                d.write_all(data).unwrap();
                d.flush().unwrap();
                d.get_ref()
            }
        }
    }
}

#[tokio::test]
async fn a_slow_stream_arrives_piece_by_piece() {
    let (p, release) = start(BOTH).await;
    for coding in ["gzip", "br"] {
        let (tx, rx) = oneshot::channel();
        *release.lock().unwrap() = Some(rx);
        let req = Request::builder()
            .uri("/stream")
            .header("host", "c.test")
            .header("accept-encoding", coding)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send(p.http, req).await.unwrap();
        assert_eq!(resp.headers()["content-encoding"], coding);
        let mut body = resp.into_body();
        let mut decoder = match coding {
            "gzip" => Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
            _ => Decoder::Brotli(brotli::DecompressorWriter::new(Vec::new(), 4096)),
        };
        // The upstream waits for the release before it writes the second piece, so the first
        // must come through on its own. (The bound only turns a hang into a failure.)
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(20), body.frame())
                .await
                .expect("the first piece is held back")
                .expect("the body goes on")
                .unwrap();
            if let Ok(data) = frame.into_data()
                && decoder.feed(&data) == FIRST
            {
                break;
            }
        }
        tx.send(()).unwrap();
        let mut rest = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                rest.extend_from_slice(&data);
            }
        }
        assert_eq!(decoder.feed(&rest), [FIRST, SECOND].concat(), "{coding}");
        if let Decoder::Gzip(d) = decoder {
            assert_eq!(d.finish().unwrap(), [FIRST, SECOND].concat(), "a complete gzip stream");
        }
    }
}
