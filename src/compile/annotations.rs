//! Typed reading of an Ingress's annotations (Portico's `portico.dev/` spelling first, then
//! ingress-nginx's `nginx.ingress.kubernetes.io/`). An invalid value is a Warning diagnostic
//! and the setting keeps its default; it never stops the Ingress from being served.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::model::Ing as Ingress;
use k8s_openapi::api::core::v1::Secret;

use super::ingress::annotation;
use super::known::{self, Support};
use crate::config::Cidr;
use crate::config::auth::ExternalAuth;
use crate::config::backend::Protocol;
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::policy::{Algorithm, CookieAffinity, Cors, Mode, Policy, Redirect, SameSite};
use crate::model::ObjectKey;

/// Printable ASCII without spaces, quotes or angle brackets: safe to put in a header.
fn url_safe(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 2048
        && v.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !b"\"<>\\^`{|}".contains(&b))
}

/// A redirect target: an absolute http(s) URL or a path.
fn location(v: &str) -> Option<String> {
    ((v.starts_with("http://") || v.starts_with("https://") || v.starts_with('/')) && url_safe(v))
        .then(|| v.to_string())
}

/// nginx size syntax: bytes, or a number with k, m or g (either case).
pub(super) fn parse_size(v: &str) -> Option<u64> {
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = n.parse().ok()?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// ingress-nginx timeouts are whole seconds; `s`/`m` suffixes are accepted too. Zero and
/// anything past [`Policy::MAX_TIMEOUT`] are refused.
pub(super) fn parse_timeout(v: &str) -> Option<Duration> {
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs)).filter(|d| *d <= Policy::MAX_TIMEOUT)
}

/// A whole number up to `max`.
fn at_most(v: &str, max: u64) -> Option<u64> {
    v.parse().ok().filter(|n| *n <= max)
}

/// `host` or `host:port`, host a DNS name or an IP address.
pub(super) fn valid_vhost(v: &str) -> bool {
    let host = match v.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => v,
    };
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Whether a cookie name is an RFC 6265 token.
pub fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a cookie `Path` or `Domain` attribute value is safe to send: printable, no `;`.
pub fn valid_attribute(v: &str) -> bool {
    !v.is_empty() && v.len() <= 1024 && v.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b';' && b != b',')
}

/// Reads annotations of one Ingress, reporting bad values against it.
pub struct Annotations<'a> {
    pub ing: &'a Ingress,
    pub key: &'a ObjectKey,
    pub diags: &'a mut Diagnostics,
    /// The Snapshot's Secrets, for `auth-secret`.
    pub secrets: &'a BTreeMap<ObjectKey, Arc<Secret>>,
    /// `--global-auth-url`, for Ingresses without an `auth-url`.
    pub global_auth: Option<&'a ExternalAuth>,
}

impl<'a> Annotations<'a> {
    /// A reader of `ing`'s annotations for a step that needs no global auth.
    pub(super) fn of(
        ing: &'a Ingress,
        key: &'a ObjectKey,
        diags: &'a mut Diagnostics,
        secrets: &'a BTreeMap<ObjectKey, Arc<Secret>>,
    ) -> Self {
        Self {
            ing,
            key,
            diags,
            secrets,
            global_auth: None,
        }
    }
}

impl Annotations<'_> {
    pub(super) fn invalid(&mut self, prefix: &str, name: &str, value: &str, expected: &str, fallback: &str) {
        self.diags.push(
            ObjectRef::ingress(self.key),
            Severity::Warning,
            Reason::InvalidAnnotation,
            format!("annotation {prefix}{name}={value:?} is not {expected}; {fallback}"),
        );
    }

    /// A value parsed by `parse`; `None` when absent or invalid (invalid is reported).
    pub(super) fn parsed<T>(
        &mut self,
        name: &str,
        expected: &str,
        fallback: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let (prefix, raw) = annotation(self.ing, name)?;
        let v = parse(raw.trim());
        if v.is_none() {
            self.invalid(prefix, name, raw, expected, fallback);
        }
        v
    }

    pub fn bool(&mut self, name: &str, default: bool) -> bool {
        let fallback = format!("using {default}");
        self.parsed(name, "\"true\" or \"false\"", &fallback, |v| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
        .unwrap_or(default)
    }

    fn seconds(&mut self, name: &str, max: u64) -> Option<u64> {
        let expected = format!("a whole number of seconds up to {max}");
        self.parsed(name, &expected, "not set", |v| at_most(v, max))
    }

    /// Reports every annotation under Portico's or ingress-nginx's prefix that has no effect
    /// here (see [`super::known`]).
    pub fn unsupported(&mut self) {
        for key in self.ing.metadata.annotations.keys() {
            let Some(name) = crate::model::ingress::ANNOTATION_PREFIXES
                .iter()
                .find_map(|p| key.strip_prefix(p))
            else {
                continue;
            };
            let msg = match known::support(name) {
                Some(Support::Yes | Support::Partly(_)) => continue,
                Some(Support::No(why)) => format!("annotation {key} is not supported ({why}); it has no effect"),
                None => format!("annotation {key} is not one Portico or ingress-nginx knows; it has no effect"),
            };
            self.diags.push(
                ObjectRef::ingress(self.key),
                Severity::Warning,
                Reason::UnsupportedAnnotation,
                msg,
            );
        }
    }

    /// Load balancing, retries and cookie affinity.
    pub fn policy(&mut self) -> Policy {
        let load_balance = self
            .parsed(
                "load-balance",
                "\"round_robin\" or \"ewma\"",
                "using round_robin",
                |v| match v {
                    "round_robin" => Some(Algorithm::RoundRobin),
                    "ewma" => Some(Algorithm::Ewma),
                    _ => None,
                },
            )
            .unwrap_or_default();
        let tries = self
            .parsed(
                "proxy-next-upstream-tries",
                &format!("a number of tries up to {} (0: every endpoint)", Policy::MAX_TRIES),
                &format!("using {}", Policy::DEFAULT_TRIES),
                |v| v.parse::<usize>().ok().filter(|n| *n <= Policy::MAX_TRIES),
            )
            .map(|n| if n == 0 { usize::MAX } else { n })
            .unwrap_or(Policy::DEFAULT_TRIES);
        self.accepted_as_streamed();
        let affinity = self.affinity();
        // An entry that is no address or CIDR, or an empty list, denies the location (503),
        // as ingress-nginx's LocationDenied: neither list is used then.
        let (allow, allow_ok) = self.allow();
        let (deny, deny_ok) = self.denylist();
        let ranges_invalid = !(allow_ok && deny_ok);
        Policy {
            hash_by: self.hash_by(affinity.is_some()),
            affinity,
            load_balance,
            tries,
            redirect: self.redirect(),
            app_root: self.parsed("app-root", "a path starting with /", "not used", |v| {
                (v.starts_with('/') && url_safe(v)).then(|| v.to_string())
            }),
            max_body_bytes: self.body_size(),
            connect_timeout: self.timeout("proxy-connect-timeout"),
            read_timeout: self.timeout("proxy-read-timeout"),
            send_timeout: self.timeout("proxy-send-timeout"),
            allow: if ranges_invalid { Some(Vec::new()) } else { allow },
            upstream_vhost: self.parsed(
                "upstream-vhost",
                "a host name, optionally with :port",
                "the request's Host is sent",
                |v| valid_vhost(v).then(|| v.to_string()),
            ),
            cors: self.cors(),
            backend_protocol: self.parsed(
                "backend-protocol",
                "HTTP, HTTPS, GRPC, GRPCS or H2C",
                "the Service port's appProtocol decides",
                Protocol::from_annotation,
            ),
            use_regex: self.bool("use-regex", false),
            rewrite_target: self.parsed(
                "rewrite-target",
                "a path (starting with / or a $n capture reference)",
                "paths are not rewritten",
                |v| ((v.starts_with('/') || v.starts_with('$')) && url_safe(v)).then(|| Arc::from(v)),
            ),
            auth: self.auth(),
            upstream_tls: self.upstream_tls(),
            // Set by compile::errors, which resolves Services.
            default_backend: None,
            error_pages: None,
            next_upstream: self.next_upstream(),
            mirror: self.mirror(),
            www_redirect: None,
            deny: deny.filter(|_| !ranges_invalid),
            forwarded_prefix: self.forwarded_prefix(),
            preserve_trailing_slash: self.bool("preserve-trailing-slash", false),
            access_log: self.bool("enable-access-log", true),
            service_upstream: self.bool("service-upstream", false),
            response: self.response_rewrite(),
            limits: self.limits(),
            // Read with the Snapshot's ConfigMaps, in `super::global::route_policy`.
            custom_headers: None,
            http10: self.http10(),
            satisfy_any: self.satisfy_any(),
            rate: self.response_rate(),
            // Read with the ConfigMap's settings, in `super::global::route_policy`.
            otel: None,
            // Set in `super::global::route_policy`, which knows the ConfigMaps' headers.
            keep_request: false,
            ranges_invalid,
            // HTTPRoute filters (Gateway API); no annotation sets them.
            filters: None,
        }
    }

    /// `proxy-body-size`: "0" is no limit; absent or invalid, the default (1m).
    fn body_size(&mut self) -> Option<u64> {
        let default = Some(Policy::DEFAULT_MAX_BODY_BYTES);
        let fallback = "the ConfigMap's proxy-body-size (default: 1m) applies";
        self.parsed("proxy-body-size", "a size like 8m, 512k or 0", fallback, parse_size)
            .map_or(default, |n| Some(n).filter(|n| *n > 0))
    }

    fn timeout(&mut self, name: &str) -> Option<Duration> {
        let max = Policy::MAX_TIMEOUT.as_secs();
        let expected = format!("a number of seconds from 1 to {max} (or of minutes, to {}m)", max / 60);
        self.parsed(name, &expected, "the default is used", parse_timeout)
    }

    fn redirect(&mut self) -> Option<Redirect> {
        if let Some(location) = self.parsed("temporal-redirect", "an http(s) URL or a path", "not used", location) {
            return Some(Redirect { code: 302, location });
        }
        let location = self.parsed("permanent-redirect", "an http(s) URL or a path", "not used", location)?;
        let code = self
            .parsed("permanent-redirect-code", "a 3xx status code", "using 301", |v| {
                v.parse::<u16>().ok().filter(|c| (300..=308).contains(c))
            })
            .unwrap_or(301);
        Some(Redirect { code, location })
    }

    /// The allowlist, and whether it is valid: an entry that is no address or CIDR, or no
    /// entry at all, makes the location answer 503, as ingress-nginx's denied location.
    fn allow(&mut self) -> (Option<Vec<Cidr>>, bool) {
        let Some((prefix, raw, name)) = ["whitelist-source-range", "allowlist-source-range"]
            .iter()
            .find_map(|n| annotation(self.ing, n).map(|(p, v)| (p, v, *n)))
        else {
            return (None, true);
        };
        match super::common::cidr_list(raw) {
            Ok(cidrs) => (Some(cidrs), true),
            Err(entry) => {
                self.invalid(prefix, name, &entry, "addresses or CIDRs", "the Ingress answers 503");
                (None, false)
            }
        }
    }

    fn cors(&mut self) -> Option<Cors> {
        if !self.bool("enable-cors", false) {
            return None;
        }
        let mut c = Cors::default();
        if let Some(origins) = self.parsed(
            "cors-allow-origin",
            "a comma-separated list of origins (scheme://host[:port], * or scheme://*.domain)",
            "allowing *",
            |v| {
                let list: Vec<String> = v
                    .split(',')
                    .map(|o| o.trim().to_string())
                    .filter(|o| !o.is_empty())
                    .collect();
                (!list.is_empty() && list.iter().all(|o| o == "*" || (o.contains("://") && url_safe(o))))
                    .then_some(list)
            },
        ) {
            c.allow_origin = origins;
        }
        let token_list = |v: &str| {
            (!v.is_empty()
                && v.split(',').all(|t| {
                    let t = t.trim();
                    !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_*".contains(&b))
                }))
            .then(|| v.to_string())
        };
        if let Some(m) = self.parsed(
            "cors-allow-methods",
            "a comma-separated list of methods",
            "using the default",
            token_list,
        ) {
            c.allow_methods = m;
        }
        if let Some(h) = self.parsed(
            "cors-allow-headers",
            "a comma-separated list of header names",
            "using the default",
            token_list,
        ) {
            c.allow_headers = h;
        }
        c.expose_headers = self.parsed(
            "cors-expose-headers",
            "a comma-separated list of header names",
            "not set",
            token_list,
        );
        c.allow_credentials = self.bool("cors-allow-credentials", true);
        let expected = format!("a number of seconds up to {}", Cors::MAX_AGE_LIMIT);
        let fallback = format!("using {}", c.max_age);
        if let Some(age) = self.parsed("cors-max-age", &expected, &fallback, |v| {
            at_most(v, Cors::MAX_AGE_LIMIT)
        }) {
            c.max_age = age;
        }
        Some(c)
    }

    fn affinity(&mut self) -> Option<CookieAffinity> {
        let (prefix, kind) = annotation(self.ing, "affinity")?;
        if kind.trim() != "cookie" {
            self.invalid(prefix, "affinity", kind, "\"cookie\"", "no affinity");
            return None;
        }
        let mode = self
            .parsed(
                "affinity-mode",
                "\"balanced\" or \"persistent\"",
                "using balanced",
                |v| match v {
                    "balanced" => Some(Mode::Balanced),
                    "persistent" => Some(Mode::Persistent),
                    _ => None,
                },
            )
            .unwrap_or_default();
        let mut c = CookieAffinity {
            mode,
            ..Default::default()
        };
        if let Some(name) = self.parsed(
            "session-cookie-name",
            "a cookie name (letters, digits, !#$%&'*+-.^_`|~)",
            "using INGRESSCOOKIE",
            |v| valid_cookie_name(v).then(|| v.to_string()),
        ) {
            c.name = name;
        }
        c.path = self.parsed(
            "session-cookie-path",
            "a path starting with / (no ; or spaces)",
            "using the Ingress path",
            |v| (v.starts_with('/') && valid_attribute(v)).then(|| v.to_string()),
        );
        c.domain = self.parsed("session-cookie-domain", "a domain (no ; or spaces)", "not set", |v| {
            valid_attribute(v).then(|| v.to_string())
        });
        c.max_age = self.seconds("session-cookie-max-age", CookieAffinity::MAX_LIFETIME);
        c.expires = self.seconds("session-cookie-expires", CookieAffinity::MAX_LIFETIME);
        c.same_site = self.parsed(
            "session-cookie-samesite",
            "\"None\", \"Lax\" or \"Strict\"",
            "not set",
            |v| match v.to_ascii_lowercase().as_str() {
                "none" => Some(SameSite::None),
                "lax" => Some(SameSite::Lax),
                "strict" => Some(SameSite::Strict),
                _ => None,
            },
        );
        c.conditional_same_site_none = self.bool("session-cookie-conditional-samesite-none", false);
        c.secure = self.parsed(
            "session-cookie-secure",
            "\"true\" or \"false\"",
            "Secure when the request came over HTTPS",
            |v| match v {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
        );
        c.change_on_failure = self.bool("session-cookie-change-on-failure", false);
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostic::Diagnostic;

    /// The Policy of an Ingress with `notes` (names under ingress-nginx's prefix), and the
    /// diagnostics reading them gave.
    fn policy_of(notes: &[(&str, &str)]) -> (Policy, Vec<Diagnostic>) {
        let mut ing = k8s_openapi::api::networking::v1::Ingress::default();
        ing.metadata.annotations = Some(
            notes
                .iter()
                .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        let ing = crate::model::Ing::from(&ing);
        let key = ObjectKey::new("default", "i");
        let mut diags = Diagnostics::default();
        let policy = Annotations {
            ing: &ing,
            key: &key,
            diags: &mut diags,
            secrets: &BTreeMap::new(),
            global_auth: None,
        }
        .policy();
        (policy, diags.into_sorted())
    }

    fn warned_about(diags: &[Diagnostic], name: &str) -> bool {
        diags.iter().any(|d| {
            d.severity == Severity::Warning && d.reason == Reason::InvalidAnnotation && d.message.contains(name)
        })
    }

    #[test]
    fn timeouts_past_the_cap_are_warnings_and_the_default() {
        for value in ["18446744073709551615", "18446744073709551616", "86401", "1441m"] {
            let (p, diags) = policy_of(&[
                ("proxy-connect-timeout", value),
                ("proxy-read-timeout", value),
                ("proxy-send-timeout", value),
            ]);
            assert_eq!(
                (p.connect_timeout, p.read_timeout, p.send_timeout),
                (None, None, None),
                "{value}"
            );
            for name in ["proxy-connect-timeout", "proxy-read-timeout", "proxy-send-timeout"] {
                assert!(warned_about(&diags, name), "{name}={value}: {diags:?}");
            }
        }
        let (p, diags) = policy_of(&[("proxy-read-timeout", "86400"), ("proxy-send-timeout", "1440m")]);
        assert_eq!(p.read_timeout, Some(Duration::from_secs(86400)));
        assert_eq!(p.send_timeout, Some(Duration::from_secs(86400)));
        assert!(diags.is_empty(), "{diags:?}");
    }

    /// `n * 60` overflowed here: a panic in compile for debug builds.
    #[test]
    fn minutes_that_overflow_are_a_warning() {
        let (p, diags) = policy_of(&[("proxy-read-timeout", "400000000000000000m")]);
        assert_eq!(p.read_timeout, None);
        assert!(warned_about(&diags, "proxy-read-timeout"), "{diags:?}");
    }

    #[test]
    fn cookie_lifetimes_past_the_cap_are_warnings_and_unset() {
        let (p, diags) = policy_of(&[
            ("affinity", "cookie"),
            ("session-cookie-expires", "300000000000"),
            ("session-cookie-max-age", "18446744073709551615"),
        ]);
        let a = p.affinity.expect("affinity stays on");
        assert_eq!((a.expires, a.max_age), (None, None));
        assert!(warned_about(&diags, "session-cookie-expires"), "{diags:?}");
        assert!(warned_about(&diags, "session-cookie-max-age"), "{diags:?}");
        let (p, diags) = policy_of(&[
            ("affinity", "cookie"),
            ("session-cookie-expires", "172800"),
            ("session-cookie-max-age", "31536000"),
        ]);
        let a = p.affinity.unwrap();
        assert_eq!((a.expires, a.max_age), (Some(172_800), Some(31_536_000)));
        assert!(diags.is_empty(), "{diags:?}");
    }

    #[test]
    fn tries_and_cors_max_age_are_capped() {
        let (p, diags) = policy_of(&[
            ("proxy-next-upstream-tries", "1000000"),
            ("enable-cors", "true"),
            ("cors-max-age", "18446744073709551615"),
        ]);
        assert_eq!(p.tries, Policy::DEFAULT_TRIES);
        assert_eq!(p.cors.unwrap().max_age, Cors::default().max_age);
        assert!(warned_about(&diags, "proxy-next-upstream-tries"), "{diags:?}");
        assert!(warned_about(&diags, "cors-max-age"), "{diags:?}");
        let (p, _) = policy_of(&[("proxy-next-upstream-tries", "0")]);
        assert_eq!(p.tries, usize::MAX, "0: every endpoint");
        let (p, _) = policy_of(&[("proxy-next-upstream-tries", "20")]);
        assert_eq!(p.tries, 20);
    }

    #[test]
    fn body_sizes_default_to_1m_and_overflow_is_a_warning() {
        let (p, diags) = policy_of(&[("proxy-body-size", "18446744073709551615g")]);
        assert_eq!(p.max_body_bytes, Some(1 << 20), "the default holds");
        assert!(warned_about(&diags, "proxy-body-size"), "{diags:?}");
        let (p, _) = policy_of(&[("proxy-body-size", "16g")]);
        assert_eq!(p.max_body_bytes, Some(16 << 30));
        let (p, diags) = policy_of(&[]);
        assert_eq!(p.max_body_bytes, Some(1 << 20), "ingress-nginx's 1m");
        assert!(diags.is_empty(), "{diags:?}");
        let (p, _) = policy_of(&[("proxy-body-size", "0")]);
        assert_eq!(p.max_body_bytes, None, "0 is no limit");
    }

    /// Reference arithmetic in u128, which cannot overflow for any u64 input.
    #[test]
    fn timeouts_match_wide_arithmetic() {
        let edges = [
            0,
            1,
            59,
            60,
            1439,
            1440,
            1441,
            86_399,
            86_400,
            86_401,
            u64::from(u32::MAX),
            u64::MAX / 60,
            u64::MAX / 60 + 1,
            u64::MAX,
        ];
        for n in edges {
            for (unit, mult) in [("", 1u128), ("s", 1), ("m", 60)] {
                let secs = u128::from(n) * mult;
                let expect = (1..=u128::from(Policy::MAX_TIMEOUT.as_secs()))
                    .contains(&secs)
                    .then(|| Duration::from_secs(secs as u64));
                assert_eq!(parse_timeout(&format!("{n}{unit}")), expect, "{n}{unit}");
            }
        }
    }

    /// xorshift64: deterministic, so a failure here fails the same way in CI and locally.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Generated values for every annotation ingress-nginx knows, built from pieces at and
    /// past each cap and integer width, with units, signs, spaces and non-ASCII digits: each
    /// is parsed or refused, never a panic, and what is kept stays within the caps and makes
    /// a Set-Cookie value. (The fuzz targets in fuzz/ go further; this runs with every
    /// `cargo test`.)
    #[test]
    fn generated_values_are_used_within_the_caps_or_refused() {
        const PIECES: &[&str] = &[
            "0",
            "1",
            "9",
            "60",
            "1440",
            "86400",
            "86401",
            "31536000",
            "315360000",
            "315360001",
            "4294967295",
            "4294967296",
            "18446744073709551615",
            "18446744073709551616",
            "400000000000000000",
            "99999999999999999999999999",
            "-",
            "+",
            ".",
            "e",
            "s",
            "m",
            "h",
            "ms",
            "k",
            "K",
            "g",
            "G",
            " ",
            "\t",
            ",",
            "/",
            "$1",
            "\u{663}",
            "\u{ff11}",
            "\0",
            "true",
            "cookie",
            "persistent",
            "None",
            "https://",
            "*",
        ];
        let names: Vec<&str> = known::ANNOTATIONS.iter().map(|(n, _)| *n).collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut notes: Vec<(String, String)> = Vec::new();
            if rng.below(2) == 0 {
                notes.push(("affinity".into(), "cookie".into()));
            }
            for _ in 0..1 + rng.below(6) {
                let name = names[rng.below(names.len())].to_string();
                let value: String = (0..rng.below(4)).map(|_| PIECES[rng.below(PIECES.len())]).collect();
                notes.push((name, value));
            }
            let notes: Vec<(&str, &str)> = notes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (p, _) = policy_of(&notes);
            for t in [p.connect_timeout, p.read_timeout, p.send_timeout]
                .into_iter()
                .flatten()
            {
                assert!(!t.is_zero() && t <= Policy::MAX_TIMEOUT, "{notes:?}");
            }
            assert!(
                p.tries == usize::MAX || (1..=Policy::MAX_TRIES).contains(&p.tries),
                "{notes:?}"
            );
            assert!(
                p.cors.as_ref().is_none_or(|c| c.max_age <= Cors::MAX_AGE_LIMIT),
                "{notes:?}"
            );
            // (The cookie made from any lifetime is balance::affinity's own test.)
            if let Some(a) = &p.affinity {
                for s in [a.expires, a.max_age].into_iter().flatten() {
                    assert!(s <= CookieAffinity::MAX_LIFETIME, "{notes:?}");
                }
            }
        }
    }
}
