//! Install, as a user does it: `kubectl apply -k deploy/` on a fresh one-node cluster (a real
//! kubelet, containerd, kube-proxy; Portico's own image), then the README's "Deploy to a
//! cluster" lines, run as they are written.

mod support;

use std::time::{Duration, Instant};

use support::node::{Node, eventually, text};

/// The shell lines of the README's "Deploy to a cluster" section, in order.
fn readme_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Deploy to a cluster\n"))
        .expect("README has a \"Deploy to a cluster\" section");
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        match (in_sh, line.trim()) {
            (false, "```sh") => in_sh = true,
            (true, "```") => in_sh = false,
            (true, l) if !l.is_empty() && !l.starts_with('#') => lines.push(l.to_string()),
            _ => {}
        }
    }
    lines
}

#[test]
fn install_with_kubectl_then_the_readme_steps() {
    let Some(node) = Node::start("install") else { return };

    // deploy/ names the published image; the one built here is loaded under that name, as
    // `kind load docker-image` or `minikube image load` would.
    let rendered = node.ok(&["kustomize", concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")]);
    let image = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .expect("deploy/ has an image")
        .to_string();
    node.tag_image(&node.env["PORTICO_IMAGE"], &image);

    let lines = readme_lines();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("kubectl apply -k deploy/")),
        "the README's section starts with the install: {lines:?}"
    );
    let mut address = String::new();
    let mut ingress_created = None;
    for line in &lines {
        eprintln!("$ {line}");
        if line.starts_with("kubectl get ingress") {
            // A user runs it again until the controller has written the address.
            address = eventually("the Ingress gets an ADDRESS", Duration::from_secs(60), || {
                let addr = node.ok(&[
                    "get",
                    "ingress",
                    "web",
                    "-o",
                    "jsonpath={.status.loadBalancer.ingress[0].ip}",
                ]);
                if addr.is_empty() {
                    Err("no address in the status yet".to_string())
                } else {
                    Ok(addr)
                }
            });
            let out = node.sh(line);
            assert!(out.status.success(), "`{line}` failed:\n{}", text(&out));
            eprint!("{}", text(&out));
            let shown = text(&out);
            let header = shown.lines().next().unwrap_or_default();
            let row = shown.lines().nth(1).unwrap_or_default();
            let col = header.find("ADDRESS").expect("kubectl shows an ADDRESS column");
            assert_eq!(
                row.get(col..).and_then(|r| r.split_whitespace().next()),
                Some(address.as_str())
            );
            continue;
        }
        if line.contains("<ADDRESS>") {
            assert!(!address.is_empty(), "the README reads an ADDRESS before it uses one");
            let line = line.replace("<ADDRESS>", &address);
            let web_pods: Vec<String> = node.pods("default", "app=web").into_iter().map(|(n, _)| n).collect();
            let body = eventually("curl is answered by a web pod", Duration::from_secs(30), || {
                let out = node.sh(&format!("{line} --max-time 5 --silent --show-error"));
                let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if out.status.success() && web_pods.contains(&body) {
                    Ok(body)
                } else {
                    Err(text(&out))
                }
            });
            if let Some(t) = ingress_created {
                let t: Instant = t;
                eprintln!(
                    "kubectl create ingress → first answer through Portico: {:.2} s",
                    t.elapsed().as_secs_f64()
                );
            }
            eprintln!("answered by {body}");
            // Both replicas of the app take turns behind the one Ingress, once both are ready
            // (the README's steps do not wait for the second replica; the first answer can come
            // before it is). Every answer comes from one of them.
            let mut seen = std::collections::BTreeSet::new();
            eventually("both web pods answer", Duration::from_secs(60), || {
                let out = node.sh(&format!("{line} --max-time 5 --silent --show-error"));
                assert!(out.status.success(), "{}", text(&out));
                let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
                assert!(web_pods.contains(&body), "answered by {body}, not one of {web_pods:?}");
                seen.insert(body);
                if seen.len() == 2 {
                    Ok(())
                } else {
                    Err(format!("only {seen:?} so far"))
                }
            });
            continue;
        }
        let out = node.sh(&format!("timeout 180 {line}"));
        assert!(out.status.success(), "`{line}` failed:\n{}", text(&out));
        eprint!("{}", text(&out));
        if line.starts_with("kubectl create ingress") {
            ingress_created = Some(Instant::now());
        }
        if line.starts_with("kubectl -n portico-system rollout status") {
            check_install(&node);
        }
    }
    assert!(!address.is_empty(), "the README's steps read the Ingress's ADDRESS");
    // Without a load balancer the status carries the portico Service's cluster IP.
    let cluster_ip = node.cluster_ip("portico-system", "portico");
    assert_eq!(address, cluster_ip);

    for (pod, _) in node.pods("portico-system", "app.kubernetes.io/name=portico") {
        let bytes = node.pod_memory_working_set("portico-system", &pod);
        eprintln!("{pod}: memory working set {:.1} MiB", bytes as f64 / 1048576.0);
    }

    routes_through_port_forward(&node);
    ready_to_routed(&node, &address);
}

/// deploy/'s own advice for reading /routes, which listens on the pod's loopback only:
/// `kubectl port-forward deploy/portico 10246`, then curl it.
fn routes_through_port_forward(node: &Node) {
    let pf = node.port_forward("portico-system", "deploy/portico", 10246);
    let out = node.sh(&format!("curl -sS --max-time 5 http://{}/routes", pf.local));
    drop(pf);
    let routes = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && routes.contains("web.example.com"),
        "/routes: {}",
        text(&out)
    );
    eprintln!("kubectl port-forward deploy/portico :10246 → /routes lists web.example.com");
}

/// How long after the kubelet marks a new pod Ready Portico sends it traffic: the app scaled
/// to 0 (every request answered 503), then to 1; the pod's Ready comes from a watch, the first
/// 200 from requests every few milliseconds.
fn ready_to_routed(node: &Node, address: &str) {
    use std::io::BufRead;
    node.ok(&["scale", "deployment", "web", "--replicas=0"]);
    let curl = format!(
        "curl -sk -o /dev/null -w '%{{http_code}}' --max-time 2 --resolve web.example.com:443:{address} https://web.example.com/"
    );
    eventually("no web pod is left", Duration::from_secs(60), || {
        let code = String::from_utf8_lossy(&node.sh(&curl).stdout).to_string();
        if code == "503" { Ok(()) } else { Err(code) }
    });
    // Terminating pods may still say Ready: the watch starts once they are gone.
    eventually("the web pods are gone", Duration::from_secs(60), || {
        let left = node.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
        if left.trim().is_empty() { Ok(()) } else { Err(left) }
    });
    let mut watch = std::process::Command::new(&node.kubectl)
        .arg("--kubeconfig")
        .arg(&node.kubeconfig)
        .args([
            "get",
            "pods",
            "-l",
            "app=web",
            "-w",
            "-o",
            r#"jsonpath={.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}"#,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(watch.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            if line.ends_with(" True") && tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    node.ok(&["scale", "deployment", "web", "--replicas=1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let routed = loop {
        assert!(Instant::now() < deadline, "the new web pod got no traffic within 60 s");
        let code = String::from_utf8_lossy(&node.sh(&curl).stdout).to_string();
        if code == "200" {
            break Instant::now();
        }
    };
    let ready = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the watch saw the pod Ready");
    let _ = watch.kill();
    let _ = watch.wait();
    eprintln!(
        "new pod Ready (kubelet, seen by a watch) → first request through Portico answered by it: {:.0} ms",
        routed.saturating_duration_since(ready).as_secs_f64() * 1e3
    );
    assert!(
        routed >= ready || ready - routed < Duration::from_millis(200),
        "traffic before Ready"
    );
}

/// What `kubectl apply -k deploy/` must have given: two Ready pods of Portico's own image,
/// one of them holding the Lease, and the IngressClass.
fn check_install(node: &Node) {
    let portico = node.pods("portico-system", "app.kubernetes.io/name=portico");
    assert_eq!(portico.len(), 2, "two replicas: {portico:?}");
    assert!(
        portico.iter().all(|(_, ready)| ready == "True"),
        "all Ready: {portico:?}"
    );
    let names: Vec<&str> = portico.iter().map(|(n, _)| n.as_str()).collect();
    let holder = eventually("a replica holds the Lease", Duration::from_secs(30), || {
        let h = node.ok(&[
            "get",
            "lease",
            "-n",
            "portico-system",
            "portico-leader",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        if names.contains(&h.as_str()) {
            Ok(h)
        } else {
            Err(format!("holder {h:?}"))
        }
    });
    eprintln!("Lease portico-leader held by {holder}");
    assert_eq!(
        node.ok(&["get", "ingressclass", "portico", "-o", "jsonpath={.spec.controller}"]),
        "portico.dev/ingress-controller"
    );
    let image = node.ok(&[
        "get",
        "pods",
        "-n",
        "portico-system",
        "-l",
        "app.kubernetes.io/name=portico",
        "-o",
        "jsonpath={.items[0].status.containerStatuses[0].imageID}",
    ]);
    eprintln!("Portico runs image {image}");
}
