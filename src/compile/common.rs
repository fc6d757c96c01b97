//! Reading of the common ingress-nginx annotations that are one typed value each:
//! `denylist-source-range` and `x-forwarded-prefix`, and the checks of those Portico
//! accepts without a setting of its own (`proxy-buffering`, `proxy-request-buffering`),
//! `proxy-http-version`, and the response rewrites (`proxy-redirect-from`/`-to`,
//! `proxy-cookie-path`, `proxy-cookie-domain`).

use std::sync::Arc;

use super::annotations::{Annotations, valid_attribute};
use super::ingress::annotation;
use crate::config::Cidr;
use crate::config::diagnostic::{ObjectRef, Reason, Severity};
use crate::config::response::{Replace, ResponseRewrite};
use crate::config::vars::{Captures, Template};

/// The longest `x-forwarded-prefix`.
pub const MAX_PREFIX: usize = 1024;

impl Annotations<'_> {
    fn common_warning(&mut self, msg: String) {
        self.diags.push(
            ObjectRef::ingress(self.key),
            Severity::Warning,
            Reason::InvalidAnnotation,
            msg,
        );
    }

    /// `denylist-source-range`. An entry that is no CIDR is a Warning and denies every
    /// address instead: a typo in a denylist never lets in whom it meant to keep out
    /// (ingress-nginx denies the whole location when no entry is valid).
    pub(super) fn denylist(&mut self) -> (Option<Vec<Cidr>>, bool) {
        let Some((prefix, raw)) = annotation(self.ing, "denylist-source-range") else {
            return (None, true);
        };
        match cidr_list(raw) {
            Ok(cidrs) => (Some(cidrs), true),
            Err(entry) => {
                self.common_warning(format!(
                    "annotation {prefix}denylist-source-range: {entry:?} is not an address or CIDR; the Ingress answers 503 until it is fixed, as ingress-nginx"
                ));
                (None, false)
            }
        }
    }

    /// `x-forwarded-prefix`: a path (ingress-nginx's `^/?[-._~a-zA-Z0-9/:$]*$`) with nginx
    /// variables and the route regex's captures; empty means no header, as there.
    pub(super) fn forwarded_prefix(&mut self) -> Option<Template> {
        let (prefix, raw) = annotation(self.ing, "x-forwarded-prefix")?;
        let v = raw.trim();
        let ok = v.len() <= MAX_PREFIX
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~/:${}".contains(&b));
        let captures = Captures {
            numbered: true,
            named: &[],
        };
        let parsed = if ok {
            Template::parse(v, captures)
        } else {
            Err(format!(
                "not a path of letters, digits and -._~/: up to {MAX_PREFIX} bytes"
            ))
        };
        match parsed {
            Ok(t) => (!v.is_empty()).then_some(t),
            Err(why) => {
                self.common_warning(format!(
                    "annotation {prefix}x-forwarded-prefix={raw:?}: {why}; the header is not set"
                ));
                None
            }
        }
    }

    /// Checks the annotations whose every valid value Portico already serves as well as it
    /// can (see their rows in [`super::known`]): bad values are Warnings, as everywhere.
    pub(super) fn accepted_as_streamed(&mut self) {
        let on_off = |v: &str| matches!(v, "on" | "off").then_some(());
        self.parsed("proxy-buffering", "\"on\" or \"off\"", "responses are streamed", on_off);
        self.parsed(
            "proxy-request-buffering",
            "\"on\" or \"off\"",
            "request bodies are streamed",
            on_off,
        );
    }

    /// `proxy-http-version`: `true` for "1.0" (HTTP/1.0 upstream requests), `false` for
    /// "1.1", the default, and for a bad value (a Warning).
    pub(super) fn http10(&mut self) -> bool {
        self.parsed(
            "proxy-http-version",
            "\"1.0\" or \"1.1\"",
            "HTTP/1.1 is used",
            |v| match v {
                "1.0" => Some(true),
                "1.1" => Some(false),
                _ => None,
            },
        )
        .unwrap_or(false)
    }

    /// The response rewrites, `None` when the Ingress asks for none.
    pub(super) fn response_rewrite(&mut self) -> Option<Arc<ResponseRewrite>> {
        let mut r = ResponseRewrite::default();
        let expected = "\"off\", \"default\", a URL or path without spaces, or a ~ or ~* regular expression";
        let from = self.parsed("proxy-redirect-from", expected, "Location is not rewritten", |v| {
            redirect_text(v).then(|| v.to_string())
        });
        if let Some(from) = from.filter(|f| f != "off" && f != "default") {
            if annotation(self.ing, "proxy-redirect-to").is_none() {
                self.common_warning("proxy-redirect-from needs proxy-redirect-to; Location is not rewritten".into());
            }
            let to = self.parsed(
                "proxy-redirect-to",
                "\"off\", or a URL or path without spaces",
                "Location is not rewritten",
                |v| redirect_text(v).then(|| v.to_string()),
            );
            if let Some(to) = to.filter(|t| t != "off") {
                match Replace::parse(&from, &to) {
                    Ok(rp) => r.redirect = Some(rp),
                    Err(e) => self.common_warning(format!("proxy-redirect-from/-to: {e}; Location is not rewritten")),
                }
            }
        }
        r.cookie_path = self.cookie_pair("proxy-cookie-path", "Set-Cookie paths are not rewritten");
        r.cookie_domain = self.cookie_pair("proxy-cookie-domain", "Set-Cookie domains are not rewritten");
        (r != ResponseRewrite::default()).then(|| Arc::new(r))
    }

    /// `proxy-cookie-path`/`-domain`: "off" or two words, the text or ~ regex to find and its
    /// replacement.
    fn cookie_pair(&mut self, name: &str, fallback: &str) -> Option<Replace> {
        let expected =
            "\"off\" or two words (the text or ~ regular expression to find, and its replacement without ; or ,)";
        let words = self.parsed(name, expected, fallback, |v| {
            if v == "off" {
                return Some(None);
            }
            let mut words = v.split_ascii_whitespace();
            let (from, to) = (words.next()?, words.next()?);
            let from_ok = if from.starts_with('~') {
                redirect_text(from)
            } else {
                valid_attribute(from)
            };
            (words.next().is_none() && from_ok && valid_attribute(to)).then(|| Some((from.to_string(), to.to_string())))
        })??;
        match Replace::parse(&words.0, &words.1) {
            Ok(r) => Some(r),
            Err(e) => {
                self.common_warning(format!("{name}: {e}; {fallback}"));
                None
            }
        }
    }
}

/// A `proxy_redirect` text: printable ASCII without spaces.
fn redirect_text(v: &str) -> bool {
    !v.is_empty() && v.len() <= 2048 && v.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// A comma-separated list of addresses and CIDRs, as `*-source-range` annotations take it:
/// the first entry that is neither (or `""` for an empty list) is the error.
pub(super) fn cidr_list(raw: &str) -> Result<Vec<Cidr>, String> {
    let cidrs = raw
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| e.parse::<Cidr>().map_err(|_| e.to_string()))
        .collect::<Result<Vec<Cidr>, String>>()?;
    if cidrs.is_empty() {
        return Err(String::new());
    }
    Ok(cidrs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::compile::{Options, compile, recompile_endpoints};
    use crate::config::{Config, Target};
    use crate::fixture::{self, Prefix};
    use crate::model::{AnyObject, ObjectKey};

    /// A `service-upstream` route keeps its cluster IP through endpoints-only recompiles, and
    /// another Ingress on the same Service port keeps the pods.
    #[test]
    fn service_upstream_keeps_the_cluster_ip_across_endpoint_changes() {
        let mut mesh = fixture::service("default", "mesh").port("http", 80).build();
        mesh.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.10".into());
        let slice = |ip: &str| {
            AnyObject::from(
                fixture::slice("default", "mesh-a", "mesh")
                    .port("http", 8080)
                    .endpoint(ip)
                    .ready(true),
            )
        };
        let objects = |ip: &str| {
            fixture::snapshot([
                fixture::portico_class().into(),
                mesh.clone().into(),
                slice(ip),
                fixture::ingress("default", "vip")
                    .class("portico")
                    .rule("vip.test", "/", Prefix, "mesh", 80)
                    .annotation("portico.dev/service-upstream", "true")
                    .into(),
                fixture::ingress("default", "pods")
                    .class("portico")
                    .rule("pods.test", "/", Prefix, "mesh", 80)
                    .into(),
            ])
        };
        let dialled = |c: &Config, host: &str| -> Vec<String> {
            let b = c.backend(c.routes.route(host, "/").unwrap()).unwrap();
            let Target::Endpoints { ready, .. } = &b.target else {
                panic!("{b:?}")
            };
            ready.iter().map(|e| e.addr.to_string()).collect()
        };
        let before = compile(&objects("10.0.0.1"), &Options::default());
        assert_eq!(dialled(&before, "vip.test"), ["10.96.0.10:80"]);
        assert_eq!(dialled(&before, "pods.test"), ["10.0.0.1:8080"]);
        let after = objects("10.0.0.2");
        let changed: std::collections::HashSet<ObjectKey> = [ObjectKey::new("default", "mesh")].into();
        for quick in [
            recompile_endpoints(&after, &before, None),
            recompile_endpoints(&after.only_services(&changed), &before, Some(&changed)),
        ] {
            assert_eq!(dialled(&quick, "vip.test"), ["10.96.0.10:80"]);
            assert_eq!(dialled(&quick, "pods.test"), ["10.0.0.2:8080"]);
            assert_eq!(quick.backends, compile(&after, &Options::default()).backends);
        }
        assert!(Arc::ptr_eq(
            before.backend(before.routes.route("vip.test", "/").unwrap()).unwrap(),
            recompile_endpoints(&after, &before, None)
                .backend(before.routes.route("vip.test", "/").unwrap())
                .unwrap()
        ));
    }
}
