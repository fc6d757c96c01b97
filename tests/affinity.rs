//! Session affinity, load balancing, passive health and retries, end to end: a real
//! `portico` process, real sockets, backends that can be slow, stopped or rude.

mod support;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portico::fixture::{self, yaml};
use support::*;
use tokio::net::TcpListener;

/// A backend that answers `{"pod": NAME}` after `delay`, and can be stopped: its listener
/// and every connection close at once, so connects to it are refused.
struct Pod {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Pod {
    async fn start(name: &str, delay: Duration) -> Pod {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let name: Arc<str> = name.into();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((s, _)) = l.accept().await else { continue };
                let name = name.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let name = name.clone();
                        async move {
                            tokio::time::sleep(delay).await;
                            let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                            let doc = serde_json::json!({"pod": &*name, "body_bytes": n});
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(doc.to_string()))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Pod { addr, task }
    }

    fn stop(&self) {
        self.task.abort();
    }
}

async fn start_pods(prefix: &str, n: usize) -> Vec<Pod> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Pod::start(&format!("{prefix}-{i}"), Duration::ZERO).await);
    }
    v
}

fn addrs(pods: &[Pod]) -> Vec<SocketAddr> {
    pods.iter().map(|p| p.addr).collect()
}

/// An Ingress for `host`/app (Prefix) → Service `svc`, with annotations.
fn ingress(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    annotated_ingress(name, host, "/app", svc, annotations)
}

const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn nginx(name: &str) -> String {
    format!("{NGINX}{name}")
}

/// GET with extra headers; returns (status, answering pod, Set-Cookie "name=value" if any).
async fn call(p: &Portico, host: &str, headers: &[(&str, &str)]) -> (u16, String, Option<String>, http::HeaderMap) {
    let mut b = Request::builder().uri("/app/x").header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (status, h, body) = request(p.http, b.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let pod = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|j| j["pod"].as_str().map(String::from))
        .unwrap_or_default();
    let cookie = h
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(String::from);
    (status, pod, cookie, h)
}

/// A new session: (pod, "NAME=VALUE").
async fn session(p: &Portico, host: &str) -> (String, String) {
    let (s, pod, cookie, _) = call(p, host, &[]).await;
    assert_eq!(s, 200);
    (pod, cookie.expect("a new session gets a cookie"))
}

async fn with_cookie(p: &Portico, host: &str, cookie: &str) -> (String, Option<String>) {
    let (s, pod, set, _) = call(p, host, &[("cookie", cookie)]).await;
    assert_eq!(s, 200, "request with {cookie}");
    (pod, set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_affinity_pins_sessions_with_the_configured_cookie() {
    let web = start_pods("web", 3).await;
    let manifests = class()
        + &service("web", &addrs(&web))
        + &ingress(
            "sticky",
            "sticky.test",
            "web",
            &[
                (&nginx("affinity"), "cookie"),
                (&nginx("session-cookie-name"), "route"),
                (&nginx("session-cookie-max-age"), "3600"),
                ("portico.dev/session-cookie-expires", "7200"),
                (&nginx("session-cookie-samesite"), "Lax"),
                (&nginx("session-cookie-domain"), "sticky.test"),
            ],
        )
        + &ingress(
            "bad",
            "bad.test",
            "web",
            &[
                (&nginx("affinity"), "cookie"),
                (&nginx("affinity-mode"), "sticky"),
                (&nginx("session-cookie-max-age"), "soon"),
                (&nginx("session-cookie-name"), "a;b"),
                (&nginx("session-cookie-secure"), "true"),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    let (_, first, _, h) = call(&p, "sticky.test", &[]).await;
    let set = h.get("set-cookie").unwrap().to_str().unwrap().to_string();
    let value = set
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("route=")
        .unwrap()
        .to_string();
    assert_eq!(value.len(), 32, "an opaque value: {set}");
    assert!(!web.iter().any(|w| set.contains(&w.addr.port().to_string())), "{set}");
    for attr in [
        "; Path=/app",
        "; Domain=sticky.test",
        "; Max-Age=3600",
        "; HttpOnly",
        "; SameSite=Lax",
        "; Expires=",
    ] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: not Secure by default: {set}");

    // Requests carrying the cookie stay on one pod, across connections, without a new cookie.
    let cookie = format!("other=1; route={value}");
    for _ in 0..20 {
        let (pod, set) = with_cookie(&p, "sticky.test", &cookie).await;
        assert_eq!(pod, first);
        assert_eq!(set, None);
    }
    // New sessions spread over the pods.
    let mut seen = HashSet::new();
    for _ in 0..30 {
        seen.insert(session(&p, "sticky.test").await.0);
    }
    assert!(seen.len() >= 2, "new sessions all went to {seen:?}");

    // Invalid values: a diagnostic each, defaults used, the Ingress still served.
    let routes = p.routes().await;
    let bad: Vec<String> = routes["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["reason"] == "InvalidAnnotation" && d["object"]["name"] == "bad")
        .map(|d| d["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bad.len(), 3, "{bad:?}");
    let (s, _, _, h) = call(&p, "bad.test", &[]).await;
    assert_eq!(s, 200);
    let set = h.get("set-cookie").unwrap().to_str().unwrap();
    assert!(set.starts_with("INGRESSCOOKIE="), "{set}");
    assert!(set.contains("; Secure") && !set.contains("Max-Age"), "{set}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_sessions_survive_scaling_and_move_when_their_pod_goes() {
    let web = start_pods("web", 4).await;
    let notes = [(nginx("affinity"), "cookie"), (nginx("affinity-mode"), "persistent")];
    let notes: Vec<(&str, &str)> = notes.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let manifests = |n: usize| class() + &service("web", &addrs(&web[..n])) + &ingress("p", "p.test", "web", &notes);
    let p = Portico::start(&[("all.yaml", manifests(3))], &[]).await;
    let mut sessions = Vec::new();
    for _ in 0..12 {
        sessions.push(session(&p, "p.test").await);
    }
    // Scaling up moves no persistent session.
    p.write("all.yaml", &manifests(4));
    p.wait_generation(2).await;
    for (pod, cookie) in &sessions {
        assert_eq!(&with_cookie(&p, "p.test", cookie).await.0, pod);
    }
    // Remove web-0 from the Service (web-3 takes its place in the slice list): its sessions
    // go elsewhere and get a new cookie, which then sticks.
    let rest: Vec<SocketAddr> = web[1..].iter().map(|w| w.addr).collect();
    p.write(
        "all.yaml",
        &(class() + &service("web", &rest) + &ingress("p", "p.test", "web", &notes)),
    );
    p.wait_generation(3).await;
    let mut moved = 0;
    for (pod, cookie) in &sessions {
        let (now, set) = with_cookie(&p, "p.test", cookie).await;
        if pod == "web-0" {
            moved += 1;
            assert_ne!(now, "web-0");
            let new = set.expect("a moved persistent session gets a new cookie");
            assert_ne!(&new, cookie);
            for _ in 0..5 {
                assert_eq!(with_cookie(&p, "p.test", &new).await, (now.clone(), None));
            }
        } else {
            assert_eq!((&now, set), (pod, None));
        }
    }
    assert!(moved > 0, "no session was on web-0: {sessions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balanced_sessions_move_about_one_in_n_when_scaling() {
    let web = start_pods("web", 5).await;
    let notes = [(nginx("affinity"), "cookie")];
    let notes: Vec<(&str, &str)> = notes.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let manifests = |pods: &[SocketAddr]| class() + &service("web", pods) + &ingress("b", "b.test", "web", &notes);
    let p = Portico::start(&[("all.yaml", manifests(&addrs(&web[..4])))], &[]).await;
    let mut sessions = Vec::new();
    for _ in 0..200 {
        sessions.push(session(&p, "b.test").await);
    }
    p.write("all.yaml", &manifests(&addrs(&web)));
    p.wait_generation(2).await;
    let mut moved = 0;
    let mut now_on = HashMap::new();
    for (pod, cookie) in &sessions {
        let (now, set) = with_cookie(&p, "b.test", cookie).await;
        assert_eq!(set, None, "balanced sessions keep their cookie");
        if &now != pod {
            moved += 1;
            assert_eq!(now, "web-4", "a session only moves to the new pod");
        }
        now_on.insert(cookie.clone(), now);
    }
    let frac = moved as f64 / sessions.len() as f64;
    assert!((0.08..=0.34).contains(&frac), "{moved} of 200 sessions moved");

    // Removing a pod remaps only its sessions, by the ring, without a new cookie.
    let without_1: Vec<SocketAddr> = web
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, w)| w.addr)
        .collect();
    p.write("all.yaml", &manifests(&without_1));
    p.wait_generation(3).await;
    for (_, cookie) in &sessions {
        let before = &now_on[cookie];
        let (now, set) = with_cookie(&p, "b.test", cookie).await;
        assert_eq!(set, None);
        if before == "web-1" {
            assert_ne!(now, "web-1");
        } else {
            assert_eq!(&now, before);
        }
    }
}

/// A Service with `sessionAffinity: ClientIP`.
fn client_ip_service(name: &str, pods: &[SocketAddr], timeout: i32) -> String {
    service_with(
        fixture::service("default", name)
            .client_ip_affinity(Some(timeout))
            .port("http", 80),
        pods,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_holds_across_connections_and_expires() {
    let web = start_pods("web", 3).await;
    let manifests = class() + &client_ip_service("web", &addrs(&web), 2) + &ingress("c", "c.test", "web", &[]);
    let p = Portico::start(&[("all.yaml", manifests)], &["--trusted-proxies", "127.0.0.1/32"]).await;
    let from = |n: u32| format!("198.51.100.{n}");
    let p = &p;
    let as_client = async |ip: String| call(p, "c.test", &[("x-forwarded-for", &ip)]).await.1;

    // Fresh clients follow the rotation; learn its order.
    let order: Vec<String> = {
        let mut v = Vec::new();
        for n in 10..13 {
            v.push(as_client(from(n)).await);
        }
        v
    };
    assert_eq!(order.iter().collect::<HashSet<_>>().len(), 3, "{order:?}");
    let after = |pod: &str| order[(order.iter().position(|o| o == pod).unwrap() + 1) % 3].clone();

    let pinned = as_client(from(1)).await;
    for _ in 0..10 {
        assert_eq!(as_client(from(1)).await, pinned, "separate connections, same client");
    }
    // Line the rotation up so that a fresh pick would not be `pinned`, then ask again: still
    // pinned while the entry lives...
    let mut fresh = 20;
    let align = async |fresh: &mut u32| loop {
        let got = as_client(from(*fresh)).await;
        *fresh += 1;
        if after(&got) != pinned {
            return after(&got);
        }
    };
    align(&mut fresh).await;
    assert_eq!(as_client(from(1)).await, pinned);
    // ...and rotated normally once it has expired.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let expected = align(&mut fresh).await;
    assert_eq!(as_client(from(1)).await, expected, "the ClientIP entry expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ewma_prefers_the_fast_endpoint() {
    let fast = Pod::start("fast", Duration::ZERO).await;
    let slow = Pod::start("slow", Duration::from_millis(40)).await;
    let manifests = class()
        + &service("web", &[fast.addr, slow.addr])
        + &ingress("e", "e.test", "web", &[(&nginx("load-balance"), "ewma")])
        + &ingress("r", "r.test", "web", &[]);
    let p = Arc::new(Portico::start(&[("all.yaml", manifests)], &[]).await);
    let share = async |host: &'static str| {
        let mut workers = Vec::new();
        for _ in 0..8 {
            let p = p.clone();
            workers.push(tokio::spawn(async move {
                let mut fast = 0;
                for _ in 0..25 {
                    if call(&p, host, &[]).await.1 == "fast" {
                        fast += 1;
                    }
                }
                fast
            }));
        }
        let mut n = 0;
        for w in workers {
            n += w.await.unwrap();
        }
        n as f64 / 200.0
    };
    let ewma = share("e.test").await;
    let rr = share("r.test").await;
    assert!(ewma >= 0.75, "ewma sent {ewma} of requests to the fast endpoint");
    assert!((0.4..=0.6).contains(&rr), "round robin sent {rr} to the fast endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_costs_one_failed_connect_and_retries_are_safe() {
    let web = start_pods("web", 3).await;
    let mut eps = addrs(&web);
    eps.push(refused_addr());
    // A rude endpoint: accepts, then closes without answering.
    let rude = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude_addr = rude.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = rude.accept().await {
                drop(s);
            }
        }
    });
    let manifests = class()
        + &service("web", &eps)
        + &ingress("d", "d.test", "web", &[])
        + &service("rude", &[rude_addr, web[0].addr])
        + &ingress("r", "r.test", "rude", &[]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    for i in 0..30 {
        // POSTs with a body too: a failed connect sent nothing, so any request may move on.
        let req = Request::builder()
            .method(if i % 2 == 0 { "GET" } else { "POST" })
            .uri("/app/x")
            .header("host", "d.test")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let (s, _, body) = request(p.http, req).await.unwrap();
        assert_eq!(s, 200, "request {i}: {body}");
        assert_eq!(json(&body)["body_bytes"], 5);
    }
    let failed = p
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("upstream connect failed") && l.contains(&refused_addr().to_string()))
        .count();
    assert_eq!(failed, 1, "the dead endpoint was dialled {failed} times");

    // A failure after the request was sent: GETs go to the next endpoint; a POST with a
    // body is not sent twice.
    for _ in 0..6 {
        let (s, pod, _, _) = call(&p, "r.test", &[]).await;
        assert_eq!((s, pod.as_str()), (200, "web-0"));
    }
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let req = Request::builder()
            .method("POST")
            .uri("/app/x")
            .header("host", "r.test")
            .body(Full::new(Bytes::from_static(b"once")))
            .unwrap();
        statuses.push(request(p.http, req).await.unwrap().0);
    }
    assert!(statuses.contains(&502) && statuses.contains(&200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_on_failure_repins_the_session() {
    let web = start_pods("web", 3).await;
    let with = [
        (nginx("affinity"), "cookie"),
        (nginx("affinity-mode"), "persistent"),
        (nginx("session-cookie-change-on-failure"), "true"),
    ];
    let with: Vec<(&str, &str)> = with.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let without = [(nginx("affinity"), "cookie"), (nginx("affinity-mode"), "persistent")];
    let without: Vec<(&str, &str)> = without.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let manifests = class()
        + &service("web", &addrs(&web))
        + &ingress("yes", "yes.test", "web", &with)
        + &ingress("no", "no.test", "web", &without);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // Sessions on web-0 for both Ingresses.
    let mut on_0 = HashMap::new();
    for host in ["yes.test", "no.test"] {
        for _ in 0..30 {
            let (pod, cookie) = session(&p, host).await;
            if pod == "web-0" {
                on_0.insert(host, cookie);
                break;
            }
        }
    }
    web[0].stop();
    let (pod, set) = with_cookie(&p, "yes.test", &on_0["yes.test"]).await;
    assert_ne!(pod, "web-0");
    let new = set.expect("change-on-failure sets a cookie for the pod that answered");
    assert_eq!(with_cookie(&p, "yes.test", &new).await, (pod, None));

    let (pod, set) = with_cookie(&p, "no.test", &on_0["no.test"]).await;
    assert_ne!(pod, "web-0");
    assert_eq!(set, None, "without change-on-failure the cookie stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_on_failure_repins_a_balanced_session_among_200_endpoints() {
    // Re-pinning must find a key for the endpoint that answered however many there are.
    let web = start_pods("web", 200).await;
    let with = [
        (nginx("affinity"), "cookie"),
        (nginx("session-cookie-change-on-failure"), "true"),
    ];
    let with: Vec<(&str, &str)> = with.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let manifests = class() + &service("web", &addrs(&web)) + &ingress("b", "b.test", "web", &with);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    let mut stopped = HashSet::new();
    for _ in 0..5 {
        let (pod, cookie) = session(&p, "b.test").await;
        let n: usize = pod.strip_prefix("web-").unwrap().parse().unwrap();
        web[n].stop();
        stopped.insert(pod.clone());
        let (now, set) = with_cookie(&p, "b.test", &cookie).await;
        assert!(!stopped.contains(&now), "{now} answered");
        let new = set.expect("change-on-failure sets a cookie for the pod that answered");
        assert_eq!(
            with_cookie(&p, "b.test", &new).await,
            (now, None),
            "{new} names the pod that answered"
        );
    }
}

/// One EndpointSlice for `pods`; those in `terminating` are serving but terminating.
fn slice(name: &str, pods: &[SocketAddr], terminating: &[SocketAddr]) -> String {
    let service = fixture::service("default", name).port("http", 80);
    let slice = pods.iter().fold(
        fixture::slice("default", &format!("{name}-all"), name).port("http", pods[0].port().into()),
        |slice, p| {
            let slice = slice.endpoint(&p.ip().to_string());
            if terminating.contains(p) {
                slice.ready(false).serving(true).terminating(true)
            } else {
                slice.ready(true)
            }
        },
    );
    yaml(&[service.into(), slice.into()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_endpoint_keeps_its_sessions_and_gets_no_new_ones() {
    // One port, three loopback addresses: pods in one slice share the port.
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut pods = Vec::new();
    for i in 0..3u8 {
        let addr: SocketAddr = format!("127.0.1.{}:{port}", i + 1).parse().unwrap();
        let l = TcpListener::bind(addr).await.unwrap();
        let name = format!("web-{i}");
        tokio::spawn(async move { portico::demo::serve_echo(l, &name).await });
        pods.push(addr);
    }
    let notes = [(nginx("affinity"), "cookie")];
    let notes: Vec<(&str, &str)> = notes.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let manifests = |live: &[SocketAddr], term: &[SocketAddr]| {
        class() + &slice("web", live, term) + &ingress("t", "t.test", "web", &notes)
    };
    let p = Portico::start(&[("all.yaml", manifests(&pods, &[]))], &[]).await;
    let mut on_1 = Vec::new();
    for _ in 0..60 {
        let (pod, cookie) = session(&p, "t.test").await;
        if pod == "web-1" {
            on_1.push(cookie);
        }
    }
    assert!(!on_1.is_empty());

    p.write("all.yaml", &manifests(&pods, &pods[1..2]));
    p.wait_generation(2).await;
    for cookie in &on_1 {
        assert_eq!(with_cookie(&p, "t.test", cookie).await, ("web-1".to_string(), None));
    }
    for _ in 0..40 {
        assert_ne!(
            session(&p, "t.test").await.0,
            "web-1",
            "a terminating pod got a new session"
        );
    }

    // Once it is gone, its sessions move.
    let rest = [pods[0], pods[2]];
    p.write("all.yaml", &manifests(&rest, &[]));
    p.wait_generation(3).await;
    for cookie in &on_1 {
        assert_ne!(with_cookie(&p, "t.test", cookie).await.0, "web-1");
    }
}
