//! `upstream-hash-by`: the annotation read into a typed key template ([`HashBy`]).

use std::sync::Arc;

use super::annotations::Annotations;
use crate::config::diagnostic::{ObjectRef, Reason, Severity};
use crate::config::hash::HashBy;
use crate::config::vars::{Captures, Part, Template};

/// Parses an `upstream-hash-by` value: nginx variables (`$name` or `${name}`) and literal
/// text, in the characters ingress-nginx accepts (letters, digits, `-`, `_`, `$`, `{`, `}`).
pub fn parse_template(v: &str) -> Result<Template, String> {
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
    let t = Template::parse(v, Captures::default())?;
    if t.parts()
        .iter()
        .any(|p| matches!(p, Part::Text(t) if t.contains(['{', '}'])))
    {
        return Err("{ and } only go around a variable name, as in ${host}".into());
    }
    if t.parts().len() > HashBy::MAX_PARTS {
        return Err(format!("more than {} variables and texts", HashBy::MAX_PARTS));
    }
    Ok(t)
}

impl Annotations<'_> {
    /// `upstream-hash-by`. Cookie affinity wins over it, as in ingress-nginx (a Warning says
    /// so, since one of the two annotations then does nothing).
    pub(super) fn hash_by(&mut self, affinity: bool) -> Option<Arc<HashBy>> {
        let (prefix, raw) = super::ingress::annotation(self.ing, "upstream-hash-by")?;
        let raw = raw.trim();
        let key = match parse_template(raw) {
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
            key,
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
    use crate::config::vars::Var::{self, *};

    fn parts(v: &str) -> Vec<Part> {
        parse_template(v).unwrap().parts().to_vec()
    }

    fn text(t: &str) -> Part {
        Part::Text(t.into())
    }

    #[test]
    fn variables_and_text_become_parts() {
        let var = Part::Var;
        assert_eq!(parts("$request_uri"), [var(RequestUri)]);
        assert_eq!(parts("$host$request_uri"), [var(Host), var(RequestUri)]);
        assert_eq!(
            parts("${request_uri}-text-value"),
            [var(RequestUri), text("-text-value")]
        );
        assert_eq!(
            parts("$http_X_User_Id-$cookie_session_id$arg_page"),
            [
                var(Http("x-user-id".into())),
                text("-"),
                var(Cookie("session_id".into())),
                var(Var::Arg("page".into()))
            ]
        );
        assert_eq!(
            parts("tenant${remote_addr}$binary_remote_addr$uri$args"),
            [
                text("tenant"),
                var(RemoteAddr),
                var(BinaryRemoteAddr),
                var(Uri),
                var(Args)
            ]
        );
        assert_eq!(parts("$server_name"), [var(ServerName)]);
    }

    #[test]
    fn bad_templates_say_why() {
        for (v, why) in [
            ("", "empty"),
            ("$", "starts no variable"),
            ("${}", "starts no variable"),
            ("${host", "starts no variable"),
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
