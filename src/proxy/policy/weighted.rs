//! The weighted-backends step: which of a Gateway API rule's weighted backends serves a
//! request, in proportion to the weights.

use std::sync::Arc;

use crate::config::Route;
use crate::config::route::Pick;

/// `None` for a route without weighted backends (every Ingress route): it serves itself.
/// Else the pick for a random number: a backend's route, or [`Pick::Refused`] (the share of
/// an invalid backend, or all weights 0), which the handler answers 500.
#[inline(always)]
pub fn check(route: &Route, rand: impl FnOnce() -> u64) -> Option<Pick<'_>> {
    route.weighted.as_ref().map(|w| pick(w, rand))
}

#[inline(never)]
fn pick(w: &crate::config::route::Weighted, rand: impl FnOnce() -> u64) -> Pick<'_> {
    w.pick(rand())
}

/// The route a pick serves with, when it has one.
pub fn chosen<'p>(pick: &Pick<'p>) -> Option<&'p Arc<Route>> {
    match pick {
        Pick::Route(r) => Some(r),
        Pick::Refused => None,
    }
}
