#![no_main]
//! htpasswd Secrets and `Authorization: Basic` fields: any bytes parse or are refused, never a
//! panic; every kept entry verifies without panicking, and a `{PLAIN}` entry accepts exactly
//! its own password.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portico::compile::auth::parse_htpasswd;
use portico::config::auth::PasswordHash;
use portico::proxy::policy::auth::{credentials, verify};

fuzz_target!(|data: &[u8]| {
    let (users, _notes) = parse_htpasswd(data);
    for hash in users.values() {
        // bcrypt is slow by design: its cost is checked at parse time, verified elsewhere.
        if !hash.slow() {
            let _ = verify(hash, data);
        }
        if let PasswordHash::Plain(p) = hash {
            assert!(verify(hash, p));
        }
    }
    if let Ok(v) = HeaderValue::from_bytes(data) {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, v);
        let _ = credentials(&h);
    }
});
