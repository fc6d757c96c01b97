//! Request-path normalization shared by compile (Ingress paths) and the data plane (requests),
//! so both sides of a match are in the same form.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path has a malformed percent-escape")]
    BadEscape,
    #[error("the path has a dot-segment hidden behind an encoded slash or backslash")]
    EncodedTraversal,
}

/// Normalizes an absolute path (no query):
/// - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, other
///   escapes get upper-case hex (`%2f` → `%2F`) and stay encoded;
/// - repeated slashes are merged;
/// - `.` and `..` segments are removed (RFC 3986 §5.2.4; `..` never climbs above `/`).
///
/// A segment that would become `.` or `..` once `%2F`, `%5C` or `\` were read as a separator
/// is refused: a backend that decodes those must not be handed a way around a route.
///
/// Returns the input borrowed when it is already normal, which is the common case.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode_unreserved(raw)?;
    let trailing_slash = decoded.len() > 1 && decoded.ends_with('/');
    let mut out: Vec<&str> = Vec::new();
    let mut ends_as_dir = trailing_slash;
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    ends_as_dir = true;
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    ends_as_dir = true;
                }
            }
            s => {
                if hides_dot_segment(s) {
                    return Err(PathError::EncodedTraversal);
                }
                out.push(s);
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || ends_as_dir {
        path.push('/');
    }
    Ok(Cow::Owned(path))
}

/// True when `normalize` would return the path unchanged: no escapes, no backslash, no empty
/// inner segment and no dot-segment.
fn is_normal(raw: &str) -> bool {
    // One pass over the bytes (every request's path comes here, most often `/` or a few
    // clean segments; splitting the string cost several times this).
    let b = raw.as_bytes();
    // Where the segment under way begins (after a `/`).
    let mut from = 1;
    for i in 1..=b.len() {
        let c = b.get(i).copied();
        match c {
            Some(b'%' | b'\\') => return false,
            Some(b'/') | None => {
                let seg = b.get(from..i).unwrap_or_default();
                // An empty segment is a repeated slash, unless it is the last (a trailing one).
                if (seg.is_empty() && c.is_some()) || seg == b"." || seg == b".." {
                    return false;
                }
                from = i + 1;
            }
            _ => {}
        }
    }
    true
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex_val),
                bytes.get(i + 2).copied().and_then(hex_val),
            ) else {
                return Err(PathError::BadEscape);
            };
            let v = hi * 16 + lo;
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
            }
            i += 3;
        } else {
            // The input is a &str, so copying runs of non-escape bytes keeps UTF-8 intact.
            let start = i;
            while i < bytes.len() && bytes[i] != b'%' {
                i += 1;
            }
            out.push_str(&raw[start..i]);
        }
    }
    Ok(out)
}

/// Whether a (decoded) segment contains `.` or `..` between encoded slashes/backslashes.
fn hides_dot_segment(seg: &str) -> bool {
    if !(seg.contains('%') || seg.contains('\\')) {
        return false;
    }
    let unified = seg.replace("%2F", "/").replace("%5C", "/").replace('\\', "/");
    unified.split('/').any(|p| p == "." || p == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(|c| c.into_owned())
    }

    #[test]
    fn already_normal_paths_are_borrowed() {
        for p in ["/", "/foo", "/foo/", "/foo/bar.txt", "/a/.b/c..d/"] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    /// `is_normal` as it was written first (by splitting), against the one-pass version on
    /// every path of up to seven bytes from the bytes that matter.
    #[test]
    fn one_pass_is_normal_agrees_with_splitting() {
        fn split_normal(raw: &str) -> bool {
            if raw.bytes().any(|b| b == b'%' || b == b'\\') {
                return false;
            }
            let mut segments = raw[1..].split('/').peekable();
            while let Some(seg) = segments.next() {
                let is_last = segments.peek().is_none();
                if (seg.is_empty() && !is_last) || seg == "." || seg == ".." {
                    return false;
                }
            }
            true
        }
        let alphabet = ['/', '.', 'a', '%', '\\'];
        let mut paths = vec![String::from("/")];
        let mut checked = 0;
        while let Some(p) = paths.pop() {
            assert_eq!(is_normal(&p), split_normal(&p), "{p:?}");
            checked += 1;
            if p.len() < 7 {
                paths.extend(alphabet.iter().map(|c| format!("{p}{c}")));
            }
        }
        assert_eq!(checked, (0..7).map(|n| 5usize.pow(n)).sum::<usize>());
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(n("/a/./b").unwrap(), "/a/b");
        assert_eq!(n("/a/../b").unwrap(), "/b");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(n("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(n("//a///b//").unwrap(), "/a/b/");
        assert_eq!(n("/..").unwrap(), "/");
        assert_eq!(n("//").unwrap(), "/");
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        assert_eq!(n("/%61%62c").unwrap(), "/abc");
        assert_eq!(n("/a/%2e%2e/b").unwrap(), "/b");
        assert_eq!(n("/a/%2E/b").unwrap(), "/a/b");
        assert_eq!(n("/x%2fy").unwrap(), "/x%2Fy");
        assert_eq!(n("/x%2Fy").unwrap(), "/x%2Fy");
        assert_eq!(n("/caf%c3%a9").unwrap(), "/caf%C3%A9");
    }

    #[test]
    fn encoded_traversal_is_refused() {
        for p in [
            "/a/..%2Fsecret",
            "/a/%2e%2e%5Csecret",
            "/a/..%2fb",
            "/a/%2e%2e%2f",
            "/a/..\\b",
            "/a/%2F..%2Fb",
        ] {
            assert_eq!(n(p), Err(PathError::EncodedTraversal), "{p}");
        }
        assert!(n("/a/b%2Fc").is_ok());
        assert!(n("/a/...%2Fc").is_ok());
    }

    #[test]
    fn malformed() {
        assert_eq!(n("foo"), Err(PathError::NotAbsolute));
        assert_eq!(n("/%"), Err(PathError::BadEscape));
        assert_eq!(n("/%4"), Err(PathError::BadEscape));
        assert_eq!(n("/%zz"), Err(PathError::BadEscape));
    }
}
