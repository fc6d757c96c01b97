//! HTTPRoute `timeouts` as the Policy's upstream timeouts: both `request` and
//! `backendRequest` bound the wait for the upstream's answer (`Policy::read_timeout`: for the
//! response head and between reads of its body), the shorter one when both are set. There is
//! no deadline on the whole exchange, so a response that keeps trickling is not cut.

use std::time::Duration;

use crate::config::Policy;
use crate::model::gateway::HTTPRouteTimeouts;

/// Sets `policy`'s timeouts from a rule's; `Err` for a value that is not a Gateway API
/// Duration. `0s` disables a timeout (the longest the Policy allows).
pub(super) fn apply(t: &HTTPRouteTimeouts, policy: &mut Policy) -> Result<(), String> {
    let timeout = |d: &str| duration(d).map_err(|e| format!("timeout {e}"));
    let request = t.request.as_deref().map(timeout).transpose()?;
    let backend = t.backend_request.as_deref().map(timeout).transpose()?;
    if let (Some(r), Some(b)) = (request, backend)
        && !r.is_zero()
        && (b.is_zero() || b > r)
    {
        return Err("timeouts.backendRequest is longer than timeouts.request".into());
    }
    let chosen = match (request, backend) {
        (None, None) => return Ok(()),
        (_, Some(b)) => b,
        (Some(r), None) => r,
    };
    policy.read_timeout = Some(match chosen.is_zero() {
        true => Policy::MAX_TIMEOUT,
        false => chosen.min(Policy::MAX_TIMEOUT),
    });
    Ok(())
}

/// A Gateway API Duration (GEP-2257): one to four parts of up to five digits and a unit
/// `h`, `m`, `s` or `ms`, as `1h30m` or `500ms`.
pub(super) fn duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a Gateway API duration (such as 10s, 1m30s or 500ms)");
    let mut total = Duration::ZERO;
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=5).contains(&digits) || parts == 4 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = match rest.as_bytes() {
            [b'm', b's', ..] => (Duration::from_millis(1), 2),
            [b'h', ..] => (Duration::from_secs(3600), 1),
            [b'm', ..] => (Duration::from_secs(60), 1),
            [b's', ..] => (Duration::from_secs(1), 1),
            _ => return Err(bad()),
        };
        rest = &rest[len..];
        // At most 4 × 99999 h: no overflow.
        total += unit * n as u32;
        parts += 1;
    }
    if parts == 0 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_gep_2257() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1h30m5s"), Ok(Duration::from_secs(5405)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "1d", "123456s", "1s1s1s1s1s", "-1s", "1.5s", "s"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_shorter_timeout_bounds_the_wait_and_zero_disables() {
        let t = |r: Option<&str>, b: Option<&str>| HTTPRouteTimeouts {
            request: r.map(Into::into),
            backend_request: b.map(Into::into),
        };
        let mut p = Policy::default();
        apply(&t(Some("10s"), Some("2s")), &mut p).unwrap();
        assert_eq!(p.read_timeout, Some(Duration::from_secs(2)));
        apply(&t(Some("500ms"), None), &mut p).unwrap();
        assert_eq!(p.read_timeout, Some(Duration::from_millis(500)));
        apply(&t(Some("0s"), None), &mut p).unwrap();
        assert_eq!(p.read_timeout, Some(Policy::MAX_TIMEOUT));
        assert!(apply(&t(Some("1s"), Some("2s")), &mut p).is_err());
        assert!(apply(&t(Some("soon"), None), &mut p).is_err());
    }
}
