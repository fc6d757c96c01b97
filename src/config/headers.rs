//! Header lists a ConfigMap gives (`add-headers`, `proxy-set-headers`, `custom-headers`,
//! `auth-proxy-set-headers`): checked names and values that may name nginx variables,
//! ready to insert (a value without variables is a ready header value).

use http::{HeaderName, HeaderValue};
use serde::Serialize;

use super::vars::Template;

/// One header to set: its value as a template, and ready when it names no variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: Template,
    pub literal: Option<HeaderValue>,
}

/// Headers to set, in the ConfigMap's (sorted) order. Empty for none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<Header>);

impl HeaderList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether some value names a variable (and needs the request to be set).
    pub fn has_variables(&self) -> bool {
        self.0.iter().any(|h| h.literal.is_none())
    }
}

impl Serialize for HeaderList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|h| (h.name.as_str(), h.value.source())))
    }
}
