//! Whether a failed try goes on to another (`proxy-next-upstream` and its `-timeout`, a
//! Gateway rule's `retry`). Entry points: [`on_status`] (one test when the route retries on
//! no status), [`again`] and [`wait`]. A request that reached an endpoint is sent again only
//! when nginx would (idempotent, or `non_idempotent` listed) and when it has no body: Portico
//! streams bodies, so a body already read for one endpoint is gone.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::config::Policy;
use crate::config::retry::NextUpstream;

/// Why a try failed, in nginx's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Connecting failed: the request never reached the endpoint.
    Connect,
    /// Connecting timed out: the request never reached the endpoint.
    ConnectTimeout,
    /// The exchange failed before a response head.
    Exchange,
    /// No response head in time, or the upstream held the body back too long.
    Timeout,
    /// The answer was no HTTP response head.
    InvalidHead,
    /// The answer's status is one the route retries on.
    Status,
}

impl Failure {
    fn listed(self, n: &NextUpstream) -> bool {
        match self {
            Failure::Connect | Failure::Exchange => n.error,
            Failure::ConnectTimeout | Failure::Timeout => n.timeout,
            Failure::InvalidHead => n.invalid_header,
            Failure::Status => true,
        }
    }

    fn reached_endpoint(self) -> bool {
        !matches!(self, Failure::Connect | Failure::ConnectTimeout)
    }

    /// The status of Portico's own answer when no try succeeded.
    pub fn status(self) -> StatusCode {
        match self {
            Failure::ConnectTimeout | Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Whether a request that reached an endpoint may be sent to another: nginx's rule for
/// methods, and no body (a streamed body cannot be read twice).
pub fn resendable(policy: &Policy, method: &Method, has_body: bool) -> bool {
    !has_body && (policy.next_upstream.non_idempotent || super::super::upstream::is_idempotent(method))
}

/// Whether an answer with `status` is dropped for the next endpoint (when [`again`] agrees).
#[inline(always)]
pub fn on_status(policy: &Policy, status: StatusCode) -> bool {
    !policy.next_upstream.statuses.is_empty() && policy.next_upstream.on_status(status.as_u16())
}

/// Whether the request goes on to the next try after `why`: the route lists the condition,
/// the request can be sent again (`resendable`, see [`resendable`]) if it reached the
/// endpoint, and the budget (`proxy-next-upstream-timeout`, a Gateway request timeout) still
/// has time once the backoff is waited out, counted from the first try's start (`elapsed`
/// ago). (Called only after a failure.)
pub fn again(policy: &Policy, why: Failure, resendable: bool, elapsed: Duration) -> bool {
    let n = &policy.next_upstream;
    why.listed(n)
        && (resendable || !why.reached_endpoint())
        && n.budget.is_none_or(|b| elapsed.saturating_add(n.backoff) < b)
}

/// The wait for a try's response: the route's read timeout, cut to what is left of the
/// budget when the budget bounds the whole exchange (a Gateway `retry`: the request timeout
/// covers every try). `elapsed`: since the first try began, asked only then (a clock read).
#[inline(always)]
pub fn wait(policy: &Policy, elapsed: impl FnOnce() -> Duration) -> Option<Duration> {
    let n = &policy.next_upstream;
    match (policy.read_timeout, n.budget) {
        (Some(read), Some(budget)) if n.revisit => Some(read.min(budget.saturating_sub(elapsed()))),
        (read, _) => read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(n: NextUpstream) -> Policy {
        Policy {
            next_upstream: n,
            ..Policy::default()
        }
    }

    #[test]
    fn the_default_retries_errors_and_timeouts_only() {
        let p = Policy::default();
        let now = Duration::ZERO;
        for why in [
            Failure::Connect,
            Failure::ConnectTimeout,
            Failure::Exchange,
            Failure::Timeout,
        ] {
            assert!(again(&p, why, true, now), "{why:?}");
        }
        assert!(!again(&p, Failure::InvalidHead, true, now));
        for s in [500, 502, 503, 504, 404] {
            assert!(!on_status(&p, StatusCode::from_u16(s).unwrap()), "{s}");
        }
        // Not sent yet: a POST with a body goes on after a refused connect, not after an
        // exchange failed.
        assert!(again(&p, Failure::Connect, false, now));
        assert!(!again(&p, Failure::Exchange, false, now));
    }

    #[test]
    fn off_retries_nothing_and_methods_follow_non_idempotent() {
        let p = policy(NextUpstream::OFF);
        let now = Duration::ZERO;
        assert!(!again(&p, Failure::Connect, true, now));
        assert!(!again(&p, Failure::Timeout, true, now));
        assert!(!resendable(&Policy::default(), &Method::POST, false));
        assert!(resendable(&Policy::default(), &Method::PUT, false));
        assert!(!resendable(&Policy::default(), &Method::GET, true));
        let p = policy(NextUpstream {
            non_idempotent: true,
            ..NextUpstream::default()
        });
        assert!(resendable(&p, &Method::POST, false));
        assert!(!resendable(&p, &Method::POST, true));
    }

    #[test]
    fn the_budget_stops_new_tries() {
        let p = policy(NextUpstream {
            budget: Some(Duration::from_secs(3600)),
            ..NextUpstream::default()
        });
        assert!(again(&p, Failure::Connect, true, Duration::from_secs(3599)));
        assert!(!again(&p, Failure::Connect, true, Duration::from_secs(3600)));
        assert!(!again(&p, Failure::Status, true, Duration::from_secs(3601)));
    }

    #[test]
    fn a_backoff_that_would_end_past_the_budget_stops_the_tries() {
        let n = NextUpstream {
            budget: Some(Duration::from_secs(10)),
            backoff: Duration::from_secs(2),
            ..NextUpstream::default()
        };
        let p = policy(n);
        assert!(again(&p, Failure::Connect, true, Duration::from_millis(7999)));
        assert!(!again(&p, Failure::Connect, true, Duration::from_secs(8)));
    }

    #[test]
    fn the_budget_cuts_the_wait_of_a_try_only_when_it_bounds_the_whole_exchange() {
        let mut p = policy(NextUpstream {
            budget: Some(Duration::from_secs(10)),
            ..NextUpstream::default()
        });
        p.read_timeout = Some(Duration::from_secs(4));
        // nginx's `proxy-next-upstream-timeout` starts no new try; a try under way runs on.
        assert_eq!(wait(&p, || Duration::from_secs(9)), Some(Duration::from_secs(4)));
        p.next_upstream.revisit = true;
        assert_eq!(wait(&p, || Duration::from_secs(3)), Some(Duration::from_secs(4)));
        assert_eq!(wait(&p, || Duration::from_secs(9)), Some(Duration::from_secs(1)));
        assert_eq!(wait(&p, || Duration::from_secs(11)), Some(Duration::ZERO));
        p.read_timeout = None;
        assert_eq!(wait(&p, || Duration::from_secs(9)), None);
    }
}
