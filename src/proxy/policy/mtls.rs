//! `auth-tls-*`: acts on the client certificate the connection presented (see
//! [`crate::proxy::mtls`]) — 400 or the error page for a missing or bad one where the policy
//! wants one, 403 for a CN that does not match, 421 for a connection made for another host;
//! plain HTTP is not checked, as nginx does not (but for the CN) —
//! and tells the upstream the result in the `ssl-client-*` headers, as ingress-nginx does.
//! An error page that is a path is nginx's internal redirect: [`to_page`] turns the request
//! into a GET of it, which the handler routes again with `internal` set.

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};

use crate::config::Route;
use crate::config::mtls::{ClientAuth, ErrorPage, VerifyClient};
use crate::proxy::headers::Peer;
use crate::proxy::mtls::{Outcome, Presented};
use crate::proxy::{Body, plain};

static VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
static SUBJECT: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
static ISSUER: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
static CERT: HeaderName = HeaderName::from_static("ssl-client-cert");

/// A request the policy lets through, with what its upstream headers will say.
#[derive(Default)]
pub struct Verified<'a> {
    /// `None`: the route's host has no policy, and nothing is set.
    auth: Option<&'a ClientAuth>,
    /// `ssl-client-verify`; `None` on a plain-HTTP request (no field is sent).
    verify: Option<HeaderValue>,
    presented: Option<&'a Presented>,
}

/// The answer when the route's host has a client-certificate policy the request does not
/// meet. Routes without a policy cost one branch. `internal`: the request is the internal
/// redirect to the error page, whose certificate errors are not checked again (nginx
/// verifies once per request, before its phases), but whose CN check is (a server-level
/// `if`, which the redirect runs again).
#[inline(always)]
pub fn check<'a>(route: &'a Route, peer: &'a Peer, internal: bool) -> Result<Verified<'a>, Rejected<'a>> {
    match route.client_auth.as_deref() {
        None => Ok(Verified::default()),
        Some(auth) => enforce(auth, peer, internal),
    }
}

fn enforce<'a>(auth: &'a ClientAuth, peer: &'a Peer, internal: bool) -> Result<Verified<'a>, Rejected<'a>> {
    if auth.denied.is_some() {
        return Err(Rejected::Denied);
    }
    const NONE: &Outcome = &Outcome::None;
    if !peer.tls {
        // As nginx on port 80: no TLS, so no certificate is asked for or checked, and the
        // upstream gets no `ssl-client-*` field; only `auth-tls-match-cn` (a server-level
        // check, before the redirect to HTTPS) sees the empty subject DN.
        if let Some(m) = &auth.match_cn
            && !m.0.is_match("")
        {
            return Err(Rejected::CommonName);
        }
        return Ok(Verified {
            auth: Some(auth),
            verify: None,
            presented: None,
        });
    }
    let outcome = match peer.client_tls.get() {
        // The connection was made before any host had a policy.
        None => return Err(Rejected::Misdirected),
        Some(c) if c.sni => match &c.policy {
            Some(p) if std::ptr::eq(&**p, auth) || **p == *auth => &c.outcome,
            // Verified (or not asked) for another host, or under settings since changed:
            // nginx answers 421 when the Host differs from the SNI name it verified for.
            _ => return Err(Rejected::Misdirected),
        },
        // No SNI name: no host's policy asked for a certificate.
        Some(_) => NONE,
    };
    let (verify, presented) = match outcome {
        Outcome::None => {
            if auth.verify == VerifyClient::On && !internal {
                return Err(Rejected::Certificate(auth, "No required SSL certificate was sent"));
            }
            (HeaderValue::from_static("NONE"), None)
        }
        Outcome::Success(p) => (HeaderValue::from_static("SUCCESS"), Some(p)),
        Outcome::Failed(f, p) => {
            if !(internal || auth.verify == VerifyClient::OptionalNoCa && f.unknown_ca) {
                return Err(Rejected::Certificate(auth, "The SSL certificate error"));
            }
            let v = HeaderValue::try_from(format!("FAILED:{}", f.reason)).unwrap_or(HeaderValue::from_static("FAILED"));
            (v, p.as_ref())
        }
    };
    if let Some(m) = &auth.match_cn {
        let dn = presented.and_then(|p| p.subject.to_str().ok()).unwrap_or("");
        if !m.0.is_match(dn) {
            return Err(Rejected::CommonName);
        }
    }
    Ok(Verified {
        auth: Some(auth),
        verify: Some(verify),
        presented,
    })
}

impl Verified<'_> {
    /// Sets the `ssl-client-*` fields of the upstream request, replacing any the client sent.
    #[inline(always)]
    pub fn apply(self, headers: &mut HeaderMap) {
        if let Some(auth) = self.auth {
            set_fields(auth, self.verify, self.presented, headers);
        }
    }
}

fn set_fields(auth: &ClientAuth, verify: Option<HeaderValue>, presented: Option<&Presented>, headers: &mut HeaderMap) {
    for name in [&VERIFY, &SUBJECT, &ISSUER, &CERT] {
        headers.remove(name);
    }
    if let Some(v) = verify {
        headers.insert(VERIFY.clone(), v);
    }
    if let Some(Presented { subject, issuer, pem }) = presented {
        headers.insert(SUBJECT.clone(), subject.clone());
        headers.insert(ISSUER.clone(), issuer.clone());
        if auth.pass_certificate
            && let Some(pem) = pem
        {
            headers.insert(CERT.clone(), pem.clone());
        }
    }
}

/// Why a request is answered by this step.
pub enum Rejected<'a> {
    /// The policy cannot be honoured (its Secret is unusable): 403.
    Denied,
    /// The connection was verified for another host, or before the policy changed: 421.
    Misdirected,
    /// No certificate, or one that does not verify: 400 with nginx's reason, or a 302 to
    /// `auth-tls-error-page` (when it is a path, see [`Rejected::page`]).
    Certificate(&'a ClientAuth, &'static str),
    /// `auth-tls-match-cn` does not match: 403.
    CommonName,
}

impl Rejected<'_> {
    /// The path of an `auth-tls-error-page` this answer is an internal redirect to.
    pub fn page(&self) -> Option<&str> {
        match self {
            Rejected::Certificate(auth, _) => match &auth.error_page {
                Some(ErrorPage::Path(p)) => Some(p),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn response(self) -> Response<Body> {
        match self {
            Rejected::Denied => plain(StatusCode::FORBIDDEN, "forbidden"),
            Rejected::Misdirected => plain(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected request: the connection's TLS name differs from this host, which verifies client certificates",
            ),
            Rejected::Certificate(auth, reason) => {
                let location = match &auth.error_page {
                    Some(ErrorPage::Redirect(to)) => HeaderValue::from_str(to).ok(),
                    // The handler routes a path again; this answer is not reached with one.
                    _ => None,
                };
                match location {
                    Some(location) => {
                        let mut r = plain(StatusCode::FOUND, "redirecting");
                        r.headers_mut().insert(header::LOCATION, location);
                        r
                    }
                    None => plain(StatusCode::BAD_REQUEST, &format!("400 Bad Request: {reason}")),
                }
            }
            Rejected::CommonName => plain(StatusCode::FORBIDDEN, "client certificate unauthorized"),
        }
    }
}

/// Makes `req` nginx's internal redirect to `page` (`error_page 495 496 = /path`): a GET
/// (HEAD stays HEAD) of the page's path and query, on the same host, without the client's
/// body (nginx discards it) or the fields that announced it. `false` when `page` is no request
/// target (compile lets none through).
pub fn to_page<B>(req: &mut Request<B>, page: &str) -> bool {
    let uri = match (req.uri().scheme(), req.uri().authority()) {
        (Some(scheme), Some(authority)) => Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query(page)
            .build(),
        _ => Uri::builder().path_and_query(page).build(),
    };
    let Ok(uri) = uri else { return false };
    *req.uri_mut() = uri;
    if req.method() != Method::HEAD {
        *req.method_mut() = Method::GET;
    }
    let headers = req.headers_mut();
    for name in [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::EXPECT] {
        headers.remove(name);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_page_is_a_get_of_the_path_without_a_body() {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("https://a.test:8443/upload?x=1")
            .header("content-length", "5")
            .header("expect", "100-continue")
            .header("x-kept", "1")
            .body(())
            .unwrap();
        assert!(to_page(&mut req, "/cert-error?why=tls"));
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "https://a.test:8443/cert-error?why=tls");
        assert!(req.headers().get("content-length").is_none());
        assert!(req.headers().get("expect").is_none());
        assert_eq!(req.headers()["x-kept"], "1");

        let mut head = Request::builder().method(Method::HEAD).uri("/x").body(()).unwrap();
        assert!(to_page(&mut head, "/err"));
        assert_eq!(
            (head.method(), head.uri().to_string().as_str()),
            (&Method::HEAD, "/err")
        );
        assert!(!to_page(&mut head, "not a path"));
    }
}
