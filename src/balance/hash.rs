//! `upstream-hash-by`'s endpoint choice: a request key's place on the consistent-hash ring
//! of the backend's ready endpoints (built on first use and kept with the backend's table,
//! so it is rebuilt only when the endpoints change).

use std::sync::OnceLock;

use super::Tracked;
use super::choice::{Choice, Sticky};
use super::ring::{Ring, hash64};
use crate::config::Endpoint;

/// The ring of a backend's ready endpoints (and of its subsets, for
/// `upstream-hash-by-subset`); nothing until a hashed route uses it.
#[derive(Default)]
pub struct HashIndex(OnceLock<Ring>, OnceLock<Subsets>);

/// `upstream-hash-by-subset`, as ingress-nginx's chashsubset balancer: the ready endpoints,
/// in address order, cut into subsets of `size` (the last one filled up from the first
/// endpoints), and a ring over the subsets' names; a key maps to a subset, and each of its
/// requests to a random endpoint of it.
struct Subsets {
    size: usize,
    ring: Ring,
    /// The endpoint indexes of each subset.
    members: Vec<Vec<usize>>,
}

impl Subsets {
    fn new(ready: &[Endpoint], size: usize) -> Self {
        let size = size.max(1);
        let mut order: Vec<usize> = (0..ready.len()).collect();
        order.sort_by_key(|&i| ready[i].addr);
        let count = ready.len().div_ceil(size);
        let members: Vec<Vec<usize>> = (0..count)
            .map(|s| (0..size).map(|k| order[(s * size + k) % order.len()]).collect())
            .collect();
        let ring = Ring::of((1..=count).map(|s| format!("set{s}")));
        Subsets { size, ring, members }
    }
}

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

impl HashIndex {
    /// `upstream-hash-by-subset`: an endpoint of the subset `key` maps to, drawn with `rand`
    /// among the members `usable` takes (among all members when it takes none).
    pub fn subset_endpoint(
        &self,
        ready: &[Endpoint],
        size: usize,
        key: &[u8],
        usable: impl Fn(usize) -> bool,
        rand: u64,
    ) -> Option<usize> {
        if ready.is_empty() {
            return None;
        }
        let subsets = self.1.get_or_init(|| Subsets::new(ready, size));
        // A table serves one route's size in practice; another size gets its own answer.
        let fresh;
        let subsets = if subsets.size == size.max(1) {
            subsets
        } else {
            fresh = Subsets::new(ready, size);
            &fresh
        };
        let members = subsets.members.get(subsets.ring.at(hash64(key))?)?;
        let up: Vec<usize> = members.iter().copied().filter(|&i| usable(i)).collect();
        let pool = if up.is_empty() { members } else { &up };
        pool.get((rand % pool.len() as u64) as usize).copied()
    }
}

impl<E: Tracked> Choice<'_, E> {
    /// Affinity by request key: the endpoint `key` maps to is the request's first try
    /// (retries go by the route's algorithm, as for a pinned session).
    /// With `subset`, a random endpoint of the key's subset of that size.
    pub fn hashed(&self, key: &[u8], subset: Option<u32>, now: u64, rand: u64) -> Sticky {
        let usable = |i: usize| self.state(i).is_some_and(|s| !s.state().is_down(now));
        let mut sticky = Sticky::default();
        sticky.index = match subset {
            None => self.table.hash.endpoint(self.ready, key, usable),
            Some(size) => self
                .table
                .hash
                .subset_endpoint(self.ready, size as usize, key, usable, rand),
        };
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
    fn subsets_hold_size_endpoints_and_a_key_stays_in_its_subset() {
        let eps = ready(7);
        let index = HashIndex::default();
        let mut subsets_seen = std::collections::HashSet::new();
        for k in 0..200 {
            let key = format!("k{k}");
            let mut members = std::collections::BTreeSet::new();
            for r in 0..60u64 {
                members.insert(index.subset_endpoint(&eps, 3, key.as_bytes(), |_| true, r).unwrap());
            }
            assert_eq!(members.len(), 3, "a key's requests spread over its subset of 3");
            subsets_seen.insert(members);
        }
        // 7 endpoints in subsets of 3: 3 subsets, the last filled up from the first.
        assert_eq!(subsets_seen.len(), 3, "{subsets_seen:?}");
        let covered: std::collections::BTreeSet<usize> = subsets_seen.iter().flatten().copied().collect();
        assert_eq!(covered.len(), 7);
        // A failing member is skipped while others of the subset are up.
        let k = b"k1";
        let first = index.subset_endpoint(&eps, 3, k, |_| true, 0).unwrap();
        for r in 0..30 {
            assert_ne!(index.subset_endpoint(&eps, 3, k, |i| i != first, r), Some(first));
        }
    }

    #[test]
    fn no_or_one_endpoint_needs_no_ring() {
        let index = HashIndex::default();
        assert_eq!(index.endpoint(&[], b"k", |_| true), None);
        assert_eq!(index.endpoint(&ready(1), b"k", |_| false), Some(0));
        assert!(index.0.get().is_none());
    }
}
