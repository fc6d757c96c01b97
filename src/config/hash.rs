//! `upstream-hash-by`: the key a route's requests are spread by, as a typed template of
//! nginx variables and literal text (never rendered to configuration text).

use serde::Serialize;

/// A route's consistent-hashing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HashBy {
    /// The annotation as written (for `/routes`).
    pub template: String,
    /// The parts whose values, concatenated, make the key.
    #[serde(skip)]
    pub parts: Vec<KeyPart>,
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

/// One piece of a hash key: literal text or an nginx variable. A variable without a value
/// (an absent header, cookie or argument) adds nothing, as in nginx.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPart {
    Text(String),
    /// `$request_uri`: the path and query as the client sent them.
    RequestUri,
    /// `$remote_addr`: the client address (after `--trusted-proxies`' X-Forwarded-For), as
    /// text.
    RemoteAddr,
    /// `$binary_remote_addr`: the same address as 4 or 16 bytes.
    BinaryRemoteAddr,
    /// `$host`: the request's host, lower-case, without port.
    Host,
    /// `$uri`: the normalized path, without query.
    Uri,
    /// `$args`: the query, without `?`.
    Args,
    /// `$http_<name>`: a request header (name lower-case, `_` read as `-`); several fields
    /// are joined with `, `.
    Header(String),
    /// `$cookie_<name>`: a request cookie's value.
    Cookie(String),
    /// `$arg_<name>`: a query argument's value, as sent (not decoded).
    Arg(String),
}
