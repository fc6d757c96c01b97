//! `auth-type: digest`, the RFC 7616 scheme with MD5 and `qop=auth` as nginx-http-auth-digest
//! answers it (ingress-nginx's module). Owns the runtime memory it needs: nonce counts used per
//! nonce, and failures per client address for the module's evasion period. Nonces carry their
//! issue time under a per-process HMAC key, so no state is kept for a challenge until it is
//! answered with the right password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use md5::{Digest as _, Md5};

use crate::config::auth::DigestAuth;
use crate::proxy::{Body, plain};

/// `auth_digest_timeout`: how long a challenge may wait for its first answer, in seconds.
const TIMEOUT: u64 = 60;
/// `auth_digest_expires`: how long a nonce is reused after its first good answer.
const EXPIRES: u64 = 10;
/// `auth_digest_replays`: nonce counts 1 to 19 are accepted, each once.
const REPLAYS: u64 = 20;
/// `auth_digest_maxtries` failures within `auth_digest_evasion_time` seconds from one client
/// address, and that address is answered 401 without a challenge until the time has passed.
const MAX_TRIES: u32 = 5;
const EVASION: u64 = 300;
/// The most nonces in use and the most client addresses with failures remembered; past them
/// a new nonce is refused (503, as the module answers when its shared memory is full) and a
/// new address is not tracked.
const MAX_NONCES: usize = 65_536;
const MAX_CLIENTS: usize = 65_536;
/// The longest Authorization field read, and the longest cnonce echoed back.
const MAX_AUTHORIZATION: usize = 4096;
const MAX_CNONCE: usize = 256;

/// The field a good answer puts on the response.
pub static AUTHENTICATION_INFO: HeaderName = HeaderName::from_static("authentication-info");

/// What one nonce has been used for since its first good answer.
struct Used {
    /// Until when (seconds on [`State`]'s clock) the nonce is accepted.
    expires: u64,
    /// When the entry may go: past `expires` and past the time a first answer could come.
    drop: u64,
    /// Bit n: nonce count n was used.
    counts: u32,
}

struct Failures {
    count: u32,
    until: u64,
}

/// Runtime state of digest authentication, shared by all routes (as the module's shared zone).
pub struct State {
    key: hmac::Key,
    epoch: Instant,
    next: AtomicU64,
    nonces: Mutex<Bounded<[u8; 16], Used>>,
    failures: Mutex<Bounded<IpAddr, Failures>>,
}

/// A table with a cap, whose dead entries are dropped when it is full, at most once a second
/// (a table full of live entries is not walked on every request).
struct Bounded<K, V> {
    map: HashMap<K, V>,
    pruned: Option<u64>,
}

impl<K, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            pruned: None,
        }
    }
}

impl<K: Eq + std::hash::Hash, V> Bounded<K, V> {
    /// Whether one more entry fits under `max`, after dropping the entries `live` refuses.
    fn room(&mut self, now: u64, max: usize, live: impl Fn(&V) -> bool) -> bool {
        if self.map.len() >= max && self.pruned != Some(now) {
            self.pruned = Some(now);
            self.map.retain(|_, v| live(v));
        }
        self.map.len() < max
    }
}

impl State {
    pub fn new(key_bytes: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key_bytes),
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            nonces: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Seconds since this state was made: nonces name times on this clock.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    fn mac(&self, issued: u64, serial: u64) -> [u8; 16] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&issued.to_be_bytes());
        ctx.update(&serial.to_be_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&ctx.sign().as_ref()[..16]);
        out
    }

    /// A fresh nonce: the issue time, a serial number, and their MAC, in hex.
    fn nonce(&self, now: u64) -> String {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{now:016x}{serial:016x}{}", hex(&self.mac(now, serial)))
    }

    /// The issue time and MAC of a nonce this process made, if it is one.
    fn opened(&self, nonce: &str) -> Option<(u64, [u8; 16])> {
        if nonce.len() != 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let issued = u64::from_str_radix(&nonce[..16], 16).ok()?;
        let serial = u64::from_str_radix(&nonce[16..32], 16).ok()?;
        let mac = self.mac(issued, serial);
        verify_slices_are_equal(hex(&mac).as_bytes(), nonce[32..].to_ascii_lowercase().as_bytes()).ok()?;
        Some((issued, mac))
    }

    /// Whether the nonce (issued at `issued`, known by `id`) may be used with count `nc` now.
    fn use_nonce(&self, id: [u8; 16], issued: u64, nc: u64, now: u64) -> Nonce {
        if nc == 0 || nc >= REPLAYS {
            return Nonce::Stale;
        }
        let bit = 1u32 << nc;
        let mut table = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(used) = table.map.get_mut(&id) {
            if used.expires <= now {
                return Nonce::Stale;
            }
            if used.counts & bit != 0 {
                return Nonce::Replayed;
            }
            used.counts |= bit;
            return Nonce::Good;
        }
        if issued.saturating_add(TIMEOUT) <= now {
            return Nonce::Stale;
        }
        if !table.room(now, MAX_NONCES, |u| u.drop > now) {
            return Nonce::Full;
        }
        let expires = now.saturating_add(EXPIRES);
        let drop = expires.max(issued.saturating_add(TIMEOUT));
        table.map.insert(
            id,
            Used {
                expires,
                drop,
                counts: bit,
            },
        );
        Nonce::Good
    }

    fn evading(&self, client: IpAddr, now: u64) -> bool {
        let table = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        table
            .map
            .get(&client)
            .is_some_and(|f| f.count >= MAX_TRIES && now < f.until)
    }

    fn failed(&self, client: IpAddr, now: u64) {
        let mut table = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if !table.map.contains_key(&client) && !table.room(now, MAX_CLIENTS, |f| f.until > now) {
            return;
        }
        let f = table.map.entry(client).or_insert(Failures { count: 0, until: 0 });
        f.count = if now > f.until { 1 } else { f.count.saturating_add(1) };
        f.until = now.saturating_add(EVASION);
    }

    fn succeeded(&self, client: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .remove(&client);
    }
}

enum Nonce {
    Good,
    /// Expired, or its counts used up: the client is told to answer a new challenge.
    Stale,
    /// A count used already.
    Replayed,
    Full,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut ctx = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            ctx.update(b":");
        }
        ctx.update(p);
    }
    hex(&ctx.finalize()[..])
}

/// The fields of an `Authorization: Digest` header the check reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub qop: String,
    pub nc: String,
    pub cnonce: String,
    pub response: String,
}

/// Parses `Authorization: Digest name=value, ...` (values as tokens or quoted strings with
/// `\` escapes); `None` unless every field the module requires is there and non-empty.
pub fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    if v.len() > MAX_AUTHORIZATION {
        return None;
    }
    let v = std::str::from_utf8(v).ok()?.trim_start();
    let (scheme, mut rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut c = Credentials::default();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let eq = rest.find('=')?;
        let name = rest[..eq].trim_end();
        if name.is_empty() || !name.bytes().all(token) {
            return None;
        }
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => out.push(chars.next()?.1),
                    (_, ch) if ch.is_ascii_control() => return None,
                    (_, ch) => out.push(ch),
                }
            };
            value = out;
            rest = &quoted[end + 1..];
        } else {
            let end = rest.bytes().position(|b| !token(b)).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            value = rest[..end].to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
        let field = match name.to_ascii_lowercase().as_str() {
            "username" => &mut c.username,
            "realm" => &mut c.realm,
            "nonce" => &mut c.nonce,
            "uri" => &mut c.uri,
            "qop" => &mut c.qop,
            "nc" => &mut c.nc,
            "cnonce" => &mut c.cnonce,
            "response" => &mut c.response,
            _ => continue,
        };
        *field = value;
    }
    let all = [
        &c.username,
        &c.realm,
        &c.nonce,
        &c.uri,
        &c.qop,
        &c.nc,
        &c.cnonce,
        &c.response,
    ];
    all.iter().all(|f| !f.is_empty()).then_some(c)
}

/// An RFC 7230 token character.
fn token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The request as the check sees it.
pub struct Asked<'a> {
    pub method: &'a str,
    /// The request target as the client sent it (path and query).
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    /// The client address (`X-Forwarded-For` from trusted proxies included).
    pub client: IpAddr,
}

/// The digest check: `Ok` carries the `Authentication-Info` value for the response, `Err`
/// the refusal (401 with a challenge, 401 without one in the evasion period, or 503 when no
/// nonce can be remembered).
pub fn check(state: &State, d: &DigestAuth, asked: &Asked<'_>) -> Result<Option<HeaderValue>, Refused> {
    let now = state.now();
    if state.evading(asked.client, now) {
        return Err(Refused {
            status: StatusCode::UNAUTHORIZED,
            challenge: None,
        });
    }
    let Some(c) = credentials(asked.headers) else {
        return Err(challenge(state, d, now, false));
    };
    match verify(state, d, asked, &c, now) {
        Ok(info) => {
            state.succeeded(asked.client);
            Ok(info)
        }
        Err(Failure::Full) => Err(Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            challenge: None,
        }),
        Err(why) => {
            state.failed(asked.client, now);
            Err(challenge(state, d, now, matches!(why, Failure::Stale)))
        }
    }
}

enum Failure {
    Wrong,
    Stale,
    Full,
}

fn verify(
    state: &State,
    d: &DigestAuth,
    asked: &Asked<'_>,
    c: &Credentials,
    now: u64,
) -> Result<Option<HeaderValue>, Failure> {
    // The realm named must be the route's, and the user one of its htdigest lines.
    if c.realm != *d.realm || c.qop != "auth" {
        return Err(Failure::Wrong);
    }
    let ha1 = d.users.get(&c.username).ok_or(Failure::Wrong)?;
    // The URI the client hashed is the request's, or (as .NET sends it) the request's
    // without its query.
    let target = asked.target;
    let same = target == c.uri || target.strip_prefix(c.uri.as_str()).is_some_and(|q| q.starts_with('?'));
    let nc = (c.nc.len() <= 8).then(|| u64::from_str_radix(&c.nc, 16).ok()).flatten();
    let cnonce_ok = c.cnonce.len() <= MAX_CNONCE
        && c.cnonce
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    let (Some(nc), true, true) = (nc, same, cnonce_ok) else {
        return Err(Failure::Wrong);
    };
    let ha2 = md5_hex(&[asked.method.as_bytes(), c.uri.as_bytes()]);
    let parts = |ha2: &str| {
        md5_hex(&[
            ha1.0.as_slice(),
            c.nonce.as_bytes(),
            c.nc.as_bytes(),
            c.cnonce.as_bytes(),
            c.qop.as_bytes(),
            ha2.as_bytes(),
        ])
    };
    let expected = parts(&ha2);
    if verify_slices_are_equal(expected.as_bytes(), c.response.to_ascii_lowercase().as_bytes()).is_err() {
        return Err(Failure::Wrong);
    }
    let (issued, id) = state.opened(&c.nonce).ok_or(Failure::Wrong)?;
    match state.use_nonce(id, issued, nc, now) {
        Nonce::Good => {}
        Nonce::Stale => return Err(Failure::Stale),
        Nonce::Replayed => return Err(Failure::Wrong),
        Nonce::Full => return Err(Failure::Full),
    }
    let rspauth = parts(&md5_hex(&[&b""[..], c.uri.as_bytes()]));
    let info = format!(
        "qop=\"auth\", rspauth=\"{rspauth}\", cnonce=\"{}\", nc={}",
        c.cnonce, c.nc
    );
    Ok(HeaderValue::from_str(&info).ok())
}

/// 401 with `WWW-Authenticate: Digest algorithm="MD5", qop="auth", realm="…", nonce="…"`
/// (and `stale="true"` when a good answer came with a used-up nonce), the module's fields in
/// its order.
fn challenge(state: &State, d: &DigestAuth, now: u64, stale: bool) -> Refused {
    let stale = if stale { ", stale=\"true\"" } else { "" };
    // The realm was checked at compile time to need no escaping.
    let v = format!(
        "Digest algorithm=\"MD5\", qop=\"auth\", realm=\"{}\", nonce=\"{}\"{stale}",
        d.realm,
        state.nonce(now)
    );
    Refused {
        status: StatusCode::UNAUTHORIZED,
        challenge: HeaderValue::from_str(&v).ok(),
    }
}

/// A refused request: 401 with its challenge (none in the evasion period), or 503.
#[derive(Debug)]
pub struct Refused {
    status: StatusCode,
    challenge: Option<HeaderValue>,
}

impl Refused {
    pub fn response(self) -> Response<Body> {
        let text = if self.status == StatusCode::UNAUTHORIZED {
            "unauthorized"
        } else {
            "service unavailable"
        };
        let mut r = plain(self.status, text);
        if let Some(v) = self.challenge {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::super::auth::tests::auth;
    use super::*;
    use crate::config::auth::Ha1;

    #[test]
    fn digest_credentials() {
        let c = credentials(&auth(
            r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=MD5, nonce="7ypf", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="8ca523f5e9506fed4657c9700eebdbec", opaque="FQhe""#,
        ))
        .unwrap();
        assert_eq!(
            (c.username.as_str(), c.nc.as_str(), c.qop.as_str()),
            ("Mufasa", "00000001", "auth")
        );
        assert_eq!(c.cnonce, "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ");
        let c = credentials(&auth(
            r#"digest username="a\"b",realm="",nonce=n,uri="/",qop=auth,nc=1,cnonce=c,response=r"#,
        ));
        assert_eq!(c, None, "an empty realm is missing, as the module reads it");
        let c = credentials(&auth(
            r#"digest username="a\"b",realm=r,nonce=n,uri="/",qop=auth,nc=1,cnonce=c,response=r"#,
        ))
        .unwrap();
        assert_eq!(c.username, "a\"b");
        for bad in [
            r#"Basic YTpi"#,
            r#"Digest username="a", realm="r", nonce="n", uri="/", qop=auth, nc=1, cnonce="c""#,
            r#"Digest username="a, realm=r, nonce=n, uri=/, qop=auth, nc=1, cnonce=c, response=x"#,
            r#"Digest username="a" realm=r, nonce=n, uri=/, qop=auth, nc=1, cnonce=c, response=x"#,
            r#"Digest =a, realm=r, nonce=n, uri=/, qop=auth, nc=1, cnonce=c, response=x"#,
        ] {
            assert_eq!(credentials(&auth(bad)), None, "{bad}");
        }
    }

    fn route() -> DigestAuth {
        // HA1 of Mufasa:http-auth@example.org:Circle of Life.
        let ha1 = md5_hex(&[b"Mufasa", b"http-auth@example.org", b"Circle of Life"]);
        let users = BTreeMap::from([("Mufasa".to_string(), Ha1(ha1.as_bytes().try_into().unwrap()))]);
        DigestAuth {
            realm: "http-auth@example.org".into(),
            secret: "default/users".into(),
            users: Arc::new(users),
        }
    }

    /// What a client answers to `nonce` for GET `uri` with `password`.
    fn answer(nonce: &str, uri: &str, nc: &str, password: &str) -> HeaderMap {
        let ha1 = md5_hex(&[b"Mufasa", b"http-auth@example.org", password.as_bytes()]);
        let ha2 = md5_hex(&[b"GET", uri.as_bytes()]);
        let response = md5_hex(&[
            ha1.as_bytes(),
            nonce.as_bytes(),
            nc.as_bytes(),
            b"0a4f113b",
            b"auth",
            ha2.as_bytes(),
        ]);
        auth(&format!(
            r#"Digest username="Mufasa", realm="http-auth@example.org", nonce="{nonce}", uri="{uri}", qop=auth, nc={nc}, cnonce="0a4f113b", response="{response}""#
        ))
    }

    fn nonce_of(r: &Refused) -> (String, bool) {
        let v = r.challenge.as_ref().unwrap().to_str().unwrap();
        let nonce = v.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap();
        (nonce.to_string(), v.ends_with(", stale=\"true\""))
    }

    #[test]
    fn nonces_counts_and_evasion() {
        let state = State::new(&[7; 32]);
        let d = route();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let ask = |h: &HeaderMap, target: &'static str| -> Result<Option<HeaderValue>, Refused> {
            let asked = Asked {
                method: "GET",
                target,
                headers: h,
                client,
            };
            check(&state, &d, &asked)
        };
        let first = ask(&HeaderMap::new(), "/dir/index.html").unwrap_err();
        assert_eq!(first.status, 401);
        let v = first.challenge.as_ref().unwrap().to_str().unwrap();
        assert!(
            v.starts_with("Digest algorithm=\"MD5\", qop=\"auth\", realm=\"http-auth@example.org\", nonce=\""),
            "{v}"
        );
        let (nonce, stale) = nonce_of(&first);
        assert!(!stale);
        // The right answer, with the query left out of the hashed URI as .NET does.
        let info = ask(
            &answer(&nonce, "/dir/index.html", "00000001", "Circle of Life"),
            "/dir/index.html?x=1",
        )
        .ok()
        .flatten()
        .unwrap();
        assert!(info.to_str().unwrap().starts_with("qop=\"auth\", rspauth=\""));
        // The same count again is a replay; the next count is fine.
        assert!(
            ask(
                &answer(&nonce, "/dir/index.html", "00000001", "Circle of Life"),
                "/dir/index.html"
            )
            .is_err()
        );
        assert!(
            ask(
                &answer(&nonce, "/dir/index.html", "00000002", "Circle of Life"),
                "/dir/index.html"
            )
            .is_ok()
        );
        // A count past the replays is stale.
        let r = ask(
            &answer(&nonce, "/dir/index.html", "00000014", "Circle of Life"),
            "/dir/index.html",
        )
        .unwrap_err();
        assert!(nonce_of(&r).1, "stale");
        // Another URI than the request's; a forged nonce; a nonce from another key.
        assert!(
            ask(
                &answer(&nonce, "/other", "00000003", "Circle of Life"),
                "/dir/index.html"
            )
            .is_err()
        );
        let mut forged = nonce.clone().into_bytes();
        forged[63] = if forged[63] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(ask(&answer(&forged, "/", "00000001", "Circle of Life"), "/").is_err());
        let other = State::new(&[8; 32]).nonce(0);
        let r = ask(&answer(&other, "/", "00000001", "Circle of Life"), "/").unwrap_err();
        assert!(!nonce_of(&r).1, "not stale");
        // A wrong password, the fifth failure since the last success (the stale count, the
        // URI, the two nonces): the address gets 401 without a challenge, the right answer
        // included.
        assert!(!state.evading(client, state.now()));
        assert!(ask(&answer(&nonce, "/", "00000005", "circle of life"), "/").is_err());
        assert!(state.evading(client, state.now()));
        let fresh = state.nonce(state.now());
        let r = ask(&answer(&fresh, "/", "00000001", "Circle of Life"), "/").unwrap_err();
        assert_eq!((r.status, r.challenge), (StatusCode::UNAUTHORIZED, None));
    }

    #[test]
    fn full_tables_drop_dead_entries_once_a_second() {
        let mut t: Bounded<u32, u64> = Bounded::default();
        t.map.extend([(1, 5), (2, 20)]);
        assert!(t.room(10, 2, |until| *until > 10), "full: the dead entry 1 goes");
        assert_eq!(t.map.len(), 1);
        t.map.insert(3, 5);
        assert!(!t.room(10, 2, |until| *until > 10), "pruned this second already");
        assert_eq!(t.map.len(), 2);
        assert!(t.room(11, 2, |until| *until > 11));
        assert_eq!(t.map.len(), 1);
    }

    #[test]
    fn nonce_times() {
        let state = State::new(&[1; 32]);
        let n = state.nonce(100);
        let (issued, id) = state.opened(&n).unwrap();
        assert_eq!(issued, 100);
        // Unanswered for longer than the timeout: stale.
        assert!(matches!(state.use_nonce(id, issued, 1, 160), Nonce::Stale));
        assert!(matches!(state.use_nonce(id, issued, 1, 159), Nonce::Good));
        // Reused for EXPIRES seconds after the first good answer, then stale.
        assert!(matches!(state.use_nonce(id, issued, 2, 168), Nonce::Good));
        assert!(matches!(state.use_nonce(id, issued, 3, 169), Nonce::Stale));
        assert!(matches!(state.use_nonce(id, issued, 0, 160), Nonce::Stale));
        assert!(state.opened(&n[..63]).is_none());
    }
}
