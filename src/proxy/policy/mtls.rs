//! `auth-tls-*`: acts on the client certificate the connection presented (see
//! [`crate::proxy::mtls`]) — 400 or the error page for a missing or bad one where the policy
//! wants one, 403 for a CN that does not match, 421 for a connection made for another host;
//! plain HTTP is not checked, as nginx does not (but for the CN) —
//! and tells the upstream the result in the `ssl-client-*` headers, as ingress-nginx does.

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::config::Route;
use crate::config::mtls::{ClientAuth, VerifyClient};
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
/// meet. Routes without a policy cost one branch.
#[inline(always)]
pub fn check<'a>(route: &'a Route, peer: &'a Peer) -> Result<Verified<'a>, Rejected<'a>> {
    match route.client_auth.as_deref() {
        None => Ok(Verified::default()),
        Some(auth) => enforce(auth, peer),
    }
}

fn enforce<'a>(auth: &'a ClientAuth, peer: &'a Peer) -> Result<Verified<'a>, Rejected<'a>> {
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
            if auth.verify == VerifyClient::On {
                return Err(Rejected::Certificate(auth, "No required SSL certificate was sent"));
            }
            (HeaderValue::from_static("NONE"), None)
        }
        Outcome::Success(p) => (HeaderValue::from_static("SUCCESS"), Some(p)),
        Outcome::Failed(f, p) => {
            if !(auth.verify == VerifyClient::OptionalNoCa && f.unknown_ca) {
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
    /// `auth-tls-error-page`.
    Certificate(&'a ClientAuth, &'static str),
    /// `auth-tls-match-cn` does not match: 403.
    CommonName,
}

impl Rejected<'_> {
    pub fn response(self) -> Response<Body> {
        match self {
            Rejected::Denied => plain(StatusCode::FORBIDDEN, "forbidden"),
            Rejected::Misdirected => plain(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected request: the connection's TLS name differs from this host, which verifies client certificates",
            ),
            Rejected::Certificate(auth, reason) => {
                match auth.error_page.as_deref().and_then(|p| HeaderValue::from_str(p).ok()) {
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
