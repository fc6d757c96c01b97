//! `auth-tls-*` annotations → the client-certificate policy of each host. As in ingress-nginx
//! the policy belongs to the host (its server), set by the oldest Ingress on it that has an
//! `auth-tls-secret`, and applies to every path of the host. A Secret that cannot be used, or
//! a CN check that cannot be compiled, denies (403) with a Warning; nothing here ever lets a
//! request through that the annotations meant to stop.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::model::Ing as Ingress;
use k8s_openapi::api::core::v1::Secret;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use super::annotations::Annotations;
use super::ingress::annotation;
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::mtls::{CaBundle, ClientAuth, ClientAuthStore, ErrorPage, MatchCn, VerifyClient};
use crate::config::route::HostPattern;
use crate::model::ObjectKey;

/// The most certificates (or CRLs) one Secret field is read for.
const MAX_PEM_BLOCKS: usize = 1000;

/// The PEM blocks of type `T` in the Secret field `field`: at least one, at most
/// [`MAX_PEM_BLOCKS`].
pub(super) fn pem_blocks<T: PemObject>(pem: &[u8], field: &str, block: &str) -> Result<Vec<T>, String> {
    let blocks: Vec<T> = T::pem_slice_iter(pem)
        .take(MAX_PEM_BLOCKS + 1)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{field} is not valid PEM: {e}"))?;
    if blocks.is_empty() {
        return Err(format!("{field} holds no {block} block"));
    }
    if blocks.len() > MAX_PEM_BLOCKS {
        return Err(format!("{field} holds more than {MAX_PEM_BLOCKS} {block} blocks"));
    }
    Ok(blocks)
}

/// `ca.crt`: PEM certificates, each usable as a trust anchor.
pub fn parse_ca(pem: &[u8]) -> Result<CaBundle, String> {
    let certs: Vec<CertificateDer<'static>> = pem_blocks(pem, "ca.crt", "CERTIFICATE")?;
    let mut anchors = Vec::with_capacity(certs.len());
    let mut names = Vec::with_capacity(certs.len());
    for (n, der) in certs.iter().enumerate() {
        let bad = |e: &dyn std::fmt::Display| format!("certificate {} of ca.crt cannot be used: {e}", n + 1);
        let anchor = webpki::anchor_from_trusted_cert(der).map_err(|e| bad(&e))?;
        anchors.push(anchor.to_owned());
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| bad(&e))?;
        names.push((cert.subject().as_raw().to_vec(), cert.issuer().as_raw().to_vec()));
    }
    Ok(CaBundle {
        certs,
        anchors,
        names,
        crl_der: Vec::new(),
        crls: Vec::new(),
    })
}

/// `ca.crl`: PEM `X509 CRL` blocks, added to `ca`.
pub fn parse_crl(ca: &mut CaBundle, pem: &[u8]) -> Result<(), String> {
    let ders: Vec<CertificateRevocationListDer<'static>> = pem_blocks(pem, "ca.crl", "X509 CRL")?;
    for (n, der) in ders.iter().enumerate() {
        let crl = webpki::OwnedCertRevocationList::from_der(der.as_ref())
            .map_err(|e| format!("CRL {} of ca.crl cannot be used: {e}", n + 1))?;
        ca.crl_der.push(der.as_ref().to_vec());
        ca.crls.push(Arc::new(crl.into()));
    }
    Ok(())
}

/// `auth-tls-match-cn`: `CN=` then a regex; the whole value is searched for in the subject
/// DN, as ingress-nginx's `$ssl_client_s_dn ~ "CN=..."` does.
pub fn parse_match_cn(v: &str) -> Result<MatchCn, String> {
    if !v.starts_with("CN=") {
        return Err("it does not start with CN=".into());
    }
    MatchCn::new(v, false).map_err(|e| format!("not a valid regex: {e}"))
}

fn parse_verify(v: &str) -> Option<VerifyClient> {
    Some(match v {
        "on" => VerifyClient::On,
        "off" => VerifyClient::Off,
        "optional" => VerifyClient::Optional,
        "optional_no_ca" => VerifyClient::OptionalNoCa,
        _ => return None,
    })
}

/// An absolute http(s) URL or a path: printable ASCII without spaces, quotes or brackets; or,
/// as ingress-nginx's pattern also takes, a host (and port, and path) without a scheme, which
/// nginx sends as the Location as it is.
fn error_page(v: &str) -> Option<ErrorPage> {
    let safe = !v.is_empty()
        && v.len() <= 2048
        && v.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !b"\"<>\\^`{|}".contains(&b));
    if !safe {
        return None;
    }
    if v.starts_with('/') {
        // The request is routed again to it: a request target it must be.
        let ok = !v.contains('#') && v.parse::<http::uri::PathAndQuery>().is_ok();
        return ok.then(|| ErrorPage::Path(v.to_string()));
    }
    let url = v.starts_with("http://") || v.starts_with("https://");
    (url || bare_host(v)).then(|| ErrorPage::Redirect(v.to_string()))
}

/// `host[:port][/path]`: a DNS name or IPv4 address, digits for the port, path segments of
/// letters, digits, `-`, `_` and `.` (ingress-nginx's `auth-tls-error-page` pattern).
fn bare_host(v: &str) -> bool {
    let (authority, path) = v.split_at(v.find('/').unwrap_or(v.len()));
    let (host, port) = authority.split_once(':').unwrap_or((authority, "1"));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let port_ok = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    let path_ok = path.split('/').skip(1).enumerate().all(|(i, seg)| {
        let last = i + 2 == path.split('/').count();
        (last || !seg.is_empty()) && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    });
    host_ok && port_ok && path_ok
}

impl Annotations<'_> {
    fn tls_warning(&mut self, reason: Reason, msg: String) {
        self.diags
            .push(ObjectRef::ingress(self.key), Severity::Warning, reason, msg);
    }

    /// Reports why `auth` cannot be honoured and makes it deny.
    fn deny(&mut self, auth: &mut ClientAuth, reason: Reason, why: String) {
        let msg = format!("client certificate authentication: {why}; every request to its hosts is answered 403");
        self.tls_warning(reason, msg.clone());
        auth.denied.get_or_insert(msg.into());
    }

    /// The Ingress's `auth-tls-*` settings, when it names an `auth-tls-secret`.
    pub fn client_auth(&mut self) -> Option<ClientAuth> {
        let (prefix, name) = annotation(self.ing, "auth-tls-secret")?;
        let name = name.trim();
        let verify = self
            .parsed(
                "auth-tls-verify-client",
                "on, off, optional or optional_no_ca",
                "using on",
                parse_verify,
            )
            .unwrap_or_default();
        // Any whole number, as ingress-nginx takes (0 is its "not set"); depths past
        // MAX_DEPTH act as it, which no chain reaches.
        let depth = self
            .parsed(
                "auth-tls-verify-depth",
                "a whole number",
                &format!("using {}", ClientAuth::DEFAULT_DEPTH),
                |v| v.parse::<u64>().ok(),
            )
            .filter(|d| *d > 0)
            .map_or(ClientAuth::DEFAULT_DEPTH, |d| {
                u8::try_from(d).unwrap_or(ClientAuth::MAX_DEPTH)
            });
        let pass_certificate = self.bool("auth-tls-pass-certificate-to-upstream", false);
        let error_page = self.parsed(
            "auth-tls-error-page",
            "an http(s) URL, a path, or host[:port][/path]",
            "certificate errors are answered 400",
            error_page,
        );
        let mut auth = ClientAuth {
            ingress: self.key.to_string(),
            secret: Arc::from(name),
            denied: None,
            verify,
            depth,
            pass_certificate,
            error_page,
            match_cn: None,
            ca: Arc::new(CaBundle {
                certs: Vec::new(),
                anchors: Vec::new(),
                names: Vec::new(),
                crl_der: Vec::new(),
                crls: Vec::new(),
            }),
        };
        if let Some((p, raw)) = annotation(self.ing, "auth-tls-match-cn") {
            match parse_match_cn(raw.trim()) {
                Ok(m) => auth.match_cn = Some(m),
                Err(why) => self.deny(
                    &mut auth,
                    Reason::InvalidAnnotation,
                    format!("annotation {p}auth-tls-match-cn={raw:?}: {why}"),
                ),
            }
        }
        let key = match super::auth::secret_key(name, self.key, &format!("{prefix}auth-tls-secret")) {
            Ok(k) => k,
            Err(why) => {
                self.deny(&mut auth, Reason::InvalidAnnotation, why);
                return Some(auth);
            }
        };
        auth.secret = Arc::from(key.to_string());
        let Some(secret) = self.secrets.get(&key) else {
            self.deny(
                &mut auth,
                Reason::SecretNotFound,
                format!("Secret {key} does not exist"),
            );
            return Some(auth);
        };
        let fields = super::tls::secret_fields(secret);
        let field = |k: &str| fields.iter().find(|(name, _)| *name == k).map(|(_, v)| *v);
        let Some(ca_pem) = field("ca.crt") else {
            self.deny(
                &mut auth,
                Reason::InvalidCertificate,
                format!("Secret {key} has no key \"ca.crt\""),
            );
            return Some(auth);
        };
        let mut ca = match parse_ca(ca_pem) {
            Ok(ca) => ca,
            Err(why) => {
                self.deny(&mut auth, Reason::InvalidCertificate, format!("Secret {key}: {why}"));
                return Some(auth);
            }
        };
        if let Some(crl) = field("ca.crl")
            && let Err(why) = parse_crl(&mut ca, crl)
        {
            self.deny(&mut auth, Reason::InvalidCertificate, format!("Secret {key}: {why}"));
            return Some(auth);
        }
        auth.ca = Arc::new(ca);
        Some(auth)
    }
}

/// The client-certificate policies of a compile: per host, and per Ingress for its rules
/// without a host.
#[derive(Default)]
pub struct HostPolicies {
    pub store: ClientAuthStore,
    /// The Ingress's own policy, for its routes without a host (no SNI name selects those).
    own: HashMap<ObjectKey, Arc<ClientAuth>>,
}

impl HostPolicies {
    /// Reads every Ingress's `auth-tls-*` annotations, oldest Ingress first, and gives each
    /// host the first policy set on it.
    pub fn collect(
        owned: &[(&ObjectKey, &Ingress)],
        diags: &mut Diagnostics,
        secrets: &BTreeMap<ObjectKey, Arc<Secret>>,
    ) -> Self {
        let mut out = HostPolicies::default();
        for (key, ing) in owned {
            let mut a = Annotations::of(ing, key, &mut *diags, secrets);
            let Some(auth) = a.client_auth() else { continue };
            let auth = Arc::new(auth);
            let rules = ing.spec.as_ref().and_then(|s| s.rules.as_deref()).unwrap_or(&[]);
            let mut hostless = rules.is_empty();
            for rule in rules {
                let Ok(host) = HostPattern::parse(rule.host.as_deref()) else {
                    continue;
                };
                if host == HostPattern::Any {
                    hostless = true;
                    continue;
                }
                let kept = out.store.insert(&host, auth.clone());
                if let Some(kept) = kept.filter(|k| !Arc::ptr_eq(k, &auth) && **k != *auth) {
                    a.tls_warning(
                        Reason::InvalidAnnotation,
                        format!(
                            "host {host} already takes its client certificate settings from Ingress {}, which is older; these are not used for it",
                            kept.ingress
                        ),
                    );
                }
            }
            if hostless {
                a.tls_warning(
                    Reason::InvalidAnnotation,
                    "client certificate authentication on rules without a host: no TLS name selects them, so no certificate is asked for and requests count as sending none".into(),
                );
            }
            out.own.insert((*key).clone(), auth);
        }
        out
    }

    /// The policy of a route of Ingress `key` on `host`.
    pub fn of_route(&self, key: &ObjectKey, host: &HostPattern) -> Option<Arc<ClientAuth>> {
        match host {
            HostPattern::Any => self.own.get(key).cloned(),
            h => self.store.get(h).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_cn_is_searched_in_the_subject_dn() {
        let m = parse_match_cn("CN=(alice|bob)").unwrap();
        assert!(m.0.is_match("CN=alice,O=Acme"));
        assert!(m.0.is_match("OU=x,CN=bob"));
        assert!(!m.0.is_match("CN=carol"));
        assert!(parse_match_cn("alice").is_err());
        assert!(parse_match_cn("CN=(").is_err());
    }

    #[test]
    fn ca_and_crl_parsing_refuses_garbage() {
        assert!(parse_ca(b"").is_err());
        assert!(parse_ca(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").is_err());
        let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.crt")).unwrap();
        let mut ca = parse_ca(&pem).unwrap();
        assert_eq!((ca.certs.len(), ca.anchors.len(), ca.names.len()), (1, 1, 1));
        assert!(parse_crl(&mut ca, b"nothing").is_err());
        assert!(parse_crl(&mut ca, b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n").is_err());
    }

    #[test]
    fn the_oldest_ingress_on_a_host_sets_its_policy_for_every_path() {
        use crate::compile::{Options, compile};
        use crate::fixture::{self, Prefix};
        let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.crt")).unwrap();
        let n = "nginx.ingress.kubernetes.io/";
        let old = fixture::ingress("default", "old")
            .class("portico")
            .created("2024-01-01T00:00:00Z")
            .annotation(&format!("{n}auth-tls-secret"), "ca")
            .rule("a.test", "/", Prefix, "web", 80)
            .rule("*.wild.test", "/", Prefix, "web", 80);
        let young = fixture::ingress("default", "young")
            .class("portico")
            .created("2024-06-01T00:00:00Z")
            .annotation(&format!("{n}auth-tls-secret"), "ca")
            .annotation(&format!("{n}auth-tls-verify-client"), "optional")
            .rule("a.test", "/young", Prefix, "web", 80)
            .rule("b.test", "/", Prefix, "web", 80);
        let plain = fixture::ingress("default", "plain")
            .class("portico")
            .rule("a.test", "/plain", Prefix, "web", 80)
            .rule("c.test", "/", Prefix, "web", 80);
        let cfg = compile(
            &fixture::snapshot([
                fixture::portico_class().into(),
                fixture::opaque_secret("default", "ca", &[("ca.crt", &pem)]).into(),
                old.into(),
                young.into(),
                plain.into(),
            ]),
            &Options::default(),
        );
        let policy_of = |host: &str, path: &str| {
            cfg.routes
                .route(host, path)
                .unwrap()
                .client_auth
                .as_ref()
                .map(|a| (a.ingress.clone(), a.verify))
        };
        let old_on = Some(("default/old".to_string(), VerifyClient::On));
        assert_eq!(policy_of("a.test", "/"), old_on);
        assert_eq!(policy_of("a.test", "/young"), old_on);
        assert_eq!(policy_of("a.test", "/plain"), old_on);
        assert_eq!(
            policy_of("b.test", "/"),
            Some(("default/young".to_string(), VerifyClient::Optional))
        );
        assert_eq!(policy_of("c.test", "/"), None);
        assert_eq!(policy_of("x.wild.test", "/"), old_on);
        // The handshake's view: SNI names pick the same policies.
        assert_eq!(cfg.client_auth.resolve("A.TEST").unwrap().ingress, "default/old");
        assert_eq!(cfg.client_auth.resolve("x.wild.test").unwrap().ingress, "default/old");
        assert!(cfg.client_auth.resolve("wild.test").is_none());
        assert!(cfg.client_auth.resolve("c.test").is_none());
        let conflicts: Vec<_> = cfg
            .diagnostics
            .iter()
            .filter(|d| d.object.name == "young" && d.reason == Reason::InvalidAnnotation)
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert!(conflicts[0].contains("host a.test already takes"), "{conflicts:?}");
    }

    #[test]
    fn verify_values() {
        assert_eq!(parse_verify("optional_no_ca"), Some(VerifyClient::OptionalNoCa));
        assert_eq!(parse_verify("ON"), None);
        let redirect = |v: &str| Some(ErrorPage::Redirect(v.into()));
        assert_eq!(
            error_page("https://err.example/x?y=1"),
            redirect("https://err.example/x?y=1")
        );
        assert_eq!(error_page("/err"), Some(ErrorPage::Path("/err".into())));
        assert_eq!(
            error_page("/err?from=tls"),
            Some(ErrorPage::Path("/err?from=tls".into()))
        );
        assert_eq!(error_page("/err#x"), None);
        assert_eq!(error_page("javascript:alert(1)"), None);
        assert_eq!(error_page("https://a b"), None);
        for bare in ["errors.example", "errors.example:8080/client-cert", "10.0.0.1/a/b/"] {
            assert_eq!(error_page(bare), redirect(bare));
        }
        for bad in [
            "errors.example//x",
            "errors.example:x/y",
            "a.example/x?y",
            "@named",
            "a:b:c",
        ] {
            assert_eq!(error_page(bad), None, "{bad}");
        }
    }
}
