//! Frontend client-certificate validation on Gateway listeners: the spec's listener
//! conditions for bad references, and no listener served without the validation it asks for.

use crate::compile::{Options, compile};
use crate::config::Config;
use crate::fixture;
use crate::source::files::parse_manifests;

use super::INSECURE_MODE;

/// Gateway `gw`: listeners `http` (80), `https` (443, default validation with `default_ref`),
/// `other` (8443, per-port validation with `port_ref`); the certificate Secret `cert`, and
/// the ConfigMap `ca` with a CA certificate.
fn config(default_ref: &str, port_ref: &str) -> Config {
    config_with(default_ref, port_ref, "AllowValidOnly", false)
}

fn config_with(default_ref: &str, port_ref: &str, mode: &str, services: bool) -> Config {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portico}}
spec: {{controllerName: portico.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: portico
  tls:
    frontend:
      default: {{validation: {{caCertificateRefs: [{default_ref}]}}}}
      perPort: [{{port: 8443, tls: {{validation: {{mode: {mode}, caCertificateRefs: [{port_ref}]}}}}}}]
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
  - {{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: other, port: 8443, protocol: HTTPS, hostname: b.example, tls: {{certificateRefs: [{{name: cert}}]}}}}
"#
    );
    compile_with(&yaml, services)
}

/// `yaml` (with the GatewayClass) compiled with the certificate Secret `cert` and the CA
/// ConfigMap `ca` in namespace default.
fn compile_with(yaml: &str, services: bool) -> Config {
    let mut objects = parse_manifests(yaml).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let crt = rcgen::CertificateParams::new(vec!["a.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    objects.push(fixture::tls_secret("default", "cert", &crt.pem(), &key.serialize_pem()).into());
    let ca = fixture::self_signed_pem("ca.example");
    objects.push(fixture::config_map("default", "ca", &[("ca.crt", ca.as_str())]).into());
    let opts = Options {
        gateway_services: services,
        ..Options::default()
    };
    compile(&fixture::snapshot(objects), &opts)
}

fn listener(cfg: &Config, name: &str) -> Vec<String> {
    let gw = &cfg.gateway.gateways[0];
    let l = gw.listeners.iter().find(|l| l.name == name).unwrap();
    l.conditions
        .iter()
        .map(|c| format!("{}={}:{}", c.type_, c.status, c.reason))
        .collect()
}

#[test]
fn bad_ca_references_make_the_listener_not_accepted_with_the_specs_reasons() {
    let cfg = config(
        "{kind: ConfigMap, name: nowhere}",
        "{group: '', kind: Secret, name: cert}",
    );
    assert_eq!(
        listener(&cfg, "https")[..3],
        [
            "Accepted=false:NoValidCACertificate",
            "Programmed=false:Invalid",
            "ResolvedRefs=false:InvalidCACertificateRef"
        ]
    );
    assert_eq!(
        listener(&cfg, "other")[..3],
        [
            "Accepted=false:NoValidCACertificate",
            "Programmed=false:Invalid",
            "ResolvedRefs=false:InvalidCACertificateKind"
        ]
    );
    // The HTTP listener is not concerned.
    assert_eq!(listener(&cfg, "http")[0], "Accepted=true:Accepted");
}

#[test]
fn valid_validation_without_gateway_services_is_refused_rather_than_served_without_it() {
    let cfg = config("{kind: ConfigMap, name: ca}", "{name: ca}");
    for name in ["https", "other"] {
        assert_eq!(
            listener(&cfg, name)[..3],
            [
                "Accepted=false:UnsupportedValue",
                "Programmed=false:Invalid",
                "ResolvedRefs=true:ResolvedRefs"
            ],
            "{name}"
        );
    }
    assert!(cfg.certs.sources.values().all(|s| !s.contains("Gateway default/gw")));
}

#[test]
fn with_gateway_services_each_port_enforces_its_own_validation() {
    use crate::config::frontend_tls::FrontendMode;
    let cfg = config_with(
        "{kind: ConfigMap, name: ca}",
        "{name: ca}",
        "AllowInsecureFallback",
        true,
    );
    for name in ["https", "other"] {
        assert_eq!(
            listener(&cfg, name)[..3],
            [
                "Accepted=true:Accepted",
                "Programmed=true:Programmed",
                "ResolvedRefs=true:ResolvedRefs"
            ],
            "{name}"
        );
    }
    let gw = &cfg.gateway.gateways[0];
    let points = cfg.gateway_listeners.as_ref().unwrap();
    let at = |port: u16| {
        let target = gw.ports.iter().find(|p| p.port == port).unwrap().target;
        points.points.iter().find(|p| p.target == target).unwrap()
    };
    assert_eq!(at(80).frontend, None);
    let default = at(443).frontend.clone().unwrap();
    assert_eq!((default.port, default.mode), (443, FrontendMode::AllowValidOnly));
    assert_eq!(default.sources, ["default/ca"]);
    assert_eq!(default.ca.certs.len(), 1);
    let per_port = at(8443).frontend.clone().unwrap();
    assert_eq!(
        (per_port.port, per_port.mode),
        (8443, FrontendMode::AllowInsecureFallback)
    );
    // The per-port fallback shows on the Gateway.
    let insecure: Vec<_> = gw
        .conditions
        .iter()
        .filter(|c| c.type_ == INSECURE_MODE)
        .map(|c| (c.status, c.reason))
        .collect();
    assert_eq!(insecure, [(true, "ConfigurationChanged")]);
    let strict = config_with("{kind: ConfigMap, name: ca}", "{name: ca}", "AllowValidOnly", true);
    assert!(
        strict.gateway.gateways[0]
            .conditions
            .iter()
            .all(|c| c.type_ != INSECURE_MODE)
    );
}

#[test]
fn an_unknown_mode_or_an_invalid_reference_is_not_enforced_but_refused() {
    let cfg = config_with("{kind: ConfigMap, name: ca}", "{name: ca}", "Whatever", true);
    assert_eq!(listener(&cfg, "other")[0], "Accepted=false:UnsupportedValue");
    assert_eq!(listener(&cfg, "https")[0], "Accepted=true:Accepted");
    // One usable reference of two: served with it, ResolvedRefs says which one is not.
    let cfg = config_with(
        "{kind: ConfigMap, name: ca}",
        "{name: ca}, {name: nowhere}",
        "AllowValidOnly",
        true,
    );
    assert_eq!(
        listener(&cfg, "other")[..3],
        [
            "Accepted=true:Accepted",
            "Programmed=true:Programmed",
            "ResolvedRefs=false:InvalidCACertificateRef"
        ]
    );
    // A ConfigMap in another namespace without a ReferenceGrant.
    let cfg = config_with(
        "{kind: ConfigMap, name: ca}",
        "{name: ca, namespace: other}",
        "AllowValidOnly",
        true,
    );
    assert_eq!(
        listener(&cfg, "other")[..3],
        [
            "Accepted=false:NoValidCACertificate",
            "Programmed=false:Invalid",
            "ResolvedRefs=false:RefNotPermitted"
        ]
    );
    let cfg = config_with("{kind: ConfigMap, name: nowhere}", "{name: ca}", "AllowValidOnly", true);
    assert_eq!(listener(&cfg, "https")[0], "Accepted=false:NoValidCACertificate");
    let points = cfg.gateway_listeners.as_ref().unwrap();
    assert!(points.points.iter().all(|p| !p.tls || p.frontend.is_some()));
}

#[test]
fn the_gateways_validation_covers_the_https_listeners_of_its_listener_sets() {
    let yaml = r#"
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
  allowedListeners: {namespaces: {from: Same}}
  tls:
    frontend:
      default: {validation: {caCertificateRefs: [{name: ca}]}}
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls, namespace: default}
spec:
  parentRef: {name: gw}
  listeners:
  - {name: ls-https, port: 9443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}
"#;
    let set_listener = |cfg: &Config| {
        let set = &cfg.gateway.listener_sets[0];
        let l = &set.listeners[0];
        l.conditions
            .iter()
            .map(|c| format!("{}={}:{}", c.type_, c.status, c.reason))
            .collect::<Vec<_>>()
    };
    let cfg = compile_with(yaml, false);
    assert_eq!(set_listener(&cfg)[0], "Accepted=false:UnsupportedValue");
    let cfg = compile_with(yaml, true);
    assert_eq!(set_listener(&cfg)[0], "Accepted=true:Accepted");
    let points = cfg.gateway_listeners.as_ref().unwrap();
    let tls: Vec<_> = points.points.iter().filter(|p| p.tls).collect();
    assert_eq!(tls.len(), 1);
    assert_eq!(tls[0].frontend.as_ref().unwrap().port, 9443);
}
