//! Rate and connection limits per client address (`limit-*` annotations) as plain data.

use std::time::Duration;

use serde::Serialize;

use super::Cidr;
use crate::model::ObjectKey;

/// `limit-rps`, `limit-rpm`, `limit-connections`, `limit-burst-multiplier` and
/// `limit-whitelist` of one Ingress, with the status codes of its refusals. At least one of
/// `rps`, `rpm` and `connections` is set (else the route has no `Limits`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Requests per second and client address, a leaky bucket with this burst.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps: Option<Rate>,
    /// Requests per minute and client address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<Rate>,
    /// Requests in progress at once per client address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// Client addresses no limit applies to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub whitelist: Vec<Cidr>,
    /// The answer to a request over `rps` or `rpm` (ingress-nginx's `limit-req-status-code`).
    pub req_status: u16,
    /// The answer to a request over `connections` (`limit-conn-status-code`).
    pub conn_status: u16,
}

/// A leaky bucket: `limit` requests per `per`, and up to `burst` more at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rate {
    pub limit: u32,
    #[serde(serialize_with = "secs")]
    pub per: Duration,
    pub burst: u64,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Rate {
    /// The time one request's drop takes to leak out, in nanoseconds: `per / limit`, and
    /// `replicas` times that when the limit is shared by that many replicas. At least 1.
    pub fn interval_ns(&self, replicas: u32) -> u64 {
        let per = u64::try_from(self.per.as_nanos()).unwrap_or(u64::MAX);
        (per / u64::from(self.limit.max(1)))
            .saturating_mul(u64::from(replicas.max(1)))
            .max(1)
    }

    /// The burst one of `replicas` replicas allows: its share, rounded down.
    pub fn burst(&self, replicas: u32) -> u64 {
        self.burst / u64::from(replicas.max(1))
    }
}

impl Limits {
    /// The most `limit-rps`.
    pub const MAX_RPS: u32 = 1_000_000;
    /// The most `limit-rpm`.
    pub const MAX_RPM: u32 = 60_000_000;
    /// The most `limit-connections`.
    pub const MAX_CONNECTIONS: u32 = 1_000_000;
    /// The most `limit-burst-multiplier`.
    pub const MAX_BURST_MULTIPLIER: u32 = 1_000;
    /// ingress-nginx's `limit-burst-multiplier` default.
    pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;
    /// ingress-nginx's `limit-req-status-code` and `limit-conn-status-code` default.
    pub const DEFAULT_STATUS: u16 = 503;

    /// This replica's share of `connections` when `replicas` share it: rounded down, at
    /// least 1 (a limit never becomes "nobody").
    pub fn connections(&self, replicas: u32) -> Option<u32> {
        self.connections.map(|c| (c / replicas.max(1)).max(1))
    }
}

/// `--limits-per-cluster`: the limits are the whole cluster's, divided among the live
/// replicas of Portico, counted as the ready endpoints of its own Service
/// (`--publish-service`) in the Snapshot. Plain data like the rest of the Config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Replicas {
    /// Portico's own Service; `None`: limits are per replica, as in ingress-nginx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ObjectKey>,
    /// Ready endpoint addresses of `service` (at least 1; 1 without a service).
    pub live: u32,
}

impl Replicas {
    /// What a limit is divided by.
    pub fn divisor(&self) -> u32 {
        if self.service.is_some() { self.live.max(1) } else { 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(limit: u32, per: u64, burst: u64) -> Rate {
        Rate {
            limit,
            per: Duration::from_secs(per),
            burst,
        }
    }

    #[test]
    fn replicas_share_the_rate_and_the_burst() {
        let r = rate(10, 1, 50);
        assert_eq!(r.interval_ns(1), 100_000_000);
        assert_eq!(r.interval_ns(2), 200_000_000, "5/s each");
        assert_eq!(r.interval_ns(3), 300_000_000);
        assert_eq!((r.burst(1), r.burst(2), r.burst(3)), (50, 25, 16));
        assert_eq!(r.interval_ns(0), r.interval_ns(1), "0 replicas seen counts as 1");
        let m = rate(30, 60, 0);
        assert_eq!(m.interval_ns(1), 2_000_000_000);
        assert_eq!(m.interval_ns(4), 8_000_000_000);
    }

    #[test]
    fn extremes_do_not_overflow() {
        let r = rate(Limits::MAX_RPS, 1, u64::from(Limits::MAX_RPS) * 1000);
        assert_eq!(r.interval_ns(1), 1000);
        assert_eq!(r.interval_ns(u32::MAX), 1000 * u64::from(u32::MAX));
        let slow = rate(1, 60, 0);
        assert_eq!(slow.interval_ns(u32::MAX), u64::MAX, "saturates");
        assert_eq!(rate(0, 1, 0).interval_ns(1), 1_000_000_000, "0 is treated as 1");
    }

    #[test]
    fn connections_are_shared_and_never_zero() {
        let l = Limits {
            rps: None,
            rpm: None,
            connections: Some(10),
            whitelist: vec![],
            req_status: 503,
            conn_status: 503,
        };
        assert_eq!(l.connections(1), Some(10));
        assert_eq!(l.connections(3), Some(3));
        assert_eq!(l.connections(20), Some(1));
        assert_eq!(l.connections(0), Some(10));
    }

    #[test]
    fn the_divisor_is_one_unless_asked() {
        assert_eq!(Replicas::default().divisor(), 1);
        let ours = Replicas {
            service: Some(ObjectKey::new("ingress", "portico")),
            live: 0,
        };
        assert_eq!(ours.divisor(), 1);
        assert_eq!(Replicas { live: 4, ..ours }.divisor(), 4);
    }
}
