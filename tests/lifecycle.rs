//! The process around the proxy: demo, check, graceful shutdown, h2c, trusted proxies, limits.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Host h.com → Service `svc` (port 80) of the Ingress `name`, and Service web with `svc_pods`.
fn simple_to(name: &str, svc: &str, svc_pods: &[std::net::SocketAddr]) -> String {
    class() + &service("web", svc_pods) + &annotated_ingress(name, "h.com", "/", svc, &[])
}

fn simple(svc_pods: &[std::net::SocketAddr]) -> String {
    simple_to("web", "web", svc_pods)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_quickstart() {
    let dir = std::env::temp_dir().join(format!("portico-demo-test-{}", std::process::id()));
    let p = Portico::launch(vec!["demo".into()], dir).await;
    // The README line: curl -k --resolve foo.com:8443:127.0.0.1 https://foo.com:8443/bar
    let a = tls_get(p.https, Some("foo.com"), "/bar", false).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(json(&a.body)["pod"].as_str().unwrap().starts_with("web-7d4b9-"));
    let a = tls_get(p.https, Some("foo.com"), "/api/users", false).await.unwrap();
    assert_eq!(json(&a.body)["pod"], "api-5f6c8-a");
    assert_eq!(get(p.http, "foo.com", "/bar").await.unwrap().0, 308);
    assert_eq!(
        json(&get(p.http, "bar.com", "/anything").await.unwrap().2)["target"],
        "/anything"
    );
    assert_eq!(get(p.http, "nope.com", "/").await.unwrap().0, 404);
}

#[test]
fn check_reports_diagnostics_and_exit_status() {
    let dir = std::env::temp_dir().join(format!("portico-check-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ok.yaml"), simple(&["10.0.0.1:8080".parse().unwrap()])).unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["check", "--manifests"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("\"h.com\"") && stdout.contains("10.0.0.1:8080"),
        "{stdout}"
    );

    std::fs::write(dir.join("bad.yaml"), simple_to("other", "ghost", &[])).unwrap();
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("error: Ingress default/other: Service default/ghost does not exist"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The allocator's options as the binary starts: memory freed after a burst of connections
/// goes back to the OS at once and arenas are committed as used (benches/connmem.sh), unless
/// a `MIMALLOC_*` variable says otherwise. mimalloc prints its options with
/// `MIMALLOC_VERBOSE=1`.
#[test]
fn allocator_returns_memory_at_once_unless_told_otherwise() {
    let options = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portico"));
        cmd.arg("--version").env("MIMALLOC_VERBOSE", "1");
        for var in ["MIMALLOC_PURGE_DELAY", "MIMALLOC_ARENA_EAGER_COMMIT"] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let option = |printed: &str, name: &str| -> Option<i64> {
        let line = printed.lines().find(|l| l.contains(&format!("option '{name}':")))?;
        line.rsplit_once(':')?.1.split_whitespace().next()?.parse().ok()
    };
    let plain = options(&[]);
    assert_eq!(option(&plain, "purge_delay"), Some(0), "{plain}");
    assert_eq!(option(&plain, "arena_eager_commit"), Some(0), "{plain}");
    let told = options(&[("MIMALLOC_PURGE_DELAY", "25"), ("MIMALLOC_ARENA_EAGER_COMMIT", "1")]);
    assert_eq!(option(&told, "purge_delay"), Some(25), "{told}");
    assert_eq!(option(&told, "arena_eager_commit"), Some(1), "{told}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    // A pod that says when the request has reached it, then answers 1.5 s later.
    let pod = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pod_addr = pod.local_addr().unwrap();
    let (arrived, in_flight) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = pod.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let _ = arrived.send(());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow")
            .await;
    });
    let mut p = Portico::start(&[("all.yaml", simple(&[pod_addr]))], &["--shutdown-grace", "5s"]).await;
    let addr = p.http;
    let slow = tokio::spawn(async move { get(addr, "h.com", "/sleep/1500").await });
    tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the request reaches the pod")
        .unwrap();
    let t = Instant::now();
    assert_eq!(unsafe_kill(p.pid()), 0);
    // Not ready any more, while the slow request is still running.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if get(p.admin, "admin", "/readyz").await.map(|r| r.0).unwrap_or(0) == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // No new connections are accepted.
    let deadline = Instant::now() + Duration::from_secs(1);
    while tokio::net::TcpStream::connect(p.http).await.is_ok() {
        assert!(Instant::now() < deadline, "listener still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The in-flight request completes.
    let (s, _, b) = slow.await.unwrap().unwrap();
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        p.wait_exit(Duration::from_secs(5)),
        Some(0),
        "exits cleanly after the drain"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// SIGTERM through the `kill` command (no libc binding needed in the tests).
fn unsafe_kill(pid: u32) -> i32 {
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_on_plain_http() {
    let pods = pods("web", 1).await;
    let p = Portico::start(&[("all.yaml", simple(&pods))], &[]).await;
    let mut send = support::h2c(p.http).await;
    for i in 0..3 {
        let req = Request::builder()
            .uri(format!("http://h.com/x{i}"))
            .version(http::Version::HTTP_2)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let j = json(&String::from_utf8_lossy(&body));
        assert_eq!(j["target"], format!("/x{i}"));
        assert_eq!(j["headers"]["host"], "h.com");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_believed_only_from_trusted_proxies() {
    let pods = pods("web", 1).await;
    let req = || {
        Request::builder()
            .uri("/")
            .header("host", "h.com")
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let untrusted = Portico::start(&[("all.yaml", simple(&pods))], &[]).await;
    let h = json(&request(untrusted.http, req()).await.unwrap().2)["headers"].clone();
    assert_eq!(
        (
            h["x-forwarded-for"].as_str(),
            h["x-real-ip"].as_str(),
            h["x-forwarded-proto"].as_str()
        ),
        (Some("127.0.0.1"), Some("127.0.0.1"), Some("http"))
    );
    let trusted = Portico::start(
        &[("all.yaml", simple(&pods))],
        &["--trusted-proxies", "127.0.0.0/8,10.0.0.0/8"],
    )
    .await;
    let h = json(&request(trusted.http, req()).await.unwrap().2)["headers"].clone();
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "203.0.113.9");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_and_oversized_heads_are_cut_off() {
    let pods = pods("web", 1).await;
    let p = Portico::start(
        &[("all.yaml", simple(&pods))],
        &["--client-header-timeout", "300ms", "--max-header-bytes", "8192"],
    )
    .await;
    // A client that never finishes its request head is disconnected.
    let mut s = tokio::net::TcpStream::connect(p.http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h.com\r\nX-Slow: ").await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    assert!(n.is_ok());
    // A head larger than the limit is refused.
    let big = Request::builder()
        .uri("/")
        .header("host", "h.com")
        .header("x-big", "a".repeat(20_000))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(request(p.http, big).await.unwrap().0, 431);
    assert_eq!(get(p.http, "h.com", "/").await.unwrap().0, 200, "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_taken_in_when_its_client_speaks() {
    let pods = pods("web", 1).await;
    let p = Portico::start(&[("all.yaml", simple(&pods))], &["--client-header-timeout", "300ms"]).await;
    let open = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("portico_open_connections{listener=\"http\"} "))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    // Connected but silent for longer than the head deadline: not yet accepted (the kernel
    // holds it, TCP_DEFER_ACCEPT), so no task, no connection slot and no deadline running.
    let mut s = tokio::net::TcpStream::connect(p.http).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, _, metrics) = get(p.admin, "admin", "/metrics").await.unwrap();
    assert_eq!(open(&metrics), 0, "a silent connection is not taken in");
    // Once it speaks it is served like any other.
    s.write_all(b"GET / HTTP/1.1\r\nHost: h.com\r\n\r\n").await.unwrap();
    let (head, _) = tokio::time::timeout(Duration::from_secs(3), read_response(&mut s))
        .await
        .expect("answered");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let (_, _, metrics) = get(p.admin, "admin", "/metrics").await.unwrap();
    assert_eq!(open(&metrics), 1);
}

/// Reads one response with a Content-Length body from a raw connection: its head (lower
/// case) and body.
async fn read_response(s: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.expect("response body");
    (head, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_deadline_spares_requests_in_flight_and_tunnels() {
    let pods = pods("web", 1).await;
    let p = Portico::start(&[("all.yaml", simple(&pods))], &["--client-header-timeout", "500ms"]).await;

    // A head trickled one byte per 100 ms would take 4 s: it is cut off at the deadline
    // instead of being answered.
    let mut s = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let head =
        b"GET / HTTP/1.1\r\nHost: h.com\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = false;
    for b in head.chunks(2) {
        if s.write_all(b).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        cut || !String::from_utf8_lossy(&rest).contains("200 OK"),
        "trickled head answered"
    );

    // Requests that take longer than the deadline (a slow upstream, a slow upload) are not
    // cut, and the connection serves the next request after them.
    let mut s = tokio::net::TcpStream::connect(p.http).await.unwrap();
    s.write_all(b"GET /sleep/1200 HTTP/1.1\r\nHost: h.com\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut s).await.0.starts_with("http/1.1 200"));
    s.write_all(b"POST /echo-body HTTP/1.1\r\nHost: h.com\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.write_all(b"5\r\nhello\r\n").await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"hello".repeat(6), "the slow upload arrived whole");
    s.write_all(b"GET / HTTP/1.1\r\nHost: h.com\r\n\r\n").await.unwrap();
    assert!(read_response(&mut s).await.0.starts_with("http/1.1 200"));
    // Then, idle past the deadline, the connection is closed.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "idle keep-alive connection closed: {closed:?}"
    );

    // A WebSocket tunnel may stay quiet longer than the deadline.
    let mut s = tokio::net::TcpStream::connect(p.http).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: h.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    assert!(read_response(&mut s).await.0.starts_with("http/1.1 101"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo))
        .await
        .expect("echo in time")
        .expect("tunnel still open");
    assert_eq!(&echo, b"\x81\x02hi");

    // A client that closes its sending side after the request still gets the answer.
    let mut s = tokio::net::TcpStream::connect(p.http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h.com\r\n\r\n").await.unwrap();
    s.shutdown().await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .expect("answered in time")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"),
        "half-closed client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_json_line_per_request() {
    let pods = pods("web", 1).await;
    let p = Portico::start(&[("all.yaml", simple(&pods))], &["--access-log", "on"]).await;
    let req = Request::builder()
        .uri("/some/path?q=1")
        .header("host", "h.com")
        .header("x-request-id", "test-req-42")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(request(p.http, req).await.unwrap().0, 200);
    assert_eq!(get(p.http, "nope.test", "/").await.unwrap().0, 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    let access = loop {
        let lines = p.access_lines();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(access.len(), 2, "{access:?}");
    let f = &access[0]["fields"];
    assert_eq!(f["request_id"], "test-req-42");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["host"], "h.com");
    assert_eq!(f["path"], "/some/path");
    assert_eq!(f["status"], 200);
    assert_eq!(f["ingress"], "web");
    assert_eq!(f["upstream"], pods[0].to_string());
    assert_eq!(access[1]["fields"]["status"], 404);
}

/// A flag value out of range is a usage error naming the flag (exit 2), not a panic in
/// `Duration::from_secs_f64` (exit 101) or in `Semaphore::new`.
#[test]
fn out_of_range_flags_are_usage_errors() {
    for (flag, value) in [
        ("--upstream-response-timeout", "100000000000000000000000s"),
        ("--client-header-timeout", "18446744073709551616"),
        ("--shutdown-grace", "25h"),
        ("--manifests-poll", "0s"),
        ("--max-connections", "18446744073709551615"),
        ("--max-headers", "100000000000"),
        ("--tls-session-cache", "18446744073709551615"),
        ("--worker-threads", "100000000"),
    ] {
        let mut child = command()
            .args(["--manifests", "/nonexistent", "--log-format", "json"])
            .args([flag, value])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A value that is taken starts a server: stop it rather than wait forever.
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}
