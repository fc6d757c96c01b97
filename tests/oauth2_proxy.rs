//! External authentication against the real thing: oauth2-proxy, built from its Go module
//! (tests/oauth2/build.sh), set up as its docs for ingress-nginx say (`--reverse-proxy
//! --set-xauthrequest`; `auth-url` …/oauth2/auth, `auth-signin` …/oauth2/start?rd=…,
//! `auth-response-headers`), with a real OpenID Connect provider behind it (mockoidc, a small
//! Go main around github.com/oauth2-proxy/mockoidc) and curl with a cookie jar as the
//! browser, following the whole login one hop at a time.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io/";
const BUILD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oauth2/build.sh");
/// The application's host name; curl reaches Portico for it with --connect-to.
const APP: &str = "app.test";
const CLIENT_ID: &str = "portico-test";
const CLIENT_SECRET: &str = "portico-test-secret";
/// Who mockoidc signs in (its default user): oauth2-proxy's X-Auth-Request-User is the subject.
const USER: &str = "1234567890";
const EMAIL: &str = "jane.doe@example.com";

/// A child process killed on drop, its output in a log file that failures quote.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        Proc { child, log }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mockoidc on a loopback port of its own choosing; its issuer URL.
fn mockoidc(bin: &Path, dir: &Path) -> (Proc, String) {
    let log = dir.join("mockoidc.log");
    let mut p = Proc::spawn(
        Command::new(bin.join("mockoidc"))
            .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            // Held open by us: the provider stops when stdin closes (also if this test dies).
            .stdin(Stdio::piped()),
        log,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&p.log).unwrap_or_default();
        if let Some(issuer) = text.lines().find(|l| l.starts_with("http://")) {
            return (p, issuer.trim().to_string());
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("mockoidc exited ({status}):\n{}", p.log());
        }
        assert!(Instant::now() < deadline, "mockoidc printed no issuer:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// oauth2-proxy as its ingress-nginx docs run it, against the provider at `issuer`; its
/// address. oauth2-proxy takes a port number, not port 0: a free one is picked and, if
/// another test takes it first, another.
async fn oauth2_proxy(bin: &Path, dir: &Path, issuer: &str) -> (Proc, SocketAddr) {
    for attempt in 0..3 {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let p = Proc::spawn(
            Command::new(bin.join("oauth2-proxy")).args([
                &format!("--http-address={addr}"),
                "--provider=oidc",
                &format!("--oidc-issuer-url={issuer}"),
                &format!("--client-id={CLIENT_ID}"),
                &format!("--client-secret={CLIENT_SECRET}"),
                "--code-challenge-method=S256",
                "--cookie-secret=0123456789abcdef0123456789abcdef",
                // Plain HTTP in the test: a Secure cookie would never be sent back.
                "--cookie-secure=false",
                "--email-domain=*",
                "--upstream=static://202",
                "--reverse-proxy",
                "--trusted-proxy-ip=127.0.0.1/32",
                "--set-xauthrequest",
                "--skip-provider-button",
                // Sessions older than this are refreshed at the provider by the auth answer.
                "--cookie-refresh=1s",
            ]),
            dir.join(format!("oauth2-proxy-{attempt}.log")),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut p = p;
        loop {
            if let Ok((200, _, _)) = get(addr, "oauth2-proxy", "/ping").await {
                return (p, addr);
            }
            if p.child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("oauth2-proxy did not start on {addr}:\n{}", p.log());
    }
    panic!("oauth2-proxy did not start (three ports tried)");
}

/// What curl got for one request.
#[derive(Debug)]
struct Hop {
    url: String,
    status: u16,
    /// Header fields, names lowercase, in order.
    headers: Vec<(String, String)>,
    body: String,
}

impl Hop {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("{} answered {} without Location", self.url, self.status))
    }
}

/// The browser: curl with a cookie jar, reaching `APP` at Portico's address. Redirects are
/// not followed here; [`Browser::follow`] does it one hop at a time.
struct Browser {
    jar: PathBuf,
    portico: SocketAddr,
    dir: PathBuf,
}

impl Browser {
    fn new(dir: &Path, name: &str, portico: SocketAddr) -> Browser {
        let jar = dir.join(format!("{name}.jar"));
        let _ = std::fs::remove_file(&jar);
        Browser {
            jar,
            portico,
            dir: dir.to_path_buf(),
        }
    }

    /// One request to `url`, with more curl arguments (`-H`, `--data`…).
    fn get(&self, url: &str, args: &[&str]) -> Hop {
        let head = self.dir.join("head");
        let body = self.dir.join("body");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "-o"])
            .arg(&body)
            .arg("-D")
            .arg(&head)
            .arg("-b")
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .arg("--connect-to")
            .arg(format!("{APP}:80:{}:{}", self.portico.ip(), self.portico.port()))
            .args(["-w", "%{http_code}"])
            .args(args);
        let out = cmd.arg(url).output().expect("curl runs");
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let head = std::fs::read_to_string(&head).unwrap();
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Hop {
            url: url.to_string(),
            status,
            headers,
            body: std::fs::read_to_string(&body).unwrap_or_default(),
        }
    }

    /// GETs `url`, then every Location it is sent to, until an answer that is no redirect.
    fn follow(&self, url: &str) -> Vec<Hop> {
        let mut hops = vec![self.get(url, &[])];
        while (300..400).contains(&hops.last().unwrap().status) {
            assert!(hops.len() < 10, "too many redirects: {hops:#?}");
            let last = hops.last().unwrap();
            let next = absolute(&last.url, last.location());
            hops.push(self.get(&next, &[]));
        }
        hops
    }
}

/// `location` resolved against `base` (absolute URLs and absolute paths are all the flow uses).
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    assert!(location.starts_with('/'), "unexpected Location {location:?}");
    let origin_end = base[7..].find('/').map_or(base.len(), |i| i + 7);
    format!("{}{location}", &base[..origin_end])
}

/// The value of query parameter `name` in `url`, still percent-encoded.
fn param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_proxy_login_through_portico() {
    let bin = go_built(BUILD, "oauth2-proxy and mockoidc");
    let dir = std::env::temp_dir().join(format!("portico-oauth2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (oidc, issuer) = mockoidc(&bin, &dir);
    let (proxy, proxy_addr) = oauth2_proxy(&bin, &dir, &issuer).await;

    let web = pods("web", 1).await;
    let auth = [
        (format!("{NGINX}auth-url"), format!("http://{proxy_addr}/oauth2/auth")),
        (
            format!("{NGINX}auth-signin"),
            "http://$host/oauth2/start?rd=$escaped_request_uri".to_string(),
        ),
        (
            format!("{NGINX}auth-response-headers"),
            "X-Auth-Request-User,X-Auth-Request-Email".to_string(),
        ),
    ];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let manifests = class()
        + &service("web", &web)
        + &service("oauth2-proxy", &[proxy_addr])
        + &annotated_ingress("app", APP, "/", "web", &auth)
        + &annotated_ingress("oauth2", APP, "/oauth2", "oauth2-proxy", &[]);
    let p = Portico::start(&[("all.yaml", manifests)], &["--allow-loopback-auth-url"]).await;
    let logs = || format!("oauth2-proxy:\n{}\nmockoidc:\n{}", proxy.log(), oidc.log());

    // Not signed in: the auth service's 401 becomes the redirect to sign in, rd= the page.
    let page = format!("http://{APP}/private/page?x=1&y=two");
    let browser = Browser::new(&dir, "browser", p.http);
    let hops = browser.follow(&page);
    let first = &hops[0];
    assert_eq!(first.status, 302, "{first:#?}\n{}", logs());
    assert_eq!(
        first.location(),
        format!("http://{APP}/oauth2/start?rd=%2Fprivate%2Fpage%3Fx%3D1%26y%3Dtwo")
    );

    // The login: oauth2-proxy (through Portico) sends the browser to the provider, the
    // provider back to the callback with a code, oauth2-proxy redeems it, sets its session
    // cookie and sends the browser to rd; the page then answers with the user's fields.
    let trace: Vec<(u16, &str)> = hops.iter().map(|h| (h.status, h.url.as_str())).collect();
    assert_eq!(hops.len(), 5, "{trace:#?}\n{}", logs());
    assert!(
        hops[1].url.starts_with(&format!("http://{APP}/oauth2/start?")),
        "{trace:#?}"
    );
    assert!(hops[2].url.starts_with(&format!("{issuer}/authorize?")), "{trace:#?}");
    assert_eq!(
        param(&hops[2].url, "redirect_uri"),
        Some("http%3A%2F%2Fapp.test%2Foauth2%2Fcallback"),
        "oauth2-proxy built its callback from what Portico forwarded"
    );
    assert!(
        hops[3].url.starts_with(&format!("http://{APP}/oauth2/callback?")),
        "{trace:#?}"
    );
    assert!(
        hops[3]
            .headers
            .iter()
            .any(|(n, v)| n == "set-cookie" && v.starts_with("_oauth2_proxy=")),
        "{:#?}",
        hops[3]
    );
    let last = &hops[4];
    assert_eq!(
        (last.status, last.url.as_str()),
        (200, page.as_str()),
        "{trace:#?}\n{}",
        logs()
    );
    let echoed = json(&last.body);
    assert_eq!(echoed["target"], "/private/page?x=1&y=two");
    assert_eq!(echoed["headers"]["x-auth-request-user"], USER, "{echoed}");
    assert_eq!(echoed["headers"]["x-auth-request-email"], EMAIL, "{echoed}");

    // Signed in: a client's own copy of the identity fields is replaced, never believed.
    let hop = browser.get(
        &format!("http://{APP}/other"),
        &[
            "-H",
            "X-Auth-Request-User: mallory",
            "-H",
            "X-Auth-Request-Email: mallory@example.org",
        ],
    );
    assert_eq!(hop.status, 200, "{hop:#?}");
    let echoed = json(&hop.body);
    assert_eq!(echoed["headers"]["x-auth-request-user"], USER);
    assert_eq!(echoed["headers"]["x-auth-request-email"], EMAIL);

    // A form posted while signed in: oauth2-proxy is asked with a GET (as nginx's auth
    // subrequest), the application gets the POST and its body.
    let hop = browser.get(&format!("http://{APP}/form"), &["--data", "a=1&b=2"]);
    assert_eq!(hop.status, 200, "{hop:#?}\n{}", logs());
    let echoed = json(&hop.body);
    assert_eq!(
        (echoed["method"].as_str(), echoed["body_bytes"].as_u64()),
        (Some("POST"), Some(7))
    );
    assert!(
        !proxy
            .log()
            .lines()
            .any(|l| l.contains("POST") && l.contains("/oauth2/auth")),
        "{}",
        proxy.log()
    );

    // Past --cookie-refresh, oauth2-proxy's auth answer refreshes the session at the provider
    // and carries the new cookie; Portico puts it on the page's response (ingress-nginx's
    // add_header Set-Cookie $auth_cookie), and the browser goes on with it.
    // (oauth2-proxy counts a session's age from the current second, truncated: 2.2 s.)
    std::thread::sleep(Duration::from_millis(2200));
    let hop = browser.get(&page, &[]);
    assert_eq!(hop.status, 200, "{hop:#?}\n{}", logs());
    let refreshed = hop
        .headers
        .iter()
        .find(|(n, v)| n == "set-cookie" && v.starts_with("_oauth2_proxy="))
        .unwrap_or_else(|| panic!("no refreshed session cookie: {hop:#?}\n{}", logs()));
    assert!(!refreshed.1.starts_with("_oauth2_proxy=;"));
    assert_eq!(browser.get(&page, &[]).status, 200);

    // A bad session cookie, or the good one altered, gets the sign-in redirect again.
    let jar = std::fs::read_to_string(&browser.jar).unwrap();
    let session = jar
        .lines()
        .find_map(|l| {
            l.split('\t')
                .collect::<Vec<_>>()
                .get(5..7)
                .filter(|f| f[0] == "_oauth2_proxy")
                .map(|f| f[1].to_string())
        })
        .expect("the jar holds the session cookie");
    let mut altered = session.clone().into_bytes();
    let i = altered.len() / 2;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let stranger = Browser::new(&dir, "stranger", p.http);
    for cookie in ["_oauth2_proxy=not-a-session", &format!("_oauth2_proxy={altered}")] {
        let hop = stranger.get(
            &format!("http://{APP}/private/page"),
            &["-H", &format!("Cookie: {cookie}")],
        );
        assert_eq!(hop.status, 302, "{cookie}: {hop:#?}");
        assert_eq!(
            hop.location(),
            format!("http://{APP}/oauth2/start?rd=%2Fprivate%2Fpage")
        );
        assert!(!hop.body.contains("x-auth-request-user"), "the page was not served");
    }
    // The session cookie itself works from another client too (it is the whole session).
    let hop = stranger.get(
        &format!("http://{APP}/private/page"),
        &["-H", &format!("Cookie: _oauth2_proxy={session}")],
    );
    assert_eq!(hop.status, 200, "{hop:#?}");

    // Signing out clears the cookie; the page asks to sign in again. (Not followed: the
    // sign-out's redirect leads to the provider, which signs the browser in at once.)
    let hop = browser.get(&format!("http://{APP}/oauth2/sign_out"), &[]);
    assert_eq!(hop.status, 302, "{hop:#?}");
    assert!(
        hop.headers
            .iter()
            .any(|(n, v)| n == "set-cookie" && v.starts_with("_oauth2_proxy=;")),
        "{hop:#?}"
    );
    let hop = browser.get(&page, &[]);
    assert_eq!(hop.status, 302, "{hop:#?}");
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
