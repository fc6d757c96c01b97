//! Header name case over HTTP/1.1, checked on the raw bytes: a client writing mixed-case
//! names by hand, a backend written here that records the exact bytes it receives.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{Portico, class, ingress_with, service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One request as the backend read it: the head's bytes and the body, de-chunked.
#[derive(Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn lines(&self) -> Vec<&str> {
        lines(&self.head)
    }

    fn named(&self, name: &str) -> Vec<&str> {
        named(&self.head, name)
    }
}

/// Reads until `buf` holds a head; its length.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, want: usize) {
    while buf.len() < want {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The value of the field `name` (any case) in a head.
fn field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .skip(1)
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)))
        .map(|(_, v)| v.trim())
}

/// Takes one line (CRLF-ended) from `buf`, refilled from `s`.
async fn line(s: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let mut l: Vec<u8> = buf.drain(..i + 2).collect();
            l.truncate(i);
            return l;
        }
        let want = buf.len() + 1;
        fill(s, buf, want).await;
    }
}

/// Reads one message body after `head` from `buf` (refilled from `s`): Content-Length or
/// chunked; what follows stays in `buf`.
async fn read_body(s: &mut TcpStream, buf: &mut Vec<u8>, head: &str) -> Vec<u8> {
    if field(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let size_line = line(s, buf).await;
            let digits = std::str::from_utf8(&size_line).unwrap().split(';').next().unwrap();
            let size = usize::from_str_radix(digits, 16).unwrap();
            if size == 0 {
                // Trailer lines, if any, up to the empty line.
                while !line(s, buf).await.is_empty() {}
                return body;
            }
            fill(s, buf, size + 2).await;
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    }
    let n: usize = field(head, "content-length").map_or(0, |v| v.parse().unwrap());
    fill(s, buf, n).await;
    buf.drain(..n).collect()
}

/// A backend that records every request it reads and answers each with `answer` of its head.
async fn backend(answer: fn(&str) -> Vec<u8>) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(len) = read_head(&mut s, &mut buf).await {
                    let head = String::from_utf8(buf.drain(..len).collect()).unwrap();
                    let body = read_body(&mut s, &mut buf, &head).await;
                    let bytes = answer(&head);
                    let _ = tx.send(Seen { head, body });
                    if s.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// A raw client connection to Portico.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(p: &Portico) -> Client {
        Client {
            s: TcpStream::connect(p.http).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Reads one response: its head's bytes and its body.
    async fn response(&mut self) -> (String, Vec<u8>) {
        let len = tokio::time::timeout(Duration::from_secs(10), read_head(&mut self.s, &mut self.buf))
            .await
            .expect("a response within 10 s")
            .expect("a response head");
        let head = String::from_utf8(self.buf.drain(..len).collect()).unwrap();
        let body = read_body(&mut self.s, &mut self.buf, &head).await;
        (head, body)
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }
}

/// The backend's answer: `/chunked...` chunked, `/lower...` in lower case, `/fuzz/CL/TE`
/// framed by the field named CL (or chunked by the field named TE when CL is `-`), else
/// mixed case with a length.
fn answer(head: &str) -> Vec<u8> {
    let path = head.split(' ').nth(1).unwrap_or("/");
    if path.starts_with("/chunked") {
        return b"HTTP/1.1 200 OK\r\nTransfer-ENCODING: chunked\r\nX-Chunked-Answer: 1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".to_vec();
    }
    if path.starts_with("/named/") {
        // A backend naming itself: in conventional case, in another, or with the field
        // named as hop-by-hop by Connection (so not forwarded).
        let field = match path {
            "/named/title" => "Server: backend-x",
            "/named/odd" => "SERVER: backend-y",
            _ => "Connection: server\r\nServer: backend-z",
        };
        return format!("HTTP/1.1 200 OK\r\n{field}\r\nContent-Length: 2\r\n\r\nok").into_bytes();
    }
    if path.starts_with("/lower") {
        return b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-lower: 1\r\ncontent-length: 2\r\n\r\nok".to_vec();
    }
    if let Some(rest) = path.strip_prefix("/fuzz/") {
        let (cl, te) = rest.split_once('/').unwrap();
        return if cl == "-" {
            format!("HTTP/1.1 200 OK\r\n{te}: chunked\r\nX-Fuzz: {rest}\r\n\r\n4\r\nfuzz\r\n0\r\n\r\n")
        } else {
            format!("HTTP/1.1 200 OK\r\nX-Fuzz: {rest}\r\n{cl}: 4\r\n\r\nfuzz")
        }
        .into_bytes();
    }
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Custom-Thing: yes\r\nx-lower: 1\r\nX-UPPER: 2\r\nSet-Cookie: a=1\r\nset-COOKIE: b=2\r\nContent-Length: 2\r\n\r\nok".to_vec()
}

async fn proxy(name: &str) -> (Portico, mpsc::UnboundedReceiver<Seen>) {
    let (addr, seen) = backend(answer).await;
    let p = Portico::start(
        &[
            ("class.yaml", class()),
            ("svc.yaml", service(name, &[addr])),
            (
                "ing.yaml",
                portico::fixture::yaml(&[ingress_with(name, "case.test", "/", name, &[]).into()]),
            ),
        ],
        &[],
    )
    .await;
    (p, seen)
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("the backend got a request within 10 s")
        .unwrap()
}

#[tokio::test]
async fn request_names_reach_the_backend_as_the_client_spelled_them() {
    let (p, mut seen) = proxy("spelled").await;
    let mut c = Client::connect(&p).await;

    c.send(b"GET /a HTTP/1.1\r\nHost: case.test\r\nUser-Agent: raw/1\r\nX-Custom-Thing: a\r\nx-MiXeD: b\r\naccept: */*\r\nX-Dup: 1\r\nx-other: 0\r\nx-DUP: 2\r\n\r\n")
        .await;
    let got = next(&mut seen).await;
    let fields = got.lines();
    for want in [
        "Host: case.test",
        "User-Agent: raw/1",
        "X-Custom-Thing: a",
        "x-MiXeD: b",
        "accept: */*",
        "x-other: 0",
    ] {
        assert!(fields.contains(&want), "{want:?} not in {:?}", got.head);
    }
    // Each value of a repeated name keeps its own spelling.
    assert_eq!(got.named("x-dup"), ["X-Dup: 1", "x-DUP: 2"], "{}", got.head);
    assert_eq!(c.response().await.1, b"ok");

    // An upload that waits for 100 Continue: the final answer is still spelled right.
    c.send(b"PUT /mixed HTTP/1.1\r\nHost: case.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let (head, _) = c.response().await;
    assert!(head.starts_with("HTTP/1.1 100 "), "{head}");
    c.send(b"hello").await;
    let got = next(&mut seen).await;
    assert_eq!(got.body, b"hello");
    let (head, body) = c.response().await;
    assert_eq!(body, b"ok");
    assert!(lines(&head).contains(&"X-Custom-Thing: yes"), "{head}");

    // A body of a known length, then more requests on the connection: still in step.
    c.send(b"POST /b HTTP/1.1\r\nHost: case.test\r\nContent-Length: 11\r\nX-Upload: yes\r\n\r\nhello world")
        .await;
    let got = next(&mut seen).await;
    assert!(got.lines().contains(&"X-Upload: yes"), "{}", got.head);
    assert!(got.lines().contains(&"Content-Length: 11"), "{}", got.head);
    assert_eq!(got.body, b"hello world");
    assert_eq!(c.response().await.1, b"ok");

    // Two requests in one write (pipelined), the first with a body.
    c.send(b"PUT /c HTTP/1.1\r\nHost: case.test\r\ncontent-length: 3\r\nX-First: 1\r\n\r\nabcGET /d HTTP/1.1\r\nHOST: case.test\r\nX-Second: 2\r\n\r\n")
        .await;
    let first = next(&mut seen).await;
    assert!(first.lines().contains(&"X-First: 1"), "{}", first.head);
    assert!(first.lines().contains(&"content-length: 3"), "{}", first.head);
    assert_eq!(first.body, b"abc");
    let second = next(&mut seen).await;
    assert!(second.head.starts_with("GET /d "), "{}", second.head);
    assert!(second.lines().contains(&"HOST: case.test"), "{}", second.head);
    assert!(second.lines().contains(&"X-Second: 2"), "{}", second.head);
    c.response().await;
    c.response().await;

    // All in lower case: as it came.
    c.send(b"GET /e HTTP/1.1\r\nhost: case.test\r\nx-plain: 1\r\n\r\n")
        .await;
    let got = next(&mut seen).await;
    assert!(got.lines().contains(&"host: case.test"), "{}", got.head);
    assert!(got.lines().contains(&"x-plain: 1"), "{}", got.head);
    c.response().await;
}

#[tokio::test]
async fn after_a_chunked_upload_names_keep_their_case() {
    let (p, mut seen) = proxy("chunked").await;
    let mut c = Client::connect(&p).await;
    c.send(b"POST /up HTTP/1.1\r\nHost: case.test\r\nTransfer-Encoding: chunked\r\nX-Chunked: 1\r\n\r\n5;n=abc\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")
        .await;
    let got = next(&mut seen).await;
    assert!(got.lines().contains(&"X-Chunked: 1"), "{}", got.head);
    assert_eq!(got.body, b"hello");
    c.response().await;
    c.send(b"GET /after HTTP/1.1\r\nHost: case.test\r\nX-After: 1\r\n\r\n")
        .await;
    let got = next(&mut seen).await;
    assert_eq!(got.named("x-after"), ["X-After: 1"], "{}", got.head);
    c.response().await;
}

/// The field lines of a response head, as they came.
fn lines(head: &str) -> Vec<&str> {
    head.split("\r\n").skip(1).filter(|l| !l.is_empty()).collect()
}

/// The field lines named `name` in any case.
fn named<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    lines(head)
        .into_iter()
        .filter(|l| l.split(':').next().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .collect()
}

/// A backend's own Server field reaches the client as it wrote it, once; Portico's goes
/// only where the backend sent none (or named it hop-by-hop).
#[tokio::test]
async fn a_backend_server_field_is_kept_else_portico_names_itself() {
    let (p, mut seen) = proxy("server").await;
    let mut c = Client::connect(&p).await;
    for (path, want) in [
        ("/named/title", "Server: backend-x"),
        ("/named/odd", "SERVER: backend-y"),
        ("/named/hop", "Server: portico"),
        ("/lower", "Server: portico"),
    ] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: case.test\r\n\r\n").as_bytes())
            .await;
        let (head, body) = c.response().await;
        next(&mut seen).await;
        assert_eq!(body, b"ok", "{path}");
        assert_eq!(named(&head, "server"), [want], "{path}: {head}");
    }
}

#[tokio::test]
async fn response_names_reach_the_client_as_the_backend_wrote_them() {
    let (p, mut seen) = proxy("answers").await;
    let mut c = Client::connect(&p).await;
    for _ in 0..2 {
        c.send(b"GET /mixed HTTP/1.1\r\nHost: case.test\r\n\r\n").await;
        let (head, body) = c.response().await;
        next(&mut seen).await;
        assert_eq!(body, b"ok");
        let got = lines(&head);
        for want in [
            "Content-Type: text/plain",
            "X-Custom-Thing: yes",
            "x-lower: 1",
            "X-UPPER: 2",
            "Content-Length: 2",
        ] {
            assert!(got.contains(&want), "{want:?} not in {head}");
        }
        assert_eq!(
            named(&head, "set-cookie"),
            ["Set-Cookie: a=1", "set-COOKIE: b=2"],
            "{head}"
        );
        // Portico's own fields in conventional case, as nginx writes its own.
        assert_eq!(named(&head, "server"), ["Server: portico"], "{head}");
        assert!(named(&head, "date").iter().all(|l| l.starts_with("Date: ")), "{head}");
    }

    // A chunked answer named in odd case: understood, re-chunked, one framing field.
    c.send(b"GET /chunked HTTP/1.1\r\nHost: case.test\r\n\r\n").await;
    let (head, body) = c.response().await;
    next(&mut seen).await;
    assert_eq!(body, b"abcde");
    assert!(lines(&head).contains(&"X-Chunked-Answer: 1"), "{head}");
    assert_eq!(named(&head, "transfer-encoding").len(), 1, "{head}");
    assert!(named(&head, "content-length").is_empty(), "{head}");

    // HEAD: a head only, and the next answer on the connection is still spelled right.
    c.send(b"HEAD /mixed HTTP/1.1\r\nHost: case.test\r\n\r\n").await;
    next(&mut seen).await;
    let len = read_head(&mut c.s, &mut c.buf).await.unwrap();
    let head = String::from_utf8(c.buf.drain(..len).collect()).unwrap();
    assert!(lines(&head).contains(&"X-Custom-Thing: yes"), "{head}");
    c.send(b"GET /mixed HTTP/1.1\r\nHost: case.test\r\n\r\n").await;
    let (head, body) = c.response().await;
    next(&mut seen).await;
    assert_eq!(body, b"ok");
    assert!(lines(&head).contains(&"X-UPPER: 2"), "{head}");

    // A backend writing lower case gets its names through as they are.
    c.send(b"GET /lower HTTP/1.1\r\nHost: case.test\r\n\r\n").await;
    let (head, _) = c.response().await;
    next(&mut seen).await;
    assert!(lines(&head).contains(&"x-lower: 1"), "{head}");
    assert!(lines(&head).contains(&"content-type: text/plain"), "{head}");

    // After answers with nothing to respell, the next ones are found again.
    c.send(b"GET /lower HTTP/1.1\r\nhost: case.test\r\n\r\n").await;
    c.response().await;
    next(&mut seen).await;
    c.send(b"GET /mixed HTTP/1.1\r\nhost: case.test\r\n\r\n").await;
    let (head, _) = c.response().await;
    next(&mut seen).await;
    assert!(lines(&head).contains(&"X-UPPER: 2"), "{head}");
    c.send(b"GET / HTTP/1.1\r\nhost: nobody.test\r\n\r\n").await;
    let (head, _) = c.response().await;
    assert!(lines(&head).contains(&"Server: portico"), "{head}");
}

#[tokio::test]
async fn portico_answers_in_conventional_case_between_proxied_ones() {
    let (p, mut seen) = proxy("own").await;
    let mut c = Client::connect(&p).await;
    // Its own 404, then a proxied answer, then its own again, pipelined in one write.
    c.send(b"GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\nGET /mixed HTTP/1.1\r\nHost: case.test\r\n\r\nGET /x HTTP/1.1\r\nhost: nobody.test\r\n\r\n")
        .await;
    for i in 0..3 {
        let (head, _) = c.response().await;
        if i == 1 {
            next(&mut seen).await;
            assert!(lines(&head).contains(&"X-Custom-Thing: yes"), "{head}");
            continue;
        }
        assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
        let got = lines(&head);
        assert!(got.contains(&"Content-Type: text/plain; charset=utf-8"), "{head}");
        assert!(got.contains(&"Server: portico"), "{head}");
        assert!(got.iter().any(|l| l.starts_with("Content-Length: ")), "{head}");
        assert!(got.iter().any(|l| l.starts_with("Date: ")), "{head}");
    }
}

/// A case variant of `name`, from `seed`.
fn variant(name: &str, seed: &mut u64) -> String {
    name.chars()
        .map(|c| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            if *seed & 1 == 1 { c.to_ascii_uppercase() } else { c }
        })
        .collect()
}

#[tokio::test]
async fn odd_cases_of_framing_fields_cannot_break_framing() {
    let (p, mut seen) = proxy("fuzz").await;
    let mut c = Client::connect(&p).await;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..40 {
        let cl = variant("content-length", &mut seed);
        let te = variant("transfer-encoding", &mut seed);
        // The request: framed by a Content-Length or chunked, in this round's case.
        let request = if i % 2 == 0 {
            format!("POST /fuzz/{cl}/{te} HTTP/1.1\r\nHost: case.test\r\n{cl}: 5\r\n\r\nhello")
        } else {
            format!("POST /fuzz/-/{te} HTTP/1.1\r\nHost: case.test\r\n{te}: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        };
        c.send(request.as_bytes()).await;
        let got = next(&mut seen).await;
        assert_eq!(got.body, b"hello", "{}", got.head);
        let lengths = got.named("content-length");
        let codings = got.named("transfer-encoding");
        assert_eq!(lengths.len() + codings.len(), 1, "one framing field: {}", got.head);
        if i % 2 == 0 {
            assert_eq!(lengths, [format!("{cl}: 5")], "{}", got.head);
        }
        let (head, body) = c.response().await;
        assert_eq!(body, b"fuzz", "{head}");
        assert_eq!(
            named(&head, "content-length").len() + named(&head, "transfer-encoding").len(),
            1,
            "one framing field: {head}"
        );
        if i % 2 == 0 {
            assert_eq!(named(&head, "content-length"), [format!("{cl}: 4")], "{head}");
        }
        assert!(lines(&head).iter().any(|l| l.starts_with("X-Fuzz: ")), "{head}");
    }
}

#[tokio::test]
async fn http2_clients_are_left_alone() {
    use http_body_util::{BodyExt, Full};
    let (p, mut seen) = proxy("h2").await;
    let mut send = support::h2c(p.http).await;
    for path in ["/mixed", "/chunked", "/nowhere"] {
        let host = if path == "/nowhere" { "nobody.test" } else { "case.test" };
        let req = http::Request::builder()
            .uri(format!("http://{host}{path}"))
            .header("x-h2", "1")
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        // The h2 crate refuses a frame with a capital letter in a name: any respelling of
        // HTTP/2 bytes would fail here.
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status();
        let custom = resp.headers().get("x-custom-thing").cloned();
        resp.into_body().collect().await.unwrap();
        if path == "/nowhere" {
            assert_eq!(status, 404);
            continue;
        }
        assert_eq!(status, 200);
        if path == "/mixed" {
            assert_eq!(custom.unwrap(), "yes");
        }
        let got = next(&mut seen).await;
        assert_eq!(got.named("x-h2"), ["x-h2: 1"], "{}", got.head);
    }
}

#[tokio::test]
async fn names_keep_their_case_over_tls_too() {
    let (p, mut seen) = proxy("tls").await;
    let cfg = std::sync::Arc::new(support::insecure_client(rustls::DEFAULT_VERSIONS));
    let name = rustls::pki_types::ServerName::try_from("case.test").unwrap();
    let stream = TcpStream::connect(p.https).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, stream)
        .await
        .unwrap();
    tls.write_all(b"GET /mixed HTTP/1.1\r\nHost: case.test\r\nX-Tls-Thing: 1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let head = answer.split("\r\n\r\n").next().unwrap();
    assert!(lines(head).contains(&"X-Custom-Thing: yes"), "{head}");
    assert!(lines(head).contains(&"x-lower: 1"), "{head}");
    let got = next(&mut seen).await;
    assert!(got.lines().contains(&"Host: case.test"), "{}", got.head);
    assert!(got.lines().contains(&"X-Tls-Thing: 1"), "{}", got.head);
}
