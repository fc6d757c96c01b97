//! `upstream-hash-by`: the request's hash key, built from the route's template; endpoint
//! choice by that key is `balance::hash`.

use http::Request;

use crate::config::hash::HashBy;
use crate::config::{Policy, Route, Trusted};
use crate::proxy::headers::{Fields, Peer};
use crate::proxy::vars::{Ctx, expand};

/// What a key is made from besides the request itself.
pub struct Inputs<'a> {
    pub fields: &'a Fields,
    pub peer: &'a Peer,
    pub trusted: &'a Trusted,
    /// The path as routed, when normalizing changed it.
    pub normalized: Option<&'a str>,
    /// The route (`$namespace`, `$service_name`, ...).
    pub route: Option<&'a Route>,
}

/// The request's key and the route's subset size, when its route hashes (`None`, at the
/// cost of one test, otherwise).
#[inline(always)]
pub fn key<B>(policy: &Policy, req: &Request<B>, inputs: &Inputs<'_>) -> Option<(Vec<u8>, Option<u32>)> {
    let hash_by = policy.hash_by.as_deref()?;
    Some((build(hash_by, req, inputs), hash_by.subset))
}

/// The key: the template's value; a part without value adds nothing, as in nginx. Bounded
/// by `proxy::vars::MAX_OUT` (past it, the key is what was built so far).
#[inline(never)]
fn build<B>(hash_by: &HashBy, req: &Request<B>, inputs: &Inputs<'_>) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    let mut ctx = Ctx::of(req, inputs.fields, inputs.peer, inputs.trusted);
    ctx.head.normalized = inputs.normalized;
    ctx.head.route = inputs.route;
    expand(&hash_by.key, &ctx, None, &mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vars::{Captures, Template};
    use std::net::IpAddr;

    fn key_of(template: &str, req: &Request<()>, peer: IpAddr, trusted: &Trusted) -> String {
        let hash_by = HashBy {
            template: String::new(),
            key: Template::parse(template, Captures::default()).unwrap(),
            subset: None,
        };
        let fields = Fields::of(req.headers());
        let peer = Peer::new(peer, 80, false);
        let inputs = Inputs {
            fields: &fields,
            peer: &peer,
            trusted,
            normalized: None,
            route: None,
        };
        String::from_utf8_lossy(&build(&hash_by, req, &inputs)).into_owned()
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
        let k = |t: &str| key_of(t, &req, local, &Trusted::default());
        assert_eq!(k("$request_uri"), "/a/b?page=2&Lang=de&page=3");
        assert_eq!(k("$uri-$args"), "/a/b-page=2&Lang=de&page=3");
        assert_eq!(k("$host$request_uri"), "shop.example/a/b?page=2&Lang=de&page=3");
        assert_eq!(k("$http_x_user"), "u1, u2");
        assert_eq!(k("$cookie_sid-$cookie_none"), "s42-");
        assert_eq!(k("$arg_page$arg_lang$arg_none"), "2de");
        assert_eq!(k("$remote_addr"), "127.0.0.1");
        assert_eq!(k("${binary_remote_addr}x"), "\u{7f}\0\0\u{1}x");
        let trusted = Trusted::from(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(key_of("$remote_addr", &req, local, &trusted), "203.0.113.9");
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
            route: None,
        };
        assert_eq!(key(&Policy::default(), &req, &inputs), None);
    }
}
