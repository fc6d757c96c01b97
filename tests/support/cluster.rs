//! A real kube-apiserver + etcd for end-to-end tests (tests/e2e/control-plane.sh), torn
//! down on drop, also when the test panics.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct ControlPlane {
    pub dir: PathBuf,
    pub server: String,
    pub admin_token: String,
    pub kubeconfig: PathBuf,
    /// kubectl of the same version as the server.
    pub kubectl: PathBuf,
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/control-plane.sh");
const BUILD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/build-control-plane.sh");

/// Builds kube-apiserver, etcd and kubectl the first time (minutes; the build's progress goes
/// to stderr), or finds them built. Panics with one line when that cannot be done.
fn built() {
    let out = Command::new("bash")
        .arg(BUILD)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "needs the control plane (kube-apiserver, etcd, kubectl), built with Go on first use: see the line above and README 'Tests'"
    );
}

impl ControlPlane {
    /// Builds (first time only) and starts a fresh control plane; waits for /readyz. A
    /// failed start (a free port taken by a parallel test between being picked and bound)
    /// is retried with new ports.
    pub fn start() -> ControlPlane {
        built();
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mut attempt = 0;
        let dir = loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("portico-cp-{}-{n}", std::process::id()));
            let out = Command::new("bash")
                .arg(SCRIPT)
                .arg("up")
                .arg(&dir)
                .output()
                .expect("bash runs");
            if out.status.success() {
                break dir;
            }
            let _ = Command::new("bash").arg(SCRIPT).arg("down").arg(&dir).status();
            attempt += 1;
            assert!(
                attempt < 3,
                "control plane did not start:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let env: HashMap<String, String> = std::fs::read_to_string(dir.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        ControlPlane {
            server: env["SERVER"].clone(),
            admin_token: env["TOKEN"].clone(),
            kubeconfig: PathBuf::from(&env["KUBECONFIG"]),
            kubectl: PathBuf::from(&env["KUBECTL"]),
            dir,
        }
    }

    /// kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap()
    }

    /// kubectl with a bearer token instead of the admin's.
    pub fn kubectl_as(&self, token: &str, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .args(["--server", &self.server, "--token", token])
            .arg("--certificate-authority")
            .arg(self.dir.join("ca.crt"))
            .args(args)
            .output()
            .unwrap()
    }

    /// kubectl as the admin; panics with its output when it fails. Returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.kubectl(args))
    }

    /// A kubeconfig that authenticates with `token` (a ServiceAccount's, say).
    pub fn kubeconfig_for(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.join(format!("kubeconfig-{name}"));
        let ca = self.dir.join("ca.crt");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\nusers:\n- name: {name}\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: {name}}}\ncurrent-context: e2e\n",
                self.server,
                ca.display()
            ),
        )
        .unwrap();
        path
    }

    /// `kubectl apply -f -` of a manifest text, as the admin.
    pub fn apply(&self, yaml: &str) -> String {
        let out = self.try_apply(yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of a manifest text, as the admin, failed or not.
    pub fn try_apply(&self, yaml: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Installs deploy/ and returns a kubeconfig for Portico's ServiceAccount.
    pub fn install_portico(&self) -> PathBuf {
        self.ok(&["apply", "-k", concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")]);
        let token = self.ok(&["create", "token", "portico", "-n", "portico-system", "--duration", "2h"]);
        self.kubeconfig_for("portico", token.trim())
    }

    /// Stops the API server only (etcd keeps the data).
    pub fn stop_apiserver(&self) {
        self.script("stop-apiserver");
    }

    /// Starts the API server again and waits for /readyz.
    pub fn start_apiserver(&self) {
        self.script("start-apiserver");
    }

    fn script(&self, command: &str) {
        let st = Command::new("bash")
            .arg(SCRIPT)
            .arg(command)
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(st.success(), "control-plane.sh {command} failed");
    }

    /// A kube-rs client as the admin.
    pub async fn client(&self) -> kube::Client {
        Self::client_with(&self.kubeconfig).await
    }

    /// A kube-rs client with a kubeconfig of `kubeconfig_for` or `install_portico`.
    pub async fn client_with(kubeconfig: &std::path::Path) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(SCRIPT).arg("down").arg(&self.dir).status();
    }
}

/// The stdout of a kubectl run that must have succeeded; else a panic with its output.
pub fn succeeded(args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
