//! Rewrites of upstream response fields, as nginx's `proxy_redirect`, `proxy_cookie_path`
//! and `proxy_cookie_domain` make them: plain data, applied by `proxy::policy::response`.

use serde::Serialize;

use super::pattern::Pattern;
use super::vars::{Captures, Template};

/// The longest rewritten value: past it the field is left as the upstream sent it.
pub const MAX_OUT: usize = 16 * 1024;

/// What to find: a text (which may name nginx variables), or nginx's `~` (case-sensitive)
/// and `~*` (case-insensitive) regular expression, searched anywhere in the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Find {
    Text(Template),
    Regex { source: String, re: Pattern },
}

impl Serialize for Find {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Find::Text(t) => s.serialize_str(t.source()),
            Find::Regex { source, .. } => s.serialize_str(source),
        }
    }
}

/// Fills in a template's variables for one response (the request's, see `proxy::vars`),
/// with the captures of the regex that matched, if any; `None` past the output limit.
pub type Expand<'a> = &'a dyn Fn(&Template, Option<&regex::Captures<'_>>) -> Option<String>;

/// A text to find and what to put in its place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replace {
    pub from: Find,
    pub to: Template,
}

impl Replace {
    /// nginx's `from to` pair: `from` is `~regex`, `~*regex` (any case) or a text; both may
    /// name variables, and `to` the regex's captures.
    pub fn parse(from: &str, to: &str) -> Result<Replace, String> {
        let Some(src) = from.strip_prefix('~') else {
            // `$1`.. without a regex of its own are the route regex's, as nginx's last match.
            let route = Captures {
                numbered: true,
                named: &[],
            };
            return Ok(Replace {
                from: Find::Text(Template::parse(from, route)?),
                to: Template::parse(to, route)?,
            });
        };
        let (ci, src) = match src.strip_prefix('*') {
            Some(s) => (true, s),
            None => (false, src),
        };
        let re = Pattern::new(src, ci).map_err(|e| format!("{from:?} is not a valid regular expression: {e}"))?;
        let names: Vec<(usize, &str)> =
            re.0.capture_names()
                .enumerate()
                .filter_map(|(i, n)| n.map(|n| (i, n)))
                .collect();
        let to = Template::parse(
            to,
            Captures {
                numbered: true,
                named: &names,
            },
        )?;
        Ok(Replace {
            from: Find::Regex {
                source: from.to_string(),
                re: re.clone(),
            },
            to,
        })
    }

    /// A text form: `from` starts (or, for a domain, is) the value. A regex form: when it
    /// matches anywhere, the whole value becomes `to` with its captures, as nginx does.
    fn apply(&self, value: &str, vars: Expand<'_>, whole: bool) -> Option<String> {
        match &self.from {
            Find::Text(t) => {
                let from_owned;
                let from = match t.literal() {
                    Some(f) => f,
                    None => {
                        from_owned = vars(t, None)?;
                        &from_owned
                    }
                };
                let rest = if whole {
                    let bare = value.trim();
                    let bare = bare.strip_prefix('.').unwrap_or(bare);
                    let want = from.strip_prefix('.').unwrap_or(from);
                    bare.eq_ignore_ascii_case(want).then_some("")?
                } else {
                    value.strip_prefix(from)?
                };
                let mut to = match self.to.literal() {
                    Some(l) => l.to_string(),
                    None => vars(&self.to, None)?,
                };
                to.push_str(rest);
                (to.len() <= MAX_OUT).then_some(to)
            }
            Find::Regex { re, .. } => {
                let caps = re.0.captures(value)?;
                vars(&self.to, Some(&caps)).filter(|v| v.len() <= MAX_OUT)
            }
        }
    }
}

/// What an Ingress asks to change in its upstreams' response fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResponseRewrite {
    /// `proxy-redirect-from`/`-to`: a Location (or Refresh `url=`) value starting with `from`
    /// (case-sensitive), or matching its regex, is rewritten.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Replace>,
    /// `proxy-cookie-path`: a Set-Cookie `Path` starting with `from` (case-sensitive), or
    /// matching its regex, is rewritten.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_path: Option<Replace>,
    /// `proxy-cookie-domain`: a Set-Cookie `Domain` equal to `from` (any case, a leading dot
    /// on either ignored), or matching its regex, becomes `to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_domain: Option<Replace>,
}

impl ResponseRewrite {
    /// The Location or Refresh-URL value rewritten, when `from` finds it.
    pub fn redirect(&self, value: &str, vars: Expand<'_>) -> Option<String> {
        self.redirect.as_ref()?.apply(value, vars, false)
    }

    /// A Set-Cookie value with its Path and Domain attributes rewritten; `None` when nothing
    /// changed. The cookie's own name and value are never touched, and a replacement that
    /// would add an attribute (a `;` or `,` from a capture or variable) is not made.
    pub fn cookie(&self, set_cookie: &str, vars: Expand<'_>) -> Option<String> {
        let mut parts = set_cookie.split(';');
        let mut out = String::with_capacity(set_cookie.len() + 16);
        out.push_str(parts.next().unwrap_or(""));
        let mut changed = false;
        for attr in parts {
            out.push(';');
            let trimmed = attr.trim_start();
            let lead = &attr[..attr.len() - trimmed.len()];
            let (name, value) = trimmed.split_once('=').unwrap_or((trimmed, ""));
            let new = if name.trim_end().eq_ignore_ascii_case("path") {
                self.cookie_path.as_ref().and_then(|r| r.apply(value, vars, false))
            } else if name.trim_end().eq_ignore_ascii_case("domain") {
                self.cookie_domain.as_ref().and_then(|r| r.apply(value, vars, true))
            } else {
                None
            };
            match new.filter(|v| !v.contains([';', ','])) {
                Some(v) => {
                    changed = true;
                    out.push_str(lead);
                    out.push_str(name);
                    out.push('=');
                    out.push_str(&v);
                }
                None => out.push_str(attr),
            }
        }
        changed.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vars::{Part, Var};

    /// The request's variables as `proxy::vars` fills them for `https://Front.example:8443`.
    fn vars_of(http_host: &'static str) -> impl Fn(&Template, Option<&regex::Captures<'_>>) -> Option<String> {
        move |t: &Template, caps: Option<&regex::Captures<'_>>| {
            let mut out = String::new();
            for p in t.parts() {
                match p {
                    Part::Text(s) => out.push_str(s),
                    Part::Var(Var::Scheme) => out.push_str("https"),
                    Part::Var(Var::Host) => out.push_str("front.example"),
                    Part::Var(Var::HttpHost) => out.push_str(http_host),
                    Part::Var(Var::ServerPort) => out.push_str("8443"),
                    Part::Var(v) => panic!("{v:?}"),
                    Part::Capture(i) => out.push_str(caps.and_then(|c| c.get(*i)).map_or("", |m| m.as_str())),
                }
            }
            Some(out)
        }
    }

    #[allow(non_snake_case)]
    fn VARS() -> impl Fn(&Template, Option<&regex::Captures<'_>>) -> Option<String> {
        vars_of("Front.example:8443")
    }

    fn rw(redirect: Option<(&str, &str)>, path: Option<(&str, &str)>, domain: Option<(&str, &str)>) -> ResponseRewrite {
        let r = |p: Option<(&str, &str)>| p.map(|(from, to)| Replace::parse(from, to).unwrap());
        ResponseRewrite {
            redirect: r(redirect),
            cookie_path: r(path),
            cookie_domain: r(domain),
        }
    }

    /// The examples of nginx's proxy_redirect and proxy_cookie_* documentation.
    #[test]
    fn rewrites_as_nginx_documents() {
        let r = rw(
            Some(("http://localhost:8000/two/", "http://frontend/one/")),
            Some(("/two/", "/")),
            Some(("localhost", "example.org")),
        );
        let redirect = |v| r.redirect(v, &VARS());
        assert_eq!(
            redirect("http://localhost:8000/two/some/uri/").as_deref(),
            Some("http://frontend/one/some/uri/")
        );
        assert_eq!(redirect("http://LOCALHOST:8000/two/"), None, "case-sensitive");
        assert_eq!(redirect("/two/"), None);
        let cookie = |v| r.cookie(v, &VARS());
        assert_eq!(
            cookie("a=b; path=/two/some/uri/; Domain=.LocalHost; HttpOnly").as_deref(),
            Some("a=b; path=/some/uri/; Domain=example.org; HttpOnly")
        );
        assert_eq!(
            cookie("path=/two/x; Path=/other"),
            None,
            "the name=value pair is the cookie's"
        );
        assert_eq!(cookie("a=b; Domain=other.org; Path=/three"), None);
        assert_eq!(cookie("a=b;Path=/two/x").as_deref(), Some("a=b;Path=/x"));
    }

    /// nginx's regular expression forms, with the documentation's examples.
    #[test]
    fn regex_forms_replace_the_whole_value_with_captures() {
        // proxy_redirect ~^(http://[^:]+):\d+(/.+)$ $1$2;
        let r = rw(Some((r"~^(http://[^:]+):\d+(/.+)$", "$1$2")), None, None);
        assert_eq!(
            r.redirect("http://upstream:8080/a/b?c", &VARS()).as_deref(),
            Some("http://upstream/a/b?c")
        );
        assert_eq!(r.redirect("http://upstream/a", &VARS()), None);
        assert_eq!(r.redirect("HTTP://upstream:1/a", &VARS()), None, "~ is case-sensitive");
        // proxy_redirect ~*/user/([^/]+)/(.+)$ http://$1.example.com/$2;
        let r = rw(Some(("~*/user/([^/]+)/(.+)$", "http://$1.example.com/$2")), None, None);
        assert_eq!(
            r.redirect("http://up/USER/bob/page", &VARS()).as_deref(),
            Some("http://bob.example.com/page"),
            "searched anywhere, any case, the whole value replaced"
        );
        // proxy_cookie_path ~*^/user/([^/]+) /u/$1;
        // proxy_cookie_domain ~\.(?P<sl_domain>[-0-9a-z]+\.[a-z]+)$ $sl_domain;
        let r = rw(
            None,
            Some(("~*^/user/([^/]+)", "/u/$1")),
            Some((r"~\.(?P<sl_domain>[-0-9a-z]+\.[a-z]+)$", "$sl_domain")),
        );
        assert_eq!(
            r.cookie("s=1; Path=/User/ann/x; Domain=.www.example.org", &VARS())
                .as_deref(),
            Some("s=1; Path=/u/ann; Domain=example.org")
        );
        assert_eq!(r.cookie("s=1; Path=/users; Domain=example", &VARS()), None);
    }

    /// Variables in the replacement (and the text to find), as nginx's
    /// `proxy_redirect http://localhost:8000/ http://$host:$server_port/;`.
    #[test]
    fn variables_are_the_requests() {
        let r = rw(
            Some(("http://localhost:8000/", "$scheme://$host:$server_port/")),
            Some(("/$host/", "/")),
            Some(("www.$host", "${host}")),
        );
        assert_eq!(
            r.redirect("http://localhost:8000/a", &VARS()).as_deref(),
            Some("https://front.example:8443/a")
        );
        assert_eq!(
            r.cookie("a=b; Path=/front.example/x; Domain=www.front.example", &VARS())
                .as_deref(),
            Some("a=b; Path=/x; Domain=front.example")
        );
        let r = rw(Some(("/", "http://$http_host/")), None, None);
        assert_eq!(
            r.redirect("/a", &VARS()).as_deref(),
            Some("http://Front.example:8443/a")
        );
        // A capture that would add an attribute is not put in.
        let r = rw(None, Some(("~^/(.*)$", "/$1")), None);
        assert_eq!(r.cookie("a=b; Path=/x", &VARS()).as_deref(), Some("a=b; Path=/x"));
        let r = rw(None, None, Some(("x", "$http_host")));
        assert_eq!(r.cookie("a=b; Domain=x", &vars_of("h;Secure")), None);
    }

    #[test]
    fn bad_forms_are_refused() {
        for (from, to) in [("~(", "/"), ("/a", "$nope"), ("/a", "/$"), ("/a", "${host")] {
            assert!(Replace::parse(from, to).is_err(), "{from} {to}");
        }
        assert!(Replace::parse("~^/(?<p>.*)", "/$p$1").is_ok());
    }
}
