//! nginx variables in annotation and ConfigMap values: the one vocabulary, and templates
//! parsed once in compile() into literal text and typed variables (evaluated by
//! `proxy::vars`; nothing is ever rendered to configuration text).

use serde::Serialize;

/// The longest template accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// The most pieces (texts, variables, captures) in one template.
pub const MAX_PARTS: usize = 128;

/// A request variable, as nginx (and ingress-nginx's configuration) names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    /// `$host`: the request's host, lowercase, without port.
    Host,
    /// `$http_host`: the Host (or `:authority`) as sent, port included.
    HttpHost,
    /// `$best_http_host`: ingress-nginx's name for the Host as sent (`$http_host`, else `$host`).
    BestHttpHost,
    /// `$scheme`: `http` or `https`.
    Scheme,
    /// `$pass_access_scheme`: ingress-nginx's scheme for X-Forwarded-Proto: the trusted
    /// X-Forwarded-Proto, else `$scheme`.
    PassAccessScheme,
    /// `$request_uri`: path and query as the client sent them.
    RequestUri,
    /// `$escaped_request_uri`: the same, percent-encoded (RFC 3986 unreserved kept).
    EscapedRequestUri,
    /// `$uri` (`$document_uri`): the normalized path, without query.
    Uri,
    /// `$args` (`$query_string`): the query, without `?`.
    Args,
    /// `$is_args`: `?` when there is a query, else empty.
    IsArgs,
    /// `$arg_NAME`: a query argument (name compared in any case), as sent.
    Arg(String),
    /// `$http_NAME`: a request header (`_` read as `-`); several fields joined with `, `.
    Http(String),
    /// `$cookie_NAME`: a request cookie's value.
    Cookie(String),
    /// `$remote_addr`: the client address (after `--trusted-proxies`).
    RemoteAddr,
    /// `$binary_remote_addr`: the same as 4 or 16 bytes.
    BinaryRemoteAddr,
    /// `$remote_port`: the connection's client port.
    RemotePort,
    /// `$server_addr`: the address that accepted the connection.
    ServerAddr,
    /// `$server_port`: the port that accepted the connection.
    ServerPort,
    /// `$server_name`: the route's host (ingress-nginx's `server_name`), else the request host.
    ServerName,
    RequestMethod,
    /// `$request_id` (`$req_id`): the request id sent upstream as X-Request-ID.
    RequestId,
    /// `$server_protocol`: `HTTP/1.1`, `HTTP/2.0`, ...
    ServerProtocol,
    /// `$ssl_client_s_dn`, `$ssl_client_i_dn`: the client certificate's subject and issuer
    /// (RFC 2253), empty without one.
    SslClientSDn,
    SslClientIDn,
    /// `$ssl_client_verify`: `NONE`, `SUCCESS` or `FAILED:reason`.
    SslClientVerify,
    /// `$ssl_server_name`: the TLS server name the client sent (empty without).
    SslServerName,
    /// `$namespace`, `$ingress_name`, `$service_name`, `$service_port`, `$location_path`:
    /// the route's identity, as ingress-nginx sets them per location.
    Namespace,
    IngressName,
    ServiceName,
    ServicePort,
    LocationPath,
    /// `$proxy_add_x_forwarded_for`: the client's X-Forwarded-For with the peer appended.
    ProxyAddXForwardedFor,
    /// `$hostname`: the machine's name.
    Hostname,
    /// `$time_iso8601`, `$msec`: the time of evaluation.
    TimeIso8601,
    Msec,
    /// `$remote_user`: the user name of a Basic Authorization field.
    RemoteUser,
}

impl Var {
    /// The variable `name` (lowercase, without `$`) names, if Portico knows it.
    pub fn named(name: &str) -> Option<Var> {
        Some(match name {
            "host" => Var::Host,
            "http_host" => Var::HttpHost,
            "best_http_host" => Var::BestHttpHost,
            "scheme" => Var::Scheme,
            "pass_access_scheme" => Var::PassAccessScheme,
            "request_uri" => Var::RequestUri,
            "escaped_request_uri" => Var::EscapedRequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "is_args" => Var::IsArgs,
            "remote_addr" => Var::RemoteAddr,
            "binary_remote_addr" => Var::BinaryRemoteAddr,
            "remote_port" => Var::RemotePort,
            "server_addr" => Var::ServerAddr,
            "server_port" => Var::ServerPort,
            "server_name" => Var::ServerName,
            "request_method" => Var::RequestMethod,
            "request_id" | "req_id" => Var::RequestId,
            "server_protocol" => Var::ServerProtocol,
            "ssl_client_s_dn" => Var::SslClientSDn,
            "ssl_client_i_dn" => Var::SslClientIDn,
            "ssl_client_verify" => Var::SslClientVerify,
            "ssl_server_name" => Var::SslServerName,
            "namespace" => Var::Namespace,
            "ingress_name" => Var::IngressName,
            "service_name" => Var::ServiceName,
            "service_port" => Var::ServicePort,
            "location_path" => Var::LocationPath,
            "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
            "hostname" => Var::Hostname,
            "time_iso8601" => Var::TimeIso8601,
            "msec" => Var::Msec,
            "remote_user" => Var::RemoteUser,
            _ => {
                if let Some(h) = name.strip_prefix("http_") {
                    let h = h.replace('_', "-");
                    return token(&h).then_some(Var::Http(h));
                }
                if let Some(c) = name.strip_prefix("cookie_") {
                    return token(c).then(|| Var::Cookie(c.to_string()));
                }
                if let Some(a) = name.strip_prefix("arg_") {
                    return token(a).then(|| Var::Arg(a.to_string()));
                }
                return None;
            }
        })
    }

    /// Whether the value is the request's host (as the route matched it).
    pub fn is_host(&self) -> bool {
        matches!(self, Var::Host | Var::HttpHost | Var::BestHttpHost)
    }
}

/// A header, cookie or argument name in a variable: letters, digits, `-`, `_`, `.`.
fn token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Var(Var),
    /// `$1`..`$9`, or a named group: a regex's capture (empty when it did not take part).
    Capture(usize),
}

/// A piece of a template's source, before names are looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    Text(&'a str),
    /// `$name` or `${name}` (as written) or `$1`..`$9`.
    Name(&'a str),
    /// A `$` that starts no name (at the end, before a space, an unclosed or empty `${`).
    Dollar,
}

/// Splits nginx's script syntax: `$name`, `${name}`, `$1`..`$9` (one digit, as nginx).
pub fn lex(source: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find('$') {
        if at > 0 {
            out.push(Token::Text(&rest[..at]));
        }
        let after = &rest[at + 1..];
        let name_len = |s: &str| {
            s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(s.len())
        };
        let (token, next) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) if end > 0 && name_len(inner) == end => (Token::Name(&inner[..end]), &inner[end + 1..]),
                _ => (Token::Dollar, after),
            }
        } else if after.starts_with(|c: char| c.is_ascii_digit()) {
            (Token::Name(&after[..1]), &after[1..])
        } else {
            match name_len(after) {
                0 => (Token::Dollar, after),
                n => (Token::Name(&after[..n]), &after[n..]),
            }
        };
        out.push(token);
        rest = next;
    }
    if !rest.is_empty() {
        out.push(Token::Text(rest));
    }
    out
}

/// Text with nginx variables, parsed once; shows (in `/routes`) as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// What a template may name besides variables: a regex's captures (`$1`..`$9` and its
/// named groups, index and name).
#[derive(Clone, Copy, Debug, Default)]
pub struct Captures<'a> {
    pub numbered: bool,
    pub named: &'a [(usize, &'a str)],
}

impl Template {
    /// Parses `source`. `Err` names what is wrong: an unknown variable (by name), a `$`
    /// without a name, a capture where there is no regex, or a template too long.
    pub fn parse(source: &str, captures: Captures<'_>) -> Result<Template, String> {
        if source.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} bytes"));
        }
        let mut parts: Vec<Part> = Vec::new();
        for token in lex(source) {
            let part = match token {
                Token::Text(t) => {
                    if let Some(Part::Text(prev)) = parts.last_mut() {
                        prev.push_str(t);
                        continue;
                    }
                    Part::Text(t.to_string())
                }
                Token::Dollar => return Err("a $ that starts no variable name (or an unclosed ${)".into()),
                Token::Name(name) => {
                    if let Some((i, _)) = captures.named.iter().find(|(_, n)| *n == name) {
                        Part::Capture(*i)
                    } else if let Ok(n) = name.parse::<usize>() {
                        if !captures.numbered || n == 0 {
                            return Err(format!(
                                "${name} is no capture here (there is no regex to take it from)"
                            ));
                        }
                        Part::Capture(n)
                    } else {
                        let lower = name.to_ascii_lowercase();
                        Part::Var(Var::named(&lower).ok_or_else(|| format!("${name} is not a variable Portico knows"))?)
                    }
                }
            };
            parts.push(part);
            if parts.len() > MAX_PARTS {
                return Err(format!("more than {MAX_PARTS} texts and variables"));
            }
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The text when the template names nothing: no work per request.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Whether the template names a variable or a capture.
    pub fn has_variables(&self) -> bool {
        self.literal().is_none()
    }

    /// The template without its first `n` bytes, which must be leading text.
    pub fn without_prefix(&self, n: usize) -> Option<Template> {
        let mut parts = self.parts.clone();
        if n > 0 {
            let Some(Part::Text(t)) = parts.first_mut() else {
                return None;
            };
            if t.len() < n || !t.is_char_boundary(n) {
                return None;
            }
            t.drain(..n);
            if t.is_empty() {
                parts.remove(0);
            }
        }
        Some(Template {
            source: self.source.get(n..)?.to_string(),
            parts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> Vec<Part> {
        Template::parse(s, Captures::default()).unwrap().parts
    }

    #[test]
    fn both_forms_and_text() {
        assert_eq!(
            parts("https://$host/oauth2/auth?rd=${escaped_request_uri}x"),
            [
                Part::Text("https://".into()),
                Part::Var(Var::Host),
                Part::Text("/oauth2/auth?rd=".into()),
                Part::Var(Var::EscapedRequestUri),
                Part::Text("x".into()),
            ]
        );
        assert_eq!(
            parts("$HTTP_X_User-$cookie_sid$arg_page"),
            [
                Part::Var(Var::Http("x-user".into())),
                Part::Text("-".into()),
                Part::Var(Var::Cookie("sid".into())),
                Part::Var(Var::Arg("page".into())),
            ]
        );
        assert_eq!(parts("no variables"), [Part::Text("no variables".into())]);
        assert_eq!(parts(""), []);
        assert!(Template::parse("plain", Captures::default()).unwrap().literal() == Some("plain"));
    }

    #[test]
    fn every_documented_variable_is_known() {
        for name in [
            "host",
            "http_host",
            "scheme",
            "request_uri",
            "escaped_request_uri",
            "uri",
            "args",
            "query_string",
            "is_args",
            "arg_x",
            "http_x_y",
            "cookie_x",
            "remote_addr",
            "binary_remote_addr",
            "remote_port",
            "server_addr",
            "server_port",
            "server_name",
            "request_method",
            "request_id",
            "server_protocol",
            "ssl_client_s_dn",
            "ssl_client_i_dn",
            "ssl_client_verify",
            "ssl_server_name",
            "namespace",
            "ingress_name",
            "service_name",
            "service_port",
            "location_path",
            "best_http_host",
            "pass_access_scheme",
            "proxy_add_x_forwarded_for",
            "hostname",
            "time_iso8601",
            "msec",
            "remote_user",
        ] {
            assert!(Var::named(name).is_some(), "{name}");
        }
    }

    #[test]
    fn captures_only_where_a_regex_gives_them() {
        let named = [(1, "p")];
        let c = Captures {
            numbered: true,
            named: &named,
        };
        assert_eq!(
            Template::parse("/x/$1${p}$2", c).unwrap().parts,
            [
                Part::Text("/x/".into()),
                Part::Capture(1),
                Part::Capture(1),
                Part::Capture(2)
            ]
        );
        // One digit, as nginx: `$12` is capture 1 then "2".
        assert_eq!(
            Template::parse("$12", c).unwrap().parts,
            [Part::Capture(1), Part::Text("2".into())]
        );
        assert!(Template::parse("$1", Captures::default()).is_err());
        assert!(Template::parse("$0", c).is_err());
    }

    #[test]
    fn hostile_input_is_refused_with_the_reason() {
        let unknown = Template::parse("a$nope", Captures::default()).unwrap_err();
        assert!(unknown.contains("$nope"), "{unknown}");
        for bad in [
            "${host", "${", "$", "a $ b", "${}", "${ho st}", "$http_", "$cookie_", "$arg_",
        ] {
            assert!(Template::parse(bad, Captures::default()).is_err(), "{bad:?}");
        }
        let huge = "$host".repeat(MAX_LEN);
        assert!(Template::parse(&huge, Captures::default()).is_err());
        let many = "$host-".repeat(MAX_PARTS);
        assert!(Template::parse(&many, Captures::default()).is_err());
        // Control characters are text here; where they go, the caller checks them.
        assert_eq!(parts("a\r\nb"), [Part::Text("a\r\nb".into())]);
        // Multi-byte text around variables is kept whole.
        assert_eq!(
            parts("é$hostü"),
            [Part::Text("é".into()), Part::Var(Var::Host), Part::Text("ü".into())]
        );
    }

    #[test]
    fn the_lexer_keeps_stray_dollars() {
        assert_eq!(
            lex("a$ ${x}${"),
            [
                Token::Text("a"),
                Token::Dollar,
                Token::Text(" "),
                Token::Name("x"),
                Token::Dollar,
                Token::Text("{")
            ]
        );
    }
}
