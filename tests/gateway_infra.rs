//! A Gateway's infrastructure in manifests mode (no Service per Gateway there): an
//! `infrastructure.parametersRef` (Portico takes none) and an address type Portico cannot give
//! leave the Gateway not accepted, a static IP address not programmed, each with the spec's
//! reason and a diagnostic in `/routes`; the other Gateways' routes keep serving, and the
//! GatewayClass claims GatewayStaticAddresses and GatewayInfrastructure only with
//! `--gateway-services`.

mod support;

use support::gateway_api::{GATEWAY_CLASS, conditions, gateway_report};
use support::{Portico, diagnostics_of, get, pods};

fn gateway(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  gatewayClassName: portico\n  listeners: [{{name: http, port: 80, protocol: HTTP}}]\n{spec}"
    )
}

#[tokio::test]
async fn unusable_infrastructure_is_a_condition_and_a_diagnostic() {
    let web = pods("web", 1).await;
    let slice = portico::fixture::slice("default", "web-0", "web")
        .port("http", web[0].port().into())
        .endpoint(&web[0].ip().to_string());
    let service = portico::fixture::yaml(&[
        portico::fixture::service("default", "web").port("http", 80).into(),
        slice.into(),
    ]);
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: shop, namespace: default}\nspec:\n  parentRefs: [{name: plain}]\n  hostnames: [shop.test]\n  rules:\n  - backendRefs: [{name: web, port: 80}]\n";
    let p = Portico::start(
        &[
            ("class.yaml", GATEWAY_CLASS.to_string()),
            ("svc.yaml", service),
            ("route.yaml", route.to_string()),
            ("plain.yaml", gateway("plain", "")),
            (
                "params.yaml",
                gateway(
                    "params",
                    "  infrastructure:\n    parametersRef: {group: invalid.io, kind: InvalidParameters, name: invalid}\n",
                ),
            ),
            (
                "named.yaml",
                gateway("named", "  addresses: [{type: Hostname, value: gw.example.com}]\n"),
            ),
            (
                "static.yaml",
                gateway("static", "  addresses: [{value: 198.51.100.20}]\n"),
            ),
            ("empty.yaml", gateway("empty", "  addresses: [{type: IPAddress}]\n")),
        ],
        &[],
    )
    .await;
    assert_eq!(get(p.http, "shop.test", "/").await.unwrap().0, 200);

    let routes = p.routes().await;
    let gw = |name: &str| conditions(&gateway_report(&routes, name)["conditions"]);
    assert_eq!(
        gw("params"),
        ["Accepted=false:InvalidParameters", "Programmed=false:Invalid"]
    );
    assert_eq!(
        gw("named"),
        ["Accepted=false:UnsupportedAddress", "Programmed=false:Invalid"]
    );
    assert_eq!(
        gw("static"),
        ["Accepted=true:Accepted", "Programmed=false:AddressNotUsable"]
    );
    for ok in ["plain", "empty"] {
        assert_eq!(gw(ok), ["Accepted=true:Accepted", "Programmed=true:Programmed"], "{ok}");
    }
    assert!(
        diagnostics_of(&routes, "params")
            .iter()
            .any(|m| m.contains("parametersRef"))
    );
    assert!(
        diagnostics_of(&routes, "named")
            .iter()
            .any(|m| m.contains("\"Hostname\""))
    );
    assert!(
        diagnostics_of(&routes, "static")
            .iter()
            .any(|m| m.contains("198.51.100.20") && m.contains("--gateway-services")),
        "{routes:#}"
    );
    let features = routes["gatewayApi"]["classes"][0]["supported_features"].clone();
    assert!(
        features
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f != "GatewayStaticAddresses" && f != "GatewayInfrastructure"),
        "{features}"
    );
    assert!(
        features.as_array().unwrap().iter().any(|f| f == "Gateway"),
        "{features}"
    );
}
