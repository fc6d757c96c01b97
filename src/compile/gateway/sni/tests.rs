//! The SNI gate compiled from the Gateways of the conformance test TLSRouteHostnameIntersection.

use crate::compile::{Options, compile};
use crate::config::{Config, SniStart};
use crate::fixture;
use crate::source::files::parse_manifests;

/// A Gateway's name, its listener's hostname, and its routes' (hostname, Service).
type Gw = (
    &'static str,
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
);

/// Four Gateways, all on port 443 in mode Passthrough, listener hostnames `abc.example.com`,
/// `*.example.com`, `*.com` and none, each with the TLSRoutes the conformance test
/// TLSRouteHostnameIntersection gives it (`one` → Service one, `two` → Service two).
fn config(per_gateway: bool) -> Config {
    let mut yaml = String::from(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: portico}\nspec: {controllerName: portico.dev/gateway-controller}\n",
    );
    let gateways: [Gw; 4] = [
        ("x1", Some("abc.example.com"), &[("'*.example.com'", "one")]),
        (
            "x2",
            Some("'*.example.com'"),
            &[("abc.example.com", "one"), ("'*.com'", "two")],
        ),
        (
            "x3",
            Some("'*.com'"),
            &[("abc.example.com", "one"), ("'*.example.com'", "two")],
        ),
        ("x4", None, &[("abc.example.com", "one"), ("'*.com'", "two")]),
    ];
    for (gw, hostname, routes) in gateways {
        let host = hostname.map(|h| format!(", hostname: {h}")).unwrap_or_default();
        yaml += &format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {gw}, namespace: default}}\nspec:\n  gatewayClassName: portico\n  listeners:\n  - {{name: l, port: 443, protocol: TLS{host}, tls: {{mode: Passthrough}}}}\n"
        );
        for (i, (name, service)) in routes.iter().enumerate() {
            yaml += &format!(
                "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {gw}-{i}, namespace: default}}\nspec:\n  parentRefs: [{{name: {gw}}}]\n  hostnames: [{name}]\n  rules: [{{backendRefs: [{{name: {service}, port: 443}}]}}]\n"
            );
        }
    }
    let mut objects = parse_manifests(&yaml).unwrap();
    for (name, ip) in [("one", "10.0.0.1"), ("two", "10.0.0.2")] {
        objects.push(fixture::service("default", name).port("https", 443).into());
        let slice = fixture::slice("default", &format!("{name}-1"), name);
        objects.push(slice.port("https", 8443).endpoint(ip).ready(true).into());
    }
    let opts = Options {
        gateway_services: per_gateway,
        ..Options::default()
    };
    compile(&fixture::snapshot(objects), &opts)
}

fn start(cfg: &Config, port: u16, sni: &str) -> String {
    match cfg.sni_start(port, Some(sni)) {
        SniStart::Splice(b) => b.service.name.clone(),
        SniStart::Refuse => "refused".into(),
        SniStart::Terminate => "terminated".into(),
    }
}

#[test]
fn each_gateway_target_passes_only_its_routes_and_refuses_the_rest() {
    let cfg = config(true);
    let target = |gw: &str| {
        let g = cfg.gateway.gateways.iter().find(|g| g.key.name == gw).unwrap();
        assert_eq!(g.ports.len(), 1);
        g.ports[0].target
    };
    for (gw, unmatched) in [
        ("x1", "non.matching.com"),
        ("x2", "non.matching.com"),
        ("x3", "non.matching.com"),
        ("x4", "non.matching.org"),
    ] {
        let t = target(gw);
        assert_eq!(start(&cfg, t, "abc.example.com"), "one", "{gw}");
        assert_eq!(start(&cfg, t, unmatched), "refused", "{gw}");
        assert!(matches!(cfg.sni_start(t, None), SniStart::Refuse), "{gw}");
    }
    // Only the intersection of route and listener hostnames is served.
    assert_eq!(start(&cfg, target("x1"), "other.example.com"), "refused");
    for gw in ["x2", "x3", "x4"] {
        assert_eq!(start(&cfg, target(gw), "other.example.com"), "two", "{gw}");
    }
    // The shared port serves none of them: the Ingress default certificate answers.
    assert!(cfg.passthrough.is_empty());
    assert!(matches!(
        cfg.sni_start(443, Some("abc.example.com")),
        SniStart::Terminate
    ));
}

#[test]
fn on_the_shared_port_listener_hostnames_claim_their_names() {
    let cfg = config(false);
    // x4's `*.com` (no listener hostname) takes non.matching.com on the shared port.
    assert_eq!(start(&cfg, 443, "abc.example.com"), "one");
    assert_eq!(start(&cfg, 443, "non.matching.com"), "two");
    // No route under `*.org`, no claim: terminated with the default certificate.
    assert_eq!(start(&cfg, 443, "non.matching.org"), "terminated");
    assert!(matches!(cfg.sni_start(443, None), SniStart::Terminate));
    let claims: std::collections::BTreeSet<&str> = cfg.sni_gate.claims.iter().map(|s| s.as_str()).collect();
    assert_eq!(claims, ["*.com", "*.example.com", "abc.example.com"].into());
}
