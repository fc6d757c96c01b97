//! A flaky backend for the retry tests: endpoints on loopback sharing one count of tries per
//! request id (as the conformance suite's echo backend counts them), which fail the first N
//! tries of a request as it asks, then answer 200.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Portico, get};

/// Every try of each request id, in arrival order: when, and on which endpoint.
pub type Tries = Arc<Mutex<HashMap<String, Vec<(Instant, u16)>>>>;

/// Endpoints of one flaky backend sharing their counts. A request `/?id=ID&fail=N&how=H`
/// fails its first N tries: `H` a status code answers it, `reset` closes the connection with
/// an RST after reading the request, `slow` answers 200 after 2 s. Later tries get 200 with
/// the body `ok`. Every answer closes the connection, so that no try reaches it on a kept-alive
/// connection (whose loss Portico takes for a stale connection and resends at once).
pub async fn flaky(n: usize) -> (Vec<SocketAddr>, Tries) {
    flaky_on(IpAddr::from([127, 0, 0, 1]), n).await
}

/// [`flaky`] listening on `ip`.
pub async fn flaky_on(ip: IpAddr, n: usize) -> (Vec<SocketAddr>, Tries) {
    let tries: Tries = Arc::default();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        addrs.push(listener.local_addr().unwrap());
        let tries = tries.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, port, tries.clone()));
            }
        });
    }
    (addrs, tries)
}

async fn serve(mut stream: tokio::net::TcpStream, port: u16, tries: Tries) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split(' ').nth(1).unwrap_or("/");
    let query: HashMap<&str, &str> = target
        .split_once('?')
        .map(|(_, q)| q.split('&').filter_map(|kv| kv.split_once('=')).collect())
        .unwrap_or_default();
    let id = query.get("id").copied().unwrap_or("").to_string();
    let fail: usize = query.get("fail").and_then(|n| n.parse().ok()).unwrap_or(0);
    let how = query.get("how").copied().unwrap_or("500").to_string();
    let seen = {
        let mut t = tries.lock().unwrap();
        let list = t.entry(id).or_default();
        list.push((Instant::now(), port));
        list.len()
    };
    let status = if seen > fail {
        "200 OK"
    } else {
        match how.as_str() {
            "reset" => {
                // A zero linger does not block the drop (tokio's deprecation is about
                // waiting out unsent data): the close sends an RST at once.
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return;
            }
            "slow" => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "200 OK"
            }
            code => &format!("{code} Failing"),
        }
    };
    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The status of a GET to `host` failing its first `fail` tries `how`, and the tries that
/// reached the backend as (when, endpoint port).
pub async fn call(p: &Portico, tries: &Tries, host: &str, fail: usize, how: &str) -> (u16, Vec<(Instant, u16)>) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string();
    let path = format!("/?id={id}&fail={fail}&how={how}");
    let (status, _, _) = get(p.http, host, &path).await.unwrap();
    let seen = tries.lock().unwrap().remove(&id).unwrap_or_default();
    (status, seen)
}

/// This machine's address on its default route (no packet is sent): an endpoint address the
/// API server takes, where it refuses loopback ones.
pub fn local_address() -> IpAddr {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("198.51.100.1:9")
        .expect("a default route, for an address that is not loopback");
    s.local_addr().unwrap().ip()
}
