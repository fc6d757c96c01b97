//! `limit-rate` and `limit-rate-after`: a response body sent at the route's pace, piece by
//! piece, with a timer between pieces (and no more than one upstream frame held meanwhile).
//!
//! As nginx's `limit_rate` counts from the request's start, the pace counts from the body's:
//! by any time `t` after it, at most `after + rate × t` bytes (plus the piece under way) have
//! gone. Waiting reads nothing more from the upstream, which then waits on its socket, as it
//! would for a slow client.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use hyper::body::{Frame, SizeHint};
use tokio::time::Instant;

use crate::config::Policy;
use crate::config::rate::ResponseRate;
use crate::proxy::Body;
use crate::proxy::deadline::{self, Deadline};

/// Paces the response when the route asks (one test when it does not).
#[inline(always)]
pub fn pace(policy: &Policy, resp: &mut Response<Body>) {
    if let Some(rate) = policy.rate {
        resp.body_mut().pace(rate);
    }
}

/// The smallest and largest piece sent at once: a 16th of a second's worth in between, so the
/// pace is smooth without a timer per few bytes.
const PIECE: (u64, u64) = (512, 64 * 1024);

/// A body's pacing state.
pub struct Throttle {
    rate: ResponseRate,
    /// Bytes sent so far.
    sent: u64,
    /// The body's first poll.
    start: Option<Instant>,
    /// What is left of the frame being sent; nothing more is read until it is out.
    held: Bytes,
    /// The timer until the next piece may go, made at the first wait.
    wait: Option<Deadline>,
}

impl Throttle {
    pub fn new(rate: ResponseRate) -> Throttle {
        Throttle {
            rate,
            sent: 0,
            start: None,
            held: Bytes::new(),
            wait: None,
        }
    }

    /// The next frame of the body that `next` polls, when its time has come.
    pub fn poll_frame<E>(
        &mut self,
        cx: &mut Context<'_>,
        mut next: impl FnMut(&mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, E>>>,
    ) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        let start = *self.start.get_or_insert_with(Instant::now);
        while self.held.is_empty() {
            match next(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.held = data,
                    // Trailers: nothing to pace.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return other,
            }
        }
        let ResponseRate {
            bytes_per_second,
            after,
        } = self.rate;
        let n = match after.checked_sub(self.sent).filter(|free| *free > 0) {
            // Up to `after`, as fast as the client takes it.
            Some(free) => free,
            None => {
                let due = deadline::after(start, time_for(self.sent - after, bytes_per_second));
                if Instant::now() < due {
                    let wait = self.wait.get_or_insert_with(|| Deadline::new(due));
                    wait.set(due);
                    if wait.poll_expired(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                (bytes_per_second / 16).clamp(PIECE.0, PIECE.1)
            }
        };
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(self.held.len());
        self.sent = self.sent.saturating_add(n as u64);
        Poll::Ready(Some(Ok(Frame::data(self.held.split_to(n)))))
    }

    /// Whether the body is done, given whether the paced one is.
    pub fn is_end_stream(&self, inner: bool) -> bool {
        inner && self.held.is_empty()
    }

    /// The paced body's size hint with the bytes held added.
    pub fn size_hint(&self, inner: SizeHint) -> SizeHint {
        let held = self.held.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(held));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

/// How long `bytes` take at `rate` bytes per second (`rate` above 0).
fn time_for(bytes: u64, rate: u64) -> Duration {
    let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use http::HeaderMap;

    use super::*;

    /// Sends `frames` through a throttle at `rate`; what came out, piece by piece, with the
    /// (paused) time each piece came at.
    async fn run(rate: ResponseRate, frames: Vec<Frame<Bytes>>) -> Vec<(Duration, Frame<Bytes>)> {
        let mut frames = VecDeque::from(frames);
        let mut t = Throttle::new(rate);
        let start = Instant::now();
        let mut out = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| t.poll_frame(cx, |_| Poll::Ready(frames.pop_front().map(Ok::<_, Infallible>))))
                .await
        {
            out.push((start.elapsed(), frame.unwrap()));
        }
        assert!(t.is_end_stream(true));
        out
    }

    fn data(out: &[(Duration, Frame<Bytes>)]) -> Vec<u8> {
        out.iter()
            .filter_map(|(_, f)| f.data_ref())
            .flatten()
            .copied()
            .collect()
    }

    /// Timers fire on whole milliseconds: `got` is `want` rounded up to one.
    fn at_about(got: Duration, want: Duration) {
        assert!(
            got >= want && got <= want + Duration::from_millis(1),
            "{got:?}, not {want:?}"
        );
    }

    fn kib(n: usize) -> Frame<Bytes> {
        Frame::data(Bytes::from((0..n * 1024).map(|i| (i % 251) as u8).collect::<Vec<_>>()))
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_free_part_the_rate_holds() {
        let rate = ResponseRate::new(16 * 1024, 8 * 1024).unwrap();
        let out = run(rate, vec![kib(64)]).await;
        assert_eq!(data(&out), data(&[(Duration::ZERO, kib(64))]), "intact");
        // The first 8 KiB at once; then 1 KiB pieces (a 16th of the rate), 1/16 s apart.
        assert_eq!(out[0].1.data_ref().unwrap().len(), 8 * 1024);
        assert_eq!(out[0].0, Duration::ZERO);
        assert!(out[1..].iter().all(|(_, f)| f.data_ref().unwrap().len() == 1024));
        // 56 KiB at 16 KiB/s: the last piece goes when 55 KiB have had their time.
        at_about(out.last().unwrap().0, time_for(55 * 1024, 16 * 1024));
        // Never ahead of the pace: by each piece's time, at most after + rate × t had gone.
        let mut sent = 0u64;
        for (at, f) in &out {
            let allowed = 8 * 1024 + (16 * 1024 * at.as_nanos() / 1_000_000_000) as u64;
            assert!(sent <= allowed, "{sent} bytes sent before {at:?}");
            sent += f.data_ref().unwrap().len() as u64;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn small_frames_trailers_and_no_free_part() {
        let rate = ResponseRate::new(1024, 0).unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames = vec![
            Frame::data(Bytes::from_static(b"abc")),
            Frame::data(Bytes::new()),
            Frame::data(Bytes::from(vec![b'x'; 1500])),
            Frame::trailers(trailers.clone()),
        ];
        let out = run(rate, frames).await;
        let body = data(&out);
        assert_eq!(&body[..3], b"abc");
        assert_eq!(body.len(), 1503);
        assert_eq!(out.last().unwrap().1.trailers_ref(), Some(&trailers), "trailers last");
        // 512-byte pieces at 1 KiB/s after the first three bytes.
        let times: Vec<Duration> = out.iter().map(|(t, _)| *t).collect();
        assert_eq!(times[0], Duration::ZERO);
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        at_about(times[times.len() - 2], time_for(3 + 2 * 512, 1024));
    }

    #[test]
    fn times_do_not_overflow() {
        assert_eq!(time_for(1024, 1024), Duration::from_secs(1));
        assert_eq!(time_for(u64::MAX, 1), Duration::from_nanos(u64::MAX));
        assert_eq!(time_for(5, 0), Duration::from_secs(5), "0 counts as 1");
    }
}
