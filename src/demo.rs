//! Built-in echo backends: `portico demo` runs them behind the quickstart, tests use them as pods.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// The embedded quickstart manifests (the same files as `examples/quickstart/`).
pub const QUICKSTART: &[(&str, &str)] = &[
    ("ingress.yaml", include_str!("../examples/quickstart/ingress.yaml")),
    ("services.yaml", include_str!("../examples/quickstart/services.yaml")),
    (
        "tls-secret.yaml",
        include_str!("../examples/quickstart/tls-secret.yaml"),
    ),
];

/// The echo pods the quickstart's EndpointSlices name.
pub const QUICKSTART_PODS: &[(&str, &str)] = &[
    ("web-7d4b9-a", "127.0.0.1:9101"),
    ("web-7d4b9-b", "127.0.0.1:9102"),
    ("api-5f6c8-a", "127.0.0.1:9201"),
];

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2).
pub fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

/// A WebSocket echo: every data frame comes back unmasked with the same opcode, a ping gets
/// a pong, a close is answered and ends the session.
async fn websocket_echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await?;
        let opcode = head[0] & 0x0f;
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await?;
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await?;
            len = u64::from_be_bytes(b);
        }
        if len > 16 << 20 {
            return Ok(());
        }
        let mut mask = [0u8; 4];
        if head[1] & 0x80 != 0 {
            s.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).await?;
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        let reply_op = if opcode == 0x9 { 0xA } else { opcode };
        let mut out = vec![0x80 | reply_op];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&payload);
        s.write_all(&out).await?;
        if opcode == 0x8 {
            return Ok(());
        }
    }
}

async fn echo(pod: Arc<str>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    // WebSocket upgrades get a frame echo; other upgrades a raw byte echo.
    if let Some(up) = req.headers().get(header::UPGRADE).cloned() {
        let ws_key = req.headers().get("sec-websocket-key").cloned();
        let is_ws = ws_key.is_some() && up.as_bytes().eq_ignore_ascii_case(b"websocket");
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on.await {
                let io = TokioIo::new(upgraded);
                if is_ws {
                    let _ = websocket_echo(io).await;
                } else {
                    let (mut r, mut w) = tokio::io::split(io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert(header::UPGRADE, up);
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(key) = ws_key
            && let Ok(v) = HeaderValue::from_str(&websocket_accept(key.as_bytes()))
        {
            r.headers_mut().insert("sec-websocket-accept", v);
        }
        return r;
    }
    // `/sleep/MS` answers after MS milliseconds (at most 10 s): a slow pod for timeout and
    // drain tests.
    if let Some(ms) = req
        .uri()
        .path()
        .strip_prefix("/sleep/")
        .and_then(|m| m.parse::<u64>().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms.min(10_000))).await;
    }
    let method = req.method().to_string();
    let target = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(v.to_str().unwrap_or("").to_string()),
            )
        })
        .collect();
    // `/echo-body` streams the request body back; anything else reports what arrived.
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if target.starts_with("/echo-body") {
        return Response::new(Full::new(body));
    }
    let doc = serde_json::json!({
        "pod": &*pod,
        "method": method,
        "target": target,
        "version": version,
        "headers": headers,
        "body_bytes": body.len(),
    });
    let mut r = Response::new(Full::new(Bytes::from(doc.to_string())));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // `/status/NNN` answers with that status (200 to 599), for error-page tests.
    if let Some(code) = target
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (200..600).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
    {
        *r.status_mut() = code;
    }
    r
}

/// Serves an echo backend named `pod` on an already bound listener, forever.
pub async fn serve_echo(listener: TcpListener, pod: &str) {
    let pod: Arc<str> = pod.into();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let pod = pod.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let pod = pod.clone();
                async move { Ok::<_, Infallible>(echo(pod, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds and spawns an echo backend; returns its address.
pub async fn spawn_echo(addr: SocketAddr, pod: &str) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(addr).await?;
    let local = l.local_addr()?;
    let pod = pod.to_string();
    tokio::spawn(async move { serve_echo(l, &pod).await });
    Ok(local)
}
