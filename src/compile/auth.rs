//! Authentication annotations → [`Auth`]: `auth-type`, `auth-secret`, `auth-secret-type` and
//! `auth-realm`, with the Secret's htpasswd lines parsed into password hashes. Whatever cannot
//! be honoured denies (503) with a Warning; it never lets a request through unauthenticated.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::annotations::Annotations;
use super::ingress::annotation;
use crate::config::auth::{Auth, AuthCache, AuthKeepalive, BasicAuth, ExternalAuth, PasswordHash};
use crate::config::diagnostic::{ObjectRef, Reason, Severity};
use crate::config::vars::{Captures, Part, Template};
use crate::model::ObjectKey;

/// The most users one Secret may hold (an htpasswd file of 10 000 bcrypt lines is 600 KB,
/// past what a Secret can hold anyway).
pub const MAX_USERS: usize = 10_000;
/// The longest user name or password field accepted, in bytes.
pub(super) const MAX_FIELD: usize = 1024;

const BCRYPT_CHARS: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Why an htpasswd hash is not used.
#[derive(Debug, PartialEq, Eq)]
pub enum HashProblem {
    /// A form nginx or Apache knows that Portico does not verify.
    Unsupported(&'static str),
    Malformed(&'static str),
}

impl std::fmt::Display for HashProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashProblem::Unsupported(what) => write!(f, "{what} is not supported"),
            HashProblem::Malformed(what) => write!(f, "malformed {what}"),
        }
    }
}

/// One htpasswd password field, as `htpasswd` writes it.
pub fn parse_hash(field: &str) -> Result<PasswordHash, HashProblem> {
    use HashProblem::{Malformed, Unsupported};
    if let Some(rest) = field.strip_prefix("{SHA}") {
        let digest = STANDARD.decode(rest).map_err(|_| Malformed("{SHA} entry"))?;
        return digest
            .try_into()
            .map(PasswordHash::Sha1)
            .map_err(|_| Malformed("{SHA} entry"));
    }
    if let Some(rest) = field.strip_prefix("{SSHA}") {
        let raw = STANDARD.decode(rest).map_err(|_| Malformed("{SSHA} entry"))?;
        if raw.len() < 21 {
            return Err(Malformed("{SSHA} entry"));
        }
        let (d, salt) = raw.split_at(20);
        let digest = d.try_into().map_err(|_| Malformed("{SSHA} entry"))?;
        return Ok(PasswordHash::Ssha {
            digest,
            salt: salt.to_vec(),
        });
    }
    if let Some(rest) = field.strip_prefix("{PLAIN}") {
        return Ok(PasswordHash::Plain(rest.as_bytes().to_vec()));
    }
    for magic in ["$apr1$", "$1$"] {
        if let Some(rest) = field.strip_prefix(magic) {
            let (salt, hash) = rest.split_once('$').ok_or(Malformed("MD5 entry"))?;
            let ok = |s: &str| s.bytes().all(|b| BCRYPT_CHARS.contains(&b));
            if salt.is_empty() || salt.len() > 8 || !ok(salt) || hash.len() != 22 || !ok(hash) {
                return Err(Malformed("MD5 entry"));
            }
            let magic = if magic == "$1$" { "$1$" } else { "$apr1$" };
            return Ok(PasswordHash::Md5Crypt {
                magic,
                salt: salt.to_string(),
                hash: hash.to_string(),
            });
        }
    }
    if let Some(rest) = ["$2y$", "$2a$", "$2b$"].iter().find_map(|m| field.strip_prefix(m)) {
        // `cc$` then 53 characters of salt and hash.
        let (cost, tail) = rest.split_once('$').ok_or(Malformed("bcrypt entry"))?;
        let cost: u32 = (cost.len() == 2)
            .then(|| cost.parse().ok())
            .flatten()
            .ok_or(Malformed("bcrypt entry"))?;
        if !(4..=31).contains(&cost) || tail.len() != 53 || !tail.bytes().all(|b| BCRYPT_CHARS.contains(&b)) {
            return Err(Malformed("bcrypt entry"));
        }
        if cost > PasswordHash::MAX_BCRYPT_COST {
            return Err(Unsupported("a bcrypt cost above 15"));
        }
        return Ok(PasswordHash::Bcrypt(field.to_string()));
    }
    if field.starts_with("$5$") || field.starts_with("$6$") {
        return Err(Unsupported("SHA-crypt ($5$/$6$)"));
    }
    if field.starts_with('$') || field.starts_with('{') {
        return Err(Unsupported("this hash scheme"));
    }
    // What is left is crypt(3) DES (13 characters: `htpasswd -d`) or plain text (`-p`), which
    // Apache accepts only on Windows and nginx hands to crypt(3): neither is taken.
    if field.len() == 13 && field.bytes().all(|b| BCRYPT_CHARS.contains(&b)) {
        Err(Unsupported("crypt(3) DES (it uses only 8 characters of the password)"))
    } else {
        Err(Unsupported("a plain-text password (use {PLAIN} to mean it)"))
    }
}

/// The lines of an htpasswd or htdigest file that hold entries, numbered from 1: blank lines
/// and `#` comments are skipped, a CR before the LF dropped.
pub(super) fn entry_lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    text.split(|b| *b == b'\n').enumerate().filter_map(|(n, line)| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let skip = line.iter().all(u8::is_ascii_whitespace) || line.first() == Some(&b'#');
        (!skip).then_some((n + 1, line))
    })
}

/// An htpasswd file: `user:hash` lines; blank lines and `#` comments are skipped. Returns
/// the users, and one note (line number and why, never the line) per line not used.
pub fn parse_htpasswd(text: &[u8]) -> (BTreeMap<String, PasswordHash>, Vec<String>) {
    let mut users = BTreeMap::new();
    let mut notes = Vec::new();
    for (line_no, line) in entry_lines(text) {
        let Ok(line) = std::str::from_utf8(line) else {
            notes.push(format!("line {line_no}: not UTF-8"));
            continue;
        };
        match entry(line.split_once(':')) {
            Ok((user, hash)) if users.len() < MAX_USERS => {
                if users.insert(user.to_string(), hash).is_some() {
                    notes.push(format!("line {line_no}: the user is listed again; this line is used"));
                }
            }
            Ok(_) => {
                notes.push(format!(
                    "line {line_no}: more than {MAX_USERS} users; the rest are not used"
                ));
                break;
            }
            Err(why) => notes.push(format!("line {line_no}: {why}")),
        }
    }
    (users, notes)
}

fn entry<'a>(pair: Option<(&'a str, &str)>) -> Result<(&'a str, PasswordHash), String> {
    let (user, hash) = pair.ok_or("no user:hash pair")?;
    if user.is_empty() || user.len() > MAX_FIELD || user.bytes().any(|b| b.is_ascii_control()) {
        return Err("invalid user name".into());
    }
    if hash.len() > MAX_FIELD {
        return Err("password field too long".into());
    }
    // Apache allows trailing `:comment` after the hash; none of the supported forms holds a ':'.
    let hash = hash.split_once(':').map_or(hash, |(h, _)| h).trim_end();
    if hash.is_empty() {
        return Err("empty password field".into());
    }
    Ok((user, parse_hash(hash).map_err(|p| p.to_string())?))
}

/// `auth-realm`: printable ASCII without `"` and `\` (it is sent inside a quoted string).
fn valid_realm(v: &str) -> bool {
    v.len() <= 256 && v.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// A DNS-1123 subdomain, the form of a Kubernetes object name.
fn object_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// The Secret an annotation (`what`, for messages) names as `name` or `namespace/name` for
/// the Ingress `ingress`. Another namespace is refused, as ingress-nginx does unless
/// `allow-cross-namespace-resources` is set (off by default; Portico has no such switch yet).
pub fn secret_key(name: &str, ingress: &ObjectKey, what: &str) -> Result<ObjectKey, String> {
    let name = name.trim();
    let own_ns = ingress.namespace.as_str();
    let key = match name.split_once('/') {
        None => ObjectKey::new(own_ns, name),
        Some((ns, n)) => ObjectKey::new(ns, n),
    };
    if !object_name(&key.namespace) || !object_name(&key.name) {
        return Err(format!("{what}={name:?} is not a Secret name or namespace/name"));
    }
    if key.namespace != own_ns {
        return Err(format!("Secret {key} is in another namespace, which is not allowed"));
    }
    Ok(key)
}

/// A header name as `auth-response-headers` takes it (ingress-nginx: letters, digits, `-`, `_`).
fn header_name(h: &str) -> bool {
    !h.is_empty() && h.len() <= 128 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Text with nginx variables (any of [`crate::config::vars`]'s), its text printable ASCII
/// without spaces, quotes or angle brackets, as a URL or cache key may hold.
pub fn template(v: &str) -> Result<Template, String> {
    let t = Template::parse(v, Captures::default())?;
    for p in t.parts() {
        if let Part::Text(text) = p
            && let Some(c) = text
                .chars()
                .find(|c| !c.is_ascii_graphic() || "\"<>\\^`{|}".contains(*c))
        {
            return Err(format!("{c:?} is not allowed"));
        }
    }
    Ok(t)
}

/// `auth-url`: `http(s)://host[:port]/target`, variables in the target. The host part is a
/// name from the annotation, or, when `host_vars` (every host the Ingress serves is an exact
/// name its owner wrote), `$host`, `$http_host` or `$best_http_host`: the request's host,
/// resolved through the same address checks.
pub fn parse_auth_url(v: &str, host_vars: bool) -> Result<ExternalAuth, String> {
    let (tls, rest) = if let Some(r) = v.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = v.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("not an http:// or https:// URL".into());
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.contains('@') {
        return Err("the host part may hold no user".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (h, p.parse::<u16>().map_err(|_| "invalid port")?),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host_from_request = host.contains('$');
    if host_from_request {
        let t = Template::parse(host, Captures::default())?;
        if !matches!(t.parts(), [Part::Var(v)] if v.is_host()) {
            return Err("the host part may hold no variable but $host, $http_host or $best_http_host".into());
        }
        if !host_vars {
            return Err(
                "the host part may be a variable only when every host of the Ingress is an exact name (no wildcard, no rule without host)".into(),
            );
        }
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ok_host = host_from_request
        || (!bare.is_empty()
            && bare.len() <= 253
            && (bare.parse::<std::net::IpAddr>().is_ok()
                || bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')));
    if !ok_host || port == 0 {
        return Err("invalid host or port".into());
    }
    let target = match target {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    Ok(ExternalAuth {
        tls,
        host: bare.to_string(),
        port,
        target: template(&target)?,
        method: None,
        signin: None,
        signin_redirect_param: "rd".into(),
        response_headers: Vec::new(),
        request_redirect: None,
        cache: None,
        always_set_cookie: false,
        proxy_set_headers: Default::default(),
        keepalive: None,
        keepalive_share_vars: false,
        host_from_request,
    })
}

/// nginx `proxy_cache_valid` lists: `[code ...] time`, comma-separated; times in nginx's
/// units (ms, s, m, h, d, w, M for 30 days, y for 365 days), at most a year.
pub fn parse_cache_durations(v: &str) -> Option<Vec<(Vec<u16>, Duration)>> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let mut words: Vec<&str> = item.split_ascii_whitespace().collect();
        let time = words.pop()?;
        let codes = words
            .iter()
            .map(|w| {
                w.parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c) && w.len() == 3)
            })
            .collect::<Option<Vec<u16>>>()?;
        let split = time.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = time[..split].parse().ok()?;
        let ms = match &time[split..] {
            "ms" => Some(n),
            "s" => n.checked_mul(1000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            "w" => n.checked_mul(7 * 86_400_000),
            "M" => n.checked_mul(30 * 86_400_000),
            "y" => n.checked_mul(365 * 86_400_000),
            _ => None,
        }?;
        let d = Duration::from_millis(ms);
        if d.is_zero() || d > Duration::from_secs(365 * 86_400) {
            return None;
        }
        out.push((codes, d));
    }
    (!out.is_empty() && out.len() <= 16).then_some(out)
}

/// What `auth-method` takes.
pub(super) const AUTH_METHOD: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or TRACE";
/// What `auth-signin` takes.
pub(super) const SIGNIN: &str = "an http(s) URL or a path, with nginx variables";

/// `auth-method`.
pub(super) fn auth_method(v: &str) -> Option<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
        .contains(&v)
        .then(|| v.to_string())
}

/// `auth-signin`: a URL or path, with variables.
pub(super) fn signin(v: &str) -> Option<Template> {
    (v.starts_with("http://") || v.starts_with("https://") || v.starts_with('/') || v.starts_with('$'))
        .then(|| template(v).ok())
        .flatten()
}

/// `auth-signin-redirect-param`: a query parameter name.
pub(super) fn redirect_param(v: &str) -> Option<String> {
    (!v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        .then(|| v.to_string())
}

/// `auth-response-headers`: up to 32 header names, lowercased.
pub(super) fn response_headers(v: &str) -> Option<Vec<String>> {
    let names: Vec<String> = v
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    (names.len() <= 32 && names.iter().all(|h| header_name(h))).then_some(names)
}

/// `auth-request-redirect`: printable, no spaces.
pub(super) fn request_redirect(v: &str) -> Option<String> {
    (!v.is_empty() && v.len() <= 2048 && v.bytes().all(|b| (0x21..0x7f).contains(&b))).then(|| v.to_string())
}

/// Whether every host `ing` serves is an exact name: it has rules, each with a host that is
/// no wildcard (its default backend then serves those hosts only), and no `server-alias` is
/// a wildcard.
pub fn exact_hosts(ing: &crate::model::Ing) -> bool {
    let rules = ing.spec.as_ref().and_then(|s| s.rules.as_deref()).unwrap_or(&[]);
    !rules.is_empty()
        && rules
            .iter()
            .all(|r| r.host.as_deref().is_some_and(|h| !h.is_empty() && !h.contains('*')))
        && annotation(ing, "server-alias").is_none_or(|(_, a)| !a.contains('*'))
}

impl Annotations<'_> {
    pub(super) fn auth_warning(&mut self, msg: String) {
        self.auth_diag(Reason::InvalidAnnotation, msg);
    }

    fn auth_diag(&mut self, reason: Reason, msg: String) {
        self.diags
            .push(ObjectRef::ingress(self.key), Severity::Warning, reason, msg);
    }

    /// `satisfy`: `any` or `all` (the default), exactly, as ingress-nginx takes it.
    pub(super) fn satisfy_any(&mut self) -> bool {
        self.parsed("satisfy", "\"any\" or \"all\"", "using all", |v| match v {
            "any" => Some(true),
            "all" => Some(false),
            _ => None,
        })
        .unwrap_or(false)
    }

    /// The route's authentication, when an auth annotation asks for any.
    pub fn auth(&mut self) -> Option<Arc<Auth>> {
        let kind = annotation(self.ing, "auth-type");
        let url = annotation(self.ing, "auth-url");
        if kind.is_none()
            && let Some((prefix, _)) = annotation(self.ing, "auth-secret")
        {
            self.auth_warning(format!(
                "annotation {prefix}auth-secret has no effect without {prefix}auth-type (as in ingress-nginx)"
            ));
        }
        let global_on = self.global_auth.is_some() && url.is_none() && self.bool("enable-global-auth", true);
        let global = self.global_auth.filter(|_| global_on).cloned();
        if kind.is_none() && url.is_none() && global.is_none() {
            return None;
        }
        let mut auth = Auth {
            denied: None,
            basic: None,
            external: global,
            digest: None,
        };
        if let Some((prefix, kind)) = kind {
            match kind.trim() {
                "basic" => match self.basic(prefix) {
                    Ok(b) => auth.basic = Some(b),
                    Err(why) => auth.denied = Some(why.into()),
                },
                "digest" => match self.digest(prefix) {
                    Ok(d) => auth.digest = Some(d),
                    Err(why) => auth.denied = Some(why.into()),
                },
                other => {
                    let why = format!(
                        "annotation {prefix}auth-type={other:?} is not \"basic\" or \"digest\"; every request to this Ingress is answered 503"
                    );
                    self.auth_warning(why.clone());
                    auth.denied = Some(why.into());
                }
            }
        }
        if let Some((prefix, url)) = url {
            match parse_auth_url(url.trim(), exact_hosts(self.ing)) {
                Ok(mut e) => {
                    self.external(&mut e);
                    auth.external = Some(e);
                }
                Err(why) => {
                    let why = format!(
                        "annotation {prefix}auth-url={url:?}: {why}; every request to this Ingress is answered 503"
                    );
                    self.auth_warning(why.clone());
                    auth.denied = Some(why.into());
                }
            }
        }
        Some(Arc::new(auth))
    }

    /// The rest of the external-auth family; invalid values are Warnings and left unset.
    fn external(&mut self, e: &mut ExternalAuth) {
        e.method = self.parsed("auth-method", AUTH_METHOD, "auth requests are GETs", auth_method);
        e.signin = self.parsed(
            "auth-signin",
            SIGNIN,
            "a 401 from the auth service goes to the client",
            signin,
        );
        if let Some(p) = self.parsed(
            "auth-signin-redirect-param",
            "a query parameter name",
            "using rd",
            redirect_param,
        ) {
            e.signin_redirect_param = p;
        }
        e.response_headers = self
            .parsed(
                "auth-response-headers",
                "a comma-separated list of header names",
                "no header is copied",
                response_headers,
            )
            .unwrap_or_default();
        e.request_redirect = self.parsed(
            "auth-request-redirect",
            "a URL or path (printable, no spaces)",
            "the request URI is sent",
            request_redirect,
        );
        e.always_set_cookie = self.bool("auth-always-set-cookie", false);
        let key = self.parsed(
            "auth-cache-key",
            "text and nginx variables",
            "auth answers are not cached",
            |v| template(v).ok().filter(|k| !k.parts().is_empty()),
        );
        let valid = self.parsed(
            "auth-cache-duration",
            "status codes then a duration in ms, s, m, h, d, w, M or y up to 1y (200 202 401 5m), comma-separated",
            "using 200 202 401 5m",
            parse_cache_durations,
        );
        e.cache = key.map(|key| AuthCache {
            key,
            valid: valid.unwrap_or_else(|| vec![(vec![200, 202, 401], Duration::from_secs(300))]),
        });
        e.keepalive = self.auth_keepalive();
        e.keepalive_share_vars = self.bool("auth-keepalive-share-vars", false);
    }

    /// `auth-keepalive`, `-requests` and `-timeout`, with ingress-nginx's rules: a negative
    /// `auth-keepalive`, or a requests count or timeout of 0 or less, turns keepalive off
    /// (with a Warning); other invalid or too large values keep their defaults. Variables in
    /// the auth-url's host part (which also turn it off in ingress-nginx) are refused earlier.
    fn auth_keepalive(&mut self) -> Option<AuthKeepalive> {
        let mut on = true;
        let idle = self.keepalive_number(
            "auth-keepalive",
            AuthKeepalive::MAX_IDLE,
            0,
            "no connection is kept",
            &mut on,
        );
        let requests = self.keepalive_number(
            "auth-keepalive-requests",
            AuthKeepalive::MAX_REQUESTS,
            AuthKeepalive::DEFAULT_REQUESTS,
            "no auth connection is kept",
            &mut on,
        );
        let timeout = self.keepalive_number(
            "auth-keepalive-timeout",
            AuthKeepalive::MAX_TIMEOUT.as_secs() as u32,
            AuthKeepalive::DEFAULT_TIMEOUT.as_secs() as u32,
            "no auth connection is kept",
            &mut on,
        );
        (on && idle > 0).then(|| AuthKeepalive {
            idle,
            requests,
            timeout: Duration::from_secs(u64::from(timeout)),
        })
    }

    /// One of the keepalive numbers: `default` when absent, invalid (a Warning) or above
    /// `max` (a Warning); a value of 0 or less (0 is allowed for `auth-keepalive` only, where
    /// it is the default) clears `on` with a Warning.
    fn keepalive_number(&mut self, name: &str, max: u32, default: u32, off: &str, on: &mut bool) -> u32 {
        let Some((prefix, raw)) = annotation(self.ing, name) else {
            return default;
        };
        let Ok(n) = raw.trim().parse::<i64>() else {
            self.invalid(
                prefix,
                name,
                raw,
                &format!("a whole number up to {max}"),
                &format!("using {default}"),
            );
            return default;
        };
        if n < 0 || (n == 0 && default > 0) {
            self.invalid(
                prefix,
                name,
                raw,
                &format!("a number from {} to {max}", u32::from(default > 0)),
                off,
            );
            *on = false;
            return default;
        }
        match u32::try_from(n).ok().filter(|n| *n <= max) {
            Some(n) => n,
            None => {
                self.invalid(
                    prefix,
                    name,
                    raw,
                    &format!("a number up to {max}"),
                    &format!("using {default}"),
                );
                default
            }
        }
    }

    /// `auth-type: basic`: the Secret's users, or why every request is denied (reported).
    fn basic(&mut self, prefix: &str) -> Result<BasicAuth, String> {
        let (realm, key, lines) = self.auth_secret(prefix, "basic")?;
        let (users, notes) = match lines {
            SecretLines::File(text) => parse_htpasswd(text),
            SecretLines::Map(fields) => {
                let mut users = BTreeMap::new();
                let mut notes = Vec::new();
                for (user, hash) in fields {
                    let parsed = std::str::from_utf8(hash)
                        .map_err(|_| "not UTF-8".to_string())
                        .and_then(|h| entry(Some((user, h.trim_end()))).map(|(_, h)| h));
                    match parsed {
                        Ok(h) => drop(users.insert(user.to_string(), h)),
                        Err(why) => notes.push(format!("key {user:?}: {why}")),
                    }
                }
                (users, notes)
            }
        };
        self.auth_notes("basic", &key, &notes, users.is_empty());
        Ok(BasicAuth {
            realm,
            secret: key.to_string().into(),
            users: Arc::new(users),
        })
    }

    /// Warnings for the entries of the Secret `key` that `scheme` authentication does not
    /// use, and for a Secret that leaves nobody able to sign in.
    pub(super) fn auth_notes(&mut self, scheme: &str, key: &ObjectKey, notes: &[String], none: bool) {
        for note in notes {
            self.auth_warning(format!(
                "{scheme} authentication: Secret {key}: {note}; that entry is not used"
            ));
        }
        if none {
            self.auth_warning(format!(
                "{scheme} authentication: Secret {key} holds no usable user; every request is answered 401"
            ));
        }
    }
}

/// What an `auth-secret` holds for `auth-type`: an `auth` file, or (`auth-map`) one value per
/// user name, at most [`MAX_USERS`].
pub(super) enum SecretLines<'s> {
    File(&'s [u8]),
    Map(Vec<(&'s str, &'s [u8])>),
}

impl<'a> Annotations<'a> {
    /// The realm, Secret and entries `auth-type: {scheme}` reads, or why every request is
    /// denied (reported).
    pub(super) fn auth_secret(
        &mut self,
        prefix: &str,
        scheme: &str,
    ) -> Result<(Arc<str>, ObjectKey, SecretLines<'a>), String> {
        let deny_as = |this: &mut Self, reason: Reason, why: String| {
            let msg = format!("{scheme} authentication: {why}; every request to this Ingress is answered 503");
            this.auth_diag(reason, msg.clone());
            Err(msg)
        };
        let deny = |this: &mut Self, why: String| deny_as(this, Reason::InvalidAnnotation, why);
        let realm = match self.parsed(
            "auth-realm",
            "printable ASCII without quotes or backslashes, up to 256 characters",
            "using an empty realm",
            |v| valid_realm(v).then(|| Arc::<str>::from(v)),
        ) {
            Some(r) => r,
            None => Arc::from(""),
        };
        let Some((_, name)) = annotation(self.ing, "auth-secret") else {
            return deny(self, format!("{prefix}auth-secret is not set"));
        };
        let key = match secret_key(name, self.key, &format!("{prefix}auth-secret")) {
            Ok(k) => k,
            Err(why) => return deny(self, why),
        };
        let file = match annotation(self.ing, "auth-secret-type").map(|(_, v)| v.trim()) {
            None | Some("auth-file") => true,
            Some("auth-map") => false,
            Some(other) => {
                return deny(
                    self,
                    format!("{prefix}auth-secret-type={other:?} is not \"auth-file\" or \"auth-map\""),
                );
            }
        };
        let secrets = self.secrets;
        let Some(secret) = secrets.get(&key) else {
            return deny_as(self, Reason::SecretNotFound, format!("Secret {key} does not exist"));
        };
        let fields = super::tls::secret_fields(secret);
        let lines = if file {
            let what = if scheme == "digest" { "htdigest" } else { "htpasswd" };
            let Some(text) = fields.iter().find(|(k, _)| *k == "auth").map(|(_, v)| *v) else {
                return deny(self, format!("Secret {key} has no key \"auth\" (an {what} file)"));
            };
            SecretLines::File(text)
        } else {
            SecretLines::Map(fields.into_iter().take(MAX_USERS).collect())
        };
        Ok((realm, key, lines))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vars::Var;

    #[test]
    fn hash_forms() {
        assert!(matches!(
            parse_hash("$2y$05$MDo1E4oS5ZpaxNmEMxSi0.TAEY4ObmNi2BOd9Y/SCEBmLfC0Bvxcm"),
            Ok(PasswordHash::Bcrypt(_))
        ));
        assert_eq!(
            parse_hash("$2y$16$MDo1E4oS5ZpaxNmEMxSi0.TAEY4ObmNi2BOd9Y/SCEBmLfC0Bvxcm"),
            Err(HashProblem::Unsupported("a bcrypt cost above 15"))
        );
        assert!(parse_hash("$2y$5$MDo1E4oS5ZpaxNmEMxSi0.TAEY4ObmNi2BOd9Y/SCEBmLfC0Bvxcm").is_err());
        assert!(parse_hash("$2y$05$short").is_err());
        assert!(matches!(
            parse_hash("$apr1$VjKbZz1q$g4GVhDB4bW9ugy2wZcVvE1"),
            Ok(PasswordHash::Md5Crypt { magic: "$apr1$", .. })
        ));
        assert!(parse_hash("$apr1$toolongsalt$g4GVhDB4bW9ugy2wZcVvE1").is_err());
        assert!(matches!(
            parse_hash("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="),
            Ok(PasswordHash::Sha1(_))
        ));
        assert!(parse_hash("{SHA}short").is_err());
        assert!(matches!(parse_hash("{PLAIN}pw"), Ok(PasswordHash::Plain(_))));
        assert!(matches!(parse_hash("abJnggxhB/yWI"), Err(HashProblem::Unsupported(_))));
        assert!(matches!(parse_hash("password"), Err(HashProblem::Unsupported(_))));
        assert!(matches!(parse_hash("$6$salt$x"), Err(HashProblem::Unsupported(_))));
    }

    #[test]
    fn htpasswd_lines() {
        let text =
            b"# comment\n\nalice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\r\nbob:\nnocolon\ncarol:{PLAIN}x:comment\n\xff:x\n";
        let (users, notes) = parse_htpasswd(text);
        assert_eq!(users.keys().collect::<Vec<_>>(), ["alice", "carol"]);
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes.iter().all(|n| n.starts_with("line ")));
    }

    #[test]
    fn exact_hosts_only_without_wildcards_or_catch_all() {
        use crate::fixture::{Prefix, ingress};
        let two = ingress("default", "a")
            .rule("a.test", "/", Prefix, "web", 80)
            .rule("b.test", "/x", Prefix, "web", 80);
        assert!(exact_hosts(&two.clone().ing()));
        assert!(exact_hosts(&two.clone().default_backend("web", 80).ing()));
        assert!(!exact_hosts(
            &two.clone()
                .annotation("nginx.ingress.kubernetes.io/server-alias", "*.a.test")
                .ing()
        ));
        assert!(!exact_hosts(
            &two.clone().rule("*.c.test", "/", Prefix, "web", 80).ing()
        ));
        assert!(!exact_hosts(&two.rule("", "/", Prefix, "web", 80).ing()));
        assert!(!exact_hosts(&ingress("default", "b").default_backend("web", 80).ing()));
    }

    #[test]
    fn auth_urls_and_templates() {
        let e = parse_auth_url("https://auth.example:8443/check?u=$escaped_request_uri", false).unwrap();
        assert_eq!((e.tls, e.host.as_str(), e.port), (true, "auth.example", 8443));
        assert_eq!(
            e.target.parts(),
            [Part::Text("/check?u=".into()), Part::Var(Var::EscapedRequestUri)]
        );
        assert!(!e.host_from_request);
        assert_eq!(parse_auth_url("http://[::1]:4180", false).unwrap().host, "::1");
        assert_eq!(
            parse_auth_url("http://a.svc", false).unwrap().target.literal(),
            Some("/")
        );
        // The request's host, only where every host is exact.
        let e = parse_auth_url("https://$host/oauth2/auth?ns=$namespace", true).unwrap();
        assert!(e.host_from_request);
        assert_eq!((e.host.as_str(), e.port), ("$host", 443));
        assert!(
            parse_auth_url("http://${best_http_host}:4180/a", true)
                .unwrap()
                .host_from_request
        );
        for bad in ["http://$host/auth", "http://$http_host/auth"] {
            let why = parse_auth_url(bad, false).unwrap_err();
            assert!(why.contains("exact"), "{why}");
        }
        for bad in [
            "http://$remote_addr/auth",
            "http://x$host/auth",
            "http://$host.evil/auth",
            "http://$arg_to/auth",
        ] {
            assert!(parse_auth_url(bad, true).is_err(), "{bad}");
        }
        for bad in [
            "ftp://x/",
            "http://user@x/",
            "http://x:0/",
            "http://x:99999/",
            "http://x/$request_body",
            "http://x/${host",
            "http://x/a b",
            "http://x/\"",
        ] {
            assert!(parse_auth_url(bad, true).is_err(), "{bad}");
        }
        assert_eq!(
            template("${remote_addr}-$http_x_user").unwrap().parts(),
            [
                Part::Var(Var::RemoteAddr),
                Part::Text("-".into()),
                Part::Var(Var::Http("x-user".into()))
            ]
        );
        assert!(template("$nope").unwrap_err().contains("$nope"));
    }

    #[test]
    fn cache_durations() {
        assert_eq!(
            parse_cache_durations("200 202 10m, 401 30s"),
            Some(vec![
                (vec![200, 202], Duration::from_secs(600)),
                (vec![401], Duration::from_secs(30))
            ])
        );
        assert_eq!(
            parse_cache_durations("5m"),
            Some(vec![(vec![], Duration::from_secs(300))])
        );
        // nginx's longer units, up to a year.
        let day = 86_400;
        for (v, secs) in [
            ("200 2d", 2 * day),
            ("1w", 7 * day),
            ("2M", 60 * day),
            ("1y", 365 * day),
        ] {
            assert_eq!(parse_cache_durations(v).unwrap()[0].1, Duration::from_secs(secs), "{v}");
        }
        for bad in [
            "",
            "200",
            "200 0s",
            "200 2y",
            "200 13M",
            "20 5m",
            "200 5x",
            "200 99999999999999999999d",
        ] {
            assert_eq!(parse_cache_durations(bad), None, "{bad}");
        }
    }
}
