//! Certificate rotation on a real cluster: Portico installed with `kubectl apply -k deploy/`
//! (two replicas behind the portico Service), an Ingress with a TLS Secret made by
//! `kubectl create secret tls`; the Secret replaced the way users do it
//! (`kubectl create secret tls ... --dry-run=client -o yaml | kubectl apply -f -`). New
//! handshakes get the new certificate within a second, on every replica; a connection opened
//! before the change keeps being served.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use support::node::{Node, eventually, text};

/// A kept-alive HTTP/1.1 connection over TLS to `addr`, SNI web.example.com.
async fn open(addr: SocketAddr) -> (hyper::client::conn::http1::SendRequest<Full<Bytes>>, String) {
    let mut cfg = support::insecure_client(rustls::DEFAULT_VERSIONS);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("web.example.com").unwrap(), stream)
        .await
        .unwrap();
    let cn = cn_of(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref());
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    (send, cn)
}

fn cn_of(der: &[u8]) -> String {
    let (_, x) = x509_parser::parse_x509_certificate(der).unwrap();
    x.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

async fn get(send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>) -> Result<String, String> {
    send.ready().await.map_err(|e| e.to_string())?;
    let req = http::Request::builder()
        .uri("/")
        .header("host", "web.example.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let body = String::from_utf8_lossy(&body).trim().to_string();
    if status == 200 {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_tls_secret_is_served_at_once_and_open_connections_stay() {
    let Some(node) = Node::start("rotation") else { return };
    node.install_portico();
    for line in [
        format!(
            "kubectl create deployment web --image={} --replicas=2 -- /agnhost serve-hostname --port=8080",
            node.env["AGNHOST_IMAGE"]
        ),
        "kubectl expose deployment web --port=80 --target-port=8080".into(),
    ] {
        let out = node.sh(&line);
        assert!(out.status.success(), "`{line}`: {}", text(&out));
    }
    let (a_crt, a_key) = node.certificate("web-a", "web.example.com");
    let (b_crt, b_key) = node.certificate("web-b", "web.example.com");
    for line in [
        format!("kubectl create secret tls web-tls --cert={a_crt} --key={a_key}"),
        "kubectl create ingress web --class=portico --rule=\"web.example.com/*=web:80,tls=web-tls\"".into(),
        "timeout 180 kubectl rollout status deployment web".into(),
    ] {
        let out = node.sh(&line);
        assert!(out.status.success(), "`{line}`: {}", text(&out));
    }
    let vip = node.cluster_ip("portico-system", "portico");
    let addr: SocketAddr = format!("{vip}:443").parse().unwrap();

    // Served with the first certificate, by both replicas (new connections spread over them).
    let mut first = eventually("HTTPS answered with web-a", Duration::from_secs(60), || {
        let rt = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| {
            rt.block_on(async {
                let (mut send, cn) = open(addr).await;
                let body = get(&mut send).await?;
                if cn == "web-a" {
                    Ok((send, body))
                } else {
                    Err(format!("certificate {cn}"))
                }
            })
        })
    });
    eprintln!("before: web-a, answered by {}", first.1);
    let mut before = Vec::new();
    for _ in 0..6 {
        before.push(open(addr).await);
    }

    let rotate = format!(
        "kubectl create secret tls web-tls --cert={b_crt} --key={b_key} --dry-run=client -o yaml | kubectl apply -f -"
    );
    let out = node.sh(&rotate);
    let applied = Instant::now();
    assert!(out.status.success(), "`{rotate}`: {}", text(&out));

    // New handshakes: the first of 20 in a row that all present web-b.
    let mut streak = 0;
    let mut since = None;
    while streak < 20 {
        assert!(
            applied.elapsed() < Duration::from_secs(10),
            "web-b not served on every new connection within 10 s"
        );
        let (mut send, cn) = open(addr).await;
        if cn == "web-b" {
            since.get_or_insert(applied.elapsed());
            streak += 1;
            get(&mut send).await.unwrap();
        } else {
            since = None;
            streak = 0;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let took = since.unwrap();
    eprintln!(
        "Secret applied → every new handshake gets the new certificate: {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    assert!(took < Duration::from_secs(1), "the new certificate took {took:?}");

    // Connections opened before the change are still served, with the certificate they began with.
    let body = get(&mut first.0).await.expect("the first connection is still served");
    eprintln!("the connection opened before the rotation answered again ({body})");
    for (send, cn) in before.iter_mut() {
        assert_eq!(cn, "web-a");
        get(send).await.expect("an open connection is still served");
    }
}
