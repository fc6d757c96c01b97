//! Endpoint choice. Per-endpoint state (passive health, peak-EWMA latency, requests in
//! flight, idle upstream connections) lives in [`EndpointState`], interned by address in a
//! [`Registry`] so that every Config names the same state for the same endpoint: a new
//! Config neither forgets that an endpoint is failing nor drops its pooled connections.
//! On top of that: round robin, peak-EWMA with power of two choices, and affinity
//! ([`affinity`]).

pub mod affinity;
pub mod choice;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::compile::backend::Endpoint;
use crate::model::ObjectKey;
use crate::proxy::upstream::IdlePool;

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
    /// Kept-alive upstream connections to this endpoint, allocated on first use: at scale
    /// most endpoints are never dialled by a given replica.
    idle: std::sync::OnceLock<Box<IdlePool>>,
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
            idle: std::sync::OnceLock::new(),
        }
    }

    /// The endpoint's upstream connections.
    pub fn idle(&self) -> &IdlePool {
        self.idle.get_or_init(Box::default)
    }

    /// The endpoint's upstream connections, if it ever had any.
    pub fn idle_if_used(&self) -> Option<&IdlePool> {
        self.idle.get().map(|b| &**b)
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
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

pub struct InFlight(Arc<EndpointState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An endpoint's state as a field of compiled values: compares equal to any other, so that
/// Configs compare by what compile() decided, not by runtime counters.
#[derive(Clone)]
pub struct Shared(pub Arc<EndpointState>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
/// Runtime state carried inside compiled values is not part of what compile() decided:
/// such fields compare equal whatever they hold.
macro_rules! runtime_state {
    ($($t:ty),*) => {$(
        impl PartialEq for $t {
            fn eq(&self, _: &Self) -> bool {
                true
            }
        }
        impl Eq for $t {}
    )*};
}
runtime_state!(Shared, RoundRobin, affinity::AffinityIndex, affinity::ClientIpTable);
impl Serialize for Shared {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0.failures())
    }
}

/// Interns runtime state by identity, so successive Configs share it. Entries die with the
/// last Config that names them.
#[derive(Default)]
pub struct Registry {
    endpoints: Mutex<HashMap<SocketAddr, Weak<EndpointState>>>,
    client_ip: Mutex<HashMap<ObjectKey, Weak<affinity::ClientIpTable>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// The state of the endpoint at `addr`, created on first use.
    pub fn endpoint(&self, addr: SocketAddr) -> Arc<EndpointState> {
        let mut map = lock(&self.endpoints);
        if let Some(s) = map.get(&addr).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(EndpointState::new(addr));
        map.insert(addr, Arc::downgrade(&s));
        s
    }

    /// The ClientIP affinity table of a Service, created on first use.
    pub fn client_ip_table(&self, service: &ObjectKey) -> Arc<affinity::ClientIpTable> {
        let mut map = lock(&self.client_ip);
        if let Some(t) = map.get(service).and_then(Weak::upgrade) {
            return t;
        }
        let t = Arc::new(affinity::ClientIpTable::default());
        map.insert(service.clone(), Arc::downgrade(&t));
        t
    }

    /// Forgets dead entries and returns the live endpoint states (for idle-connection reaping).
    pub fn sweep(&self) -> Vec<Arc<EndpointState>> {
        lock(&self.client_ip).retain(|_, w| w.strong_count() > 0);
        let mut map = lock(&self.endpoints);
        map.retain(|_, w| w.strong_count() > 0);
        map.values().filter_map(Weak::upgrade).collect()
    }
}

/// Endpoint choice among a backend's ready endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    RoundRobin,
    /// Peak-EWMA latency × in-flight requests, lower of two random endpoints.
    Ewma,
}

/// A per-backend round-robin cursor. It lives inside the compiled Backend, so a new
/// Config starts a new rotation; that is harmless and keeps the request path lock-free.
#[derive(Default)]
pub struct RoundRobin(AtomicUsize);

impl RoundRobin {
    pub fn next(&self) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

impl Clone for RoundRobin {
    fn clone(&self) -> Self {
        Self::default()
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
    states: &[Endpoint],
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
        let usable = |i: usize| !(tried.contains(&i) || healthy_only && states[i].state.0.is_down(now));
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

/// Power of two choices over the usable endpoints: the cheaper of two distinct random ones.
fn two_choices(
    states: &[Endpoint],
    usable: impl Fn(usize) -> bool,
    now: u64,
    rand: &mut impl FnMut() -> u64,
) -> Option<usize> {
    let m = (0..states.len()).filter(|&i| usable(i)).count();
    let nth = |k: usize| (0..states.len()).filter(|&i| usable(i)).nth(k);
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
            let (a, b) = (nth(a)?, nth(b)?);
            Some(if states[b].state.0.cost(now) < states[a].state.0.cost(now) {
                b
            } else {
                a
            })
        }
    }
}
