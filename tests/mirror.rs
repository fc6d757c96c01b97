//! `mirror-target`, `mirror-host` and `mirror-request-body` end to end: a mirror written
//! here records each copy it gets (method, target, Host, body); Portico in front of echo
//! pods. The client's answer must not depend on the mirror: a mirror that never answers or
//! cannot be reached changes nothing for it.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// One copy as the mirror saw it.
#[derive(Debug, PartialEq)]
struct Copy {
    method: String,
    target: String,
    host: String,
    body: String,
}

/// A mirror that records every copy and answers 500 (which nobody must see).
async fn mirror() -> (SocketAddr, mpsc::UnboundedReceiver<Copy>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let _ = tx.send(Copy {
                            method: parts.method.to_string(),
                            target: parts.uri.to_string(),
                            host: parts
                                .headers
                                .get("host")
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or("")
                                .to_string(),
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                        let r = Response::builder().status(500).body(Full::new(Bytes::from("mirror")));
                        Ok::<_, Infallible>(r.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// A mirror that takes connections and never answers: counts them, and notes when Portico
/// closes one.
async fn silent_mirror() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let (a, c) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                c.store(true, Ordering::SeqCst);
            });
        }
    });
    (addr, accepted, closed)
}

/// The next copy; a mirror that got none in a minute fails the test (rather than hang it).
async fn next(rx: &mut mpsc::UnboundedReceiver<Copy>) -> Copy {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("a copy reached the mirror")
        .expect("the mirror runs")
}

fn ing(name: &str, notes: &[(&str, String)]) -> String {
    let keys: Vec<(String, &str)> = notes.iter().map(|(k, v)| (format!("{NGINX}{k}"), v.as_str())).collect();
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    annotated_ingress(name, &format!("{name}.test"), "/", "web", &keys)
}

async fn post(p: &Portico, host: &str, target: &str, body: Bytes) -> Answer {
    let req = Request::builder()
        .method("POST")
        .uri(target)
        .header("host", host)
        .body(Full::new(body))
        .unwrap();
    request(p.http, req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_carry_method_target_host_and_body() {
    let web = pods("web", 1).await;
    let (m, mut copies) = mirror().await;
    let manifests = class()
        + &service("web", &web)
        + &ing(
            "full",
            &[
                ("mirror-target", format!("http://{m}$request_uri")),
                ("mirror-host", "mirror.example".into()),
            ],
        )
        + &ing("plain", &[("mirror-target", format!("http://{m}/mirror"))])
        + &ing(
            "headonly",
            &[
                ("mirror-target", format!("http://{m}$request_uri")),
                ("mirror-request-body", "off".into()),
            ],
        )
        + &ing(
            "vars",
            &[(
                "mirror-target",
                format!("http://{m}$uri?route=$namespace/${{ingress_name}}&a=$arg_a&m=$request_method"),
            )],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &["--allow-loopback-mirror-target"]).await;

    let (s, _, b) = post(&p, "full.test", "/echo-body/a?x=1", Bytes::from("hello mirror")).await;
    assert_eq!(
        (s, b.as_str()),
        (200, "hello mirror"),
        "the client's answer is the pod's"
    );
    let host = m.ip().to_string();
    assert_eq!(
        next(&mut copies).await,
        Copy {
            method: "POST".into(),
            target: "/echo-body/a?x=1".into(),
            host: "mirror.example".into(),
            body: "hello mirror".into(),
        }
    );

    // A target without variables gets the query; the Host is the target's host.
    let (s, _, _) = get(p.http, "plain.test", "/some/where?q=2").await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        next(&mut copies).await,
        Copy {
            method: "GET".into(),
            target: "/mirror?q=2".into(),
            host: host.clone(),
            body: String::new(),
        }
    );

    // mirror-request-body: off: the copy goes without the body, the pod still gets it.
    let (s, _, b) = post(&p, "headonly.test", "/echo-body", Bytes::from("kept")).await;
    assert_eq!((s, b.as_str()), (200, "kept"));
    let c = next(&mut copies).await;
    assert_eq!(
        (c.method.as_str(), c.target.as_str(), c.body.as_str()),
        ("POST", "/echo-body", "")
    );
    assert_eq!(c.host, host);

    // A body past the copy's cap still reaches the pod whole (the copy is skipped); the
    // next small one is mirrored as before.
    let big = Bytes::from(vec![b'x'; 256 * 1024]);
    let (s, _, b) = post(&p, "full.test", "/echo-body/big", big.clone()).await;
    assert_eq!((s, b.len()), (200, big.len()));
    let (s, _, _) = post(&p, "full.test", "/echo-body/small", Bytes::from("small")).await;
    assert_eq!(s, 200);
    let c = next(&mut copies).await;
    assert_eq!((c.target.as_str(), c.body.as_str()), ("/echo-body/small", "small"));

    // Any of nginx's variables after the host, the route's identity too; with variables the
    // query is not added.
    let (s, _, _) = get(p.http, "vars.test", "/p/q?a=9&b=2").await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(next(&mut copies).await.target, "/p/q?route=default/vars&a=9&m=GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_failing_mirror_changes_nothing_for_the_client() {
    let web = pods("web", 1).await;
    let (quiet, accepted, closed) = silent_mirror().await;
    let dead = refused_addr();
    let manifests = class()
        + &service("web", &web)
        + &ing("slow", &[("mirror-target", format!("http://{quiet}$request_uri"))])
        + &ing("dead", &[("mirror-target", format!("http://{dead}/"))]);
    let p = Portico::start(&[("all.yaml", manifests)], &["--allow-loopback-mirror-target"]).await;

    // The copy is held by a mirror that never answers, and the client has its answer while
    // the copy's connection is still open.
    for i in 1..=3 {
        let (s, _, b) = post(&p, "slow.test", "/echo-body", Bytes::from("to the pod")).await;
        assert_eq!((s, b.as_str()), (200, "to the pod"));
        for _ in 0..6000 {
            if accepted.load(Ordering::SeqCst) >= i {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), i, "the copy reached the mirror");
        assert!(
            !closed.load(Ordering::SeqCst),
            "Portico did not wait for the mirror's answer"
        );
    }

    // A mirror that refuses connections: the answers are the pod's all the same.
    for _ in 0..3 {
        let (s, _, b) = get(p.http, "dead.test", "/").await.unwrap();
        assert_eq!((s, json(&b)["pod"].as_str()), (200, Some("web-0")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_mirrors_need_the_flag_and_bad_targets_are_warnings() {
    let web = pods("web", 1).await;
    let (m, mut copies) = mirror().await;
    let manifests = class()
        + &service("web", &web)
        + &ing("local", &[("mirror-target", format!("http://{m}$request_uri"))])
        + &ing(
            "bad",
            &[
                ("mirror-target", "http://$host/steal".into()),
                ("mirror-request-body", "maybe".into()),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    let (s, _, _) = get(p.http, "local.test", "/x").await.unwrap();
    assert_eq!(s, 200);
    // The refusal is logged; by then the copy would have been sent.
    let refused = |logs: &[String]| logs.iter().any(|l| l.contains("--allow-loopback-mirror-target"));
    for _ in 0..6000 {
        if refused(&p.logs.lock().unwrap()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused(&p.logs.lock().unwrap()), "the refusal names the flag");
    assert!(copies.try_recv().is_err(), "no copy reached the loopback mirror");

    let diags = diagnostics_of(&p.routes().await, "bad");
    assert!(diags.iter().any(|d| d.contains("mirror-target=")), "{diags:?}");
    let (s, _, _) = get(p.http, "bad.test", "/").await.unwrap();
    assert_eq!(s, 200);
}
