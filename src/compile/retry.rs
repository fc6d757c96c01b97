//! `proxy-next-upstream` and `proxy-next-upstream-timeout` → [`NextUpstream`].

use std::time::Duration;

use super::annotations::Annotations;
use crate::config::retry::NextUpstream;

/// The longest `proxy-next-upstream` value read: every condition once, with room to spare.
const MAX_LEN: usize = 256;

/// nginx's `proxy_next_upstream` list, space-separated; `off` anywhere turns retries off, as
/// in nginx. `None` for an empty list or an unknown word.
pub fn parse_next_upstream(v: &str) -> Option<NextUpstream> {
    if v.len() > MAX_LEN {
        return None;
    }
    let mut n = NextUpstream::OFF;
    let mut off = false;
    let mut any = false;
    for word in v.split_ascii_whitespace() {
        any = true;
        match word {
            "error" => n.error = true,
            "timeout" => n.timeout = true,
            "invalid_header" => n.invalid_header = true,
            "non_idempotent" => n.non_idempotent = true,
            "off" => off = true,
            w => {
                let status = w.strip_prefix("http_")?.parse::<u16>().ok()?;
                if !NextUpstream::STATUSES.contains(&status) {
                    return None;
                }
                n.statuses.insert(status);
            }
        }
    }
    match (any, off) {
        (false, _) => None,
        (true, true) => Some(NextUpstream::OFF),
        (true, false) => Some(n),
    }
}

/// `proxy-next-upstream-timeout`: whole seconds up to [`NextUpstream::MAX_BUDGET`]; 0 means
/// no limit (`Some(None)`).
pub fn parse_budget(v: &str) -> Option<Option<Duration>> {
    let n: u64 = v.parse().ok().filter(|n| *n <= NextUpstream::MAX_BUDGET.as_secs())?;
    Some((n > 0).then(|| Duration::from_secs(n)))
}

impl Annotations<'_> {
    pub(super) fn next_upstream(&mut self) -> NextUpstream {
        let mut n = self
            .parsed(
                "proxy-next-upstream",
                "a space-separated list of error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent or off",
                "using \"error timeout\"",
                parse_next_upstream,
            )
            .unwrap_or_default();
        let expected = format!(
            "a whole number of seconds up to {} (0: no limit)",
            NextUpstream::MAX_BUDGET.as_secs()
        );
        n.budget = self
            .parsed("proxy-next-upstream-timeout", &expected, "no limit", parse_budget)
            .flatten();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_as_nginx_reads_them() {
        assert_eq!(parse_next_upstream("error timeout"), Some(NextUpstream::default()));
        let n = parse_next_upstream(" error  http_502\thttp_503 non_idempotent ").unwrap();
        assert!(n.error && !n.timeout && !n.invalid_header && n.non_idempotent);
        assert!(n.on_status(502) && n.on_status(503) && !n.on_status(500) && !n.on_status(404));
        assert_eq!(n.names(), ["error", "http_502", "http_503", "non_idempotent"]);
        let all = parse_next_upstream(
            "error timeout invalid_header http_500 http_502 http_503 http_504 http_403 http_404 http_429",
        )
        .unwrap();
        for s in NextUpstream::STATUSES {
            assert!(all.on_status(s), "{s}");
        }
        assert!(!all.on_status(501) && !all.on_status(200));
        assert_eq!(parse_next_upstream("off"), Some(NextUpstream::OFF));
        assert_eq!(parse_next_upstream("error off http_502"), Some(NextUpstream::OFF));
        assert_eq!(NextUpstream::OFF.names(), ["off"]);
        for bad in [
            "",
            "  ",
            "error,timeout",
            "http_501",
            "http_",
            "http_5020",
            "http_65938",
            "Error",
            "timeout_",
            &"error ".repeat(60),
        ] {
            assert_eq!(parse_next_upstream(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn budgets_are_bounded_and_zero_is_no_limit() {
        assert_eq!(parse_budget("0"), Some(None));
        assert_eq!(parse_budget("5"), Some(Some(Duration::from_secs(5))));
        assert_eq!(parse_budget("86400"), Some(Some(NextUpstream::MAX_BUDGET)));
        for bad in ["86401", "18446744073709551616", "-1", "1s", "", "1.5"] {
            assert_eq!(parse_budget(bad), None, "{bad:?}");
        }
    }
}
