//! A test host in its own network namespace (veth pair, addresses of its own), running an
//! echo pod; removed on drop. Traffic goes only to this namespace's address.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct TestHost {
    ns: String,
    host_if: String,
    echo: Option<Child>,
    /// Where the echo pod listens, inside the namespace.
    pub addr: SocketAddr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("iproute2 is installed");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestHost {
    /// `index` picks a /30 in 203.0.113.0/24 (TEST-NET-3, not this machine's network), so
    /// that several hosts can exist at once.
    pub fn start(index: u8, pod: &str) -> TestHost {
        let uid = Command::new("id").arg("-u").output().expect("id runs");
        assert!(
            String::from_utf8_lossy(&uid.stdout).trim() == "0",
            "needs root (network namespaces): run the tests as root, or see README 'Tests'"
        );
        let tag = format!("{}{index}", std::process::id() % 100_000);
        let ns = format!("portico-{tag}");
        let host_if = format!("pv{tag}h");
        let ns_if = format!("pv{tag}n");
        let base = 64 + 4 * u32::from(index % 40);
        let (host_ip, ns_ip) = (format!("203.0.113.{}", base + 1), format!("203.0.113.{}", base + 2));
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        ip(&["netns", "add", &ns]);
        let mut host = TestHost {
            ns: ns.clone(),
            host_if: host_if.clone(),
            echo: None,
            addr: format!("{ns_ip}:8080").parse().unwrap(),
        };
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]);
        ip(&["link", "set", &ns_if, "netns", &ns]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        ip(&["-n", &ns, "link", "set", &ns_if, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        host.echo = Some(
            Command::new("ip")
                .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_portico"), "echo", "--listen"])
                .arg(host.addr.to_string())
                .args(["--name", pod])
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&host.addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "echo pod in {ns} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        host
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(mut c) = self.echo.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
