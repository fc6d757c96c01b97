//! A real one-node Kubernetes cluster (tests/cluster/node.sh): kubelet, containerd, kube-proxy
//! and the controllers, Portico's image imported. Torn down on drop, also when the test
//! panics; then the components' logs are kept under target/node-logs/.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster/node.sh");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// One node at a time on a machine (fixed addresses, bridge and hostPorts): tests of one
/// binary take turns; cargo runs test binaries one after another.
static ONE_NODE: Mutex<()> = Mutex::new(());

pub struct Node {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    /// The node's InternalIP, on the harness's own device.
    pub ip: String,
    pub env: HashMap<String, String>,
    name: String,
    _turn: MutexGuard<'static, ()>,
}

/// Why the node cannot run on this machine, if it cannot.
fn cannot_run() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    for tool in ["/usr/bin/containerd", "/usr/sbin/runc", "/usr/lib/cni/bridge"] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} is missing"));
        }
    }
    let image = std::env::var("PORTICO_IMAGE").unwrap_or_else(|_| "portico:dev".into());
    let docker = Command::new("docker").args(["image", "inspect", &image]).output();
    if !docker.map(|o| o.status.success()).unwrap_or(false) {
        return Some(format!("no image {image} in docker (bash scripts/image.sh)"));
    }
    None
}

/// Says in one line, past the test harness's output capture, that a test was skipped.
pub fn say_skipped(test: &str, why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped, the one-node cluster cannot run here ({why}); it needs root, containerd, runc, the CNI plugins and the image (.ci/run sets them up)"
    );
}

impl Node {
    /// A fresh node, or None (said in one line) where it cannot run. Under CI it must run.
    pub fn start(test: &str) -> Option<Node> {
        if let Some(why) = cannot_run() {
            assert!(
                std::env::var("CI").is_err(),
                "{test}: the one-node cluster must run in CI, but: {why}"
            );
            say_skipped(test, &why);
            return None;
        }
        let turn = ONE_NODE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = std::env::temp_dir().join(format!("portico-node-{}-{test}", std::process::id()));
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(SCRIPT)
            .arg("up")
            .arg(&dir)
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "the node did not come up:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("node up in {:.1} s", started.elapsed().as_secs_f64());
        let env: HashMap<String, String> = std::fs::read_to_string(dir.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Some(Node {
            kubeconfig: PathBuf::from(&env["KUBECONFIG"]),
            kubectl: PathBuf::from(&env["KUBECTL"]),
            ip: env["NODE_IP"].clone(),
            env,
            dir,
            name: test.to_string(),
            _turn: turn,
        })
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap()
    }

    /// kubectl as the admin; panics with its output when it fails. Returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        super::cluster::succeeded(args, &self.kubectl(args))
    }

    /// `kubectl apply -f -` of a manifest text.
    pub fn apply(&self, yaml: &str) -> String {
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A shell line as a user types it, from the repository's root, with `kubectl` on PATH
    /// talking to this node.
    pub fn sh(&self, line: &str) -> Output {
        let bin = self.kubectl.parent().unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        Command::new("bash")
            .args(["-o", "pipefail", "-c", line])
            .current_dir(REPO)
            .env("PATH", path)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .unwrap()
    }

    /// Gives an image containerd has under `from` the name `to` as well, as `kind load` or
    /// `minikube image load` do: pods that name `to` run it without a registry.
    pub fn tag_image(&self, from: &str, to: &str) {
        let full = |r: &str| {
            if r.split('/').next().is_some_and(|h| h.contains('.')) {
                r.to_string()
            } else if r.contains('/') {
                format!("docker.io/{r}")
            } else {
                format!("docker.io/library/{r}")
            }
        };
        let out = Command::new("ctr")
            .args([
                "--address",
                &self.env["CONTAINERD_SOCK"],
                "-n",
                "k8s.io",
                "images",
                "tag",
                "--force",
            ])
            .arg(full(from))
            .arg(full(to))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ctr images tag: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The memory a pod's containers use now, from its cgroup (v1: memory.usage_in_bytes
    /// less the page cache that can be dropped, as the kubelet counts the working set).
    pub fn pod_memory_working_set(&self, ns: &str, pod: &str) -> u64 {
        let uid = self.ok(&["get", "pod", "-n", ns, pod, "-o", "jsonpath={.metadata.uid}"]);
        let qos = self.ok(&["get", "pod", "-n", ns, pod, "-o", "jsonpath={.status.qosClass}"]);
        let mut dir = PathBuf::from("/sys/fs/cgroup/memory/kubepods");
        match qos.as_str() {
            "Burstable" => dir.push("burstable"),
            "BestEffort" => dir.push("besteffort"),
            _ => {}
        }
        dir.push(format!("pod{uid}"));
        let read =
            |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()));
        let usage: u64 = read("memory.usage_in_bytes").trim().parse().unwrap();
        let inactive_file: u64 = read("memory.stat")
            .lines()
            .find_map(|l| {
                l.strip_prefix("total_inactive_file ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        usage.saturating_sub(inactive_file)
    }
}

impl Node {
    /// `kubectl apply -k deploy/` with Portico's image built here loaded under the name
    /// deploy/ gives it (as `kind load docker-image` would); waits for the rollout.
    pub fn install_portico(&self) {
        let rendered = self.ok(&["kustomize", concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")]);
        let image = rendered
            .lines()
            .find_map(|l| l.trim().strip_prefix("image: "))
            .expect("deploy/ has an image")
            .to_string();
        self.tag_image(&self.env["PORTICO_IMAGE"], &image);
        self.run(&[
            "kubectl apply -k deploy/",
            "timeout 180 kubectl -n portico-system rollout status deployment portico",
        ]);
    }

    /// Runs each shell line as a user types it (no globbing: `--rule=host/*=svc:80` stays as
    /// written); panics with its output when one fails.
    pub fn run(&self, lines: &[&str]) {
        for line in lines {
            let out = self.sh(&format!("set -f; {line}"));
            assert!(out.status.success(), "`{line}`: {}", text(&out));
        }
    }

    /// Per pod matching `selector`, the jsonpath `fields` (separated by `=`), split.
    fn pod_rows(&self, ns: &str, selector: &str, fields: &str) -> Vec<Vec<String>> {
        let jsonpath = format!(r#"jsonpath={{range .items[*]}}{fields}{{"\n"}}{{end}}"#);
        self.ok(&["get", "pods", "-n", ns, "-l", selector, "-o", &jsonpath])
            .lines()
            .map(|l| l.split('=').map(str::to_string).collect())
            .collect()
    }

    /// `NAME=Ready status` of each pod matching `selector`.
    pub fn pods(&self, ns: &str, selector: &str) -> Vec<(String, String)> {
        let fields = r#"{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}"#;
        self.pod_rows(ns, selector, fields)
            .into_iter()
            .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.clone())))
            .collect()
    }

    /// Name and pod IP of each pod matching `selector` that is not being deleted.
    pub fn pod_ips(&self, ns: &str, selector: &str) -> Vec<(String, String)> {
        let fields = "{.metadata.name}={.status.podIP}={.metadata.deletionTimestamp}";
        self.pod_rows(ns, selector, fields)
            .into_iter()
            .filter(|r| r.len() == 3 && !r[1].is_empty() && r[2].is_empty())
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect()
    }

    /// A self-signed certificate for `host` whose subject CN is `cn`: the files (crt, key),
    /// for `kubectl create secret tls`.
    pub fn certificate(&self, cn: &str, host: &str) -> (String, String) {
        let crt = self.dir.join(format!("{cn}.crt"));
        let key = self.dir.join(format!("{cn}.key"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
            .arg(format!("/CN={cn}"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{host}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        (crt.display().to_string(), key.display().to_string())
    }

    /// A Service's cluster IP.
    pub fn cluster_ip(&self, ns: &str, svc: &str) -> String {
        self.ok(&["get", "svc", "-n", ns, svc, "-o", "jsonpath={.spec.clusterIP}"])
    }

    /// `kubectl port-forward TARGET :PORT` in namespace `ns`, as deploy/ advises for Portico's
    /// admin listener; stopped on drop.
    pub fn port_forward(&self, ns: &str, target: &str, port: u16) -> PortForward {
        use std::io::BufRead;
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            // A free local port: the remote one may be taken on the test machine.
            .args(["-n", ns, "port-forward", target, &format!(":{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Its output is read to the end: with the pipe closed, its next line (one per
        // connection) would fail, and the connection with it.
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("kubectl port-forward says where it listens");
        // "Forwarding from 127.0.0.1:PORT -> REMOTE"
        let local = first
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("port-forward said {first:?}"))
            .to_string();
        PortForward { child, local }
    }
}

pub struct PortForward {
    child: std::process::Child,
    /// Where it listens, `127.0.0.1:PORT`.
    pub local: String,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Deployment `name` (pods labelled `app: name`) whose pod spec is `pod_spec`, and a Service
/// `name` selecting its pods with `ports` (a YAML list); both texts without indentation.
pub fn app_manifest(name: &str, replicas: u32, pod_spec: &str, ports: &str) -> String {
    let indent = |t: &str, n: usize| t.lines().map(|l| format!("{:n$}{l}\n", "")).collect::<String>();
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{}---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports:
{}---
",
        indent(pod_spec, 6),
        indent(ports, 2)
    )
}

/// Retries `check` until it returns Some within `within`; panics with `what` and the last
/// failure otherwise.
pub fn eventually<T>(what: &str, within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what}: not within {within:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(SCRIPT).arg("down").arg(&self.dir);
        if std::thread::panicking() {
            let keep = PathBuf::from(REPO).join("target/node-logs").join(format!(
                "{}-{}",
                self.name,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
            ));
            let _ = std::fs::create_dir_all(&keep);
            let dump = self.sh(
                "kubectl get all,ingress,endpointslices,leases -A -o wide 2>&1; kubectl get events -A 2>&1; kubectl describe pods -A 2>&1",
            );
            let _ = std::fs::write(keep.join("cluster.txt"), text(&dump));
            cmd.arg(&keep);
            let _ = writeln!(std::io::stderr(), "the node's logs are kept in {}", keep.display());
        }
        let ok = cmd.status().is_ok_and(|s| s.success());
        if !std::thread::panicking() {
            assert!(ok, "tests/cluster/node.sh down left something behind (see above)");
        }
    }
}
