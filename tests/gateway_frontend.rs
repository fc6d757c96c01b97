//! Gateway frontend client-certificate validation (`spec.tls.frontend`) over real TLS
//! sockets, as the conformance tests GatewayFrontendClientCertificateValidation and
//! GatewayFrontendClientCertificateValidationInsecureFallback check it: with
//! `--gateway-services`, each Gateway port's socket asks for a client certificate and
//! `AllowValidOnly` takes only one that verifies against that port's CAs (the default's on
//! 443, the per-port one's on 8443, a listener without hostname included), while
//! `AllowInsecureFallback` takes any certificate or none and says so in a Gateway condition.
//! Invalid references leave the listener unserved with the spec's reasons; without
//! `--gateway-services` the validation cannot be honoured and the listener is not served.
//! The last test checks the status and the Gateway's Service on a real kube-apiserver.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use portico::fixture;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use support::gateway_api::{GATEWAY_CLASS, conditions, gateway_report};
use support::{Portico, insecure_client, insecure_client_cert, json, listening, pods, service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A CA (its PEM) and a client certificate it issued (chain and key).
struct Pki {
    ca_pem: String,
    client: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
}

fn pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} client"));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        client: (
            vec![cert.der().clone()],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        ),
    }
}

/// The conformance manifests' Gateway `name`: listener `https` (443, no hostname) under the
/// default validation with ConfigMap `ca-default`, `https-with-hostname` (8443,
/// second-example.org) under a per-port one with `ca-port`, both in `mode`; and their routes.
fn gateway(name: &str, mode: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: portico
  tls:
    frontend:
      default:
        validation:
          mode: {mode}
          caCertificateRefs: [{{kind: ConfigMap, group: "", name: ca-default}}]
      perPort:
      - port: 8443
        tls:
          validation:
            mode: {mode}
            caCertificateRefs: [{{kind: ConfigMap, group: "", name: ca-port}}]
  listeners:
  - {{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: server}}]}}}}
  - {{name: https-with-hostname, port: 8443, hostname: second-example.org, protocol: HTTPS, tls: {{certificateRefs: [{{name: server}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}-host, namespace: default}}
spec:
  parentRefs: [{{name: {name}}}]
  hostnames: [example.org]
  rules: [{{backendRefs: [{{name: v1, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}-no-hostname, namespace: default}}
spec:
  parentRefs: [{{name: {name}, sectionName: https-with-hostname}}]
  rules: [{{backendRefs: [{{name: v2, port: 80}}]}}]
"#
    )
}

/// The conformance manifest of GatewayFrontendInvalidDefaultClientCertificateValidation: a
/// default validation with a missing ConfigMap, and a per-port one on the HTTP port.
const INVALID_DEFAULT: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: invalid-default, namespace: default}
spec:
  gatewayClassName: portico
  tls:
    frontend:
      default:
        validation:
          caCertificateRefs: [{kind: ConfigMap, group: "", name: does-not-exist}]
      perPort:
      - port: 80
        tls:
          validation:
            caCertificateRefs: [{kind: ConfigMap, group: "", name: ca-port}]
  listeners:
  - {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: server}]}}
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-default, namespace: default}
spec:
  parentRefs: [{name: invalid-default}]
  hostnames: [example.org]
  rules: [{backendRefs: [{name: v1, port: 80}]}]
"#;

/// Portico with the Gateways `strict` (AllowValidOnly), `invalid-default` and `fallback`
/// (AllowInsecureFallback), the server certificate, the two CAs and the echo pods.
async fn start(default: &Pki, port: &Pki, extra: &[&str]) -> Portico {
    let v1 = pods("v1", 1).await;
    let v2 = pods("v2", 1).await;
    let key = KeyPair::generate().unwrap();
    let crt = CertificateParams::new(vec!["example.org".into(), "second-example.org".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let objects = fixture::yaml(&[
        fixture::tls_secret("default", "server", &crt.pem(), &key.serialize_pem()).into(),
        fixture::config_map("default", "ca-default", &[("ca.crt", default.ca_pem.as_str())]).into(),
        fixture::config_map("default", "ca-port", &[("ca.crt", port.ca_pem.as_str())]).into(),
    ]);
    Portico::start(
        &[
            ("class.yaml", GATEWAY_CLASS.to_string()),
            ("objects.yaml", objects),
            ("v1.yaml", service("v1", &v1)),
            ("v2.yaml", service("v2", &v2)),
            ("strict.yaml", gateway("strict", "AllowValidOnly")),
            ("fallback.yaml", gateway("fallback", "AllowInsecureFallback")),
            ("invalid.yaml", INVALID_DEFAULT.to_string()),
        ],
        extra,
    )
    .await
}

/// The socket a Gateway's `port` is served on.
async fn socket(p: &Portico, routes: &Value, gw: &str, port: u64) -> SocketAddr {
    let target = gateway_report(routes, gw)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["port"] == port)
        .unwrap_or_else(|| panic!("{gw}:{port} has no target in {routes:#}"))["target"]
        .as_u64()
        .unwrap();
    let addr = SocketAddr::new(p.http.ip(), u16::try_from(target).unwrap());
    listening(addr).await;
    addr
}

fn listener_conditions(routes: &Value, gw: &str, listener: &str) -> Vec<String> {
    let l = gateway_report(routes, gw)["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == listener)
        .unwrap()
        .clone();
    conditions(&l["conditions"])
}

/// A GET of `/` for `host` (also the SNI name) over a new connection made with `cfg`: the
/// status and the pod that answered, or what failed.
async fn fetch(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>, host: &str) -> Result<(u16, String), String> {
    let name = ServerName::try_from(host.to_string()).unwrap();
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let pod = match status {
        200 => json(body)["pod"].as_str().unwrap_or("").to_string(),
        _ => String::new(),
    };
    Ok((status, pod))
}

#[tokio::test]
async fn each_port_takes_only_certificates_its_cas_issued_or_any_with_insecure_fallback_and_an_invalid_default_stops_its_listener()
 {
    let (a, b) = (pki("default"), pki("per-port"));
    let p = start(&a, &b, &["--gateway-services"]).await;
    let routes = p.routes().await;
    for gw in ["strict", "fallback"] {
        for l in ["https", "https-with-hostname"] {
            assert_eq!(
                listener_conditions(&routes, gw, l)[..3],
                [
                    "Accepted=true:Accepted",
                    "Programmed=true:Programmed",
                    "ResolvedRefs=true:ResolvedRefs"
                ],
                "{gw}/{l}"
            );
        }
    }
    let with_a = Arc::new(insecure_client_cert(a.client.0.clone(), a.client.1.clone_key()));
    let with_b = Arc::new(insecure_client_cert(b.client.0.clone(), b.client.1.clone_key()));
    let without = Arc::new(insecure_client(rustls::DEFAULT_VERSIONS));

    // AllowValidOnly: 443 takes the default CA's client, 8443 (no route hostname, listener
    // hostname only) the per-port CA's; every other client fails.
    let (s443, s8443) = (
        socket(&p, &routes, "strict", 443).await,
        socket(&p, &routes, "strict", 8443).await,
    );
    assert_eq!(fetch(s443, &with_a, "example.org").await, Ok((200, "v1-0".into())));
    assert!(fetch(s443, &with_b, "example.org").await.is_err());
    assert!(fetch(s443, &without, "example.org").await.is_err());
    assert_eq!(
        fetch(s8443, &with_b, "second-example.org").await,
        Ok((200, "v2-0".into()))
    );
    assert!(fetch(s8443, &with_a, "second-example.org").await.is_err());
    assert!(fetch(s8443, &without, "second-example.org").await.is_err());

    // AllowInsecureFallback: the certificate is asked for, anything goes.
    let (f443, f8443) = (
        socket(&p, &routes, "fallback", 443).await,
        socket(&p, &routes, "fallback", 8443).await,
    );
    for cfg in [&with_a, &with_b, &without] {
        assert_eq!(fetch(f443, cfg, "example.org").await, Ok((200, "v1-0".into())));
        assert_eq!(fetch(f8443, cfg, "second-example.org").await, Ok((200, "v2-0".into())));
    }
    let strict = conditions(&gateway_report(&routes, "strict")["conditions"]);
    assert!(
        !strict.iter().any(|c| c.starts_with("InsecureFrontendValidationMode")),
        "{strict:?}"
    );
    let fallback = conditions(&gateway_report(&routes, "fallback")["conditions"]);
    assert!(
        fallback.contains(&"InsecureFrontendValidationMode=true:ConfigurationChanged".to_string()),
        "{fallback:?}"
    );

    // A session made without a certificate (on the fallback port, same name) resumes there
    // but does not get past the strict port.
    let resuming = Arc::new(insecure_client(rustls::DEFAULT_VERSIONS));
    assert!(fetch(f443, &resuming, "example.org").await.is_ok());
    let (kind, _) = support::tls_once(f443, &resuming, "example.org").await.unwrap();
    assert_eq!(kind, rustls::HandshakeKind::Resumed);
    assert!(fetch(s443, &resuming, "example.org").await.is_err());

    // GatewayFrontendInvalidDefaultClientCertificateValidation: an invalid default stops
    // only the HTTPS listener (one Portico per test binary here: the targets of
    // --gateway-services are fixed ports).
    assert_eq!(
        listener_conditions(&routes, "invalid-default", "http")[..3],
        [
            "Accepted=true:Accepted",
            "Programmed=true:Programmed",
            "ResolvedRefs=true:ResolvedRefs"
        ]
    );
    assert_eq!(
        listener_conditions(&routes, "invalid-default", "https")[..3],
        [
            "Accepted=false:NoValidCACertificate",
            "Programmed=false:Invalid",
            "ResolvedRefs=false:InvalidCACertificateRef"
        ]
    );
    let http = socket(&p, &routes, "invalid-default", 80).await;
    let (status, _, body) = support::get(http, "example.org", "/").await.unwrap();
    assert_eq!((status, json(&body)["pod"].as_str()), (200, Some("v1-0")));
    // Port 443 has no socket (nor a port on the Gateway's Service): nothing to connect to.
    let ports = gateway_report(&routes, "invalid-default")["ports"].clone();
    assert!(ports.as_array().unwrap().iter().all(|x| x["port"] != 443), "{ports}");
}

#[tokio::test]
async fn without_gateway_services_a_validating_listener_is_not_served() {
    let (a, b) = (pki("default"), pki("per-port"));
    let p = start(&a, &b, &[]).await;
    let routes = p.routes().await;
    let c = listener_conditions(&routes, "strict", "https-with-hostname");
    assert_eq!(c[..2], ["Accepted=false:UnsupportedValue", "Programmed=false:Invalid"]);
    let diags = support::diagnostics_of(&routes, "strict");
    assert!(diags.iter().any(|m| m.contains("--gateway-services")), "{diags:?}");
    // Portico's own HTTPS socket (the shared port 443) serves no Gateway route to anyone.
    let with_a = Arc::new(insecure_client_cert(a.client.0.clone(), a.client.1.clone_key()));
    assert_eq!(fetch(p.https, &with_a, "example.org").await.map(|r| r.0), Ok(404));
}

/// On a real kube-apiserver (Kubernetes mode, `--gateway-services`): the Gateway's status
/// carries InsecureFrontendValidationMode and its validating listeners are Accepted, and its
/// Service has both HTTPS ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_fallback_shows_in_the_gateway_status_on_the_api_server() {
    let (a, b) = (pki("default"), pki("per-port"));
    let key = KeyPair::generate().unwrap();
    let crt = CertificateParams::new(vec!["example.org".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let objects = fixture::yaml(&[
        fixture::tls_secret("infra", "server", &crt.pem(), &key.serialize_pem()).into(),
        fixture::config_map("infra", "ca-default", &[("ca.crt", a.ca_pem.as_str())]).into(),
        fixture::config_map("infra", "ca-port", &[("ca.crt", b.ca_pem.as_str())]).into(),
    ]);
    let gw = gateway("fallback", "AllowInsecureFallback").replace("namespace: default", "namespace: infra");
    let (cp, _p) = support::gateway_api::with_gateway_services(&format!("{objects}\n---\n{gw}"), &[]).await;
    let status = || -> Value {
        let out = cp.ok(&["get", "gateway", "-n", "infra", "fallback", "-o", "json"]);
        serde_json::from_str::<Value>(&out).unwrap()["status"].clone()
    };
    support::cluster::eventually(
        "the Gateway's InsecureFrontendValidationMode condition",
        std::time::Duration::from_secs(30),
        || async {
            let s = status();
            s["conditions"].is_array()
                && conditions(&s["conditions"])
                    .contains(&"InsecureFrontendValidationMode=\"True\":ConfigurationChanged".to_string())
        },
    )
    .await;
    let s = status();
    for l in s["listeners"].as_array().unwrap() {
        let c = conditions(&l["conditions"]);
        assert!(c.contains(&"Accepted=\"True\":Accepted".to_string()), "{c:?}");
    }
    // The leader writes the Service and the status in turn: either may come first.
    let ports = || -> Vec<i64> {
        let out = cp.ok(&[
            "get",
            "services",
            "-n",
            "infra",
            "-l",
            "gateway.networking.k8s.io/gateway-name=fallback",
            "-o",
            "json",
        ]);
        let svcs: Value = serde_json::from_str(&out).unwrap();
        svcs["items"][0]["spec"]["ports"]
            .as_array()
            .map(|l| l.iter().filter_map(|p| p["port"].as_i64()).collect())
            .unwrap_or_default()
    };
    support::cluster::eventually(
        "the Gateway's Service with ports 443 and 8443",
        std::time::Duration::from_secs(30),
        || async { ports() == [443, 8443] },
    )
    .await;
}
