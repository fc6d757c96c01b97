//! Typed reading of an Ingress's annotations (Portico's `portico.dev/` spelling first, then
//! ingress-nginx's `nginx.ingress.kubernetes.io/`). An invalid value is a Warning diagnostic
//! and the setting keeps its default; it never stops the Ingress from being served.

use k8s_openapi::api::networking::v1::Ingress;

use super::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use super::ingress::annotation;
use crate::balance::Algorithm;
use crate::balance::affinity::{CookieAffinity, Mode, SameSite, valid_attribute, valid_cookie_name};
use crate::model::ObjectKey;
use crate::routes::Policy;

/// Reads annotations of one Ingress, reporting bad values against it.
pub struct Annotations<'a> {
    pub ing: &'a Ingress,
    pub key: &'a ObjectKey,
    pub diags: &'a mut Diagnostics,
}

impl Annotations<'_> {
    fn invalid(&mut self, prefix: &str, name: &str, value: &str, expected: &str, fallback: &str) {
        self.diags.push(
            ObjectRef::ingress(self.key),
            Severity::Warning,
            Reason::InvalidAnnotation,
            format!("annotation {prefix}{name}={value:?} is not {expected}; {fallback}"),
        );
    }

    /// A value parsed by `parse`; `None` when absent or invalid (invalid is reported).
    fn parsed<T>(
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

    fn seconds(&mut self, name: &str) -> Option<u64> {
        self.parsed(name, "a whole number of seconds", "not set", |v| v.parse().ok())
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
                "a number of tries (0: every endpoint)",
                "using 3",
                |v| v.parse::<usize>().ok(),
            )
            .map(|n| if n == 0 { usize::MAX } else { n })
            .unwrap_or(Policy::DEFAULT_TRIES);
        Policy {
            affinity: self.affinity(),
            load_balance,
            tries,
        }
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
        c.max_age = self.seconds("session-cookie-max-age");
        c.expires = self.seconds("session-cookie-expires");
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
