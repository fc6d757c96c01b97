//! HTTP/2 streams run inside their connection's task instead of a task each.
//!
//! hyper hands every new HTTP/2 stream (the request's service future and the sending of its
//! response) to the server's executor. With tokio's executor that is a task per request: a
//! 128-byte-aligned allocation, the future moved into it, a place in the runtime's list of
//! owned tasks (under its lock), a wake-up through the scheduler, and the same undone when
//! it ends. [`StreamExec`] instead puts a stream spawned while its connection is being
//! polled into that connection's own set ([`Local`]), which the connection's future
//! ([`super::listener::Watched`]) polls right after: one allocation, no scheduler round
//! trip, and the stream's response is written by the connection's next poll within the
//! same turn of the event loop.
//!
//! A connection's streams therefore share its worker thread, as its TLS and frame I/O
//! already do (and as nginx and HAProxy serve a connection on one thread). Anything
//! spawned outside a connection's poll, or of another type than the streams already in the
//! set (hyper's CONNECT tunnels, spawned by a stream), goes to tokio as before.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};

/// The executor of the HTTP/1.1 + HTTP/2 server (see the module's comment).
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamExec;

/// A connection's streams, of the one future type hyper gives them.
trait Set: Send {
    /// Polls the streams that were woken; Ready once none is left.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    fn len(&self) -> usize;
    fn any(&mut self) -> &mut dyn Any;
}

struct Streams<F>(FuturesUnordered<F>);

impl<F: Future<Output = ()> + Send + 'static> Set for Streams<F> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // FuturesUnordered yields (waking the task) after a bounded number of polls, so a
        // connection with many ready streams does not hold the thread.
        loop {
            match self.0.poll_next_unpin(cx) {
                Poll::Ready(Some(())) => {}
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn any(&mut self) -> &mut dyn Any {
        self
    }
}

thread_local! {
    /// While a connection is polled ([`Local::collect`]): Some, holding its set.
    static CURRENT: RefCell<Option<Option<Box<dyn Set>>>> = const { RefCell::new(None) };
}

/// The streams of one connection.
#[derive(Default)]
pub struct Local {
    set: Option<Box<dyn Set>>,
}

impl Local {
    /// Runs `f` (a poll of the connection) with the streams it spawns landing in this set.
    pub fn collect<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let previous = CURRENT.with(|c| c.replace(Some(self.set.take())));
        // Puts the set back even if `f` panics (tokio catches a task's panic and the thread
        // goes on serving other connections).
        struct Restore<'a> {
            local: &'a mut Local,
            previous: Option<Option<Box<dyn Set>>>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                let mine = CURRENT.with(|c| c.replace(self.previous.take()));
                self.local.set = mine.flatten();
            }
        }
        let _restore = Restore { local: self, previous };
        f()
    }

    /// Polls the streams that were woken (and those just spawned); Ready when none is left.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.set {
            None => Poll::Ready(()),
            Some(set) => set.poll(cx),
        }
    }

    /// How many streams are in the set.
    pub fn len(&self) -> usize {
        self.set.as_ref().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let outside = CURRENT.with(|c| {
            let Ok(mut current) = c.try_borrow_mut() else {
                return Some(fut);
            };
            let Some(set) = current.as_mut() else {
                return Some(fut);
            };
            match set {
                None => {
                    let streams = FuturesUnordered::new();
                    streams.push(fut);
                    *set = Some(Box::new(Streams(streams)));
                    None
                }
                Some(set) => match set.any().downcast_mut::<Streams<F>>() {
                    Some(streams) => {
                        streams.0.push(fut);
                        None
                    }
                    None => Some(fut),
                },
            }
        });
        if let Some(fut) = outside {
            tokio::spawn(fut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn spawned_in_a_poll_run_in_the_set_and_others_on_tokio() {
        let ran = Arc::new(AtomicUsize::new(0));
        let mut local = Local::default();
        let counted = |n: usize| {
            let ran = ran.clone();
            async move {
                tokio::task::yield_now().await;
                ran.fetch_add(n, Ordering::SeqCst);
            }
        };
        // Two of one type into the set; another type (a different closure) goes to tokio.
        let mut other = Some(async {});
        local.collect(|| {
            StreamExec.execute(counted(1));
            StreamExec.execute(counted(10));
            StreamExec.execute(other.take().unwrap_or_else(|| unreachable!()));
        });
        assert_eq!(local.len(), 2);
        // Outside a poll: tokio.
        let (tx, rx) = tokio::sync::oneshot::channel();
        StreamExec.execute(async move {
            let _ = tx.send(());
        });
        rx.await.unwrap();
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "the set's streams run only when it is polled"
        );
        std::future::poll_fn(|cx| local.poll(cx)).await;
        assert_eq!(ran.load(Ordering::SeqCst), 11);
        assert!(local.is_empty());
    }

    #[test]
    fn the_set_is_put_back_after_a_panic() {
        let mut local = Local::default();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            local.collect(|| {
                StreamExec.execute(async {});
                panic!("a connection's poll panicked");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(local.len(), 1);
        assert!(CURRENT.with(|c| c.borrow().is_none()), "nothing is left collecting");
    }
}
