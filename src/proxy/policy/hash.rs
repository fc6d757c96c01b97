//! `upstream-hash-by`: the request's hash key, built from the route's template; endpoint
//! choice by that key is `balance::hash`.

use http::{HeaderMap, Request, Uri};

use crate::balance::affinity::request_cookie;
use crate::config::Policy;
use crate::config::Trusted;
use crate::config::hash::{HashBy, KeyPart};
use crate::proxy::headers::{Fields, Peer, client_ip, request_host};

/// What a key is made from besides the request itself.
pub struct Inputs<'a> {
    pub fields: &'a Fields,
    pub peer: &'a Peer,
    pub trusted: &'a Trusted,
    /// The path as routed, when normalizing changed it.
    pub normalized: Option<&'a str>,
}

/// The request's key and the route's subset size, when its route hashes (`None`, at the
/// cost of one test, otherwise).
#[inline(always)]
pub fn key<B>(policy: &Policy, req: &Request<B>, inputs: &Inputs<'_>) -> Option<(Vec<u8>, Option<u32>)> {
    let hash_by = policy.hash_by.as_deref()?;
    Some((build(hash_by, req.uri(), req.headers(), inputs), hash_by.subset))
}

/// The key: each part's value in turn; a part without value adds nothing, as in nginx. Its
/// length is bounded by the request head's (hyper's limits on a head).
#[inline(never)]
fn build(hash_by: &HashBy, uri: &Uri, headers: &HeaderMap, inputs: &Inputs<'_>) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    for part in &hash_by.parts {
        match part {
            KeyPart::Text(t) => key.extend_from_slice(t.as_bytes()),
            KeyPart::RequestUri => {
                key.extend_from_slice(uri.path_and_query().map_or(uri.path(), |pq| pq.as_str()).as_bytes())
            }
            KeyPart::Uri => key.extend_from_slice(inputs.normalized.unwrap_or(uri.path()).as_bytes()),
            KeyPart::Args => key.extend_from_slice(uri.query().unwrap_or("").as_bytes()),
            KeyPart::Host => {
                if let Ok(h) = request_host(uri, inputs.fields) {
                    let h = h.strip_suffix('.').unwrap_or(h);
                    key.extend(h.bytes().map(|b| b.to_ascii_lowercase()));
                }
            }
            KeyPart::RemoteAddr => {
                let ip = client_ip(headers, inputs.peer.addr, inputs.trusted);
                key.extend_from_slice(ip.to_string().as_bytes());
            }
            KeyPart::BinaryRemoteAddr => match client_ip(headers, inputs.peer.addr, inputs.trusted) {
                std::net::IpAddr::V4(v4) => key.extend_from_slice(&v4.octets()),
                std::net::IpAddr::V6(v6) => key.extend_from_slice(&v6.octets()),
            },
            KeyPart::Header(name) => {
                for (n, v) in headers.get_all(name.as_str()).iter().enumerate() {
                    if n > 0 {
                        key.extend_from_slice(b", ");
                    }
                    key.extend_from_slice(v.as_bytes());
                }
            }
            KeyPart::Cookie(name) => {
                if let Some(v) = request_cookie(headers, name) {
                    key.extend_from_slice(v.as_bytes());
                }
            }
            KeyPart::Arg(name) => {
                if let Some(v) = uri.query().and_then(|q| arg(q, name)) {
                    key.extend_from_slice(v.as_bytes());
                }
            }
        }
    }
    key
}

/// The first value of query argument `name` (compared without regard to case, as nginx
/// does), as sent.
fn arg<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeyPart::*;
    use std::net::IpAddr;

    fn text(t: &str) -> KeyPart {
        Text(t.into())
    }

    fn key_of(parts: &[KeyPart], req: &Request<()>, peer: IpAddr, trusted: &Trusted) -> String {
        let hash_by = HashBy {
            template: String::new(),
            parts: parts.to_vec(),
            subset: None,
        };
        let fields = Fields::of(req.headers());
        let peer = Peer::new(peer, 80, false);
        let inputs = Inputs {
            fields: &fields,
            peer: &peer,
            trusted,
            normalized: None,
        };
        String::from_utf8_lossy(&build(&hash_by, req.uri(), req.headers(), &inputs)).into_owned()
    }

    #[test]
    fn each_variable_reads_its_part_of_the_request() {
        let req = Request::builder()
            .uri("/a/b?page=2&Lang=de&page=3")
            .header("host", "Shop.Example:8080")
            .header("x-user", "u1")
            .header("x-user", "u2")
            .header("cookie", "a=1; sid=s42")
            .header("x-forwarded-for", "203.0.113.9")
            .body(())
            .unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let k = |parts: &[KeyPart]| key_of(parts, &req, local, &Trusted::default());
        assert_eq!(k(&[RequestUri]), "/a/b?page=2&Lang=de&page=3");
        assert_eq!(k(&[Uri, text("-"), Args]), "/a/b-page=2&Lang=de&page=3");
        assert_eq!(k(&[Host, RequestUri]), "shop.example/a/b?page=2&Lang=de&page=3");
        assert_eq!(k(&[Header("x-user".into())]), "u1, u2");
        assert_eq!(k(&[Cookie("sid".into()), text("-"), Cookie("none".into())]), "s42-");
        assert_eq!(k(&[Arg("page".into()), Arg("lang".into()), Arg("none".into())]), "2de");
        assert_eq!(k(&[RemoteAddr]), "127.0.0.1");
        assert_eq!(k(&[BinaryRemoteAddr, text("x")]), "\u{7f}\0\0\u{1}x");
        let trusted = Trusted::from(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(key_of(&[RemoteAddr], &req, local, &trusted), "203.0.113.9");
    }

    #[test]
    fn a_route_without_the_annotation_has_no_key() {
        let req = Request::builder().uri("/").body(()).unwrap();
        let fields = Fields::of(req.headers());
        let peer = Peer::new("127.0.0.1".parse().unwrap(), 80, false);
        let inputs = Inputs {
            fields: &fields,
            peer: &peer,
            trusted: &Trusted::default(),
            normalized: None,
        };
        assert_eq!(key(&Policy::default(), &req, &inputs), None);
    }
}
