//! nginx variables in annotation and ConfigMap values, end to end over real sockets: the
//! ConfigMap header lists (`add-headers`, `proxy-set-headers`, `custom-headers`),
//! `x-forwarded-prefix` with the route regex's captures, and `mirror-target`. Echo pods show
//! what the upstream received.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use portico::fixture::{self, ImplementationSpecific, yaml};
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io/";
const CM: &str = "ingress-nginx/ingress-nginx-controller";

async fn send(addr: std::net::SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut b = Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    request(addr, b.body(Full::new(Bytes::new())).unwrap()).await.unwrap()
}

/// `add-headers` and `custom-headers` (response) and `proxy-set-headers` (upstream request)
/// with variables: each value is the request's; a variable without value leaves its header
/// out (as nginx does for an empty value); an unknown variable refuses the list with a
/// Warning that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_header_lists_expand_variables() {
    let web = pods("web", 1).await;
    let custom = |name: &str, host: &str, list: &str| {
        annotated_ingress(name, host, "/", "web", &[(&format!("{NGINX}custom-headers"), list)])
    };
    let manifests = class()
        + &service("web", &web)
        + &annotated_ingress("plain", "plain.test", "/", "web", &[])
        + &custom("own", "own.test", "tenant")
        + &custom("bad", "bad.test", "unknown")
        + &yaml(&[
            fixture::config_map(
                "ingress-nginx",
                "resp",
                &[
                    ("X-Served", "$scheme://$host$request_uri"),
                    ("X-Static", "yes"),
                    ("X-Request-Id-Seen", "$request_id"),
                ],
            )
            .into(),
            fixture::config_map(
                "ingress-nginx",
                "req",
                &[
                    ("X-Client", "$remote_addr:$remote_port"),
                    (
                        "X-Route",
                        "$namespace/$ingress_name/$service_name:$service_port$location_path",
                    ),
                    ("X-Arg", "${arg_q}"),
                    ("X-Id", "$request_id"),
                    ("X-Tls", "$scheme|$ssl_server_name|$server_protocol"),
                ],
            )
            .into(),
            fixture::config_map(
                "default",
                "tenant",
                &[("X-Tenant", "$cookie_tenant"), ("X-Method", "$request_method")],
            )
            .into(),
            fixture::config_map("default", "unknown", &[("X-Tenant", "$tenant_of_request")]).into(),
        ]);
    let cm = yaml(&[fixture::config_map(
        "ingress-nginx",
        "ingress-nginx-controller",
        &[
            ("add-headers", "resp"),
            ("proxy-set-headers", "ingress-nginx/req"),
            ("global-allowed-response-headers", "X-Tenant,X-Method"),
        ],
    )
    .into()]);
    let p = Portico::start(&[("all.yaml", manifests), ("cm.yaml", cm)], &["--configmap", CM]).await;

    let (s, h, body) = send(p.http, "plain.test", "/a/b?q=1", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-served"], "http://plain.test/a/b?q=1");
    assert_eq!(h["x-static"], "yes");
    let up = &json(&body)["headers"];
    let client = up["x-client"].as_str().unwrap();
    let (ip, port) = client.split_once(':').unwrap();
    assert_eq!(ip, "127.0.0.1");
    assert!(port.parse::<u16>().unwrap() > 0, "{client}");
    assert_eq!(up["x-route"], "default/plain/web:80/");
    assert_eq!(up["x-arg"], "1");
    assert_eq!(up["x-id"], up["x-request-id"], "the id sent upstream");
    assert_eq!(
        h["x-request-id-seen"],
        up["x-request-id"].as_str().unwrap(),
        "the same id"
    );
    assert!(up.get("x-served").is_none(), "add-headers go to the client only");
    assert_eq!(up["x-tls"], "http||HTTP/1.1");
    // Over TLS (HTTP/2): the scheme, the SNI name the client sent, the protocol.
    let tls = tls_get(p.https, Some("plain.test"), "/", true).await.unwrap();
    assert_eq!(tls.status, 200);
    assert_eq!(json(&tls.body)["headers"]["x-tls"], "https|plain.test|HTTP/2.0");

    // An argument that is not there: no header at all.
    let (_, _, body) = send(p.http, "plain.test", "/", &[]).await;
    assert!(json(&body)["headers"].get("x-arg").is_none(), "{body}");

    let (_, h, _) = send(p.http, "own.test", "/x", &[("cookie", "a=1; tenant=blue")]).await;
    assert_eq!(h["x-tenant"], "blue");
    assert_eq!(h["x-method"], "GET");
    assert_eq!(h["x-served"], "http://own.test/x", "add-headers too");

    let (s, h, _) = send(p.http, "bad.test", "/", &[("cookie", "tenant=blue")]).await;
    assert_eq!(s, 200);
    assert!(h.get("x-tenant").is_none());
    let d = diagnostics_of(&p.routes().await, "bad").join("\n");
    assert!(d.contains("$tenant_of_request"), "{d}");
}

/// ingress-nginx's `x-forwarded-prefix` takes `$` variables and the route regex's captures
/// (its validator admits `$`); a literal stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_prefix_with_captures_and_variables() {
    let web = pods("web", 1).await;
    let prefixed = |name: &str, host: &str, path: &str, value: &str| {
        fixture::ingress("default", name)
            .class("portico")
            .rule(host, path, ImplementationSpecific, "web", 80)
            .annotation(&format!("{NGINX}use-regex"), "true")
            .annotation(&format!("{NGINX}x-forwarded-prefix"), value)
            .into()
    };
    let manifests = class()
        + &service("web", &web)
        + &yaml(&[
            prefixed("cap", "cap.test", "/api/(v[0-9]+)/(.*)", "/api/$1"),
            prefixed("ns", "ns.test", "/", "/${namespace}/$ingress_name"),
            prefixed("unknown", "unknown.test", "/", "/$nope"),
        ]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let (s, _, body) = send(
        p.http,
        "cap.test",
        "/api/v2/users",
        &[("x-forwarded-prefix", "/spoofed")],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(json(&body)["headers"]["x-forwarded-prefix"], "/api/v2");
    let (_, _, body) = send(p.http, "ns.test", "/", &[]).await;
    assert_eq!(json(&body)["headers"]["x-forwarded-prefix"], "/default/ns");
    let (_, _, body) = send(p.http, "unknown.test", "/", &[]).await;
    assert!(json(&body)["headers"].get("x-forwarded-prefix").is_none(), "{body}");
    let d = diagnostics_of(&p.routes().await, "unknown").join("\n");
    assert!(d.contains("$nope") && d.contains("x-forwarded-prefix"), "{d}");
}
