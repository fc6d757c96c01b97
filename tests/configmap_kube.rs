//! The `--configmap` in Kubernetes mode on a real kube-apiserver: read with the deploy/
//! ServiceAccount's rights (RBAC on configmaps), followed as it is changed and deleted.

mod support;

use std::time::{Duration, Instant};

use portico::fixture::{self, yaml};
use support::Portico;
use support::cluster::ControlPlane;

fn configmap(data: &[(&str, &str)]) -> String {
    yaml(&[fixture::config_map("ingress-nginx", "ingress-nginx-controller", data).into()])
}

/// Waits until /routes satisfies `check`.
async fn until(p: &Portico, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let routes = p.routes().await;
        if check(&routes) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}\n{routes}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mentions(routes: &serde_json::Value, text: &str) -> bool {
    routes["diagnostics"]
        .as_array()
        .is_some_and(|ds| ds.iter().any(|d| d.to_string().contains(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configmap_is_watched_and_followed() {
    let cp = ControlPlane::start();
    let kubeconfig = cp.install_portico();
    cp.ok(&["create", "namespace", "ingress-nginx"]);
    cp.apply(&configmap(&[("proxy-body-size", "1k"), ("no-such-key", "1")]));
    let dir = std::env::temp_dir().join(format!("portico-kube-cm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = Portico::launch_env(
        vec![
            "--publish-status-address".into(),
            "203.0.113.10".into(),
            "--election-namespace".into(),
            "portico-system".into(),
            "--configmap".into(),
            "ingress-nginx/ingress-nginx-controller".into(),
        ],
        dir,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
    .await;
    let routes = p.routes().await;
    assert_eq!(routes["settings"]["routes"]["max_body_bytes"], 1024, "{routes}");
    assert!(mentions(&routes, "no-such-key"), "{routes}");

    cp.apply(&configmap(&[("proxy-body-size", "2k")]));
    until(&p, "the changed ConfigMap", |r| {
        r["settings"]["routes"]["max_body_bytes"] == 2048 && !mentions(r, "no-such-key")
    })
    .await;

    cp.ok(&["delete", "configmap", "ingress-nginx-controller", "-n", "ingress-nginx"]);
    until(&p, "the deleted ConfigMap", |r| {
        // Back to ingress-nginx's default, 1m.
        r["settings"]["routes"]["max_body_bytes"] == 1024 * 1024 && mentions(r, "ConfigMapNotFound")
    })
    .await;
}
