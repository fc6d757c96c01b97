//! Authentication a route asks for (`auth-type`/`auth-secret`, `auth-url`), as plain data:
//! password hashes, never passwords; nothing here is ever serialized beyond counts and names.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

/// What a route's auth annotations compiled to. Checked in this order: `denied`, then
/// `basic`, then (later) the external service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Auth {
    /// An auth annotation that cannot be honoured (missing or unusable Secret, unsupported
    /// type): every request is answered 503, as ingress-nginx does for a denied location.
    /// The reason is in the diagnostics; the client never sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
}

/// `auth-type: basic`: users and their password hashes from the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    /// `auth-realm`: printable ASCII without `"` or `\`, so it can be quoted as is.
    pub realm: Arc<str>,
    /// The Secret the users came from (`namespace/name`).
    pub secret: Arc<str>,
    /// User → hash. Empty when the Secret had no usable entry: everyone gets 401.
    pub users: Arc<BTreeMap<String, PasswordHash>>,
}

/// Only the realm, the Secret and how many users it holds go to `/routes`.
impl Serialize for BasicAuth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("BasicAuth", 3)?;
        st.serialize_field("realm", &*self.realm)?;
        st.serialize_field("secret", &*self.secret)?;
        st.serialize_field("users", &self.users.len())?;
        st.end()
    }
}

/// A password hash in one of the htpasswd forms Portico verifies.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$`, `$2a$`, `$2b$` (the whole modular-crypt string; cost checked at compile).
    Bcrypt(String),
    /// `$apr1$salt$hash` (Apache) or `$1$salt$hash` (crypt(3) MD5): the magic, the salt
    /// (at most 8 characters) and the 22-character hash.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        hash: String,
    },
    /// `{SHA}` base64(SHA-1(password)).
    Sha1([u8; 20]),
    /// `{SSHA}` base64(SHA-1(password + salt) + salt).
    Ssha { digest: [u8; 20], salt: Vec<u8> },
    /// `{PLAIN}password`, which nginx accepts too.
    Plain(Vec<u8>),
}

/// Hashes are never printed, not even in debug output.
impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PasswordHash::Bcrypt(_) => "Bcrypt(..)",
            PasswordHash::Md5Crypt { .. } => "Md5Crypt(..)",
            PasswordHash::Sha1(_) => "Sha1(..)",
            PasswordHash::Ssha { .. } => "Ssha(..)",
            PasswordHash::Plain(_) => "Plain(..)",
        })
    }
}

impl PasswordHash {
    /// The highest bcrypt cost accepted: 2^15 rounds take about a second on one core, and
    /// every request that misses the cache of verified passwords pays it.
    pub const MAX_BCRYPT_COST: u32 = 15;

    /// Whether verifying is slow enough that a verified password is worth remembering.
    pub fn slow(&self) -> bool {
        matches!(self, PasswordHash::Bcrypt(_))
    }
}
