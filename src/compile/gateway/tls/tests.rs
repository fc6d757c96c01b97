//! TLSRoute compile semantics and the SNI lookup, from manifests as users write them.

use crate::compile::{Options, compile};
use crate::config::Config;
use crate::fixture;
use crate::model::AnyObject;
use crate::source::files::parse_manifests;

/// Our GatewayClass; Gateway `default/gw` with a TLS Passthrough listener `any` (no
/// hostname) and `term` (TLS Terminate); Gateway `mixed` with TLS and HTTPS listeners on one
/// port; Services a and b.
const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: portico
  listeners:
  - {name: any, port: 443, protocol: TLS, tls: {mode: Passthrough}}
  - {name: term, port: 9443, protocol: TLS, hostname: t.example, tls: {certificateRefs: [{name: x}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: mixed, namespace: default}
spec:
  gatewayClassName: portico
  listeners:
  - {name: pass, port: 443, protocol: TLS, hostname: a.mixed, tls: {mode: Passthrough}}
  - {name: web, port: 443, protocol: HTTPS, hostname: b.mixed, tls: {certificateRefs: [{name: x}]}}
  - {name: same, port: 443, protocol: HTTPS, hostname: a.mixed, tls: {certificateRefs: [{name: x}]}}
"#;

fn route(name: &str, created: &str, hostnames: &str, service: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: default, creationTimestamp: '{created}'}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: {hostnames}\n  rules: [{{backendRefs: [{{name: {service}, port: 80}}]}}]\n"
    )
}

fn build(yaml: &str, extra: Vec<AnyObject>, opts: &Options) -> Config {
    let mut objects = parse_manifests(BASE).unwrap();
    objects.extend(parse_manifests(yaml).unwrap());
    for (name, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2")] {
        objects.push(fixture::service("default", name).port("http", 80).into());
        let slice = fixture::slice("default", &format!("{name}-1"), name);
        objects.push(slice.port("http", 8443).endpoint(ip).ready(true).into());
    }
    objects.extend(extra);
    compile(&fixture::snapshot(objects), opts)
}

fn to(cfg: &Config, sni: Option<&str>) -> Option<String> {
    cfg.passthrough_backend(sni).map(|b| b.service.name.clone())
}

fn messages(cfg: &Config, kind: &str, name: &str) -> Vec<String> {
    let of = |d: &&crate::config::diagnostic::Diagnostic| d.object.kind == kind && d.object.name == name;
    cfg.diagnostics.iter().filter(of).map(|d| d.message.clone()).collect()
}

/// Exact names, then the longest wildcard (any number of labels), then a route without
/// hostnames on a listener without one (every name, and a ClientHello without SNI); an
/// older route keeps a host a newer one also names.
#[test]
fn sni_lookup_and_precedence() {
    let yaml = route("exact", "2024-01-01T00:00:00Z", "[x.deep.example]", "a")
        + &route("deep", "2024-01-01T00:00:00Z", "['*.deep.example']", "b")
        + &route("shallow", "2024-01-01T00:00:00Z", "['*.example']", "a")
        + &route("young", "2024-06-01T00:00:00Z", "['*.deep.example', y.example]", "a")
        + &route("all", "2024-01-01T00:00:00Z", "[]", "b")
        + &route("bad", "2024-01-01T00:00:00Z", "[bad_name.example]", "a");
    let cfg = build(&yaml, Vec::new(), &Options::default());
    assert_eq!(to(&cfg, Some("x.deep.example")).as_deref(), Some("a"));
    assert_eq!(to(&cfg, Some("a.b.deep.example")).as_deref(), Some("b"));
    assert_eq!(to(&cfg, Some("deep.example")).as_deref(), Some("a"));
    assert_eq!(to(&cfg, Some("y.example")).as_deref(), Some("a"));
    assert_eq!(to(&cfg, Some("elsewhere.test")).as_deref(), Some("b"));
    assert_eq!(to(&cfg, None).as_deref(), Some("b"));
    let young = messages(&cfg, "TLSRoute", "young");
    assert!(
        young
            .iter()
            .any(|m| m.contains("*.deep.example") && m.contains("default/deep")),
        "{young:?}"
    );
    // Accepted, with the passthrough listener's count; the Terminate listener is not.
    let gw = &cfg.gateway.gateways[0];
    assert_eq!(gw.listeners[0].attached_routes, 6);
    // A hostname that is not a DNS name is not passed through, with a Warning.
    assert!(!cfg.passthrough.contains_key("bad_name.example"));
    let bad = messages(&cfg, "TLSRoute", "bad");
    assert!(bad.iter().any(|m| m.contains("not a valid DNS name")), "{bad:?}");
    assert_eq!(gw.listeners[0].supported_kinds, ["TLSRoute"]);
    assert_eq!(
        (
            gw.listeners[1].conditions[0].status,
            gw.listeners[1].conditions[0].reason
        ),
        (false, "UnsupportedValue")
    );
    assert!(gw.listeners[1].supported_kinds.is_empty());
    // TLS and HTTPS share a port by SNI; not the same hostname.
    let mixed = &cfg.gateway.gateways[1];
    let conflicted: Vec<(&str, &str)> = mixed
        .listeners
        .iter()
        .map(|l| {
            let c = l.conditions.iter().find(|c| c.type_ == "Conflicted").unwrap();
            (l.name.as_str(), c.reason)
        })
        .collect();
    assert_eq!(
        conflicted,
        [
            ("pass", "HostnameConflict"),
            ("web", "NoConflicts"),
            ("same", "HostnameConflict")
        ]
    );
    // The same compile again gives an equal Config (the table is plain data).
    assert_eq!(cfg, build(&yaml, Vec::new(), &Options::default()));
}

/// backendRefs: several are not served (a Warning); weight 0 and a refused kind are passed
/// through to nothing (the connection is closed), the kind with `ResolvedRefs: False`.
#[test]
fn backend_refs() {
    let refs = |name: &str, refs: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [{name}.example]\n  rules: [{{backendRefs: {refs}}}]\n"
        )
    };
    let yaml = refs("two", "[{name: a, port: 80}, {name: b, port: 80}]")
        + &refs("zero", "[{name: a, port: 80, weight: 0}]")
        + &refs("kind", "[{group: example.com, kind: Thing, name: a, port: 80}]");
    let cfg = build(&yaml, Vec::new(), &Options::default());
    assert!(!cfg.passthrough.contains_key("two.example"));
    let two = messages(&cfg, "TLSRoute", "two");
    assert!(two.iter().any(|m| m.contains("several backendRefs")), "{two:?}");
    for host in ["zero.example", "kind.example"] {
        let b = cfg.passthrough_backend(Some(host)).expect(host);
        assert!(b.ready().is_empty(), "{host}: {b:?}");
    }
    let report = |name: &str| {
        let r = cfg.gateway.routes.iter().find(|r| r.key.name == name).unwrap();
        let c = &r.parents[0].conditions[1];
        (c.type_, c.status, c.reason)
    };
    assert_eq!(report("zero"), ("ResolvedRefs", true, "ResolvedRefs"));
    assert_eq!(report("kind"), ("ResolvedRefs", false, "InvalidKind"));
}

/// An `ssl-passthrough` Ingress keeps a host a TLSRoute also names; without the flag the
/// Ingress passes nothing through and the TLSRoute gets the host.
#[test]
fn ingresses_come_first() {
    let ing: AnyObject = fixture::ingress("default", "ing")
        .class("portico")
        .annotation("nginx.ingress.kubernetes.io/ssl-passthrough", "true")
        .rule("both.example", "/", crate::fixture::Prefix, "a", 80)
        .into();
    let extra = vec![fixture::portico_class().into(), ing];
    let yaml = route("r", "2024-01-01T00:00:00Z", "[both.example]", "b");
    let on = Options {
        enable_ssl_passthrough: true,
        ..Options::default()
    };
    let cfg = build(&yaml, extra.clone(), &on);
    assert_eq!(to(&cfg, Some("both.example")).as_deref(), Some("a"));
    let msgs = messages(&cfg, "TLSRoute", "r");
    assert!(msgs.iter().any(|m| m.contains("Ingresses come first")), "{msgs:?}");
    let off = build(&yaml, extra, &Options::default());
    assert_eq!(to(&off, Some("both.example")).as_deref(), Some("b"));
    assert!(messages(&off, "TLSRoute", "r").is_empty());
}
