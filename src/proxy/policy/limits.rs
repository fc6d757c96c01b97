//! `limit-rps`, `limit-rpm` and `limit-connections`: per client address, a leaky bucket per
//! rate and a count of requests in progress, in bounded tables the data plane keeps across
//! Configs (one per Ingress and limit, as ingress-nginx keeps one nginx zone per Ingress).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use http::{HeaderMap, Response, StatusCode};

use crate::balance::now_ns;
use crate::config::limits::Limits;
use crate::config::{Config, Route, Trusted};
use crate::model::ObjectKey;
use crate::proxy::headers::{Peer, client_ip};
use crate::proxy::{Body, plain};

/// Most client addresses one limiter remembers: 896 a shard, which is what a map of 1024
/// slots holds (7/8 of them) before it doubles. A slot is 49 bytes (address, entry, control
/// byte), so a limiter at the cap holds 64 × 1024 × 49 bytes, about 3.2 MB.
pub const CAPACITY: usize = 896 * SHARDS;
/// Independent parts of a limiter's table, each behind its own lock.
const SHARDS: usize = 64;

/// The runtime state of one Ingress's limits, shared by its routes and kept by later Planes
/// while the Ingress's limits and the replica count stay the same.
///
/// A leaky bucket is kept as GCRA's theoretical arrival time (TAT): a request at `now` is let
/// through when `max(tat, now) - now <= burst × interval`, and then moves TAT one `interval`
/// on. That is nginx's `limit_req ... burst=B nodelay` exactly: `B + 1` requests at once,
/// then one per interval. Clients are spread over [`SHARDS`] shards by a keyed hash (random
/// per limiter, so nobody can aim addresses at one shard), each behind its own lock, held for
/// one map lookup. A shard holds at most `CAPACITY / SHARDS` clients; when a new client finds
/// it full, the clients whose buckets are empty and who have no request in progress are
/// dropped (forgetting them changes nothing); if none is, the one nearest to an empty bucket
/// among those without a request in progress makes room (nginx drops its least recently used
/// state then). A flood of addresses thus costs nobody an answer, only, at worst, forgotten
/// buckets, which per-address limits cannot hold against that many addresses anyway. Only
/// when every client of the shard has a request in progress is the new one refused, with the
/// connection limit's status, as nginx's `limit_conn` does when its zone is full.
pub struct Limiter {
    /// The compiled limits this was made for, and the replica count that divides them.
    limits: Arc<Limits>,
    divisor: u32,
    rps: Option<Bucket>,
    rpm: Option<Bucket>,
    connections: Option<u32>,
    hasher: RandomState,
    shards: Box<[Shard]>,
    per_shard: usize,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Nanoseconds one request takes to leak out.
    interval: u64,
    /// How far TAT may run ahead of now: burst × interval.
    tolerance: u64,
}

impl Bucket {
    /// TAT after a request at `now`, or `None` when the request is over the limit.
    fn admit(self, tat: u64, now: u64) -> Option<u64> {
        let start = tat.max(now);
        (start - now <= self.tolerance).then(|| start.saturating_add(self.interval))
    }
}

#[repr(align(64))]
#[derive(Default)]
struct Shard(Mutex<HashMap<IpAddr, Entry>>);

#[derive(Default)]
struct Entry {
    rps_tat: u64,
    rpm_tat: u64,
    /// Requests in progress.
    held: u32,
}

impl Entry {
    fn idle(&self, now: u64) -> bool {
        self.held == 0 && self.rps_tat <= now && self.rpm_tat <= now
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request counted against `limit-connections` until this is dropped (with its response
/// body). Boxed: one pointer in the response body, paid only by routes with the limit.
pub struct Held(Box<(Arc<Limiter>, IpAddr)>);

impl Drop for Held {
    fn drop(&mut self) {
        let (limiter, client) = &*self.0;
        if let Some(e) = lock(limiter.shard(*client)).get_mut(client) {
            e.held = e.held.saturating_sub(1);
        }
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Connections,
    Rate,
    /// The table is full of clients with requests in progress.
    Full,
}

impl Limiter {
    pub fn new(limits: Arc<Limits>, divisor: u32) -> Self {
        Self::with_capacity(limits, divisor, CAPACITY)
    }

    fn with_capacity(limits: Arc<Limits>, divisor: u32, capacity: usize) -> Self {
        let bucket = |r: &crate::config::limits::Rate| {
            let interval = r.interval_ns(divisor);
            Bucket {
                interval,
                tolerance: r.burst(divisor).saturating_mul(interval),
            }
        };
        Self {
            rps: limits.rps.as_ref().map(bucket),
            rpm: limits.rpm.as_ref().map(bucket),
            connections: limits.connections(divisor),
            limits,
            divisor,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, client: IpAddr) -> &Mutex<HashMap<IpAddr, Entry>> {
        &self.shards[self.hasher.hash_one(client) as usize % SHARDS].0
    }

    /// Counts a request of `client` at `now` (nanoseconds of [`now_ns`]): `Ok` with the
    /// connection mark to hold while it is served (when `limit-connections` is set), or why
    /// it is refused. Limits apply in ingress-nginx's order: connections, per minute, per
    /// second; a refused request uses up nothing.
    pub fn admit(self: &Arc<Self>, client: IpAddr, now: u64) -> Result<Option<Held>, Refused> {
        let mut shard = lock(self.shard(client));
        if !shard.contains_key(&client) && shard.len() >= self.per_shard {
            shard.retain(|_, e| !e.idle(now));
            if shard.len() >= self.per_shard {
                let nearest = shard
                    .iter()
                    .filter(|(_, e)| e.held == 0)
                    .min_by_key(|(_, e)| e.rps_tat.max(e.rpm_tat))
                    .map(|(ip, _)| *ip);
                match nearest {
                    Some(ip) => drop(shard.remove(&ip)),
                    None => return Err(Refused::Full),
                }
            }
        }
        let e = shard.entry(client).or_default();
        if self.connections.is_some_and(|max| e.held >= max) {
            return Err(Refused::Connections);
        }
        let rpm = match self.rpm {
            Some(b) => Some(b.admit(e.rpm_tat, now).ok_or(Refused::Rate)?),
            None => None,
        };
        let rps = match self.rps {
            Some(b) => Some(b.admit(e.rps_tat, now).ok_or(Refused::Rate)?),
            None => None,
        };
        e.rpm_tat = rpm.unwrap_or(e.rpm_tat);
        e.rps_tat = rps.unwrap_or(e.rps_tat);
        if self.connections.is_none() {
            return Ok(None);
        }
        e.held += 1;
        drop(shard);
        Ok(Some(Held(Box::new((self.clone(), client)))))
    }

    /// Clients remembered (tests and diagnostics; locks each shard in turn).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.0).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The limiters of a Config's routes, aligned with `route_list`: those of a previous Plane
/// are kept for each Ingress whose limits and replica count did not change; routes of one
/// Ingress with the same limits share one.
pub fn reconcile(prev: Option<(&Config, &[Option<Arc<Limiter>>])>, config: &Config) -> Arc<[Option<Arc<Limiter>>]> {
    let divisor = config.replicas.divisor();
    let mut known: HashMap<&ObjectKey, Vec<Arc<Limiter>>> = HashMap::new();
    if let Some((pc, pl)) = prev {
        for (route, limiter) in pc.route_list.iter().zip(pl) {
            if let Some(l) = limiter {
                let same = known.entry(&route.ingress).or_default();
                if !same.iter().any(|s| Arc::ptr_eq(s, l)) {
                    same.push(l.clone());
                }
            }
        }
    }
    let mut made: HashMap<&ObjectKey, Vec<Arc<Limiter>>> = HashMap::new();
    config
        .route_list
        .iter()
        .map(|route| {
            let limits = route.policy.limits.as_ref()?;
            let fits = |l: &&Arc<Limiter>| l.divisor == divisor && *l.limits == **limits;
            let mine = made.entry(&route.ingress).or_default();
            if let Some(l) = mine.iter().find(fits) {
                return Some(l.clone());
            }
            let l = known
                .get(&route.ingress)
                .and_then(|v| v.iter().find(fits).cloned())
                .unwrap_or_else(|| Arc::new(Limiter::new(limits.clone(), divisor)));
            mine.push(l.clone());
            Some(l)
        })
        .collect()
}

/// The limit step: `Ok(None)` at once for a route without limits (the one test a route
/// without them pays); else the client (after trusted proxies' X-Forwarded-For) is counted,
/// and gets the limit's status code when over it. `Ok(Some)`: hold it until the response is
/// done.
#[inline(always)]
pub fn check(
    limiters: &[Option<Arc<Limiter>>],
    route: &Route,
    headers: &HeaderMap,
    peer: &Peer,
    trusted: &Trusted,
) -> Result<Option<Held>, Over> {
    match &route.policy.limits {
        None => Ok(None),
        Some(limits) => count(limiters.get(route.id), limits, headers, peer, trusted),
    }
}

#[inline(never)]
fn count(
    limiter: Option<&Option<Arc<Limiter>>>,
    limits: &Limits,
    headers: &HeaderMap,
    peer: &Peer,
    trusted: &Trusted,
) -> Result<Option<Held>, Over> {
    let Some(Some(limiter)) = limiter else {
        return Ok(None);
    };
    let client = client_ip(headers, peer.addr, trusted).to_canonical();
    if limits.whitelist.iter().any(|c| c.contains(client)) {
        return Ok(None);
    }
    limiter.admit(client, now_ns()).map_err(|why| {
        Over(match why {
            Refused::Connections | Refused::Full => limits.conn_status,
            Refused::Rate => limits.req_status,
        })
    })
}

/// A refused request, and the status code its answer carries.
#[derive(Debug, PartialEq, Eq)]
pub struct Over(pub u16);

impl Over {
    /// The answer: the status and its generic text (nothing about the limit's settings).
    pub fn response(self) -> Response<Body> {
        let status = StatusCode::from_u16(self.0).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let text = match status {
            StatusCode::TOO_MANY_REQUESTS => "too many requests",
            _ => "service unavailable",
        };
        plain(status, text)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::limits::Rate;

    const SEC: u64 = 1_000_000_000;

    fn limits(rps: Option<(u32, u64)>, rpm: Option<(u32, u64)>, connections: Option<u32>) -> Arc<Limits> {
        let rate = |(limit, burst), per| Rate {
            limit,
            per: Duration::from_secs(per),
            burst,
        };
        Arc::new(Limits {
            rps: rps.map(|r| rate(r, 1)),
            rpm: rpm.map(|r| rate(r, 60)),
            connections,
            whitelist: vec![],
            req_status: 503,
            conn_status: 503,
        })
    }

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(i.into())
    }

    /// How many of `n` requests at `now` get through.
    fn through(l: &Arc<Limiter>, client: IpAddr, n: usize, now: u64) -> usize {
        (0..n).filter(|_| l.admit(client, now).is_ok()).count()
    }

    #[test]
    fn burst_then_one_per_interval_as_nginx_nodelay() {
        let l = Arc::new(Limiter::new(limits(Some((10, 20)), None, None), 1));
        let t = 5 * SEC;
        assert_eq!(through(&l, ip(1), 100, t), 21, "burst + 1 at once");
        assert_eq!(through(&l, ip(1), 100, t + SEC / 10 - 1), 0);
        assert_eq!(through(&l, ip(1), 100, t + SEC / 10), 1);
        // A second later, ten more drops have leaked out.
        assert_eq!(through(&l, ip(1), 100, t + SEC / 10 + SEC), 10);
        // Idle long enough, the whole burst is back, and no more.
        assert_eq!(through(&l, ip(1), 100, t + 60 * SEC), 21);
    }

    #[test]
    fn over_a_window_the_rate_holds() {
        let l = Arc::new(Limiter::new(limits(Some((50, 0)), None, None), 1));
        // A request every millisecond for ten seconds.
        let ok = (0..10_000u64)
            .filter(|ms| l.admit(ip(1), SEC + ms * 1_000_000).is_ok())
            .count();
        assert_eq!(ok, 500);
    }

    #[test]
    fn per_minute_and_per_second_both_apply() {
        let l = Arc::new(Limiter::new(limits(Some((10, 0)), Some((3, 0)), None), 1));
        let ok = (0..100u64).filter(|i| l.admit(ip(1), SEC + i * SEC).is_ok()).count();
        // 100 s at one request a second: the per-minute limit lets one through every 20 s.
        assert_eq!(ok, 5);
    }

    #[test]
    fn clients_are_independent() {
        let l = Arc::new(Limiter::new(limits(Some((1, 2)), None, None), 1));
        assert_eq!(through(&l, ip(1), 10, SEC), 3);
        assert_eq!(through(&l, ip(2), 10, SEC), 3);
        assert_eq!(through(&l, ip(1), 10, SEC), 0);
    }

    #[test]
    fn connections_are_held_until_dropped() {
        let l = Arc::new(Limiter::new(limits(None, None, Some(2)), 1));
        let a = l.admit(ip(1), SEC).unwrap().expect("held");
        let b = l.admit(ip(1), SEC).unwrap().expect("held");
        assert_eq!(l.admit(ip(1), SEC).err(), Some(Refused::Connections));
        assert!(l.admit(ip(2), SEC).is_ok(), "another client has its own count");
        drop(a);
        let c = l.admit(ip(1), SEC).unwrap();
        assert!(c.is_some());
        drop((b, c));
    }

    #[test]
    fn replicas_divide_the_limits() {
        let l = Arc::new(Limiter::new(limits(None, None, Some(4)), 2));
        let held: Vec<_> = (0..10).filter_map(|_| l.admit(ip(1), SEC).ok()).collect();
        assert_eq!(held.len(), 2, "connections: 4 / 2");
        let l = Arc::new(Limiter::new(limits(Some((10, 20)), None, None), 2));
        assert_eq!(through(&l, ip(1), 100, SEC), 11, "burst 20 / 2, + 1");
        assert_eq!(through(&l, ip(1), 100, SEC + SEC / 5), 1, "5/s: one per 200 ms");
    }

    /// A Config whose routes belong to `ingresses`, with those limits.
    fn config(routes: &[(&str, Option<Arc<Limits>>)], replicas: u32) -> Config {
        use crate::config::HostPattern;
        use crate::config::limits::Replicas;
        let route_list = routes
            .iter()
            .enumerate()
            .map(|(id, (ingress, limits))| {
                Arc::new(Route {
                    id,
                    ingress: ObjectKey::new("default", *ingress),
                    host: HostPattern::Any,
                    path: None,
                    backend: 0,
                    service: ObjectKey::new("default", "web"),
                    ssl_redirect: false,
                    policy: Arc::new(crate::config::Policy {
                        limits: limits.clone(),
                        ..Default::default()
                    }),
                    client_auth: None,
                    canary: None,
                    conditions: None,
                    weighted: None,
                })
            })
            .collect();
        Config {
            route_list: Arc::new(route_list),
            replicas: Replicas {
                service: Some(ObjectKey::new("ingress", "portico")),
                live: replicas,
            },
            ..Default::default()
        }
    }

    fn same(a: &Option<Arc<Limiter>>, b: &Option<Arc<Limiter>>) -> bool {
        matches!((a, b), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    #[test]
    fn reconcile_keeps_the_state_of_unchanged_limits() {
        let ten = limits(Some((10, 50)), None, None);
        let five = limits(Some((5, 25)), None, None);
        let first = config(
            &[
                ("a", Some(ten.clone())),
                ("a", Some(ten.clone())),
                ("b", Some(ten.clone())),
                ("c", None),
            ],
            1,
        );
        let l1 = reconcile(None, &first);
        assert!(same(&l1[0], &l1[1]), "one Ingress's paths share one limiter");
        assert!(!same(&l1[0], &l1[2]), "another Ingress has its own");
        assert!(l1[3].is_none());
        // b's limits change, a route is added before a's: a keeps its state, b starts afresh.
        let second = config(&[("c", None), ("a", Some(ten.clone())), ("b", Some(five.clone()))], 1);
        let l2 = reconcile(Some((&first, &l1)), &second);
        assert!(same(&l2[1], &l1[0]));
        assert!(!same(&l2[2], &l1[2]));
        // The replica count changes: every limiter is made again with the new share.
        let third = config(&[("a", Some(ten.clone()))], 2);
        let l3 = reconcile(Some((&second, &l2)), &third);
        assert!(!same(&l3[0], &l2[1]));
        assert_eq!(l3[0].as_ref().unwrap().divisor, 2);
    }

    #[test]
    fn refusals_answer_the_configured_status_and_whitelisted_clients_pass() {
        let mut l = (*limits(Some((1, 0)), None, Some(1))).clone();
        l.req_status = 429;
        l.conn_status = 503;
        l.whitelist = vec!["10.0.0.0/8".parse().unwrap()];
        let l = Arc::new(l);
        let cfg = config(&[("a", Some(l.clone()))], 1);
        let limiters = reconcile(None, &cfg);
        let route = &cfg.route_list[0];
        let headers = HeaderMap::new();
        let peer = Peer::new(ip(0x0a00_0001), 80, false);
        let status = |r: Result<Option<Held>, Over>| match r {
            Ok(Some(_)) => 0,
            Ok(None) => 1,
            Err(over) => over.response().status().as_u16(),
        };
        for _ in 0..5 {
            assert_eq!(
                status(check(&limiters, route, &headers, &peer, &Default::default())),
                1,
                "whitelisted"
            );
        }
        let peer = Peer::new(ip(0x0b00_0001), 80, false);
        let held = check(&limiters, route, &headers, &peer, &Default::default());
        assert!(matches!(held, Ok(Some(_))));
        let refused = status(check(&limiters, route, &headers, &peer, &Default::default()));
        assert_eq!(refused, 503, "the connection limit comes first");
        drop(held);
        let refused = status(check(&limiters, route, &headers, &peer, &Default::default()));
        assert_eq!(refused, 429, "then the rate's status");
        // A route without limits is let through without a look at the limiters.
        let plain = config(&[("b", None)], 1);
        assert_eq!(
            status(check(&[], &plain.route_list[0], &headers, &peer, &Default::default())),
            1
        );
    }

    /// The map of a full shard never doubles past the 1024 slots the memory figure assumes.
    #[test]
    fn a_full_shard_fits_its_map() {
        let mut m: HashMap<IpAddr, Entry> = HashMap::new();
        for i in 0..(CAPACITY / SHARDS) as u32 {
            m.insert(ip(i), Entry::default());
        }
        assert_eq!(m.capacity(), CAPACITY / SHARDS, "1024 slots, none to spare");
        assert_eq!(std::mem::size_of::<(IpAddr, Entry)>(), 48);
    }

    #[test]
    fn the_table_is_bounded_and_a_flood_costs_nobody_an_answer() {
        // One slot per shard.
        let l = Arc::new(Limiter::with_capacity(limits(Some((1, 0)), None, None), 1, SHARDS));
        assert!(l.admit(ip(1), SEC).is_ok());
        assert!(l.admit(ip(1), SEC).is_err(), "over its limit");
        for i in 2..10_000 {
            assert!(l.admit(ip(i), SEC).is_ok(), "a new address is never refused");
        }
        assert_eq!(l.len(), SHARDS, "never past the cap");
        // Address 1 was forgotten when its shard needed the room: a fresh bucket.
        assert!(l.admit(ip(1), SEC).is_ok());

        // With requests in progress, nobody is dropped: a full shard refuses newcomers.
        let l = Arc::new(Limiter::with_capacity(limits(None, None, Some(5)), 1, SHARDS));
        let mut held = Vec::new();
        let mut full = 0;
        for i in 0..10_000 {
            match l.admit(ip(i), SEC) {
                Ok(h) => held.push(h),
                Err(Refused::Full) => full += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!((held.len(), full), (SHARDS, 10_000 - SHARDS));
        assert_eq!(l.len(), SHARDS);
        // Finished, they are idle and make room.
        held.clear();
        assert!(l.admit(ip(20_000), SEC).is_ok());
        assert!(l.len() <= SHARDS);
    }
}
