//! The README's "Gateway API" example on a fresh one-node cluster (a real kubelet, containerd,
//! kube-proxy; Portico's own image from `kubectl apply -k deploy/gateway`), its lines run as
//! they are written, but for the CRDs, which come from the local cache of the Gateway API Go
//! module (tests/gateway/crds.sh) instead of the release URL: the Gateway gets Programmed and
//! the address of its own Service, and curl through that address, over plain HTTP and over
//! HTTPS with the example's certificate, is answered by the example's pod.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::node::{Node, REPO, eventually, text};

/// The steps of the README's "Gateway API" shell block, in order: each a line, or a line with
/// its here-document.
fn readme_steps() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Gateway API\n"))
        .expect("README has a \"Gateway API\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the section has a sh block");
    let mut steps = Vec::new();
    let mut heredoc: Option<(String, String)> = None; // (step so far, its end word)
    for line in block.lines() {
        if let Some((step, end)) = &mut heredoc {
            step.push('\n');
            step.push_str(line);
            if line == end.as_str() {
                steps.push(std::mem::take(step));
                heredoc = None;
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.split_once("<<") {
            Some((_, word)) => {
                let end = word.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
                heredoc = Some((trimmed.to_string(), end));
            }
            None => steps.push(trimmed.to_string()),
        }
    }
    assert!(heredoc.is_none(), "a here-document of the README is not closed");
    steps
}

/// A step as a user runs it in `cwd`, with `kubectl` on PATH talking to the node and the
/// shell variables set by earlier steps.
fn shell(node: &Node, cwd: &Path, step: &str, vars: &HashMap<String, String>) -> Output {
    let bin = node.kubectl.parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    Command::new("bash")
        .args(["-o", "pipefail", "-c", step])
        .current_dir(cwd)
        .envs(vars)
        .env("PATH", path)
        .env("KUBECONFIG", &node.kubeconfig)
        .output()
        .unwrap()
}

/// The pods of the `shop` Deployment that are Ready.
fn shop_pods(node: &Node) -> Vec<String> {
    node.pods("default", "app=shop")
        .into_iter()
        .filter(|(_, ready)| ready == "True")
        .map(|(name, _)| name)
        .collect()
}

/// A curl step, made quiet and bounded, until the `shop` pod answers it; returns that pod.
fn answered_by_shop(node: &Node, cwd: &Path, step: &str, vars: &HashMap<String, String>) -> String {
    let curl = step
        .strip_prefix("curl ")
        .map(|rest| format!("curl --max-time 5 --silent --show-error --fail {rest}"))
        .unwrap_or_else(|| panic!("a curl step: {step}"));
    eventually(
        &format!("`{step}` is answered by the shop pod"),
        Duration::from_secs(90),
        || {
            let out = shell(node, cwd, &curl, vars);
            let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let pods = shop_pods(node);
            if out.status.success() && pods.contains(&body) {
                Ok(body)
            } else {
                Err(format!("pods {pods:?}; curl said: {}", text(&out)))
            }
        },
    )
}

/// A condition's status on an object, by jsonpath to its conditions.
fn condition(node: &Node, args: &[&str], conditions: &str, kind: &str) -> String {
    let jsonpath = format!("jsonpath={{{conditions}[?(@.type==\"{kind}\")].status}}");
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend(["-o", jsonpath.as_str()]);
    node.ok(&all)
}

#[test]
fn the_readme_gateway_example_on_a_real_cluster() {
    let Some(node) = Node::start("gateway") else { return };
    let steps = readme_steps();
    eprintln!("the README's Gateway API steps:\n{}", steps.join("\n"));
    // The user's working directory (shop.crt and shop.key land there); lines that name
    // deploy/ run from the repository's root, as in a checkout.
    let home = node.dir.join("user");
    std::fs::create_dir_all(&home).unwrap();

    // deploy/gateway names the published image, and the README agnhost's tag from the
    // registry: the images built here are loaded under those names, as `kind load` would.
    let rendered = node.ok(&["kustomize", &format!("{REPO}/deploy/gateway")]);
    let portico_image = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .expect("deploy/gateway has an image");
    node.tag_image(&node.env["PORTICO_IMAGE"], portico_image);
    let agnhost = steps
        .iter()
        .find_map(|s| s.split_whitespace().find_map(|w| w.strip_prefix("--image=")))
        .expect("the README creates a Deployment from an image");
    node.tag_image(&node.env["AGNHOST_IMAGE"], agnhost);

    let mut vars: HashMap<String, String> = HashMap::new();
    let mut answered = Vec::new();
    let mut seen = Vec::new();
    for step in &steps {
        eprintln!("$ {step}");
        let first = step.lines().next().unwrap();
        seen.push(first.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
        if first.contains("standard-install.yaml") {
            let url = first
                .split_whitespace()
                .find(|w| w.ends_with("standard-install.yaml"))
                .unwrap();
            let local = step.replace(url, "\"$(bash tests/gateway/crds.sh)\"");
            eprintln!("  (the CRDs from the local cache: {local})");
            let out = shell(&node, Path::new(REPO), &format!("timeout 600 {local}"), &vars);
            assert!(out.status.success(), "`{local}` failed:\n{}", text(&out));
            // A user's next line comes seconds later; Portico asks at start which are served.
            node.ok(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
            continue;
        }
        if let Some((var, _)) = first.split_once("=$(")
            && !var.is_empty()
            && var.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        {
            let value = eventually(&format!("`{step}` gives a value"), Duration::from_secs(60), || {
                let out = shell(&node, &home, &format!("{step}\nprintf %s \"${var}\""), &vars);
                let value = String::from_utf8_lossy(&out.stdout).to_string();
                if out.status.success() && !value.is_empty() {
                    Ok(value)
                } else {
                    Err(text(&out))
                }
            });
            eprintln!("  {var}={value}");
            vars.insert(var.to_string(), value);
            continue;
        }
        if first.starts_with("curl ") {
            let pod = answered_by_shop(&node, &home, step, &vars);
            eprintln!("  answered by {pod}");
            answered.push((step.clone(), pod));
            continue;
        }
        let cwd = if step.contains("deploy/") {
            Path::new(REPO)
        } else {
            home.as_path()
        };
        let out = shell(&node, cwd, &format!("timeout 180 {step}"), &vars);
        assert!(out.status.success(), "`{first}` failed:\n{}", text(&out));
        eprint!("{}", text(&out));
    }
    eprintln!("steps run: {seen:?}");

    // What the steps must have shown.
    assert!(
        steps.iter().any(|s| s.starts_with("kubectl apply -k deploy/gateway")),
        "the README installs Portico with deploy/gateway"
    );
    let ip = vars.get("IP").expect("the README reads the Gateway's address into IP");
    assert!(
        answered.iter().any(|(s, _)| s.contains("http://shop.example.com")),
        "the README curls over plain HTTP: {answered:?}"
    );
    assert!(
        answered.iter().any(|(s, _)| s.contains("https://shop.example.com")),
        "the README curls over HTTPS: {answered:?}"
    );

    // The Gateway: accepted, programmed, its address that of its own Service beside it in
    // `default` (without a load balancer, the Service's ClusterIP), not Portico's own Service's;
    // the curls above went through it (kube-proxy, then the EndpointSlice Portico writes).
    let gateway = ["gateway", "web", "-n", "default"];
    assert_eq!(condition(&node, &gateway, ".status.conditions", "Accepted"), "True");
    assert_eq!(condition(&node, &gateway, ".status.conditions", "Programmed"), "True");
    let services = node.ok(&[
        "get",
        "services",
        "-n",
        "default",
        "-l",
        "gateway.networking.k8s.io/gateway-name=web",
        "-o",
        r#"jsonpath={range .items[*]}{.spec.type} {.spec.clusterIP} {.spec.ports[*].port}{"\n"}{end}"#,
    ]);
    let rows: Vec<Vec<&str>> = services.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 1, "one Service for the Gateway web: {services}");
    assert_eq!(rows[0][0], "LoadBalancer", "{services}");
    assert_eq!(&rows[0][1], ip, "the Gateway's address is its Service's ClusterIP");
    let mut ports = rows[0][2..].to_vec();
    ports.sort_unstable();
    assert_eq!(ports, ["443", "80"], "the Service has the Gateway's ports: {services}");
    assert_ne!(ip, &node.cluster_ip("portico-system", "portico"));
    eprintln!("Gateway web: Accepted, Programmed, address {ip} (its own Service)");

    // The HTTPRoute: accepted by Portico on its parent, its backend resolved.
    let route = ["httproute", "shop", "-n", "default"];
    assert_eq!(
        condition(&node, &route, ".status.parents[0].conditions", "Accepted"),
        "True"
    );
    assert_eq!(
        condition(&node, &route, ".status.parents[0].conditions", "ResolvedRefs"),
        "True"
    );

    // HTTPS is served with shop-tls: the certificate the README made verifies it (no -k).
    let https = answered
        .iter()
        .find(|(s, _)| s.contains("https://"))
        .map(|(s, _)| s.clone())
        .unwrap();
    let https = https
        .split(" #")
        .next()
        .unwrap()
        .trim_end()
        .replace("curl -k ", "curl --cacert shop.crt ");
    assert!(https.contains("--cacert"), "{https}");
    let pod = answered_by_shop(&node, &home, &https, &vars);
    eprintln!("`{https}`: the certificate verifies with shop.crt, answered by {pod}");
}
