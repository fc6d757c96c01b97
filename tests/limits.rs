//! `limit-rps`, `limit-rpm`, `limit-connections`, `limit-burst-multiplier`, `limit-whitelist`
//! and `--limits-per-cluster` against a real Portico: a real load generator (wrk) for the
//! rate, and clients with distinct source addresses (all of 127.0.0.0/8 is this host's, so a
//! socket bound to 127.0.0.N reaches Portico on 127.0.0.1 as a client of its own).

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::{Portico, annotated_ingress, class, service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

const HOST: &str = "limited.example.com";

fn note(name: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{name}")
}

/// Portico serving `HOST` → echo pods with the `limit-*` annotations `notes` (short names).
async fn limited(notes: &[(&str, &str)], extra: &[&str], more: &[(&str, String)]) -> Portico {
    let pods = support::pods("web", 1).await;
    let keys: Vec<(String, &str)> = notes.iter().map(|(k, v)| (note(k), *v)).collect();
    let notes: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut files = vec![(
        "all.yaml",
        [
            class(),
            service("web", &pods),
            annotated_ingress("web", HOST, "/", "web", &notes),
        ]
        .join("---\n"),
    )];
    files.extend(more.iter().cloned());
    Portico::start(&files, extra).await
}

/// One request on a fresh connection from source address 127.0.0.`n`, with extra fields.
async fn get_from(n: u8, to: SocketAddr, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)), 0))
        .unwrap();
    let stream = sock.connect(to).await.expect("connects");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().uri(path);
    if !fields.iter().any(|(k, _)| *k == "host") {
        req = req.header("host", HOST);
    }
    for (k, v) in fields {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("an answer");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// How many of `n` requests in a row from 127.0.0.`src` get 200; every other answer must be
/// the limit's 503.
async fn passed(p: &Portico, src: u8, n: usize, fields: &[(&str, &str)]) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        match get_from(src, p.http, "/", fields).await {
            (200, _) => ok += 1,
            (503, body) => assert_eq!(body, "service unavailable\n"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    ok
}

/// wrk's totals: (requests, non-2xx/3xx answers, seconds measured).
fn wrk(url: &str, seconds: u32) -> (u64, u64, f64) {
    let out = Command::new("wrk")
        .args([
            "-t",
            "2",
            "-c",
            "8",
            "-d",
            &format!("{seconds}s"),
            "-H",
            &format!("Host: {HOST}"),
            url,
        ])
        .output()
        .expect("wrk is installed (see .ci/run)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk failed: {text}");
    let (mut total, mut refused, mut secs) = (None, 0, None);
    for line in text.lines().map(str::trim) {
        // "12345 requests in 4.00s, 1.23MB read"
        if let Some((n, rest)) = line.split_once(" requests in ") {
            total = n.parse().ok();
            secs = rest.split_once("s,").and_then(|(s, _)| s.parse().ok());
        }
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses: ") {
            refused = n.parse().unwrap();
        }
    }
    (total.expect("wrk's total"), refused, secs.expect("wrk's duration"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_n_per_second_lets_n_through_under_load() {
    const N: f64 = 50.0;
    // A burst of one second's worth (N × 1) passes at once, then N a second: the burst also
    // absorbs the moments Portico is not scheduled on a busy machine, as it does in nginx.
    let p = limited(&[("limit-rps", "50"), ("limit-burst-multiplier", "1")], &[], &[]).await;
    let (total, refused, secs) = wrk(&format!("http://{}/", p.http), 4);
    let through = (total - refused) as f64;
    let rate = (through - (N + 1.0)) / secs;
    eprintln!("wrk: {total} requests in {secs}s, {through} through: {rate:.1}/s after the burst");
    assert!(total as f64 > 3.0 * through, "the load must exceed the limit: {total}");
    assert!((rate - N).abs() <= 0.1 * N, "{rate:.1}/s for a limit of {N}/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_burst_passes_at_once_then_the_per_minute_rate() {
    // 10 a minute: the next drop leaks out 6 s after the last; the burst is 2 × 10.
    let p = limited(&[("limit-rpm", "10"), ("limit-burst-multiplier", "2")], &[], &[]).await;
    assert_eq!(passed(&p, 1, 30, &[]).await, 21, "burst + 1");
    // Other routes and hosts are not limited.
    let (status, _) = get_from(1, p.http, "/", &[("host", "other.example.com")]).await;
    assert_eq!(status, 404);
    // A new Config whose change is elsewhere keeps this Ingress's buckets: still refused.
    let generation = p.routes().await["generation"].as_u64().unwrap();
    p.write(
        "other.yaml",
        &annotated_ingress("other", "other.example.com", "/", "web", &[]),
    );
    p.wait_generation(generation + 1).await;
    assert_eq!(get_from(1, p.http, "/", &[("host", "other.example.com")]).await.0, 200);
    assert_eq!(passed(&p, 1, 3, &[]).await, 0, "the bucket outlived the reload");
    // Changing the limits starts afresh.
    let before = std::fs::read_to_string(p.dir.join("all.yaml")).unwrap();
    let after = ["'", "\""].iter().fold(before.clone(), |text, q| {
        text.replace(
            &format!("limit-burst-multiplier: {q}2{q}"),
            &format!("limit-burst-multiplier: {q}3{q}"),
        )
    });
    assert_ne!(before, after, "the manifest names the multiplier");
    p.write("all.yaml", &after);
    p.wait_generation(generation + 2).await;
    assert_eq!(passed(&p, 1, 40, &[]).await, 31, "a new bucket, burst 3 × 10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_limited_each_on_their_own_and_whitelisted_ones_not_at_all() {
    let p = limited(
        &[
            ("limit-rpm", "6"),
            ("limit-burst-multiplier", "1"),
            ("limit-whitelist", "127.0.0.9/32, 10.9.0.0/16"),
        ],
        &["--trusted-proxies", "127.0.0.1/32"],
        &[],
    )
    .await;
    assert_eq!(passed(&p, 2, 10, &[]).await, 7);
    assert_eq!(passed(&p, 3, 10, &[]).await, 7, "another address has its own bucket");
    assert_eq!(passed(&p, 2, 3, &[]).await, 0);
    assert_eq!(passed(&p, 9, 30, &[]).await, 30, "whitelisted");
    // Behind a trusted proxy, the forwarded address is the client: its own bucket, and the
    // whitelist applies to it.
    let a = [("x-forwarded-for", "192.0.2.1")];
    let b = [("x-forwarded-for", "192.0.2.2")];
    assert_eq!(passed(&p, 1, 10, &a).await, 7);
    assert_eq!(passed(&p, 1, 10, &b).await, 7);
    assert_eq!(passed(&p, 1, 30, &[("x-forwarded-for", "10.9.1.1")]).await, 30);
    // An untrusted peer's X-Forwarded-For is ignored: 127.0.0.3 is still over its limit.
    assert_eq!(passed(&p, 3, 3, &[("x-forwarded-for", "192.0.2.77")]).await, 0);
}

/// A pod that reports each request it receives and answers only once `release` has a
/// permit for it: requests held in progress for as long as the test wants, no clock involved.
async fn holding_pod() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>, Arc<Semaphore>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived, rx) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let gate = release.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (arrived, gate) = (arrived.clone(), gate.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = arrived.send(());
                gate.acquire().await.unwrap().forget();
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    .await;
            });
        }
    });
    (addr, rx, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_limit_holds_n_requests_and_refuses_the_next() {
    let (pod, mut arrived, release) = holding_pod().await;
    let manifests = [
        class(),
        service("web", &[pod]),
        annotated_ingress("web", HOST, "/", "web", &[(&note("limit-connections"), "2")]),
    ]
    .join("---\n");
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let to = p.http;
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get_from(4, to, "/", &[]).await }))
        .collect();
    // Both reached the pod: both are in progress, counted.
    for _ in 0..2 {
        arrived.recv().await.unwrap();
    }
    assert_eq!(get_from(4, to, "/", &[]).await, (503, "service unavailable\n".into()));
    assert_eq!(get_from(4, to, "/", &[]).await.0, 503, "still two in progress");
    // Another client has its own count: it reaches the pod (and waits there too).
    let other = tokio::spawn(async move { get_from(5, to, "/", &[]).await });
    arrived.recv().await.unwrap();
    release.add_permits(3);
    for t in held {
        assert_eq!(t.await.unwrap(), (200, "ok".into()));
    }
    assert_eq!(other.await.unwrap().0, 200);
    // Done (the response bodies are read): their places are free again.
    release.add_permits(2);
    assert_eq!(get_from(4, to, "/", &[]).await.0, 200);
    assert_eq!(get_from(4, to, "/", &[]).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_counts_until_it_closes() {
    let p = limited(&[("limit-connections", "1")], &[], &[]).await;
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10)), 0))
        .unwrap();
    let mut tunnel = sock.connect(p.http).await.unwrap();
    let head = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
    tunnel.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tunnel.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
    // The tunnel works: what goes in comes back from the pod.
    tunnel.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tunnel.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    assert_eq!(
        get_from(10, p.http, "/", &[]).await.0,
        503,
        "the tunnel holds the one place"
    );
    assert_eq!(get_from(11, p.http, "/", &[]).await.0, 200);
    drop(tunnel);
    // Closed: the place is given back once Portico has seen the close.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get_from(10, p.http, "/", &[]).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the place was never given back");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Portico's own Service `ingress/portico` with `ready` of its endpoints ready and one not.
fn own_service(ready: &[&str]) -> String {
    let mut slice = portico::fixture::slice("ingress", "portico-abc", "portico").port("http", 80);
    for a in ready {
        slice = slice.endpoint(a);
    }
    slice = slice.endpoint("10.1.0.99").ready(false);
    portico::fixture::yaml(&[slice.into()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_per_cluster_are_divided_by_the_live_replicas() {
    // 20 a minute with a burst of 2 × 20 for the cluster; two replicas: 10 and 20 each.
    let p = limited(
        &[("limit-rpm", "20"), ("limit-burst-multiplier", "2")],
        &["--limits-per-cluster", "ingress/portico"],
        &[("own.yaml", own_service(&["10.1.0.1", "10.1.0.2"]))],
    )
    .await;
    assert_eq!(p.routes().await["replicas"]["live"], 2);
    assert_eq!(passed(&p, 6, 50, &[]).await, 21, "20 / 2 + 1");
    // A third replica comes up: 40 / 3 = 13 each, counted afresh.
    let generation = p.routes().await["generation"].as_u64().unwrap();
    p.write("own.yaml", &own_service(&["10.1.0.1", "10.1.0.2", "10.1.0.3"]));
    p.wait_generation(generation + 1).await;
    assert_eq!(p.routes().await["replicas"]["live"], 3);
    assert_eq!(passed(&p, 7, 50, &[]).await, 14, "40 / 3 + 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_limits_are_per_replica() {
    let p = limited(
        &[("limit-rpm", "20"), ("limit-burst-multiplier", "2")],
        &[],
        &[("own.yaml", own_service(&["10.1.0.1", "10.1.0.2"]))],
    )
    .await;
    assert_eq!(
        passed(&p, 8, 50, &[]).await,
        41,
        "as ingress-nginx: 40 + 1 on each replica"
    );
}

/// Portico's own Service `portico-system/portico` in a cluster: one slice listing `ready`
/// ready and `not_ready` not ready addresses (documentation addresses: no traffic goes there).
fn own_in_cluster(ready: &[&str], not_ready: &[&str]) -> String {
    let slice = portico::fixture::slice("portico-system", "portico-1", "portico").port("http", 80);
    let slice = ready.iter().fold(slice, |s, a| s.endpoint(a).ready(true));
    let slice = not_ready.iter().fold(slice, |s, a| s.endpoint(a).ready(false));
    portico::fixture::yaml(&[
        portico::fixture::service("portico-system", "portico")
            .port("http", 80)
            .into(),
        slice.into(),
    ])
}

/// Waits (up to 30 s) until `/routes` says `live` replicas.
async fn wait_replicas(p: &Portico, live: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let routes = p.routes().await;
        if routes["replicas"]["live"] == live {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {live} replicas: {}",
            routes["replicas"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Kubernetes mode on a real kube-apiserver: the replicas are the ready endpoints of Portico's
/// own Service as the watch sees them, counted again when its slices change (on the quick,
/// endpoints-only recompile too) and kept when only other Services' slices do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_mode_counts_the_ready_pods_of_its_own_service() {
    let cp = support::cluster::ControlPlane::start();
    let kubeconfig = cp.install_portico();
    cp.apply(&own_in_cluster(&["198.51.100.1", "198.51.100.2"], &["198.51.100.3"]));
    cp.ok(&["create", "namespace", "app"]);
    let web = |ips: &[&str]| {
        let slice = ips.iter().fold(
            portico::fixture::slice("app", "web-1", "web").port("http", 8080),
            |s, a| s.endpoint(a).ready(true),
        );
        portico::fixture::yaml(&[
            portico::fixture::service("app", "web").port("http", 80).into(),
            slice.into(),
        ])
    };
    let ingress = portico::fixture::ingress("app", "web")
        .class("portico")
        .rule(HOST, "/", portico::fixture::Prefix, "web", 80)
        .annotation(&note("limit-rps"), "30");
    cp.apply(&(class() + "---\n" + &web(&["198.51.100.7"]) + "---\n" + &portico::fixture::yaml(&[ingress.into()])));
    let dir = std::env::temp_dir().join(format!("portico-kube-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let args = [
        "--publish-status-address",
        "203.0.113.10",
        "--election-namespace",
        "portico-system",
        "--pod-name",
        "p1",
        "--limits-per-cluster",
        "portico-system/portico",
    ];
    let p = Portico::launch_env(
        args.map(String::from).to_vec(),
        dir,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
    .await;
    wait_replicas(&p, 2).await;
    let routes = p.routes().await;
    assert_eq!(routes["hosts"][HOST][0]["limits"]["rps"]["limit"], 30, "{routes}");

    // A third pod becomes ready, then one stops being ready.
    cp.apply(&own_in_cluster(&["198.51.100.1", "198.51.100.2", "198.51.100.3"], &[]));
    wait_replicas(&p, 3).await;
    // Another Service's endpoints change (an endpoints-only compile that reads only its
    // objects): the count stays.
    cp.apply(&web(&["198.51.100.7", "198.51.100.8"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let routes = p.routes().await;
        let ready = &routes["hosts"][HOST][0]["backend"]["target"]["ready"];
        if ready.as_array().is_some_and(|r| r.len() == 2) {
            assert_eq!(routes["replicas"]["live"], 3, "{}", routes["replicas"]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second web endpoint never came"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    cp.apply(&own_in_cluster(&["198.51.100.1"], &["198.51.100.2", "198.51.100.3"]));
    wait_replicas(&p, 1).await;
}
