//! Header lists a ConfigMap gives (`add-headers`, `proxy-set-headers`, `custom-headers`,
//! `auth-proxy-set-headers`): checked names and literal values, ready to insert.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

/// Headers to set, in the ConfigMap's (sorted) order. Empty for none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(HeaderName, HeaderValue)>);

impl HeaderList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets every header of the list in `headers`, replacing what was there.
    pub fn set(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.0 {
            headers.insert(name.clone(), value.clone());
        }
    }
}

impl Serialize for HeaderList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.0
                .iter()
                .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v.as_bytes()))),
        )
    }
}
