//! A real kube-apiserver + etcd for end-to-end tests (tests/e2e/control-plane.sh), torn
//! down on drop, also when the test panics.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

pub struct ControlPlane {
    pub dir: PathBuf,
    pub server: String,
    pub admin_token: String,
    pub kubeconfig: PathBuf,
    /// kubectl of the same version as the server.
    pub kubectl: PathBuf,
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/control-plane.sh");

impl ControlPlane {
    /// Builds (first time only) and starts a fresh control plane; waits for /readyz.
    pub fn start() -> ControlPlane {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portico-cp-{}-{n}", std::process::id()));
        let out = Command::new("bash")
            .arg(SCRIPT)
            .arg("up")
            .arg(&dir)
            .output()
            .expect("bash runs");
        if !out.status.success() {
            let _ = Command::new("bash").arg(SCRIPT).arg("down").arg(&dir).status();
            panic!(
                "control plane did not start:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
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
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kube-rs client as the admin.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
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
