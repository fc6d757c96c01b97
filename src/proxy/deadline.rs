//! Deadlines that move with every request but seldom expire, such as a connection's head
//! timeout: one timer per connection, set again only when it fires before the deadline it
//! guards, instead of a timer made, registered and dropped for each request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

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
