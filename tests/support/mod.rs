//! Shared fixtures for the integration tests: a real `portico` process on a temporary
//! manifests directory, echo pods on loopback, and small HTTP/HTTPS clients.
#![allow(dead_code)]

pub mod cluster;
pub mod flaky;
pub mod gateway_api;
pub mod load;
pub mod netns;
pub mod node;
pub mod tls_backend;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portico::fixture::{self, IngressBuilder, Prefix, yaml};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

/// An address nothing listens on: echo pods and Portico bind 127.0.0.1 only, so a connect
/// to 127.0.0.2 is refused at once.
pub fn refused_addr() -> SocketAddr {
    "127.0.0.2:9".parse().unwrap()
}

/// A port nothing listens on now, for a Gateway listener's port in a test (the kernel
/// hands ephemeral ports out in turn, so another test is unlikely to take it meanwhile).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    l.local_addr().expect("its address").port()
}

/// Waits until `addr` takes connections: a Gateway listener's socket opens once the Config
/// with it is published, which may come just after /readyz says ready.
pub async fn listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The IngressClass `portico` as a manifest.
pub fn class() -> String {
    yaml(&[fixture::portico_class().into()])
}

/// `service` (namespace default) with one EndpointSlice per pod of `pods`, named
/// `{name}-{i}` with port http and the pod's port, `targetRef` Pod `{name}-pod-{i}`.
pub fn service_with(service: fixture::ServiceBuilder, pods: &[SocketAddr]) -> String {
    let svc = service.build();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let mut objects = vec![svc.into()];
    for (i, p) in pods.iter().enumerate() {
        let slice = fixture::slice("default", &format!("{name}-{i}"), &name)
            .port("http", p.port().into())
            .endpoint(&p.ip().to_string())
            .pod(&format!("{name}-pod-{i}"));
        objects.push(slice.into());
    }
    yaml(&objects)
}

/// A Service `name` (port 80 named http) whose EndpointSlices list `pods` on loopback.
pub fn service(name: &str, pods: &[SocketAddr]) -> String {
    service_with(fixture::service("default", name).port("http", 80), pods)
}

/// An Ingress of class portico for `host` + `path` (Prefix) → Service `svc` port 80, with
/// annotations (full keys).
pub fn ingress_with(name: &str, host: &str, path: &str, svc: &str, annotations: &[(&str, &str)]) -> IngressBuilder {
    let ingress = fixture::ingress("default", name)
        .class("portico")
        .rule(host, path, Prefix, svc, 80);
    annotations.iter().fold(ingress, |i, (k, v)| i.annotation(k, v))
}

/// [`ingress_with`] as a manifest.
pub fn annotated_ingress(name: &str, host: &str, path: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    yaml(&[ingress_with(name, host, path, svc, annotations).into()])
}

/// [`annotated_ingress`] for `host` + `/` → Service `web`, each annotation name under
/// `nginx.ingress.kubernetes.io/`.
pub fn nginx_annotated(name: &str, host: &str, annotations: &[(&str, String)]) -> String {
    let full: Vec<(String, &str)> = annotations
        .iter()
        .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.as_str()))
        .collect();
    let full: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    annotated_ingress(name, host, "/", "web", &full)
}

/// A `kubernetes.io/tls` Secret from the PEM files `crt` and `key` of tests/fixtures/tls.
pub fn tls_secret(namespace: &str, name: &str, crt: &str, key: &str) -> String {
    yaml(&[fixture::tls_secret_files(namespace, name, crt, key).into()])
}

/// Echo pods on loopback, named `{name}-{i}`.
pub async fn pods(name: &str, n: usize) -> Vec<SocketAddr> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(
            portico::demo::spawn_echo("127.0.0.1:0".parse().unwrap(), &format!("{name}-{i}"))
                .await
                .unwrap(),
        );
    }
    v
}

pub struct Portico {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    /// Every line Portico wrote to stdout (JSON logs).
    pub logs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Portico {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Portico {
    /// Starts `portico --manifests DIR` with `files` written into DIR, and waits for /readyz.
    pub async fn start(files: &[(&str, String)], extra: &[&str]) -> Portico {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portico-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let mut args: Vec<String> = vec!["--manifests".into(), dir.to_str().unwrap().into()];
        args.extend(["--manifests-poll", "100ms"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::launch(args, dir).await
    }

    /// Runs `portico [flags] ARGS` on port 0 everywhere and waits for /readyz. Portico logs
    /// the addresses it bound, which avoids racing other tests (and their echo pods) for a
    /// port picked in advance.
    pub async fn launch(args: Vec<String>, dir: PathBuf) -> Portico {
        Self::launch_env(args, dir, &[]).await
    }

    /// `launch` with extra environment variables (KUBECONFIG for Kubernetes mode).
    pub async fn launch_env(args: Vec<String>, dir: PathBuf, envs: &[(&str, &str)]) -> Portico {
        let mut defaults = vec!["--worker-threads", "2", "--log-format", "json"];
        if !args.iter().any(|a| a == "--access-log") {
            defaults.extend(["--access-log", "off"]);
        }
        let mut child = command()
            .args(defaults)
            .args(&args)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("portico starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut sent = false;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let serving = (!sent && line.contains("portico is serving")).then(|| {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    let addr = |k: &str| v["fields"][k].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
                    (addr("http"), addr("https"), addr("admin"))
                });
                // Kept before the addresses go out, so a test that reads the logs once
                // `start` returns finds the line; and drained on, so that Portico never blocks
                // on a full pipe.
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                if let Some((Some(h), Some(s), Some(a))) = serving {
                    let _ = tx.send((h, s, a));
                    sent = true;
                }
            }
        });
        let (http, https, admin) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("portico logs its addresses");
        let p = Portico {
            child,
            http,
            https,
            admin,
            dir,
            logs,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = get(p.admin, "admin", "/readyz").await
                && r.0 == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "portico did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit; returns its status code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn write(&self, name: &str, text: &str) {
        // Write then rename, so the watcher never reads half a file.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.join(name)).unwrap();
    }

    /// The JSON access-log lines written so far.
    pub fn access_lines(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "portico::access")
            .collect()
    }

    pub async fn routes(&self) -> serde_json::Value {
        let (_, _, body) = get(self.admin, "admin", "/routes").await.unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until the live config generation reaches `gen`.
    pub async fn wait_generation(&self, generation: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.routes().await["generation"].as_u64().unwrap_or(0) < generation {
            assert!(
                Instant::now() < deadline,
                "config generation {generation} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs a tool's build script (tests/*/build.sh: built from a Go module into a cache on first
/// use, progress on stderr) and returns the directory it prints; one line if it cannot.
pub fn built(script: &str, what: &str) -> PathBuf {
    built_with(script, what, &[])
}

/// [`built`], the script run with `envs` added to its environment.
pub fn built_with(script: &str, what: &str, envs: &[(&str, &str)]) -> PathBuf {
    let out = Command::new("bash")
        .arg(script)
        .envs(envs.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "needs {what}, built with Go on first use: see the line above and README 'Tests'"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The `portico` binary with its HTTP, HTTPS and admin listeners on loopback port 0.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portico"));
    c.args([
        "--http-addr",
        "127.0.0.1:0",
        "--https-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    c
}

pub type Answer = (u16, http::HeaderMap, String);

async fn collect(resp: Response<Incoming>) -> Result<Answer, String> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn request(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Answer, String> {
    collect(send(addr, req).await?).await
}

/// One HTTP/1.1 request on a fresh connection: the response, its body still to be read.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    send.send_request(req).await.map_err(|e| e.to_string())
}

/// An HTTP/2 connection with prior knowledge (h2c) to `addr`, its driver spawned.
pub async fn h2c(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Result<Answer, String> {
    let req = Request::builder()
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    request(addr, req).await
}

/// Accepts any server certificate, like `curl -k`; the test inspects what it got.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client for `versions` that accepts any certificate, like `curl -k`.
pub fn insecure_client(versions: &[&'static rustls::SupportedProtocolVersion]) -> rustls::ClientConfig {
    insecure_client_with(rustls::crypto::aws_lc_rs::default_provider(), versions)
}

/// [`insecure_client`] with the suites (and the rest) of `provider`.
pub fn insecure_client_with(
    provider: rustls::crypto::CryptoProvider,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let provider = Arc::new(provider);
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth()
}

/// [`insecure_client`] (default versions) that presents `chain` and `key` when the server
/// asks for a client certificate.
pub fn insecure_client_cert(
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_client_auth_cert(chain, key)
        .unwrap()
}

/// One `Connection: close` GET of `/` for `host` over a new TLS connection made with `cfg`,
/// read to the end (so TLS 1.3 tickets are taken in). The client's session store lives in
/// `cfg`, so a later call may resume. Returns the kind of handshake and the status line.
pub async fn tls_once(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    host: &str,
) -> Result<(rustls::HandshakeKind, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    let kind = tls.get_ref().1.handshake_kind().ok_or("handshake not done")?;
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
    let status = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    Ok((kind, status))
}

pub struct TlsAnswer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    /// Subject CN of the certificate the server presented.
    pub cert_cn: String,
    pub chain_len: usize,
    pub alpn: Option<Vec<u8>>,
}

/// One HTTPS request. `sni` None sends no SNI (as when connecting by IP); `h2` offers only
/// ALPN h2 and speaks HTTP/2.
pub async fn tls_get(addr: SocketAddr, sni: Option<&str>, path: &str, h2: bool) -> Result<TlsAnswer, String> {
    let mut cfg = insecure_client(rustls::DEFAULT_VERSIONS);
    cfg.alpn_protocols = if h2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    cfg.enable_sni = sni.is_some();
    let name = ServerName::try_from(sni.unwrap_or("ignored.invalid").to_string()).unwrap();
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let certs = conn.peer_certificates().map(|c| c.to_vec()).unwrap_or_default();
    let alpn = conn.alpn_protocol().map(|p| p.to_vec());
    let cert_cn = certs
        .first()
        .and_then(|c| {
            let (_, x) = x509_parser::parse_x509_certificate(c.as_ref()).ok()?;
            x.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let host = sni.unwrap_or("127.0.0.1");
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(format!("https://{host}{path}"))
            .version(http::Version::HTTP_2)
            .body(Full::new(Bytes::new()))
            .unwrap();
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    let (status, headers, body) = collect(resp).await?;
    Ok(TlsAnswer {
        status,
        headers,
        body,
        cert_cn,
        chain_len: certs.len(),
        alpn,
    })
}

/// The messages of the diagnostics `/routes` lists for Ingress `ingress`.
pub fn diagnostics_of(routes: &serde_json::Value, ingress: &str) -> Vec<String> {
    routes["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["object"]["name"] == ingress)
        .map(|d| d["message"].as_str().unwrap().to_string())
        .collect()
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The next request head on a scripted upstream's connection (up to the blank line, which is
/// consumed); what follows stays in `buf`. `None` when the peer closes first.
pub async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}
