//! A pod that terminates TLS itself (for passthrough tests), with a certificate made by
//! openssl, and openssl's own client.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub fn openssl(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// `openssl s_client` to `addr` for `sni` with `extra` options: whether the handshake
/// succeeded, and what it printed.
pub fn s_client(addr: SocketAddr, sni: &str, extra: &[&str]) -> (bool, String) {
    let connect = addr.to_string();
    let mut args = vec!["s_client", "-connect", &connect, "-servername", sni];
    args.extend_from_slice(extra);
    let out = openssl(&args, b"");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A self-signed certificate made by openssl for `cn`: (cert PEM, key PEM).
pub fn openssl_cert(dir: &Path, cn: &str) -> (Vec<u8>, Vec<u8>) {
    let (crt, key) = (dir.join("backend.crt"), dir.join("backend.key"));
    let out = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName=DNS:{cn}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            crt.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (std::fs::read(crt).unwrap(), std::fs::read(key).unwrap())
}

/// A TLS backend of its own (the pod that terminates TLS itself): answers every request
/// with `tls-backend` and the SNI it saw.
pub async fn tls_backend(cert: &[u8], key: &[u8]) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert).map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_slice(key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    serve_tls(cfg, |conn| {
        format!("tls-backend sni={}\n", conn.server_name().unwrap_or(""))
    })
    .await
}

/// A TLS server with `cfg` on loopback that answers every request with the body `answer`
/// makes from the connection (after the handshake).
pub async fn serve_tls(cfg: rustls::ServerConfig, answer: fn(&rustls::ServerConnection) -> String) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else { return };
                let body = answer(tls.get_ref().1);
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}
