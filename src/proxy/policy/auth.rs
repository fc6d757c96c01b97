//! The auth step: `auth-type: basic` or `digest` ([`super::digest`]), then `auth-url`
//! ([`super::external`]). The request passes, or gets 401 (with a `WWW-Authenticate`
//! challenge), 403, a sign-in redirect, 500 when the auth service fails, or 503 when the
//! route's auth cannot be honoured. With `satisfy: any` it also weighs the source ranges
//! ([`super::allow`]), and one passing check is enough.
//! Owns the runtime memory of verified bcrypt passwords (keyed MACs, never passwords).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use md5::{Digest as _, Md5};
use tokio::sync::Semaphore;

use super::external::{self, Cookies};
use super::{allow, digest};
use crate::config::auth::{Auth, BasicAuth, PasswordHash};
use crate::config::{Policy, Route, Trusted};
use crate::proxy::headers::{Fields, Peer, client_ip};
use crate::proxy::{Body, plain};

/// The most verified (user, password, hash) triples remembered; past it the memory starts over.
const VERIFIED_MAX: usize = 4096;
/// The longest Authorization field read.
const MAX_AUTHORIZATION: usize = 4096;

/// Runtime state of the auth step, shared by all requests: which slow hashes were verified
/// lately, and a bound on how many slow verifications run at once.
pub struct State {
    key: hmac::Key,
    verified: Mutex<HashSet<[u8; 32]>>,
    slow: Arc<Semaphore>,
    external: external::State,
    digest: digest::State,
}

impl State {
    /// `allow_loopback_auth_url`: `--allow-loopback-auth-url`.
    pub fn new(allow_loopback_auth_url: bool) -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, &rand_fallback()));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut nonce_key = [0u8; 32];
        if aws_lc_rs::rand::SecureRandom::fill(&rng, &mut nonce_key).is_err() {
            nonce_key = rand_fallback();
        }
        Self {
            key,
            verified: Mutex::new(HashSet::new()),
            slow: Arc::new(Semaphore::new(cores)),
            external: external::State::new(allow_loopback_auth_url),
            digest: digest::State::new(&nonce_key),
        }
    }
}

/// Only if the system RNG fails: the key then is merely unpredictable enough for a cache key.
fn rand_fallback() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        let h = std::collections::hash_map::RandomState::new().build_hasher().finish();
        chunk.copy_from_slice(&h.to_le_bytes());
    }
    out
}

impl State {
    fn tag(&self, user: &str, password: &[u8], hash: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [user.as_bytes(), b"\0", password, b"\0", hash.as_bytes()] {
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the auth step adds to the response once the request went through: the auth
/// service's Set-Cookie, on the statuses nginx's `add_header` covers (any with
/// `auth-always-set-cookie`), and digest's Authentication-Info.
#[derive(Default)]
pub struct Passed(Option<Box<Added>>);

struct Added {
    cookies: Option<Cookies>,
    info: Option<HeaderValue>,
}

impl Passed {
    fn new(cookies: Option<Cookies>, info: Option<HeaderValue>) -> Self {
        let cookies = cookies.filter(|c| !c.values.is_empty());
        Passed((cookies.is_some() || info.is_some()).then(|| Box::new(Added { cookies, info })))
    }

    /// One pointer test when nothing was added.
    #[inline]
    pub fn respond(self, resp: &mut Response<Body>) {
        if let Some(added) = self.0 {
            added.respond(resp);
        }
    }
}

impl Added {
    fn respond(self, resp: &mut Response<Body>) {
        if let Some(info) = self.info {
            resp.headers_mut().insert(digest::AUTHENTICATION_INFO.clone(), info);
        }
        let Some(c) = self.cookies else { return };
        let status = resp.status().as_u16();
        if c.always || matches!(status, 200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308) {
            for v in c.values {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }
}

/// The auth step, when the route has auth: `Ok` lets the request through (what it carries
/// goes on the response), `Err` is the answer. Routes without auth get `None` and pay one
/// pointer test, no future.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn check<'a, B>(
    state: &'a State,
    route: &'a Route,
    req: &'a mut Request<B>,
    fields: &'a Fields,
    peer: &'a Peer,
    rid: &'a HeaderValue,
    trusted: &'a Trusted,
) -> Option<impl Future<Output = Result<Passed, Response<Body>>> + 'a> {
    let auth = route.policy.auth.as_deref()?;
    Some(Box::pin(authenticate(
        state,
        &route.policy,
        auth,
        route,
        req,
        fields,
        peer,
        rid,
        trusted,
    )))
}

#[allow(clippy::too_many_arguments)]
async fn authenticate<B>(
    state: &State,
    policy: &Policy,
    auth: &Auth,
    route: &Route,
    req: &mut Request<B>,
    fields: &Fields,
    peer: &Peer,
    rid: &HeaderValue,
    trusted: &Trusted,
) -> Result<Passed, Response<Body>> {
    if auth.denied.is_some() {
        return Err(plain(StatusCode::SERVICE_UNAVAILABLE, "service unavailable"));
    }
    // satisfy all (the default): every check must pass, the first failure answers.
    if !policy.satisfy_any {
        if let Some(basic) = &auth.basic
            && let Err(r) = basic_auth(state, basic, req.headers()).await
        {
            return Err(signin_or(auth, route, r, req, fields, peer, trusted));
        }
        let info = match &auth.digest {
            Some(d) => digest_check(state, d, req, peer, trusted)
                .map_err(|r| signin_or(auth, route, r, req, fields, peer, trusted))?,
            None => None,
        };
        return match &auth.external {
            Some(e) => {
                let cookies =
                    external::check(&state.external, &state.key, e, route, req, fields, peer, rid, trusted).await?;
                Ok(Passed::new(Some(cookies), info))
            }
            None => Ok(Passed::new(None, info)),
        };
    }
    // satisfy any: the access checks in nginx's order (source ranges, basic, external) until
    // one passes. When none does, the answer is the first 401 (a basic challenge, the auth
    // service's, or its sign-in redirect), else the 403; an auth service that fails (500)
    // ends it there, as nginx's access phase does.
    let through = |req: &mut Request<B>| {
        if let Some(e) = &auth.external {
            external::skipped(e, req);
        }
        Passed::default()
    };
    let mut denial = None;
    if policy.allow.is_some() || policy.deny.is_some() {
        if allow::admits(policy, req.headers(), peer, trusted) {
            return Ok(through(req));
        }
        denial = Some(allow::forbidden());
    }
    if let Some(basic) = &auth.basic {
        match basic_auth(state, basic, req.headers()).await {
            Ok(()) => return Ok(through(req)),
            // A 401, which goes before the ranges' 403.
            Err(r) => denial = Some(r),
        }
    }
    if let Some(d) = &auth.digest {
        match digest_check(state, d, req, peer, trusted) {
            Ok(info) => {
                through(req);
                return Ok(Passed::new(None, info));
            }
            // A 401 challenge, which goes before the ranges' 403 and basic's own.
            Err(r) if r.status() == StatusCode::UNAUTHORIZED => {
                if denial.as_ref().is_none_or(|d| d.status() != StatusCode::UNAUTHORIZED) {
                    denial = Some(r);
                }
            }
            Err(r) => return Err(r),
        }
    }
    if let Some(e) = &auth.external {
        match external::check(&state.external, &state.key, e, route, req, fields, peer, rid, trusted).await {
            Ok(cookies) => return Ok(Passed::new(Some(cookies), None)),
            Err(r) => {
                let unauthorized =
                    |r: &Response<Body>| matches!(r.status(), StatusCode::UNAUTHORIZED | StatusCode::FOUND);
                if unauthorized(&r) {
                    if !denial.as_ref().is_some_and(unauthorized) {
                        denial = Some(r);
                    }
                } else if r.status() == StatusCode::FORBIDDEN {
                    denial.get_or_insert(r);
                } else {
                    return Err(r);
                }
            }
        }
    }
    match denial {
        Some(r) => Err(signin_or(auth, route, r, req, fields, peer, trusted)),
        None => Ok(through(req)),
    }
}

/// Digest authentication of `req`: the Authentication-Info to answer with, or the refusal.
// The refusal is the answer itself, as every step's is; it is built only on refusal.
#[allow(clippy::result_large_err)]
fn digest_check<B>(
    state: &State,
    d: &crate::config::auth::DigestAuth,
    req: &Request<B>,
    peer: &Peer,
    trusted: &Trusted,
) -> Result<Option<HeaderValue>, Response<Body>> {
    let asked = digest::Asked {
        method: req.method().as_str(),
        target: req.uri().path_and_query().map_or("/", |pq| pq.as_str()),
        headers: req.headers(),
        client: client_ip(req.headers(), peer.addr, trusted),
    };
    digest::check(&state.digest, d, &asked).map_err(digest::Refused::response)
}

/// A 401 answer, or the `auth-signin` redirect when the route's external auth has one
/// (ingress-nginx's `error_page 401` covers every check of the location, basic auth's too).
fn signin_or<B>(
    auth: &Auth,
    route: &Route,
    r: Response<Body>,
    req: &Request<B>,
    fields: &Fields,
    peer: &Peer,
    trusted: &Trusted,
) -> Response<Body> {
    if r.status() != StatusCode::UNAUTHORIZED {
        return r;
    }
    auth.external
        .as_ref()
        .and_then(|e| external::signin(e, route, req, fields, peer, trusted))
        .unwrap_or(r)
}

async fn basic_auth(state: &State, basic: &BasicAuth, headers: &HeaderMap) -> Result<(), Response<Body>> {
    let challenge = || {
        let mut r = plain(StatusCode::UNAUTHORIZED, "unauthorized");
        // The realm was checked at compile time to need no escaping.
        if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{}\"", basic.realm)) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    };
    let Some((user, password)) = credentials(headers) else {
        return Err(challenge());
    };
    let Some(hash) = basic.users.get(&user) else {
        return Err(challenge());
    };
    let ok = match hash {
        PasswordHash::Bcrypt(h) => {
            let tag = state.tag(&user, &password, h);
            if state.lock().contains(&tag) {
                return Ok(());
            }
            let ok = verify_slow(state, h.clone(), password).await;
            if ok {
                let mut set = state.lock();
                if set.len() >= VERIFIED_MAX {
                    set.clear();
                }
                set.insert(tag);
            }
            ok
        }
        fast => verify(fast, &password),
    };
    if ok { Ok(()) } else { Err(challenge()) }
}

/// bcrypt off the async threads, at most one per core at a time.
async fn verify_slow(state: &State, hash: String, password: Vec<u8>) -> bool {
    let Ok(_permit) = state.slow.clone().acquire_owned().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

/// The user and password of an `Authorization: Basic` field.
pub fn credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    const B64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    if v.len() > MAX_AUTHORIZATION || v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = B64.decode(v[6..].trim_ascii()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_string();
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Whether `password` matches `hash`; constant time in the password for the digest forms.
pub fn verify(hash: &PasswordHash, password: &[u8]) -> bool {
    match hash {
        PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        PasswordHash::Md5Crypt { magic, salt, hash } => {
            verify_slices_are_equal(md5_crypt(password, magic, salt.as_bytes()).as_bytes(), hash.as_bytes()).is_ok()
        }
        PasswordHash::Sha1(d) => {
            verify_slices_are_equal(digest(&SHA1_FOR_LEGACY_USE_ONLY, password).as_ref(), d).is_ok()
        }
        PasswordHash::Ssha { digest: d, salt } => {
            let mut salted = password.to_vec();
            salted.extend_from_slice(salt);
            verify_slices_are_equal(digest(&SHA1_FOR_LEGACY_USE_ONLY, &salted).as_ref(), d).is_ok()
        }
        PasswordHash::Plain(p) => verify_slices_are_equal(password, p).is_ok(),
    }
}

/// The MD5-based crypt of FreeBSD (`$1$`) and Apache (`$apr1$`): the 22-character hash.
pub fn md5_crypt(password: &[u8], magic: &str, salt: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic.as_bytes());
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(22);
    let mut put = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(char::from(ITOA64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    let b = |i: usize| u32::from(fin[i]);
    for (x, y, z) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((b(x) << 16) | (b(y) << 8) | b(z), 4);
    }
    put(b(11), 2);
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Headers holding only `Authorization: {value}` (the digest tests use it too).
    pub(in crate::proxy::policy) fn auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_credentials() {
        assert_eq!(
            credentials(&auth("Basic YWxpY2U6czNjcjN0")),
            Some(("alice".into(), b"s3cr3t".to_vec()))
        );
        assert_eq!(
            credentials(&auth("basic YWxpY2U6czNjcjN0")),
            Some(("alice".into(), b"s3cr3t".to_vec()))
        );
        // Unpadded, and a password holding a colon.
        assert_eq!(credentials(&auth("Basic YTpiOmM")), Some(("a".into(), b"b:c".to_vec())));
        assert_eq!(credentials(&auth("Bearer YWxpY2U6czNjcjN0")), None);
        assert_eq!(credentials(&auth("Basic !!!")), None);
        assert_eq!(credentials(&auth("Basic YWxpY2U=")), None, "no colon");
        assert_eq!(credentials(&HeaderMap::new()), None);
    }

    /// Known answers made by OpenSSL (`openssl passwd -1 -salt saltstring password`, which
    /// keeps 8 characters of the salt, and `openssl passwd -apr1 -salt xxxxxxxx xxxxxxxx`).
    #[test]
    fn md5_crypt_known_answers() {
        assert_eq!(md5_crypt(b"password", "$1$", b"saltstring"), "qQY4WxjABChYG1ccLpfkz/");
        assert_eq!(md5_crypt(b"xxxxxxxx", "$apr1$", b"xxxxxxxx"), "bVgkO/6SF.W5IAebidVp11");
        let sha = base64::engine::general_purpose::STANDARD.decode("GpHWL3ymc5liWkNopqtdSjuqYHM=");
        let sha = PasswordHash::Sha1(sha.unwrap().try_into().unwrap());
        assert!(verify(&sha, b"pw") && !verify(&sha, b"pW"));
    }
}
