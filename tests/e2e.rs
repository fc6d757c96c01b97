//! End-to-end against a real kube-apiserver built from Go modules (tests/e2e/).

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use portico::fixture::{self, Prefix};
use support::cluster::ControlPlane;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_lists_and_watches_ingresses() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cp = ControlPlane::start();
    let client = cp.client().await;
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "e2e-watch"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "e2e-watch");
    assert!(ingresses.list(&ListParams::default()).await.unwrap().items.is_empty());

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch_api: Api<Ingress> = Api::all(client.clone());
    let watch = tokio::spawn(async move {
        let mut stream = watcher(watch_api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let _ = tx.send(ev.map_err(|e| e.to_string()));
        }
    });

    let ing = fixture::ingress("e2e-watch", "hello")
        .class("portico")
        .rule("hello.example", "/", Prefix, "web", 80)
        .build();
    ingresses.create(&PostParams::default(), &ing).await.unwrap();
    let listed = ingresses.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.items[0].metadata.creation_timestamp.is_some());

    wait_for(&mut rx, |ev| match ev {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => o.metadata.name.as_deref() == Some("hello"),
        _ => false,
    })
    .await;
    ingresses.delete("hello", &DeleteParams::default()).await.unwrap();
    wait_for(
        &mut rx,
        |ev| matches!(ev, watcher::Event::Delete(o) if o.metadata.name.as_deref() == Some("hello")),
    )
    .await;
    watch.abort();
}

type Events = tokio::sync::mpsc::UnboundedReceiver<Result<watcher::Event<Ingress>, String>>;

/// Waits (20 s at most) for a watch event that satisfies `pred`.
async fn wait_for(rx: &mut Events, pred: impl Fn(&watcher::Event<Ingress>) -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await {
                Some(Ok(ev)) if pred(&ev) => return,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("watch error: {e}"),
                None => panic!("watch ended"),
            }
        }
    })
    .await
    .expect("watch event in time")
}

#[test]
fn deploy_applies_and_its_service_account_has_least_privilege() {
    let cp = ControlPlane::start();
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    // Server-side field validation: an unknown or misspelt field fails the apply.
    let applied = cp.ok(&["apply", "-k", deploy, "--validate=strict"]);
    for what in [
        "namespace/portico-system",
        "serviceaccount/portico",
        "clusterrole.rbac.authorization.k8s.io/portico",
        "deployment.apps/portico",
        "service/portico",
        "ingressclass.networking.k8s.io/portico",
    ] {
        assert!(applied.contains(what), "{what} not applied:\n{applied}");
    }
    assert_eq!(
        cp.ok(&["get", "ingressclass", "portico", "-o", "jsonpath={.spec.controller}"]),
        "portico.dev/ingress-controller"
    );

    // A token for the controller's ServiceAccount is accepted...
    let token = cp
        .ok(&["create", "token", "portico", "-n", "portico-system"])
        .trim()
        .to_string();
    let who = cp.kubectl_as(
        &token,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
    );
    assert_eq!(
        String::from_utf8_lossy(&who.stdout),
        "system:serviceaccount:portico-system:portico"
    );
    let list = cp.kubectl_as(&token, &["get", "ingresses", "-A"]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));

    // ...and RBAC gives it what the controller needs, and nothing more.
    let can = |args: &[&str]| {
        let mut a = vec!["auth", "can-i"];
        a.extend_from_slice(args);
        let out = cp.kubectl_as(&token, &a);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    for allowed in [
        &["list", "ingresses", "-A"][..],
        &["watch", "ingresses.networking.k8s.io", "-A"],
        &[
            "patch",
            "ingresses.networking.k8s.io",
            "--subresource=status",
            "-n",
            "default",
        ],
        &["watch", "endpointslices.discovery.k8s.io", "-A"],
        &["list", "services", "-A"],
        &["watch", "secrets", "-A"],
        &["list", "ingressclasses"],
        &["create", "events", "-n", "default"],
        &["update", "leases.coordination.k8s.io", "-n", "portico-system"],
    ] {
        assert!(can(allowed), "should be allowed: {allowed:?}");
    }
    for denied in [
        &["delete", "ingresses", "-n", "default"][..],
        &["update", "ingresses", "-n", "default"],
        &["create", "pods", "-n", "default"],
        &["update", "secrets", "-n", "default"],
        &["create", "leases.coordination.k8s.io", "-n", "default"],
        &["get", "nodes"],
        &["create", "deployments", "-n", "portico-system"],
    ] {
        assert!(!can(denied), "should be denied: {denied:?}");
    }
}
