//! The route table's Gateway API side, pinned to what the v1.6.3 conformance tests check
//! (httproute-path-match-order, -matching, -matching-across-routes, -header-matching,
//! -query-param-matching, -method-matching, -weight) and the spec text they test.

use super::*;

/// A rule path: `("Exact" | "PathPrefix" | "RegularExpression", value)`.
type P<'a> = (&'a str, &'a str);

/// One HTTPRouteMatch: path, method, headers, query parameters (all Exact unless the value
/// starts with `~`, which makes it a RegularExpression).
#[derive(Clone, Copy, Default)]
struct M<'a> {
    path: Option<P<'a>>,
    method: Option<&'a str>,
    headers: &'a [(&'a str, &'a str)],
    query: &'a [(&'a str, &'a str)],
}

/// A match of a prefix path (`None`: `/`), method and conditions.
fn m<'a>(
    prefix: Option<&'a str>,
    method: Option<&'a str>,
    headers: &'a [(&'a str, &'a str)],
    query: &'a [(&'a str, &'a str)],
) -> M<'a> {
    M {
        path: prefix.map(|p| ("PathPrefix", p)),
        method,
        headers,
        query,
    }
}

fn kind_of(v: &str) -> (Option<&str>, &str) {
    match v.strip_prefix('~') {
        Some(re) => (Some("RegularExpression"), re),
        None => (None, v),
    }
}

fn conditions(m: &M<'_>) -> Option<Arc<Conditions>> {
    let mut c = Conditions::default();
    if let Some(method) = m.method {
        c.set_method(method).unwrap();
    }
    for (n, v) in m.headers {
        let (kind, v) = kind_of(v);
        c.add_header(n, kind, v).unwrap();
    }
    for (n, v) in m.query {
        let (kind, v) = kind_of(v);
        c.add_query(n, kind, v).unwrap();
    }
    (!c.is_empty()).then(|| Arc::new(c))
}

fn route(host: HostPattern, m: &M<'_>, service: &str, id: usize) -> Arc<Route> {
    let (kind, value) = m.path.unwrap_or(("PathPrefix", "/"));
    let path = match kind {
        "Exact" => PathRule {
            path: value.into(),
            path_type: PathType::Exact,
            regex: None,
        },
        "PathPrefix" => PathRule {
            path: value.into(),
            path_type: PathType::Prefix,
            regex: None,
        },
        "RegularExpression" => gateway_path_regex(value).unwrap(),
        other => panic!("{other}"),
    };
    Arc::new(Route {
        id,
        ingress: ObjectKey::new("gateway-conformance-infra", "route"),
        host,
        path: Some(path),
        backend: id,
        service: ObjectKey::new("gateway-conformance-infra", service),
        ssl_redirect: false,
        policy: Arc::default(),
        client_auth: None,
        canary: None,
        conditions: conditions(m),
        weighted: None,
    })
}

/// A table of rules `(hostnames, matches, service)`, added in the order given (as compile
/// adds a Route's rules: oldest Route first, then rule and match order). No hostname: any.
fn table(rules: &[(&[&str], &[M<'_>], &str)]) -> RouteTable {
    let mut b = RouteTableBuilder::default();
    let mut id = 0;
    for (hosts, matches, service) in rules {
        let hosts: Vec<HostPattern> = match hosts {
            [] => vec![HostPattern::Any],
            hs => hs.iter().map(|h| HostPattern::gateway(h).unwrap()).collect(),
        };
        let default = [M::default()];
        let matches = if matches.is_empty() { &default[..] } else { matches };
        for host in &hosts {
            for m in matches {
                b.add_path(route(host.clone(), m, service, id));
                id += 1;
            }
        }
    }
    let (t, errors) = b.build();
    assert!(errors.is_empty(), "{errors:?}");
    t
}

/// The service a request goes to (`None`: 404). `target` is path and query.
fn ask(t: &RouteTable, host: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> Option<String> {
    let mut req = http::Request::builder().method(method).uri(target);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req.body(()).unwrap();
    t.route_request(host, req.uri().path(), &RouteRequest::of(&req))
        .map(|r| r.service.name.clone())
}

fn get(t: &RouteTable, target: &str, headers: &[(&str, &str)]) -> Option<String> {
    ask(t, "gw.test", "GET", target, headers)
}

const V1: &str = "infra-backend-v1";
const V2: &str = "infra-backend-v2";
const V3: &str = "infra-backend-v3";

fn path(kind: &'static str, value: &'static str) -> M<'static> {
    M {
        path: Some((kind, value)),
        ..M::default()
    }
}

fn headers<'a>(h: &'a [(&'a str, &'a str)]) -> M<'a> {
    M {
        headers: h,
        ..M::default()
    }
}

fn query<'a>(q: &'a [(&'a str, &'a str)]) -> M<'a> {
    M {
        query: q,
        ..M::default()
    }
}

fn method(m: &str) -> M<'_> {
    M {
        method: Some(m),
        ..M::default()
    }
}

#[test]
fn path_match_order_exact_beats_every_prefix_then_the_longest_prefix_wins() {
    let t = table(&[
        (&[], &[path("Exact", "/match")], V1),
        (&[], &[path("Exact", "/match/exact")], V2),
        (&[], &[path("Exact", "/match/exact/one")], V3),
        (&[], &[path("PathPrefix", "/match/")], V3),
        (&[], &[path("PathPrefix", "/match/prefix/")], V1),
        (&[], &[path("PathPrefix", "/match/prefix/one")], V2),
    ]);
    for (target, want) in [
        ("/match/exact/one", Some(V3)),
        ("/match/exact", Some(V2)),
        // The prefix `/match/` covers `/match` too, and is longer: Exact still wins.
        ("/match", Some(V1)),
        ("/match/prefix/one/any", Some(V2)),
        ("/match/prefix/any", Some(V1)),
        ("/match/any", Some(V3)),
        ("/matchx", None),
        ("/", None),
    ] {
        assert_eq!(get(&t, target, &[]).as_deref(), want, "{target}");
    }
}

#[test]
fn matching_falls_through_from_a_longer_path_whose_headers_fail_and_is_segment_wise() {
    let t = table(&[
        (&[], &[path("PathPrefix", "/"), headers(&[("version", "one")])], V1),
        (&[], &[path("PathPrefix", "/v2"), headers(&[("version", "two")])], V2),
    ]);
    for (target, h, want) in [
        ("/", &[][..], V1),
        ("/example", &[], V1),
        ("/", &[("Version", "one")], V1),
        ("/v2", &[], V2),
        ("/v2/example", &[], V2),
        // Same path length (`/` twice): one header match beats none.
        ("/", &[("Version", "two")], V2),
        ("/v2/", &[], V2),
        ("/v2example", &[], V1),
        ("/foo/v2/example", &[], V1),
    ] {
        assert_eq!(get(&t, target, h).as_deref(), Some(want), "{target} {h:?}");
    }
}

#[test]
fn matching_across_routes_keeps_each_routes_hostnames() {
    let t = table(&[
        (
            &["example.com", "example.net"],
            &[path("PathPrefix", "/"), headers(&[("version", "one")])],
            V1,
        ),
        (
            &["example.com"],
            &[path("PathPrefix", "/v2"), headers(&[("version", "two")])],
            V2,
        ),
    ]);
    for (host, target, h, want) in [
        ("example.com", "/", &[][..], V1),
        ("example.com", "/example", &[], V1),
        ("example.net", "/example", &[], V1),
        ("example.com", "/example", &[("Version", "one")], V1),
        ("example.com", "/v2", &[], V2),
        ("example.net", "/v2", &[], V1),
        ("example.com", "/v2/example", &[], V2),
        ("example.com", "/", &[("Version", "two")], V2),
    ] {
        assert_eq!(
            ask(&t, host, "GET", target, h).as_deref(),
            Some(want),
            "{host}{target} {h:?}"
        );
    }
    assert_eq!(ask(&t, "example.org", "GET", "/", &[]), None);
}

#[test]
fn header_matching_ands_within_a_match_ors_across_and_prefers_more_headers() {
    let t = table(&[
        (&[], &[headers(&[("version", "one")])], V1),
        (&[], &[headers(&[("version", "two")])], V2),
        (&[], &[headers(&[("version", "two"), ("color", "orange")])], V1),
        (
            &[],
            &[headers(&[("color", "blue")]), headers(&[("color", "green")])],
            V1,
        ),
        (
            &[],
            &[headers(&[("color", "red")]), headers(&[("color", "yellow")])],
            V2,
        ),
    ]);
    for (h, want) in [
        (&[("Version", "one")][..], Some(V1)),
        (&[("Version", "two")], Some(V2)),
        (&[("Version", "two"), ("Color", "orange")], Some(V1)),
        (&[("Version", "two"), ("Color", "blue")], Some(V2)),
        (&[("Color", "orange")], None),
        (&[("Some-Other-Header", "one")], None),
        (&[("Color", "blue")], Some(V1)),
        (&[("Color", "green")], Some(V1)),
        (&[("Color", "red")], Some(V2)),
        (&[("Color", "yellow")], Some(V2)),
        (&[("Color", "purple")], None),
        // Values compare exactly (case too).
        (&[("Version", "One")], None),
    ] {
        assert_eq!(get(&t, "/", h).as_deref(), want, "{h:?}");
    }
}

#[test]
fn query_param_matching_names_are_case_sensitive_and_precedence_counts_them() {
    let q = |q| query(q);
    let t = table(&[
        (&[], &[q(&[("animal", "whale")])], V1),
        (&[], &[q(&[("animal", "dolphin")])], V2),
        (
            &[],
            &[
                q(&[("animal", "dolphin"), ("color", "blue")]),
                q(&[("ANIMAL", "Whale")]),
            ],
            V3,
        ),
        (&[], &[m(Some("/path1"), None, &[], &[("animal", "whale")])], V1),
        (&[], &[m(None, None, &[("version", "one")], &[("animal", "whale")])], V2),
        (
            &[],
            &[m(Some("/path2"), None, &[("version", "two")], &[("animal", "whale")])],
            V3,
        ),
        (
            &[],
            &[
                m(Some("/path3"), None, &[], &[("animal", "shark")]),
                m(Some("/path4"), None, &[("version", "three")], &[("animal", "kraken")]),
            ],
            V1,
        ),
        (&[], &[path("PathPrefix", "/path5")], V1),
        (&[], &[q(&[("animal", "hydra")])], V2),
        (&[], &[headers(&[("version", "four")])], V3),
    ]);
    for (target, h, want) in [
        ("/?animal=whale", &[][..], Some(V1)),
        ("/?animal=dolphin", &[], Some(V2)),
        ("/?animal=dolphin&color=blue", &[], Some(V3)),
        ("/?ANIMAL=Whale", &[], Some(V3)),
        ("/?animal=whale&otherparam=irrelevant", &[], Some(V1)),
        ("/?animal=dolphin&color=yellow", &[], Some(V2)),
        ("/?color=blue", &[], None),
        ("/?animal=dog", &[], None),
        ("/?animal=whaledolphin", &[], None),
        ("/", &[], None),
        ("/path1?animal=whale", &[], Some(V1)),
        ("/?animal=whale", &[("version", "one")], Some(V2)),
        ("/path2?animal=whale", &[("version", "two")], Some(V3)),
        ("/path3?animal=shark", &[], Some(V1)),
        ("/path4?animal=kraken", &[("version", "three")], Some(V1)),
        ("/?animal=shark", &[], None),
        ("/path4?animal=kraken", &[], None),
        // The longer path beats the query match (on `/`); headers are counted before query
        // parameters.
        ("/path5?animal=hydra", &[], Some(V1)),
        ("/?animal=hydra", &[("version", "four")], Some(V3)),
        // The first of repeated parameters counts; escapes are decoded.
        ("/?animal=whale&animal=dolphin", &[], Some(V1)),
        ("/?animal=dolphin&animal=whale", &[], Some(V2)),
        ("/?an%69mal=wh%61le", &[], Some(V1)),
    ] {
        assert_eq!(get(&t, target, h).as_deref(), want, "{target} {h:?}");
    }
}

#[test]
fn method_matching_ranks_a_method_above_header_matches() {
    let t = table(&[
        (&[], &[method("POST")], V1),
        (&[], &[method("GET")], V2),
        (&[], &[m(Some("/path1"), Some("GET"), &[], &[])], V1),
        (&[], &[m(None, Some("PUT"), &[("version", "one")], &[])], V2),
        (&[], &[m(Some("/path2"), Some("POST"), &[("version", "two")], &[])], V3),
        (
            &[],
            &[
                m(Some("/path3"), Some("PATCH"), &[], &[]),
                m(Some("/path4"), Some("DELETE"), &[("version", "three")], &[]),
            ],
            V1,
        ),
        (&[], &[path("PathPrefix", "/path5")], V1),
        (&[], &[method("PATCH")], V2),
        (&[], &[headers(&[("version", "four")])], V3),
    ]);
    for (m, target, h, want) in [
        ("POST", "/", &[][..], Some(V1)),
        ("GET", "/", &[], Some(V2)),
        ("HEAD", "/", &[], None),
        ("GET", "/path1", &[], Some(V1)),
        ("PUT", "/", &[("version", "one")], Some(V2)),
        ("POST", "/path2", &[("version", "two")], Some(V3)),
        ("PATCH", "/path3", &[], Some(V1)),
        ("DELETE", "/path4", &[("version", "three")], Some(V1)),
        ("PUT", "/", &[], None),
        ("DELETE", "/path4", &[], None),
        ("PATCH", "/path5", &[], Some(V1)),
        ("PATCH", "/", &[("version", "four")], Some(V2)),
    ] {
        assert_eq!(ask(&t, "gw.test", m, target, h).as_deref(), want, "{m} {target} {h:?}");
    }
}

#[test]
fn ties_go_to_the_rule_added_first() {
    let t = table(&[
        (&[], &[headers(&[("a", "1")])], V1),
        (&[], &[headers(&[("b", "1")])], V2),
    ]);
    assert_eq!(get(&t, "/", &[("a", "1"), ("b", "1")]).as_deref(), Some(V1));
    let t = table(&[
        (&[], &[headers(&[("b", "1")])], V2),
        (&[], &[headers(&[("a", "1")])], V1),
    ]);
    assert_eq!(get(&t, "/", &[("a", "1"), ("b", "1")]).as_deref(), Some(V2));
}

#[test]
fn regular_expressions_match_whole_values_and_rank_between_exact_and_prefix() {
    let t = table(&[
        (&[], &[path("PathPrefix", "/api")], V1),
        (&[], &[path("RegularExpression", "/api/v[0-9]+/.*")], V2),
        (&[], &[path("Exact", "/api/v1/exact")], V3),
        (&[], &[headers(&[("x-tag", "~ab+c")])], V3),
        (&[], &[query(&[("id", "~[0-9]{2}")])], V2),
    ]);
    for (target, h, want) in [
        ("/api/v1/users", &[][..], Some(V2)),
        ("/api/v1/exact", &[], Some(V3)),
        // Whole path: `/x/api/v1/...` is not matched by the regex.
        ("/x/api/v1/users", &[], None),
        ("/api/vx/users", &[], Some(V1)),
        // Case-sensitive.
        ("/API/v1/users", &[], None),
        ("/", &[("x-tag", "abbbc")], Some(V3)),
        // Whole value: `xabc` is not `ab+c`.
        ("/", &[("x-tag", "xabc")], None),
        ("/?id=42", &[], Some(V2)),
        ("/?id=421", &[], None),
    ] {
        assert_eq!(get(&t, target, h).as_deref(), want, "{target} {h:?}");
    }
    // A regex rule alone on its host: found though no matcher key covers the path.
    let t = table(&[(&["re.test"], &[path("RegularExpression", "/r/[a-z]+")], V1)]);
    assert_eq!(ask(&t, "re.test", "GET", "/r/abc", &[]).as_deref(), Some(V1));
    assert_eq!(ask(&t, "re.test", "GET", "/r/ab1", &[]), None);
}

#[test]
fn header_names_are_case_insensitive_and_repeated_fields_are_joined() {
    let t = table(&[
        (&[], &[headers(&[("X-Version", "one,two")])], V1),
        (&[], &[headers(&[("x-version", "one")])], V2),
    ]);
    let mut req = http::Request::builder().uri("/");
    req = req.header("x-version", "one").header("X-VERSION", "two");
    let req = req.body(()).unwrap();
    let got = t.route_request("gw.test", "/", &RouteRequest::of(&req));
    assert_eq!(got.map(|r| r.service.name.as_str()), Some(V1));
    assert_eq!(get(&t, "/", &[("X-Version", "one")]).as_deref(), Some(V2));
}

#[test]
fn a_request_known_only_by_host_and_path_meets_no_condition() {
    let t = table(&[(&[], &[method("GET")], V1), (&[], &[path("PathPrefix", "/p")], V2)]);
    assert_eq!(t.route("gw.test", "/").map(|r| r.service.name.as_str()), None);
    assert_eq!(t.route("gw.test", "/p/q").map(|r| r.service.name.as_str()), Some(V2));
}

#[test]
fn conditions_refuse_bad_input_and_ignore_a_repeated_name() {
    let mut c = Conditions::default();
    assert_eq!(c.add_header("Version", None, "one"), Ok(true));
    assert_eq!(c.add_header("version", None, "two"), Ok(false));
    assert_eq!(c.headers.len(), 1);
    assert!(c.add_header("bad name", None, "x").is_err());
    assert!(c.add_header("", None, "x").is_err());
    assert!(c.add_header(&"n".repeat(257), None, "x").is_err());
    assert!(c.add_header("big", None, &"v".repeat(4097)).is_err());
    assert!(c.add_header("re", Some("RegularExpression"), "(").is_err());
    assert!(c.add_header("re", Some("Prefix"), "x").is_err());
    // A regex whose compiled program is too big is refused, not built.
    assert!(
        c.add_header("huge", Some("RegularExpression"), "(?:a{1000}){1000}")
            .is_err()
    );
    assert_eq!(c.add_query("Animal", None, "x"), Ok(true));
    assert_eq!(c.add_query("animal", None, "x"), Ok(true));
    assert_eq!(c.add_query("animal", None, "y"), Ok(false));
    assert!(c.add_query("q", None, &"v".repeat(1025)).is_err());
    for i in 0..14 {
        c.add_header(&format!("h{i}"), None, "v").unwrap();
    }
    assert_eq!(c.headers.len(), 15);
    c.add_header("h15", None, "v").unwrap();
    assert!(c.add_header("h16", None, "v").is_err());
    assert!(c.set_method("get").is_err());
    assert!(c.set_method("BREW").is_err());
    assert!(c.set_method("PATCH").is_ok());
}

#[test]
fn gateway_wildcards_match_any_number_of_labels_and_the_most_specific_name_wins() {
    let t = table(&[
        (&["*.example.com"], &[], V1),
        (&["*.foo.example.com"], &[], V2),
        (&["bar.foo.example.com"], &[headers(&[("version", "one")])], V3),
    ]);
    for (host, h, want) in [
        ("a.example.com", &[][..], Some(V1)),
        ("a.b.c.example.com", &[], Some(V1)),
        ("example.com", &[], None),
        ("foo.example.com", &[], Some(V1)),
        ("a.foo.example.com", &[], Some(V2)),
        ("A.B.Foo.Example.COM.", &[], Some(V2)),
        ("bar.foo.example.com", &[("version", "one")], Some(V3)),
        // The exact name's rules fail: the wildcard's take the request.
        ("bar.foo.example.com", &[], Some(V2)),
        ("example.net", &[], None),
    ] {
        assert_eq!(ask(&t, host, "GET", "/", h).as_deref(), want, "{host}");
    }
    // An Ingress wildcard keeps its one label.
    let mut b = RouteTableBuilder::default();
    let mut r = (*route(HostPattern::Any, &M::default(), V1, 0)).clone();
    r.host = HostPattern::parse(Some("*.example.com")).unwrap();
    b.add_path(Arc::new(r));
    let (t, _) = b.build();
    assert!(t.route("a.example.com", "/").is_some());
    assert!(t.route("a.b.example.com", "/").is_none());
}

#[test]
fn gateway_hostnames_parse_as_the_spec_allows() {
    assert_eq!(
        HostPattern::gateway("*.Example.com"),
        Ok(HostPattern::Suffix("example.com".into()))
    );
    assert_eq!(
        HostPattern::gateway("a.example.com"),
        Ok(HostPattern::Exact("a.example.com".into()))
    );
    assert_eq!(
        HostPattern::gateway("*.example.com").unwrap().to_string(),
        "*.example.com"
    );
    for bad in ["", "10.0.0.1", "a.*.com", "*", "under_score.com", "trailing.", "-a.com"] {
        assert!(HostPattern::gateway(bad).is_err(), "{bad}");
    }
}

#[test]
fn ingress_hosts_keep_one_route_per_key_and_no_candidate_lists() {
    let mut b = RouteTableBuilder::default();
    let rule = |p: &str, t| PathRule {
        path: p.into(),
        path_type: t,
        regex: None,
    };
    for (i, (p, t)) in [
        ("/", PathType::Prefix),
        ("/a", PathType::Exact),
        ("/a/b", PathType::Prefix),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = (*route(HostPattern::Exact("i.test".into()), &M::default(), &format!("s{i}"), i)).clone();
        r.path = Some(rule(p, t));
        b.add_path(Arc::new(r));
    }
    let (t, _) = b.build();
    let host = t.exact.get("i.test").unwrap();
    for p in ["/", "/x", "/a", "/a/b", "/a/b/c"] {
        let slot = host.paths.at(p).unwrap();
        assert!(slot.more.is_none(), "{p}");
    }
    let who = |p| t.route("i.test", p).map(|r| r.service.name.clone());
    assert_eq!(who("/a").as_deref(), Some("s1"));
    assert_eq!(who("/a/").as_deref(), Some("s0"));
    assert_eq!(who("/a/b/c").as_deref(), Some("s2"));
}

/// A host's few keys compared one by one answer as its router does: the same route (or
/// none) for every path, over rule sets of Exact and Prefix paths with and without
/// conditions, nested, with trailing slashes and braces.
#[test]
fn few_keys_without_a_router_route_as_the_router_does() {
    let sets: &[&[P<'_>]] = &[
        &[("PathPrefix", "/"), ("PathPrefix", "/api")],
        &[("PathPrefix", "/api"), ("Exact", "/api/")],
        &[("Exact", "/"), ("PathPrefix", "/a/b")],
        &[("PathPrefix", "/a"), ("PathPrefix", "/a/b"), ("Exact", "/a/b/")],
        &[("PathPrefix", "/foo/"), ("Exact", "/foo")],
        &[("Exact", "/x"), ("Exact", "/x/y"), ("Exact", "/{id}")],
        &[("PathPrefix", "/{a}"), ("PathPrefix", "/")],
        &[("PathPrefix", "/a/"), ("PathPrefix", "/ab")],
    ];
    let paths = [
        "/", "//", "/a", "/a/", "/a//", "/a/b", "/a/b/", "/a/b/c", "/a/bc", "/ab", "/ab/", "/ab/c", "/api", "/api/",
        "/api/v1", "/apix", "/foo", "/foo/", "/foo/x", "/x", "/x/", "/x/y", "/x/y/", "/{id}", "/{a}", "/{a}/b",
        "/other",
    ];
    for set in sets {
        for conditional in [false, true] {
            let build = |few_keys| {
                let mut b = RouteTableBuilder::default();
                for (i, p) in set.iter().enumerate() {
                    let m = M {
                        path: Some(*p),
                        method: (conditional && i == 0).then_some("POST"),
                        ..M::default()
                    };
                    b.add_path(route(HostPattern::Exact("h.test".into()), &m, &format!("s{i}"), i));
                }
                let (t, errors) = b.build_with(few_keys);
                assert!(errors.is_empty(), "{errors:?}");
                t
            };
            let (few, router) = (build(usize::MAX), build(0));
            assert!(matches!(few.exact["h.test"].paths, PathMatcher::Few { .. }));
            assert!(matches!(router.exact["h.test"].paths, PathMatcher::Router(_)));
            for p in paths {
                for method in ["GET", "POST"] {
                    assert_eq!(
                        ask(&few, "h.test", method, p, &[]),
                        ask(&router, "h.test", method, p, &[]),
                        "{set:?} conditional={conditional} {method} {p}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_exact_path_beats_a_prefix_written_with_a_trailing_slash() {
    // ingress-nginx's `location = /foo` wins over `location /foo/` the same way.
    let t = table(&[
        (&[], &[path("PathPrefix", "/foo/")], V1),
        (&[], &[path("Exact", "/foo")], V2),
    ]);
    assert_eq!(get(&t, "/foo", &[]).as_deref(), Some(V2));
    assert_eq!(get(&t, "/foo/", &[]).as_deref(), Some(V1));
}

fn weighted(weights: &[(u32, Option<&str>)]) -> Weighted {
    Weighted::new(
        weights
            .iter()
            .enumerate()
            .map(|(i, (w, s))| WeightedChoice {
                weight: *w,
                route: s.map(|s| route(HostPattern::Any, &M::default(), s, i)),
            })
            .collect(),
    )
}

fn picked(w: &Weighted, r: u64) -> Option<String> {
    match w.pick(r) {
        Pick::Route(r) => Some(r.service.name.clone()),
        Pick::Refused => None,
    }
}

/// The middle of the `k`-th of `n` equal steps through [0, 2^64).
fn at(k: u64, n: u64) -> u64 {
    ((u128::from(2 * k + 1) << 64) / u128::from(2 * n)) as u64
}

#[test]
fn weighted_sets_pick_in_proportion_and_never_a_zero_weight() {
    let w = weighted(&[(70, Some(V1)), (0, Some(V2)), (30, Some(V3))]);
    let mut count = HashMap::new();
    for k in 0..1000 {
        *count.entry(picked(&w, at(k, 1000))).or_insert(0) += 1;
    }
    assert_eq!(count.get(&Some(V1.to_string())), Some(&700));
    assert_eq!(count.get(&Some(V3.to_string())), Some(&300));
    assert_eq!(count.get(&Some(V2.to_string())), None);
    assert_eq!(picked(&w, 0).as_deref(), Some(V1));
    assert_eq!(picked(&w, u64::MAX).as_deref(), Some(V3));
}

#[test]
fn weighted_sets_refuse_the_share_of_an_invalid_backend_and_all_zero_weights() {
    let w = weighted(&[(1, Some(V1)), (1, None)]);
    assert_eq!(picked(&w, at(0, 2)).as_deref(), Some(V1));
    assert_eq!(picked(&w, at(1, 2)), None);
    let w = weighted(&[(0, Some(V1)), (0, Some(V2))]);
    assert!((0..10).all(|k| picked(&w, at(k, 10)).is_none()));
    // Weights above the CRD's maximum count as the maximum.
    let w = weighted(&[(u32::MAX, Some(V1)), (Weighted::MAX_WEIGHT, Some(V2))]);
    assert_eq!(picked(&w, at(1, 4)).as_deref(), Some(V1));
    assert_eq!(picked(&w, at(2, 4)).as_deref(), Some(V2));
}

#[test]
fn routes_show_their_conditions_and_weighted_backends() {
    let mut c = Conditions::default();
    c.set_method("GET").unwrap();
    c.add_header("Version", None, "two").unwrap();
    c.add_query("id", Some("RegularExpression"), "[0-9]+").unwrap();
    let mut r = (*route(HostPattern::gateway("*.gw.test").unwrap(), &M::default(), V1, 0)).clone();
    r.conditions = Some(Arc::new(c));
    r.weighted = Some(Arc::new(weighted(&[(3, Some(V2)), (1, None)])));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["host"], "*.gw.test");
    assert_eq!(
        json["conditions"],
        serde_json::json!({
            "method": "GET",
            "headers": [{"name": "version", "type": "Exact", "value": "two"}],
            "queryParams": [{"name": "id", "type": "RegularExpression", "value": "^(?:[0-9]+)$"}],
        })
    );
    assert_eq!(
        json["weighted"]["choices"],
        serde_json::json!([
            {"service": "gateway-conformance-infra/infra-backend-v2", "weight": 3},
            {"service": null, "weight": 1},
        ])
    );
}

#[test]
fn conditions_fall_through_every_shorter_prefix_in_turn() {
    let t = table(&[
        (&[], &[m(Some("/a/b"), None, &[("x", "1")], &[])], V1),
        (&[], &[m(Some("/a"), None, &[("y", "1")], &[])], V2),
        (&[], &[m(None, None, &[("z", "1")], &[])], V3),
        (&[], &[path("Exact", "/a/b/c")], V3),
    ]);
    for (target, h, want) in [
        ("/a/b/c/d", &[("x", "1"), ("y", "1")][..], Some(V1)),
        ("/a/b/c/d", &[("y", "1"), ("z", "1")], Some(V2)),
        ("/a/b/c/d", &[("z", "1")], Some(V3)),
        ("/a/b/c/d", &[], None),
        // The Exact rule first, and it has no conditions.
        ("/a/b/c", &[("x", "1")], Some(V3)),
        ("/a/b/", &[("y", "1")], Some(V2)),
    ] {
        assert_eq!(get(&t, target, h).as_deref(), want, "{target} {h:?}");
    }
}

#[test]
fn nested_conditional_prefixes_are_stored_once_each() {
    // `/p/p/.../p` at every depth up to n, each with a condition: a key's candidates are a
    // chain of shared groups, not a copy of every covering rule.
    let n = 400;
    let mut b = RouteTableBuilder::default();
    let mut p = String::new();
    for i in 0..n {
        p.push_str("/p");
        let m = m(Some(&p), None, &[("x", "1")], &[]);
        b.add_path(route(HostPattern::Exact("n.test".into()), &m, V1, i));
    }
    let (t, _) = b.build();
    let host = t.exact.get("n.test").unwrap();
    let group_of = |k: &str| host.paths.at(k)?.more.as_ref()?.prefix.clone();
    let mut stored = 0;
    let mut seen = std::collections::HashSet::new();
    let mut deepest = "/p".repeat(n);
    deepest.push_str("/x");
    let mut group = group_of(&deepest);
    while let Some(g) = group {
        assert!(seen.insert(Arc::as_ptr(&g)));
        stored += g.routes.len();
        group = g.parent.clone();
    }
    assert_eq!(stored, n);
    let whole: usize = ["/p", "/p/p/p", &"/p".repeat(n)]
        .iter()
        .map(|k| group_of(k).unwrap().routes.len())
        .sum();
    assert_eq!(whole, 3);
    assert_eq!(
        t.route_request("n.test", &deepest, &RouteRequest::default())
            .map(|r| r.id),
        None
    );
}
