//! compile() and RouteTable semantics, pinned rule by rule.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::diagnostic::{Reason, Severity};
use crate::config::{Backend, Endpoint, Target};
use crate::model::AnyObject;
use crate::source::files::parse_manifests;

fn snap(yaml: &str) -> Snapshot {
    let mut s = Snapshot::default();
    for o in parse_manifests(yaml).expect("test manifests parse") {
        s.insert(o);
    }
    s
}

const CLASS: &str = "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portico}
spec: {controller: portico.dev/ingress-controller}
";

/// A Service `name` with one port 80 named http, and a slice with one ready pod `ip`.
fn svc(name: &str, ip: &str) -> String {
    format!(
        "
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: web}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abc
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
- addresses: [{ip}]
  conditions: {{ready: true}}
"
    )
}

/// An Ingress of class portico with rules given as `(host, path, pathType, service)`.
fn ing(name: &str, created: &str, rules: &[(&str, &str, &str, &str)]) -> String {
    let mut y = format!(
        "
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: default, creationTimestamp: \"{created}\"}}
spec:
  ingressClassName: portico
  rules:
"
    );
    for (host, path, ty, svc) in rules {
        let host_line = if host.is_empty() {
            String::new()
        } else {
            format!("host: \"{host}\"\n    ")
        };
        y.push_str(&format!(
            "  - {host_line}http:
      paths:
      - path: \"{path}\"
        pathType: {ty}
        backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}
"
        ));
    }
    y
}

fn target(cfg: &Config, host: &str, path: &str) -> Option<String> {
    cfg.routes
        .route(host, path)
        .map(|r| cfg.backend(r).expect("backend").service.name.clone())
}

fn base() -> String {
    let mut y = CLASS.to_string();
    for s in ["a", "b", "c", "d", "e"] {
        y.push_str(&svc(s, "10.0.0.1"));
    }
    y
}

fn build(extra: &str) -> Config {
    compile(&snap(&(base() + extra)), &Options::default())
}

// ---------------------------------------------------------------- class

#[test]
fn class_selection() {
    let mut y = base();
    y.push_str(
        "
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: other}
spec: {controller: example.com/other}
",
    );
    let mk = |name: &str, class_line: &str, host: &str| {
        format!(
            "
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default
{class_line}
spec:
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: a, port: {{number: 80}}}}}}}}
"
        )
    };
    // ingressClassName is put under spec by a small rewrite below.
    y.push_str(
        &mk("by-name", "", "by-name.test").replace("spec:\n  rules", "spec:\n  ingressClassName: portico\n  rules"),
    );
    y.push_str(
        &mk("other-class", "", "other.test").replace("spec:\n  rules", "spec:\n  ingressClassName: other\n  rules"),
    );
    y.push_str(
        &mk("missing-class", "", "missing.test").replace("spec:\n  rules", "spec:\n  ingressClassName: nope\n  rules"),
    );
    y.push_str(&mk(
        "legacy",
        "  annotations: {kubernetes.io/ingress.class: portico}",
        "legacy.test",
    ));
    y.push_str(&mk(
        "legacy-other",
        "  annotations: {kubernetes.io/ingress.class: nginx}",
        "legacy-other.test",
    ));
    y.push_str(&mk("classless", "", "classless.test"));
    let s = snap(&y);

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
    let cfg = build(&ing("w", "2024-01-01T00:00:00Z", &[("*.foo.com", "/", "Prefix", "a")]));
    // bar.foo.com: matches based on shared suffix.
    assert_eq!(target(&cfg, "bar.foo.com", "/"), Some("a".into()));
    // baz.bar.foo.com: no match, the wildcard only covers a single DNS label.
    assert_eq!(target(&cfg, "baz.bar.foo.com", "/"), None);
    // foo.com: no match, the wildcard only covers a single DNS label.
    assert_eq!(target(&cfg, "foo.com", "/"), None);
}

#[test]
fn host_matching() {
    let cfg = build(
        &(ing("exact", "2024-01-01T00:00:00Z", &[("foo.bar.com", "/", "Prefix", "a")])
            + &ing("wild", "2024-01-01T00:00:00Z", &[("*.bar.com", "/", "Prefix", "b")])
            + &ing("any", "2024-01-01T00:00:00Z", &[("", "/", "Prefix", "c")])),
    );
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
    let cfg = build(
        &(ing(
            "exact",
            "2024-01-01T00:00:00Z",
            &[("foo.bar.com", "/api", "Prefix", "a")],
        ) + &ing("wild", "2024-01-01T00:00:00Z", &[("*.bar.com", "/web", "Prefix", "b")])
            + &ing("any", "2024-01-01T00:00:00Z", &[("", "/static", "Prefix", "c")])),
    );
    assert_eq!(target(&cfg, "foo.bar.com", "/api/v1"), Some("a".into()));
    assert_eq!(target(&cfg, "foo.bar.com", "/web"), Some("b".into()));
    assert_eq!(target(&cfg, "foo.bar.com", "/static/x.css"), Some("c".into()));
    assert_eq!(target(&cfg, "foo.bar.com", "/other"), None);
}

#[test]
fn invalid_host_is_a_diagnostic() {
    let cfg = build(
        &(ing(
            "bad",
            "2024-01-01T00:00:00Z",
            &[("foo..com", "/", "Prefix", "a"), ("ok.com", "/", "Prefix", "b")],
        ) + &ing("bad2", "2024-01-01T00:00:00Z", &[("a.*.com", "/", "Prefix", "a")])),
    );
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
fn docs_row(paths: &[(&str, &str)], request: &str, expect: Option<usize>) {
    let names = ["a", "b", "c", "d", "e"];
    let rules: Vec<(&str, &str, &str, &str)> = paths
        .iter()
        .enumerate()
        .map(|(i, (ty, p))| ("example.com", *p, *ty, names[i]))
        .collect();
    let cfg = build(&ing("docs", "2024-01-01T00:00:00Z", &rules));
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
        docs_row(&[("Prefix", "/")], req, Some(0)); // Prefix /, (all paths): yes
    }
    docs_row(&[("Exact", "/foo")], "/foo", Some(0));
    docs_row(&[("Exact", "/foo")], "/bar", None);
    docs_row(&[("Exact", "/foo")], "/foo/", None);
    docs_row(&[("Exact", "/foo/")], "/foo", None);
    docs_row(&[("Prefix", "/foo")], "/foo", Some(0));
    docs_row(&[("Prefix", "/foo")], "/foo/", Some(0));
    docs_row(&[("Prefix", "/foo/")], "/foo", Some(0));
    docs_row(&[("Prefix", "/foo/")], "/foo/", Some(0));
    docs_row(&[("Prefix", "/aaa/bb")], "/aaa/bbb", None);
    docs_row(&[("Prefix", "/aaa/bbb")], "/aaa/bbb", Some(0));
    docs_row(&[("Prefix", "/aaa/bbb/")], "/aaa/bbb", Some(0)); // ignores trailing slash
    docs_row(&[("Prefix", "/aaa/bbb")], "/aaa/bbb/", Some(0)); // matches trailing slash
    docs_row(&[("Prefix", "/aaa/bbb")], "/aaa/bbb/ccc", Some(0)); // matches subpath
    docs_row(&[("Prefix", "/aaa/bbb")], "/aaa/bbbxyz", None); // not a string prefix
    docs_row(&[("Prefix", "/"), ("Prefix", "/aaa")], "/aaa/ccc", Some(1));
    docs_row(
        &[("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")],
        "/aaa/bbb",
        Some(2),
    );
    docs_row(
        &[("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")],
        "/ccc",
        Some(0),
    );
    docs_row(&[("Prefix", "/aaa")], "/ccc", None); // uses default backend
    docs_row(&[("Prefix", "/foo"), ("Exact", "/foo")], "/foo", Some(1)); // prefers Exact
    docs_row(&[("Exact", "/foo"), ("Prefix", "/foo")], "/foo", Some(0));
}

#[test]
fn precedence_is_longest_path_then_exact_never_yaml_order() {
    // Listed shortest first and longest first: same result.
    for order in [
        [("Prefix", "/"), ("Prefix", "/a"), ("Prefix", "/a/b")],
        [("Prefix", "/a/b"), ("Prefix", "/a"), ("Prefix", "/")],
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
        let cfg = build(&ing("p", "2024-01-01T00:00:00Z", &rules));
        assert_eq!(target(&cfg, "h.com", "/a/b/c"), Some("c".into()));
        assert_eq!(target(&cfg, "h.com", "/a/bc"), Some("b".into()));
        assert_eq!(target(&cfg, "h.com", "/ab"), Some("a".into()));
    }
    // A trailing slash counts towards length: Prefix /foo/ beats Prefix /foo for /foo.
    let cfg = build(&ing(
        "t",
        "2024-01-01T00:00:00Z",
        &[("h.com", "/foo", "Prefix", "a"), ("h.com", "/foo/", "Prefix", "b")],
    ));
    assert_eq!(target(&cfg, "h.com", "/foo"), Some("b".into()));
    assert_eq!(target(&cfg, "h.com", "/foo/x"), Some("b".into()));
    // Exact beats Prefix on an equal path; the Prefix still serves the subpaths.
    let cfg = build(&ing(
        "e",
        "2024-01-01T00:00:00Z",
        &[("h.com", "/foo", "Prefix", "a"), ("h.com", "/foo", "Exact", "b")],
    ));
    assert_eq!(target(&cfg, "h.com", "/foo"), Some("b".into()));
    assert_eq!(target(&cfg, "h.com", "/foo/"), Some("a".into()));
    // ImplementationSpecific is Prefix.
    let cfg = build(&ing(
        "i",
        "2024-01-01T00:00:00Z",
        &[("h.com", "/foo", "ImplementationSpecific", "a")],
    ));
    assert_eq!(target(&cfg, "h.com", "/foo/bar"), Some("a".into()));
    assert_eq!(target(&cfg, "h.com", "/foobar"), None);
}

#[test]
fn matcher_backtracks_and_escapes_braces() {
    let cfg = build(&ing(
        "m",
        "2024-01-01T00:00:00Z",
        &[
            ("h.com", "/", "Prefix", "a"),
            ("h.com", "/foo/bar", "Prefix", "b"),
            ("h.com", "/x{id}", "Exact", "c"),
            ("h.com", "/foo", "Exact", "d"),
        ],
    ));
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
    let cfg = build(&ing(
        "n",
        "2024-01-01T00:00:00Z",
        &[
            ("h.com", "/a//b/./c", "Exact", "a"),
            ("h.com", "/%7Euser", "Prefix", "b"),
        ],
    ));
    assert_eq!(target(&cfg, "h.com", "/a/b/c"), Some("a".into()));
    assert_eq!(target(&cfg, "h.com", "/~user/x"), Some("b".into()));
    let cfg = build(&ing(
        "bad",
        "2024-01-01T00:00:00Z",
        &[("h.com", "relative", "Prefix", "a"), ("h.com", "/ok", "Prefix", "b")],
    ));
    assert_eq!(target(&cfg, "h.com", "/ok"), Some("b".into()));
    assert_eq!(cfg.diagnostics.len(), 1);
    assert_eq!(cfg.diagnostics[0].reason, Reason::InvalidPath);
}

#[test]
fn conflicts_go_to_the_oldest_ingress() {
    let newer = ing(
        "aaa-newer",
        "2024-06-01T00:00:00Z",
        &[("h.com", "/x", "Prefix", "a"), ("h.com", "/only-newer", "Prefix", "a")],
    );
    let older = ing("zzz-older", "2024-01-01T00:00:00Z", &[("h.com", "/x", "Prefix", "b")]);
    let cfg = build(&(newer + &older));
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
    let cfg = build(
        &(ing("m2", "2024-01-01T00:00:00Z", &[("h.com", "/x", "Prefix", "a")])
            + &ing("m1", "2024-01-01T00:00:00Z", &[("h.com", "/x", "Prefix", "b")])),
    );
    assert_eq!(target(&cfg, "h.com", "/x"), Some("b".into()));
    assert_eq!(cfg.diagnostics[0].object.name, "m2");

    // Different types on the same path are not a conflict: precedence decides.
    let cfg = build(
        &(ing("p", "2024-01-01T00:00:00Z", &[("h.com", "/x", "Prefix", "a")])
            + &ing("e", "2024-06-01T00:00:00Z", &[("h.com", "/x", "Exact", "b")])),
    );
    assert!(cfg.diagnostics.is_empty());
    assert_eq!(target(&cfg, "h.com", "/x"), Some("b".into()));
    assert_eq!(target(&cfg, "h.com", "/x/y"), Some("a".into()));
}

// ---------------------------------------------------------------- default backends

fn with_default(name: &str, created: &str, default_svc: &str, rules: &[(&str, &str, &str, &str)]) -> String {
    let y = ing(name, created, rules);
    let y = y.replace(
        "spec:\n  ingressClassName: portico\n",
        &format!("spec:\n  ingressClassName: portico\n  defaultBackend: {{service: {{name: {default_svc}, port: {{name: http}}}}}}\n"),
    );
    if rules.is_empty() {
        y.replace("  rules:\n", "")
    } else {
        y
    }
}

#[test]
fn default_backends() {
    let cfg = build(
        &(with_default(
            "host-default",
            "2024-01-01T00:00:00Z",
            "b",
            &[("h.com", "/api", "Prefix", "a")],
        ) + &ing("other", "2024-01-01T00:00:00Z", &[("o.com", "/api", "Prefix", "a")])),
    );
    assert_eq!(target(&cfg, "h.com", "/api"), Some("a".into()));
    assert_eq!(
        target(&cfg, "h.com", "/else"),
        Some("b".into()),
        "an Ingress default serves its own hosts"
    );
    assert_eq!(target(&cfg, "o.com", "/else"), None, "...and no other host");

    // An Ingress with only a default backend is the catch-all; the older one wins.
    let cfg = build(
        &(with_default("catch-new", "2024-06-01T00:00:00Z", "d", &[])
            + &with_default("catch-old", "2024-01-01T00:00:00Z", "c", &[])
            + &ing("other", "2024-01-01T00:00:00Z", &[("o.com", "/api", "Prefix", "a")])),
    );
    assert_eq!(target(&cfg, "o.com", "/else"), Some("c".into()));
    assert_eq!(target(&cfg, "anything.test", "/"), Some("c".into()));
    assert_eq!(cfg.diagnostics.len(), 1);
    assert_eq!(cfg.diagnostics[0].reason, Reason::DefaultBackendConflict);
    assert_eq!(cfg.diagnostics[0].object.name, "catch-new");

    // The controller-wide default backend comes last.
    let s = snap(&(base() + &ing("other", "2024-01-01T00:00:00Z", &[("o.com", "/api", "Prefix", "a")])));
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
    let y = format!(
        "{CLASS}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  ports:
  - {{name: http, port: 80, targetPort: http-web}}
  - {{name: admin, port: 9000, targetPort: 9001}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}, {{name: admin, port: 9001}}]
endpoints:
- addresses: [10.1.0.1]
  conditions: {{ready: true}}
  targetRef: {{kind: Pod, name: web-1}}
- addresses: [10.1.0.2]
  conditions: {{ready: false}}
- addresses: [10.1.0.3]
- addresses: [10.1.0.4]
  conditions: {{ready: false, serving: true, terminating: true}}
- addresses: [10.1.0.5]
  conditions: {{ready: false, serving: false, terminating: true}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-2, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv6
ports: [{{name: http, port: 8080}}]
endpoints:
- addresses: ['fd00::1']
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: unrelated, namespace: other, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
- addresses: [10.9.9.9]
"
    ) + &ing(
        "by-number",
        "2024-01-01T00:00:00Z",
        &[("num.test", "/", "Prefix", "web")],
    ) + &with_default(
        "by-name",
        "2024-01-01T00:00:00Z",
        "web",
        &[("name.test", "/nothing", "Exact", "web")],
    )
    .replace("port: {name: http}", "port: {name: admin}");
    let cfg = compile(&snap(&y), &Options::default());
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
    let y = format!(
        "{CLASS}
---
apiVersion: v1
kind: Service
metadata: {{name: a, namespace: default}}
spec:
  publishNotReadyAddresses: true
  ports: [{{port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: a-1, namespace: default, labels: {{kubernetes.io/service-name: a}}}}
addressType: IPv4
ports: [{{port: 8080}}]
endpoints:
- addresses: [10.1.0.1]
  conditions: {{ready: false}}
"
    ) + &ing("i", "2024-01-01T00:00:00Z", &[("h.test", "/", "Prefix", "a")]);
    let cfg = compile(&snap(&y), &Options::default());
    assert_eq!(addrs(backend_of(&cfg, "h.test").ready()), ["10.1.0.1:8080"]);
}

#[test]
fn selectorless_service_and_legacy_endpoints() {
    let y = format!(
        "{CLASS}
---
apiVersion: v1
kind: Service
metadata: {{name: a, namespace: default}}
spec:
  ports: [{{name: web, port: 80}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: a, namespace: default}}
subsets:
- addresses: [{{ip: 10.2.0.1}}, {{ip: 10.2.0.2}}]
  notReadyAddresses: [{{ip: 10.2.0.3}}]
  ports: [{{name: web, port: 8443}}]
---
apiVersion: v1
kind: Service
metadata: {{name: b, namespace: default}}
spec:
  ports: [{{name: web, port: 80}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: b, namespace: default}}
subsets:
- addresses: [{{ip: 10.3.0.1}}]
  ports: [{{name: web, port: 1111}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: b-manual, namespace: default, labels: {{kubernetes.io/service-name: b}}}}
addressType: IPv4
ports: [{{name: web, port: 2222}}]
endpoints:
- addresses: [10.3.0.2]
"
    ) + &ing(
        "i",
        "2024-01-01T00:00:00Z",
        &[("a.test", "/", "Prefix", "a"), ("b.test", "/", "Prefix", "b")],
    );
    let cfg = compile(&snap(&y), &Options::default());
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
    let y = format!(
        "{CLASS}
---
apiVersion: v1
kind: Service
metadata: {{name: a, namespace: default}}
spec:
  type: ExternalName
  externalName: api.example.org
---
apiVersion: v1
kind: Service
metadata: {{name: b, namespace: default}}
spec:
  sessionAffinity: ClientIP
  ports: [{{port: 80}}]
"
    ) + &ing(
        "i",
        "2024-01-01T00:00:00Z",
        &[("a.test", "/", "Prefix", "a"), ("b.test", "/", "Prefix", "b")],
    );
    let cfg = compile(&snap(&y), &Options::default());
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
    let svc = |name: &str, timeout: &str| {
        format!(
            "
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  sessionAffinity: ClientIP
  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: {timeout}}}}}
  ports: [{{port: 80}}]
"
        )
    };
    let y = String::from(CLASS)
        + &svc("a", "2147483647")
        + &svc("b", "-5")
        + &svc("c", "86400")
        + &ing(
            "i",
            "2024-01-01T00:00:00Z",
            &[
                ("a.test", "/", "Prefix", "a"),
                ("b.test", "/", "Prefix", "b"),
                ("c.test", "/", "Prefix", "c"),
            ],
        );
    let cfg = compile(&snap(&y), &Options::default());
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
    let y = base()
        + &ing(
            "i",
            "2024-01-01T00:00:00Z",
            &[
                ("a.test", "/", "Prefix", "nope"),
                ("b.test", "/", "Prefix", "b"),
                ("c.test", "/", "Prefix", "b"),
            ],
        )
        .replacen(
            "{service: {name: b, port: {number: 80}}}",
            "{service: {name: b, port: {number: 81}}}",
            1,
        );
    let cfg = compile(&snap(&y), &Options::default());
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
    let cfg = build(&ing(
        "i",
        "2024-01-01T00:00:00Z",
        &[("a.test", "/", "Prefix", "a"), ("b.test", "/x", "Prefix", "a")],
    ));
    let a = backend_of(&cfg, "a.test");
    let b = cfg.backend(cfg.routes.route("b.test", "/x").unwrap()).unwrap().clone();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(cfg.backends.len(), 1);
}

// ---------------------------------------------------------------- TLS

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/");

fn tls_secret(name: &str, crt: &str, key: &str) -> String {
    let read = |f: &str| std::fs::read_to_string(format!("{FIX}{f}")).expect("fixture");
    let indent = |s: String| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}",
        indent(read(crt)),
        indent(read(key))
    )
}

fn tls_ingress(name: &str, created: &str, entries: &[(&[&str], Option<&str>)], hosts: &[&str]) -> String {
    let rules: Vec<_> = hosts.iter().map(|h| (*h, "/", "Prefix", "a")).collect();
    let mut y = ing(name, created, &rules);
    let mut tls = String::from("  tls:\n");
    for (hosts, secret) in entries {
        tls.push_str(&format!(
            "  - hosts: [{}]\n",
            hosts.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(", ")
        ));
        if let Some(s) = secret {
            tls.push_str(&format!("    secretName: {s}\n"));
        }
    }
    y = y.replace(
        "spec:\n  ingressClassName: portico\n",
        &format!("spec:\n  ingressClassName: portico\n{tls}"),
    );
    y
}

/// rcgen's subject for a simple self-signed certificate: the fallback in these tests.
const DEFAULT_CN: &str = "rcgen self signed cert";

fn fallback() -> Arc<rustls::sign::CertifiedKey> {
    let ck = rcgen::generate_simple_self_signed(vec!["fallback.invalid".to_string()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).unwrap();
    Arc::new(rustls::sign::CertifiedKey::new(vec![ck.cert.der().clone()], signer))
}

fn cert_cn(ck: &rustls::sign::CertifiedKey) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(ck.cert[0].as_ref()).unwrap();
    c.subject()
        .iter_common_name()
        .next()
        .map(|cn| cn.as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn tls_config(now: SystemTime) -> Config {
    let y = base()
        + &tls_secret("rsa1", "rsa.crt", "rsa-pkcs1.key")
        + &tls_secret("rsa8", "rsa.crt", "rsa-pkcs8.key")
        + &tls_secret("ec", "ec.crt", "ec-sec1.key")
        + &tls_secret("chain", "chain.crt", "leaf-pkcs8.key")
        + &tls_secret("mismatch", "rsa.crt", "ec-sec1.key")
        + "
---
apiVersion: v1
kind: Secret
metadata: {name: garbage, namespace: default}
type: kubernetes.io/tls
stringData: {tls.crt: 'not pem', tls.key: 'nope'}
" + &tls_ingress(
        "t",
        "2024-01-01T00:00:00Z",
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
    );
    compile(
        &snap(&y),
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
    let y = base()
        + &tls_secret("ec", "ec.crt", "ec-sec1.key")
        + &tls_secret("rsa", "rsa.crt", "rsa-pkcs8.key")
        + &tls_ingress(
            "old",
            "2024-01-01T00:00:00Z",
            &[(&["x.example.com"], Some("ec"))],
            &["x.example.com"],
        )
        + &tls_ingress("new", "2024-06-01T00:00:00Z", &[(&["x.example.com"], Some("rsa"))], &[])
        + &tls_ingress("optout", "2024-01-01T00:00:00Z", &[(&["o.test"], None)], &["o.test"]).replace(
            "namespace: default, creationTimestamp",
            "namespace: default, annotations: {nginx.ingress.kubernetes.io/ssl-redirect: \"false\"}, creationTimestamp",
        )
        + &tls_ingress("badvalue", "2024-01-01T00:00:00Z", &[(&["b.test"], None)], &["b.test"]).replace(
            "namespace: default, creationTimestamp",
            "namespace: default, annotations: {portico.dev/ssl-redirect: \"maybe\"}, creationTimestamp",
        );
    let cfg = compile(&snap(&y), &Options::default());
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
    let y = base() + &tls_secret("ec", "ec.crt", "ec-sec1.key");
    let s = snap(&y);
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
    let y = base()
        + &tls_secret("ec", "ec.crt", "ec-sec1.key")
        + &ing("good", "2024-01-01T00:00:00Z", &[("good.test", "/", "Prefix", "a")])
        + &ing(
            "dangling",
            "2024-01-01T00:00:00Z",
            &[("dangling.test", "/", "Prefix", "ghost")],
        )
        + &ing("conflict", "2024-06-01T00:00:00Z", &[("good.test", "/", "Prefix", "b")])
        + &tls_ingress(
            "badtls",
            "2024-01-01T00:00:00Z",
            &[(&["badtls.test"], Some("missing"))],
            &["badtls.test"],
        )
        + "
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: resource-backend, namespace: default}
spec:
  ingressClassName: portico
  rules:
  - host: res.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: icons}}
      - path: /weird
        pathType: Sometimes
        backend: {service: {name: a, port: {number: 80}}}
      - path: /ok
        pathType: Exact
        backend: {service: {name: a, port: {number: 80}}}
";
    let cfg = compile(&snap(&y), &Options::default());
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
    let y = base()
        + &ing(
            "x",
            "2024-01-01T00:00:00Z",
            &[("h.com", "/", "Prefix", "a"), ("h.com", "/b", "Prefix", "b")],
        )
        + &ing("y", "2024-01-01T00:00:00Z", &[("h.com", "/b", "Prefix", "c")]);
    let s = snap(&y);
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
        let y = base()
            + &tls_secret("ec", "ec.crt", "ec-sec1.key")
            + &tls_secret("rsa", "rsa.crt", "rsa-pkcs8.key")
            + &tls_secret("mismatch", "rsa.crt", "ec-sec1.key")
            + &tls_ingress(
                "t",
                "2024-01-01T00:00:00Z",
                &[
                    (&["a.example.com"], Some("ec")),
                    (&["foo.com"], Some("rsa")),
                    (&["m.test"], Some("mismatch")),
                ],
                &["a.example.com"],
            );
        let opts = Options {
            fallback_certificate: Some(fallback()),
            cert_cache: Some(cache.clone()),
            now,
            ..Options::default()
        };
        let cfg = compile(&snap(&y), &opts);
        // The memo changes only speed: the same Config as without it.
        let uncached = compile(
            &snap(&y),
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
    let before = base()
        + &ing(
            "i",
            "2024-01-01T00:00:00Z",
            &[("a.test", "/", "Prefix", "a"), ("b.test", "/", "Prefix", "b")],
        );
    let prev = compile(&snap(&before), &Options::default());
    // Service a's slice gains a pod.
    let after = before.replacen("- addresses: [10.0.0.1]", "- addresses: [10.0.0.1, 10.0.0.9]", 1);
    let s = snap(&after);
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
    let y = format!(
        "{CLASS}{}{}",
        ing("a", "2024-01-01T00:00:00Z", &[("a.test", "/", "Prefix", "svc-a")]),
        svc("svc-a", "10.0.0.1")
    );
    let (one, two) = (
        compile(&snap(&y), &Options::default()),
        compile(&snap(&y), &Options::default()),
    );
    assert!(one == two, "the same objects compile to equal Configs");
    let moved = y.replace("10.0.0.1", "10.0.0.2");
    assert!(
        one != compile(&snap(&moved), &Options::default()),
        "an endpoint change is a different Config"
    );
}
