//! `mirror-target`, `mirror-host` and `mirror-request-body` as plain data: where each
//! request's copy goes.

use serde::Serialize;

use super::vars::Template;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mirror {
    /// `https` or not; the host and port connected to (never from the request).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The request target (path and query), nginx variables allowed (`$request_uri`, …).
    pub target: Template,
    /// The Host header of the copy: `mirror-host`, else the target's host.
    pub host_header: String,
    /// `mirror-request-body` (default on): the copy carries the request's body.
    pub request_body: bool,
}
