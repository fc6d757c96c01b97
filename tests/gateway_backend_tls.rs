//! Gateway API BackendTLSPolicy in manifests mode: a policy targeting a Service port makes
//! the HTTPRoutes to it speak TLS to the pods, verifying the pod's certificate against the
//! CA of its ConfigMap and the policy's `hostname` (also sent as SNI); a policy that cannot
//! verify answers 5xx and says why in `/routes`.

mod support;

use support::gateway_api::{GATEWAY_CLASS, HTTP_GATEWAY, conditions};
use support::tls_backend::{serve_tls, tls_backend};
use support::*;

use portico::fixture;

/// A CA, and a certificate for `host` (and the URI `spiffe://{host}/test-identity`) it signed: (CA PEM, leaf PEM, leaf key PEM).
fn ca_and_leaf(host: &str) -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(rcgen::DnType::CommonName, "test CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut leaf = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
    let uri = rcgen::string::Ia5String::try_from(format!("spiffe://{host}/test-identity")).unwrap();
    leaf.subject_alt_names.push(rcgen::SanType::URI(uri));
    leaf.distinguished_name.push(rcgen::DnType::CommonName, host);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn config_map(name: &str, ca: &str) -> String {
    let ca = ca.replace('\n', "\n      ");
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: default}}\ndata:\n  ca.crt: |\n      {ca}\n"
    )
}

/// A Service `name` with port 443 named `btls`, on the pod.
fn btls_service(name: &str, pod: std::net::SocketAddr) -> String {
    let svc = fixture::service("default", name).port("btls", 443);
    let slice = fixture::slice("default", &format!("{name}-0"), name)
        .port("btls", pod.port().into())
        .endpoint(&pod.ip().to_string());
    fixture::yaml(&[svc.into(), slice.into()])
}

fn policy(name: &str, service: &str, section: Option<&str>, ca_ref: &str, hostname: &str) -> String {
    let section = section.map(|s| format!(", sectionName: {s}")).unwrap_or_default();
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  targetRefs: [{{group: '', kind: Service, name: {service}{section}}}]\n  validation:\n    caCertificateRefs: [{ca_ref}]\n    hostname: {hostname}\n"
    )
}

/// A policy for Service `name` with the CA `ca`, hostname abc.example.com and these
/// `subjectAltNames` (YAML flow list).
fn san_policy(name: &str, sans: &str) -> String {
    policy(name, name, None, "{kind: ConfigMap, name: ca}", "abc.example.com")
        + &format!("    subjectAltNames: {sans}\n")
}

/// An HTTPRoute on abc.example.com: `/NAME` → Service NAME port 443, for each name.
fn route(services: &[&str]) -> String {
    let rules: String = services
        .iter()
        .map(|s| {
            format!(
                "  - matches: [{{path: {{type: Exact, value: /{s}}}}}]\n    backendRefs: [{{name: {s}, port: 443}}]\n"
            )
        })
        .collect();
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [abc.example.com]\n  rules:\n{rules}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_policy_verifies_the_pods_with_its_ca_and_hostname() {
    let (ca, cert, key) = ca_and_leaf("abc.example.com");
    let (other_ca, _, _) = ca_and_leaf("abc.example.com");
    let pod = tls_backend(cert.as_bytes(), key.as_bytes()).await;
    let services = [
        "good",
        "host-mismatch",
        "cert-mismatch",
        "missing-ca",
        "invalid-kind",
        "other-port",
        "no-policy",
        "san-dns",
        "san-dns-mismatch",
        "san-uri",
        "san-uri-mismatch",
        "multiple-sans",
        "multiple-mismatch-sans",
    ];
    let svc_yaml: String = services.iter().map(|s| btls_service(s, pod)).collect();
    let policies = policy("good", "good", Some("btls"), "{kind: ConfigMap, name: ca}", "abc.example.com")
        + &policy("host-mismatch", "host-mismatch", Some("btls"), "{kind: ConfigMap, name: ca}", "mismatch.example.com")
        + &policy("cert-mismatch", "cert-mismatch", None, "{kind: ConfigMap, name: other-ca}", "abc.example.com")
        + &policy("missing-ca", "missing-ca", None, "{kind: ConfigMap, name: nowhere}", "abc.example.com")
        + &policy("invalid-kind", "invalid-kind", None, "{group: '', kind: InvalidKind, name: ca}", "abc.example.com")
        // A section that is not the port the route uses: the policy does not apply.
        + &policy("other-port", "other-port", Some("elsewhere"), "{kind: ConfigMap, name: ca}", "abc.example.com")
        // Newer than `good`, same Service and section: Conflicted, and `good` still applies.
        + &policy("good-2", "good", Some("btls"), "{kind: ConfigMap, name: other-ca}", "abc.example.com")
        + &san_policy("san-dns", "[{type: Hostname, hostname: abc.example.com}]")
        + &san_policy("san-dns-mismatch", "[{type: Hostname, hostname: dce.example.com}]")
        + &san_policy("san-uri", "[{type: URI, uri: 'spiffe://abc.example.com/test-identity'}]")
        + &san_policy("san-uri-mismatch", "[{type: URI, uri: 'spiffe://def.example.com/test-identity'}]")
        + &san_policy("multiple-sans", "[{type: URI, uri: 'spiffe://x.example/y'}, {type: Hostname, hostname: abc.example.com}]")
        + &san_policy("multiple-mismatch-sans", "[{type: URI, uri: 'spiffe://def.example.com/test-identity'}, {type: Hostname, hostname: def.example.com}]");
    let manifests = [
        ("class.yaml", GATEWAY_CLASS.to_string()),
        ("gateway.yaml", HTTP_GATEWAY.to_string() + &route(&services)),
        ("svc.yaml", svc_yaml),
        ("ca.yaml", config_map("ca", &ca) + &config_map("other-ca", &other_ca)),
        ("policies.yaml", policies),
    ];
    let p = Portico::start(&manifests, &[]).await;

    // Verified against the CA, with the policy's hostname as SNI.
    let ok = get(p.http, "abc.example.com", "/good").await.unwrap();
    assert_eq!((ok.0, ok.2.as_str()), (200, "tls-backend sni=abc.example.com\n"));
    // The certificate is not valid for the policy's hostname, or not from its CA: 502.
    for path in ["/host-mismatch", "/cert-mismatch"] {
        let a = get(p.http, "abc.example.com", path).await.unwrap();
        assert_eq!(a.0, 502, "{path}: {}", a.2);
        assert!(!a.2.contains("tls-backend"), "{path}");
    }
    // subjectAltNames: the certificate must carry one of them (DNS or URI).
    for (path, status) in [
        ("/san-dns", 200),
        ("/san-uri", 200),
        ("/multiple-sans", 200),
        ("/san-dns-mismatch", 502),
        ("/san-uri-mismatch", 502),
        ("/multiple-mismatch-sans", 502),
    ] {
        let a = get(p.http, "abc.example.com", path).await.unwrap();
        assert_eq!(a.0, status, "{path}: {}", a.2);
    }
    // No usable CA: answered 503 without trying.
    for path in ["/missing-ca", "/invalid-kind"] {
        assert_eq!(get(p.http, "abc.example.com", path).await.unwrap().0, 503, "{path}");
    }
    // Without a policy for the port, Portico speaks plain HTTP to it, which the TLS pod refuses.
    for path in ["/other-port", "/no-policy"] {
        let a = get(p.http, "abc.example.com", path).await.unwrap();
        assert_eq!(a.0, 502, "{path}: {}", a.2);
    }

    let routes = p.routes().await;
    let diags = routes["diagnostics"].as_array().unwrap();
    let of = |name: &str| -> Vec<String> {
        diags
            .iter()
            .filter(|d| d["object"]["kind"] == "BackendTLSPolicy" && d["object"]["name"] == name)
            .map(|d| d["message"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        of("missing-ca").iter().any(|m| m.contains("default/nowhere")),
        "{diags:?}"
    );
    assert!(
        of("invalid-kind").iter().any(|m| m.contains("not a ConfigMap")),
        "{diags:?}"
    );
    assert!(of("good").is_empty(), "{diags:?}");

    // Status: each policy's conditions for the Gateway whose route uses its Service.
    let policies = routes["gatewayApi"]["policies"].as_array().unwrap();
    let status = |name: &str| {
        let p = policies.iter().find(|p| p["key"]["name"] == name).unwrap();
        assert_eq!(
            p["ancestors"],
            serde_json::json!([{"namespace": "default", "name": "gw"}]),
            "{name}"
        );
        conditions(&p["conditions"])
    };
    let ok = ["Accepted=true:Accepted", "ResolvedRefs=true:ResolvedRefs"];
    assert_eq!(status("good"), ok);
    assert_eq!(status("host-mismatch"), ok);
    assert_eq!(status("cert-mismatch"), ok);
    assert_eq!(
        status("good-2"),
        ["Accepted=false:Conflicted", "ResolvedRefs=true:ResolvedRefs"]
    );
    assert_eq!(
        status("missing-ca"),
        [
            "Accepted=false:NoValidCACertificate",
            "ResolvedRefs=false:InvalidCACertificateRef"
        ]
    );
    assert_eq!(
        status("invalid-kind"),
        ["Accepted=false:NoValidCACertificate", "ResolvedRefs=false:InvalidKind"]
    );
}

/// A TLS pod that requires a client certificate from `client_ca` and answers with how many
/// certificates the client presented.
async fn mtls_pod(cert: &str, key: &str, client_ca: &str) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
        .build()
        .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    serve_tls(cfg, |conn| {
        let presented = conn.peer_certificates().map_or(0, |c| c.len());
        format!("client certificates: {presented}\n")
    })
    .await
}

/// Gateway `name` with an HTTP listener on `port` whose `spec.tls.backend` names `secret`
/// (YAML of a clientCertificateRef), and an HTTPRoute on `host` to Service `mtls`.
fn client_cert_gateway(name: &str, port: u16, host: &str, client_ref: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  gatewayClassName: portico\n  listeners: [{{name: http, port: {port}, protocol: HTTP, hostname: {host}}}]\n  tls: {{backend: {{clientCertificateRef: {client_ref}}}}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: {name}}}]\n  rules: [{{backendRefs: [{{name: mtls, port: 443}}]}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_presents_its_client_certificate_to_tls_backends() {
    let (ca, cert, key) = ca_and_leaf("abc.example.com");
    // The client certificate, from a CA of its own that the pod trusts.
    let (client_ca, client_cert, client_key) = ca_and_leaf("portico.example.com");
    let pod = mtls_pod(&cert, &key, &client_ca).await;
    let gateways = client_cert_gateway("good", 80, "abc.example.com", "{group: '', kind: Secret, name: client}")
        + &client_cert_gateway("none", 80, "none.example.com", "{kind: Secret, name: nowhere}")
        + &client_cert_gateway("kind", 80, "kind.example.com", "{kind: ConfigMap, name: client}")
        + &client_cert_gateway(
            "far",
            80,
            "far.example.com",
            "{kind: Secret, name: client, namespace: other}",
        )
        + &client_cert_gateway("bad", 80, "bad.example.com", "{kind: Secret, name: malformed}");
    let secrets = fixture::yaml(&[
        fixture::tls_secret("default", "client", &client_cert, &client_key).into(),
        fixture::tls_secret("other", "client", &client_cert, &client_key).into(),
        fixture::tls_secret("default", "malformed", "not a certificate", "not a key").into(),
    ]);
    let manifests = [
        ("class.yaml", GATEWAY_CLASS.to_string()),
        ("gateways.yaml", gateways),
        ("svc.yaml", btls_service("mtls", pod)),
        ("ca.yaml", config_map("ca", &ca)),
        (
            "policies.yaml",
            policy("mtls", "mtls", None, "{kind: ConfigMap, name: ca}", "abc.example.com"),
        ),
        ("secrets.yaml", secrets),
    ];
    let p = Portico::start(&manifests, &[]).await;

    let ok = get(p.http, "abc.example.com", "/").await.unwrap();
    assert_eq!((ok.0, ok.2.as_str()), (200, "client certificates: 1\n"));
    // Without a usable client certificate the pod refuses the handshake: 502.
    for host in [
        "none.example.com",
        "kind.example.com",
        "far.example.com",
        "bad.example.com",
    ] {
        assert_eq!(get(p.http, host, "/").await.unwrap().0, 502, "{host}");
    }

    let routes = p.routes().await;
    let gateway = |name: &str| {
        let gws = routes["gatewayApi"]["gateways"].as_array().unwrap();
        let g = gws.iter().find(|g| g["key"]["name"] == name).unwrap();
        conditions(&g["conditions"])
    };
    assert!(gateway("good").contains(&"ResolvedRefs=true:ResolvedRefs".to_string()));
    for (name, reason) in [
        ("none", "InvalidClientCertificateRef"),
        ("kind", "InvalidClientCertificateRef"),
        ("bad", "InvalidClientCertificateRef"),
        ("far", "RefNotPermitted"),
    ] {
        let c = gateway(name);
        assert!(c.contains(&format!("ResolvedRefs=false:{reason}")), "{name}: {c:?}");
        assert!(c.contains(&"Accepted=true:Accepted".to_string()), "{name}: {c:?}");
    }
}
