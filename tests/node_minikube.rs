//! deploy/minikube on a fresh one-node cluster, as docs/minikube.md tells a minikube user:
//! the overlay applied with kubectl, the controller pod Ready on the node's hostPorts 80 and
//! 443, then the doc's "Try it" block run as written (an app, an Ingress without a class),
//! answered through the hostPorts on the node's address over HTTP and HTTPS.

mod support;

use std::time::Duration;

use support::node::{Node, eventually, text};

/// The shell blocks of docs/minikube.md's section `title`.
fn doc_blocks(title: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/minikube.md")).unwrap();
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with(title))
        .unwrap_or_else(|| panic!("docs/minikube.md has a section {title:?}"));
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap().to_string())
        .collect()
}

#[test]
fn the_minikube_addon_shape_serves_through_the_host_ports() {
    let Some(node) = Node::start("minikube") else { return };
    // A shim for the one minikube command the walkthrough uses, `minikube ip`: the node's address.
    let shim = node.dir.join("bin");
    std::fs::create_dir_all(&shim).unwrap();
    std::fs::write(
        shim.join("minikube"),
        format!(
            "#!/bin/sh\n[ \"$1\" = ip ] && echo {} && exit 0\necho \"minikube $*: not here\" >&2\nexit 1\n",
            node.ip
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(shim.join("minikube"))
        .status()
        .unwrap();
    let with_shim = |line: &str| node.sh(&format!("PATH={}:$PATH; {line}", shim.display()));
    // minikube labels its node so; the addon's nodeSelector (and the overlay's) asks for it.
    node.ok(&["label", "node", &node.env["NODE_NAME"], "minikube.k8s.io/primary=true"]);

    // "Switch": the image is in the node already (imported as portico:dev, the overlay's
    // image); the `minikube` lines (addons disable, image build) have nothing to act on here.
    let switch = doc_blocks("Switch")[0].replace("\\\n", " ");
    for line in switch.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("minikube ") {
            continue;
        }
        eprintln!("$ {line}");
        if line.starts_with("kubectl wait") {
            // The pod must exist before `kubectl wait` can wait for it.
            eventually("the controller pod is Ready", Duration::from_secs(120), || {
                let out = node.sh(line);
                if out.status.success() { Ok(()) } else { Err(text(&out)) }
            });
            continue;
        }
        let out = node.sh(line);
        assert!(out.status.success(), "`{line}` failed:\n{}", text(&out));
        eprint!("{}", text(&out));
    }
    let controller = node.ok(&[
        "get",
        "pods",
        "-n",
        "ingress-nginx",
        "-l",
        "app.kubernetes.io/component=controller",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let idle = node.pod_memory_working_set("ingress-nginx", &controller);
    eprintln!(
        "{controller}: memory working set at idle {:.1} MiB",
        idle as f64 / 1048576.0
    );

    // "Try it": the block up to `kubectl get ingress` as one script (it holds a heredoc).
    let try_it = &doc_blocks("Try it")[0];
    let (setup, rest) = try_it.split_at(try_it.find("kubectl get ingress").expect("the block reads the Ingress"));
    let out = with_shim(&format!("set -e\n{setup}"));
    assert!(out.status.success(), "the walkthrough's setup failed:\n{}", text(&out));
    eprint!("{}", text(&out));
    let web_pods = node.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let web_pods: Vec<&str> = web_pods.split_whitespace().collect();
    let mut lines = rest.lines();
    let get = lines.next().unwrap();
    let address = eventually("the Ingress shows the node's address", Duration::from_secs(60), || {
        let out = node.sh(get);
        let t = text(&out);
        if t.contains(&node.ip) { Ok(t) } else { Err(t) }
    });
    eprint!("$ {get}\n{address}");
    let curl = lines.next().expect("the block ends with curl");
    assert!(curl.starts_with("curl "), "{curl}");
    let body = eventually(
        "curl through hostPort 80 is answered by the web pod",
        Duration::from_secs(30),
        || {
            let out = with_shim(&format!("{curl} --max-time 5 --silent --show-error"));
            let t = String::from_utf8_lossy(&out.stdout).to_string();
            match t.lines().last() {
                Some(last)
                    if out.status.success() && t.starts_with("HTTP/1.1 200") && web_pods.contains(&last.trim()) =>
                {
                    Ok(t)
                }
                _ => Err(text(&out)),
            }
        },
    );
    eprintln!("$ {curl}\n{body}");

    // HTTPS on hostPort 443: the placeholder certificate ingress-nginx users expect, no HSTS.
    let https = node.sh(&format!(
        "curl -k -v -i --max-time 5 --silent --show-error --resolve hello-world.example:443:{} https://hello-world.example/",
        node.ip
    ));
    let t = text(&https);
    assert!(https.status.success(), "{t}");
    assert!(t.contains("HTTP/2 200") || t.contains("HTTP/1.1 200"), "{t}");
    assert!(t.contains("CN=Kubernetes Ingress Controller Fake Certificate"), "{t}");
    assert!(
        !t.to_ascii_lowercase().contains("strict-transport-security"),
        "no HSTS: {t}"
    );
    let last = String::from_utf8_lossy(&https.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        web_pods.contains(&last.as_str()),
        "answered by {last}, not one of {web_pods:?}"
    );
    eprintln!("HTTPS through hostPort 443 answered by {last}");
}
