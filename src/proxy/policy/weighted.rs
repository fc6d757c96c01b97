//! The weighted-backends step: which of a Gateway API rule's weighted backends serves a
//! request, in proportion to the weights.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use crate::config::Route;
use crate::config::route::{Pick, Weighted};

/// `None` for a route without weighted backends (every Ingress route): it serves itself.
/// Else the pick for the next number of `sequence`: a backend's route, or
/// [`Pick::Refused`] (the share of an invalid backend, or all weights 0), which the handler
/// answers 500.
#[inline(always)]
pub fn check(route: &Route, sequence: impl FnOnce() -> u64) -> Option<Pick<'_>> {
    route.weighted.as_ref().map(|w| pick(w, sequence))
}

#[inline(never)]
fn pick(w: &Weighted, sequence: impl FnOnce() -> u64) -> Pick<'_> {
    w.pick(sequence())
}

/// The route a pick serves with, when it has one.
pub fn chosen<'p>(pick: &Pick<'p>) -> Option<&'p Arc<Route>> {
    match pick {
        Pick::Route(r) => Some(r),
        Pick::Refused => None,
    }
}

thread_local! {
    /// Where this thread's sequence is: started at a random point, so that threads and
    /// replicas do not pick in step.
    static STEP: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().build_hasher().finish());
}

/// The numbers weighted picks are made with: n·2^64/φ (mod 2^64) for successive n of the
/// thread, a Weyl sequence. Its points spread evenly over [0, 2^64) at every length, so a
/// route's requests reach each backend in proportion to its weight within a few requests,
/// where random numbers only get there on average (500 requests at 70/30 stray more than
/// 5 points about once in 70 runs).
pub fn next() -> u64 {
    STEP.with(|s| {
        let n = s.get().wrapping_add(1);
        s.set(n);
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_divides_any_run_in_proportion() {
        // The shares of a 70/30 split over 500 successive numbers, from anywhere.
        for skip in [0, 1, 17, 1000] {
            for _ in 0..skip {
                next();
            }
            let first = (0..500).filter(|_| next() < (u64::MAX / 10) * 7).count();
            assert!((347..=353).contains(&first), "{first} of 500 at skip {skip}");
        }
    }
}
