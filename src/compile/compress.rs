//! The ingress-nginx ConfigMap's compression keys read into [`Compression`]: a bad value is a
//! message (the caller makes it a Warning on the ConfigMap) and its setting keeps the default.

use crate::config::compress::{BROTLI_LEVELS, Codec, Compression, GZIP_LEVELS, types};

/// The keys read here.
pub const KEYS: &[&str] = &[
    "use-gzip",
    "gzip-level",
    "gzip-min-length",
    "gzip-types",
    "enable-brotli",
    "brotli-level",
    "brotli-min-length",
    "brotli-types",
];

/// Largest min-length accepted (1 TiB): anything larger means "never" and is a typo.
const MAX_MIN_LENGTH: u64 = 1 << 40;
/// Most media types in one list.
const MAX_TYPES: usize = 256;

/// Reads the keys through `get` (a ConfigMap's data) over `base` (the command line's); returns the settings and a message for
/// each value that was not used.
pub fn read<'a>(base: Compression, get: impl Fn(&str) -> Option<&'a str>) -> (Compression, Vec<String>) {
    let mut problems = Vec::new();
    let mut c = base;
    for (codec, on, prefix, levels) in [
        (&mut c.gzip, "use-gzip", "gzip", GZIP_LEVELS),
        (&mut c.brotli, "enable-brotli", "brotli", BROTLI_LEVELS),
    ] {
        let mut key = |name: &str, expected: &str, parse: &mut dyn FnMut(&str, &mut Codec) -> bool| {
            if let Some(raw) = get(name)
                && !parse(raw.trim(), codec)
            {
                problems.push(format!("{name}={raw:?} is not {expected}; the default is kept"));
            }
        };
        key(on, "a boolean (\"true\" or \"false\")", &mut |v, k| {
            go_bool(v).map(|b| k.enabled = b).is_some()
        });
        let (lo, hi) = (*levels.start(), *levels.end());
        key(
            &format!("{prefix}-level"),
            &format!("a level from {lo} to {hi}"),
            &mut |v, k| {
                v.parse()
                    .ok()
                    .filter(|l| levels.contains(l))
                    .map(|l| k.level = l)
                    .is_some()
            },
        );
        key(
            &format!("{prefix}-min-length"),
            &format!("a length in bytes up to {MAX_MIN_LENGTH}"),
            &mut |v, k| {
                v.parse()
                    .ok()
                    .filter(|n| *n <= MAX_MIN_LENGTH)
                    .map(|n| k.min_length = n)
                    .is_some()
            },
        );
        key(
            &format!("{prefix}-types"),
            &format!("a list of up to {MAX_TYPES} media types (type/subtype, or *)"),
            &mut |v, k| {
                let list = types(v);
                let ok = !list.is_empty() && list.len() <= MAX_TYPES && list.iter().all(|t| media_type(t));
                if ok {
                    k.types = list;
                }
                ok
            },
        );
    }
    (c, problems)
}

/// Go's strconv.ParseBool, which ingress-nginx reads its booleans with.
pub(super) fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `*`, or `type/subtype` of token characters.
fn media_type(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    t == "*" || t.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn read_map(pairs: &[(&str, &str)]) -> (Compression, Vec<String>) {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        read(Compression::default(), |k| map.get(k).map(String::as_str))
    }

    #[test]
    fn nothing_set_is_the_default() {
        assert_eq!(read_map(&[]), (Compression::default(), vec![]));
    }

    #[test]
    fn every_key_is_read() {
        let (c, problems) = read_map(&[
            ("use-gzip", "true"),
            ("gzip-level", "6"),
            ("gzip-min-length", "1000"),
            ("gzip-types", "text/plain  application/JSON"),
            ("enable-brotli", "True"),
            ("brotli-level", "11"),
            ("brotli-min-length", "0"),
            ("brotli-types", "*"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(c.gzip.enabled && c.brotli.enabled);
        assert_eq!((c.gzip.level, c.gzip.min_length), (6, 1000));
        assert_eq!(c.gzip.types, ["text/plain", "application/json"]);
        assert_eq!((c.brotli.level, c.brotli.min_length), (11, 0));
        assert_eq!(c.brotli.types, ["*"]);
    }

    #[test]
    fn bad_values_keep_the_default_and_say_so() {
        let (c, problems) = read_map(&[
            ("use-gzip", "yes"),
            ("gzip-level", "10"),
            ("gzip-min-length", "-1"),
            ("gzip-types", "text/plain nonsense"),
            ("enable-brotli", "1"),
            ("brotli-level", "99999999999999999999"),
            ("brotli-min-length", "1099511627777"),
            ("brotli-types", " "),
        ]);
        assert_eq!(
            c,
            Compression {
                brotli: Codec {
                    enabled: true,
                    ..Compression::default().brotli
                },
                ..Compression::default()
            }
        );
        assert_eq!(problems.len(), 7, "{problems:?}");
        assert!(
            problems[0].starts_with("use-gzip=\"yes\" is not a boolean"),
            "{}",
            problems[0]
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("gzip-level=\"10\" is not a level from 1 to 9"))
        );
        let many = vec!["text/plain"; MAX_TYPES + 1].join(" ");
        assert_eq!(read_map(&[("gzip-types", &many)]).1.len(), 1);
    }
}
