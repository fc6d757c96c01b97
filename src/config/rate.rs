//! `limit-rate` and `limit-rate-after`: how fast one response is sent to its client, as plain data.

use serde::Serialize;

/// A response's pace (nginx's `limit_rate` and `limit_rate_after`, per request): its first
/// `after` bytes go out as fast as the client takes them, the rest at `bytes_per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ResponseRate {
    /// Above 0 and at most `MAX_KIB * 1024`.
    pub bytes_per_second: u64,
    /// At most `MAX_AFTER_KIB * 1024`.
    pub after: u64,
}

impl ResponseRate {
    /// The most `limit-rate` takes, in kilobytes per second: 10 GiB/s, faster than any one
    /// connection goes, so a larger value is a mistake rather than a wish.
    pub const MAX_KIB: u64 = 10 << 20;
    /// The most `limit-rate-after` takes, in kilobytes: 1 TiB.
    pub const MAX_AFTER_KIB: u64 = 1 << 30;

    /// The pace for `limit-rate` and `limit-rate-after` in bytes (ingress-nginx's values are
    /// kilobytes, which the readers multiply): `None` when the rate is 0, no limit, as in
    /// nginx, where `limit_rate_after` alone does nothing.
    pub fn new(bytes_per_second: u64, after: u64) -> Option<ResponseRate> {
        (bytes_per_second > 0).then_some(ResponseRate {
            bytes_per_second,
            after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_no_limit_and_after_alone_does_nothing() {
        assert_eq!(ResponseRate::new(0, 0), None);
        assert_eq!(ResponseRate::new(0, 4096), None);
        assert_eq!(
            ResponseRate::new(2048, 0),
            Some(ResponseRate {
                bytes_per_second: 2048,
                after: 0
            })
        );
    }
}
