//! `keep-alive-requests`: how many requests one client connection serves before Portico
//! closes it (HTTP/1: `Connection: close` on the last response; HTTP/2: GOAWAY once the last
//! stream has come in, the streams in flight still finish).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures_util::future::Either;
use http::{HeaderValue, Response, Version, header};
use tokio::sync::Notify;

/// The requests a connection has left, and the signal its serving task closes it on.
pub struct Budget {
    left: AtomicU32,
    spent: Arc<Notify>,
}

impl Budget {
    /// `None` without a limit: the connection serves requests until it idles out or closes.
    pub fn new(max: Option<u32>) -> Option<Arc<Budget>> {
        max.map(|max| {
            Arc::new(Budget {
                left: AtomicU32::new(max),
                spent: Arc::new(Notify::new()),
            })
        })
    }

    /// Notified once the last request has come in: the connection is to shut down gracefully.
    pub fn spent(&self) -> Arc<Notify> {
        self.spent.clone()
    }

    /// Takes one request; true when it was the last.
    fn take(&self) -> bool {
        let last = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            == Ok(1);
        if last {
            self.spent.notify_one();
        }
        last
    }
}

/// The future of a connection's request under a budget.
pub type Last<B> = Pin<Box<dyn Future<Output = Result<Response<B>, Infallible>> + Send>>;

/// Serves one request with `serve` under the connection's budget: without one, `serve`'s
/// own future, untouched.
#[inline(always)]
pub fn counted<B, F>(budget: &Option<Arc<Budget>>, version: Version, serve: F) -> Either<F, Last<B>>
where
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: 'static,
{
    match budget {
        None => Either::Left(serve),
        // Boxed: inline, the Either would be as large as `serve` twice, and every request's
        // future is moved whole into hyper's connection.
        Some(b) => Either::Right(Box::pin(last(b.take() && version < Version::HTTP_2, serve))),
    }
}

/// The response of the connection's last HTTP/1 request says `Connection: close`.
async fn last<B, F>(close: bool, serve: F) -> Result<Response<B>, Infallible>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    let mut resp = serve.await?;
    // An upgraded connection (101) is the upgrade's from now on.
    if close && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_down_to_the_last_request_once() {
        let b = Budget::new(Some(3)).unwrap();
        assert_eq!([b.take(), b.take(), b.take(), b.take()], [false, false, true, false]);
        assert!(Budget::new(None).is_none());
    }
}
