//! `helm install` of deploy/helm/portico on a fresh one-node cluster, as an ingress-nginx user
//! moving over does it: their bare-metal values file (tests/fixtures/helm/baremetal-nodeport.yaml:
//! NodePort Service with fixed node ports 30080/30443) with only the chart changed, then an app
//! and an Ingress of class `nginx` answered through node port 30080 on the node's address.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::node::{Node, eventually, text};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/portico");
const VALUES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/helm/baremetal-nodeport.yaml"
);

#[test]
fn helm_install_with_an_ingress_nginx_values_file() {
    let Some(node) = Node::start("helm") else { return };
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helm/build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "needs helm, built with Go on first use");
    let helm = format!("{}/helm", String::from_utf8(out.stdout).unwrap().trim());

    // The chart names the published image; the one built here is loaded under that name, as
    // `kind load docker-image` would.
    let rendered = node.sh(&format!(
        "{helm} template ingress-nginx {CHART} -n ingress-nginx -f {VALUES}"
    ));
    assert!(rendered.status.success(), "{}", text(&rendered));
    let image = String::from_utf8_lossy(&rendered.stdout)
        .lines()
        // The chart writes the image quoted.
        .find_map(|l| l.trim().strip_prefix("image: ").map(|i| i.trim_matches('"')))
        .expect("the chart names an image")
        .to_string();
    node.tag_image(&node.env["PORTICO_IMAGE"], &image);

    // One replica with a small CPU request: the one node also runs the test's app.
    node.run(&[
        &format!(
            "{helm} upgrade --install ingress-nginx {CHART} -n ingress-nginx --create-namespace -f {VALUES} \
             --set controller.replicaCount=1 --set controller.resources.requests.cpu=100m --wait --timeout 180s"
        ),
        "timeout 180 kubectl -n ingress-nginx rollout status deployment ingress-nginx-controller",
        "kubectl create deployment web --image=registry.k8s.io/e2e-test-images/agnhost:2.59 -- /agnhost serve-hostname --port=8080",
        "kubectl expose deployment web --port=80 --target-port=8080",
        "timeout 120 kubectl rollout status deployment web",
        "kubectl create ingress web --class=nginx --rule=web.example.com/*=web:80",
    ]);
    assert_eq!(
        node.ok(&["get", "ingressclass", "nginx", "-o", "jsonpath={.spec.controller}"]),
        "k8s.io/ingress-nginx"
    );
    assert_eq!(
        node.ok(&[
            "get",
            "configmap",
            "-n",
            "ingress-nginx",
            "ingress-nginx-controller",
            "-o",
            "jsonpath={.data.use-forwarded-headers}"
        ]),
        "true"
    );
    let web = node.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let url = format!("http://{}:30080/", node.ip);
    let body = eventually(
        "web.example.com through node port 30080",
        Duration::from_secs(60),
        || {
            let out = node.sh(&format!(
                "curl --silent --show-error --max-time 5 -H 'Host: web.example.com' {url}"
            ));
            let t = String::from_utf8_lossy(&out.stdout).to_string();
            if out.status.success() && t.trim() == web {
                Ok(t)
            } else {
                Err(text(&out))
            }
        },
    );
    eprintln!("curl -H 'Host: web.example.com' {url} → {}", body.trim());
}
