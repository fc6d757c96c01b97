//! The filters step on real `http::Request`s and responses, with the conformance suite's
//! cases (its HTTPRoutes' filters written here as the compiled data they become); mirrors
//! over real sockets.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::Empty;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::filters::{CorsOrigin, PathModifier, RequestMirror, UrlRewrite};
use crate::config::{Backend, Endpoint, PortRef};
use crate::model::ObjectKey;

fn policy(f: Filters) -> Policy {
    Policy {
        filters: Some(Arc::new(f)),
        ..Policy::default()
    }
}

fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder().method(method).uri(target);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap()
}

fn pairs(list: &[(&'static str, &'static str)]) -> Vec<(HeaderName, HeaderValue)> {
    list.iter()
        .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect()
}

fn modifier(
    set: &[(&'static str, &'static str)],
    add: &[(&'static str, &'static str)],
    remove: &[&'static str],
) -> HeaderModifier {
    HeaderModifier {
        set: pairs(set),
        add: pairs(add),
        remove: remove.iter().map(|n| HeaderName::from_static(n)).collect(),
    }
}

/// The request phase's outcome: the answer when it gave one.
fn run_request(p: &Policy, r: &mut Request<()>, tls: bool) -> Option<Response<Body>> {
    let fields = Fields::of(r.headers());
    request(p, r, &fields, tls, None).err().map(|r| *r)
}

fn values(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_route_without_filters_is_left_alone() {
    let p = Policy::default();
    let mut r = req("GET", "/x", &[("host", "a.example"), ("x-a", "1")]);
    let fields = Fields::of(r.headers());
    assert!(matches!(request(&p, &mut r, &fields, false, None), Ok(None)));
    let uri: Uri = "/x?q=1".parse().unwrap();
    let mut h = HeaderMap::new();
    assert_eq!(rewrite(&p, uri.clone(), &mut h), uri);
    assert!(h.is_empty());
}

#[test]
fn request_headers_set_add_remove_as_the_conformance_suite_expects() {
    // httproute-request-header-modifier's `/multiple` and `/case-insensitivity` rules.
    let p = policy(Filters {
        request_headers: Some(modifier(
            &[("x-header-set-1", "header-set-1"), ("x-header-set-2", "header-set-2")],
            &[("x-header-add-1", "header-add-1"), ("x-header-add-2", "header-add-2")],
            &["x-header-remove-1", "x-header-remove-2"],
        )),
        ..Filters::default()
    });
    let mut r = req(
        "GET",
        "/multiple",
        &[
            ("host", "a.example"),
            ("X-Header-Set-2", "set-val-2"),
            ("x-header-add-2", "add-val-2"),
            ("X-Header-Remove-2", "remove-val-2"),
            ("Another-Header", "another-header-val"),
        ],
    );
    assert!(run_request(&p, &mut r, false).is_none());
    let h = r.headers();
    assert_eq!(values(h, "x-header-set-1"), ["header-set-1"]);
    assert_eq!(values(h, "x-header-set-2"), ["header-set-2"], "set replaces");
    assert_eq!(values(h, "x-header-add-1"), ["header-add-1"]);
    assert_eq!(
        values(h, "x-header-add-2"),
        ["add-val-2", "header-add-2"],
        "add appends"
    );
    assert!(!h.contains_key("x-header-remove-2"));
    assert_eq!(values(h, "another-header"), ["another-header-val"]);
}

#[test]
fn response_headers_change_the_answer() {
    let p = policy(Filters {
        response_headers: Some(modifier(
            &[("x-header-set", "set-overwrites-values")],
            &[("x-header-add", "add-appends-values")],
            &["x-header-remove"],
        )),
        ..Filters::default()
    });
    let mut r = req("GET", "/set", &[("host", "a.example")]);
    let fields = Fields::of(r.headers());
    let applied = request(&p, &mut r, &fields, false, None).ok().flatten();
    assert!(applied.is_some());
    let mut resp = plain(StatusCode::OK, "upstream");
    resp.headers_mut()
        .insert("x-header-set", HeaderValue::from_static("upstream"));
    resp.headers_mut()
        .insert("x-header-add", HeaderValue::from_static("upstream"));
    resp.headers_mut()
        .insert("x-header-remove", HeaderValue::from_static("upstream"));
    respond(applied.as_ref(), &mut resp);
    let h = resp.headers();
    assert_eq!(values(h, "x-header-set"), ["set-overwrites-values"]);
    assert_eq!(values(h, "x-header-add"), ["upstream", "add-appends-values"]);
    assert!(!h.contains_key("x-header-remove"));
    // Without filters nothing changes.
    let mut untouched = plain(StatusCode::OK, "upstream");
    respond(None, &mut untouched);
    assert!(!untouched.headers().contains_key("x-header-set"));
}

fn redirect_filter(r: RequestRedirect) -> Policy {
    policy(Filters {
        redirect: Some(r),
        ..Filters::default()
    })
}

fn to(scheme: Option<Scheme>, port: Option<u16>, listener_port: Option<u16>) -> RequestRedirect {
    RequestRedirect {
        scheme,
        hostname: Some("example.org".into()),
        path: None,
        port,
        status: 302,
        listener_port,
    }
}

fn location(p: &Policy, target: &str, host: &str, tls: bool) -> (u16, String) {
    let mut r = req("GET", target, &[("host", host)]);
    let resp = run_request(p, &mut r, tls).expect("a redirect");
    let loc = resp
        .headers()
        .get(header::LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    (resp.status().as_u16(), loc)
}

#[test]
fn redirect_port_follows_scheme_and_listener_as_the_spec_says() {
    use Scheme::{Http, Https};
    // httproute-redirect-port-and-scheme: (scheme, port, listener port, request over TLS) →
    // Location. The listener's port comes from compile, else from the request's Host.
    let cases = [
        // Listener on 80.
        (None, None, Some(80), false, "a.example", "http://example.org/p"),
        (None, Some(80), Some(80), false, "a.example", "http://example.org/p"),
        (
            None,
            Some(8080),
            Some(80),
            false,
            "a.example",
            "http://example.org:8080/p",
        ),
        (Some(Https), None, Some(80), false, "a.example", "https://example.org/p"),
        (
            Some(Https),
            Some(443),
            Some(80),
            false,
            "a.example",
            "https://example.org/p",
        ),
        (
            Some(Https),
            Some(8443),
            Some(80),
            false,
            "a.example",
            "https://example.org:8443/p",
        ),
        // Listener on 8080.
        (
            None,
            None,
            Some(8080),
            false,
            "a.example:8080",
            "http://example.org:8080/p",
        ),
        (
            None,
            Some(80),
            Some(8080),
            false,
            "a.example:8080",
            "http://example.org/p",
        ),
        (
            Some(Https),
            None,
            Some(8080),
            false,
            "a.example:8080",
            "https://example.org/p",
        ),
        // Listener on 443 (HTTPS).
        (None, None, Some(443), true, "example.org", "https://example.org/p"),
        (None, Some(443), Some(443), true, "example.org", "https://example.org/p"),
        (
            None,
            Some(8443),
            Some(443),
            true,
            "example.org",
            "https://example.org:8443/p",
        ),
        (Some(Http), None, Some(443), true, "example.org", "http://example.org/p"),
        (
            Some(Http),
            Some(80),
            Some(443),
            true,
            "example.org",
            "http://example.org/p",
        ),
        (
            Some(Http),
            Some(8080),
            Some(443),
            true,
            "example.org",
            "http://example.org:8080/p",
        ),
        // No listener port from compile: the Host's port, else the scheme's.
        (None, None, None, false, "a.example:8080", "http://example.org:8080/p"),
        (None, None, None, false, "a.example", "http://example.org/p"),
        (None, None, None, true, "a.example", "https://example.org/p"),
    ];
    for (scheme, port, listener, tls, host, want) in cases {
        let p = redirect_filter(to(scheme, port, listener));
        assert_eq!(
            location(&p, "/p", host, tls),
            (302, want.to_string()),
            "{scheme:?} {port:?} {listener:?} tls={tls}"
        );
    }
}

#[test]
fn redirect_paths_statuses_and_the_query() {
    // httproute-redirect-path's rules.
    let mut r = to(None, None, None);
    r.hostname = None;
    r.path = Some(PathModifier::ReplacePrefixMatch {
        prefix: "/original-prefix".into(),
        with: "/replacement-prefix".into(),
    });
    let p = redirect_filter(r.clone());
    assert_eq!(
        location(&p, "/original-prefix/lemon", "gw.example", false),
        (302, "http://gw.example/replacement-prefix/lemon".into())
    );
    assert_eq!(
        location(&p, "/original-prefix/lemon?a=1&b", "gw.example", false).1,
        "http://gw.example/replacement-prefix/lemon?a=1&b"
    );
    // The prefix is replaced in the path as routed, when normalizing changed it.
    let mut dotted = req("GET", "/original-prefix/./lemon?a=1", &[("host", "gw.example")]);
    let fields = Fields::of(dotted.headers());
    let resp = *request(&p, &mut dotted, &fields, false, Some("/original-prefix/lemon"))
        .err()
        .unwrap();
    assert_eq!(
        one(resp.headers(), "location").as_deref(),
        Some("http://gw.example/replacement-prefix/lemon?a=1")
    );
    r.path = Some(PathModifier::ReplaceFullPath("/full-path-replacement".into()));
    r.status = 301;
    let p = redirect_filter(r.clone());
    assert_eq!(
        location(&p, "/full/path/original", "gw.example", false),
        (301, "http://gw.example/full-path-replacement".into())
    );
    for code in [303, 307, 308] {
        r.status = code;
        assert_eq!(location(&redirect_filter(r.clone()), "/x", "gw.example", false).0, code);
    }
    // The host keeps no port of the request when the filter sets none... but the port does.
    r.status = 302;
    r.path = None;
    assert_eq!(
        location(&redirect_filter(r), "/x", "gw.example:8080", false).1,
        "http://gw.example:8080/x"
    );
}

#[test]
fn rewrite_changes_the_upstream_host_and_path_keeping_the_query() {
    let p = policy(Filters {
        rewrite: Some(UrlRewrite {
            hostname: Some(HeaderValue::from_static("one.example.org")),
            path: Some(PathModifier::ReplacePrefixMatch {
                prefix: "/prefix/one".into(),
                with: "/one".into(),
            }),
        }),
        ..Filters::default()
    });
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("rewrite.example"));
    let uri = rewrite(&p, "/prefix/one/two?x=1".parse().unwrap(), &mut h);
    assert_eq!(uri, "/one/two?x=1");
    assert_eq!(values(&h, "host"), ["one.example.org"]);
    // A host-only rewrite leaves the path.
    let host_only = policy(Filters {
        rewrite: Some(UrlRewrite {
            hostname: Some(HeaderValue::from_static("example.org")),
            path: None,
        }),
        ..Filters::default()
    });
    assert_eq!(rewrite(&host_only, "/two".parse().unwrap(), &mut h), "/two");
    assert_eq!(values(&h, "host"), ["example.org"]);
    // Stripping the whole prefix leaves `/`.
    let strip = policy(Filters {
        rewrite: Some(UrlRewrite {
            hostname: None,
            path: Some(PathModifier::ReplacePrefixMatch {
                prefix: "/strip-prefix".into(),
                with: String::new(),
            }),
        }),
        ..Filters::default()
    });
    assert_eq!(rewrite(&strip, "/strip-prefix".parse().unwrap(), &mut h), "/");
    assert_eq!(
        rewrite(&strip, "/strip-prefix/three".parse().unwrap(), &mut h),
        "/three"
    );
}

fn cors(
    origins: Vec<CorsOrigin>,
    credentials: bool,
    methods: &[&str],
    headers: &[&str],
    expose: &[&str],
    max_age: u32,
) -> Policy {
    let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect();
    policy(Filters {
        cors: Some(GatewayCors {
            allow_origins: origins,
            allow_credentials: credentials,
            allow_methods: s(methods),
            allow_headers: s(headers),
            expose_headers: s(expose),
            max_age,
        }),
        ..Filters::default()
    })
}

fn origin(scheme: Scheme, host: &str) -> CorsOrigin {
    CorsOrigin::Origin {
        scheme,
        host: host.into(),
        port: scheme.default_port(),
    }
}

fn preflight(p: &Policy, from: &str, method: &str, headers: Option<&str>) -> Response<Body> {
    let mut h = vec![
        ("host", "gw.example"),
        ("origin", from),
        ("access-control-request-method", method),
    ];
    if let Some(v) = headers {
        h.push(("access-control-request-headers", v));
    }
    let mut r = req("OPTIONS", "/cors-1", &h);
    run_request(p, &mut r, false).expect("a preflight answer")
}

fn one(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_string())
}

#[test]
fn cors_preflights_answer_as_the_conformance_suite_expects() {
    // httproute-cors's `cors-multiple-origins-methods-headers`.
    let p = cors(
        vec![origin(Scheme::Https, "www.foo.com"), origin(Scheme::Https, "*.bar.com")],
        true,
        &["GET", "OPTIONS"],
        &["x-header-1", "x-header-2"],
        &["x-header-3", "x-header-4"],
        3600,
    );
    for from in ["https://www.foo.com", "https://www.bar.com", "https://xpto.www.bar.com"] {
        let r = preflight(&p, from, "GET", Some("x-header-1, x-header-2"));
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let h = r.headers();
        assert_eq!(one(h, "access-control-allow-origin").as_deref(), Some(from));
        assert_eq!(one(h, "access-control-allow-methods").as_deref(), Some("GET, OPTIONS"));
        assert_eq!(
            one(h, "access-control-allow-headers").as_deref(),
            Some("x-header-1, x-header-2")
        );
        assert_eq!(
            one(h, "access-control-expose-headers").as_deref(),
            Some("x-header-3, x-header-4")
        );
        assert_eq!(one(h, "access-control-max-age").as_deref(), Some("3600"));
        assert_eq!(one(h, "access-control-allow-credentials").as_deref(), Some("true"));
    }
    let denied = preflight(&p, "https://foobar.com", "GET", None);
    assert_eq!(denied.status(), StatusCode::NO_CONTENT);
    assert!(!denied.headers().contains_key("access-control-allow-origin"));

    // `cors-wildcard-methods`: `*` answers with the method asked; no credentials field.
    let p = cors(vec![origin(Scheme::Https, "www.foo.com")], false, &["*"], &[], &[], 5);
    let r = preflight(&p, "https://www.foo.com", "POST", None);
    assert_eq!(
        one(r.headers(), "access-control-allow-methods").as_deref(),
        Some("POST")
    );
    assert_eq!(
        one(r.headers(), "access-control-allow-origin").as_deref(),
        Some("https://www.foo.com")
    );
    assert!(!r.headers().contains_key("access-control-allow-credentials"));
    assert!(
        !r.headers().contains_key("access-control-allow-headers"),
        "none asked for"
    );
    assert_eq!(one(r.headers(), "access-control-max-age").as_deref(), Some("5"));

    // `cors-wildcard-origin` (a port in the Origin too) and `cors-wildcard-methods-headers`.
    let p = cors(vec![CorsOrigin::Any], false, &["PUT"], &[], &[], 5);
    let r = preflight(&p, "https://foobar.com:12345", "PUT", None);
    assert_eq!(
        one(r.headers(), "access-control-allow-origin").as_deref(),
        Some("https://foobar.com:12345")
    );
    assert_eq!(one(r.headers(), "access-control-allow-methods").as_deref(), Some("PUT"));
    let p = cors(vec![CorsOrigin::Any], true, &["*"], &["*"], &[], 5);
    let r = preflight(&p, "https://other.foo.com", "PUT", Some("x-header-1, x-header-2"));
    let h = r.headers();
    assert_eq!(
        one(h, "access-control-allow-origin").as_deref(),
        Some("https://other.foo.com")
    );
    assert_eq!(one(h, "access-control-allow-methods").as_deref(), Some("PUT"));
    assert_eq!(
        one(h, "access-control-allow-headers").as_deref(),
        Some("x-header-1, x-header-2")
    );
    assert_eq!(one(h, "access-control-allow-credentials").as_deref(), Some("true"));
}

#[test]
fn cors_actual_requests_get_the_fields_only_from_allowed_origins() {
    let p = cors(
        vec![origin(Scheme::Https, "www.foo.com")],
        true,
        &["GET"],
        &[],
        &["*"],
        5,
    );
    let answer = |from: &str| {
        let mut r = req("GET", "/cors-1", &[("host", "gw.example"), ("origin", from)]);
        let fields = Fields::of(r.headers());
        let applied = request(&p, &mut r, &fields, false, None).ok().flatten();
        let mut resp = plain(StatusCode::OK, "upstream");
        respond(applied.as_ref(), &mut resp);
        resp
    };
    let ok = answer("https://www.foo.com");
    let h = ok.headers();
    assert_eq!(
        one(h, "access-control-allow-origin").as_deref(),
        Some("https://www.foo.com")
    );
    assert_eq!(one(h, "access-control-allow-credentials").as_deref(), Some("true"));
    assert!(
        !h.contains_key("access-control-expose-headers"),
        "no `*` with credentials"
    );
    assert!(!h.contains_key("access-control-max-age"), "only on preflights");
    assert_eq!(values(h, "vary"), ["Origin"]);
    let denied = answer("https://foobar.com");
    assert!(!denied.headers().contains_key("access-control-allow-origin"));
    assert!(!denied.headers().contains_key("access-control-allow-credentials"));
    // An OPTIONS without Access-Control-Request-Method is no preflight: it goes upstream.
    let mut r = req(
        "OPTIONS",
        "/",
        &[("host", "gw.example"), ("origin", "https://www.foo.com")],
    );
    assert!(run_request(&p, &mut r, false).is_none());
}

/// A backend whose one ready endpoint is `addr`.
fn backend(addr: std::net::SocketAddr) -> Arc<Backend> {
    Arc::new(Backend {
        service: ObjectKey::new("infra", "infra-backend-v2"),
        port: PortRef::Number(8080),
        target: Target::Endpoints {
            ready: Arc::from(vec![Endpoint {
                addr,
                target: None,
                zone: None,
            }]),
            terminating: Arc::from(Vec::new()),
        },
        client_ip_affinity: None,
        app_protocol: None,
        protocol: crate::config::Protocol::Http,
        service_upstream: false,
    })
}

/// Reads one request head from the next connection to `l`.
async fn copy_received(l: &tokio::net::TcpListener) -> String {
    let (mut c, _) = tokio::time::timeout(Duration::from_secs(10), l.accept())
        .await
        .expect("a copy")
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the head ended");
        buf.extend_from_slice(&chunk[..n]);
    }
    c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    String::from_utf8(buf).unwrap().to_ascii_lowercase()
}

#[tokio::test]
async fn mirrors_copy_the_modified_request_to_an_endpoint_of_their_backend() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        backends: vec![backend(l.local_addr().unwrap())],
        ..Config::default()
    };
    // httproute-request-mirror's `/mirror-and-modify-headers`: the copy has the changes.
    let p = policy(Filters {
        request_headers: Some(modifier(
            &[("x-header-set", "set-overwrites-values")],
            &[],
            &["x-header-remove"],
        )),
        mirrors: vec![RequestMirror {
            backend: 0,
            numerator: 100,
            denominator: 100,
        }],
        ..Filters::default()
    });
    let mut r = req(
        "GET",
        "/mirror-and-modify-headers?q=1",
        &[
            ("host", "gw.example"),
            ("x-header-remove", "gone"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
        ],
    )
    .map(|()| Empty::<Bytes>::new());
    let fields = Fields::of(r.headers());
    let applied = request(&p, &mut r, &fields, false, None).ok().flatten();
    let state = mirror::State::new(false);
    let tee = mirror(applied.as_ref(), &state, &config, &r, || 7);
    assert!(tee.is_none(), "no body to wait for");
    let head = copy_received(&l).await;
    assert!(
        head.starts_with("get /mirror-and-modify-headers?q=1 http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nhost: gw.example\r\n"), "{head}");
    assert!(head.contains("\r\nx-header-set: set-overwrites-values\r\n"), "{head}");
    assert!(!head.contains("x-header-remove") && !head.contains("x-hop"), "{head}");

    // A share of none copies nothing (the next copy to arrive is the later request's); a
    // route without mirrors starts nothing.
    let none = policy(Filters {
        mirrors: vec![RequestMirror {
            backend: 0,
            numerator: 0,
            denominator: 100,
        }],
        ..Filters::default()
    });
    let mut r = req("GET", "/not-copied", &[("host", "gw.example")]).map(|()| Empty::<Bytes>::new());
    let fields = Fields::of(r.headers());
    let applied = request(&none, &mut r, &fields, false, None).ok().flatten();
    assert!(mirror(applied.as_ref(), &state, &config, &r, || 7).is_none());
    assert!(mirror(None, &state, &config, &r, || 7).is_none());
    let mut r = req("GET", "/copied", &[("host", "gw.example")]).map(|()| Empty::<Bytes>::new());
    let fields = Fields::of(r.headers());
    let applied = request(&p, &mut r, &fields, false, None).ok().flatten();
    assert!(mirror(applied.as_ref(), &state, &config, &r, || 7).is_none());
    let head = copy_received(&l).await;
    assert!(head.starts_with("get /copied "), "{head}");
}

#[test]
fn a_backend_refs_own_header_modifiers_apply_after_the_rules() {
    // httproute-request-header-modifier-backend-weights: each backendRef sets `Backend`;
    // here the rule also sets it, and removes a field the backendRef sets again.
    let rule = Filters {
        request_headers: Some(modifier(&[("backend", "rule")], &[], &["x-again"])),
        response_headers: Some(modifier(&[("x-answer", "rule")], &[], &[])),
        ..Filters::default()
    };
    let own = Filters {
        request_headers: Some(modifier(
            &[("backend", "infra-backend-v1"), ("x-again", "backend")],
            &[],
            &[],
        )),
        response_headers: Some(modifier(&[], &[("x-answer", "backend")], &[])),
        ..Filters::default()
    };
    let p = policy(rule.with_backend_ref(&own));
    let mut r = req(
        "GET",
        "/",
        &[("host", "gw.example"), ("backend", "client"), ("x-again", "client")],
    );
    let fields = Fields::of(r.headers());
    let applied = request(&p, &mut r, &fields, false, None).ok().flatten();
    assert_eq!(values(r.headers(), "backend"), ["infra-backend-v1"]);
    assert_eq!(values(r.headers(), "x-again"), ["backend"]);
    let mut resp = plain(StatusCode::OK, "upstream");
    respond(applied.as_ref(), &mut resp);
    assert_eq!(values(resp.headers(), "x-answer"), ["rule", "backend"]);
}
