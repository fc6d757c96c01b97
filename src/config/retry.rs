//! When a failed try of a request is tried again, as plain data: ingress-nginx's
//! `proxy-next-upstream`, `-tries` and `-timeout`, and an HTTPRoute rule's `retry` (Gateway
//! API), which are one mechanism with two ways in.

use std::time::Duration;

use serde::{Serialize, Serializer};

/// The conditions of nginx's `proxy_next_upstream`, as named there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextUpstream {
    /// `error`: connecting failed, or the exchange failed before a response head.
    pub error: bool,
    /// `timeout`: connecting or waiting for the response head timed out.
    pub timeout: bool,
    /// `invalid_header`: the upstream answered something that is not an HTTP response head.
    pub invalid_header: bool,
    /// `non_idempotent`: POST, PATCH and LOCK go to the next endpoint too after they were
    /// sent (by default only a request that never reached the endpoint does).
    pub non_idempotent: bool,
    /// The answers tried again: nginx's `http_403` … `http_504`, a Gateway `retry.codes`.
    pub statuses: Statuses,
    /// `proxy-next-upstream-timeout`, a Gateway rule's `timeouts.request`: no new try starts
    /// once this long has passed since the first one; `None`: no limit (nginx's 0).
    pub budget: Option<Duration>,
    /// A Gateway `retry`: the wait before each try after the first.
    pub backoff: Duration,
    /// A Gateway `retry`: tries go on with endpoints tried already once every ready one was
    /// tried (its `attempts` count tries of the backend, nginx's tries count endpoints), and
    /// the budget also cuts the wait of the try under way (the request timeout bounds the
    /// whole exchange).
    pub revisit: bool,
}

/// A set of statuses from 400 to 599, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statuses([u64; 4]);

impl Statuses {
    pub const NONE: Self = Self([0; 4]);
    const FIRST: u16 = 400;
    const LAST: u16 = 599;

    /// Adds `status`; `false` (and nothing added) outside 400-599.
    pub fn insert(&mut self, status: u16) -> bool {
        let Some(i) = Self::bit(status) else {
            return false;
        };
        self.0[i / 64] |= 1 << (i % 64);
        true
    }

    pub fn contains(&self, status: u16) -> bool {
        Self::bit(status).is_some_and(|i| self.0[i / 64] & (1 << (i % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The statuses in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (Self::FIRST..=Self::LAST).filter(|s| self.contains(*s))
    }

    fn bit(status: u16) -> Option<usize> {
        (Self::FIRST..=Self::LAST)
            .contains(&status)
            .then(|| usize::from(status - Self::FIRST))
    }
}

impl NextUpstream {
    /// The statuses nginx can retry on.
    pub const STATUSES: [u16; 7] = [500, 502, 503, 504, 403, 404, 429];
    /// The longest `proxy-next-upstream-timeout`, as the other proxy timeouts.
    pub const MAX_BUDGET: Duration = Duration::from_secs(24 * 3600);
    /// nginx's `off`.
    pub const OFF: Self = Self {
        error: false,
        timeout: false,
        invalid_header: false,
        non_idempotent: false,
        statuses: Statuses::NONE,
        budget: None,
        backoff: Duration::ZERO,
        revisit: false,
    };

    /// Whether an answer with `status` goes on to the next endpoint.
    pub fn on_status(&self, status: u16) -> bool {
        self.statuses.contains(status)
    }

    /// The condition names, as the annotation spells them.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            (self.error, "error"),
            (self.timeout, "timeout"),
            (self.invalid_header, "invalid_header"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| n.to_string())
        .collect();
        v.extend(self.statuses.iter().map(|s| format!("http_{s}")));
        if self.non_idempotent {
            v.push("non_idempotent".into());
        }
        if v.is_empty() {
            v.push("off".into());
        }
        v
    }
}

/// nginx's default, `error timeout`.
impl Default for NextUpstream {
    fn default() -> Self {
        Self {
            error: true,
            timeout: true,
            ..Self::OFF
        }
    }
}

impl Serialize for NextUpstream {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown {
            on: Vec<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            timeout_ms: Option<u128>,
            #[serde(skip_serializing_if = "Option::is_none")]
            backoff_ms: Option<u128>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            revisit: bool,
        }
        Shown {
            on: self.names(),
            timeout_ms: self.budget.map(|d| d.as_millis()),
            backoff_ms: (!self.backoff.is_zero()).then_some(self.backoff.as_millis()),
            revisit: self.revisit,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_hold_400_to_599_only() {
        let mut s = Statuses::NONE;
        assert!(s.is_empty());
        for c in [400, 463, 464, 500, 527, 599] {
            assert!(s.insert(c), "{c}");
        }
        for c in [0, 200, 399, 600, 65535] {
            assert!(!s.insert(c), "{c}");
            assert!(!s.contains(c), "{c}");
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), [400, 463, 464, 500, 527, 599]);
        assert!(!s.contains(401) && !s.contains(598));
    }
}
