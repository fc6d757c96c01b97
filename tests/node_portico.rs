//! Portico itself under load on a real one-node cluster: its memory in the pod (cgroup) at
//! idle and under load; `kubectl -n portico-system rollout restart deploy/portico` while
//! clients send requests through the portico Service (one that keeps connections alive and
//! reconnects when one is closed, one that opens a connection per request): no request fails;
//! then leader failover: the pod holding the Lease is deleted, another replica (the follower,
//! or the pod started in its place, whichever asks first once it expires) takes the Lease and
//! keeps Ingress status current (a new Ingress gets its ADDRESS and an Event from
//! the new leader), which `kubectl describe ingress` shows.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::load::{Load, Spec, Tally, who};
use support::node::{Node, app_manifest, eventually, text};

const NS: &str = "portico-system";
const SELECTOR: &str = "app.kubernetes.io/name=portico";

fn print_memory(node: &Node, when: &str) {
    for (pod, _) in node.pods(NS, SELECTOR) {
        let bytes = node.pod_memory_working_set(NS, &pod);
        eprintln!("{pod}: memory working set {when}: {:.1} MiB", bytes as f64 / 1048576.0);
    }
}

fn holder(node: &Node) -> String {
    node.ok(&[
        "get",
        "lease",
        "-n",
        NS,
        "portico-leader",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

fn loads(vip: SocketAddr) -> (Load, Load) {
    let kept = Load::start(Spec::new(vip, "web.example", "/"));
    let fresh = Load::start(Spec {
        threads: 2,
        keep_alive: false,
        ..Spec::new(vip, "web.example", "/")
    });
    (kept, fresh)
}

fn report(what: &str, kept: &Tally, fresh: &Tally) {
    eprintln!("{what}, keep-alive client: {}", kept.summary());
    eprintln!("{what}, connection per request: {}", fresh.summary());
    for (t, e) in kept.errors.iter().chain(&fresh.errors) {
        eprintln!("  failure at +{:?}: {e}", t.elapsed());
    }
}

#[test]
fn restart_and_leader_failover_under_load() {
    let Some(node) = Node::start("portico") else { return };
    node.install_portico();
    let pod = format!(
        "terminationGracePeriodSeconds: 5
containers:
- name: app
  image: {}
  imagePullPolicy: Never
  args: [serve-hostname, --port=8080]
  ports: [{{containerPort: 8080}}]
",
        node.env["AGNHOST_IMAGE"]
    );
    node.apply(&app_manifest(
        "web",
        2,
        &pod,
        "- {name: http, port: 80, targetPort: 8080}",
    ));
    node.run(&[
        "kubectl create ingress web --class=portico --rule=web.example/*=web:80",
        "timeout 120 kubectl rollout status deployment web",
    ]);
    let vip: SocketAddr = format!("{}:80", node.cluster_ip(NS, "portico")).parse().unwrap();
    let web: Vec<String> = node.pod_ips("default", "app=web").into_iter().map(|(n, _)| n).collect();
    eventually("web.example is served", Duration::from_secs(60), || {
        let w = who(vip, "web.example", "/");
        if web.contains(&w) { Ok(()) } else { Err(w) }
    });
    print_memory(&node, "at idle");

    // Rolling restart of Portico under load.
    let (kept, fresh) = loads(vip);
    std::thread::sleep(Duration::from_secs(5));
    print_memory(&node, "under load");
    let started = Instant::now();
    let out = node.sh(&format!(
        "kubectl -n {NS} rollout restart deploy/portico && timeout 300 kubectl -n {NS} rollout status deploy/portico"
    ));
    assert!(out.status.success(), "{}", text(&out));
    eventually("the old Portico pods are gone", Duration::from_secs(90), || {
        let p = node.ok(&["get", "pods", "-n", NS, "-l", SELECTOR, "-o", "name"]);
        if p.lines().count() == 2 { Ok(()) } else { Err(p) }
    });
    eprintln!(
        "rollout restart of Portico took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    let (kept, fresh) = (kept.stop(), fresh.stop());
    report("rollout restart", &kept, &fresh);
    let restart_failed = kept.failed + fresh.failed;

    // Leader failover, under load as well.
    let replicas: Vec<String> = node.pods(NS, SELECTOR).into_iter().map(|(n, _)| n).collect();
    let leader = eventually("a replica holds the Lease", Duration::from_secs(60), || {
        let h = holder(&node);
        if replicas.contains(&h) { Ok(h) } else { Err(h) }
    });
    let other = replicas.iter().find(|p| **p != leader).unwrap().clone();
    let (kept, fresh) = loads(vip);
    std::thread::sleep(Duration::from_secs(2));
    let deleted = Instant::now();
    node.ok(&["delete", "pod", "-n", NS, &leader, "--wait=false"]);
    let new_leader = eventually("another replica takes the Lease", Duration::from_secs(60), || {
        let h = holder(&node);
        if !h.is_empty() && h != leader { Ok(h) } else { Err(h) }
    });
    let took = deleted.elapsed();
    eprintln!(
        "leader {leader} deleted → {new_leader} holds the Lease after {:.1} s",
        took.as_secs_f64()
    );
    // The follower that was running and the pod the ReplicaSet starts in the deleted one's place
    // both wait for the Lease to expire; either may win it.
    let running: Vec<String> = node.pods(NS, SELECTOR).into_iter().map(|(n, _)| n).collect();
    assert!(
        running.contains(&new_leader),
        "a running replica holds the Lease: {new_leader} not in {running:?}"
    );
    eprintln!(
        "the Lease went to {}",
        if new_leader == other {
            "the follower that was running"
        } else {
            "the replacement pod"
        }
    );

    // Status stays current: an Ingress made after the failover gets its address and an
    // Admitted Event written by the new leader.
    let out = node.sh("set -f; kubectl create ingress after --class=portico --rule=after.example/*=web:80");
    assert!(out.status.success(), "{}", text(&out));
    let address = eventually("the new Ingress gets an ADDRESS", Duration::from_secs(30), || {
        let a = node.ok(&[
            "get",
            "ingress",
            "after",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        if a.is_empty() {
            Err("no address yet".to_string())
        } else {
            Ok(a)
        }
    });
    assert_eq!(address, vip.ip().to_string());
    let reporter = eventually("the new leader's Admitted Event", Duration::from_secs(30), || {
        let r = node.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Ingress,involvedObject.name=after,reason=Admitted",
            "-o",
            "jsonpath={.items[*].reportingInstance}",
        ]);
        if r.is_empty() {
            Err("no Event yet".to_string())
        } else {
            Ok(r)
        }
    });
    assert_eq!(reporter, new_leader, "the Event comes from the new leader");
    let described = node.sh("kubectl describe ingress after");
    let shown = text(&described);
    eprintln!("$ kubectl describe ingress after\n{shown}");
    let events = shown.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events.contains("Admitted") && events.contains("is served by Portico"),
        "kubectl describe shows Portico's Event: {shown}"
    );
    eventually("after.example is served", Duration::from_secs(30), || {
        let w = who(vip, "after.example", "/");
        if web.contains(&w) { Ok(()) } else { Err(w) }
    });
    eventually(
        "the deleted leader's replacement is Ready",
        Duration::from_secs(90),
        || {
            let p = node.pods(NS, SELECTOR);
            if p.len() == 2 && p.iter().all(|(_, r)| r == "True") {
                Ok(())
            } else {
                Err(format!("{p:?}"))
            }
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let (kept, fresh) = (kept.stop(), fresh.stop());
    report("leader deleted", &kept, &fresh);
    assert_eq!(
        restart_failed, 0,
        "no request failed during the rolling restart (see above)"
    );
    assert_eq!(
        kept.failed + fresh.failed,
        0,
        "no request failed while the leader was deleted"
    );
}
