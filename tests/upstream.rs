//! Portico's own upstream HTTP/1.1 client (requests without body), end to end against a
//! scripted upstream that writes exact bytes: framing (Content-Length, chunked with
//! trailers, close-delimited, HEAD, 204, 304, 1xx), keep-alive reuse and when a connection
//! must not be reused, hop-by-hop fields, malformed responses, and an upstream that closes
//! idle connections.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What the scripted upstream saw: (connection number, request line).
type Seen = Arc<Mutex<Vec<(usize, String)>>>;

const BIG: usize = 6 * 1024 * 1024;

fn big_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// The exact bytes answered for a request line; `true`: close the connection after them.
fn script(method: &str, path: &str) -> (Vec<u8>, bool) {
    let text = |s: &str| (s.as_bytes().to_vec(), false);
    match (method, path) {
        ("HEAD", "/length") => text("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
        (_, "/length") => text(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive, x-private\r\n\
             x-private: secret\r\nkeep-alive: timeout=5\r\nx-kept: yes\r\n\r\nhello",
        ),
        (_, "/chunked") => text(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n\
             5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-sum: 12\r\n\r\n",
        ),
        (_, "/nocontent") => text("HTTP/1.1 204 No Content\r\nx-kept: yes\r\n\r\n"),
        (_, "/notmodified") => text("HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 99\r\n\r\n"),
        (_, "/informational") => {
            text("HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal")
        }
        (_, "/until-close") => (b"HTTP/1.1 200 OK\r\n\r\nall of it until the close".to_vec(), true),
        (_, "/connection-close") => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_vec(),
            true,
        ),
        (_, "/http10") => (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(), true),
        (_, "/extra") => {
            text("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale")
        }
        (_, "/conflicting-length") => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!".to_vec(),
            true,
        ),
        (_, "/bad-status") => (b"HTTP/1.1 20 OK\r\ncontent-length: 0\r\n\r\n".to_vec(), true),
        (_, "/huge-head") => {
            let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..2000 {
                v.extend_from_slice(format!("x-filler-{i}: {}\r\n", "f".repeat(40)).as_bytes());
            }
            v.extend_from_slice(b"content-length: 0\r\n\r\n");
            (v, true)
        }
        (_, "/bad-chunk") => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n".to_vec(),
            true,
        ),
        // A transfer coding other than chunked: nothing could tell the client the body is
        // still gzip-coded once the chunks are taken off.
        (_, "/gzip-chunked") => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n".to_vec(),
            true,
        ),
        (_, "/short") => (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf".to_vec(), true),
        (_, "/big") => {
            let mut v = format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n").into_bytes();
            v.extend((0..BIG).map(big_byte));
            (v, false)
        }
        (_, "/big-chunked") => {
            let mut v = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            let data: Vec<u8> = (0..BIG).map(big_byte).collect();
            for c in data.chunks(40_000) {
                v.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                v.extend_from_slice(c);
                v.extend_from_slice(b"\r\n");
            }
            v.extend_from_slice(b"0\r\n\r\n");
            (v, false)
        }
        // Half a body, then nothing more (the connection stays open).
        (_, "/stall") => text("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf"),
        // Switches protocols unasked, and leaves the connection open.
        (_, "/switch") => text("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x\r\n\r\n"),
        // Answers, then closes the connection while it sits idle in Portico's pool.
        (_, "/then-close") => text("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbye!"),
        _ => text("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
    }
}

async fn upstream() -> (SocketAddr, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((mut s, _)) = l.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_head(&mut s, &mut buf).await {
                    let line = head.lines().next().unwrap_or("").to_string();
                    let mut parts = line.split(' ');
                    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    log.lock().unwrap().push((n, line.clone()));
                    let (bytes, close) = script(method, path);
                    if s.write_all(&bytes).await.is_err() {
                        return;
                    }
                    if close {
                        return;
                    }
                    if path == "/then-close" {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

async fn portico() -> (Portico, Seen) {
    portico_with(&[]).await
}

async fn portico_with(flags: &[&str]) -> (Portico, Seen) {
    let (addr, seen) = upstream().await;
    let manifests = class() + &service("up", &[addr]) + &annotated_ingress("i", "u.com", "/", "up", &[]);
    (Portico::start(&[("all.yaml", manifests)], flags).await, seen)
}

/// A request on a fresh client connection; the body as far as it could be read.
async fn call(
    p: &Portico,
    method: &str,
    path: &str,
) -> (u16, http::HeaderMap, Result<Bytes, String>, Option<http::HeaderMap>) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "u.com")
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = match send(p.http, req).await {
        Ok(r) => r,
        // Cut off before a full response head reached the client.
        Err(e) => return (0, http::HeaderMap::new(), Err(e), None),
    };
    let (parts, body) = resp.into_parts();
    match body.collect().await {
        Ok(c) => {
            let trailers = c.trailers().cloned();
            (parts.status.as_u16(), parts.headers, Ok(c.to_bytes()), trailers)
        }
        Err(e) => (parts.status.as_u16(), parts.headers, Err(e.to_string()), None),
    }
}

fn connections(seen: &Seen, path: &str) -> Vec<usize> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(_, line)| line.split(' ').nth(1) == Some(path))
        .map(|(n, _)| *n)
        .collect()
}

#[tokio::test]
async fn responses_are_framed_as_the_upstream_framed_them() {
    let (p, _) = portico().await;

    let (status, h, body, _) = call(&p, "GET", "/length").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"hello"[..]));
    assert_eq!(h["content-length"], "5");
    assert_eq!(h["x-kept"], "yes");
    for hop in ["x-private", "keep-alive"] {
        assert!(!h.contains_key(hop), "{hop} must not be forwarded: {h:?}");
    }

    let (status, h, body, _) = call(&p, "HEAD", "/length").await;
    assert_eq!((status, body.unwrap().len()), (200, 0));
    assert_eq!(h["content-length"], "5", "HEAD keeps the upstream's Content-Length");

    let (status, h, body, trailers) = call(&p, "GET", "/chunked").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"hello, world"[..]));
    assert!(!h.contains_key("content-length"));
    assert_eq!(trailers.expect("trailers forwarded")["x-sum"], "12");

    let (status, h, body, _) = call(&p, "GET", "/nocontent").await;
    assert_eq!(
        (status, body.unwrap().len(), h["x-kept"].to_str().unwrap()),
        (204, 0, "yes")
    );
    let (status, h, body, _) = call(&p, "GET", "/notmodified").await;
    assert_eq!(
        (status, body.unwrap().len(), h["etag"].to_str().unwrap()),
        (304, 0, "\"v1\"")
    );

    let (status, h, body, _) = call(&p, "GET", "/informational").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"final"[..]));
    assert!(!h.contains_key("link"), "the 103's fields stay with the 103");

    let (status, _, body, _) = call(&p, "GET", "/until-close").await;
    assert_eq!(
        (status, body.unwrap().as_ref()),
        (200, &b"all of it until the close"[..])
    );
    let (status, _, body, _) = call(&p, "GET", "/http10").await;
    assert_eq!((status, body.unwrap().as_ref()), (200, &b"ok"[..]));

    for path in ["/big", "/big-chunked"] {
        let (status, _, body, _) = call(&p, "GET", path).await;
        let body = body.unwrap();
        assert_eq!((status, body.len()), (200, BIG), "{path}");
        assert!(
            body.iter().enumerate().all(|(i, b)| *b == big_byte(i)),
            "{path}: bytes changed"
        );
    }
}

#[tokio::test]
async fn connections_are_reused_only_when_that_is_safe() {
    let (p, seen) = portico().await;
    for _ in 0..3 {
        assert_eq!(call(&p, "GET", "/length").await.0, 200);
    }
    let conns = connections(&seen, "/length");
    assert_eq!(conns.len(), 3);
    assert!(
        conns.iter().all(|c| *c == conns[0]),
        "one kept-alive connection: {conns:?}"
    );
    // HEAD and 204 responses have no body and leave the connection reusable.
    assert_eq!(call(&p, "HEAD", "/length").await.0, 200);
    assert_eq!(call(&p, "GET", "/nocontent").await.0, 204);
    assert_eq!(connections(&seen, "/nocontent"), [conns[0]]);

    // Close-delimited, Connection: close and HTTP/1.0 responses end their connection; so
    // does a response followed by bytes nobody asked for.
    for path in ["/until-close", "/connection-close", "/http10", "/extra"] {
        assert_eq!(call(&p, "GET", path).await.0, 200, "{path}");
        let (status, _, body, _) = call(&p, "GET", "/after").await;
        assert_eq!((status, body.unwrap().as_ref()), (200, &b"ok"[..]), "after {path}");
        let used = connections(&seen, path);
        let after = connections(&seen, "/after");
        assert_ne!(after.last(), used.last(), "the connection of {path} was reused");
    }
    // A 101 nobody asked for: 502, and the connection is no longer HTTP.
    assert_eq!(call(&p, "GET", "/switch").await.0, 502);
    assert_eq!(call(&p, "GET", "/after").await.0, 200);
    assert_ne!(
        connections(&seen, "/after").last(),
        connections(&seen, "/switch").last()
    );
}

#[tokio::test]
async fn an_upstream_closing_idle_connections_costs_no_request() {
    let (p, seen) = portico().await;
    for round in 0..5 {
        assert_eq!(call(&p, "GET", "/then-close").await.0, 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The pooled connection is closed by now: a bodiless POST (which must not be resent)
        // and a GET both get through.
        for method in ["POST", "GET"] {
            let (status, _, body, _) = call(&p, method, "/fine").await;
            assert_eq!(
                (status, body.unwrap().as_ref()),
                (200, &b"ok"[..]),
                "round {round} {method}"
            );
        }
    }
    assert_eq!(connections(&seen, "/fine").len(), 10);
}

#[tokio::test]
async fn malformed_responses_become_502_or_a_cut_body() {
    let (p, _) = portico().await;
    for path in ["/conflicting-length", "/bad-status", "/huge-head", "/gzip-chunked"] {
        let (status, _, body, _) = call(&p, "GET", path).await;
        assert_eq!(status, 502, "{path}: {body:?}");
    }
    // Past the head, a broken body can only be cut off: the client must see an error (in
    // the body, or before the head if it was still buffered), never a response that looks
    // complete.
    for path in ["/bad-chunk", "/short"] {
        let (status, _, body, _) = call(&p, "GET", path).await;
        assert!(status == 200 || status == 0, "{path}: {status}");
        assert!(body.is_err(), "{path}: {body:?}");
    }
    // And Portico keeps serving.
    assert_eq!(call(&p, "GET", "/length").await.0, 200);
}

#[tokio::test]
async fn a_body_that_stops_coming_is_cut_off_after_the_response_timeout() {
    // No proxy-read-timeout annotation: --upstream-response-timeout also bounds the wait
    // between two pieces of the body, as ingress-nginx's proxy_read_timeout does.
    let (p, _) = portico_with(&["--upstream-response-timeout", "1s"]).await;
    let t = std::time::Instant::now();
    let (status, _, body, _) = tokio::time::timeout(Duration::from_secs(20), call(&p, "GET", "/stall"))
        .await
        .expect("the stalled body was never cut off");
    let waited = t.elapsed();
    assert!(status == 200 || status == 0, "{status}");
    assert!(body.is_err(), "{body:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // A body that keeps coming is not cut: 6 MiB still arrive whole.
    let (status, _, body, _) = call(&p, "GET", "/big").await;
    assert_eq!((status, body.unwrap().len()), (200, BIG));
}
