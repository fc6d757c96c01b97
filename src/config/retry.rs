//! `proxy-next-upstream` and `proxy-next-upstream-timeout` as plain data: which failures of
//! one endpoint send a request on to the next one, and for how long that may go on.

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
    /// `http_403` … `http_504`: bits over [`Self::STATUSES`].
    pub statuses: u8,
    /// `proxy-next-upstream-timeout`: no new try starts once this long has passed since the
    /// first one; `None`: no limit (nginx's 0).
    pub budget: Option<Duration>,
}

impl NextUpstream {
    /// The statuses nginx can retry on, in the order of the bits of `statuses`.
    pub const STATUSES: [u16; 7] = [500, 502, 503, 504, 403, 404, 429];
    /// The longest `proxy-next-upstream-timeout`, as the other proxy timeouts.
    pub const MAX_BUDGET: Duration = Duration::from_secs(24 * 3600);
    /// nginx's `off`.
    pub const OFF: Self = Self {
        error: false,
        timeout: false,
        invalid_header: false,
        non_idempotent: false,
        statuses: 0,
        budget: None,
    };

    /// The bit of `status` in `statuses`, if nginx can retry on it.
    pub fn status_bit(status: u16) -> Option<u8> {
        Self::STATUSES.iter().position(|s| *s == status).map(|i| 1 << i)
    }

    /// Whether an answer with `status` goes on to the next endpoint.
    pub fn on_status(&self, status: u16) -> bool {
        Self::status_bit(status).is_some_and(|b| self.statuses & b != 0)
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
        v.extend(
            Self::STATUSES
                .iter()
                .filter(|s| self.on_status(**s))
                .map(|s| format!("http_{s}")),
        );
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
            timeout_seconds: Option<u64>,
        }
        Shown {
            on: self.names(),
            timeout_seconds: self.budget.map(|d| d.as_secs()),
        }
        .serialize(s)
    }
}
