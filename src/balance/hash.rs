//! `upstream-hash-by`'s endpoint choice: a request key's place on the consistent-hash ring
//! of the backend's ready endpoints (built on first use and kept with the backend's table,
//! so it is rebuilt only when the endpoints change).

use std::sync::OnceLock;

use super::Tracked;
use super::choice::{Choice, Sticky};
use super::ring::{Ring, hash64};
use crate::config::Endpoint;

/// The ring of a backend's ready endpoints; nothing until a hashed route uses it.
#[derive(Default)]
pub struct HashIndex(OnceLock<Ring>);

impl std::fmt::Debug for HashIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashIndex")
    }
}

impl HashIndex {
    /// The ready endpoint for `key`: its owner on the ring, or when `usable` refuses that one
    /// (in its failure backoff), the next endpoint round the ring that `usable` takes, as
    /// if the refused ones were gone; the owner itself when none is usable.
    pub fn endpoint(&self, ready: &[Endpoint], key: &[u8], usable: impl Fn(usize) -> bool) -> Option<usize> {
        match ready.len() {
            0 => return None,
            1 => return Some(0),
            _ => {}
        }
        let ring = self.0.get_or_init(|| Ring::new(ready.iter().map(|e| e.addr)));
        let position = hash64(key);
        let found = ring.from(position).find(|&i| usable(i)).or_else(|| ring.at(position));
        // A table's ring is built from its own endpoints; the check only guards the index.
        found.filter(|&i| i < ready.len())
    }
}

impl<E: Tracked> Choice<'_, E> {
    /// Affinity by request key: the endpoint `key` maps to is the request's first try
    /// (retries go by the route's algorithm, as for a pinned session).
    pub fn hashed(&self, key: &[u8], now: u64) -> Sticky {
        let usable = |i: usize| self.state(i).is_some_and(|s| !s.state().is_down(now));
        let mut sticky = Sticky::default();
        sticky.index = self.table.hash.endpoint(self.ready, key, usable);
        sticky
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn ready(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint {
                addr: SocketAddr::from(([10, 2, 0, i as u8], 80)),
                target: None,
                zone: None,
            })
            .collect()
    }

    #[test]
    fn the_same_key_goes_to_the_same_endpoint_and_keys_spread() {
        let eps = ready(4);
        let index = HashIndex::default();
        let mut seen = [0u32; 4];
        for k in 0..4000 {
            let key = format!("/user/{k}");
            let i = index.endpoint(&eps, key.as_bytes(), |_| true).unwrap();
            assert_eq!(index.endpoint(&eps, key.as_bytes(), |_| true), Some(i));
            seen[i] += 1;
        }
        assert!(seen.iter().all(|&c| (700..=1300).contains(&c)), "{seen:?}");
    }

    #[test]
    fn a_failing_endpoint_sends_its_keys_where_its_removal_would() {
        let eps = ready(5);
        let index = HashIndex::default();
        let without: Vec<Endpoint> = eps.iter().filter(|e| e.addr != eps[2].addr).cloned().collect();
        let smaller = HashIndex::default();
        for k in 0..2000 {
            let key = format!("k{k}");
            let i = index.endpoint(&eps, key.as_bytes(), |i| i != 2).unwrap();
            assert_ne!(i, 2);
            let j = smaller.endpoint(&without, key.as_bytes(), |_| true).unwrap();
            assert_eq!(eps[i].addr, without[j].addr);
        }
        // None usable: the owner anyway.
        assert!(index.endpoint(&eps, b"x", |_| false).is_some());
    }

    #[test]
    fn no_or_one_endpoint_needs_no_ring() {
        let index = HashIndex::default();
        assert_eq!(index.endpoint(&[], b"k", |_| true), None);
        assert_eq!(index.endpoint(&ready(1), b"k", |_| false), Some(0));
        assert!(index.0.get().is_none());
    }
}
