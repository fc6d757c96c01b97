//! Endpoint choice: round robin over a backend's ready endpoints, with distinct retries.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A per-backend round-robin cursor. It lives inside the compiled Backend, so a new
/// Config starts a new rotation; that is harmless and keeps the request path lock-free.
#[derive(Default)]
pub struct RoundRobin(AtomicUsize);

impl RoundRobin {
    /// The order in which up to `tries` distinct endpoints out of `n` are tried for one
    /// request: the next in rotation, then its successors.
    pub fn order(&self, n: usize, tries: usize) -> impl Iterator<Item = usize> + use<> {
        let start = if n == 0 {
            0
        } else {
            self.0.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..tries.min(n)).map(move |i| (start + i) % n)
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

/// Cursor state is not part of a backend's identity.
impl PartialEq for RoundRobin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for RoundRobin {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_and_distinct_retries() {
        let rr = RoundRobin::default();
        let firsts: Vec<usize> = (0..6).map(|_| rr.order(3, 3).next().unwrap()).collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
        let tries: Vec<usize> = rr.order(3, 3).collect();
        assert_eq!(tries, [0, 1, 2]);
        assert_eq!(rr.order(2, 3).count(), 2, "never the same endpoint twice");
        assert_eq!(rr.order(0, 3).count(), 0);
    }
}
