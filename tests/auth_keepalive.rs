//! `auth-keepalive` and its family end to end: an auth service, written here, that counts
//! the TCP connections it accepts and sees closed, and Portico in front of an echo pod.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::sync::Notify;

/// What the auth service saw of its connections.
#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    closed: AtomicUsize,
    requests: AtomicUsize,
    /// The X-Request-ID of the last auth request.
    last_id: std::sync::Mutex<String>,
    changed: Notify,
}

impl Counts {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections were seen closed by their client (Portico). Bounded only
    /// so that a broken build fails instead of hanging.
    async fn until_closed(&self, n: usize) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if self.closed() >= n {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("{} of {n} connections closed", self.closed()));
    }
}

/// An HTTP/1.1 auth service that keeps connections open as long as its client does:
/// `Authorization: ok` → 200, anything else → 401; each answer has a body.
async fn auth_service() -> (SocketAddr, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.accepted.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let seen = c.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    if let Some(id) = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()) {
                        *seen.last_id.lock().unwrap() = id.to_string();
                    }
                    let ok = req.headers().get("authorization").is_some_and(|v| v == "ok");
                    let status = if ok { 200 } else { 401 };
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(vec![b'x'; 3000])))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                c.closed.fetch_add(1, Ordering::SeqCst);
                c.changed.notify_waiters();
            });
        }
    });
    (addr, counts)
}

async fn status(p: &Portico, host: &str, token: &str) -> u16 {
    let req = Request::builder()
        .uri("/")
        .header("host", host)
        .header("authorization", token)
        .body(Full::new(Bytes::new()))
        .unwrap();
    request(p.http, req).await.unwrap().0
}

/// Without `auth-keepalive` every auth request has a connection of its own; with it, one
/// connection carries them all, whatever the auth service answers; `auth-keepalive-requests`
/// closes a connection after that many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_connections_are_kept_and_reused_up_to_their_requests() {
    let web = pods("web", 1).await;
    let (fresh, fresh_counts) = auth_service().await;
    let (kept, kept_counts) = auth_service().await;
    let (counted, counted_counts) = auth_service().await;
    let manifests = class()
        + &service("web", &web)
        + &nginx_annotated("fresh", "fresh.test", &[("auth-url", format!("http://{fresh}/auth"))])
        + &nginx_annotated(
            "kept",
            "kept.test",
            &[
                ("auth-url", format!("http://{kept}/auth")),
                ("auth-keepalive", "4".into()),
                ("auth-keepalive-share-vars", "true".into()),
            ],
        )
        + &nginx_annotated(
            "counted",
            "counted.test",
            &[
                ("auth-url", format!("http://{counted}/auth")),
                ("auth-keepalive", "4".into()),
                ("auth-keepalive-requests", "2".into()),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &["--allow-loopback-auth-url"]).await;

    for i in 0..6 {
        let token = if i % 2 == 0 { "ok" } else { "no" };
        let want = if i % 2 == 0 { 200 } else { 401 };
        assert_eq!(status(&p, "fresh.test", token).await, want);
        assert_eq!(status(&p, "kept.test", token).await, want);
    }
    assert_eq!(fresh_counts.requests.load(Ordering::SeqCst), 6);
    assert_eq!(fresh_counts.accepted(), 6, "auth-keepalive 0: one connection each");
    assert_eq!(kept_counts.requests.load(Ordering::SeqCst), 6);
    assert_eq!(kept_counts.accepted(), 1, "auth-keepalive 4: one connection for all");
    assert_eq!(kept_counts.closed(), 0);

    // auth-keepalive-requests 2: five auth requests take three connections, and Portico
    // closes each of the first two after its second request.
    for _ in 0..5 {
        assert_eq!(status(&p, "counted.test", "ok").await, 200);
    }
    assert_eq!(counted_counts.accepted(), 3);
    counted_counts.until_closed(2).await;
    assert_eq!(counted_counts.closed(), 2, "the third connection stays open");

    // auth-keepalive-share-vars: the auth request and the upstream's carry the same
    // X-Request-ID (so they do without it too).
    let req = Request::builder()
        .uri("/")
        .header("host", "kept.test")
        .header("authorization", "ok")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (s, _, b) = request(p.http, req).await.unwrap();
    assert_eq!(s, 200);
    let upstream_id = json(&b)["headers"]["x-request-id"].as_str().unwrap().to_string();
    assert_eq!(*kept_counts.last_id.lock().unwrap(), upstream_id);
    assert_eq!(kept_counts.accepted(), 1);

    // Without it (the default), a kept connection's auth request is ingress-nginx's Lua
    // subrequest, whose request id is its own, unless the client sent one.
    for sent in [None, Some("client-chosen-id")] {
        let mut b = Request::builder()
            .uri("/")
            .header("host", "counted.test")
            .header("authorization", "ok");
        if let Some(id) = sent {
            b = b.header("x-request-id", id);
        }
        let (s, _, body) = request(p.http, b.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
        assert_eq!(s, 200);
        let upstream_id = json(&body)["headers"]["x-request-id"].as_str().unwrap().to_string();
        let auth_id = counted_counts.last_id.lock().unwrap().clone();
        match sent {
            None => assert_ne!(auth_id, upstream_id, "an id of its own"),
            Some(id) => assert_eq!((auth_id.as_str(), upstream_id.as_str()), (id, id)),
        }
    }

    let routes = p.routes().await;
    assert!(diagnostics_of(&routes, "kept").is_empty(), "{routes}");
}

/// `auth-keepalive-timeout`: a connection idle that long is closed by Portico, and the next
/// auth request opens a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_auth_connections_are_closed_after_the_timeout() {
    let web = pods("web", 1).await;
    let (auth, counts) = auth_service().await;
    let manifests = class()
        + &service("web", &web)
        + &nginx_annotated(
            "idle",
            "idle.test",
            &[
                ("auth-url", format!("http://{auth}/auth")),
                ("auth-keepalive", "2".into()),
                ("auth-keepalive-timeout", "1".into()),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &["--allow-loopback-auth-url"]).await;
    assert_eq!(status(&p, "idle.test", "ok").await, 200);
    assert_eq!(counts.accepted(), 1);
    counts.until_closed(1).await;
    assert_eq!(status(&p, "idle.test", "ok").await, 200);
    assert_eq!(counts.accepted(), 2);
}

/// Invalid values are Warnings: a negative `auth-keepalive`, or `auth-keepalive-requests` or
/// `-timeout` of 0, leaves keepalive off (as in ingress-nginx); a value that is no number or
/// is too large keeps its default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_keepalive_values_are_warnings() {
    let web = pods("web", 1).await;
    let (auth, counts) = auth_service().await;
    let url = format!("http://{auth}/auth");
    let manifests = class()
        + &service("web", &web)
        + &nginx_annotated(
            "negative",
            "negative.test",
            &[("auth-url", url.clone()), ("auth-keepalive", "-1".into())],
        )
        + &nginx_annotated(
            "zero-requests",
            "zero.test",
            &[
                ("auth-url", url.clone()),
                ("auth-keepalive", "8".into()),
                ("auth-keepalive-requests", "0".into()),
            ],
        )
        + &nginx_annotated(
            "zero-timeout",
            "zerotimeout.test",
            &[
                ("auth-url", url.clone()),
                ("auth-keepalive", "8".into()),
                ("auth-keepalive-timeout", "0".into()),
            ],
        )
        + &nginx_annotated(
            "garbage",
            "garbage.test",
            &[
                ("auth-url", url.clone()),
                ("auth-keepalive", "8".into()),
                ("auth-keepalive-requests", "many".into()),
                ("auth-keepalive-timeout", "99999999999".into()),
                ("auth-keepalive-share-vars", "yes".into()),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &["--allow-loopback-auth-url"]).await;
    let routes = p.routes().await;
    for (name, key) in [
        ("negative", "auth-keepalive="),
        ("zero-requests", "auth-keepalive-requests="),
        ("zero-timeout", "auth-keepalive-timeout="),
        ("garbage", "auth-keepalive-requests="),
        ("garbage", "auth-keepalive-timeout="),
        ("garbage", "auth-keepalive-share-vars="),
    ] {
        assert!(
            diagnostics_of(&routes, name).iter().any(|m| m.contains(key)),
            "{name}: {key}: {:?}",
            diagnostics_of(&routes, name)
        );
    }
    // Keepalive off: one connection per auth request.
    for host in ["negative.test", "zero.test", "zerotimeout.test"] {
        let before = counts.accepted();
        assert_eq!(status(&p, host, "ok").await, 200);
        assert_eq!(status(&p, host, "ok").await, 200);
        assert_eq!(counts.accepted(), before + 2, "{host}");
    }
    // Defaults kept (1000 requests, 60 s): one connection.
    let before = counts.accepted();
    for _ in 0..3 {
        assert_eq!(status(&p, "garbage.test", "ok").await, 200);
    }
    assert_eq!(counts.accepted(), before + 1);
}

/// An auth service that answers one request per connection and then closes it without
/// saying so (no `Connection: close`): Portico keeps the connection, finds it closed on the
/// next auth request, and uses a new one; no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_service_closed_is_replaced() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                // Closed here, unannounced.
            });
        }
    });
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &nginx_annotated(
            "closing",
            "closing.test",
            &[
                ("auth-url", format!("http://{auth}/auth")),
                ("auth-keepalive", "4".into()),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &["--allow-loopback-auth-url"]).await;
    for _ in 0..5 {
        assert_eq!(status(&p, "closing.test", "any").await, 200);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}
