//! deploy/minikube on a real kube-apiserver: the overlay applies, and Portico, run with the
//! overlay's own flags and ServiceAccount, passes the minikube ingress addon's acceptance
//! check: a class-less Ingress for nginx.example.com is admitted (status written, routes
//! live) and answers through Portico, from a backend in a network namespace.

mod support;

use std::time::{Duration, Instant};

use portico::fixture::{self, Prefix, yaml};
use support::Portico;
use support::cluster::ControlPlane;

const OVERLAY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/minikube");

/// The controller container's args in the overlay, as the cluster would run them: with the
/// environment filled in, and without the flags the local launcher sets itself (listen
/// addresses on port 0, log format).
fn overlay_args(cp: &ControlPlane, node_ip: &str) -> Vec<String> {
    let rendered = cp.ok(&["kustomize", OVERLAY]);
    let deployment = rendered
        .split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).unwrap())
        .find(|d| d["kind"] == "Deployment")
        .expect("the overlay has a Deployment");
    assert_eq!(deployment["metadata"]["name"], "ingress-nginx-controller");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"],
        "controller"
    );
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let host_ports: Vec<u64> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["hostPort"].as_u64())
        .collect();
    assert_eq!(host_ports, [80, 443]);
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace("$(NODE_IP)", node_ip))
        .filter(|a| {
            !["--http-addr", "--https-addr", "--admin-addr", "--log-format"]
                .iter()
                .any(|f| a.starts_with(f))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minikube_addon_acceptance_check_passes() {
    let pod = support::netns::TestHost::start(2, "nginx-pod");
    let cp = ControlPlane::start();
    cp.ok(&["apply", "--validate=strict", "-k", OVERLAY]);
    let classes = cp.ok(&[
        "get",
        "ingressclass",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.controller}/{.metadata.annotations.ingressclass\\.kubernetes\\.io/is-default-class} {end}",
    ]);
    assert_eq!(classes.trim(), "nginx=k8s.io/ingress-nginx/true");
    let svc = cp.ok(&[
        "get",
        "service",
        "ingress-nginx-controller",
        "-n",
        "ingress-nginx",
        "-o",
        "jsonpath={.spec.type}",
    ]);
    assert_eq!(svc, "NodePort");
    assert!(
        cp.ok(&["get", "validatingwebhookconfigurations", "-o", "name"])
            .trim()
            .is_empty(),
        "no admission webhook"
    );

    let token = cp.ok(&["create", "token", "portico", "-n", "ingress-nginx", "--duration", "1h"]);
    let kubeconfig = cp.kubeconfig_for("minikube", token.trim());
    let mut args = overlay_args(&cp, "203.0.113.10");
    args.extend(["--pod-name".to_string(), "controller-0".to_string()]);
    assert!(args.contains(&"--watch-ingress-without-class".to_string()), "{args:?}");
    let dir = std::env::temp_dir().join(format!("portico-minikube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = Portico::launch_env(
        args,
        dir,
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("POD_NAMESPACE", "ingress-nginx"),
        ],
    )
    .await;

    // What minikube's addon test creates: a backend and a class-less Ingress.
    cp.ok(&["create", "namespace", "demo"]);
    let port = i32::from(pod.addr.port());
    cp.apply(&yaml(&[
        fixture::service("demo", "nginx")
            .port("http", 80)
            .target_port(port)
            .into(),
        fixture::slice("demo", "nginx-1", "nginx")
            .port("http", port)
            .endpoint(&pod.addr.ip().to_string())
            .ready(true)
            .into(),
        fixture::ingress("demo", "nginx-ingress")
            .rule("nginx.example.com", "/", Prefix, "nginx", 80)
            .into(),
    ]));

    // Admitted: routes live, then status written by the leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let routes = p.routes().await;
        if routes["hosts"]["nginx.example.com"].is_array() {
            break;
        }
        assert!(Instant::now() < deadline, "no routes for nginx.example.com: {routes}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _, body) = support::get(p.http, "nginx.example.com", "/").await.unwrap();
    assert_eq!(s, 200, "{body}");
    assert_eq!(support::json(&body)["pod"], "nginx-pod");
    loop {
        let ip = cp.ok(&[
            "get",
            "ingress",
            "nginx-ingress",
            "-n",
            "demo",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ]);
        if ip == "203.0.113.10" {
            break;
        }
        assert!(Instant::now() < deadline, "status not written: {ip:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // As in the addon, no HSTS; and the default certificate is ingress-nginx's placeholder.
    let a = support::tls_get(p.https, Some("nginx.example.com"), "/", false)
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert!(a.headers.get("strict-transport-security").is_none());
    assert_eq!(a.cert_cn, "Kubernetes Ingress Controller Fake Certificate");
}
