//! An HTTPRoute rule's `retry` (experimental channel) as the Policy's [`NextUpstream`], the
//! machinery `proxy-next-upstream` uses: the listed codes, and connection errors and timed-out
//! tries (the spec's SHOULD), are tried again up to `attempts` more times, on the backend's
//! endpoints in turn (one endpoint may get several), `backoff` apart. With
//! `timeouts.request`, no try starts or runs past it from the first try's start; each try
//! waits at most `timeouts.backendRequest` (see [`super::timeouts`]).

use std::time::Duration;

use super::timeouts::duration;
use crate::config::Policy;
use crate::config::retry::{NextUpstream, Statuses};
use crate::model::gateway::{HTTPRouteRetry, HTTPRouteTimeouts};

/// Tries after the first when `attempts` is not set (the spec leaves it to the
/// implementation): as many as `proxy-next-upstream-tries`' default allows in all.
pub const DEFAULT_ATTEMPTS: usize = Policy::DEFAULT_TRIES - 1;
/// The most `attempts` honoured; more are read as this many.
pub const MAX_ATTEMPTS: usize = Policy::MAX_TRIES - 1;

/// Sets `policy`'s retries from a rule's `retry` (after [`super::timeouts::apply`], whose
/// checks `t` passed). `Err`: a value the experimental CRD refuses.
pub(super) fn apply(r: &HTTPRouteRetry, t: Option<&HTTPRouteTimeouts>, policy: &mut Policy) -> Result<(), String> {
    let mut statuses = Statuses::NONE;
    for &code in &r.codes {
        if !u16::try_from(code).is_ok_and(|c| statuses.insert(c)) {
            return Err(format!("retry code {code} is not a status from 400 to 599"));
        }
    }
    let attempts = match r.attempts {
        None => DEFAULT_ATTEMPTS,
        Some(n) if n < 1 => return Err(format!("retry attempts {n} is less than 1")),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(MAX_ATTEMPTS),
    };
    let backoff = match r.backoff.as_deref() {
        None => Duration::ZERO,
        Some(b) => duration(b)
            .map_err(|e| format!("retry backoff {e}"))?
            .min(Policy::MAX_TIMEOUT),
    };
    // Read once already, by `timeouts::apply`.
    let request = t.and_then(|t| t.request.as_deref()).and_then(|d| duration(d).ok());
    policy.tries = attempts + 1;
    policy.next_upstream = NextUpstream {
        error: true,
        timeout: true,
        invalid_header: false,
        // The spec retries whatever the method; a request with a body still goes once, as
        // its streamed body cannot be read again.
        non_idempotent: true,
        statuses,
        // `0s` disables the request timeout.
        budget: request.filter(|d| !d.is_zero()).map(|d| d.min(Policy::MAX_TIMEOUT)),
        backoff,
        revisit: true,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(codes: &[i64], attempts: Option<i64>, backoff: Option<&str>) -> HTTPRouteRetry {
        HTTPRouteRetry {
            codes: codes.to_vec(),
            attempts,
            backoff: backoff.map(Into::into),
        }
    }

    #[test]
    fn codes_attempts_and_backoff_become_the_next_upstream_policy() {
        let mut p = Policy::default();
        apply(&retry(&[500, 503, 429], Some(3), Some("100ms")), None, &mut p).unwrap();
        assert_eq!(p.tries, 4);
        let n = p.next_upstream;
        assert!(n.error && n.timeout && n.non_idempotent && n.revisit && !n.invalid_header);
        assert_eq!(n.statuses.iter().collect::<Vec<_>>(), [429, 500, 503]);
        assert_eq!(n.backoff, Duration::from_millis(100));
        assert_eq!(n.budget, None);

        // Without codes only failed connections and timed-out tries go again; without
        // attempts, two.
        let mut p = Policy::default();
        apply(&retry(&[], None, None), None, &mut p).unwrap();
        assert_eq!(p.tries, 3);
        assert!(p.next_upstream.statuses.is_empty() && p.next_upstream.backoff.is_zero());
        apply(&retry(&[], Some(1_000_000), None), None, &mut p).unwrap();
        assert_eq!(p.tries, Policy::MAX_TRIES);
    }

    #[test]
    fn the_request_timeout_is_the_budget_of_every_try() {
        let t = |r: &str| HTTPRouteTimeouts {
            request: Some(r.into()),
            backend_request: Some("1s".into()),
        };
        let mut p = Policy::default();
        apply(&retry(&[500], Some(2), None), Some(&t("5s")), &mut p).unwrap();
        assert_eq!(p.next_upstream.budget, Some(Duration::from_secs(5)));
        apply(&retry(&[500], Some(2), None), Some(&t("0s")), &mut p).unwrap();
        assert_eq!(p.next_upstream.budget, None);
    }

    #[test]
    fn values_the_crd_refuses_are_errors() {
        let mut p = Policy::default();
        for bad in [
            retry(&[399], None, None),
            retry(&[600], None, None),
            retry(&[-500], None, None),
            retry(&[i64::MAX], None, None),
            retry(&[], Some(0), None),
            retry(&[], Some(-3), None),
            retry(&[], None, Some("1.5s")),
            retry(&[], None, Some("soon")),
        ] {
            assert!(apply(&bad, None, &mut p).is_err(), "{bad:?}");
        }
        assert_eq!(p, Policy::default());
    }
}
