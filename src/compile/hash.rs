//! `upstream-hash-by`: the annotation read into a typed key template ([`HashBy`]).

use std::sync::Arc;

use super::annotations::{Annotations, valid_cookie_name};
use crate::config::diagnostic::{ObjectRef, Reason, Severity};
use crate::config::hash::{HashBy, KeyPart};

/// Parses an `upstream-hash-by` value: nginx variables (`$name` or `${name}`) and literal
/// text, in the characters ingress-nginx accepts (letters, digits, `-`, `_`, `$`, `{`, `}`).
pub fn parse_template(v: &str) -> Result<Vec<KeyPart>, String> {
    if v.is_empty() {
        return Err("empty".into());
    }
    if v.len() > HashBy::MAX_LEN {
        return Err(format!("longer than {} characters", HashBy::MAX_LEN));
    }
    if let Some(c) = v.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_${}".contains(*c))) {
        return Err(format!(
            "{c:?} is not allowed (letters, digits, -, _, $, {{ and }} are)"
        ));
    }
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut parts: Vec<KeyPart> = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let (part, after) = match rest.strip_prefix('$') {
            Some(r) => {
                let (name, after) = match r.strip_prefix('{') {
                    Some(inner) => {
                        let end = inner.find('}').ok_or("a ${ without its }")?;
                        (&inner[..end], &inner[end + 1..])
                    }
                    None => r.split_at(r.find(|c| !name_char(c)).unwrap_or(r.len())),
                };
                if name.is_empty() || !name.chars().all(name_char) {
                    return Err(format!("${name:?} is no variable name"));
                }
                (variable(name)?, after)
            }
            None => {
                let end = rest.find('$').unwrap_or(rest.len());
                let text = &rest[..end];
                if text.contains(['{', '}']) {
                    return Err("{ and } only go around a variable name, as in ${host}".into());
                }
                (KeyPart::Text(text.to_string()), &rest[end..])
            }
        };
        parts.push(part);
        if parts.len() > HashBy::MAX_PARTS {
            return Err(format!("more than {} variables and texts", HashBy::MAX_PARTS));
        }
        rest = after;
    }
    Ok(parts)
}

/// The variables Portico knows the value of.
fn variable(name: &str) -> Result<KeyPart, String> {
    Ok(match name {
        "request_uri" => KeyPart::RequestUri,
        "remote_addr" => KeyPart::RemoteAddr,
        "binary_remote_addr" => KeyPart::BinaryRemoteAddr,
        "host" => KeyPart::Host,
        "uri" | "document_uri" => KeyPart::Uri,
        "args" | "query_string" => KeyPart::Args,
        _ => {
            if let Some(h) = name.strip_prefix("http_").filter(|h| !h.is_empty()) {
                KeyPart::Header(h.to_ascii_lowercase().replace('_', "-"))
            } else if let Some(c) = name.strip_prefix("cookie_").filter(|c| valid_cookie_name(c)) {
                KeyPart::Cookie(c.to_string())
            } else if let Some(a) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                KeyPart::Arg(a.to_string())
            } else {
                return Err(format!(
                    "${name} is not a variable Portico knows ($request_uri, $uri, $args, $host, $remote_addr, $binary_remote_addr, $http_NAME, $cookie_NAME, $arg_NAME)"
                ));
            }
        }
    })
}

impl Annotations<'_> {
    /// `upstream-hash-by`. Cookie affinity wins over it, as in ingress-nginx (a Warning says
    /// so, since one of the two annotations then does nothing).
    pub(super) fn hash_by(&mut self, affinity: bool) -> Option<Arc<HashBy>> {
        let (prefix, raw) = super::ingress::annotation(self.ing, "upstream-hash-by")?;
        let raw = raw.trim();
        let parts = match parse_template(raw) {
            Ok(p) => p,
            Err(why) => {
                self.warn_hash(format!(
                    "annotation {prefix}upstream-hash-by={raw:?}: {why}; requests are balanced as without it"
                ));
                return None;
            }
        };
        if affinity {
            self.warn_hash(format!(
                "annotation {prefix}upstream-hash-by has no effect: cookie affinity is set, and wins as in ingress-nginx"
            ));
            return None;
        }
        let subset = self.bool("upstream-hash-by-subset", false).then(|| {
            let expected = format!("a whole number up to {}", HashBy::MAX_SUBSET);
            let fallback = format!("using {}", HashBy::DEFAULT_SUBSET);
            match self.parsed("upstream-hash-by-subset-size", &expected, &fallback, |v| {
                v.parse::<u32>().ok().filter(|n| *n <= HashBy::MAX_SUBSET)
            }) {
                None | Some(0) => HashBy::DEFAULT_SUBSET,
                Some(n) => n,
            }
        });
        Some(Arc::new(HashBy {
            template: raw.to_string(),
            parts,
            subset,
        }))
    }

    fn warn_hash(&mut self, msg: String) {
        self.diags.push(
            ObjectRef::ingress(self.key),
            Severity::Warning,
            Reason::InvalidAnnotation,
            msg,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeyPart::*;

    #[test]
    fn variables_and_text_become_parts() {
        assert_eq!(parse_template("$request_uri").unwrap(), [RequestUri]);
        assert_eq!(parse_template("$host$request_uri").unwrap(), [Host, RequestUri]);
        assert_eq!(
            parse_template("${request_uri}-text-value").unwrap(),
            [RequestUri, Text("-text-value".into())]
        );
        assert_eq!(
            parse_template("$http_X_User_Id-$cookie_session_id$arg_page").unwrap(),
            [
                Header("x-user-id".into()),
                Text("-".into()),
                Cookie("session_id".into()),
                Arg("page".into())
            ]
        );
        assert_eq!(
            parse_template("tenant${remote_addr}$binary_remote_addr$uri$args").unwrap(),
            [Text("tenant".into()), RemoteAddr, BinaryRemoteAddr, Uri, Args]
        );
    }

    #[test]
    fn bad_templates_say_why() {
        for (v, why) in [
            ("", "empty"),
            ("$", "no variable"),
            ("${}", "no variable"),
            ("${host", "without its }"),
            ("$server_name", "not a variable Portico knows"),
            ("$http_", "not a variable Portico knows"),
            ("$host_name", "not a variable Portico knows"),
            ("$request_uri/x", "not allowed"),
            ("$host; proxy_pass", "not allowed"),
            ("a}b", "only go around"),
            ("é", "not allowed"),
        ] {
            let err = parse_template(v).unwrap_err();
            assert!(err.contains(why), "{v:?}: {err}");
        }
        let long = "a".repeat(HashBy::MAX_LEN + 1);
        assert!(parse_template(&long).unwrap_err().contains("longer"));
        let many = "$host-".repeat(HashBy::MAX_PARTS);
        assert!(parse_template(&many).unwrap_err().contains("more than"));
        assert!(parse_template(&"$host".repeat(HashBy::MAX_PARTS)).is_ok());
    }
}
