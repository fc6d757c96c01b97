//! Deadlines that move with every request but seldom expire, such as a connection's head
//! timeout: one timer per connection, set again only when it fires before the deadline it
//! guards, instead of a timer made, registered and dropped for each request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// `from + wait`, or a deadline decades away when the clock cannot hold that sum. Settings
/// are bounded where they are read; this keeps one that is not from panicking on the
/// request path.
pub fn after(from: Instant, wait: Duration) -> Instant {
    from.checked_add(wait).or_else(|| from.checked_add(FAR)).unwrap_or(from)
}

/// As far off as tokio's own `sleep` goes for a wait too long to add: about 30 years.
const FAR: Duration = Duration::from_secs(30 * 365 * 86400);

pub struct Deadline {
    at: Instant,
    /// Made at the first wait.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    pub fn new(at: Instant) -> Deadline {
        Deadline { at, timer: None }
    }

    pub fn set(&mut self, at: Instant) {
        self.at = at;
    }

    /// Ready once the deadline has passed; else Pending, with the task woken by then.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let at = self.at;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() > at {
            timer.as_mut().reset(at);
        }
        // A timer still set for an earlier deadline fires early and is set again: one timer
        // update per period rather than one per request.
        while timer.as_mut().poll(cx).is_ready() {
            if timer.deadline() >= at {
                return Poll::Ready(());
            }
            timer.as_mut().reset(at);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Waits for `d` to expire; returns how long that took in (paused) tokio time.
    async fn expiry(d: &mut Deadline, start: Instant) -> Duration {
        std::future::poll_fn(|cx| d.poll_expired(cx)).await;
        start.elapsed()
    }

    fn poll_once(d: &mut Deadline) -> Poll<()> {
        d.poll_expired(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[tokio::test(start_paused = true)]
    async fn expires_at_its_time_and_not_before() {
        let start = Instant::now();
        let mut d = Deadline::new(start + Duration::from_secs(1));
        assert!(poll_once(&mut d).is_pending());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(poll_once(&mut d).is_pending());
        assert_eq!(expiry(&mut d, start).await, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_keeps_the_timer_and_is_not_cut_short() {
        let start = Instant::now();
        let mut d = Deadline::new(start + Duration::from_secs(1));
        assert!(poll_once(&mut d).is_pending());
        // Moved on (a request was served): the timer set for 1 s fires and is set again.
        d.set(start + Duration::from_secs(3));
        assert_eq!(expiry(&mut d, start).await, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_resets_the_timer() {
        let start = Instant::now();
        let mut d = Deadline::new(start + Duration::from_secs(5));
        assert!(poll_once(&mut d).is_pending());
        d.set(start + Duration::from_secs(1));
        assert_eq!(expiry(&mut d, start).await, Duration::from_secs(1));
    }

    #[test]
    fn deadlines_past_the_clock_are_far_not_a_panic() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::from_secs(5)), now + Duration::from_secs(5));
        assert_eq!(after(now, Duration::MAX), now + FAR);
        assert_eq!(after(now, Duration::from_secs(u64::MAX)), now + FAR);
    }
}
