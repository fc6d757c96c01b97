//! TLS to backends (`proxy-ssl-*`) end to end: certificates made by the `openssl` command, TLS
//! backends served by rustls in this test that report what they saw of each handshake (SNI,
//! client certificate, protocol version, cipher suite), and the real portico binary between.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use portico::fixture::{self, yaml};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key `name.key` and a certificate `name.crt` for `cn`, signed by `issuer` (its
/// `.crt` and `.key`), or self-signed; `ext` lines go in its extensions.
fn cert(dir: &Path, name: &str, cn: &str, issuer: Option<&str>, ext: &str) {
    let subj = format!("/CN={cn}");
    let (key, csr, crt, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).unwrap();
    let newkey = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
    ];
    match issuer {
        None => {
            let mut args = vec![
                "req",
                "-x509",
                "-days",
                "2",
                "-subj",
                &subj,
                "-out",
                &crt,
                "-extensions",
                "v3",
            ];
            args.extend(newkey);
            let cfg = format!("[req]\ndistinguished_name=dn\n[dn]\n[v3]\n{ext}\nsubjectKeyIdentifier=hash\n");
            std::fs::write(dir.join(format!("{name}.cnf")), cfg).unwrap();
            let cnf = format!("{name}.cnf");
            args.extend(["-config", &cnf]);
            openssl(dir, &args);
        }
        Some(ca) => {
            let mut args = vec!["req", "-subj", &subj, "-out", &csr];
            args.extend(newkey);
            openssl(dir, &args);
            let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca_crt,
                    "-CAkey",
                    &ca_key,
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-out",
                    &crt,
                    "-extfile",
                    &extfile,
                ],
            );
        }
    }
}

const CA_EXT: &str = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign";
const SERVER_EXT: &str = "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:backend.internal";
const CLIENT_EXT: &str = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth";

/// The certificates of the test, made once per run.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn make() -> Pki {
        let dir = std::env::temp_dir().join(format!("portico-backend-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        cert(&dir, "ca", "Backend CA", None, CA_EXT);
        cert(&dir, "other-ca", "Another CA", None, CA_EXT);
        cert(&dir, "backend", "backend.internal", Some("ca"), SERVER_EXT);
        cert(&dir, "client", "portico-client", Some("ca"), CLIENT_EXT);
        // ca → int1 → int2 → deep: two intermediates.
        cert(&dir, "int1", "Intermediate 1", Some("ca"), CA_EXT);
        cert(&dir, "int2", "Intermediate 2", Some("int1"), CA_EXT);
        cert(&dir, "deep", "backend.internal", Some("int2"), SERVER_EXT);
        Pki { dir }
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(file)).unwrap()
    }

    fn certs(&self, files: &[&str]) -> Vec<CertificateDer<'static>> {
        files
            .iter()
            .flat_map(|f| CertificateDer::pem_slice_iter(&self.read(f)).collect::<Vec<_>>())
            .map(Result::unwrap)
            .collect()
    }

    fn key(&self, file: &str) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(&self.read(file)).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How a test backend does TLS.
struct Backend<'a> {
    chain: &'a [&'a str],
    key: &'a str,
    tls12_only: bool,
    /// Clients must present a certificate issued by this CA.
    client_ca: Option<&'a str>,
}

/// A TLS backend on loopback (HTTP/1.1 and h2) answering every request with what it saw of
/// the handshake and the request: `sni=…;client=…;version=…;suite=…;http=…`.
async fn spawn_backend(pki: &Pki, b: Backend<'_>) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if b.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap();
    let builder = match b.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in pki.certs(&[ca]) {
                roots.add(c).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_single_cert(pki.certs(b.chain), pki.key(b.key)).unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let (_, conn) = tls.get_ref();
                let client = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| {
                        let (_, x) = x509_parser::parse_x509_certificate(c.as_ref()).unwrap();
                        x.subject().to_string()
                    })
                    .unwrap_or_else(|| "none".into());
                let seen = format!(
                    "sni={};client={client};version={:?};suite={:?}",
                    conn.server_name().unwrap_or("none"),
                    conn.protocol_version().unwrap(),
                    conn.negotiated_cipher_suite().unwrap().suite(),
                );
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let seen = format!("{seen};http={:?}", req.version());
                    async move { Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(seen)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

/// An Opaque Secret with the given files of `pki` under the given keys.
fn secret(pki: &Pki, name: &str, fields: &[(&str, &str)]) -> k8s_openapi::api::core::v1::Secret {
    let data: Vec<(&str, Vec<u8>)> = fields.iter().map(|(k, f)| (*k, pki.read(f))).collect();
    let data: Vec<(&str, &[u8])> = data.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    fixture::opaque_secret("default", name, &data)
}

/// An Ingress `name` for host `{name}.test` → Service `svc`, HTTPS to the backend, with
/// `proxy-ssl-*` (and other) annotations.
fn https_ingress(name: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    let mut full: Vec<(String, &str)> = vec![(format!("{NGINX}backend-protocol"), "HTTPS")];
    full.extend(annotations.iter().map(|(k, v)| (format!("{NGINX}{k}"), *v)));
    let full: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    annotated_ingress(name, &format!("{name}.test"), "/", svc, &full)
}

async fn ask(p: &Portico, name: &str) -> (u16, String) {
    let (status, _, body) = get(p.http, &format!("{name}.test"), "/").await.unwrap();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_backends_follows_proxy_ssl_annotations() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let pki = Pki::make();
    let server = |tls12_only, client_ca| Backend {
        chain: &["backend.crt"],
        key: "backend.key",
        tls12_only,
        client_ca,
    };
    let plain = spawn_backend(&pki, server(false, None)).await;
    let mtls = spawn_backend(&pki, server(false, Some("ca.crt"))).await;
    let tls12 = spawn_backend(&pki, server(true, None)).await;
    let deep = spawn_backend(
        &pki,
        Backend {
            chain: &["deep.crt", "int2.crt", "int1.crt"],
            key: "deep.key",
            tls12_only: false,
            client_ca: None,
        },
    )
    .await;

    let secrets = yaml(&[
        secret(&pki, "ca", &[("ca.crt", "ca.crt")]).into(),
        secret(&pki, "other-ca", &[("ca.crt", "other-ca.crt")]).into(),
        secret(
            &pki,
            "client",
            &[
                ("ca.crt", "ca.crt"),
                ("tls.crt", "client.crt"),
                ("tls.key", "client.key"),
            ],
        )
        .into(),
        fixture::opaque_secret(
            "default",
            "garbage",
            &[("ca.crt", b"-----BEGIN CERTIFICATE-----\nnot base64\n")],
        )
        .into(),
    ]);
    let on = [("proxy-ssl-verify", "on"), ("proxy-ssl-name", "backend.internal")];
    let with = |secret: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut v = vec![("proxy-ssl-secret", secret)];
        v.extend_from_slice(extra);
        v
    };
    let ingresses = [
        // Verification, the name and the CA.
        https_ingress("verified", "plain", &with("default/ca", &on)),
        https_ingress("wrongca", "plain", &with("default/other-ca", &on)),
        https_ingress(
            "wrongname",
            "plain",
            &with(
                "default/ca",
                &[("proxy-ssl-verify", "on"), ("proxy-ssl-name", "other.internal")],
            ),
        ),
        // The endpoint's address is the default name: the certificate is not for it.
        https_ingress("noname", "plain", &with("default/ca", &[("proxy-ssl-verify", "on")])),
        https_ingress(
            "unverified",
            "plain",
            &with("default/other-ca", &[("proxy-ssl-verify", "off")]),
        ),
        https_ingress("default", "plain", &[]),
        // SNI only with proxy-ssl-server-name.
        https_ingress(
            "sni",
            "plain",
            &with("default/ca", &[on[0], on[1], ("proxy-ssl-server-name", "on")]),
        ),
        // GRPCS (HTTP/2 over TLS) is verified the same way.
        https_ingress(
            "grpcs",
            "plain",
            &with(
                "default/ca",
                &[
                    on[0],
                    on[1],
                    ("proxy-ssl-server-name", "on"),
                    ("backend-protocol", "GRPCS"),
                ],
            ),
        ),
        https_ingress(
            "grpcs-wrongca",
            "plain",
            &with("default/other-ca", &[on[0], on[1], ("backend-protocol", "GRPCS")]),
        ),
        // Client certificates.
        https_ingress("mtls", "mtls", &with("default/client", &on)),
        https_ingress("nomtls", "mtls", &with("default/ca", &on)),
        // Protocols and ciphers.
        https_ingress(
            "tls13",
            "tls12",
            &with("default/ca", &[("proxy-ssl-protocols", "TLSv1.3")]),
        ),
        https_ingress(
            "tls12",
            "tls12",
            &with("default/ca", &[("proxy-ssl-protocols", "TLSv1.2 TLSv1.3")]),
        ),
        https_ingress(
            "chacha",
            "tls12",
            &with(
                "default/ca",
                &[("proxy-ssl-ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305:!AES")],
            ),
        ),
        // Depth: two intermediates.
        https_ingress("depth1", "deep", &with("default/ca", &on)),
        https_ingress(
            "depth2",
            "deep",
            &with("default/ca", &[on[0], on[1], ("proxy-ssl-verify-depth", "2")]),
        ),
        // Secrets that cannot be used.
        https_ingress("missing", "plain", &with("default/nope", &on)),
        https_ingress(
            "garbage",
            "plain",
            &with("default/garbage", &[("proxy-ssl-verify", "off")]),
        ),
        https_ingress("nosecret", "plain", &[("proxy-ssl-verify", "on")]),
        https_ingress("elsewhere", "plain", &with("kube-system/ca", &on)),
    ];
    let mut files = vec![
        ("class.yaml", class()),
        ("secrets.yaml", secrets),
        ("plain.yaml", service("plain", &[plain])),
        ("mtls.yaml", service("mtls", &[mtls])),
        ("tls12.yaml", service("tls12", &[tls12])),
        ("deep.yaml", service("deep", &[deep])),
    ];
    let names: Vec<String> = (0..ingresses.len()).map(|i| format!("ing-{i}.yaml")).collect();
    for (n, text) in names.iter().zip(ingresses) {
        files.push((n, text));
    }
    let p = Portico::start(&files, &[]).await;

    let (status, body) = ask(&p, "verified").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("sni=none;"),
        "no SNI without proxy-ssl-server-name: {body}"
    );
    assert_eq!(ask(&p, "wrongca").await.0, 502);
    assert_eq!(ask(&p, "wrongname").await.0, 502);
    assert_eq!(ask(&p, "noname").await.0, 502);
    assert_eq!(ask(&p, "unverified").await.0, 200);
    assert_eq!(ask(&p, "default").await.0, 200);

    // One backend, routes with different TLS settings: a connection made (and pooled) for
    // one never carries another's requests.
    for _ in 0..2 {
        assert_eq!(ask(&p, "unverified").await.0, 200);
        assert_eq!(ask(&p, "default").await.0, 200);
        assert_eq!(ask(&p, "wrongca").await.0, 502);
        let (status, body) = ask(&p, "sni").await;
        assert_eq!(status, 200);
        assert!(body.contains("sni=backend.internal;"), "{body}");
        let (status, body) = ask(&p, "verified").await;
        assert_eq!(status, 200);
        assert!(body.contains("sni=none;"), "{body}");
    }

    for _ in 0..2 {
        let (status, body) = ask(&p, "grpcs").await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("sni=backend.internal;") && body.contains("http=HTTP/2.0"),
            "{body}"
        );
        assert_eq!(ask(&p, "grpcs-wrongca").await.0, 502);
    }

    let (status, body) = ask(&p, "mtls").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("client=CN=portico-client;"), "{body}");
    assert_eq!(ask(&p, "nomtls").await.0, 502);

    assert_eq!(
        ask(&p, "tls13").await.0,
        502,
        "a TLS 1.2-only backend and proxy-ssl-protocols TLSv1.3"
    );
    let (status, body) = ask(&p, "tls12").await;
    assert_eq!(status, 200);
    assert!(body.contains("version=TLSv1_2;"), "{body}");
    let (status, body) = ask(&p, "chacha").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("suite=TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
        "{body}"
    );

    assert_eq!(ask(&p, "depth1").await.0, 502, "two intermediates, depth 1");
    assert_eq!(ask(&p, "depth2").await.0, 200, "two intermediates, depth 2");

    let routes = p.routes().await;
    for (name, expect) in [
        ("missing", "does not exist"),
        ("garbage", "ca.crt"),
        ("nosecret", "without proxy-ssl-secret"),
        ("elsewhere", "another namespace"),
    ] {
        assert_eq!(ask(&p, name).await.0, 503, "{name}");
        let diags = diagnostics_of(&routes, name);
        assert!(
            diags
                .iter()
                .any(|d| d.contains("TLS to the upstream") && d.contains(expect)),
            "{name}: {diags:?}"
        );
    }
    assert!(
        p.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("TLS to the upstream") && l.contains("503")),
        "the 503 is logged with its reason"
    );
}
