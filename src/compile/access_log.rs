//! `log-format-upstream`, `log-format-escape-json` and `log-format-escape-none` read into a
//! typed [`LogFormat`]: nothing a user writes is ever evaluated, only matched to known variables.

use std::sync::Arc;

use crate::config::access_log::{Escape, LogFormat, Part, Var};
use crate::config::vars::{Token, lex};

/// Longest `log-format-upstream` accepted, in bytes.
pub const MAX_FORMAT: usize = 8 * 1024;

/// The access-log format the ConfigMap's keys (read by `get`) ask for, and the problems found
/// (each one a Warning). A value that cannot be used leaves the default in place.
pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> (Arc<LogFormat>, Vec<String>) {
    let mut problems = Vec::new();
    let mut flag = |name: &str| match get(name).map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            let shown: String = other.chars().take(40).collect();
            problems.push(format!(
                "{name}: {shown:?} is not \"true\" or \"false\"; it stays false"
            ));
            false
        }
    };
    // ingress-nginx's template tests escape-none first.
    let escape = if flag("log-format-escape-none") {
        Escape::None
    } else if flag("log-format-escape-json") {
        Escape::Json
    } else {
        Escape::Default
    };
    let parts = match get("log-format-upstream").map(str::trim) {
        None | Some("") => LogFormat::default().parts,
        Some(t) if t.len() > MAX_FORMAT => {
            problems.push(format!(
                "log-format-upstream is longer than {MAX_FORMAT} bytes; ingress-nginx's default format is used"
            ));
            LogFormat::default().parts
        }
        Some(t) => {
            let (parts, unknown) = parse(t);
            for name in unknown {
                problems.push(format!(
                    "log-format-upstream: Portico does not know the variable ${name}; it is written as \"-\""
                ));
            }
            parts
        }
    };
    (Arc::new(LogFormat { parts, escape }), problems)
}

/// Splits an nginx `log_format` template into text and variables (`$name` or `${name}`, read
/// by [`lex`] as every template is); the second value names the variables Portico does not
/// know (each once).
pub fn parse(template: &str) -> (Vec<Part>, Vec<String>) {
    let mut parts = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut text = String::new();
    for token in lex(template) {
        let name = match token {
            Token::Text(t) => {
                text.push_str(t);
                continue;
            }
            // A `$` that starts no variable is text, as nginx keeps it.
            Token::Dollar => {
                text.push('$');
                continue;
            }
            Token::Name(name) => name,
        };
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        let var = variable(name);
        if var == Var::Unknown && !unknown.iter().any(|u| u == name) {
            unknown.push(name.to_string());
        }
        parts.push(Part::Var(var));
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    (parts, unknown)
}

fn variable(name: &str) -> Var {
    let lower = name.to_ascii_lowercase();
    if let Some(header) = lower.strip_prefix("http_")
        && !header.is_empty()
    {
        return Var::Http(header.replace('_', "-"));
    }
    Var::NAMES
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, v)| v.clone())
        .or_else(|| crate::config::vars::Var::named(&lower).map(Var::Shared))
        .unwrap_or(Var::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::access_log::DEFAULT_FORMAT;
    use std::collections::BTreeMap;

    #[test]
    fn the_default_format_parses_to_the_default() {
        let (parts, unknown) = parse(DEFAULT_FORMAT);
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(parts, LogFormat::default().parts);
    }

    #[test]
    fn variables_braces_headers_and_stray_dollars() {
        let (parts, unknown) = parse("a $ ${host}x $http_X_Forwarded_For $nope $nope$status$ $cookie_a");
        assert_eq!(
            parts,
            vec![
                Part::Text("a $ ".into()),
                Part::Var(Var::Host),
                Part::Text("x ".into()),
                Part::Var(Var::Http("x-forwarded-for".into())),
                Part::Text(" ".into()),
                Part::Var(Var::Unknown),
                Part::Text(" ".into()),
                Part::Var(Var::Unknown),
                Part::Var(Var::Status),
                Part::Text("$ ".into()),
                Part::Var(Var::Shared(crate::config::vars::Var::Cookie("a".into()))),
            ]
        );
        assert_eq!(unknown, vec!["nope".to_string()]);
    }

    #[test]
    fn keys_set_escaping_and_bad_values_warn() {
        let mut m = BTreeMap::new();
        let get = |m: &BTreeMap<&str, String>| read(|k| m.get(k).map(String::as_str));
        assert_eq!(get(&m).0.escape, Escape::Default);
        m.insert("log-format-escape-json", "true".into());
        assert_eq!(get(&m).0.escape, Escape::Json);
        m.insert("log-format-escape-none", "true".into());
        assert_eq!(get(&m).0.escape, Escape::None);
        m.insert("log-format-escape-none", "yes".into());
        let (f, problems) = get(&m);
        assert_eq!(f.escape, Escape::Json);
        assert_eq!(problems.len(), 1);
        m.insert("log-format-upstream", "x".repeat(MAX_FORMAT + 1));
        let (f, problems) = get(&m);
        assert_eq!(f.parts, LogFormat::default().parts);
        assert_eq!(problems.len(), 2);
    }
}
