//! Endpoint choice and the runtime state it keeps: per endpoint (passive health, peak-EWMA
//! latency, requests in flight) in [`EndpointState`]; per backend (round-robin cursor,
//! affinity indexes, ClientIP memory) in [`table::BackendState`], reconciled with each new
//! Config so that what did not change keeps its state. On top of that: round robin,
//! peak-EWMA with power of two choices, and affinity ([`affinity`]).

pub mod affinity;
pub mod choice;
pub mod hash;
pub mod ring;
pub mod table;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::config::policy::Algorithm;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Nanoseconds since the process's first call: a cheap monotonic clock for atomics.
pub fn now_ns() -> u64 {
    ns_at(Instant::now())
}

/// [`now_ns`] of an instant already read (the clock is read once per step of a request).
pub fn ns_at(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(*EPOCH).as_nanos()).unwrap_or(u64::MAX)
}

/// How long an endpoint is skipped after its `n`th failure in a row: 1 s, doubling, at
/// most 60 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// Peak-EWMA time constant: how fast an old latency is forgotten (as in linkerd2-proxy).
const EWMA_DECAY_NS: f64 = 10e9;
/// The latency assumed for an endpoint nothing has been measured on yet.
const EWMA_DEFAULT_NS: f64 = 30e6;

/// What Portico knows about one endpoint, shared by every Config that lists it.
pub struct EndpointState {
    pub addr: SocketAddr,
    /// Connect failures in a row.
    failures: AtomicU32,
    /// `now_ns()` until which the endpoint is skipped.
    down_until: AtomicU64,
    /// Peak-EWMA of the time to response head, as f64 nanoseconds.
    rtt: AtomicU64,
    /// `now_ns()` of the last `rtt` update.
    rtt_stamp: AtomicU64,
    inflight: AtomicU32,
}

impl std::fmt::Debug for EndpointState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointState")
            .field("addr", &self.addr)
            .field("failures", &self.failures.load(Ordering::Relaxed))
            .finish()
    }
}

impl EndpointState {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            failures: AtomicU32::new(0),
            down_until: AtomicU64::new(0),
            rtt: AtomicU64::new(EWMA_DEFAULT_NS.to_bits()),
            rtt_stamp: AtomicU64::new(0),
            inflight: AtomicU32::new(0),
        }
    }

    /// Whether the endpoint is in its failure backoff.
    pub fn is_down(&self, now: u64) -> bool {
        self.down_until.load(Ordering::Relaxed) > now
    }

    /// Records a failed connect; returns how long the endpoint is now skipped.
    pub fn failed(&self, now: u64) -> Duration {
        let n = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let wait = backoff(n);
        let until = now.saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
        self.down_until.store(until, Ordering::Relaxed);
        wait
    }

    /// Records an answer: the failure streak ends.
    pub fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.down_until.store(0, Ordering::Relaxed);
        }
    }

    /// Consecutive failures (for `/routes`).
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The latency estimate decayed to `now`.
    fn rtt_at(&self, now: u64) -> f64 {
        let rtt = f64::from_bits(self.rtt.load(Ordering::Relaxed));
        let stamp = self.rtt_stamp.load(Ordering::Relaxed);
        let age = now.saturating_sub(stamp) as f64;
        // Decays towards the default, so that a once-slow endpoint is tried again.
        let w = (-age / EWMA_DECAY_NS).exp();
        rtt * w + EWMA_DEFAULT_NS * (1.0 - w)
    }

    /// Peak-EWMA cost: expected latency times the queue a new request would join.
    pub fn cost(&self, now: u64) -> f64 {
        self.rtt_at(now) * f64::from(self.inflight.load(Ordering::Relaxed) + 1)
    }

    /// Feeds one measured time to response head. A latency above the estimate replaces it
    /// at once (the "peak"); lower ones are averaged in.
    pub fn observe(&self, rtt: Duration, now: u64) {
        let sample = rtt.as_nanos() as f64;
        let current = self.rtt_at(now);
        let stamp = self.rtt_stamp.load(Ordering::Relaxed);
        let next = if sample > current {
            sample
        } else {
            let w = (-(now.saturating_sub(stamp) as f64) / EWMA_DECAY_NS).exp();
            current * w + sample * (1.0 - w)
        };
        self.rtt.store(next.to_bits(), Ordering::Relaxed);
        self.rtt_stamp.store(now, Ordering::Relaxed);
    }

    /// Counts a request in flight until the guard drops.
    pub fn start(&self) -> InFlight<'_> {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }
}

pub struct InFlight<'a>(&'a EndpointState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whatever the data plane keeps per endpoint, as long as it carries the endpoint's state.
pub trait Tracked {
    fn state(&self) -> &EndpointState;
}

impl Tracked for EndpointState {
    fn state(&self) -> &EndpointState {
        self
    }
}

impl<T: Tracked> Tracked for Arc<T> {
    fn state(&self) -> &EndpointState {
        (**self).state()
    }
}

/// A per-backend round-robin cursor, kept across Configs for the same Service port.
#[derive(Default)]
pub struct RoundRobin(AtomicUsize);

impl RoundRobin {
    pub fn next(&self) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

impl std::fmt::Debug for RoundRobin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoundRobin")
    }
}

/// Picks one of `states` that is not in `tried`, preferring endpoints outside their failure
/// backoff (when every untried endpoint is backing off, they are tried anyway: better a
/// likely failure than a certain one). `None` when every endpoint was tried.
pub fn pick(
    algorithm: Algorithm,
    states: &[impl Tracked],
    tried: &[usize],
    cursor: &RoundRobin,
    now: u64,
    rand: &mut impl FnMut() -> u64,
) -> Option<usize> {
    let n = states.len();
    if tried.len() >= n {
        return None;
    }
    for healthy_only in [true, false] {
        let usable = |i: usize| !(tried.contains(&i) || healthy_only && states[i].state().is_down(now));
        let found = match algorithm {
            Algorithm::RoundRobin => {
                let start = cursor.next();
                (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
            }
            Algorithm::Ewma => two_choices(states, usable, now, rand),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Draws of a random endpoint before [`two_choices`] falls back to counting the usable ones.
const DRAWS: usize = 8;

/// Power of two choices over the usable endpoints: the cheaper of two distinct random ones.
/// Each is drawn at random until usable (uniform over the usable endpoints, O(1) while most
/// are usable, whatever their number); only when `DRAWS` draws find none are the usable
/// endpoints counted.
fn two_choices(
    states: &[impl Tracked],
    usable: impl Fn(usize) -> bool,
    now: u64,
    rand: &mut impl FnMut() -> u64,
) -> Option<usize> {
    let n = states.len();
    let cheaper = |a: usize, b: usize| {
        if states[b].state().cost(now) < states[a].state().cost(now) {
            b
        } else {
            a
        }
    };
    if n == 0 {
        return None;
    }
    let mut draw = |other: Option<usize>| {
        (0..DRAWS).find_map(|_| {
            let i = (rand() % n as u64) as usize;
            (other != Some(i) && usable(i)).then_some(i)
        })
    };
    if let Some(a) = draw(None)
        && let Some(b) = draw(Some(a))
    {
        return Some(cheaper(a, b));
    }
    // Few usable endpoints: count them.
    let m = (0..n).filter(|&i| usable(i)).count();
    let nth = |k: usize| (0..n).filter(|&i| usable(i)).nth(k);
    match m {
        0 => None,
        1 => nth(0),
        m => {
            let r = rand();
            let a = (r % m as u64) as usize;
            let mut b = ((r >> 32) % (m as u64 - 1)) as usize;
            if b >= a {
                b += 1;
            }
            Some(cheaper(nth(a)?, nth(b)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(n: usize) -> Vec<EndpointState> {
        (0..n)
            .map(|i| EndpointState::new(SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 80))))
            .collect()
    }

    fn xorshift() -> impl FnMut() -> u64 {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn two_choices_spreads_over_usable_endpoints_only() {
        let s = states(1000);
        let mut rand = xorshift();
        let cursor = RoundRobin::default();
        let mut seen = vec![0u32; s.len()];
        for _ in 0..20_000 {
            let i = pick(Algorithm::Ewma, &s, &[], &cursor, 0, &mut rand).unwrap();
            seen[i] += 1;
        }
        assert!(
            seen.iter().filter(|&&c| c > 0).count() > 990,
            "most endpoints are chosen"
        );
        // Only two usable (the rest failing or tried): the draws give up and count.
        for (i, st) in s.iter().enumerate() {
            if i != 7 && i != 500 && i != 999 {
                st.failed(0);
            }
        }
        let tried = [999];
        let mut seen = [0u32; 2];
        for _ in 0..1000 {
            match pick(Algorithm::Ewma, &s, &tried, &cursor, 1, &mut rand) {
                Some(7) => seen[0] += 1,
                Some(500) => seen[1] += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(seen.iter().all(|&c| c > 0), "{seen:?}");
        // One usable: always it; none untried: None.
        assert_eq!(pick(Algorithm::Ewma, &s, &[7, 999], &cursor, 1, &mut rand), Some(500));
        assert_eq!(pick(Algorithm::Ewma, &s[..1], &[], &cursor, 1, &mut rand), Some(0));
        assert_eq!(pick(Algorithm::Ewma, &s[..1], &[0], &cursor, 1, &mut rand), None);
        // Every untried endpoint failing: tried anyway.
        let all: Vec<usize> = (0..1000).filter(|&i| i != 3).collect();
        assert_eq!(pick(Algorithm::Ewma, &s, &all, &cursor, 1, &mut rand), Some(3));
    }

    #[test]
    fn two_choices_prefers_the_cheaper_of_two() {
        let s = states(2);
        s[1].observe(Duration::from_secs(1), 0);
        let mut rand = xorshift();
        let cursor = RoundRobin::default();
        for _ in 0..100 {
            assert_eq!(pick(Algorithm::Ewma, &s, &[], &cursor, 0, &mut rand), Some(0));
        }
    }
}
