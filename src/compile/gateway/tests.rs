//! Gateway API compile semantics, from manifests as users write them.

use super::*;
use crate::config::Config;
use crate::config::Target;
use crate::config::diagnostic::Reason;
use crate::fixture;
use crate::model::AnyObject;
use crate::source::files::parse_manifests;

/// GatewayClass `portico` (ours), Gateway `default/gw` with listeners `http` (port 80, no
/// hostname) and `web` (80, `*.example.com`... on another port), and Services a, b in
/// `default` and c in `other`.
const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: theirs}
spec: {controllerName: example.com/other}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default, generation: 3}
spec:
  gatewayClassName: portico
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - name: wild
    port: 8080
    protocol: HTTP
    hostname: "*.example.com"
    allowedRoutes: {namespaces: {from: All}}
"#;

fn services() -> Vec<AnyObject> {
    let mut out = Vec::new();
    for (ns, name, ip) in [
        ("default", "a", "10.0.0.1"),
        ("default", "b", "10.0.0.2"),
        ("other", "c", "10.0.0.3"),
    ] {
        out.push(fixture::service(ns, name).port("http", 80).into());
        out.push(
            fixture::slice(ns, &format!("{name}-1"), name)
                .port("http", 8080)
                .endpoint(ip)
                .ready(true)
                .into(),
        );
    }
    out
}

fn build(yaml: &str) -> Config {
    build_with(yaml, Vec::new())
}

fn build_with(yaml: &str, extra: Vec<AnyObject>) -> Config {
    build_opts(yaml, extra, &Options::default())
}

fn build_opts(yaml: &str, extra: Vec<AnyObject>, opts: &Options) -> Config {
    let mut objects = parse_manifests(BASE).expect("base parses");
    objects.extend(parse_manifests(yaml).expect("manifests parse"));
    objects.extend(services());
    objects.extend(extra);
    crate::compile::compile(&fixture::snapshot(objects), opts)
}

fn target(cfg: &Config, host: &str, path: &str) -> Option<String> {
    let r = routed(cfg, host, path)?;
    Some(cfg.backend(r).expect("backend").service.to_string())
}

/// The route a request gets through the first listener port (ascending) that routes it,
/// on Portico's own socket for that port (Ingresses first).
pub(super) fn routed<'c>(cfg: &'c Config, host: &str, path: &str) -> Option<&'c Arc<Route>> {
    routed_req(cfg, host, path, &crate::config::route::RouteRequest::default())
}

fn routed_req<'c>(
    cfg: &'c Config,
    host: &str,
    path: &str,
    req: &crate::config::route::RouteRequest<'_>,
) -> Option<&'c Arc<Route>> {
    use crate::config::listeners::Found;
    let points = cfg.gateway_listeners.as_ref()?;
    points.points.iter().find_map(|p| {
        match points.route_request(&cfg.routes, (p.target, true, p.tls), None, host, path, req) {
            Found::Route(r) => Some(r),
            _ => None,
        }
    })
}

fn route_report<'c>(cfg: &'c Config, name: &str) -> &'c RouteReport {
    cfg.gateway
        .routes
        .iter()
        .find(|r| r.key.name == name)
        .unwrap_or_else(|| panic!("no report for {name}: {:#?}", cfg.gateway))
}

/// `(type, status, reason)` of a parent's conditions.
fn conds(list: &[Condition]) -> Vec<(&'static str, bool, &'static str)> {
    list.iter().map(|c| (c.type_, c.status, c.reason)).collect()
}

fn listener<'c>(cfg: &'c Config, name: &str) -> &'c ListenerReport {
    cfg.gateway.gateways[0]
        .listeners
        .iter()
        .find(|l| l.name == name)
        .expect("listener")
}

fn http_route(name: &str, ns: &str, parent: &str, hostnames: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}, generation: 7}}\nspec:\n  parentRefs: [{parent}]\n  hostnames: {hostnames}\n  rules:\n{rules}\n"
    )
}

/// Route `default/r` on listener `http` of `gw`, for host x.test.
fn on_http(rules: &str) -> String {
    http_route("r", "default", "{name: gw, sectionName: http}", "[x.test]", rules)
}

#[test]
fn routes_of_our_gateway_are_served_with_exact_and_prefix_paths() {
    let rules = "  - matches: [{path: {type: Exact, value: /exact}}]\n    backendRefs: [{name: b, port: 80}]\n  - matches: [{path: {type: PathPrefix, value: /app}}]\n    backendRefs: [{name: a, port: 80}]\n";
    let cfg = build(&on_http(rules));
    assert_eq!(target(&cfg, "x.test", "/exact").as_deref(), Some("default/b"));
    assert_eq!(target(&cfg, "x.test", "/exact/more"), None);
    assert_eq!(target(&cfg, "x.test", "/app/y").as_deref(), Some("default/a"));
    assert_eq!(target(&cfg, "x.test", "/application"), None);
    assert_eq!(target(&cfg, "other.test", "/app"), None);

    let g = &cfg.gateway;
    assert_eq!(g.classes.len(), 1, "only our class is reported");
    assert_eq!(conds(&g.classes[0].conditions), [("Accepted", true, "Accepted")]);
    assert_eq!(g.gateways[0].generation, 3);
    assert_eq!(
        conds(&g.gateways[0].conditions),
        [("Accepted", true, "Accepted"), ("Programmed", true, "Programmed")]
    );
    let l = listener(&cfg, "http");
    assert_eq!(
        (l.attached_routes, l.supported_kinds.as_slice()),
        (1, &["HTTPRoute", "GRPCRoute"][..])
    );
    assert_eq!(
        listener(&cfg, "wild").attached_routes,
        0,
        "sectionName picks one listener"
    );
    let r = route_report(&cfg, "r");
    assert_eq!(r.generation, 7);
    assert_eq!(r.parents[0].parent_ref.section_name.as_deref(), Some("http"));
    assert_eq!(
        conds(&r.parents[0].conditions),
        [("Accepted", true, "Accepted"), ("ResolvedRefs", true, "ResolvedRefs")]
    );
    // Each route says where it comes from.
    let id = routed(&cfg, "x.test", "/app").unwrap().id;
    let o = cfg.gateway.origin(id).expect("origin");
    assert_eq!((o.object.name.as_str(), o.rule), ("r", 1));
    assert_eq!(o.via[0].listener, "http");
    assert!(!routed(&cfg, "x.test", "/app").unwrap().ssl_redirect);
}

#[test]
fn a_gateway_of_another_class_is_not_ours() {
    let yaml = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: their, namespace: default}\nspec:\n  gatewayClassName: theirs\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n"
        .to_string()
        + &http_route("r", "default", "{name: their}", "[x.test]", "  - backendRefs: [{name: a, port: 80}]");
    let cfg = build(&yaml);
    assert_eq!(target(&cfg, "x.test", "/"), None);
    assert!(
        cfg.gateway.routes.is_empty(),
        "no status for parents of other controllers"
    );
    assert_eq!(cfg.gateway.gateways.len(), 1, "only default/gw");
}

#[test]
fn rules_without_matches_take_every_path() {
    let cfg = build(&http_route(
        "r",
        "default",
        "{name: gw}",
        "[]",
        "  - backendRefs: [{name: a, port: 80}]",
    ));
    assert_eq!(target(&cfg, "any.host", "/whatever").as_deref(), Some("default/a"));
    // Without sectionName the route attaches to every listener that allows it.
    assert_eq!(listener(&cfg, "http").attached_routes, 1);
    assert_eq!(listener(&cfg, "wild").attached_routes, 1);
    assert_eq!(target(&cfg, "a.example.com", "/").as_deref(), Some("default/a"));
}

#[test]
fn allowed_routes_refuse_other_namespaces_unless_selected() {
    let rule = "  - backendRefs: [{name: c, port: 80}]";
    let cfg = build(&http_route(
        "r",
        "other",
        "{name: gw, namespace: default, sectionName: http}",
        "[x.test]",
        rule,
    ));
    assert_eq!(target(&cfg, "x.test", "/"), None);
    let r = route_report(&cfg, "r");
    assert_eq!(
        conds(&r.parents[0].conditions)[0],
        ("Accepted", false, "NotAllowedByListeners")
    );
    assert!(
        cfg.diagnostics
            .iter()
            .any(|d| d.reason == Reason::NotAccepted && d.object.kind == "HTTPRoute")
    );

    // A listener selecting namespaces by label takes the route once its namespace has it.
    let selector = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: sel, namespace: default}
spec:
  gatewayClassName: portico
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    hostname: sel.test
    allowedRoutes:
      namespaces:
        from: Selector
        selector: {matchLabels: {team: blue}}
"#;
    let route = http_route("r", "other", "{name: sel, namespace: default}", "[]", rule);
    let cfg = build(&format!("{selector}{route}"));
    assert_eq!(target(&cfg, "sel.test", "/"), None);
    let ns = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: other, labels: {team: blue}}\n";
    let cfg = build(&format!("{selector}{route}{ns}"));
    assert_eq!(target(&cfg, "sel.test", "/").as_deref(), Some("other/c"));
}

#[test]
fn listener_and_route_hostnames_intersect() {
    let rule = "  - backendRefs: [{name: a, port: 80}]";
    let cfg = build(&http_route(
        "r",
        "default",
        "{name: gw, sectionName: wild}",
        "[a.example.com, other.org]",
        rule,
    ));
    assert_eq!(target(&cfg, "a.example.com", "/").as_deref(), Some("default/a"));
    assert_eq!(target(&cfg, "other.org", "/"), None);

    let cfg = build(&http_route(
        "r",
        "default",
        "{name: gw, sectionName: wild}",
        "[other.org]",
        rule,
    ));
    let r = route_report(&cfg, "r");
    assert_eq!(
        conds(&r.parents[0].conditions)[0],
        ("Accepted", false, "NoMatchingListenerHostname")
    );
    assert_eq!(listener(&cfg, "wild").attached_routes, 0);

    assert_eq!(intersect(None, &["A.test".into()]), Some(vec!["a.test".into()]));
    assert_eq!(intersect(Some("a.test"), &[]), Some(vec!["a.test".into()]));
    assert_eq!(
        intersect(Some("*.example.com"), &["a.b.example.com".into()]),
        Some(vec!["a.b.example.com".into()])
    );
    assert_eq!(intersect(Some("*.example.com"), &["example.com".into()]), None);
    assert_eq!(
        intersect(Some("foo.example.com"), &["*.example.com".into()]),
        Some(vec!["foo.example.com".into()])
    );
    assert_eq!(
        intersect(Some("*.example.com"), &["*.a.example.com".into()]),
        Some(vec!["*.a.example.com".into()])
    );
    assert_eq!(
        intersect(Some("*.a.example.com"), &["*.example.com".into()]),
        Some(vec!["*.a.example.com".into()])
    );
    assert_eq!(intersect(Some("*.example.com"), &["*.example.org".into()]), None);
    assert_eq!(intersect(Some("badexample.com"), &["*.example.com".into()]), None);
}

#[test]
fn a_parent_ref_naming_no_listener_is_not_accepted() {
    let rule = "  - backendRefs: [{name: a, port: 80}]";
    for parent in ["{name: gw, sectionName: nope}", "{name: gw, port: 9999}"] {
        let cfg = build(&http_route("r", "default", parent, "[]", rule));
        let r = route_report(&cfg, "r");
        assert_eq!(
            conds(&r.parents[0].conditions)[0],
            ("Accepted", false, "NoMatchingParent"),
            "{parent}"
        );
    }
    let cfg = build(&http_route(
        "r",
        "default",
        "{name: gw, port: 8080}",
        "[a.example.com]",
        rule,
    ));
    assert!(conds(&route_report(&cfg, "r").parents[0].conditions)[0].1);
}

const GRANT: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
"#;

#[test]
fn a_cross_namespace_backend_needs_a_reference_grant() {
    let rule = "  - backendRefs: [{name: c, namespace: other, port: 80}]";
    let route = on_http(rule);
    let cfg = build(&route);
    let r = routed(&cfg, "x.test", "/").expect("the rule answers 500");
    // Its one choice is the invalid reference: every request gets the spec's 500.
    let w = r.weighted.as_ref().expect("weighted");
    assert_eq!(w.pick(0), crate::config::route::Pick::Refused);
    let b = cfg.backend(r).unwrap();
    assert!(matches!(&b.target, Target::Unavailable { .. }), "{b:?}");
    assert_ne!(
        b.service,
        ObjectKey::new("other", "c"),
        "no Service can have the refused name"
    );
    let rr = route_report(&cfg, "r");
    assert_eq!(
        conds(&rr.parents[0].conditions),
        [
            ("Accepted", true, "Accepted"),
            ("ResolvedRefs", false, "RefNotPermitted")
        ]
    );
    // An endpoints-only recompile keeps it refused.
    let again = crate::compile::recompile_endpoints(&fixture::snapshot(services()), &cfg, None);
    assert!(again.backends.iter().all(|b| b.service != ObjectKey::new("other", "c")));

    let cfg = build(&format!("{route}{GRANT}"));
    assert_eq!(target(&cfg, "x.test", "/").as_deref(), Some("other/c"));
    assert_eq!(
        conds(&route_report(&cfg, "r").parents[0].conditions)[1],
        ("ResolvedRefs", true, "ResolvedRefs")
    );

    // A grant for another kind, or from another namespace, allows nothing.
    let cfg = build(&format!(
        "{route}{}",
        GRANT.replace("kind: HTTPRoute", "kind: GRPCRoute")
    ));
    assert_eq!(
        conds(&route_report(&cfg, "r").parents[0].conditions)[1].2,
        "RefNotPermitted"
    );
    let cfg = build(&format!(
        "{route}{}",
        GRANT.replace("namespace: default", "namespace: elsewhere")
    ));
    assert_eq!(
        conds(&route_report(&cfg, "r").parents[0].conditions)[1].2,
        "RefNotPermitted"
    );
}

#[test]
fn unknown_services_and_kinds_are_reported_and_the_rest_serves() {
    let rules = "  - matches: [{path: {value: /gone}}]\n    backendRefs: [{name: gone, port: 80}]\n  - matches: [{path: {value: /kind}}]\n    backendRefs: [{group: example.com, kind: Bucket, name: x}]\n  - backendRefs: [{name: a, port: 80}]\n";
    let cfg = build(&on_http(rules));
    assert_eq!(target(&cfg, "x.test", "/ok").as_deref(), Some("default/a"));
    for path in ["/gone", "/kind"] {
        let r = routed(&cfg, "x.test", path).unwrap();
        assert!(
            matches!(cfg.backend(r).unwrap().target, Target::Unavailable { .. }),
            "{path}"
        );
    }
    // The first problem is the condition's reason.
    let rr = route_report(&cfg, "r");
    assert_eq!(
        conds(&rr.parents[0].conditions)[1],
        ("ResolvedRefs", false, "BackendNotFound")
    );
    assert!(cfg.diagnostics.iter().any(|d| d.reason == Reason::UnsupportedBackend));

    let cfg = build(&on_http(
        "  - backendRefs: [{group: example.com, kind: Bucket, name: x}]",
    ));
    assert_eq!(
        conds(&route_report(&cfg, "r").parents[0].conditions)[1].2,
        "InvalidKind"
    );
}

#[test]
fn conditions_regex_paths_weights_and_filters_are_served() {
    let rules = r#"  - matches: [{path: {value: /h}, headers: [{name: x, value: y}]}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {type: RegularExpression, value: /r.*}}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {value: /w}}]
    backendRefs: [{name: a, port: 80, weight: 1}, {name: b, port: 80, weight: 3}]
  - matches: [{path: {value: /f}}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {value: /m}, method: GET}, {path: {value: /q}, queryParams: [{name: v, value: "1"}]}]
    backendRefs: [{name: b, port: 80}]
  - backendRefs: [{name: a, port: 80}]
"#;
    let cfg = build(&on_http(rules));
    let served = |path: &str, req: &str| {
        let req = http::Request::builder()
            .method("GET")
            .uri(format!("http://x.test{path}?{req}"))
            .header("x", "y")
            .body(())
            .unwrap();
        let r = routed_req(&cfg, "x.test", path, &crate::config::route::RouteRequest::of(&req)).unwrap();
        cfg.backend(r).unwrap().service.to_string()
    };
    // Without their conditions, requests fall through to the catch-all rule.
    for path in ["/h", "/m", "/q"] {
        assert_eq!(target(&cfg, "x.test", path).as_deref(), Some("default/a"), "{path}");
        assert_eq!(served(path, "v=1"), "default/b", "{path}");
    }
    assert_eq!(target(&cfg, "x.test", "/r1").as_deref(), Some("default/b"));
    let f = routed(&cfg, "x.test", "/f").unwrap();
    assert_eq!(f.service.to_string(), "default/b");
    assert!(f.policy.filters.is_some());
    let w = routed(&cfg, "x.test", "/w").unwrap();
    let choices: Vec<(u32, String)> = w
        .weighted
        .as_ref()
        .unwrap()
        .choices
        .iter()
        .map(|c| (c.weight, c.route.as_ref().unwrap().service.to_string()))
        .collect();
    assert_eq!(choices, [(1, "default/a".into()), (3, "default/b".into())]);
    // The choices' routes are listed with their ids, not indexed.
    for c in &w.weighted.as_ref().unwrap().choices {
        let r = c.route.as_ref().unwrap();
        assert!(Arc::ptr_eq(&cfg.route_list[r.id], r));
        assert!(r.weighted.is_none());
    }
    assert!(
        !cfg.diagnostics.iter().any(|d| d.reason == Reason::UnsupportedFeature),
        "{:#?}",
        cfg.diagnostics
    );
}

#[test]
fn the_same_match_twice_is_the_older_routes_and_other_conditions_are_no_conflict() {
    let rules = r#"  - matches: [{path: {value: /p}, headers: [{name: x, value: "1"}]}, {path: {value: /p}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /p}, headers: [{name: x, value: "1"}]}, {path: {value: /p}, headers: [{name: x, value: "2"}]}]
    backendRefs: [{name: b, port: 80}]
"#;
    let cfg = build(&on_http(rules));
    let to = |x: &str| {
        let req = http::Request::builder().uri("/p").header("x", x).body(()).unwrap();
        let r = routed_req(&cfg, "x.test", "/p", &crate::config::route::RouteRequest::of(&req)).unwrap();
        r.service.to_string()
    };
    assert_eq!(to("1"), "default/a", "the first rule's identical match wins");
    assert_eq!(to("2"), "default/b", "a header match ranks before the bare path");
    assert_eq!(to("3"), "default/a");
}

#[test]
fn ingresses_come_first_on_a_shared_host_and_path() {
    let ingress: AnyObject = fixture::ingress("default", "i")
        .class("portico")
        .rule("x.test", "/", fixture::Prefix, "b", 80)
        .into();
    let mut extra = vec![fixture::portico_class().into(), ingress];
    extra.extend(services());
    let cfg = build_with(&on_http("  - backendRefs: [{name: a, port: 80}]"), extra);
    assert_eq!(target(&cfg, "x.test", "/").as_deref(), Some("default/b"));
    assert!(
        cfg.diagnostics
            .iter()
            .any(|d| d.reason == Reason::PathConflict && d.object.kind == "HTTPRoute"),
        "{:#?}",
        cfg.diagnostics
    );
}

fn tls_gateway(listeners: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: tls, namespace: default}}\nspec:\n  gatewayClassName: portico\n  listeners:\n{listeners}\n"
    )
}

use crate::compile::tests::cert_cn as cn;

#[test]
fn https_listeners_take_their_certificates_by_sni() {
    let listeners = r#"  - name: rsa
    port: 443
    protocol: HTTPS
    hostname: rsa.example.com
    tls: {certificateRefs: [{name: rsa}]}
  - name: ec
    port: 443
    protocol: HTTPS
    hostname: "*.example.com"
    tls: {certificateRefs: [{kind: Secret, group: "", name: ec}]}
  - name: broken
    port: 443
    protocol: HTTPS
    hostname: broken.test
    tls: {certificateRefs: [{name: missing}]}"#;
    let route = http_route(
        "r",
        "default",
        "{name: tls}",
        "[rsa.example.com, b.example.com, broken.test]",
        "  - backendRefs: [{name: a, port: 80}]",
    );
    let secrets = vec![
        fixture::tls_secret_files("default", "rsa", "rsa.crt", "rsa-pkcs1.key").into(),
        fixture::tls_secret_files("default", "ec", "ec.crt", "ec-sec1.key").into(),
    ];
    let cfg = build_with(&format!("{}{route}", tls_gateway(listeners)), secrets);
    assert_eq!(
        cn(&cfg.certs.resolve(Some("rsa.example.com")).unwrap()),
        "rsa.example.com"
    );
    assert_eq!(cn(&cfg.certs.resolve(Some("b.example.com")).unwrap()), "*.example.com");
    // Served over HTTPS only: plain HTTP is redirected.
    let r = routed(&cfg, "rsa.example.com", "/").unwrap();
    assert!(r.ssl_redirect);
    assert_eq!(cfg.backend(r).unwrap().service, ObjectKey::new("default", "a"));
    assert_eq!(
        target(&cfg, "broken.test", "/"),
        None,
        "the broken listener serves nothing"
    );

    let tls = cfg.gateway.gateways.iter().find(|g| g.key.name == "tls").unwrap();
    let broken = tls.listeners.iter().find(|l| l.name == "broken").unwrap();
    // Attached and counted, as the spec counts, though not served.
    assert_eq!(broken.attached_routes, 1);
    assert_eq!(
        conds(&broken.conditions),
        [
            ("Accepted", true, "Accepted"),
            ("Programmed", false, "Invalid"),
            ("ResolvedRefs", false, "InvalidCertificateRef"),
            ("Conflicted", false, "NoConflicts"),
        ]
    );
    assert_eq!(conds(&tls.conditions)[0], ("Accepted", true, "ListenersNotValid"));
    assert!(
        cfg.diagnostics
            .iter()
            .any(|d| d.object.kind == "Gateway" && d.message.contains("broken"))
    );
}

#[test]
fn a_certificate_in_another_namespace_needs_a_grant() {
    let listeners =
        "  - name: s\n    port: 443\n    protocol: HTTPS\n    tls: {certificateRefs: [{name: rsa, namespace: certs}]}";
    let secret: Vec<AnyObject> = vec![fixture::tls_secret_files("certs", "rsa", "rsa.crt", "rsa-pkcs1.key").into()];
    let cfg = build_with(&tls_gateway(listeners), secret.clone());
    let tls = cfg.gateway.gateways.iter().find(|g| g.key.name == "tls").unwrap();
    assert_eq!(
        conds(&tls.listeners[0].conditions)[2],
        ("ResolvedRefs", false, "RefNotPermitted")
    );

    let grant = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: certs}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: default}]\n  to: [{group: \"\", kind: Secret, name: rsa}]\n";
    let cfg = build_with(&format!("{}{grant}", tls_gateway(listeners)), secret);
    let tls = cfg.gateway.gateways.iter().find(|g| g.key.name == "tls").unwrap();
    assert_eq!(
        conds(&tls.listeners[0].conditions)[2],
        ("ResolvedRefs", true, "ResolvedRefs")
    );
    // No hostname: its certificate is the default one.
    assert_eq!(
        cn(&cfg.certs.resolve(Some("anything.test")).unwrap()),
        "rsa.example.com"
    );
}

#[test]
fn listener_problems_are_reported_per_listener() {
    let listeners = r#"  - {name: a, port: 80, protocol: HTTP, hostname: same.test}
  - {name: b, port: 80, protocol: HTTP, hostname: same.test}
  - {name: c, port: 81, protocol: UDP}
  - name: d
    port: 82
    protocol: HTTP
    allowedRoutes: {kinds: [{kind: TCPRoute}, {kind: HTTPRoute}]}"#;
    let cfg = build(&tls_gateway(listeners));
    let gw = cfg.gateway.gateways.iter().find(|g| g.key.name == "tls").unwrap();
    let get = |n: &str| gw.listeners.iter().find(|l| l.name == n).unwrap();
    assert_eq!(conds(&get("a").conditions)[3], ("Conflicted", true, "HostnameConflict"));
    assert_eq!(conds(&get("b").conditions)[1], ("Programmed", false, "Invalid"));
    assert_eq!(
        conds(&get("c").conditions)[0],
        ("Accepted", false, "UnsupportedProtocol")
    );
    assert!(get("c").supported_kinds.is_empty());
    assert_eq!(
        conds(&get("d").conditions)[2],
        ("ResolvedRefs", false, "InvalidRouteKinds")
    );
    assert_eq!(get("d").supported_kinds, ["HTTPRoute"]);
    assert_eq!(conds(&gw.conditions)[0], ("Accepted", true, "ListenersNotValid"));
}

#[test]
fn label_selectors() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    let labels: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
    let expr = |op: &str, values: &[&str]| LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "a".into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }]),
        match_labels: None,
    };
    assert!(selects(&expr("In", &["1", "2"]), &labels));
    assert!(!selects(&expr("NotIn", &["1"]), &labels));
    assert!(selects(&expr("Exists", &[]), &labels));
    assert!(!selects(&expr("DoesNotExist", &[]), &labels));
    assert!(
        !selects(&expr("Bogus", &[]), &labels),
        "an unknown operator selects nothing"
    );
    assert!(
        selects(&LabelSelector::default(), &labels),
        "the empty selector selects all"
    );
}

/// GRPCRoute `default/g` on listener `http` for `grpc.test`, with `rules`.
fn grpc_route(rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: g, namespace: default}}\nspec:\n  parentRefs: [{{name: gw, sectionName: http}}]\n  hostnames: [grpc.test]\n  rules:\n{rules}"
    )
}

#[test]
fn grpc_routes_become_paths_sent_as_http2() {
    let yaml = &grpc_route(
        r#"  - matches: [{method: {service: echo.Echo, method: Ping}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{method: {service: health.Health}}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{method: {method: Anything}}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{method: {service: "bad/name", method: X}}]
    backendRefs: [{name: b, port: 80}]
"#,
    );
    let cfg = build(yaml);
    assert_eq!(
        target(&cfg, "grpc.test", "/echo.Echo/Ping").as_deref(),
        Some("default/a")
    );
    assert_eq!(target(&cfg, "grpc.test", "/echo.Echo/Other"), None);
    assert_eq!(
        target(&cfg, "grpc.test", "/health.Health/Check").as_deref(),
        Some("default/b")
    );
    let r = routed(&cfg, "grpc.test", "/echo.Echo/Ping").unwrap();
    assert_eq!(r.policy.backend_protocol, Some(crate::config::Protocol::H2c));
    let rr = route_report(&cfg, "g");
    assert_eq!(rr.kind, RouteKind::GRPCRoute);
    assert_eq!(conds(&rr.parents[0].conditions)[0], ("Accepted", true, "Accepted"));
    let left_out: Vec<_> = cfg
        .diagnostics
        .iter()
        .filter(|d| d.object.kind == "GRPCRoute" && d.reason == Reason::UnsupportedFeature)
        .collect();
    assert_eq!(left_out.len(), 1, "{left_out:#?}");
    // A method of any service.
    assert_eq!(
        target(&cfg, "grpc.test", "/any.Svc/Anything").as_deref(),
        Some("default/b")
    );
    // A listener that takes HTTPRoutes only refuses it.
    let only_http = BASE.replace(
        "  - {name: http, port: 80, protocol: HTTP}",
        "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}",
    );
    let mut objects = parse_manifests(&only_http).unwrap();
    objects.extend(parse_manifests(yaml).unwrap());
    objects.extend(services());
    let cfg = crate::compile::compile(&fixture::snapshot(objects), &Options::default());
    assert_eq!(target(&cfg, "grpc.test", "/echo.Echo/Ping"), None);
    let rr = route_report(&cfg, "g");
    assert_eq!(
        conds(&rr.parents[0].conditions)[0],
        ("Accepted", false, "NotAllowedByListeners")
    );
}

#[test]
fn grpc_rules_take_the_grpc_filters_only() {
    let yaml = &grpc_route(
        r#"  - matches: [{method: {service: a.A}}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: "1"}]}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{method: {service: b.B}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: elsewhere.test}}]
    backendRefs: [{name: b, port: 80}]
"#,
    );
    let cfg = build(yaml);
    let r = routed(&cfg, "grpc.test", "/a.A/Call").unwrap();
    assert!(r.policy.filters.as_ref().unwrap().request_headers.is_some());
    assert_eq!(r.policy.backend_protocol, Some(crate::config::Protocol::H2c));
    assert_eq!(target(&cfg, "grpc.test", "/b.B/Call"), None);
    assert_eq!(
        conds(&route_report(&cfg, "g").parents[0].conditions)[0],
        ("Accepted", false, "UnsupportedValue")
    );
}

#[test]
fn rules_beyond_the_crd_limits_are_left_out() {
    let refs = vec!["{name: a, port: 80}"; 17].join(", ");
    let rules = format!(
        "  - matches: [{{path: {{value: /many}}}}]\n    backendRefs: [{refs}]\n  - matches: [{{path: {{value: /ok}}}}]\n    backendRefs: [{{name: b, port: 80}}]\n"
    );
    let cfg = build(&on_http(&rules));
    assert_eq!(target(&cfg, "x.test", "/many"), None);
    assert_eq!(target(&cfg, "x.test", "/ok").as_deref(), Some("default/b"));
    assert!(
        cfg.diagnostics
            .iter()
            .any(|d| d.reason == Reason::UnsupportedFeature && d.message.contains("at most 16 backendRefs")),
        "{:#?}",
        cfg.diagnostics
    );
}

/// Gateway `two` with an HTTP listener on port 80 like `gw`'s, and a route for `/` on each:
/// `gw`'s (older) to Service a, `two`'s to b.
const TWO: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: two, namespace: default}
spec:
  gatewayClassName: portico
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ra, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: a, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: rb, namespace: default, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  parentRefs: [{name: two}]
  rules: [{backendRefs: [{name: b, port: 80}]}]
"#;

/// The Service a request for `host` `/` on a Gateway socket for `target` goes to.
fn on_socket(cfg: &Config, target: u16, host: &str) -> Option<String> {
    use crate::config::listeners::Found;
    let points = cfg.gateway_listeners.as_ref()?;
    let req = crate::config::route::RouteRequest::default();
    match points.route_request(&cfg.routes, (target, false, false), None, host, "/", &req) {
        Found::Route(r) => Some(cfg.backend(r).expect("backend").service.to_string()),
        _ => None,
    }
}

fn targets(cfg: &Config, gateway: &str) -> Vec<(u16, u16)> {
    let g = cfg.gateway.gateways.iter().find(|g| g.key.name == gateway).unwrap();
    g.ports.iter().map(|p| (p.port, p.target)).collect()
}

#[test]
fn gateways_with_addresses_of_their_own_each_serve_their_routes_on_the_same_port() {
    let opts = Options {
        gateway_services: true,
        ..Options::default()
    };
    let cfg = build_opts(TWO, Vec::new(), &opts);
    let (gw, two) = (targets(&cfg, "gw"), targets(&cfg, "two"));
    assert_eq!((gw[0].0, gw[1].0, two[0].0), (80, 8080, 80));
    assert_ne!(gw[0].1, two[0].1);
    assert_eq!(on_socket(&cfg, gw[0].1, "x.test").as_deref(), Some("default/a"));
    assert_eq!(on_socket(&cfg, two[0].1, "x.test").as_deref(), Some("default/b"));
    // Route `ra` has no sectionName: it is on listener `wild` too, which takes *.example.com.
    assert_eq!(on_socket(&cfg, gw[1].1, "a.example.com").as_deref(), Some("default/a"));
    assert_eq!(on_socket(&cfg, gw[1].1, "x.test"), None);
}

#[test]
fn gateways_sharing_portico_s_address_share_a_port_s_listeners_oldest_route_first() {
    let cfg = build(TWO);
    let points = cfg.gateway_listeners.as_ref().unwrap();
    let ports: Vec<(u16, bool, usize)> = points
        .points
        .iter()
        .map(|p| (p.target, p.tls, p.listeners.len()))
        .collect();
    assert_eq!(ports, [(80, false, 1), (8080, false, 1)]);
    assert_eq!(points.points[0].listeners[0].via.len(), 2);
    assert_eq!(on_socket(&cfg, 80, "x.test").as_deref(), Some("default/a"));
}
