//! A route's canary (ingress-nginx's `canary` annotations): the alternative route and the
//! rules that send a request to it, as plain data.

use std::sync::Arc;

use serde::Serialize;

use super::route::Route;

/// The alternative a canary Ingress adds to a primary route, and when a request takes it.
/// Precedence, as ingress-nginx: a session cookie pinned to either side, then the header,
/// then the cookie, then the weight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// The same host and path as the primary, served by the canary's Service; its policy is
    /// the primary's but for what a canary keeps of its own (`load-balance`, affinity).
    #[serde(skip)]
    pub route: Arc<Route>,
    /// `canary-by-header` with its `-value` or `-pattern`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderRule>,
    /// `canary-by-cookie`: the cookie whose value `always` or `never` decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// `canary-weight`: a request not decided otherwise goes to the canary when a random
    /// number in `1..=weight_total` is at most this.
    pub weight: u32,
    /// `canary-weight-total` as ingress-nginx uses it: 100 unless set higher.
    pub weight_total: u32,
}

impl Canary {
    /// The highest `canary-weight` and `canary-weight-total`.
    pub const MAX_WEIGHT: u32 = 1_000_000_000;
}

/// `canary-by-header`: the request header (lower-case) and what its value must be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeaderRule {
    pub name: String,
    #[serde(rename = "match")]
    pub matches: HeaderMatch,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderMatch {
    /// No value or pattern: `always` sends to the canary, `never` to the primary, any other
    /// value decides nothing.
    AlwaysNever,
    /// `canary-by-header-value`: this exact value sends to the canary; any other decides
    /// nothing.
    Value(String),
    /// `canary-by-header-pattern`: a value the regex matches (anywhere, case-sensitive)
    /// sends to the canary; any other decides nothing.
    Pattern(HeaderPattern),
}

/// A compiled `canary-by-header-pattern`; compares and shows as its source.
pub type HeaderPattern = super::pattern::Pattern;
