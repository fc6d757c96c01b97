//! Rewrites of upstream response fields, as nginx's `proxy_redirect`, `proxy_cookie_path`
//! and `proxy_cookie_domain` make them: plain data, applied by `proxy::policy::response`.

use serde::Serialize;

use super::pattern::Pattern;

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
            Find::Text(t) => s.serialize_str(&t.source),
            Find::Regex { source, .. } => s.serialize_str(source),
        }
    }
}

/// The request's nginx variables a template may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    Scheme,
    Host,
    ServerPort,
    HttpHost,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
    /// `$1`..`$9`, or a named group: the regex's capture (empty when it did not take part).
    Capture(usize),
}

/// A text with nginx `$variables` and regex captures, parsed once in compile().
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl Template {
    /// Parses nginx's script syntax: `$name`, `${name}`, `$1`..`$9`. `names` are the
    /// regex's named groups (index, name), which a `$name` names before any variable.
    pub fn parse(source: &str, names: &[(usize, &str)]) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        while let Some(at) = rest.find('$') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, len) = if let Some(b) = after.strip_prefix('{') {
                let end = b.find('}').ok_or_else(|| format!("unclosed ${{ in {source:?}"))?;
                (&b[..end], end + 2)
            } else if after.starts_with(|c: char| ('1'..='9').contains(&c)) {
                (&after[..1], 1)
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            let piece = if let Ok(n @ 1..=9) = name.parse::<usize>() {
                Piece::Capture(n)
            } else if let Some((i, _)) = names.iter().find(|(_, n)| *n == name) {
                Piece::Capture(*i)
            } else {
                Piece::Var(match name {
                    "scheme" => Var::Scheme,
                    "host" => Var::Host,
                    "server_port" => Var::ServerPort,
                    "http_host" => Var::HttpHost,
                    "" => return Err(format!("a $ without a variable name in {source:?}")),
                    _ => {
                        return Err(format!(
                            "variable ${name} is not one Portico has ($scheme, $host, $server_port, $http_host, or a capture)"
                        ));
                    }
                })
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
            rest = &after[len..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template {
            source: source.to_string(),
            pieces,
        })
    }

    /// The text when it names nothing, as most templates: no work per response.
    fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The text with variables and captures filled in; `None` past [`MAX_OUT`].
    fn expand(&self, vars: &Vars<'_>, caps: Option<&regex::Captures<'_>>) -> Option<String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(Var::Scheme) => out.push_str(vars.scheme),
                Piece::Var(Var::Host) => out.push_str(vars.host),
                Piece::Var(Var::HttpHost) => out.push_str(vars.http_host),
                Piece::Var(Var::ServerPort) => out.push_str(&vars.server_port.to_string()),
                Piece::Capture(i) => {
                    out.push_str(caps.and_then(|c| c.get(*i)).map(|m| m.as_str()).unwrap_or(""));
                }
            }
            if out.len() > MAX_OUT {
                return None;
            }
        }
        Some(out)
    }
}

/// The request's values of the variables, for one response.
#[derive(Clone, Copy, Debug)]
pub struct Vars<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The request's host, lowercase, without port.
    pub host: &'a str,
    /// The Host (or `:authority`) as the client sent it.
    pub http_host: &'a str,
    /// The port that accepted the connection.
    pub server_port: u16,
}

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
            return Ok(Replace {
                from: Find::Text(Template::parse(from, &[])?),
                to: Template::parse(to, &[])?,
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
        let to = Template::parse(to, &names)?;
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
    fn apply(&self, value: &str, vars: &Vars<'_>, whole: bool) -> Option<String> {
        match &self.from {
            Find::Text(t) => {
                let from_owned;
                let from = match t.literal() {
                    Some(f) => f,
                    None => {
                        from_owned = t.expand(vars, None)?;
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
                    None => self.to.expand(vars, None)?,
                };
                to.push_str(rest);
                (to.len() <= MAX_OUT).then_some(to)
            }
            Find::Regex { re, .. } => {
                let caps = re.0.captures(value)?;
                self.to.expand(vars, Some(&caps))
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
    pub fn redirect(&self, value: &str, vars: &Vars<'_>) -> Option<String> {
        self.redirect.as_ref()?.apply(value, vars, false)
    }

    /// A Set-Cookie value with its Path and Domain attributes rewritten; `None` when nothing
    /// changed. The cookie's own name and value are never touched, and a replacement that
    /// would add an attribute (a `;` or `,` from a capture or variable) is not made.
    pub fn cookie(&self, set_cookie: &str, vars: &Vars<'_>) -> Option<String> {
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

    const VARS: Vars<'static> = Vars {
        scheme: "https",
        host: "front.example",
        http_host: "Front.example:8443",
        server_port: 8443,
    };

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
        let redirect = |v| r.redirect(v, &VARS);
        assert_eq!(
            redirect("http://localhost:8000/two/some/uri/").as_deref(),
            Some("http://frontend/one/some/uri/")
        );
        assert_eq!(redirect("http://LOCALHOST:8000/two/"), None, "case-sensitive");
        assert_eq!(redirect("/two/"), None);
        let cookie = |v| r.cookie(v, &VARS);
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
            r.redirect("http://upstream:8080/a/b?c", &VARS).as_deref(),
            Some("http://upstream/a/b?c")
        );
        assert_eq!(r.redirect("http://upstream/a", &VARS), None);
        assert_eq!(r.redirect("HTTP://upstream:1/a", &VARS), None, "~ is case-sensitive");
        // proxy_redirect ~*/user/([^/]+)/(.+)$ http://$1.example.com/$2;
        let r = rw(Some(("~*/user/([^/]+)/(.+)$", "http://$1.example.com/$2")), None, None);
        assert_eq!(
            r.redirect("http://up/USER/bob/page", &VARS).as_deref(),
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
            r.cookie("s=1; Path=/User/ann/x; Domain=.www.example.org", &VARS)
                .as_deref(),
            Some("s=1; Path=/u/ann; Domain=example.org")
        );
        assert_eq!(r.cookie("s=1; Path=/users; Domain=example", &VARS), None);
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
            r.redirect("http://localhost:8000/a", &VARS).as_deref(),
            Some("https://front.example:8443/a")
        );
        assert_eq!(
            r.cookie("a=b; Path=/front.example/x; Domain=www.front.example", &VARS)
                .as_deref(),
            Some("a=b; Path=/x; Domain=front.example")
        );
        let r = rw(Some(("/", "http://$http_host/")), None, None);
        assert_eq!(r.redirect("/a", &VARS).as_deref(), Some("http://Front.example:8443/a"));
        // A capture that would add an attribute is not put in.
        let r = rw(None, Some(("~^/(.*)$", "/$1")), None);
        assert_eq!(r.cookie("a=b; Path=/x", &VARS).as_deref(), Some("a=b; Path=/x"));
        let r = rw(None, None, Some(("x", "$http_host")));
        let bad = Vars {
            http_host: "h;Secure",
            ..VARS
        };
        assert_eq!(r.cookie("a=b; Domain=x", &bad), None);
    }

    #[test]
    fn bad_forms_are_refused() {
        for (from, to) in [
            ("~(", "/"),
            ("/a", "$request_uri"),
            ("/a", "/$"),
            ("/a", "${host"),
            ("$remote_addr", "/"),
        ] {
            assert!(Replace::parse(from, to).is_err(), "{from} {to}");
        }
        assert!(Replace::parse("~^/(?<p>.*)", "/$p$1").is_ok());
    }
}
