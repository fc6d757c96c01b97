//! Plain HTTP/1.1 over std::net for the one-node cluster tests: one request at a time, and
//! "constant load": client threads that loop on requests, reconnect on error and count what
//! they got.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A response: status, body (trimmed), the first `Set-Cookie` pair (`name=value`), and
/// whether the server closes the connection after it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub set_cookie: Option<String>,
    pub close: bool,
}

/// A failed exchange; `answered` when some bytes of a response had arrived.
#[derive(Debug)]
pub struct Failure {
    pub error: String,
    pub answered: bool,
}

fn fail(answered: bool) -> impl Fn(std::io::Error) -> Failure {
    move |e| Failure {
        error: e.to_string(),
        answered,
    }
}

/// One exchange on `stream`: GET `path` for `host`, with `cookie` if any.
fn exchange(
    stream: &mut BufReader<TcpStream>,
    host: &str,
    path: &str,
    cookie: Option<&str>,
    keep_alive: bool,
) -> Result<Reply, Failure> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portico-node-test\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if !keep_alive {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    stream.get_mut().write_all(req.as_bytes()).map_err(fail(false))?;
    let mut line = String::new();
    if stream.read_line(&mut line).map_err(fail(false))? == 0 {
        return Err(Failure {
            error: "closed before any answer".into(),
            answered: false,
        });
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure {
            error: format!("bad status line {line:?}"),
            answered: true,
        })?;
    let (mut length, mut chunked, mut close, mut set_cookie) = (None, false, !keep_alive, None);
    loop {
        line.clear();
        stream.read_line(&mut line).map_err(fail(true))?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close |= value.eq_ignore_ascii_case("close"),
            "set-cookie" if set_cookie.is_none() => {
                set_cookie = value.split(';').next().map(|p| p.trim().to_string());
            }
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).map_err(fail(true))?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).map_err(|_| Failure {
                error: format!("bad chunk size {line:?}"),
                answered: true,
            })?;
            let mut chunk = vec![0; n + 2];
            stream.read_exact(&mut chunk).map_err(fail(true))?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        stream.read_exact(&mut body).map_err(fail(true))?;
    } else {
        close = true;
        stream.read_to_end(&mut body).map_err(fail(true))?;
    }
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).trim().to_string(),
        set_cookie,
        close,
    })
}

fn connect(addr: SocketAddr) -> Result<BufReader<TcpStream>, Failure> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(fail(false))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(fail(false))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(fail(false))?;
    let _ = s.set_nodelay(true);
    Ok(BufReader::new(s))
}

/// One GET on a new connection (`Connection: close`).
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Result<Reply, String> {
    let mut s = connect(addr).map_err(|f| f.error)?;
    exchange(&mut s, host, path, None, false).map_err(|f| f.error)
}

/// The status of a GET, or the body when it is 200: "who answered" for agnhost's
/// serve-hostname, netexec /hostname and porter.
pub fn who(addr: SocketAddr, host: &str, path: &str) -> String {
    match get(addr, host, path) {
        Ok(r) if r.status == 200 => r.body,
        Ok(r) => r.status.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

/// What load threads are asked to do.
#[derive(Clone, Debug)]
pub struct Spec {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub threads: usize,
    /// Reuse connections (a client's pool); else one connection per request.
    pub keep_alive: bool,
    /// Each thread is one session: it keeps the cookie it was given and sends it back.
    pub cookies: bool,
    /// Pause between one thread's requests.
    pub pause: Duration,
}

impl Spec {
    pub fn new(addr: SocketAddr, host: &str, path: &str) -> Spec {
        Spec {
            addr,
            host: host.into(),
            path: path.into(),
            threads: 4,
            keep_alive: true,
            cookies: false,
            pause: Duration::from_millis(5),
        }
    }
}

/// A stretch of one session's answers from the same pod.
#[derive(Clone, Debug)]
pub struct Run {
    pub pod: String,
    pub first: Instant,
    pub last: Instant,
    pub count: u64,
}

/// What load threads saw.
#[derive(Default, Debug)]
pub struct Tally {
    pub ok: u64,
    /// Requests that got no 200: an error on a new connection, a non-200 status, or an error
    /// after part of the answer had arrived.
    pub failed: u64,
    /// Requests sent again on a new connection because a reused one was closed before any
    /// byte of the answer (what HTTP clients do for idempotent requests, RFC 9112 §9.3.1);
    /// not failures.
    pub reconnects: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// 200 answers per body (the answering pod).
    pub pods: BTreeMap<String, u64>,
    /// The first few failures, with when they happened.
    pub errors: Vec<(Instant, String)>,
    /// Per session (thread): its answers grouped into runs of the same pod.
    pub sessions: Vec<Vec<Run>>,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.ok + self.failed
    }

    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.reconnects += o.reconnects;
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in o.pods {
            *self.pods.entry(k).or_default() += v;
        }
        self.errors.extend(o.errors);
        self.errors.truncate(20);
        self.sessions.extend(o.sessions);
    }

    /// One line for the test's output.
    pub fn summary(&self) -> String {
        format!(
            "{} requests, {} failed, {} reconnects of a closed keep-alive connection; statuses {:?}; answered by {:?}",
            self.total(),
            self.failed,
            self.reconnects,
            self.statuses,
            self.pods
        )
    }
}

/// Client threads in a loop until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Load {
    pub fn start(spec: Spec) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..spec.threads)
            .map(|_| {
                let (spec, stop) = (spec.clone(), stop.clone());
                std::thread::spawn(move || session(&spec, &stop))
            })
            .collect();
        Load { stop, threads }
    }

    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for t in self.threads {
            all.merge(t.join().expect("a load thread panicked"));
        }
        all
    }
}

fn session(spec: &Spec, stop: &AtomicBool) -> Tally {
    let mut t = Tally::default();
    let mut runs: Vec<Run> = Vec::new();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut cookie: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let reused = conn.is_some();
        let mut result = match conn.take() {
            Some(c) => Ok(c),
            None => connect(spec.addr),
        }
        .and_then(|mut c| exchange(&mut c, &spec.host, &spec.path, cookie.as_deref(), spec.keep_alive).map(|r| (c, r)));
        if let Err(Failure { answered: false, .. }) = &result
            && reused
        {
            t.reconnects += 1;
            result = connect(spec.addr).and_then(|mut c| {
                exchange(&mut c, &spec.host, &spec.path, cookie.as_deref(), spec.keep_alive).map(|r| (c, r))
            });
        }
        let now = Instant::now();
        match result {
            Ok((c, r)) => {
                *t.statuses.entry(r.status).or_default() += 1;
                if spec.keep_alive && !r.close {
                    conn = Some(c);
                }
                if spec.cookies
                    && let Some(sc) = r.set_cookie
                {
                    cookie = Some(sc);
                }
                if r.status == 200 && !r.body.is_empty() {
                    t.ok += 1;
                    *t.pods.entry(r.body.clone()).or_default() += 1;
                    match runs.last_mut() {
                        Some(run) if run.pod == r.body => {
                            run.last = now;
                            run.count += 1;
                        }
                        _ => runs.push(Run {
                            pod: r.body,
                            first: now,
                            last: now,
                            count: 1,
                        }),
                    }
                } else {
                    t.failed += 1;
                    if t.errors.len() < 20 {
                        t.errors.push((now, format!("{}: {}", r.status, r.body)));
                    }
                }
            }
            Err(f) => {
                t.failed += 1;
                if t.errors.len() < 20 {
                    t.errors.push((now, f.error));
                }
            }
        }
        std::thread::sleep(spec.pause);
    }
    t.sessions.push(runs);
    t
}
