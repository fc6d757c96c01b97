//! compile() and RouteTable semantics, pinned rule by rule.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::diagnostic::{Reason, Severity};
use crate::config::{Backend, Endpoint, Protocol, Target};
use crate::fixture::{self, Exact, ImplementationSpecific, IngressBuilder, PathType, Prefix};
use crate::model::AnyObject;
use crate::source::files::parse_manifests;

/// The creation time of most Ingresses here.
const T0: &str = "2024-01-01T00:00:00Z";

fn snap(objects: impl IntoIterator<Item = AnyObject>) -> Snapshot {
    fixture::snapshot(objects)
}

/// A Service `name` with one port 80 named http, and a slice with one ready pod `ip`.
fn svc(name: &str, ip: &str) -> [AnyObject; 2] {
    [
        fixture::service("default", name)
            .port("http", 80)
            .target_port("web")
            .into(),
        fixture::slice("default", &format!("{name}-abc"), name)
            .port("http", 8080)
            .endpoint(ip)
            .ready(true)
            .into(),
    ]
}

/// An Ingress of class portico with rules given as `(host, path, pathType, service)`.
fn ing(name: &str, created: &str, rules: &[(&str, &str, PathType, &str)]) -> IngressBuilder {
    let i = fixture::ingress("default", name).class("portico").created(created);
    rules
        .iter()
        .fold(i, |i, (host, path, ty, svc)| i.rule(host, path, *ty, svc, 80))
}

fn target(cfg: &Config, host: &str, path: &str) -> Option<String> {
    cfg.routes
        .route(host, path)
        .map(|r| cfg.backend(r).expect("backend").service.name.clone())
}

/// The class portico and Services a to e, each with one pod 10.0.0.1.
fn base() -> Vec<AnyObject> {
    let mut objects = vec![fixture::portico_class().into()];
    for s in ["a", "b", "c", "d", "e"] {
        objects.extend(svc(s, "10.0.0.1"));
    }
    objects
}

/// [`base`] and `extra`.
fn with_base(extra: impl IntoIterator<Item = AnyObject>) -> Snapshot {
    snap(base().into_iter().chain(extra))
}

fn build(extra: impl IntoIterator<Item = AnyObject>) -> Config {
    compile(&with_base(extra), &Options::default())
}

// ---------------------------------------------------------------- class

#[test]
fn class_selection() {
    let mk = |name: &str, host: &str| fixture::ingress("default", name).rule(host, "/", Prefix, "a", 80);
    let legacy = "kubernetes.io/ingress.class";
    let s = with_base([
        fixture::ingress_class("other", "example.com/other").into(),
        mk("by-name", "by-name.test").class("portico").into(),
        mk("other-class", "other.test").class("other").into(),
        mk("missing-class", "missing.test").class("nope").into(),
        mk("legacy", "legacy.test").annotation(legacy, "portico").into(),
        mk("legacy-other", "legacy-other.test")
            .annotation(legacy, "nginx")
            .into(),
        mk("classless", "classless.test").into(),
    ]);

    let cfg = compile(&s, &Options::default());
    assert_eq!(target(&cfg, "by-name.test", "/"), Some("a".into()));
    assert_eq!(target(&cfg, "legacy.test", "/"), Some("a".into()));
    for host in ["other.test", "missing.test", "legacy-other.test", "classless.test"] {
        assert_eq!(target(&cfg, host, "/"), None, "{host}");
    }
    let ignored: Vec<_> = cfg.ignored.iter().map(|(k, _)| k.name.as_str()).collect();
    assert_eq!(ignored, ["classless", "legacy-other", "missing-class", "other-class"]);

    // Without a class: ours when watch-without-class is on...
    let cfg = compile(
        &s,
        &Options {
            watch_without_class: true,
            ..Options::default()
        },
    );
    assert_eq!(target(&cfg, "classless.test", "/"), Some("a".into()));
    assert_eq!(target(&cfg, "other.test", "/"), None);

    // ...or when one of our IngressClasses is the default class.
    let mut s2 = s.clone();
    let mut default_class = (*s2.ingress_classes[&ObjectKey::new("", "portico")]).clone();
    default_class.metadata.annotations = Some(
        [(
            "ingressclass.kubernetes.io/is-default-class".to_string(),
            "true".to_string(),
        )]
        .into(),
    );
    s2.insert(AnyObject::IngressClass(Arc::new(default_class.clone())));
    let cfg = compile(&s2, &Options::default());
    assert_eq!(target(&cfg, "classless.test", "/"), Some("a".into()));

    // A default class of another controller does not make class-less Ingresses ours.
    let mut other_default = default_class;
    other_default.metadata.name = Some("other".into());
    other_default.spec.as_mut().unwrap().controller = Some("example.com/other".into());
    let mut s3 = s.clone();
    s3.insert(AnyObject::IngressClass(Arc::new(other_default)));
    let cfg = compile(&s3, &Options::default());
    assert_eq!(target(&cfg, "classless.test", "/"), None);

    // Another controller name takes the other class only.
    let cfg = compile(
        &s,
        &Options {
            controller_name: "example.com/other".into(),
            ingress_class: "nginx".into(),
            ..Options::default()
        },
    );
    assert_eq!(target(&cfg, "other.test", "/"), Some("a".into()));
    assert_eq!(target(&cfg, "legacy-other.test", "/"), Some("a".into()));
    assert_eq!(target(&cfg, "by-name.test", "/"), None);
}

// ---------------------------------------------------------------- hosts

#[test]
fn kubernetes_docs_hostname_wildcards() {
    // "Hostname wildcards" table of the Kubernetes Ingress documentation.
    let cfg = build([ing("w", T0, &[("*.foo.com", "/", Prefix, "a")]).into()]);
    // bar.foo.com: matches based on shared suffix.
    assert_eq!(target(&cfg, "bar.foo.com", "/"), Some("a".into()));
    // baz.bar.foo.com: no match, the wildcard only covers a single DNS label.
    assert_eq!(target(&cfg, "baz.bar.foo.com", "/"), None);
    // foo.com: no match, the wildcard only covers a single DNS label.
    assert_eq!(target(&cfg, "foo.com", "/"), None);
}

#[test]
fn host_matching() {
    let cfg = build([
        ing("exact", T0, &[("foo.bar.com", "/", Prefix, "a")]).into(),
        ing("wild", T0, &[("*.bar.com", "/", Prefix, "b")]).into(),
        ing("any", T0, &[("", "/", Prefix, "c")]).into(),
    ]);
    assert_eq!(
        target(&cfg, "foo.bar.com", "/x"),
        Some("a".into()),
        "exact beats wildcard"
    );
    assert_eq!(target(&cfg, "FOO.Bar.COM", "/x"), Some("a".into()), "case-insensitive");
    assert_eq!(target(&cfg, "foo.bar.com.", "/x"), Some("a".into()), "trailing dot");
    assert_eq!(target(&cfg, "baz.bar.com", "/x"), Some("b".into()));
    assert_eq!(
        target(&cfg, "bar.com", "/x"),
        Some("c".into()),
        "hostless rule matches every host"
    );
    assert_eq!(target(&cfg, "unknown.example", "/"), Some("c".into()));
    assert_eq!(target(&cfg, "", "/"), Some("c".into()));
}

#[test]
fn host_fall_through_to_less_specific_rules() {
    // A path the exact host does not route falls to the wildcard, then to rules without host.
    let cfg = build([
        ing("exact", T0, &[("foo.bar.com", "/api", Prefix, "a")]).into(),
        ing("wild", T0, &[("*.bar.com", "/web", Prefix, "b")]).into(),
        ing("any", T0, &[("", "/static", Prefix, "c")]).into(),
    ]);
    assert_eq!(target(&cfg, "foo.bar.com", "/api/v1"), Some("a".into()));
    assert_eq!(target(&cfg, "foo.bar.com", "/web"), Some("b".into()));
    assert_eq!(target(&cfg, "foo.bar.com", "/static/x.css"), Some("c".into()));
    assert_eq!(target(&cfg, "foo.bar.com", "/other"), None);
}

#[test]
fn invalid_host_is_a_diagnostic() {
    let cfg = build([
        ing(
            "bad",
            T0,
            &[("foo..com", "/", Prefix, "a"), ("ok.com", "/", Prefix, "b")],
        )
        .into(),
        ing("bad2", T0, &[("a.*.com", "/", Prefix, "a")]).into(),
    ]);
    assert_eq!(target(&cfg, "ok.com", "/"), Some("b".into()));
    let reasons: Vec<_> = cfg
        .diagnostics
        .iter()
        .map(|d| (d.object.name.as_str(), d.reason))
        .collect();
    assert_eq!(reasons, [("bad", Reason::InvalidHost), ("bad2", Reason::InvalidHost)]);
}

// ---------------------------------------------------------------- paths

/// One row of the Kubernetes documentation's path-matching examples: the Ingress paths
/// `(type, path)` all point at distinct backends; `expect` is the index of the path that
/// must serve `request`, or `None` for no match.
fn docs_row(paths: &[(PathType, &str)], request: &str, expect: Option<usize>) {
    let names = ["a", "b", "c", "d", "e"];
    let rules: Vec<(&str, &str, PathType, &str)> = paths
        .iter()
        .enumerate()
        .map(|(i, (ty, p))| ("example.com", *p, *ty, names[i]))
        .collect();
    let cfg = build([ing("docs", T0, &rules).into()]);
    assert_eq!(
        target(&cfg, "example.com", request),
        expect.map(|i| names[i].to_string()),
        "paths {paths:?}, request {request}"
    );
}

#[test]
fn kubernetes_docs_path_examples() {
    // "Examples" table of the Kubernetes Ingress documentation (Path types / Examples).
    for req in ["/", "/foo", "/foo/bar/baz", "/x.html"] {
        docs_row(&[(Prefix, "/")], req, Some(0)); // Prefix /, (all paths): yes
    }
    docs_row(&[(Exact, "/foo")], "/foo", Some(0));
    docs_row(&[(Exact, "/foo")], "/bar", None);
    docs_row(&[(Exact, "/foo")], "/foo/", None);
    docs_row(&[(Exact, "/foo/")], "/foo", None);
    docs_row(&[(Prefix, "/foo")], "/foo", Some(0));
    docs_row(&[(Prefix, "/foo")], "/foo/", Some(0));
    docs_row(&[(Prefix, "/foo/")], "/foo", Some(0));
    docs_row(&[(Prefix, "/foo/")], "/foo/", Some(0));
    docs_row(&[(Prefix, "/aaa/bb")], "/aaa/bbb", None);
    docs_row(&[(Prefix, "/aaa/bbb")], "/aaa/bbb", Some(0));
    docs_row(&[(Prefix, "/aaa/bbb/")], "/aaa/bbb", Some(0)); // ignores trailing slash
    docs_row(&[(Prefix, "/aaa/bbb")], "/aaa/bbb/", Some(0)); // matches trailing slash
    docs_row(&[(Prefix, "/aaa/bbb")], "/aaa/bbb/ccc", Some(0)); // matches subpath
    docs_row(&[(Prefix, "/aaa/bbb")], "/aaa/bbbxyz", None); // not a string prefix
    docs_row(&[(Prefix, "/"), (Prefix, "/aaa")], "/aaa/ccc", Some(1));
    docs_row(
        &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
        "/aaa/bbb",
        Some(2),
    );
    docs_row(
        &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
        "/ccc",
        Some(0),
    );
    docs_row(&[(Prefix, "/aaa")], "/ccc", None); // uses default backend
    docs_row(&[(Prefix, "/foo"), (Exact, "/foo")], "/foo", Some(1)); // prefers Exact
    docs_row(&[(Exact, "/foo"), (Prefix, "/foo")], "/foo", Some(0));
}

#[test]
fn precedence_is_longest_path_then_exact_never_yaml_order() {
    // Listed shortest first and longest first: same result.
    for order in [
        [(Prefix, "/"), (Prefix, "/a"), (Prefix, "/a/b")],
        [(Prefix, "/a/b"), (Prefix, "/a"), (Prefix, "/")],
    ] {
        let rules: Vec<_> = order
            .iter()
            .map(|(t, p)| {
                (
                    "h.com",
                    *p,
                    *t,
                    if *p == "/" {
                        "a"
                    } else if *p == "/a" {
                        "b"
                    } else {
                        "c"
                    },
                )
            })
            .collect();
        let cfg = build([ing("p", T0, &rules).into()]);
        assert_eq!(target(&cfg, "h.com", "/a/b/c"), Some("c".into()));
        assert_eq!(target(&cfg, "h.com", "/a/bc"), Some("b".into()));
        assert_eq!(target(&cfg, "h.com", "/ab"), Some("a".into()));
    }
    // A trailing slash counts towards length: Prefix /foo/ beats Prefix /foo for /foo.
    let cfg = build([ing(
        "t",
        T0,
        &[("h.com", "/foo", Prefix, "a"), ("h.com", "/foo/", Prefix, "b")],
    )
    .into()]);
    assert_eq!(target(&cfg, "h.com", "/foo"), Some("b".into()));
    assert_eq!(target(&cfg, "h.com", "/foo/x"), Some("b".into()));
    // Exact beats Prefix on an equal path; the Prefix still serves the subpaths.
    let cfg = build([ing(
        "e",
        T0,
        &[("h.com", "/foo", Prefix, "a"), ("h.com", "/foo", Exact, "b")],
    )
    .into()]);
    assert_eq!(target(&cfg, "h.com", "/foo"), Some("b".into()));
    assert_eq!(target(&cfg, "h.com", "/foo/"), Some("a".into()));
    // ImplementationSpecific is Prefix.
    let cfg = build([ing("i", T0, &[("h.com", "/foo", ImplementationSpecific, "a")]).into()]);
    assert_eq!(target(&cfg, "h.com", "/foo/bar"), Some("a".into()));
    assert_eq!(target(&cfg, "h.com", "/foobar"), None);
}

#[test]
fn matcher_backtracks_and_escapes_braces() {
    let cfg = build([ing(
        "m",
        T0,
        &[
            ("h.com", "/", Prefix, "a"),
            ("h.com", "/foo/bar", Prefix, "b"),
            ("h.com", "/x{id}", Exact, "c"),
            ("h.com", "/foo", Exact, "d"),
        ],
    )
    .into()]);
    assert_eq!(target(&cfg, "h.com", "/foo/bard"), Some("a".into()));
    assert_eq!(target(&cfg, "h.com", "/foo/ba"), Some("a".into()));
    assert_eq!(target(&cfg, "h.com", "/foox"), Some("a".into()));
    assert_eq!(target(&cfg, "h.com", "/foo"), Some("d".into()));
    assert_eq!(target(&cfg, "h.com", "/x{id}"), Some("c".into()));
    assert_eq!(
        target(&cfg, "h.com", "/x123"),
        Some("a".into()),
        "braces are literal, not a parameter"
    );
}

#[test]
fn ingress_paths_are_normalized_like_requests() {
    let cfg = build([ing(
        "n",
        T0,
        &[("h.com", "/a//b/./c", Exact, "a"), ("h.com", "/%7Euser", Prefix, "b")],
    )
    .into()]);
    assert_eq!(target(&cfg, "h.com", "/a/b/c"), Some("a".into()));
    assert_eq!(target(&cfg, "h.com", "/~user/x"), Some("b".into()));
    let cfg = build([ing(
        "bad",
        T0,
        &[("h.com", "relative", Prefix, "a"), ("h.com", "/ok", Prefix, "b")],
    )
    .into()]);
    assert_eq!(target(&cfg, "h.com", "/ok"), Some("b".into()));
    assert_eq!(cfg.diagnostics.len(), 1);
    assert_eq!(cfg.diagnostics[0].reason, Reason::InvalidPath);
}

#[test]
fn conflicts_go_to_the_oldest_ingress() {
    let newer = ing(
        "aaa-newer",
        "2024-06-01T00:00:00Z",
        &[("h.com", "/x", Prefix, "a"), ("h.com", "/only-newer", Prefix, "a")],
    );
    let older = ing("zzz-older", T0, &[("h.com", "/x", Prefix, "b")]);
    let cfg = build([newer.into(), older.into()]);
    assert_eq!(target(&cfg, "h.com", "/x"), Some("b".into()));
    assert_eq!(
        target(&cfg, "h.com", "/only-newer"),
        Some("a".into()),
        "the loser's other paths are served"
    );
    assert_eq!(cfg.diagnostics.len(), 1);
    let d = &cfg.diagnostics[0];
    assert_eq!(
        (d.object.name.as_str(), d.reason, d.severity),
        ("aaa-newer", Reason::PathConflict, Severity::Warning)
    );
    assert!(d.message.contains("default/zzz-older"), "{}", d.message);

    // Same creation time: namespace/name decides.
    let cfg = build([
        ing("m2", T0, &[("h.com", "/x", Prefix, "a")]).into(),
        ing("m1", T0, &[("h.com", "/x", Prefix, "b")]).into(),
    ]);
    assert_eq!(target(&cfg, "h.com", "/x"), Some("b".into()));
    assert_eq!(cfg.diagnostics[0].object.name, "m2");

    // Different types on the same path are not a conflict: precedence decides.
    let cfg = build([
        ing("p", T0, &[("h.com", "/x", Prefix, "a")]).into(),
        ing("e", "2024-06-01T00:00:00Z", &[("h.com", "/x", Exact, "b")]).into(),
    ]);
    assert!(cfg.diagnostics.is_empty());
    assert_eq!(target(&cfg, "h.com", "/x"), Some("b".into()));
    assert_eq!(target(&cfg, "h.com", "/x/y"), Some("a".into()));
}

// ---------------------------------------------------------------- default backends

fn with_default(
    name: &str,
    created: &str,
    default_svc: &str,
    rules: &[(&str, &str, PathType, &str)],
) -> IngressBuilder {
    ing(name, created, rules).default_backend(default_svc, "http")
}

#[test]
fn default_backends() {
    let cfg = build([
        with_default("host-default", T0, "b", &[("h.com", "/api", Prefix, "a")]).into(),
        ing("other", T0, &[("o.com", "/api", Prefix, "a")]).into(),
    ]);
    assert_eq!(target(&cfg, "h.com", "/api"), Some("a".into()));
    assert_eq!(
        target(&cfg, "h.com", "/else"),
        Some("b".into()),
        "an Ingress default serves its own hosts"
    );
    assert_eq!(target(&cfg, "o.com", "/else"), None, "...and no other host");

    // An Ingress with only a default backend is the catch-all; the older one wins.
    let cfg = build([
        with_default("catch-new", "2024-06-01T00:00:00Z", "d", &[]).into(),
        with_default("catch-old", T0, "c", &[]).into(),
        ing("other", T0, &[("o.com", "/api", Prefix, "a")]).into(),
    ]);
    assert_eq!(target(&cfg, "o.com", "/else"), Some("c".into()));
    assert_eq!(target(&cfg, "anything.test", "/"), Some("c".into()));
    assert_eq!(cfg.diagnostics.len(), 1);
    assert_eq!(cfg.diagnostics[0].reason, Reason::DefaultBackendConflict);
    assert_eq!(cfg.diagnostics[0].object.name, "catch-new");

    // The controller-wide default backend comes last.
    let s = with_base([ing("other", T0, &[("o.com", "/api", Prefix, "a")]).into()]);
    let opts = Options {
        default_backend_service: Some(ObjectKey::new("default", "e")),
        ..Options::default()
    };
    let cfg = compile(&s, &opts);
    assert_eq!(target(&cfg, "o.com", "/else"), Some("e".into()));
    assert_eq!(
        cfg.backend(cfg.routes.route("o.com", "/else").unwrap())
            .unwrap()
            .ready()[0]
            .addr
            .port(),
        8080
    );
    // Without any, no route (the data plane answers 404).
    assert_eq!(target(&compile(&s, &Options::default()), "o.com", "/else"), None);
}

// ---------------------------------------------------------------- backends

fn backend_of(cfg: &Config, host: &str) -> Arc<Backend> {
    let r = cfg.routes.route(host, "/").expect("routed");
    cfg.backend(r).expect("backend").clone()
}

fn addrs(eps: &[Endpoint]) -> Vec<String> {
    eps.iter().map(|e| e.addr.to_string()).collect()
}

#[test]
fn endpoints_from_slices() {
    let web = fixture::service("default", "web")
        .port("http", 80)
        .target_port("http-web")
        .port("admin", 9000)
        .target_port(9001);
    let web_1 = fixture::slice("default", "web-1", "web")
        .port("http", 8080)
        .port("admin", 9001)
        .endpoint("10.1.0.1")
        .ready(true)
        .pod("web-1")
        .endpoint("10.1.0.2")
        .ready(false)
        .endpoint("10.1.0.3")
        .endpoint("10.1.0.4")
        .ready(false)
        .serving(true)
        .terminating(true)
        .endpoint("10.1.0.5")
        .ready(false)
        .serving(false)
        .terminating(true);
    let web_2 = fixture::slice("default", "web-2", "web")
        .address_type("IPv6")
        .port("http", 8080)
        .endpoint("fd00::1");
    let unrelated = fixture::slice("other", "unrelated", "web")
        .port("http", 8080)
        .endpoint("10.9.9.9");
    let s = snap([
        fixture::portico_class().into(),
        web.into(),
        web_1.into(),
        web_2.into(),
        unrelated.into(),
        ing("by-number", T0, &[("num.test", "/", Prefix, "web")]).into(),
        ing("by-name", T0, &[("name.test", "/nothing", Exact, "web")])
            .default_backend("web", "admin")
            .into(),
    ]);
    let cfg = compile(&s, &Options::default());
    assert!(cfg.diagnostics.is_empty(), "{:?}", cfg.diagnostics);
    let b = backend_of(&cfg, "num.test");
    assert_eq!(
        addrs(b.ready()),
        ["10.1.0.1:8080", "10.1.0.3:8080", "[fd00::1]:8080"],
        "named targetPort resolved by the slice"
    );
    assert_eq!(b.ready()[0].target.as_deref(), Some("web-1"));
    let Target::Endpoints { terminating, .. } = &b.target else {
        panic!()
    };
    assert_eq!(
        addrs(terminating),
        ["10.1.0.4:8080"],
        "terminating but serving kept apart"
    );
    let admin = backend_of(&cfg, "name.test");
    assert_eq!(addrs(admin.ready()), ["10.1.0.1:9001", "10.1.0.3:9001"]);
}

#[test]
fn publish_not_ready_addresses() {
    let s = snap([
        fixture::portico_class().into(),
        fixture::service("default", "a").publish_not_ready().port("", 80).into(),
        fixture::slice("default", "a-1", "a")
            .port("", 8080)
            .endpoint("10.1.0.1")
            .ready(false)
            .into(),
        ing("i", T0, &[("h.test", "/", Prefix, "a")]).into(),
    ]);
    let cfg = compile(&s, &Options::default());
    assert_eq!(addrs(backend_of(&cfg, "h.test").ready()), ["10.1.0.1:8080"]);
}

#[test]
fn selectorless_service_and_legacy_endpoints() {
    // The fixture builds no legacy Endpoints: those two are written out.
    let endpoints = parse_manifests(
        "
apiVersion: v1
kind: Endpoints
metadata: {name: a, namespace: default}
subsets:
- addresses: [{ip: 10.2.0.1}, {ip: 10.2.0.2}]
  notReadyAddresses: [{ip: 10.2.0.3}]
  ports: [{name: web, port: 8443}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: b, namespace: default}
subsets:
- addresses: [{ip: 10.3.0.1}]
  ports: [{name: web, port: 1111}]
",
    )
    .expect("test manifests parse");
    let s = snap(
        [
            fixture::portico_class().into(),
            fixture::service("default", "a").port("web", 80).into(),
            fixture::service("default", "b").port("web", 80).into(),
            fixture::slice("default", "b-manual", "b")
                .port("web", 2222)
                .endpoint("10.3.0.2")
                .into(),
            ing("i", T0, &[("a.test", "/", Prefix, "a"), ("b.test", "/", Prefix, "b")]).into(),
        ]
        .into_iter()
        .chain(endpoints),
    );
    let cfg = compile(&s, &Options::default());
    assert_eq!(
        addrs(backend_of(&cfg, "a.test").ready()),
        ["10.2.0.1:8443", "10.2.0.2:8443"],
        "legacy Endpoints when no slice exists"
    );
    assert_eq!(
        addrs(backend_of(&cfg, "b.test").ready()),
        ["10.3.0.2:2222"],
        "a hand-made slice takes precedence"
    );
}

#[test]
fn external_name_and_client_ip_affinity() {
    let s = snap([
        fixture::portico_class().into(),
        fixture::service("default", "a").external_name("api.example.org").into(),
        fixture::service("default", "b")
            .client_ip_affinity(None)
            .port("", 80)
            .into(),
        ing("i", T0, &[("a.test", "/", Prefix, "a"), ("b.test", "/", Prefix, "b")]).into(),
    ]);
    let cfg = compile(&s, &Options::default());
    assert_eq!(
        backend_of(&cfg, "a.test").target,
        Target::ExternalName {
            host: "api.example.org".into(),
            port: 80
        }
    );
    let b = backend_of(&cfg, "b.test");
    assert_eq!(b.client_ip_affinity, Some(10800));
    assert!(b.ready().is_empty(), "no slices: no endpoints (503), but routed");
}

/// The API server holds `timeoutSeconds` to 1..=86400; a manifests file is checked the same
/// way: a Warning on the Service, and the default.
#[test]
fn client_ip_timeouts_out_of_range_are_warnings() {
    let svc = |name: &str, timeout: i32| -> AnyObject {
        fixture::service("default", name)
            .port("http", 80)
            .client_ip_affinity(Some(timeout))
            .into()
    };
    let y = [
        fixture::portico_class().into(),
        svc("a", 2147483647),
        svc("b", -5),
        svc("c", 86400),
        ing(
            "i",
            T0,
            &[
                ("a.test", "/", Prefix, "a"),
                ("b.test", "/", Prefix, "b"),
                ("c.test", "/", Prefix, "c"),
            ],
        )
        .into(),
    ];
    let cfg = compile(&snap(y), &Options::default());
    assert_eq!(backend_of(&cfg, "a.test").client_ip_affinity, Some(10800));
    assert_eq!(backend_of(&cfg, "b.test").client_ip_affinity, Some(10800));
    assert_eq!(backend_of(&cfg, "c.test").client_ip_affinity, Some(86400));
    let warned: Vec<&str> = cfg
        .diagnostics
        .iter()
        .filter(|d| d.reason == Reason::InvalidServiceField && d.severity == Severity::Warning)
        .map(|d| d.object.name.as_str())
        .collect();
    assert_eq!(warned, ["a", "b"], "{:?}", cfg.diagnostics);
}

#[test]
fn missing_service_or_port_is_a_503_with_a_diagnostic() {
    let cfg = build([fixture::ingress("default", "i")
        .class("portico")
        .created(T0)
        .rule("a.test", "/", Prefix, "nope", 80)
        .rule("b.test", "/", Prefix, "b", 81)
        .rule("c.test", "/", Prefix, "b", 80)
        .into()]);
    assert!(matches!(backend_of(&cfg, "a.test").target, Target::Unavailable { .. }));
    assert!(matches!(backend_of(&cfg, "b.test").target, Target::Unavailable { .. }));
    assert_eq!(addrs(backend_of(&cfg, "c.test").ready()), ["10.0.0.1:8080"]);
    let reasons: Vec<_> = cfg.diagnostics.iter().map(|d| d.reason).collect();
    assert_eq!(reasons, [Reason::ServiceNotFound, Reason::ServicePortNotFound]);
    assert!(
        cfg.diagnostics[0]
            .message
            .contains("Service default/nope does not exist"),
        "{}",
        cfg.diagnostics[0]
    );
    assert!(
        cfg.diagnostics[1].message.contains("has no port 81"),
        "{}",
        cfg.diagnostics[1]
    );
    assert!(cfg.has_errors());
}

#[test]
fn backends_are_shared_between_routes() {
    let cfg = build([ing("i", T0, &[("a.test", "/", Prefix, "a"), ("b.test", "/x", Prefix, "a")]).into()]);
    let a = backend_of(&cfg, "a.test");
    let b = cfg.backend(cfg.routes.route("b.test", "/x").unwrap()).unwrap().clone();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(cfg.backends.len(), 1);
}

// ---------------------------------------------------------------- TLS

fn tls_secret(name: &str, crt: &str, key: &str) -> AnyObject {
    fixture::tls_secret_files("default", name, crt, key).into()
}

/// An Ingress with `entries` as `(hosts, secretName)` under `tls` and one rule `/` → `a` for
/// each of `hosts`.
fn tls_ingress(name: &str, created: &str, entries: &[(&[&str], Option<&str>)], hosts: &[&str]) -> IngressBuilder {
    let rules: Vec<_> = hosts.iter().map(|h| (*h, "/", Prefix, "a")).collect();
    let i = ing(name, created, &rules);
    entries.iter().fold(i, |i, (hosts, secret)| i.tls(hosts, *secret))
}

/// rcgen's subject for a simple self-signed certificate: the fallback in these tests.
const DEFAULT_CN: &str = "rcgen self signed cert";

fn fallback() -> Arc<rustls::sign::CertifiedKey> {
    let ck = rcgen::generate_simple_self_signed(vec!["fallback.invalid".to_string()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).unwrap();
    Arc::new(rustls::sign::CertifiedKey::new(vec![ck.cert.der().clone()], signer))
}

pub(super) fn cert_cn(ck: &rustls::sign::CertifiedKey) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(ck.cert[0].as_ref()).unwrap();
    c.subject()
        .iter_common_name()
        .next()
        .map(|cn| cn.as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn tls_config(now: SystemTime) -> Config {
    let s = with_base([
        tls_secret("rsa1", "rsa.crt", "rsa-pkcs1.key"),
        tls_secret("rsa8", "rsa.crt", "rsa-pkcs8.key"),
        tls_secret("ec", "ec.crt", "ec-sec1.key"),
        tls_secret("chain", "chain.crt", "leaf-pkcs8.key"),
        tls_secret("mismatch", "rsa.crt", "ec-sec1.key"),
        fixture::tls_secret("default", "garbage", "not pem", "nope").into(),
        tls_ingress(
            "t",
            T0,
            &[
                (&["rsa.example.com"], Some("rsa1")),
                (&["foo.com"], Some("rsa8")),
                (&["*.example.com"], Some("ec")),
                (&["chain.example.com"], Some("chain")),
                (&["mismatch.test"], Some("mismatch")),
                (&["garbage.test"], Some("garbage")),
                (&["missing.test"], Some("does-not-exist")),
                (&["nosecret.test"], None),
            ],
            &[
                "rsa.example.com",
                "foo.com",
                "www.example.com",
                "chain.example.com",
                "mismatch.test",
                "garbage.test",
                "missing.test",
                "nosecret.test",
                "plain.test",
            ],
        )
        .into(),
    ]);
    compile(
        &s,
        &Options {
            fallback_certificate: Some(fallback()),
            now,
            ..Options::default()
        },
    )
}

#[test]
fn tls_certificates_by_sni() {
    let cfg = tls_config(SystemTime::now());
    let sni = |n: Option<&str>| cert_cn(&cfg.certs.resolve(n).expect("a certificate"));
    assert_eq!(
        sni(Some("rsa.example.com")),
        "rsa.example.com",
        "PKCS#1 key; exact beats wildcard"
    );
    assert_eq!(sni(Some("RSA.Example.com")), "rsa.example.com");
    assert_eq!(sni(Some("foo.com")), "rsa.example.com", "PKCS#8 key");
    assert_eq!(sni(Some("www.example.com")), "*.example.com", "SEC1 key, wildcard");
    assert_eq!(
        sni(Some("a.b.example.com")),
        DEFAULT_CN,
        "wildcard covers one label only: default"
    );
    assert_eq!(
        cfg.certs.resolve(Some("chain.example.com")).unwrap().cert.len(),
        2,
        "full chain served"
    );
    assert_eq!(sni(Some("chain.example.com")), "chain.example.com");
    for host in [
        "mismatch.test",
        "garbage.test",
        "missing.test",
        "nosecret.test",
        "unknown.test",
    ] {
        assert_eq!(sni(Some(host)), DEFAULT_CN, "{host} gets the default certificate");
    }
    assert_eq!(sni(None), DEFAULT_CN, "no SNI: default certificate");

    let diags: Vec<_> = cfg.diagnostics.iter().map(|d| (d.reason, d.message.clone())).collect();
    assert_eq!(diags.len(), 3, "{diags:#?}");
    assert!(
        diags
            .iter()
            .any(|(r, m)| *r == Reason::InvalidCertificate && m.contains("mismatch") && m.contains("does not match"))
    );
    assert!(
        diags
            .iter()
            .any(|(r, m)| *r == Reason::InvalidCertificate && m.contains("garbage"))
    );
    assert!(
        diags
            .iter()
            .any(|(r, m)| *r == Reason::SecretNotFound && m.contains("does-not-exist"))
    );

    // Every TLS host redirects, whatever happened to its secret; a host without TLS doesn't.
    for host in ["rsa.example.com", "www.example.com", "garbage.test", "nosecret.test"] {
        assert!(cfg.routes.route(host, "/").unwrap().ssl_redirect, "{host}");
    }
    assert!(!cfg.routes.route("plain.test", "/").unwrap().ssl_redirect);
}

#[test]
fn expired_certificates_fall_back_to_the_default() {
    // The fixtures are valid for 100 years: two hundred years on, all have expired.
    let cfg = tls_config(SystemTime::now() + Duration::from_secs(200 * 365 * 86400));
    assert_eq!(
        cert_cn(&cfg.certs.resolve(Some("rsa.example.com")).unwrap()),
        DEFAULT_CN
    );
    assert!(
        cfg.diagnostics
            .iter()
            .any(|d| d.reason == Reason::CertificateExpired && d.message.contains("expired"))
    );
}

#[test]
fn ssl_redirect_annotation_and_tls_conflicts() {
    let cfg = build([
        tls_secret("ec", "ec.crt", "ec-sec1.key"),
        tls_secret("rsa", "rsa.crt", "rsa-pkcs8.key"),
        tls_ingress("old", T0, &[(&["x.example.com"], Some("ec"))], &["x.example.com"]).into(),
        tls_ingress("new", "2024-06-01T00:00:00Z", &[(&["x.example.com"], Some("rsa"))], &[]).into(),
        tls_ingress("optout", T0, &[(&["o.test"], None)], &["o.test"])
            .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false")
            .into(),
        tls_ingress("badvalue", T0, &[(&["b.test"], None)], &["b.test"])
            .annotation("portico.dev/ssl-redirect", "maybe")
            .into(),
    ]);
    assert_eq!(
        cert_cn(&cfg.certs.resolve(Some("x.example.com")).unwrap()),
        "*.example.com",
        "older Ingress keeps the host's certificate"
    );
    assert!(!cfg.routes.route("o.test", "/").unwrap().ssl_redirect);
    assert!(
        cfg.routes.route("b.test", "/").unwrap().ssl_redirect,
        "an invalid value falls back to the default"
    );
    let reasons: Vec<_> = cfg
        .diagnostics
        .iter()
        .map(|d| (d.object.name.as_str(), d.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("badvalue", Reason::InvalidAnnotation),
            ("new", Reason::CertificateConflict)
        ]
    );
}

#[test]
fn default_ssl_certificate_option() {
    let s = with_base([tls_secret("ec", "ec.crt", "ec-sec1.key")]);
    let cfg = compile(
        &s,
        &Options {
            default_ssl_certificate: ObjectKey::parse("default/ec"),
            fallback_certificate: Some(fallback()),
            ..Options::default()
        },
    );
    assert_eq!(cert_cn(&cfg.certs.resolve(None).unwrap()), "*.example.com");
    let cfg = compile(
        &s,
        &Options {
            default_ssl_certificate: ObjectKey::parse("default/nope"),
            fallback_certificate: Some(fallback()),
            ..Options::default()
        },
    );
    assert_eq!(cert_cn(&cfg.certs.resolve(None).unwrap()), DEFAULT_CN);
    assert_eq!(cfg.diagnostics[0].reason, Reason::SecretNotFound);
}

// ---------------------------------------------------------------- robustness

#[test]
fn broken_objects_never_stop_the_rest() {
    // One rule whose paths are a resource backend, an unknown path type and a good path.
    let mut resource = fixture::ingress("default", "resource-backend")
        .class("portico")
        .rule("res.test", "/", Prefix, "a", 80)
        .path("/weird", Prefix, "a", 80)
        .path("/ok", Exact, "a", 80)
        .build();
    let paths = &mut resource.spec.as_mut().unwrap().rules.as_mut().unwrap()[0]
        .http
        .as_mut()
        .unwrap()
        .paths;
    paths[0].backend = k8s_openapi::api::networking::v1::IngressBackend {
        service: None,
        resource: Some(k8s_openapi::api::core::v1::TypedLocalObjectReference {
            api_group: Some("k8s.example.com".into()),
            kind: "StorageBucket".into(),
            name: "icons".into(),
        }),
    };
    paths[1].path_type = "Sometimes".into();
    let cfg = build([
        tls_secret("ec", "ec.crt", "ec-sec1.key"),
        ing("good", T0, &[("good.test", "/", Prefix, "a")]).into(),
        ing("dangling", T0, &[("dangling.test", "/", Prefix, "ghost")]).into(),
        ing("conflict", "2024-06-01T00:00:00Z", &[("good.test", "/", Prefix, "b")]).into(),
        tls_ingress("badtls", T0, &[(&["badtls.test"], Some("missing"))], &["badtls.test"]).into(),
        resource.into(),
    ]);
    assert_eq!(target(&cfg, "good.test", "/"), Some("a".into()));
    assert_eq!(target(&cfg, "badtls.test", "/"), Some("a".into()));
    assert_eq!(target(&cfg, "res.test", "/ok"), Some("a".into()));
    assert_eq!(target(&cfg, "res.test", "/"), None);
    assert!(matches!(
        backend_of(&cfg, "dangling.test").target,
        Target::Unavailable { .. }
    ));
    let mut got: Vec<_> = cfg
        .diagnostics
        .iter()
        .map(|d| (d.object.name.clone(), d.reason))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("badtls".to_string(), Reason::SecretNotFound),
            ("conflict".to_string(), Reason::PathConflict),
            ("dangling".to_string(), Reason::ServiceNotFound),
            ("resource-backend".to_string(), Reason::UnsupportedBackend),
            ("resource-backend".to_string(), Reason::InvalidPath),
        ]
    );
    for d in cfg.diagnostics.iter() {
        assert!(!d.message.is_empty());
    }
}

#[test]
fn compile_is_deterministic() {
    let s = with_base([
        ing("x", T0, &[("h.com", "/", Prefix, "a"), ("h.com", "/b", Prefix, "b")]).into(),
        ing("y", T0, &[("h.com", "/b", Prefix, "c")]).into(),
    ]);
    let a = compile(&s, &Options::default());
    let b = compile(&s, &Options::default());
    assert_eq!(format!("{:?}", a.diagnostics), format!("{:?}", b.diagnostics));
    assert_eq!(
        serde_json::to_string(&a.route_list).unwrap(),
        serde_json::to_string(&b.route_list).unwrap()
    );
}

#[test]
fn certificate_cache_gives_the_same_answers() {
    let cache = Arc::new(tls::CertCache::default());
    let with_cache = |now| {
        let s = with_base([
            tls_secret("ec", "ec.crt", "ec-sec1.key"),
            tls_secret("rsa", "rsa.crt", "rsa-pkcs8.key"),
            tls_secret("mismatch", "rsa.crt", "ec-sec1.key"),
            tls_ingress(
                "t",
                T0,
                &[
                    (&["a.example.com"], Some("ec")),
                    (&["foo.com"], Some("rsa")),
                    (&["m.test"], Some("mismatch")),
                ],
                &["a.example.com"],
            )
            .into(),
        ]);
        let opts = Options {
            fallback_certificate: Some(fallback()),
            cert_cache: Some(cache.clone()),
            now,
            ..Options::default()
        };
        let cfg = compile(&s, &opts);
        // The memo changes only speed: the same Config as without it.
        let uncached = compile(
            &s,
            &Options {
                cert_cache: None,
                ..opts
            },
        );
        assert!(cfg == uncached);
        // As the publisher does after each compile.
        cache.rotate();
        cfg
    };
    let first = with_cache(SystemTime::now());
    assert_eq!(
        cache.len(),
        3,
        "every distinct certificate parsed once, failures included"
    );
    let second = with_cache(SystemTime::now());
    assert_eq!(first.diagnostics, second.diagnostics);
    assert_eq!(
        cert_cn(&second.certs.resolve(Some("foo.com")).unwrap()),
        "rsa.example.com"
    );
    // Validity is checked against each compile's own time, not the cached one.
    let later = with_cache(SystemTime::now() + Duration::from_secs(200 * 365 * 86400));
    assert!(later.diagnostics.iter().any(|d| d.reason == Reason::CertificateExpired));
    assert_eq!(cert_cn(&later.certs.resolve(Some("foo.com")).unwrap()), DEFAULT_CN);
}

#[test]
fn endpoint_only_recompile_equals_a_full_compile() {
    let before = with_base([ing("i", T0, &[("a.test", "/", Prefix, "a"), ("b.test", "/", Prefix, "b")]).into()]);
    let prev = compile(&before, &Options::default());
    // Service a's slice gains a pod.
    let mut s = before.clone();
    let key = ObjectKey::new("default", "a-abc");
    let mut slice = s.endpoint_slices[&key].to_k8s(&key);
    slice.endpoints[0].addresses.push("10.0.0.9".into());
    s.insert(AnyObject::EndpointSlice(Arc::new(slice)));
    let full = compile(&s, &Options::default());
    let quick = recompile_endpoints(&s, &prev, None);
    let a_only: std::collections::HashSet<ObjectKey> = [ObjectKey::new("default", "a")].into();
    let targeted = recompile_endpoints(&s, &prev, Some(&a_only));
    for (t, f) in targeted.backends.iter().zip(&full.backends) {
        assert_eq!(t, f, "re-resolving only the changed Service gives the same backends");
    }
    // What Kubernetes mode hands a quick compile: only the changed Service's objects.
    let narrow = s.only_services(&a_only);
    assert_eq!(
        (
            narrow.services.len(),
            narrow.endpoint_slices.len(),
            narrow.ingresses.len()
        ),
        (1, 1, 0)
    );
    let from_narrow = recompile_endpoints(&narrow, &prev, Some(&a_only));
    assert_eq!(from_narrow.backends, targeted.backends);
    let b = |c: &Config| c.backend(c.routes.route("b.test", "/").unwrap()).unwrap().clone();
    assert!(
        Arc::ptr_eq(&b(&targeted), &b(&prev)),
        "an unchanged Service keeps its backend"
    );
    assert!(Arc::ptr_eq(&quick.routes, &prev.routes), "the route table is reused");
    assert_eq!(quick.backends.len(), full.backends.len());
    for (q, f) in quick.backends.iter().zip(&full.backends) {
        assert_eq!(q, f);
    }
    assert_eq!(
        addrs(backend_of(&quick, "a.test").ready()),
        ["10.0.0.1:8080", "10.0.0.9:8080"]
    );
    assert_eq!(quick.diagnostics, full.diagnostics);
    assert!(
        quick == full,
        "an endpoints-only recompile is the full compile's Config"
    );
}

#[test]
fn configs_compare_as_plain_data() {
    let objects = |ip: &str| {
        let mut objects = vec![
            fixture::portico_class().into(),
            ing("a", T0, &[("a.test", "/", Prefix, "svc-a")]).into(),
        ];
        objects.extend(svc("svc-a", ip));
        snap(objects)
    };
    let (one, two) = (
        compile(&objects("10.0.0.1"), &Options::default()),
        compile(&objects("10.0.0.1"), &Options::default()),
    );
    assert!(one == two, "the same objects compile to equal Configs");
    assert!(
        one != compile(&objects("10.0.0.2"), &Options::default()),
        "an endpoint change is a different Config"
    );
}

/// `ssl-passthrough`: an exact host's `/` rule, oldest Ingress first, only with the flag;
/// everything else about it is a Warning.
#[test]
fn ssl_passthrough_table() {
    const PASS: &str = "nginx.ingress.kubernetes.io/ssl-passthrough";
    let s = with_base([
        ing(
            "old",
            T0,
            &[
                ("pass.test", "/", Prefix, "a"),
                ("pass.test", "/api", Prefix, "b"),
                ("*.wild.test", "/", Prefix, "a"),
            ],
        )
        .annotation(PASS, "true")
        .into(),
        // A younger Ingress on the same host with another path: the host stays with "old".
        ing("young", "2024-02-01T00:00:00Z", &[("pass.test", "/x", Prefix, "c")])
            .annotation(PASS, "true")
            .into(),
        ing("exact-only", T0, &[("exact.test", "/", Exact, "d")])
            .annotation(PASS, "true")
            .into(),
        ing("off", T0, &[("off.test", "/", Prefix, "e")])
            .annotation(PASS, "false")
            .into(),
        ing("bad", T0, &[("bad.test", "/", Prefix, "e")])
            .annotation(PASS, "yes")
            .into(),
    ]);
    let messages = |cfg: &Config, name: &str| -> Vec<String> {
        cfg.diagnostics
            .iter()
            .filter(|d| d.object.name == name)
            .map(|d| d.message.clone())
            .collect()
    };
    let on = Options {
        enable_ssl_passthrough: true,
        ..Options::default()
    };
    let cfg = compile(&s, &on);
    let hosts: std::collections::BTreeMap<_, _> = cfg
        .passthrough
        .iter()
        .map(|(h, &i)| (h.as_str(), cfg.backends[i].service.name.as_str()))
        .collect();
    assert_eq!(hosts, [("pass.test", "a")].into());
    // HTTP routes are unchanged: the plain listener still serves every path.
    assert_eq!(target(&cfg, "pass.test", "/api"), Some("b".into()));
    let old = messages(&cfg, "old");
    assert!(
        old.iter()
            .any(|m| m.contains("path /api") && m.contains("not used for TLS")),
        "{old:?}"
    );
    assert!(
        old.iter()
            .any(|m| m.contains("*.wild.test") && m.contains("not an exact host")),
        "{old:?}"
    );
    for name in ["young", "exact-only"] {
        let m = messages(&cfg, name);
        assert!(m.iter().any(|m| m.contains("no rule for path /")), "{name}: {m:?}");
    }
    assert!(messages(&cfg, "off").is_empty());
    let bad = messages(&cfg, "bad");
    assert!(
        bad.iter()
            .any(|m| m.contains("ssl-passthrough") && m.contains("\"true\" or \"false\"")),
        "{bad:?}"
    );
    // The passed-through backend speaks TLS: plain HTTP to it goes over TLS; others do not.
    let protocol = |cfg: &Config, name: &str| cfg.backends.iter().find(|b| b.service.name == name).map(|b| b.protocol);
    assert_eq!(protocol(&cfg, "a"), Some(Protocol::Https));
    assert_eq!(protocol(&cfg, "b"), Some(Protocol::Http));
    // An endpoints-only recompile keeps the table and the protocol.
    let again = recompile_endpoints(&s, &cfg, None);
    assert_eq!(again.passthrough, cfg.passthrough);
    assert_eq!(again.backends, cfg.backends);

    // Without --enable-ssl-passthrough: nothing passed through, and each Ingress is told.
    let cfg = compile(&s, &Options::default());
    assert!(cfg.passthrough.is_empty());
    let old = messages(&cfg, "old");
    assert!(old.iter().any(|m| m.contains("--enable-ssl-passthrough")), "{old:?}");
}

// ---------------------------------------------------------------- proxy-ssl-*

#[test]
fn proxy_ssl_annotations_compile_to_upstream_tls() {
    let ca = fixture::self_signed_pem("ca.internal");
    let both = |name: &str| {
        ing(name, T0, &[(&format!("{name}.com"), "/", Prefix, "a")])
            .annotation("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS")
    };
    let cfg = build([
        fixture::opaque_secret("default", "ca", &[("ca.crt", ca.as_bytes())]).into(),
        fixture::opaque_secret("default", "junk", &[("ca.crt", b"junk")]).into(),
        both("twin")
            .annotation("portico.dev/proxy-ssl-secret", "ca")
            .annotation("portico.dev/proxy-ssl-verify", "on")
            .annotation("portico.dev/proxy-ssl-verify-depth", "0")
            .annotation("portico.dev/proxy-ssl-name", "Backend.Internal")
            .annotation("portico.dev/proxy-ssl-server-name", "on")
            .annotation("portico.dev/proxy-ssl-protocols", "TLSv1.1 TLSv1.3")
            .annotation("portico.dev/proxy-ssl-ciphers", "HIGH:!AES")
            .into(),
        both("bad-values")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-secret", "default/ca")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-verify-depth", "-1")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-name", "*.internal")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-protocols", "SSLv3")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-ciphers", "RC4")
            .into(),
        both("lonely")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-name", "backend.internal")
            .into(),
        both("junk")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-secret", "junk")
            .into(),
        both("maybe-on")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-secret", "ca")
            .annotation("nginx.ingress.kubernetes.io/proxy-ssl-verify", "true")
            .into(),
    ]);
    let tls_of = |host: &str| {
        let route = cfg.routes.route(host, "/").unwrap();
        route.policy.upstream_tls.clone()
    };
    let diags = |name: &str| -> Vec<String> {
        cfg.diagnostics
            .iter()
            .filter(|d| d.object.name == name)
            .map(|d| d.message.clone())
            .collect()
    };

    let twin = tls_of("twin.com").unwrap();
    assert_eq!(twin.denied, None);
    assert_eq!(twin.secret.as_deref(), Some("default/ca"));
    let verify = twin.verify.as_ref().unwrap();
    assert_eq!((verify.roots.len(), verify.depth), (1, 1), "0 is the default depth");
    assert_eq!(twin.name.as_deref(), Some("backend.internal"));
    assert!(twin.server_name);
    assert!(!twin.protocols.tls12 && twin.protocols.tls13);
    assert_eq!(twin.ciphers.as_ref().unwrap().len(), 2);
    assert_eq!(diags("twin").len(), 1, "TLSv1.1: {:?}", diags("twin"));

    // Bad values: each a Warning, each setting at its default.
    let bad = tls_of("bad-values.com").unwrap();
    assert_eq!(bad.denied, None);
    assert!(bad.verify.is_none() && bad.name.is_none() && bad.ciphers.is_none());
    assert!(bad.protocols.tls12 && bad.protocols.tls13);
    assert_eq!(diags("bad-values").len(), 4, "{:?}", diags("bad-values"));

    // Without proxy-ssl-secret: no effect, a Warning.
    assert_eq!(tls_of("lonely.com"), None);
    assert!(diags("lonely")[0].contains("has no effect without"));

    // A Secret whose ca.crt does not parse denies.
    let junk = tls_of("junk.com").unwrap();
    assert!(junk.denied.is_some());
    assert!(diags("junk")[0].contains("ca.crt"), "{:?}", diags("junk"));
    // A verify value that may have meant on denies instead of leaving the backend unverified.
    assert!(tls_of("maybe-on.com").unwrap().denied.is_some());
    assert!(diags("maybe-on")[0].contains("neither"), "{:?}", diags("maybe-on"));
}
