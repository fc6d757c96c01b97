//! `keep-alive-requests`: how many requests one client connection serves before Portico
//! closes it (HTTP/1: `Connection: close` on the last response; HTTP/2: GOAWAY once the last
//! stream has come in, the streams in flight still finish).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use http::{HeaderValue, Response, Version, header};
use tokio::sync::Notify;

/// The requests a connection has left, and the signal its serving task closes it on.
pub struct Budget {
    left: AtomicU32,
    /// The last request has come in (what `spent` announces, read without polling it).
    done: AtomicBool,
    spent: Arc<Notify>,
}

impl Budget {
    /// `None` without a limit: the connection serves requests until it idles out or closes.
    pub fn new(max: Option<u32>) -> Option<Arc<Budget>> {
        max.map(|max| {
            Arc::new(Budget {
                left: AtomicU32::new(max),
                done: AtomicBool::new(false),
                spent: Arc::new(Notify::new()),
            })
        })
    }

    /// Notified once the last request has come in: the connection is to shut down gracefully.
    pub fn spent(&self) -> Arc<Notify> {
        self.spent.clone()
    }

    /// Whether the last request has come in: one load, for the connection's every poll.
    pub fn is_spent(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    /// Takes one request; true when it was the last.
    fn take(&self) -> bool {
        let last = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            == Ok(1);
        if last {
            self.done.store(true, Ordering::Relaxed);
            self.spent.notify_one();
        }
        last
    }
}

/// Whether the request that just came in on a connection under `budget` is its last HTTP/1
/// one, whose response then says `Connection: close` (HTTP/2 closes with GOAWAY instead).
/// Decided as the request arrives, so requests are counted in the order they came.
#[inline(always)]
pub fn last(budget: &Option<Arc<Budget>>, version: Version) -> bool {
    budget.as_ref().is_some_and(|b| b.take()) && version < Version::HTTP_2
}

/// Marks the last response of a connection; an upgraded connection (101) is the upgrade's
/// from now on.
#[inline]
pub fn close<B>(resp: &mut Response<B>) {
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_down_to_the_last_request_once() {
        let b = Budget::new(Some(3)).unwrap();
        assert_eq!([b.take(), b.take(), b.is_spent()], [false, false, false]);
        assert_eq!(
            [b.take(), b.is_spent(), b.take(), b.is_spent()],
            [true, true, false, true]
        );
        assert!(Budget::new(None).is_none());
    }
}
