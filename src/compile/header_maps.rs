//! ConfigMaps that list headers, as ingress-nginx's `add-headers`, `proxy-set-headers`,
//! `custom-headers` and `auth-proxy-set-headers` name them: read into a checked
//! [`HeaderList`]. Values may name nginx variables (as nginx expands them there); an unknown
//! one refuses the list, as a bad value does.

use http::{HeaderName, HeaderValue};

use crate::config::headers::{Header, HeaderList};
use crate::config::vars::{Captures, Template};
use crate::model::{ObjectKey, Snapshot};

/// The most headers one ConfigMap may give.
pub const MAX_HEADERS: usize = 64;
/// The longest value, in bytes.
pub const MAX_VALUE: usize = 4096;

/// Names no ConfigMap may set: message framing, hop-by-hop fields, and the request's target
/// host and forwarding fields, which Portico writes itself.
const REFUSED: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-real-ip",
    "x-request-id",
];

/// The ConfigMap `reference` names (`namespace/name`, or `name` in `namespace`).
/// `same_namespace`: another namespace is refused (annotations, as ingress-nginx without
/// `allow-cross-namespace-resources`).
pub fn key(reference: &str, namespace: &str, same_namespace: bool) -> Result<ObjectKey, String> {
    let reference = reference.trim();
    let key = match reference.split_once('/') {
        Some((ns, n)) => ObjectKey::new(ns, n),
        None => ObjectKey::new(namespace, reference),
    };
    let dns = |v: &str| {
        !v.is_empty()
            && v.len() <= 253
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !dns(&key.namespace) || !dns(&key.name) {
        return Err(format!("{reference:?} is not a ConfigMap name or namespace/name"));
    }
    if same_namespace && key.namespace != namespace {
        return Err(format!("ConfigMap {key} is in another namespace, which is not allowed"));
    }
    Ok(key)
}

/// The headers of ConfigMap `key`; `Err` says why none can be used (missing ConfigMap, a bad
/// name or value: the whole list is refused, as ingress-nginx does).
pub fn read(snapshot: &Snapshot, key: &ObjectKey) -> Result<HeaderList, String> {
    let cm = snapshot
        .config_maps
        .get(key)
        .ok_or_else(|| format!("ConfigMap {key} does not exist"))?;
    let Some(data) = cm.data.as_ref() else {
        return Ok(HeaderList::default());
    };
    if data.len() > MAX_HEADERS {
        return Err(format!("ConfigMap {key} lists more than {MAX_HEADERS} headers"));
    }
    let mut out = Vec::with_capacity(data.len());
    for (name, value) in data {
        let ok_name = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let lower = name.to_ascii_lowercase();
        if !ok_name || REFUSED.contains(&lower.as_str()) {
            return Err(format!(
                "ConfigMap {key}: {name:?} is not a header name that can be set"
            ));
        }
        let ok_value = value.len() <= MAX_VALUE && value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
        let (Ok(n), true) = (HeaderName::from_bytes(lower.as_bytes()), ok_value) else {
            return Err(format!(
                "ConfigMap {key}: the value of {name} is not printable ASCII up to {MAX_VALUE} bytes"
            ));
        };
        let template = Template::parse(value.trim(), Captures::default())
            .map_err(|why| format!("ConfigMap {key}: the value of {name}: {why}"))?;
        let literal = match template.literal() {
            Some(l) => Some(
                HeaderValue::from_str(l)
                    .map_err(|_| format!("ConfigMap {key}: the value of {name} is not a header value"))?,
            ),
            None => None,
        };
        out.push(Header {
            name: n,
            value: template,
            literal,
        });
    }
    Ok(HeaderList(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn of(data: &[(&str, &str)]) -> Result<HeaderList, String> {
        let s = fixture::snapshot([fixture::config_map("default", "h", data).into()]);
        read(&s, &ObjectKey::new("default", "h"))
    }

    #[test]
    fn names_and_values_are_checked() {
        let l = of(&[
            ("X-Using", "portico"),
            ("x-b", " two words "),
            ("x-c", "$remote_addr:${server_port}"),
        ])
        .unwrap();
        assert_eq!(l.0.len(), 3);
        assert_eq!(l.0[0].name, "x-using");
        assert_eq!(l.0[1].literal.as_ref().unwrap(), "two words");
        assert!(l.0[2].literal.is_none() && l.has_variables());
        for bad in [
            &[("Content-Length", "1")][..],
            &[("Host", "evil")],
            &[("x a", "1")],
            &[("x", "$nope")],
            &[("x", "${remote_addr")],
            &[("x", "a\nb")],
        ] {
            assert!(of(bad).is_err(), "{bad:?}");
        }
        let many: Vec<(String, String)> = (0..=MAX_HEADERS).map(|i| (format!("x-{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert!(of(&many).is_err());
        assert!(read(&Snapshot::default(), &ObjectKey::new("default", "h")).is_err());
    }

    #[test]
    fn references() {
        assert_eq!(key("h", "ns", true), Ok(ObjectKey::new("ns", "h")));
        assert_eq!(key("a/h", "ns", false), Ok(ObjectKey::new("a", "h")));
        assert!(key("a/h", "ns", true).is_err());
        assert!(key("A_B", "ns", true).is_err());
    }
}
