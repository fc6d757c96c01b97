//! `upstream-hash-by`: the key a route's requests are spread by, as a typed template of
//! nginx variables and literal text (never rendered to configuration text).

use serde::Serialize;

use super::vars::Template;

/// A route's consistent-hashing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HashBy {
    /// The annotation as written (for `/routes`).
    pub template: String,
    /// The template whose value is the key; a variable without a value (an absent header,
    /// cookie or argument) adds nothing, as in nginx.
    #[serde(skip)]
    pub key: Template,
    /// `upstream-hash-by-subset` with its `-size`: the key picks a subset of this many
    /// endpoints, and each request a random one of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u32>,
}

impl HashBy {
    /// The longest template accepted.
    pub const MAX_LEN: usize = 512;
    /// The most variables and literal pieces in one template.
    pub const MAX_PARTS: usize = 16;
    /// `upstream-hash-by-subset-size` when unset (or 0), as ingress-nginx.
    pub const DEFAULT_SUBSET: u32 = 3;
    /// The largest `upstream-hash-by-subset-size`.
    pub const MAX_SUBSET: u32 = 1000;
}
