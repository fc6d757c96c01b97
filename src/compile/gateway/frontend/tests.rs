//! Frontend client-certificate validation on Gateway listeners: the spec's listener
//! conditions for bad references, and no listener served without the validation it asks for.

use crate::compile::{Options, compile};
use crate::config::Config;
use crate::fixture;
use crate::source::files::parse_manifests;

/// Gateway `gw`: listeners `http` (80), `https` (443, default validation with `default_ref`),
/// `other` (8443, per-port validation with `port_ref`); the certificate Secret `cert`, and
/// the ConfigMap `ca` with a CA certificate.
fn config(default_ref: &str, port_ref: &str) -> Config {
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
      perPort: [{{port: 8443, tls: {{validation: {{caCertificateRefs: [{port_ref}]}}}}}}]
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
  - {{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: other, port: 8443, protocol: HTTPS, hostname: b.example, tls: {{certificateRefs: [{{name: cert}}]}}}}
"#
    );
    let mut objects = parse_manifests(&yaml).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let crt = rcgen::CertificateParams::new(vec!["a.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    objects.push(fixture::tls_secret("default", "cert", &crt.pem(), &key.serialize_pem()).into());
    let ca = fixture::self_signed_pem("ca.example");
    objects.push(fixture::config_map("default", "ca", &[("ca.crt", ca.as_str())]).into());
    compile(&fixture::snapshot(objects), &Options::default())
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
fn valid_validation_is_refused_rather_than_served_without_it() {
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
