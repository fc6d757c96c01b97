//! Kubernetes mode on a real kube-apiserver: watches, /routes, Ingress status, Events,
//! leader election. Portico runs as a local process with the deploy/ ServiceAccount's token.
//! EndpointSlices use documentation addresses (198.51.100.0/24): no traffic goes there.

mod support;

use std::time::Duration;

use portico::fixture::{self, Prefix, yaml};
use support::Portico;
use support::cluster::{ControlPlane, eventually};

/// A Service `ns/name` (port 80 named http, targetPort 8080) with one slice of `ips` on `port`.
fn service_on(ns: &str, name: &str, ips: &[&str], port: u16) -> String {
    let slice = ips.iter().fold(
        fixture::slice(ns, &format!("{name}-1"), name).port("http", port.into()),
        |slice, ip| slice.endpoint(ip).ready(true),
    );
    yaml(&[
        fixture::service(ns, name).port("http", 80).target_port(8080).into(),
        slice.into(),
    ])
}

fn service(ns: &str, name: &str, ips: &[&str]) -> String {
    service_on(ns, name, ips, 8080)
}

fn ingress(ns: &str, name: &str, class: &str, host: &str, svc: &str, tls_secret: Option<&str>) -> String {
    let ingress = fixture::ingress(ns, name).class(class);
    let ingress = match tls_secret {
        Some(secret) => ingress.tls(&[host], Some(secret)),
        None => ingress,
    };
    yaml(&[ingress.rule(host, "/", Prefix, svc, 80).into()])
}

fn endpoints(routes: &serde_json::Value, host: &str) -> Vec<String> {
    routes["hosts"][host]
        .as_array()
        .map(|rs| {
            rs.iter()
                .flat_map(|r| r["backend"]["target"]["ready"].as_array().cloned().unwrap_or_default())
                .filter_map(|e| e["addr"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn start_portico(cp: &ControlPlane, kubeconfig: &std::path::Path, name: &str) -> Portico {
    let dir = std::env::temp_dir().join(format!("portico-kube-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _ = cp;
    Portico::launch_env(
        vec![
            "--publish-status-address".into(),
            "203.0.113.10".into(),
            "--election-namespace".into(),
            "portico-system".into(),
            "--pod-name".into(),
            name.into(),
        ],
        dir,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_routes_status_and_events() {
    let cp = ControlPlane::start();
    let kubeconfig = cp.install_portico();
    cp.ok(&["create", "namespace", "e2e-a"]);
    cp.apply(
        &(yaml(&[fixture::ingress_class("other", "example.com/other").into()])
            + &service("e2e-a", "web", &["198.51.100.7"])
            + &support::tls_secret("e2e-a", "app-tls", "ec.crt", "ec-sec1.key")
            + &ingress("e2e-a", "app", "portico", "app.example.com", "web", Some("app-tls"))
            + &ingress("e2e-a", "foreign", "other", "foreign.example.com", "web", None)),
    );
    let p = start_portico(&cp, &kubeconfig, "p1").await;

    // Routes, endpoints and the certificate from the cluster's objects.
    let routes = p.routes().await;
    assert_eq!(endpoints(&routes, "app.example.com"), ["198.51.100.7:8080"], "{routes}");
    assert_eq!(routes["tls"]["app.example.com"], "secret e2e-a/app-tls");
    assert!(
        routes["hosts"].get("foreign.example.com").is_none(),
        "another class gets no routes"
    );
    let a = support::tls_get(p.https, Some("app.example.com"), "/", false).await;
    assert_eq!(a.map(|a| a.cert_cn).unwrap_or_default(), "*.example.com");

    // Status is written for our Ingress only.
    let status = |name: &'static str| {
        let cp = &cp;
        async move {
            cp.ok(&[
                "get",
                "ingress",
                name,
                "-n",
                "e2e-a",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ])
        }
    };
    eventually("status of app", Duration::from_secs(30), || async {
        status("app").await == "203.0.113.10"
    })
    .await;
    assert_eq!(status("foreign").await, "", "another class gets no status");

    // An Admitted event, then updates propagate: a second endpoint appears.
    let events = cp.ok(&[
        "get",
        "events",
        "-n",
        "e2e-a",
        "-o",
        "jsonpath={range .items[*]}{.reason}/{.regarding.name}{.involvedObject.name} {end}",
    ]);
    assert!(events.contains("Admitted/app"), "{events}");
    cp.apply(&service("e2e-a", "web", &["198.51.100.7", "198.51.100.8"]));
    eventually("second endpoint", Duration::from_secs(10), || async {
        endpoints(&p.routes().await, "app.example.com").len() == 2
    })
    .await;

    // A missing Secret: a Warning Event on the Ingress, the host still routed.
    cp.apply(&ingress(
        "e2e-a",
        "broken",
        "portico",
        "broken.example.com",
        "web",
        Some("does-not-exist"),
    ));
    eventually("SecretNotFound event", Duration::from_secs(30), || async {
        let ev = cp.ok(&[
            "get",
            "events",
            "-n",
            "e2e-a",
            "--field-selector",
            "type=Warning",
            "-o",
            "jsonpath={range .items[*]}{.reason}:{.involvedObject.name} {end}",
        ]);
        ev.contains("SecretNotFound:broken")
    })
    .await;
    assert_eq!(endpoints(&p.routes().await, "broken.example.com").len(), 2);

    // Switching the Ingress to another class removes its routes and its status.
    cp.apply(&ingress(
        "e2e-a",
        "app",
        "other",
        "app.example.com",
        "web",
        Some("app-tls"),
    ));
    eventually("routes of app gone", Duration::from_secs(10), || async {
        p.routes().await["hosts"].get("app.example.com").is_none()
    })
    .await;
    eventually("status of app removed", Duration::from_secs(30), || async {
        status("app").await.is_empty()
    })
    .await;

    // Deletes propagate.
    cp.ok(&["delete", "ingress", "broken", "-n", "e2e-a"]);
    eventually("routes of broken gone", Duration::from_secs(10), || async {
        p.routes().await["hosts"].get("broken.example.com").is_none()
    })
    .await;
}

fn lease_holder(cp: &ControlPlane) -> String {
    let out = cp.kubectl(&[
        "get",
        "lease",
        "portico-leader",
        "-n",
        "portico-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ip_status(cp: &ControlPlane, ns: &str, name: &str) -> String {
    cp.ok(&[
        "get",
        "ingress",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].ip}",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_writes_status_and_another_takes_over() {
    let cp = ControlPlane::start();
    let kubeconfig = cp.install_portico();
    cp.ok(&["create", "namespace", "e2e-b"]);
    cp.apply(
        &(service("e2e-b", "web", &["198.51.100.9"])
            + &ingress("e2e-b", "first", "portico", "first.example.com", "web", None)),
    );
    let p1 = start_portico(&cp, &kubeconfig, "replica-1").await;
    let p2 = start_portico(&cp, &kubeconfig, "replica-2").await;
    eventually("status of first", Duration::from_secs(30), || async {
        ip_status(&cp, "e2e-b", "first") == "203.0.113.10"
    })
    .await;
    // Every replica serves; one holds the Lease.
    for p in [&p1, &p2] {
        assert_eq!(endpoints(&p.routes().await, "first.example.com"), ["198.51.100.9:8080"]);
    }
    let leader = lease_holder(&cp);
    assert!(leader == "replica-1" || leader == "replica-2", "holder {leader:?}");
    let leader_logs = if leader == "replica-1" {
        p1.logs.clone()
    } else {
        p2.logs.clone()
    };
    assert!(
        leader_logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("leadership changed") && l.contains("\"leader\":true"))
    );

    // The leader goes away without releasing the Lease; the other replica takes over when it
    // expires and writes the status of what comes next.
    let (survivor, gone) = if leader == "replica-1" { (p2, p1) } else { (p1, p2) };
    drop(gone);
    cp.apply(&ingress(
        "e2e-b",
        "second",
        "portico",
        "second.example.com",
        "web",
        None,
    ));
    eventually("second routed by the survivor", Duration::from_secs(10), || async {
        !endpoints(&survivor.routes().await, "second.example.com").is_empty()
    })
    .await;
    eventually(
        "status of second by the new leader",
        Duration::from_secs(60),
        || async { ip_status(&cp, "e2e-b", "second") == "203.0.113.10" },
    )
    .await;
    assert_ne!(lease_holder(&cp), leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_serving_while_the_api_server_is_down_then_catches_up() {
    let cp = ControlPlane::start();
    let kubeconfig = cp.install_portico();
    cp.ok(&["create", "namespace", "e2e-c"]);
    cp.apply(
        &(service("e2e-c", "web", &["198.51.100.11"])
            + &ingress("e2e-c", "before", "portico", "before.example.com", "web", None)),
    );
    let p = start_portico(&cp, &kubeconfig, "solo").await;
    assert_eq!(
        endpoints(&p.routes().await, "before.example.com"),
        ["198.51.100.11:8080"]
    );
    // Settled first: a late event (Ingress status written back, say) would otherwise bump
    // the generation during the outage and look like a change without the API server.
    let mut generation = p.routes().await["generation"].as_u64().unwrap();
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = p.routes().await["generation"].as_u64().unwrap();
        if now == generation {
            break;
        }
        generation = now;
    }

    cp.stop_apiserver();
    // The watches notice and say so; the last config keeps serving and readiness holds.
    eventually("the outage in the log", Duration::from_secs(30), || async {
        p.logs.lock().unwrap().iter().any(|l| l.contains("watch failed"))
    })
    .await;
    let routes = p.routes().await;
    assert_eq!(endpoints(&routes, "before.example.com"), ["198.51.100.11:8080"]);
    assert_eq!(routes["generation"].as_u64().unwrap(), generation);
    assert_eq!(support::get(p.admin, "admin", "/readyz").await.unwrap().0, 200);
    let (s, _, body) = support::get(p.http, "nothing.example.com", "/").await.unwrap();
    assert_eq!(s, 404, "{body}");

    cp.start_apiserver();
    cp.apply(&ingress("e2e-c", "after", "portico", "after.example.com", "web", None));
    eventually("changes after the restart arrive", Duration::from_secs(60), || async {
        !endpoints(&p.routes().await, "after.example.com").is_empty()
    })
    .await;
    assert!(p.logs.lock().unwrap().iter().any(|l| l.contains("watch reconnected")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_reaches_a_pod_in_a_network_namespace() {
    let pod = support::netns::TestHost::start(1, "pod-in-netns");
    let cp = ControlPlane::start();
    let kubeconfig = cp.install_portico();
    cp.ok(&["create", "namespace", "e2e-d"]);
    let slice_ip = pod.addr.ip().to_string();
    // The slice names the pod's address and port; the Service port is 80.
    cp.apply(
        &(service_on("e2e-d", "web", &[&slice_ip], pod.addr.port())
            + &ingress("e2e-d", "web", "portico", "netns.example.com", "web", None)),
    );
    let p = start_portico(&cp, &kubeconfig, "traffic").await;
    assert_eq!(
        endpoints(&p.routes().await, "netns.example.com"),
        [pod.addr.to_string()]
    );
    let (s, _, body) = support::get(p.http, "netns.example.com", "/hello?x=1").await.unwrap();
    assert_eq!(s, 200, "{body}");
    let j = support::json(&body);
    assert_eq!(j["pod"], "pod-in-netns");
    assert_eq!(j["target"], "/hello?x=1");
    assert_eq!(j["headers"]["host"], "netns.example.com");
}
