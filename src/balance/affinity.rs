//! Session affinity: cookie affinity (ingress-nginx's `affinity: cookie` family) and a
//! Service's own `sessionAffinity: ClientIP`.
//!
//! Cookie values never reveal an endpoint address. In `balanced` mode the cookie holds a
//! random key that a consistent-hash ring maps to an endpoint, so adding an endpoint moves
//! about 1/n of the sessions; in `persistent` mode it holds a keyed hash (HMAC-SHA256 under
//! `--affinity-key`) of the endpoint, so a session stays where it is while its endpoint exists.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use super::ring::Ring;
pub use super::ring::hash64;
use crate::config::Endpoint;
use crate::config::policy::{CookieAffinity, SameSite};
use aws_lc_rs::hmac;
use http::HeaderMap;
use http::header::{self, HeaderValue};

/// Per-backend lookup structures, built on first use and kept with the compiled backend
/// (one pointer until then: most backends never see cookie affinity).
#[derive(Default)]
pub struct AffinityIndex(OnceLock<Box<Lookups>>);

#[derive(Default)]
struct Lookups {
    ring: OnceLock<Ring>,
    ids: OnceLock<Ids>,
    by_addr: OnceLock<HashMap<SocketAddr, u32>>,
}

struct Ids {
    by_id: HashMap<Box<str>, u32>,
    of: Vec<Box<str>>,
}

impl Clone for AffinityIndex {
    fn clone(&self) -> Self {
        Self::default()
    }
}
impl std::fmt::Debug for AffinityIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AffinityIndex")
    }
}

/// Indexes below count the backend's ready endpoints first, then its terminating ones.
impl AffinityIndex {
    fn lookups(&self) -> &Lookups {
        self.0.get_or_init(Box::default)
    }

    fn ring(&self, ready: &[Endpoint], terminating: &[Endpoint]) -> &Ring {
        self.lookups()
            .ring
            .get_or_init(|| Ring::new(ready.iter().chain(terminating).map(|e| e.addr)))
    }

    /// Balanced mode: the endpoint a session key maps to.
    pub fn balanced(&self, ready: &[Endpoint], terminating: &[Endpoint], key: &str) -> Option<usize> {
        self.ring(ready, terminating).at(position(key))
    }

    /// Balanced mode: a session key that maps to endpoint `i`, for a session that must move
    /// there (it landed elsewhere, or its endpoint failed). The key is a ring position drawn
    /// uniformly from those `i` owns, written as [`position`] reads it: it tells no more than
    /// a random key that happened to land on `i` (whose position anyone can compute), and it
    /// moves on scaling as such a key would. Always found, in a fixed number of steps, whatever
    /// the number of endpoints; `None` only when `i` is no endpoint of the backend.
    pub fn balanced_key_for(&self, ready: &[Endpoint], terminating: &[Endpoint], i: usize) -> Option<String> {
        let r = u64::from_le_bytes(random_bytes());
        let p = self.ring(ready, terminating).position_of(i, r)?;
        Some(hex(&p.to_be_bytes()))
    }

    /// The index of the ready endpoint at `addr` (ClientIP affinity remembers addresses, which
    /// outlive a Config's indexes).
    pub fn ready_index(&self, ready: &[Endpoint], addr: SocketAddr) -> Option<usize> {
        // A short list is faster to scan than to hash into.
        if ready.len() <= 8 {
            return ready.iter().position(|e| e.addr == addr);
        }
        let map = self.lookups().by_addr.get_or_init(|| {
            let mut map = HashMap::with_capacity(ready.len());
            for (i, e) in ready.iter().enumerate() {
                // The first of duplicate addresses, as a scan would find.
                map.entry(e.addr).or_insert(i as u32);
            }
            map
        });
        map.get(&addr).map(|&i| i as usize)
    }

    fn ids(&self, ready: &[Endpoint], terminating: &[Endpoint], key: &hmac::Key) -> &Ids {
        self.lookups().ids.get_or_init(|| {
            let of: Vec<Box<str>> = ready
                .iter()
                .chain(terminating)
                .map(|ep| endpoint_id(key, ep.addr).into())
                .collect();
            let by_id = of.iter().enumerate().map(|(i, id)| (id.clone(), i as u32)).collect();
            Ids { by_id, of }
        })
    }

    /// Persistent mode: the endpoint a cookie value names.
    pub fn persistent(
        &self,
        ready: &[Endpoint],
        terminating: &[Endpoint],
        key: &hmac::Key,
        value: &str,
    ) -> Option<usize> {
        self.ids(ready, terminating, key).by_id.get(value).map(|i| *i as usize)
    }

    /// Persistent mode: the cookie value naming endpoint `i`.
    pub fn id_of(&self, ready: &[Endpoint], terminating: &[Endpoint], key: &hmac::Key, i: usize) -> Option<&str> {
        self.ids(ready, terminating, key).of.get(i).map(|s| &**s)
    }
}

/// Where a balanced cookie value sits on the ring: a value of exactly 16 lowercase hex digits
/// is the position itself (the keys [`AffinityIndex::balanced_key_for`] hands out); any other
/// value (the random keys of new sessions) is hashed with [`hash64`].
pub fn position(key: &str) -> u64 {
    let b = key.as_bytes();
    if b.len() == 16 {
        let mut p = 0u64;
        for &c in b {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return hash64(b),
            };
            p = p << 4 | u64::from(d);
        }
        return p;
    }
    hash64(b)
}

/// The opaque id of an endpoint: 128 bits of HMAC-SHA256 over its address, in hex.
pub fn endpoint_id(key: &hmac::Key, addr: SocketAddr) -> String {
    let tag = hmac::sign(key, addr.to_string().as_bytes());
    hex(&tag.as_ref()[..16])
}

/// A fresh random session key (balanced mode), 128 bits in hex.
pub fn random_key() -> String {
    hex(&random_bytes::<16>())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // The system generator failing is not a reason to fail a request; the bytes only
        // spread sessions.
        let t = hash64(&super::now_ns().to_le_bytes()).to_le_bytes();
        for (x, y) in b.iter_mut().zip(t.iter().cycle()) {
            *x = *y;
        }
    }
    b
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// The value of cookie `name` in the request, if sent. Several Cookie headers (HTTP/2
/// splits them) are all searched.
pub fn request_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name)
                .then(|| v.trim_matches('"'))
                .filter(|v| !v.is_empty() && v.len() <= 256)
        })
}

/// Builds the `Set-Cookie` value for a session.
pub fn set_cookie(
    cfg: &CookieAffinity,
    value: &str,
    route_path: &str,
    https: bool,
    user_agent: Option<&str>,
    now: SystemTime,
) -> Option<HeaderValue> {
    let mut s = format!(
        "{}={}; Path={}",
        cfg.name,
        value,
        cfg.path.as_deref().unwrap_or(route_path)
    );
    if let Some(d) = &cfg.domain {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    if let Some(secs) = cfg.expires {
        s.push_str("; Expires=");
        s.push_str(&httpdate::fmt_http_date(expiry(now, secs)));
    }
    if let Some(secs) = cfg.max_age {
        s.push_str(&format!("; Max-Age={secs}"));
    }
    let same_site = match cfg.same_site {
        Some(SameSite::None)
            if cfg.conditional_same_site_none && user_agent.is_some_and(same_site_none_incompatible) =>
        {
            None
        }
        other => other,
    };
    // Browsers drop `SameSite=None` cookies that are not Secure.
    if cfg.secure.unwrap_or(https) || same_site == Some(SameSite::None) {
        s.push_str("; Secure");
    }
    s.push_str("; HttpOnly");
    match same_site {
        Some(SameSite::None) => s.push_str("; SameSite=None"),
        Some(SameSite::Lax) => s.push_str("; SameSite=Lax"),
        Some(SameSite::Strict) => s.push_str("; SameSite=Strict"),
        None => {}
    }
    HeaderValue::from_str(&s).ok()
}

/// `now + secs`, clamped to the dates an HTTP date can name (1970 to 9999): the formatter
/// panics outside them. Compile caps the lifetime; the clamp keeps a wrong clock harmless too.
fn expiry(now: SystemTime, secs: u64) -> SystemTime {
    // 9999-12-31T23:59:59Z
    const LAST: Duration = Duration::from_secs(253_402_300_799);
    let since_epoch = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    SystemTime::UNIX_EPOCH + since_epoch.saturating_add(Duration::from_secs(secs)).min(LAST)
}

/// Browsers that reject or misread `SameSite=None` (the list Chromium published): iOS 12,
/// Safari on macOS 10.14, Chrome 51–66, UC Browser before 12.13.2.
pub fn same_site_none_incompatible(ua: &str) -> bool {
    let ios12 = ua.contains("(iP") && ua.contains("OS 12_") && ua.contains("AppleWebKit/");
    let chromium = ua.contains("Chrome/") || ua.contains("Chromium/");
    let mac_safari = ua.contains("(Macintosh;")
        && ua.contains("Mac OS X 10_14")
        && ua.contains("Version/")
        && ua.contains("Safari")
        && !chromium;
    let major = |marker: &str| -> Option<u32> {
        let rest = &ua[ua.find(marker)? + marker.len()..];
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let old_chrome = ["Chrome/", "Chromium/"]
        .iter()
        .any(|m| major(m).is_some_and(|v| (51..=66).contains(&v)));
    let old_uc = ua.find("UCBrowser/").is_some_and(|at| {
        let v: Vec<u32> = ua[at + "UCBrowser/".len()..]
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .next()
            .unwrap_or("")
            .split('.')
            .filter_map(|p| p.parse().ok())
            .collect();
        let get = |i: usize| v.get(i).copied().unwrap_or(0);
        (get(0), get(1), get(2)) < (12, 13, 2)
    });
    ios12 || mac_safari || old_chrome || old_uc
}

/// Most clients one Service's ClientIP table remembers (rounded up to a multiple of
/// [`CLIENT_IP_SHARDS`]).
pub const CLIENT_IP_CAPACITY: usize = 100_000;
/// Independent parts of a ClientIP table, each behind its own lock.
pub const CLIENT_IP_SHARDS: usize = 64;

/// A Service's `sessionAffinity: ClientIP` memory: client address → endpoint, each entry
/// living `timeoutSeconds` after the client's last answered request (as kube-proxy's does).
///
/// Bounded, with O(1) work per request: clients are spread over [`CLIENT_IP_SHARDS`] shards
/// by a keyed hash (random per table, so nobody can aim many addresses at one shard); a shard
/// holds at most `capacity / shards` clients in a map and a least-recently-used list, behind
/// its own lock, which a request holds for one map lookup and a few list links. When a shard
/// is full, a new client takes the place of the client whose last request is the oldest (the
/// first to expire, timeouts being equal, so expired entries go first), and is remembered:
/// nobody is refused. Expired entries are not swept: a lookup ignores them and a new client
/// or a refresh reuses them. Memory: 72 bytes an entry plus its share of the shard's map
/// (16-byte slots and a control byte each, at most 7/8 full): about 94 bytes a client at the
/// cap, so at most ~9.4 MB per Service; an empty table is 64 shards of 128 bytes.
pub struct ClientIpTable {
    hasher: RandomState,
    shards: Box<[Shard]>,
    per_shard: usize,
}

impl Default for ClientIpTable {
    fn default() -> Self {
        Self::with_capacity(CLIENT_IP_CAPACITY, CLIENT_IP_SHARDS)
    }
}

impl std::fmt::Debug for ClientIpTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIpTable")
    }
}

/// One shard, on its own cache line.
#[repr(align(64))]
#[derive(Default)]
struct Shard(Mutex<Lru>);

const NIL: u32 = u32::MAX;

/// A shard's clients: `index` finds a client's entry by its keyed hash; `entries`, linked
/// from `head` (least recently refreshed) to `tail` (most), give the eviction order.
struct Lru {
    index: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    entries: Vec<Entry>,
    head: u32,
    tail: u32,
}

impl Default for Lru {
    fn default() -> Self {
        Self {
            index: HashMap::default(),
            entries: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }
}

struct Entry {
    client: IpAddr,
    endpoint: SocketAddr,
    /// Where `endpoint` was among the ready endpoints when pinned: checked first on lookup.
    hint: u32,
    /// `now_ns()` until which the entry lives.
    until: u64,
    prev: u32,
    next: u32,
}

/// The map inside a shard is keyed by the table's keyed hash of the client: no second hash.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl ClientIpTable {
    /// A table of at most `capacity` clients (rounded up to a multiple of `shards`).
    pub fn with_capacity(capacity: usize, shards: usize) -> Self {
        let shards = shards.clamp(1, 1 << 16);
        Self {
            hasher: RandomState::new(),
            shards: (0..shards).map(|_| Shard::default()).collect(),
            per_shard: capacity.div_ceil(shards).clamp(1, NIL as usize),
        }
    }

    /// Most clients the table holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// Entries held, expired ones included (for tests and `/routes`; locks each shard in turn).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.0).entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client's keyed hash and its shard. The shard comes from bits 32.. of the hash,
    /// which the map inside the shard uses neither for its buckets (low bits) nor for its
    /// tags (top 7 bits).
    fn shard(&self, client: IpAddr) -> (u64, &Mutex<Lru>) {
        let h = self.hasher.hash_one(client);
        (h, &self.shards[(h >> 32) as usize % self.shards.len()].0)
    }

    /// The endpoint a client is pinned to, if its entry is still alive, with the index it had
    /// among the ready endpoints when pinned (a hint: the Config may have changed since).
    pub fn get(&self, client: IpAddr, now: u64) -> Option<(SocketAddr, usize)> {
        let (h, shard) = self.shard(client);
        let lru = lock(shard);
        let e = &lru.entries[*lru.index.get(&h)? as usize];
        (e.client == client && e.until > now).then_some((e.endpoint, e.hint as usize))
    }

    /// Pins (or re-pins) a client to `endpoint` (ready endpoint number `hint`) for `timeout`
    /// from now.
    pub fn set(&self, client: IpAddr, endpoint: SocketAddr, hint: usize, now: u64, timeout: Duration) {
        let until = now.saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
        let (h, shard) = self.shard(client);
        let entry = Entry {
            client,
            endpoint,
            hint: u32::try_from(hint).unwrap_or(NIL),
            until,
            prev: NIL,
            next: NIL,
        };
        let mut lru = lock(shard);
        let lru = &mut *lru;
        let slot = match lru.index.get(&h) {
            // The client (or, at odds of 2^-64, another one with the same hash, which takes
            // its place).
            Some(&slot) => {
                lru.unlink(slot);
                slot
            }
            None if lru.entries.len() < self.per_shard => {
                if lru.entries.len() == lru.entries.capacity() {
                    // Grow towards the cap, never past it.
                    let more = lru.entries.len().max(4).min(self.per_shard - lru.entries.len());
                    lru.entries.reserve_exact(more);
                }
                lru.entries.push(entry);
                let slot = (lru.entries.len() - 1) as u32;
                lru.index.insert(h, slot);
                lru.push_back(slot);
                return;
            }
            None => {
                // Full: the least recently refreshed client makes room.
                let slot = lru.head;
                let old = self.hasher.hash_one(lru.entries[slot as usize].client);
                lru.index.remove(&old);
                lru.index.insert(h, slot);
                lru.unlink(slot);
                slot
            }
        };
        lru.entries[slot as usize] = entry;
        lru.push_back(slot);
    }
}

impl Lru {
    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let e = &self.entries[slot as usize];
            (e.prev, e.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.entries[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.entries[n as usize].prev = prev,
        }
    }

    fn push_back(&mut self, slot: u32) {
        let tail = self.tail;
        {
            let e = &mut self.entries[slot as usize];
            e.prev = tail;
            e.next = NIL;
        }
        match tail {
            NIL => self.head = slot,
            t => self.entries[t as usize].next = slot,
        }
        self.tail = slot;
    }

    /// The clients from least to most recently refreshed (tests).
    #[cfg(test)]
    fn order(&self) -> Vec<IpAddr> {
        let mut v = Vec::new();
        let mut at = self.head;
        while at != NIL {
            let e = &self.entries[at as usize];
            v.push(e.client);
            at = e.next;
        }
        v
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn eps(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| {
                let addr: SocketAddr = format!("10.0.{}.{}:8080", i / 250, i % 250 + 1).parse().unwrap();
                Endpoint {
                    addr,
                    target: None,
                    zone: None,
                }
            })
            .collect()
    }

    #[test]
    fn balanced_moves_about_one_in_n_when_scaling() {
        let four = eps(4);
        let five = eps(5);
        let (a, b) = (AffinityIndex::default(), AffinityIndex::default());
        let keys: Vec<String> = (0..4000).map(|_| random_key()).collect();
        let mut moved = 0;
        let mut share = [0usize; 4];
        for k in &keys {
            let before = a.balanced(&four, &[], k).unwrap();
            share[before] += 1;
            let after = b.balanced(&five, &[], k).unwrap();
            if four[before].addr != five[after].addr {
                moved += 1;
                assert_eq!(after, 4, "a session only moves to the new endpoint");
            }
        }
        let frac = moved as f64 / keys.len() as f64;
        assert!((0.12..0.28).contains(&frac), "moved {frac}");
        for s in share {
            assert!((700..1300).contains(&s), "shares {share:?}");
        }
    }

    #[test]
    fn persistent_ids_are_opaque_and_stable() {
        let e = eps(3);
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let idx = AffinityIndex::default();
        let id = idx.id_of(&e, &[], &key, 1).unwrap().to_string();
        assert_eq!(id.len(), 32);
        assert!(!id.contains("10.0.0"));
        assert_eq!(idx.persistent(&e, &[], &key, &id), Some(1));
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"other");
        assert_ne!(endpoint_id(&other, e[1].addr), id);
        assert_eq!(idx.persistent(&e, &[], &key, "nope"), None);
    }

    #[test]
    fn cookie_attributes() {
        let cfg = CookieAffinity {
            name: "route".into(),
            domain: Some("example.com".into()),
            max_age: Some(3600),
            expires: Some(60),
            same_site: Some(SameSite::None),
            conditional_same_site_none: true,
            ..Default::default()
        };
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = set_cookie(&cfg, "abc", "/app", false, Some("curl/8"), t).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "route=abc; Path=/app; Domain=example.com; Expires=Tue, 14 Nov 2023 22:14:20 GMT; Max-Age=3600; Secure; HttpOnly; SameSite=None"
        );
        let old =
            "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/62.0.3202.94 Safari/537.36";
        let v = set_cookie(&cfg, "abc", "/", false, Some(old), t).unwrap();
        assert!(!v.to_str().unwrap().contains("SameSite") && !v.to_str().unwrap().contains("Secure"));
        let plain = CookieAffinity::default();
        assert_eq!(
            set_cookie(&plain, "x", "/", true, None, t).unwrap().to_str().unwrap(),
            "INGRESSCOOKIE=x; Path=/; Secure; HttpOnly"
        );
    }

    /// httpdate panics for dates past 9999 or before 1970, and `SystemTime + Duration` on
    /// overflow: the annotation caps the lifetime, and the date is clamped besides.
    #[test]
    fn far_or_early_expiry_dates_still_make_a_cookie() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for secs in [300_000_000_000, u64::MAX] {
            let cfg = CookieAffinity {
                expires: Some(secs),
                max_age: Some(secs),
                ..Default::default()
            };
            let v = set_cookie(&cfg, "x", "/", false, None, t).unwrap();
            assert!(
                v.to_str().unwrap().contains("; Expires=Fri, 31 Dec 9999 23:59:59 GMT"),
                "{v:?}"
            );
        }
        let cfg = CookieAffinity {
            expires: Some(0),
            ..Default::default()
        };
        let before_1970 = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        let v = set_cookie(&cfg, "x", "/", false, None, before_1970).unwrap();
        assert!(
            v.to_str().unwrap().contains("; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
            "{v:?}"
        );
    }

    #[test]
    fn samesite_none_incompatible_clients() {
        assert!(same_site_none_incompatible(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 12_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1"
        ));
        assert!(same_site_none_incompatible(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15"
        ));
        assert!(same_site_none_incompatible(
            "Mozilla/5.0 (Linux; U; Android 8.1.0) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 UCBrowser/12.10.8.1172 Mobile Safari/537.36"
        ));
        assert!(!same_site_none_incompatible(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
        ));
        assert!(!same_site_none_incompatible(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
        ));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; INGRESSCOOKIE=xyz"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(request_cookie(&h, "INGRESSCOOKIE"), Some("xyz"));
        assert_eq!(request_cookie(&h, "b"), Some("2"));
        assert_eq!(request_cookie(&h, "c"), None);
    }

    #[test]
    fn balanced_keys_for_reach_every_endpoint() {
        for n in [1, 2, 200, 1000] {
            let e = eps(n);
            let idx = AffinityIndex::default();
            for i in 0..n {
                let k = idx.balanced_key_for(&e, &[], i).unwrap();
                assert_eq!(k.len(), 16);
                assert!(!k.contains("10.0"), "{k}");
                assert_eq!(idx.balanced(&e, &[], &k), Some(i), "{n} endpoints, endpoint {i}");
                // A fresh index over the same endpoints (another replica, a recompile) agrees.
                if i % 97 == 0 {
                    assert_eq!(AffinityIndex::default().balanced(&e, &[], &k), Some(i));
                }
            }
            assert_eq!(idx.balanced_key_for(&e, &[], n), None);
        }
        // Terminating endpoints count after the ready ones.
        let (ready, terminating) = (eps(3), eps(5)[3..].to_vec());
        let idx = AffinityIndex::default();
        for i in 0..5 {
            let k = idx.balanced_key_for(&ready, &terminating, i).unwrap();
            assert_eq!(idx.balanced(&ready, &terminating, &k), Some(i));
        }
        assert_eq!(AffinityIndex::default().balanced_key_for(&[], &[], 0), None);
    }

    #[test]
    fn balanced_keys_for_move_like_random_keys_when_scaling() {
        // Sessions re-pinned on 4 endpoints: adding a fifth moves about 1/5 of them, only to it.
        let (four, five) = (eps(4), eps(5));
        let (a, b) = (AffinityIndex::default(), AffinityIndex::default());
        let mut moved = 0;
        let mut keys = HashSet::new();
        for j in 0..4000 {
            let k = a.balanced_key_for(&four, &[], j % 4).unwrap();
            let after = b.balanced(&five, &[], &k).unwrap();
            if after != j % 4 {
                moved += 1;
                assert_eq!(after, 4, "a session only moves to the new endpoint");
            }
            keys.insert(k);
        }
        let frac = moved as f64 / 4000.0;
        assert!((0.12..0.28).contains(&frac), "moved {frac}");
        assert_eq!(keys.len(), 4000, "keys are random");
    }

    #[test]
    fn positions_are_read_from_16_hex_digits_else_hashed() {
        assert_eq!(position("00000000000000ff"), 255);
        assert_eq!(position("ffffffffffffffff"), u64::MAX);
        for other in ["00000000000000FF", "+000000000000000", "0000000000000000f", "x"] {
            assert_eq!(position(other), hash64(other.as_bytes()), "{other}");
        }
        let k = random_key();
        assert_eq!(position(&k), hash64(k.as_bytes()));
    }

    #[test]
    fn ready_index_finds_addresses_in_short_and_long_lists() {
        for n in [3, 300] {
            let e = eps(n);
            let idx = AffinityIndex::default();
            for (i, ep) in e.iter().enumerate() {
                assert_eq!(idx.ready_index(&e, ep.addr), Some(i));
            }
            assert_eq!(idx.ready_index(&e, "192.0.2.1:80".parse().unwrap()), None);
        }
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(n.into())
    }

    fn ep(n: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], n))
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn client_ip_entries_expire() {
        let t = ClientIpTable::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let ep: SocketAddr = "10.0.0.1:80".parse().unwrap();
        t.set(ip, ep, 3, 0, Duration::from_secs(1));
        assert_eq!(t.get(ip, 500_000_000), Some((ep, 3)));
        assert_eq!(t.get(ip, 1_500_000_000), None);
        assert_eq!(t.get("192.0.2.8".parse().unwrap(), 0), None);
    }

    #[test]
    fn client_ip_entries_live_timeout_after_the_last_request() {
        let t = ClientIpTable::default();
        let d = Duration::from_secs(10);
        t.set(ip(1), ep(1), 0, 0, d);
        t.set(ip(1), ep(1), 0, 8 * SEC, d);
        assert_eq!(t.get(ip(1), 15 * SEC), Some((ep(1), 0)), "refreshed at 8 s");
        assert_eq!(t.get(ip(1), 18 * SEC), None);
        // An expired entry is renewed in place, not added twice.
        t.set(ip(1), ep(2), 1, 20 * SEC, d);
        assert_eq!(t.get(ip(1), 21 * SEC), Some((ep(2), 1)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn client_ip_tables_are_bounded() {
        let t = ClientIpTable::with_capacity(1000, 8);
        assert_eq!(t.capacity(), 1000);
        for n in 0..50_000 {
            t.set(ip(n), ep(1), 0, 0, Duration::from_secs(60));
        }
        assert_eq!(t.len(), 1000);
        // The newest clients are remembered, though every entry is alive.
        assert_eq!(t.get(ip(49_999), SEC), Some((ep(1), 0)));
        assert_eq!(t.capacity(), ClientIpTable::with_capacity(1001, 8).capacity() - 8);
        assert_eq!(ClientIpTable::default().capacity(), 100_032);
        assert!(std::mem::size_of::<Entry>() <= 72, "{}", std::mem::size_of::<Entry>());
        assert!(std::mem::size_of::<Shard>() <= 128, "{}", std::mem::size_of::<Shard>());
    }

    #[test]
    fn client_ip_eviction_takes_the_least_recently_refreshed() {
        let t = ClientIpTable::with_capacity(3, 1);
        let d = Duration::from_secs(10);
        let order = || lock(&t.shards[0].0).order();
        t.set(ip(1), ep(1), 0, 0, d);
        t.set(ip(2), ep(2), 0, SEC, d);
        t.set(ip(3), ep(3), 0, 2 * SEC, d);
        t.set(ip(1), ep(1), 0, 3 * SEC, d);
        assert_eq!(order(), [ip(2), ip(3), ip(1)]);
        // Full of live entries: the new client takes the place of 2, the oldest.
        t.set(ip(4), ep(4), 0, 4 * SEC, d);
        assert_eq!(order(), [ip(3), ip(1), ip(4)]);
        assert_eq!(t.get(ip(2), 4 * SEC), None);
        assert_eq!(t.get(ip(4), 4 * SEC), Some((ep(4), 0)));
        // Expired entries go first (equal timeouts: they are the oldest).
        t.set(ip(5), ep(5), 0, 30 * SEC, d);
        assert_eq!(order(), [ip(1), ip(4), ip(5)]);
        assert_eq!(t.get(ip(3), 30 * SEC), None);
        assert_eq!(t.get(ip(5), 30 * SEC), Some((ep(5), 0)));
        // A lookup does not refresh.
        assert_eq!(t.get(ip(1), 5 * SEC), Some((ep(1), 0)));
        t.set(ip(6), ep(6), 0, 31 * SEC, d);
        assert_eq!(order(), [ip(4), ip(5), ip(6)]);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn client_ip_tables_hold_under_concurrent_use() {
        let t = ClientIpTable::with_capacity(512, 8);
        let d = Duration::from_secs(1000);
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let t = &t;
                scope.spawn(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ thread;
                    for _ in 0..100_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let n = (x % 2000) as u32;
                        let now = x >> 40;
                        if x & 1 == 0 {
                            // Every client is always pinned to the endpoint its address names.
                            t.set(ip(n), ep(n as u16), n as usize, now, d);
                        } else if let Some((e, hint)) = t.get(ip(n), now) {
                            assert_eq!((e, hint), (ep(n as u16), n as usize));
                        }
                    }
                });
            }
        });
        assert_eq!(t.len(), 512);
        for shard in t.shards.iter() {
            let lru = lock(&shard.0);
            let order = lru.order();
            assert_eq!(order.len(), lru.entries.len(), "the list links every entry once");
            assert_eq!(lru.index.len(), lru.entries.len());
            assert_eq!(order.iter().collect::<HashSet<_>>().len(), order.len());
            for c in order {
                assert_eq!(lru.entries[lru.index[&t.hasher.hash_one(c)] as usize].client, c);
            }
        }
    }
}
