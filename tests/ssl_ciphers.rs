//! `ssl-ciphers` and `ssl-prefer-server-ciphers` per Ingress over real TLS handshakes: the
//! host whose Ingress sets them negotiates from its own list, the others keep the listener's.

mod support;

use std::sync::Arc;

use portico::fixture::yaml;
use rustls::CipherSuite;
use rustls::CipherSuite::{
    TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 as AES128, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 as AES256,
    TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 as CHACHA,
};
use support::*;

/// A TLS 1.2 client offering `suites`, in this order.
fn offering(suites: &[CipherSuite]) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let all = provider.cipher_suites.clone();
    provider.cipher_suites = suites
        .iter()
        .map(|id| *all.iter().find(|s| s.suite() == *id).unwrap())
        .collect();
    Arc::new(insecure_client_with(provider, &[&rustls::version::TLS12]))
}

/// The suite a handshake for `host` settles on, after a request answered 200.
async fn negotiated(
    addr: std::net::SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    host: &str,
) -> Result<CipherSuite, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    Ok(suite)
}

/// `foo.com` (with `annotations`) and `rsa.example.com` (without), both on the RSA certificate.
fn site(pods: &[std::net::SocketAddr], annotations: &[(&str, &str)]) -> String {
    class()
        + &service("web", pods)
        + &tls_secret("default", "rsa-tls", "rsa.crt", "rsa-pkcs1.key")
        + &yaml(&[
            ingress_with("ciphers", "foo.com", "/", "web", annotations)
                .tls(&["foo.com"], Some("rsa-tls"))
                .into(),
            ingress_with("plain", "rsa.example.com", "/", "web", &[])
                .tls(&["rsa.example.com"], Some("rsa-tls"))
                .into(),
        ])
}

/// foo.com's suites.
const LIST: &str = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_negotiates_from_its_own_suites_and_others_keep_the_listeners() {
    let web = pods("web", 1).await;
    let p = Portico::start(
        &[(
            "site.yaml",
            site(&web, &[("nginx.ingress.kubernetes.io/ssl-ciphers", LIST)]),
        )],
        &[],
    )
    .await;
    let aes128 = offering(&[AES128]);
    let chacha_first = offering(&[CHACHA, AES256, AES128]);

    // foo.com takes only its two suites, and picks by its own order (server preference is on
    // by default, as in ingress-nginx).
    let refused = negotiated(p.https, &aes128, "foo.com").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(negotiated(p.https, &chacha_first, "foo.com").await, Ok(AES256));
    // The other host: the listener's suites, in rustls's order.
    assert_eq!(negotiated(p.https, &aes128, "rsa.example.com").await, Ok(AES128));
    assert_eq!(negotiated(p.https, &chacha_first, "rsa.example.com").await, Ok(AES256));

    // OpenSSL's client agrees: offering one TLS 1.2 suite, it gets foo.com only with one of
    // foo.com's, and the other host with any.
    let openssl = |host: &str, cipher: &str| {
        let connect = p.https.to_string();
        let args = [
            "s_client",
            "-connect",
            &connect,
            "-servername",
            host,
            "-tls1_2",
            "-cipher",
            cipher,
        ];
        let out = std::process::Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success() && text.contains(&format!("Cipher is {cipher}")),
            text,
        )
    };
    assert!(!openssl("foo.com", "ECDHE-RSA-AES128-GCM-SHA256").0);
    let (ok, text) = openssl("foo.com", "ECDHE-RSA-CHACHA20-POLY1305");
    assert!(ok, "{text}");
    let (ok, text) = openssl("rsa.example.com", "ECDHE-RSA-AES128-GCM-SHA256");
    assert!(ok, "{text}");

    // Writes foo.com's Ingress with `annotations` and waits for the Config.
    let rewrite = |annotations: &'static [(&'static str, &'static str)]| {
        let (p, web) = (&p, &web);
        async move {
            let generation = p.routes().await["generation"].as_u64().unwrap();
            p.write("site.yaml", &site(web, annotations));
            p.wait_generation(generation + 1).await;
        }
    };

    // ssl-prefer-server-ciphers: "false": the client's favourite of the host's suites.
    rewrite(&[
        ("nginx.ingress.kubernetes.io/ssl-ciphers", LIST),
        ("portico.dev/ssl-prefer-server-ciphers", "false"),
    ])
    .await;
    assert_eq!(negotiated(p.https, &chacha_first, "foo.com").await, Ok(CHACHA));
    assert!(negotiated(p.https, &aes128, "foo.com").await.is_err());
    assert_eq!(negotiated(p.https, &chacha_first, "rsa.example.com").await, Ok(AES256));

    // A list with no suite Portico can use: a Warning, and the host keeps the listener's.
    rewrite(&[(
        "nginx.ingress.kubernetes.io/ssl-ciphers",
        "ALL:!aNULL:!EXPORT56:RC4+RSA:+HIGH",
    )])
    .await;
    let warnings = diagnostics_of(&p.routes().await, "ciphers");
    assert!(
        warnings
            .iter()
            .any(|m| m.contains("ssl-ciphers") && m.contains("keep the listener's")),
        "{warnings:?}"
    );
    assert_eq!(negotiated(p.https, &aes128, "foo.com").await, Ok(AES128));
}
