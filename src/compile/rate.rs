//! `limit-rate` and `limit-rate-after` (annotations and ConfigMap keys) → [`ResponseRate`].
//! As in ingress-nginx, both are whole numbers of kilobytes (1024 bytes): it renders them as
//! nginx's `limit_rate Nk` and `limit_rate_after Nk`, for an annotation and a key alike.

use crate::model::Ing as Ingress;

use super::annotations::Annotations;
use super::ingress::annotation;
use crate::config::global::RouteDefaults;
use crate::config::policy::Policy;
use crate::config::rate::ResponseRate;

/// The two settings: name, largest value in kilobytes.
pub(super) const RATE: (&str, u64) = ("limit-rate", ResponseRate::MAX_KIB);
pub(super) const AFTER: (&str, u64) = ("limit-rate-after", ResponseRate::MAX_AFTER_KIB);

/// What a value of `setting` must be, for the Warning about one that is not.
pub(super) fn expected((name, max): (&str, u64)) -> String {
    let unit = if name == RATE.0 {
        "kilobytes per second"
    } else {
        "kilobytes"
    };
    format!("a whole number of {unit} up to {max}")
}

/// A value of `setting` in bytes: a whole number of kilobytes up to its cap.
pub(super) fn kib((_, max): (&str, u64), v: &str) -> Option<u64> {
    v.parse::<u64>().ok().filter(|n| *n <= max)?.checked_mul(1024)
}

impl Annotations<'_> {
    /// The route's pace from its annotations; an absent or invalid value (reported) is 0,
    /// which the `--configmap`'s value replaces in [`apply_defaults`].
    pub fn response_rate(&mut self) -> Option<ResponseRate> {
        let mut read = |setting: (&str, u64), fallback: &str| {
            self.parsed(setting.0, &expected(setting), fallback, |v| kib(setting, v))
                .unwrap_or(0)
        };
        let rate = read(RATE, "the ConfigMap's limit-rate (default: no limit) applies");
        let after = read(AFTER, "the ConfigMap's limit-rate-after (default: 0) applies");
        ResponseRate::new(rate, after)
    }
}

/// The pace of an Ingress with the `--configmap`'s `limit-rate` and `limit-rate-after` where
/// its own annotation is absent or invalid, each on its own (as ingress-nginx falls back).
pub(super) fn apply_defaults(p: &mut Policy, ing: &Ingress, d: &RouteDefaults) {
    let own = |setting: (&str, u64)| annotation(ing, setting.0).and_then(|(_, v)| kib(setting, v.trim()));
    let rate = own(RATE).unwrap_or(d.limit_rate);
    let after = own(AFTER).unwrap_or(d.limit_rate_after);
    p.rate = ResponseRate::new(rate, after);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::diagnostic::{Diagnostics, Reason};
    use crate::fixture;
    use crate::model::ObjectKey;

    /// The pace an Ingress with `notes` gets, over ConfigMap defaults `d`, and how many
    /// Warnings its annotations gave.
    fn pace(notes: &[(&str, &str)], d: &RouteDefaults) -> (Option<ResponseRate>, usize) {
        let mut ing = fixture::ingress("default", "i");
        for (k, v) in notes {
            ing = ing.annotation(k, v);
        }
        let ing = ing.ing();
        let key = ObjectKey::new("default", "i");
        let mut diags = Diagnostics::default();
        let secrets = BTreeMap::new();
        let mut p = Policy {
            rate: Annotations::of(&ing, &key, &mut diags, &secrets).response_rate(),
            ..Policy::default()
        };
        if *d != RouteDefaults::default() {
            apply_defaults(&mut p, &ing, d);
        }
        let diags = diags.into_sorted();
        assert!(diags.iter().all(|d| d.reason == Reason::InvalidAnnotation), "{diags:?}");
        (p.rate, diags.len())
    }

    fn rate(kib: u64, after_kib: u64) -> Option<ResponseRate> {
        ResponseRate::new(kib * 1024, after_kib * 1024)
    }

    #[test]
    fn both_spellings_in_kilobytes() {
        let none = RouteDefaults::default();
        let nginx = [
            ("nginx.ingress.kubernetes.io/limit-rate", "200"),
            ("nginx.ingress.kubernetes.io/limit-rate-after", "100"),
        ];
        assert_eq!(pace(&nginx, &none), (rate(200, 100), 0));
        let ours = [("portico.dev/limit-rate", "1"), ("portico.dev/limit-rate-after", "0")];
        assert_eq!(pace(&ours, &none), (rate(1, 0), 0));
        assert_eq!(pace(&[], &none), (None, 0));
        let zero = [
            ("nginx.ingress.kubernetes.io/limit-rate", "0"),
            ("nginx.ingress.kubernetes.io/limit-rate-after", "100"),
        ];
        assert_eq!(pace(&zero, &none), (None, 0), "0 is no limit; after alone does nothing");
    }

    #[test]
    fn bad_and_huge_values_are_warnings_and_no_limit() {
        let none = RouteDefaults::default();
        let over = (ResponseRate::MAX_KIB + 1).to_string();
        for bad in ["-1", "1.5", "200k", "fast", "18446744073709551616", over.as_str()] {
            let notes = [("nginx.ingress.kubernetes.io/limit-rate", bad)];
            assert_eq!(pace(&notes, &none), (None, 1), "{bad:?}");
        }
        let max = ResponseRate::MAX_KIB.to_string();
        let notes = [
            ("nginx.ingress.kubernetes.io/limit-rate", max.as_str()),
            ("nginx.ingress.kubernetes.io/limit-rate-after", "1099511627777"),
        ];
        assert_eq!(pace(&notes, &none), (rate(ResponseRate::MAX_KIB, 0), 1));
    }

    #[test]
    fn configmap_keys_are_kilobytes_too() {
        let cm = fixture::config_map(
            "ingress-nginx",
            "c",
            &[("limit-rate", "100"), ("limit-rate-after", "10k")],
        );
        let opts = crate::compile::Options {
            configmap: Some(ObjectKey::new("ingress-nginx", "c")),
            ..Default::default()
        };
        let mut diags = Diagnostics::default();
        let g = crate::compile::global::settings(&fixture::snapshot([cm.into()]), &opts, &mut diags);
        assert_eq!((g.routes.limit_rate, g.routes.limit_rate_after), (100 * 1024, 0));
        let diags = diags.into_sorted();
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].message.contains("limit-rate-after"), "{diags:?}");
    }

    #[test]
    fn configmap_values_fill_in_key_by_key() {
        let d = RouteDefaults {
            limit_rate: 50 * 1024,
            limit_rate_after: 10 * 1024,
            ..RouteDefaults::default()
        };
        assert_eq!(pace(&[], &d), (rate(50, 10), 0));
        let own_rate = [("nginx.ingress.kubernetes.io/limit-rate", "7")];
        assert_eq!(pace(&own_rate, &d), (rate(7, 10), 0));
        let off = [("nginx.ingress.kubernetes.io/limit-rate", "0")];
        assert_eq!(pace(&off, &d), (None, 0), "the annotation's 0 wins");
        let bad = [
            ("nginx.ingress.kubernetes.io/limit-rate", "lots"),
            ("nginx.ingress.kubernetes.io/limit-rate-after", "3"),
        ];
        assert_eq!(pace(&bad, &d), (rate(50, 3), 1), "an invalid one falls back");
    }
}
