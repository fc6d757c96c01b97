//! The Service topics on a real one-node cluster, where readiness comes from the kubelet's
//! probes, EndpointSlices from the EndpointSlice controller and pods from Deployments: a pod
//! whose readiness probe fails leaves Portico's rotation and comes back when it passes;
//! `publishNotReadyAddresses`; a selector-less Service with an EndpointSlice written by hand;
//! an ExternalName Service; a Deployment scaled 1 → 5 → 1 under constant load without a
//! failed request.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use support::load::{Load, Spec, who};
use support::node::{Node, app_manifest, eventually, text};

/// A Deployment `name` of agnhost `args` on port 8080 and its Service (port 80), with `extra`
/// (containers after the first, probes; indented as list items of `containers`) appended.
fn app(image: &str, name: &str, replicas: u32, args: &str, extra: &str) -> String {
    let pod = format!(
        "terminationGracePeriodSeconds: 5
containers:
- name: app
  image: {image}
  imagePullPolicy: Never
  args: [{args}]
  ports: [{{containerPort: 8080}}]
{extra}"
    );
    app_manifest(name, replicas, &pod, "- {name: http, port: 80, targetPort: 8080}")
}

/// Who answers `host` through Portico `n` times in a row.
fn answers(vip: SocketAddr, host: &str, n: usize) -> Vec<String> {
    (0..n).map(|_| who(vip, host, "/hostname")).collect()
}

/// Waits until `n` answers in a row for `host` all come from `pods`, and at least one from each.
fn served_by(vip: SocketAddr, host: &str, pods: &[&str], what: &str) {
    eventually(what, Duration::from_secs(60), || {
        let got = answers(vip, host, 8 * pods.len());
        let seen: BTreeSet<&str> = got.iter().map(String::as_str).collect();
        let want: BTreeSet<&str> = pods.iter().copied().collect();
        if seen == want { Ok(()) } else { Err(format!("{got:?}")) }
    });
}

#[test]
fn service_topics_from_real_controllers() {
    let Some(node) = Node::start("services") else { return };
    node.install_portico();
    let img = node.env["AGNHOST_IMAGE"].clone();
    // `ready`: the app (netexec) beside a gRPC health server whose status the test flips over
    // HTTP (/make-not-serving, /make-serving); the pod's readiness probe asks it.
    let health = "- name: health
  image: IMAGE
  imagePullPolicy: Never
  args: [grpc-health-checking, --port=5000, --http-port=8081]
  readinessProbe: {grpc: {port: 5000}, periodSeconds: 1, failureThreshold: 1, successThreshold: 1}
"
    .replace("IMAGE", &img);
    // `never`: a pod whose readiness probe never passes (nothing listens on 9999); the same
    // pod behind `pnr` (publishNotReadyAddresses) and behind `never` (not published).
    let never_probe = "  readinessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1}\n";
    let mut manifests = app(&img, "ready", 2, "netexec, --http-port=8080", &health);
    manifests.push_str(&app(&img, "never", 1, "netexec, --http-port=8080", never_probe));
    manifests.push_str(&app(&img, "plain", 2, "serve-hostname, --port=8080", ""));
    manifests.push_str(&app(&img, "scale", 1, "serve-hostname, --port=8080", ""));
    manifests.push_str(
        "apiVersion: v1
kind: Service
metadata: {name: pnr}
spec:
  publishNotReadyAddresses: true
  selector: {app: never}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: manual}
spec:
  ports: [{name: http, port: 80}]
",
    );
    node.apply(&manifests);
    for d in ["ready", "plain", "scale"] {
        let out = node.sh(&format!("timeout 120 kubectl rollout status deployment {d}"));
        assert!(out.status.success(), "{d}: {}", text(&out));
    }
    // ExternalName is a DNS name that Portico resolves with its pod's resolver. The harness
    // runs no cluster DNS, so the name comes from the pod's /etc/hosts (`hostAliases`, which
    // the resolver reads before DNS): it names the `plain` Service's cluster IP.
    let plain_ip = node.cluster_ip("default", "plain");
    let external = "plain.apps.example.internal";
    let patch = format!(
        r#"{{"spec":{{"template":{{"spec":{{"hostAliases":[{{"ip":"{plain_ip}","hostnames":["{external}"]}}]}}}}}}}}"#
    );
    node.ok(&[
        "-n",
        "portico-system",
        "patch",
        "deployment",
        "portico",
        "--type",
        "merge",
        "-p",
        &patch,
    ]);
    let out = node.sh("timeout 180 kubectl -n portico-system rollout status deployment portico");
    assert!(out.status.success(), "{}", text(&out));
    node.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: ext}}\nspec: {{type: ExternalName, externalName: {external}}}\n"
    ));
    let line = "kubectl create ingress services --class=portico --rule=ready.example/*=ready:80 \
                --rule=pnr.example/*=pnr:80 --rule=never.example/*=never:80 \
                --rule=manual.example/*=manual:http --rule=ext.example/*=ext:80 --rule=scale.example/*=scale:80";
    let out = node.sh(&format!("set -f; {line}"));
    assert!(out.status.success(), "`{line}`: {}", text(&out));
    let vip: SocketAddr = format!("{}:80", node.cluster_ip("portico-system", "portico"))
        .parse()
        .unwrap();

    // Readiness from the kubelet's probe.
    let ready = node.pod_ips("default", "app=ready");
    let names: Vec<&str> = ready.iter().map(|(n, _)| n.as_str()).collect();
    served_by(vip, "ready.example", &names, "both ready pods answer");
    let load = Load::start(Spec::new(vip, "ready.example", "/hostname"));
    let (a, a_ip) = &ready[0];
    let b = &ready[1].0;
    let flip = |ip: &str, to: &str| {
        let out = node.sh(&format!("curl -sS --max-time 5 http://{ip}:8081/{to}"));
        assert!(out.status.success(), "{to}: {}", text(&out));
    };
    flip(a_ip, "make-not-serving");
    eventually("the kubelet marks the pod not Ready", Duration::from_secs(30), || {
        let p = node.pods("default", "app=ready");
        if p.iter().any(|(n, r)| n == a && r == "False") {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    served_by(vip, "ready.example", &[b], "the not-ready pod leaves the rotation");
    eprintln!("{a}: readiness probe fails → only {b} answers");
    flip(a_ip, "make-serving");
    served_by(vip, "ready.example", &names, "the pod comes back when its probe passes");
    eprintln!("{a}: readiness probe passes → both answer again");
    let tally = load.stop();
    eprintln!("load on ready.example meanwhile: {}", tally.summary());
    assert_eq!(tally.failed, 0, "no failed request: {:?}", tally.errors);

    // publishNotReadyAddresses: the never-ready pod is served through `pnr` only.
    let never = node.pod_ips("default", "app=never");
    let never_pod = never[0].0.as_str();
    assert_eq!(node.pods("default", "app=never")[0].1, "False", "the pod is not Ready");
    served_by(
        vip,
        "pnr.example",
        &[never_pod],
        "publishNotReadyAddresses routes to a not-ready pod",
    );
    for got in answers(vip, "never.example", 5) {
        assert_eq!(got, "503", "the same pod behind a Service that does not publish it");
    }
    eprintln!("{never_pod} (not Ready): answers through pnr (publishNotReadyAddresses), 503 through never");

    // A Service without a selector and an EndpointSlice written by hand, then rewritten.
    let plain = node.pod_ips("default", "app=plain");
    let slice = |ip: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: manual-1
  labels: {{kubernetes.io/service-name: manual}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- addresses: [\"{ip}\"]
  conditions: {{ready: true}}
"
        )
    };
    node.apply(&slice(&plain[0].1));
    served_by(
        vip,
        "manual.example",
        &[&plain[0].0],
        "the hand-made EndpointSlice routes",
    );
    node.apply(&slice(&plain[1].1));
    served_by(
        vip,
        "manual.example",
        &[&plain[1].0],
        "the rewritten EndpointSlice routes",
    );
    eprintln!(
        "selector-less Service: {} then {} as the hand-made slice says",
        plain[0].0, plain[1].0
    );

    // ExternalName → the name → the `plain` Service's address, through kube-proxy to its pods.
    let plain_names: Vec<&str> = plain.iter().map(|(n, _)| n.as_str()).collect();
    served_by(vip, "ext.example", &plain_names, "the ExternalName Service routes");
    eprintln!("ExternalName {external} ({plain_ip}): answered by {plain_names:?}");

    // 1 → 5 → 1 under constant load.
    let load = Load::start(Spec::new(vip, "scale.example", "/"));
    std::thread::sleep(Duration::from_secs(2));
    node.ok(&["scale", "deployment", "scale", "--replicas=5"]);
    let out = node.sh("timeout 120 kubectl rollout status deployment scale");
    assert!(out.status.success(), "{}", text(&out));
    let five = node.pod_ips("default", "app=scale");
    let five_names: Vec<&str> = five.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(five_names.len(), 5);
    served_by(vip, "scale.example", &five_names, "all 5 pods answer");
    std::thread::sleep(Duration::from_secs(3));
    node.ok(&["scale", "deployment", "scale", "--replicas=1"]);
    let left = eventually("one pod is left", Duration::from_secs(60), || {
        let p = node.ok(&["get", "pods", "-l", "app=scale", "-o", "name"]);
        let p: Vec<&str> = p.lines().collect();
        if p.len() == 1 {
            Ok(p[0].trim_start_matches("pod/").to_string())
        } else {
            Err(format!("{p:?}"))
        }
    });
    served_by(vip, "scale.example", &[&left], "only the last pod answers");
    std::thread::sleep(Duration::from_secs(2));
    let tally = load.stop();
    eprintln!("scale 1 → 5 → 1 under load: {}", tally.summary());
    assert_eq!(tally.failed, 0, "no failed request: {:?}", tally.errors);
    let seen: BTreeSet<&str> = tally.pods.keys().map(String::as_str).collect();
    assert!(
        five_names.iter().all(|p| seen.contains(p)),
        "the load reached all 5 pods: {seen:?}"
    );
}
