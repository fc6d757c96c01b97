//! `mirror-target`, `mirror-host`, `mirror-request-body` → [`Mirror`]. The target follows
//! auth-url's rules: variables (any of nginx's) only after the host, so no request can choose
//! where its copy goes.

use std::sync::Arc;

use super::annotations::{Annotations, valid_vhost};
use super::auth::parse_auth_url;
use crate::config::mirror::Mirror;
use crate::config::vars::{Token, Var, lex};

/// `mirror-target`: `http(s)://host[:port]/target`, variables in the target only; the
/// target may also follow the host directly when it starts with `$request_uri` or `$uri`,
/// which always begin with `/` (ingress-nginx's own example, `https://test.env.com$request_uri`).
pub fn parse_mirror_target(v: &str) -> Result<Mirror, String> {
    let authority = v.find("://").map_or(0, |i| i + 3);
    if let Some(end) = v[authority..].find(['/', '?', '$']).map(|i| authority + i)
        && v[end..].starts_with('$')
    {
        let rest = &v[end..];
        let path_first = matches!(
            lex(rest).first(),
            Some(Token::Name(n)) if matches!(Var::named(&n.to_ascii_lowercase()), Some(Var::RequestUri | Var::Uri))
        );
        if !path_first {
            return Err("the host part may hold no variable".into());
        }
        // Parsed with a `/` between, which then goes again.
        let mut m = parse_url(&format!("{}/{rest}", &v[..end]))?;
        m.target = m.target.without_prefix(1).ok_or("invalid target")?;
        return Ok(m);
    }
    parse_url(v)
}

fn parse_url(v: &str) -> Result<Mirror, String> {
    let url = parse_auth_url(v, false)?;
    let host_header = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    Ok(Mirror {
        tls: url.tls,
        host: url.host,
        port: url.port,
        target: url.target,
        host_header,
        request_body: true,
    })
}

impl Mirror {
    /// Whether the target names a request variable (else nginx appends the request's query).
    pub fn has_variables(&self) -> bool {
        self.target.has_variables()
    }
}

impl Annotations<'_> {
    pub(super) fn mirror(&mut self) -> Option<Arc<Mirror>> {
        let mut m = self.parsed(
            "mirror-target",
            "an http:// or https:// URL with nginx variables only after the host",
            "requests are not mirrored",
            |v| parse_mirror_target(v).ok(),
        )?;
        if let Some(h) = self.parsed(
            "mirror-host",
            "a host name, optionally with :port",
            "the target's host is sent",
            |v| valid_vhost(v).then(|| v.to_string()),
        ) {
            m.host_header = h;
        }
        m.request_body = self
            .parsed(
                "mirror-request-body",
                "\"on\" or \"off\"",
                "the body is mirrored",
                |v| match v {
                    "on" => Some(true),
                    "off" => Some(false),
                    _ => None,
                },
            )
            .unwrap_or(true);
        Some(Arc::new(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vars::Part;

    #[test]
    fn targets_keep_variables_out_of_the_host() {
        let m = parse_mirror_target("https://test.env.com$request_uri").unwrap();
        assert_eq!((m.tls, m.host.as_str(), m.port), (true, "test.env.com", 443));
        assert_eq!(m.host_header, "test.env.com");
        assert!(m.has_variables());
        assert_eq!(m.target.parts(), [Part::Var(Var::RequestUri)]);
        let m = parse_mirror_target("http://10.0.0.1:81${request_uri}?from=portico").unwrap();
        assert_eq!((m.host.as_str(), m.port), ("10.0.0.1", 81));
        assert_eq!(
            m.target.parts(),
            [Part::Var(Var::RequestUri), Part::Text("?from=portico".into())]
        );
        let m = parse_mirror_target("https://test.env.com/$request_uri").unwrap();
        assert_eq!(m.target.parts(), [Part::Text("/".into()), Part::Var(Var::RequestUri)]);
        let m = parse_mirror_target("http://m.svc$uri?ns=$namespace&a=$arg_a").unwrap();
        assert_eq!(m.target.parts()[0], Part::Var(Var::Uri));
        let m = parse_mirror_target("http://[::1]:8080/mirror").unwrap();
        assert_eq!(
            (m.host.as_str(), m.port, m.host_header.as_str()),
            ("::1", 8080, "[::1]")
        );
        assert!(!m.has_variables());
        for bad in [
            "ftp://x/",
            "http://$host/",
            "http://x$host/",
            "http://x$request_urix",
            "http://x$escaped_request_uri",
            "http://user@x/",
            "http://x:0/",
            "http://x:99999/",
            "http://x/$nope",
            "http://x/a b",
            "//x/",
            "",
        ] {
            assert!(parse_mirror_target(bad).is_err(), "{bad:?}");
        }
    }
}
