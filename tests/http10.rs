//! `proxy-http-version: "1.0"` end to end: a raw TCP backend written here records the exact
//! bytes each connection brought and answers as an HTTP/1.0 server does (no length, the
//! body ended by the close).

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use portico::fixture::{self, Prefix, yaml};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What each accepted connection carried, in accept order.
type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

/// The answer body: long enough to take several reads, so the close really ends it.
fn answer_body() -> String {
    (0..4000).map(|i| format!("line {i}\n")).collect()
}

/// Reads each request (head, then the body its Content-Length or chunked coding frames) and
/// records it under its connection. `keep`: answers `HTTP/1.0 200` with `Connection:
/// keep-alive` and a length, and waits for the next request on the connection; else answers
/// with no length and closes, as an HTTP/1.0 server does.
async fn http10_backend(keep: bool) -> (SocketAddr, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { continue };
            let i = {
                let mut all = record.lock().unwrap();
                all.push(Vec::new());
                all.len() - 1
            };
            let record = record.clone();
            tokio::spawn(async move {
                while let Some(got) = read_request(&mut s).await {
                    record.lock().unwrap()[i].extend_from_slice(&got);
                    if keep {
                        let out = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
                        s.write_all(out).await.unwrap();
                        continue;
                    }
                    let mut out = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
                    out.extend_from_slice(answer_body().as_bytes());
                    s.write_all(&out).await.unwrap();
                    let _ = s.shutdown().await;
                    return;
                }
            });
        }
    });
    (addr, seen)
}

/// One request's bytes; `None` once the peer closed without starting one.
async fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            let chunked = head.contains("transfer-encoding: chunked");
            if (!chunked && got.len() >= end + 4 + len) || (chunked && got.ends_with(b"0\r\n\r\n")) {
                return Some(got);
            }
        }
        match s.read(&mut buf).await {
            Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
            _ => return (!got.is_empty()).then_some(got),
        }
    }
}

fn manifests(backend: SocketAddr) -> String {
    let ing = |name: &str, host: &str, version: &str| {
        fixture::ingress("default", name)
            .class("portico")
            .rule(host, "/", Prefix, "old", 80)
            .annotation("nginx.ingress.kubernetes.io/proxy-http-version", version)
    };
    let small = ing("small", "small.test", "1.0").annotation("nginx.ingress.kubernetes.io/proxy-body-size", "8");
    class()
        + &service("old", &[backend])
        + &yaml(&[
            ing("ten", "ten.test", "1.0").into(),
            ing("eleven", "eleven.test", "1.1").into(),
            small.into(),
        ])
}

fn text(seen: &Seen, i: usize) -> String {
    String::from_utf8_lossy(&seen.lock().unwrap()[i]).into_owned()
}

/// The request goes as nginx's `proxy_http_version 1.0` sends it: an HTTP/1.0 request line,
/// `Connection: close`, the body with its Content-Length; the HTTP/1.0 answer reaches the
/// client whole; the next request opens a connection of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_as_http10_and_every_one_on_a_new_connection() {
    let (backend, seen) = http10_backend(false).await;
    let p = Portico::start(&[("all.yaml", manifests(backend))], &[]).await;
    let routes = p.routes().await;
    assert_eq!(diagnostics_of(&routes, "ten"), Vec::<String>::new(), "{routes}");

    let req = Request::builder()
        .method("POST")
        .uri("/upload?x=1")
        .header("host", "ten.test")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let (status, _, body) = request(p.http, req).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, answer_body(), "the whole body, ended by the upstream's close");
    let first = text(&seen, 0);
    assert!(first.starts_with("POST /upload?x=1 HTTP/1.0\r\n"), "{first}");
    let lower = first.to_ascii_lowercase();
    assert!(lower.contains("\r\nconnection: close\r\n"), "{first}");
    assert!(lower.contains("\r\ncontent-length: 5\r\n"), "{first}");
    assert!(!lower.contains("transfer-encoding"), "{first}");
    assert!(lower.contains("\r\nhost: ten.test\r\n"), "{first}");
    assert!(first.ends_with("\r\n\r\nhello"), "{first}");

    let (status, _, body) = get(p.http, "ten.test", "/again").await.unwrap();
    assert_eq!((status, body.len()), (200, answer_body().len()));
    assert_eq!(seen.lock().unwrap().len(), 2, "a second upstream connection");
    let second = text(&seen, 1);
    assert!(second.starts_with("GET /again HTTP/1.0\r\n"), "{second}");
    assert!(
        second.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
        "{second}"
    );

    // "1.1" (the default) keeps HTTP/1.1 to the same backend.
    let (status, _, body) = get(p.http, "eleven.test", "/").await.unwrap();
    assert_eq!((status, body.len()), (200, answer_body().len()));
    let third = text(&seen, 2);
    assert!(third.starts_with("GET / HTTP/1.1\r\n"), "{third}");
    assert!(!third.to_ascii_lowercase().contains("connection: close"), "{third}");
}

/// A chunked POST of "hello world" (two chunks) to `host`, written by hand; the whole
/// answer, read until the close.
async fn chunked_post(addr: SocketAddr, host: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let wire = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
    s.write_all(wire.as_bytes()).await.unwrap();
    // Until the close; a reset after an answer that left the body unread ends it too.
    let (mut answer, mut buf) = (Vec::new(), [0u8; 4096]);
    while let Ok(n @ 1..) = s.read(&mut buf).await {
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A chunked request body has no length to send as HTTP/1.0: as nginx, Portico reads it
/// whole and sends it with its Content-Length; past `proxy-body-size` it answers 413 and
/// nothing reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_length_is_buffered_and_sent_with_its_length() {
    let (backend, seen) = http10_backend(false).await;
    let p = Portico::start(&[("all.yaml", manifests(backend))], &[]).await;
    let answer = chunked_post(p.http, "ten.test").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let first = text(&seen, 0);
    assert!(first.starts_with("POST / HTTP/1.0\r\n"), "{first}");
    let lower = first.to_ascii_lowercase();
    assert!(lower.contains("\r\ncontent-length: 11\r\n"), "{first}");
    assert!(!lower.contains("transfer-encoding"), "{first}");
    assert!(first.ends_with("\r\n\r\nhello world"), "{first}");

    // Over proxy-body-size (8 bytes): 413, and the backend sees nothing.
    let answer = chunked_post(p.http, "small.test").await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert_eq!(seen.lock().unwrap().len(), 1, "the refused body reached no backend");

    // The same body on the HTTP/1.1 route goes as it came, chunked.
    let answer = chunked_post(p.http, "eleven.test").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let third = text(&seen, 1);
    assert!(third.starts_with("POST / HTTP/1.1\r\n"), "{third}");
    assert!(
        third.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "{third}"
    );
}

/// An upstream that offers keep-alive in its HTTP/1.0 answer still gets each request of an
/// HTTP/1.0 route on a connection of its own: Portico asked for the close and never pools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_answer_is_not_pooled() {
    let (backend, seen) = http10_backend(true).await;
    let p = Portico::start(&[("all.yaml", manifests(backend))], &[]).await;
    for path in ["/one", "/two"] {
        let (status, _, body) = get(p.http, "ten.test", path).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    let all: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all[0].starts_with("GET /one HTTP/1.0\r\n") && all[1].starts_with("GET /two HTTP/1.0\r\n"),
        "{all:?}"
    );
    // The HTTP/1.1 route to the same backend does keep its connection: the test can tell.
    for path in ["/three", "/four"] {
        let (status, _, _) = get(p.http, "eleven.test", path).await.unwrap();
        assert_eq!(status, 200);
    }
    let all = seen.lock().unwrap();
    assert_eq!(all.len(), 3, "the HTTP/1.1 route's two requests on one connection");
    let third = String::from_utf8_lossy(&all[2]);
    assert!(
        third.contains("GET /three HTTP/1.1\r\n") && third.contains("GET /four HTTP/1.1\r\n"),
        "{third}"
    );
}
