//! `proxy-next-upstream`, `proxy-next-upstream-timeout` and `proxy-next-upstream-tries` end to
//! end: backends written here answer a fixed status, never answer, or answer garbage, and
//! count what reached them; each test checks which endpoints a request tried and what the
//! client got.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// A backend answering every request with `status` and the body `name`; counts requests.
async fn answering(status: u16, name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let count = count.clone();
                    async move {
                        // The whole body first: a retried request must have come whole.
                        let _ = req.into_body().collect().await;
                        count.fetch_add(1, Ordering::SeqCst);
                        let r = Response::builder().status(status).body(Full::new(Bytes::from(name)));
                        Ok::<_, Infallible>(r.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// A backend that accepts, reads and never answers; counts connections.
async fn silent() -> (SocketAddr, Arc<AtomicUsize>) {
    raw(None).await
}

/// A backend that answers every connection with bytes that are no HTTP response head.
async fn garbage() -> (SocketAddr, Arc<AtomicUsize>) {
    raw(Some(b"garbage, not HTTP\r\n\r\n")).await
}

async fn raw(answer: Option<&'static [u8]>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                match answer {
                    Some(a) => {
                        let _ = stream.write_all(a).await;
                    }
                    // Held open until Portico gives up.
                    None => while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {},
                }
            });
        }
    });
    (addr, hits)
}

fn hits(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

/// An Ingress `name` for host `name.test` → Service `svc`, with annotations under
/// ingress-nginx's prefix.
fn ing(name: &str, svc: &str, notes: &[(&str, &str)]) -> String {
    let keys: Vec<(String, &str)> = notes.iter().map(|(k, v)| (format!("{NGINX}{k}"), *v)).collect();
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    annotated_ingress(name, &format!("{name}.test"), "/", svc, &keys)
}

async fn call(p: &Portico, host: &str, method: &str, body: &'static str) -> (u16, String) {
    let req = Request::builder()
        .method(method)
        .uri("/")
        .header("host", host)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (s, _, b) = request(p.http, req).await.unwrap();
    (s, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_statuses_go_to_the_next_endpoint_and_the_last_answer_is_returned() {
    let (b502, h502) = answering(502, "from 502").await;
    let (b503, h503) = answering(503, "from 503").await;
    let (ok, hok) = answering(200, "from ok").await;
    let (d502, hd502) = answering(502, "plain 502").await;
    let (dok, hdok) = answering(200, "plain ok").await;
    let (n404, h404) = answering(404, "from 404").await;
    let (n404b, h404b) = answering(404, "from 404 too").await;
    let manifests = class()
        + &service("mixed", &[b502, b503, ok])
        + &service("failing", &[b502, b503])
        + &service("default", &[d502, dok])
        + &service("missing", &[n404, n404b])
        + &ing(
            "mixed",
            "mixed",
            &[("proxy-next-upstream", "error timeout http_502 http_503")],
        )
        + &ing("failing", "failing", &[("proxy-next-upstream", "http_502 http_503")])
        + &ing("default", "default", &[])
        + &annotated_ingress(
            "missing",
            "missing.test",
            "/",
            "missing",
            &[
                ("portico.dev/proxy-next-upstream", "http_404"),
                ("portico.dev/proxy-next-upstream-tries", "1"),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // Whichever endpoint comes first, the 502 and 503 are dropped and the 200 returned.
    for n in 1..=6 {
        assert_eq!(call(&p, "mixed.test", "GET", "").await, (200, "from ok".into()));
        assert_eq!(hits(&hok), n);
    }
    assert!(
        hits(&h502) + hits(&h503) >= 2,
        "the failing endpoints were tried first at times"
    );

    // Both endpoints fail: both are tried, and the second one's own answer reaches the client.
    let (before502, before503) = (hits(&h502), hits(&h503));
    for n in 1..=4 {
        let (s, b) = call(&p, "failing.test", "GET", "").await;
        assert!(
            (s, b.as_str()) == (502, "from 502") || (s, b.as_str()) == (503, "from 503"),
            "{s} {b}"
        );
        assert_eq!((hits(&h502) - before502, hits(&h503) - before503), (n, n));
    }

    // Without the annotation (nginx's "error timeout") a 502 answer is the client's.
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(call(&p, "default.test", "GET", "").await);
    }
    assert_eq!(hits(&hd502) + hits(&hdok), 4, "one endpoint per request");
    assert_eq!(
        got.iter().filter(|a| **a == (502, "plain 502".to_string())).count(),
        hits(&hd502)
    );
    assert!(hits(&hd502) > 0 && hits(&hdok) > 0, "round robin took turns: {got:?}");

    // proxy-next-upstream-tries: 1 leaves no second try, whatever the list says.
    for _ in 0..3 {
        assert_eq!(call(&p, "missing.test", "GET", "").await.0, 404);
    }
    assert_eq!(hits(&h404) + hits(&h404b), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_follow_non_idempotent_and_a_streamed_body_is_sent_once() {
    let (a, ha) = answering(502, "a").await;
    let (b, hb) = answering(502, "b").await;
    let (c, hc) = answering(502, "c").await;
    let (d, hd) = answering(502, "d").await;
    let manifests = class()
        + &service("strict", &[a, b])
        + &service("loose", &[c, d])
        + &ing("strict", "strict", &[("proxy-next-upstream", "http_502")])
        + &ing("loose", "loose", &[("proxy-next-upstream", "http_502 non_idempotent")]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // GET and PUT are idempotent: both endpoints. POST is not: one.
    assert_eq!(call(&p, "strict.test", "GET", "").await.0, 502);
    assert_eq!(hits(&ha) + hits(&hb), 2);
    assert_eq!(call(&p, "strict.test", "PUT", "").await.0, 502);
    assert_eq!(hits(&ha) + hits(&hb), 4);
    assert_eq!(call(&p, "strict.test", "POST", "").await.0, 502);
    assert_eq!(hits(&ha) + hits(&hb), 5);

    // non_idempotent: a POST without body goes on too; one with a body cannot, as the body
    // was streamed to the first endpoint.
    assert_eq!(call(&p, "loose.test", "POST", "").await.0, 502);
    assert_eq!(hits(&hc) + hits(&hd), 2);
    assert_eq!(call(&p, "loose.test", "POST", "payload").await.0, 502);
    assert_eq!(hits(&hc) + hits(&hd), 3);
    assert_eq!(call(&p, "loose.test", "GET", "payload").await.0, 502);
    assert_eq!(hits(&hc) + hits(&hd), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_timeouts_and_invalid_heads_follow_the_list() {
    let (quiet, hquiet) = silent().await;
    let (quiet2, hquiet2) = silent().await;
    let (junk, hjunk) = garbage().await;
    let (ok, hok) = answering(200, "ok").await;
    let (ok2, hok2) = answering(200, "ok2").await;
    let dead = refused_addr();
    let manifests = class()
        + &service("slow", &[quiet, ok])
        + &service("slow2", &[quiet2, ok2])
        + &service("junk", &[junk, ok])
        + &service("dead", &[dead, ok])
        + &ing("timeout", "slow", &[("proxy-read-timeout", "1")])
        + &ing(
            "notimeout",
            "slow2",
            &[("proxy-read-timeout", "1"), ("proxy-next-upstream", "error")],
        )
        + &ing("junk", "junk", &[])
        + &ing("invalid", "junk", &[("proxy-next-upstream", "invalid_header")])
        + &ing("dead", "dead", &[]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // The default list has timeout: the silent endpoint's timeout moves on to the other.
    for _ in 0..2 {
        assert_eq!(call(&p, "timeout.test", "GET", "").await, (200, "ok".into()));
    }
    assert_eq!(hits(&hok), 2);
    assert!(hits(&hquiet) >= 1, "round robin tried the silent endpoint");

    // "error" alone: a timeout is the client's 504; each request tried one endpoint.
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(call(&p, "notimeout.test", "GET", "").await.0);
    }
    got.sort_unstable();
    assert_eq!(got, [200, 504]);
    assert_eq!((hits(&hquiet2), hits(&hok2)), (1, 1));

    // An answer that is no HTTP head: 502 by default, the next endpoint with invalid_header.
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(call(&p, "junk.test", "GET", "").await.0);
    }
    got.sort_unstable();
    assert_eq!(got, [200, 502]);
    let junk_before = hits(&hjunk);
    for _ in 0..4 {
        assert_eq!(call(&p, "invalid.test", "GET", "").await.0, 200);
    }
    assert!(hits(&hjunk) > junk_before, "the invalid endpoint was tried");

    // A refused connect: the default moves on, "off" does not. (The refused endpoint's
    // backoff is per address and shared; each check starts from a fresh Portico.)
    for _ in 0..4 {
        assert_eq!(call(&p, "dead.test", "GET", "").await.0, 200);
    }
    let p = Portico::start(
        &[(
            "all.yaml",
            class() + &service("dead", &[dead, ok]) + &ing("off", "dead", &[("proxy-next-upstream", "off")]),
        )],
        &[],
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(call(&p, "off.test", "GET", "").await.0);
    }
    got.sort_unstable();
    assert_eq!(got, [200, 502]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_budget_stops_new_tries_and_bad_values_are_warnings() {
    let (a, ha) = silent().await;
    let (b, hb) = silent().await;
    let (c, hc) = silent().await;
    let (d, hd) = silent().await;
    let dead = refused_addr();
    let (ok, hok) = answering(200, "ok").await;
    let manifests = class()
        + &service("budget", &[a, b])
        + &service("open", &[c, d])
        + &service("dead", &[dead, ok])
        + &ing(
            "budget",
            "budget",
            &[("proxy-read-timeout", "1"), ("proxy-next-upstream-timeout", "1")],
        )
        + &ing(
            "open",
            "open",
            &[("proxy-read-timeout", "1"), ("proxy-next-upstream-timeout", "0")],
        )
        + &ing(
            "bogus",
            "dead",
            &[
                ("proxy-next-upstream", "error,timeout"),
                ("proxy-next-upstream-timeout", "86401"),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // The first try took the whole second: no second one.
    assert_eq!(call(&p, "budget.test", "GET", "").await.0, 504);
    assert_eq!(hits(&ha) + hits(&hb), 1);
    // 0 is no limit: both endpoints.
    assert_eq!(call(&p, "open.test", "GET", "").await.0, 504);
    assert_eq!((hits(&hc), hits(&hd)), (1, 1));

    // Invalid values are Warnings, and the defaults apply: a refused connect moves on.
    let diags = diagnostics_of(&p.routes().await, "bogus");
    for name in ["proxy-next-upstream", "proxy-next-upstream-timeout"] {
        assert!(
            diags
                .iter()
                .any(|d| d.contains(&format!("{name}=")) && d.contains("is not")),
            "{name}: {diags:?}"
        );
    }
    for _ in 0..4 {
        assert_eq!(call(&p, "bogus.test", "GET", "").await.0, 200);
    }
    assert_eq!(hits(&hok), 4);
}
