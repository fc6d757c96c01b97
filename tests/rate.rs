//! `limit-rate` and `limit-rate-after` over real sockets: a response paced to the route's
//! rate arrives whole and no sooner than the rate allows. Only lower bounds on time are
//! asserted (a loaded machine makes transfers slower, never faster).

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use portico::fixture::{self, yaml};
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// A body of `n` bytes that shows where a piece went missing or moved.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// What a download took: the body, and when (after the request was sent) its first
/// `mark` bytes had arrived and when all had.
struct Download {
    body: Vec<u8>,
    marked: Duration,
    total: Duration,
}

/// POSTs `body` to the echo pod's `/echo-body` through Portico for `host` (over HTTP/2 with
/// prior knowledge when `h2`): the same bytes come back as the response, timed as they arrive.
async fn download(p: &Portico, host: &str, body: &[u8], mark: usize, h2: bool) -> Download {
    let req = Request::builder()
        .method("POST")
        .uri(if h2 {
            format!("http://{host}/echo-body")
        } else {
            "/echo-body".into()
        })
        .header("host", host)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let t = Instant::now();
    let resp = if h2 {
        let (mut parts, body) = req.into_parts();
        parts.version = http::Version::HTTP_2;
        parts.headers.remove("host");
        h2c(p.http)
            .await
            .send_request(Request::from_parts(parts, body))
            .await
            .unwrap()
    } else {
        send(p.http, req).await.unwrap()
    };
    assert_eq!(resp.status(), 200, "{host}");
    let mut got = Vec::with_capacity(body.len());
    let mut marked = None;
    let mut b = resp.into_body();
    while let Some(frame) = b.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            got.extend_from_slice(d);
        }
        if got.len() >= mark && marked.is_none() {
            marked = Some(t.elapsed());
        }
    }
    Download {
        body: got,
        marked: marked.unwrap_or_default(),
        total: t.elapsed(),
    }
}

fn annotations<'a>(pairs: &[(&str, &'a str)]) -> Vec<(String, &'a str)> {
    pairs.iter().map(|(k, v)| (format!("{NGINX}{k}"), *v)).collect()
}

fn ingress(name: &str, host: &str, notes: &[(&str, &str)]) -> String {
    let notes = annotations(notes);
    let notes: Vec<(&str, &str)> = notes.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    annotated_ingress(name, host, "/", "web", &notes)
}

/// 1 MiB at `limit-rate: 200` (KiB/s) after `limit-rate-after: 100` (KiB): the 924 KiB past
/// the free part take at least 4.5 s (less one piece of 12.5 KiB); the same through a route
/// without the annotations arrives whole too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_at_200k_after_100k() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &ingress(
            "paced",
            "paced.test",
            &[
                ("limit-rate", "200"),
                ("limit-rate-after", "100"),
                ("proxy-body-size", "2m"),
            ],
        )
        + &yaml(&[ingress_with(
            "open",
            "open.test",
            "/",
            "web",
            &[(&format!("{NGINX}proxy-body-size"), "2m")],
        )
        .into()]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let big = pattern(1 << 20);

    let d = download(&p, "paced.test", &big, 600 * 1024, false).await;
    assert!(d.body == big, "the body came back intact ({} bytes)", d.body.len());
    // By any time t after the body began, at most 100 KiB + 200 KiB/s × t (and one piece)
    // had gone: 600 KiB not before 2.4 s, the whole not before 4.5 s.
    assert!(d.marked >= Duration::from_secs(2), "600 KiB after {:?}", d.marked);
    assert!(d.total >= Duration::from_secs(4), "1 MiB after {:?}", d.total);

    let d = download(&p, "open.test", &big, 0, false).await;
    assert!(d.body == big, "unpaced: intact ({} bytes)", d.body.len());

    // The pace is in /routes.
    let routes = p.routes().await;
    assert_eq!(
        routes["hosts"]["paced.test"][0]["rate"],
        serde_json::json!({"bytes_per_second": 204800, "after": 102400})
    );
    assert_eq!(routes["hosts"]["open.test"][0]["rate"], serde_json::Value::Null);
}

/// The `--configmap`'s `limit-rate` paces routes without the annotation; a bad annotation is
/// a Warning and the ConfigMap's value holds. HTTP/2 streams are paced as HTTP/1.1 bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_limit_rate_is_the_default() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &ingress("plain", "plain.test", &[])
        + &ingress("bad", "bad.test", &[("limit-rate", "fast")]);
    let cm = yaml(&[fixture::config_map(
        "ingress-nginx",
        "c",
        &[("limit-rate", "100"), ("limit-rate-after", "10")],
    )
    .into()]);
    let p = Portico::start(
        &[("all.yaml", manifests), ("cm.yaml", cm)],
        &["--configmap", "ingress-nginx/c"],
    )
    .await;
    let body = pattern(300 * 1024);
    for (host, h2) in [("plain.test", false), ("bad.test", false), ("plain.test", true)] {
        let d = download(&p, host, &body, 0, h2).await;
        assert!(d.body == body, "{host}: intact ({} bytes)", d.body.len());
        // 290 KiB at 100 KiB/s, less a piece of 6.25 KiB: at least 2.8 s.
        assert!(d.total >= Duration::from_secs(2), "{host}: {:?}", d.total);
    }
    let d = diagnostics_of(&p.routes().await, "bad");
    assert!(d.iter().any(|m| m.contains("limit-rate")), "{d:?}");
}
