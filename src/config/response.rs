//! Rewrites of upstream response fields, as nginx's `proxy_redirect`, `proxy_cookie_path`
//! and `proxy_cookie_domain` make them: plain data, applied by `proxy::policy::response`.

use serde::Serialize;

/// A text to find and what to put in its place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replace {
    pub from: String,
    pub to: String,
}

/// What an Ingress asks to change in its upstreams' response fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResponseRewrite {
    /// `proxy-redirect-from`/`-to`: a Location (or Refresh `url=`) value starting with `from`
    /// (case-sensitive) gets `to` in place of that start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Replace>,
    /// `proxy-cookie-path`: a Set-Cookie `Path` starting with `from` (case-sensitive) gets
    /// `to` in place of that start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_path: Option<Replace>,
    /// `proxy-cookie-domain`: a Set-Cookie `Domain` equal to `from` (any case, a leading dot
    /// on either ignored) becomes `to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_domain: Option<Replace>,
}

impl ResponseRewrite {
    /// The Location or Refresh-URL value rewritten, when it starts with the `from` text.
    pub fn redirect(&self, value: &str) -> Option<String> {
        let r = self.redirect.as_ref()?;
        value
            .strip_prefix(r.from.as_str())
            .map(|rest| format!("{}{rest}", r.to))
    }

    /// A Set-Cookie value with its Path and Domain attributes rewritten; `None` when nothing
    /// changed. The cookie's own name and value are never touched.
    pub fn cookie(&self, set_cookie: &str) -> Option<String> {
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
                self.cookie_path.as_ref().and_then(|r| {
                    value
                        .strip_prefix(r.from.as_str())
                        .map(|rest| format!("{}{rest}", r.to))
                })
            } else if name.trim_end().eq_ignore_ascii_case("domain") {
                self.cookie_domain.as_ref().and_then(|r| {
                    let v = value.trim();
                    let bare = v.strip_prefix('.').unwrap_or(v);
                    let want = r.from.strip_prefix('.').unwrap_or(&r.from);
                    bare.eq_ignore_ascii_case(want).then(|| r.to.clone())
                })
            } else {
                None
            };
            match new {
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

    fn rw(redirect: Option<(&str, &str)>, path: Option<(&str, &str)>, domain: Option<(&str, &str)>) -> ResponseRewrite {
        let r = |p: Option<(&str, &str)>| {
            p.map(|(from, to)| Replace {
                from: from.into(),
                to: to.into(),
            })
        };
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
        assert_eq!(
            r.redirect("http://localhost:8000/two/some/uri/").as_deref(),
            Some("http://frontend/one/some/uri/")
        );
        assert_eq!(r.redirect("http://LOCALHOST:8000/two/"), None, "case-sensitive");
        assert_eq!(r.redirect("/two/"), None);
        assert_eq!(
            r.cookie("a=b; path=/two/some/uri/; Domain=.LocalHost; HttpOnly")
                .as_deref(),
            Some("a=b; path=/some/uri/; Domain=example.org; HttpOnly")
        );
        assert_eq!(
            r.cookie("path=/two/x; Path=/other"),
            None,
            "the name=value pair is the cookie's"
        );
        assert_eq!(r.cookie("a=b; Domain=other.org; Path=/three"), None);
        assert_eq!(r.cookie("a=b;Path=/two/x").as_deref(), Some("a=b;Path=/x"));
    }
}
