//! Gateway API TLSRoute (GATEWAY-TLS core) in manifests mode: a Gateway listener of protocol
//! TLS in mode Passthrough sends the TLS connections whose SNI its routes name to pods that
//! terminate TLS themselves, without `--enable-ssl-passthrough`; other names are terminated
//! by Portico as before, except names under a TLS listener's hostname, which are refused;
//! status decisions and diagnostics in `/routes`.

mod support;

use std::path::PathBuf;

use support::gateway_api::{GATEWAY_CLASS, conditions, route_conditions};
use support::tls_backend::*;
use support::*;

/// Gateway `default/gw`: `pass` (TLS Passthrough, `*.example.com`), `http` (HTTP), and
/// `term` (TLS in mode Terminate, which Portico does not support).
const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: portico
  listeners:
  - name: pass
    port: 443
    protocol: TLS
    hostname: "*.example.com"
    allowedRoutes:
      kinds: [{kind: TLSRoute}, {kind: TCPRoute}]
    tls: {mode: Passthrough}
  - {name: http, port: 80, protocol: HTTP}
  - name: term
    port: 8443
    protocol: TLS
    hostname: term.example.com
    tls: {mode: Terminate, certificateRefs: [{name: nowhere}]}
"#;

fn tls_route(name: &str, ns: &str, parent: &str, hostnames: &str, backend: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{parent}]\n  hostnames: {hostnames}\n  rules:\n  - backendRefs: [{backend}]\n"
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("portico-gateway-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A TLS pod with its own self-signed certificate for `cn`.
async fn tls_pod(cn: &str) -> std::net::SocketAddr {
    let dir = temp_dir(cn);
    let (cert, key) = openssl_cert(&dir, cn);
    let _ = std::fs::remove_dir_all(dir);
    tls_backend(&cert, &key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_route_passes_connections_through_by_sni() {
    let app = tls_pod("app.example.com").await;
    let deep = tls_pod("deep.example.com").await;
    let web = pods("web", 1).await;
    let manifests = [
        ("class.yaml", GATEWAY_CLASS.to_string()),
        ("gateway.yaml", GATEWAY.to_string()),
        (
            "svc.yaml",
            service("tlsapp", &[app]) + &service("deep", &[deep]) + &service("web", &[web[0]]),
        ),
        (
            "routes.yaml",
            tls_route("app", "default", "{name: gw}", "[app.example.com]", "{name: tlsapp, port: 80}")
                // A wildcard below the listener's: any number of labels, as Gateway wildcards.
                + &tls_route("wild", "default", "{name: gw, sectionName: pass}", "['*.deep.example.com']", "{name: deep, port: 80}")
                // A Service that does not exist: attached, and its connections closed.
                + &tls_route("lost", "default", "{name: gw}", "[lost.example.com]", "{name: missing, port: 443}")
                // Outside the listener's hostname.
                + &tls_route("elsewhere", "default", "{name: gw, sectionName: pass}", "[app.example.org]", "{name: tlsapp, port: 80}")
                // On the HTTP listener, which takes no TLSRoute.
                + &tls_route("plain", "default", "{name: gw, sectionName: http}", "[app.example.com]", "{name: tlsapp, port: 80}")
                // A Service in another namespace without a ReferenceGrant.
                + &tls_route("far", "default", "{name: gw}", "[far.example.com]", "{name: tlsapp, namespace: other, port: 80}"),
        ),
        (
            "ingress.yaml",
            class()
                + &annotated_ingress("site", "site.test", "/", "web", &[])
                // An Ingress host with a certificate, under the TLS listener's hostname.
                + &portico::fixture::yaml(&[ingress_with("rsa", "rsa.example.com", "/", "web", &[])
                    .tls(&["rsa.example.com"], Some("rsa-tls"))
                    .into()])
                + &tls_secret("default", "rsa-tls", "rsa.crt", "rsa-pkcs1.key"),
        ),
    ];
    // No --enable-ssl-passthrough: the Gateway asks for passthrough itself.
    let p = Portico::start(&manifests, &[]).await;

    // The pod's own certificate and answer: Portico did not terminate TLS.
    let a = tls_get(p.https, Some("app.example.com"), "/", false).await.unwrap();
    assert_eq!(a.cert_cn, "app.example.com");
    assert_eq!((a.status, a.body.as_str()), (200, "tls-backend sni=app.example.com\n"));
    // Two labels below `*.deep.example.com`; curl and openssl see the same certificate.
    let d = tls_get(p.https, Some("a.b.deep.example.com"), "/", false)
        .await
        .unwrap();
    assert_eq!(d.cert_cn, "deep.example.com");
    assert_eq!(d.body, "tls-backend sni=a.b.deep.example.com\n");
    let (ok, text) = s_client(p.https, "x.deep.example.com", &["-tls1_2"]);
    assert!(ok && text.contains("CN = deep.example.com"), "{text}");

    // Names no route passes through and the listener's hostname does not claim are
    // terminated by Portico: the Ingress's host, the route outside the listener's hostname,
    // and a ClientHello without SNI.
    let s = tls_get(p.https, Some("site.test"), "/", false).await.unwrap();
    assert_eq!(s.cert_cn, "Portico Default Certificate");
    assert_eq!(json(&s.body)["pod"], "web-0");
    for sni in [Some("app.example.org"), None] {
        let t = tls_get(p.https, sni, "/", false).await.unwrap();
        assert_eq!(t.cert_cn, "Portico Default Certificate", "{sni:?}");
        assert_eq!(t.status, 404, "{sni:?}");
    }
    // Names under the listener's `*.example.com` without a route are refused: closed after
    // the ClientHello, no certificate, no alert (as the conformance suite's rejection check).
    for sni in ["other.example.com", "deep.example.com", "x.y.example.com"] {
        assert_refused(p.https, sni).await;
    }
    // An Ingress host there with a certificate of its own keeps it.
    let r = tls_get(p.https, Some("rsa.example.com"), "/", false).await.unwrap();
    assert_eq!((r.cert_cn.as_str(), r.status), ("rsa.example.com", 200));
    assert_eq!(json(&r.body)["pod"], "web-0");

    // A route whose backend does not resolve: passed through to nothing, the connection closed.
    assert!(tls_get(p.https, Some("lost.example.com"), "/", false).await.is_err());
    assert!(tls_get(p.https, Some("far.example.com"), "/", false).await.is_err());

    // Status decisions, as the conformance suite reads them.
    let routes = p.routes().await;
    let resolved = "ResolvedRefs=true:ResolvedRefs";
    for (name, accepted, refs) in [
        ("app", "Accepted=true:Accepted", resolved),
        ("wild", "Accepted=true:Accepted", resolved),
        ("lost", "Accepted=true:Accepted", "ResolvedRefs=false:BackendNotFound"),
        ("far", "Accepted=true:Accepted", "ResolvedRefs=false:RefNotPermitted"),
        ("elsewhere", "Accepted=false:NoMatchingListenerHostname", resolved),
        ("plain", "Accepted=false:NotAllowedByListeners", resolved),
    ] {
        assert_eq!(route_conditions(&routes, name), [accepted, refs], "{name}");
    }
    let gw = &routes["gatewayApi"]["gateways"][0];
    let pass = &gw["listeners"][0];
    assert_eq!(pass["name"], "pass");
    assert_eq!(pass["supportedKinds"], serde_json::json!(["TLSRoute"]));
    // app, wild, lost, far (elsewhere's hostname does not intersect).
    assert_eq!(pass["attachedRoutes"], 4);
    let pass_conditions = conditions(&pass["conditions"]);
    assert!(
        pass_conditions.contains(&"Accepted=true:Accepted".to_string()),
        "{pass_conditions:?}"
    );
    assert!(
        pass_conditions.contains(&"Programmed=true:Programmed".to_string()),
        "{pass_conditions:?}"
    );
    // TCPRoute is not a kind Portico serves.
    assert!(
        pass_conditions.contains(&"ResolvedRefs=false:InvalidRouteKinds".to_string()),
        "{pass_conditions:?}"
    );
    let term = &gw["listeners"][2];
    assert_eq!(conditions(&term["conditions"])[0], "Accepted=false:UnsupportedValue");
    assert_eq!(
        routes["passthrough"]["*.deep.example.com"]["service"]["name"], "deep",
        "{routes}"
    );
    // Diagnostics name each route's problem.
    let diags = routes["diagnostics"].as_array().unwrap();
    let of = |name: &str| -> Vec<String> {
        diags
            .iter()
            .filter(|d| d["object"]["kind"] == "TLSRoute" && d["object"]["name"] == name)
            .map(|d| d["message"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(of("lost").iter().any(|m| m.contains("closed")), "{diags:?}");
    assert!(of("far").iter().any(|m| m.contains("ReferenceGrant")), "{diags:?}");
    assert!(
        of("plain")
            .iter()
            .any(|m| m.contains("not accepted by Gateway default/gw")),
        "{diags:?}"
    );
    assert!(of("app").is_empty(), "{diags:?}");
}

/// A TLS handshake with this SNI ends with the connection closed (EOF or reset) before any
/// server message: no certificate and no TLS alert. openssl agrees.
async fn assert_refused(addr: std::net::SocketAddr, sni: &str) {
    let cfg = insecure_client(rustls::DEFAULT_VERSIONS);
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let err = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, stream)
        .await
        .expect_err(sni);
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{sni}: {err:?}"
    );
    let (ok, text) = s_client(addr, sni, &[]);
    assert!(!ok && !text.contains("BEGIN CERTIFICATE"), "{sni}: {text}");
}
