//! The `kubectl create ingress` cheat-sheet (examples/cheatsheet) on a real one-node cluster:
//! Portico installed with `kubectl apply -k deploy/`, the Services the cheat-sheet names backed
//! by real Deployments (agnhost porter: every port answers "POD PORT-ID", so each answer names
//! the pod and the Service port that served it; `svc` is a multi-port Service with named
//! `targetPort`s), TLS Secrets made with `kubectl create secret tls`, then each of the eight
//! `kubectl create ingress` commands run as the file's first line writes it (without
//! `--dry-run`), checked on every Portico replica and through the portico Service, and deleted
//! before the next (several claim foo.com).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::load::who;
use support::node::{Node, app_manifest, eventually, text};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cheatsheet/");

/// The Deployments behind the cheat-sheet's Services: name, replicas, and per Service port
/// (name, port, container port); each container port answers "POD NAME-PORTID".
/// A Service port: name (empty: unnamed), port, container port.
type Port = (&'static str, u16, u16);

const APPS: &[(&str, u32, &[Port])] = &[
    ("svc1", 1, &[("", 8080, 9301)]),
    (
        "svc",
        2,
        &[("port", 80, 9302), ("https", 443, 9303), ("alt", 8080, 9304)],
    ),
    ("svcadmin", 1, &[("portadmin", 80, 9305)]),
    ("svc2", 1, &[("http", 80, 9306)]),
    ("othersvc", 1, &[("", 8080, 9307)]),
    ("defaultsvc", 1, &[("http", 80, 9308)]),
];

/// A Deployment of agnhost porter and its Service; named Service ports target the container
/// port by name.
fn app(image: &str, name: &str, replicas: u32, ports: &[Port]) -> String {
    let id = |n: &str, p: u16| {
        if n.is_empty() {
            format!("{name}-{p}")
        } else {
            format!("{name}-{n}")
        }
    };
    let mut env = String::from("  - name: POD_NAME\n    valueFrom: {fieldRef: {fieldPath: metadata.name}}\n");
    let mut container_ports = String::new();
    let mut service_ports = String::new();
    for (n, port, target) in ports {
        env.push_str(&format!(
            "  - {{name: SERVE_PORT_{target}, value: \"$(POD_NAME) {}\"}}\n",
            id(n, *port)
        ));
        if n.is_empty() {
            container_ports.push_str(&format!("  - containerPort: {target}\n"));
            service_ports.push_str(&format!("- {{port: {port}, targetPort: {target}}}\n"));
        } else {
            container_ports.push_str(&format!("  - {{name: {n}, containerPort: {target}}}\n"));
            service_ports.push_str(&format!("- {{name: {n}, port: {port}, targetPort: {n}}}\n"));
        }
    }
    let pod = format!(
        "terminationGracePeriodSeconds: 1
containers:
- name: porter
  image: {image}
  imagePullPolicy: Never
  args: [porter]
  env:
{env}  ports:
{container_ports}"
    );
    app_manifest(name, replicas, &pod, &service_ports)
}

#[derive(Debug, Clone, Copy)]
enum Want {
    /// A pod of this Deployment answers through this Service port id.
    Pod(&'static str, &'static str),
    Status(u16),
}

/// A request and what must answer it: over TLS (with the certificate CN expected) or not.
#[derive(Debug, Clone, Copy)]
struct Check {
    tls: Option<&'static str>,
    host: &'static str,
    path: &'static str,
    want: Want,
}

const fn http(host: &'static str, path: &'static str, want: Want) -> Check {
    Check {
        tls: None,
        host,
        path,
        want,
    }
}

const fn https(cn: &'static str, host: &'static str, path: &'static str, want: Want) -> Check {
    Check {
        tls: Some(cn),
        host,
        path,
        want,
    }
}

use Want::{Pod, Status};
const DEFAULT_CERT: &str = "Portico Default Certificate";

/// Each cheat-sheet Ingress and what its rules must do (as tests/cheatsheet.rs, on pods).
const EXAMPLES: &[(&str, &[Check])] = &[
    (
        "simple",
        &[
            https("my-cert", "foo.com", "/bar", Pod("svc1", "svc1-8080")),
            https("my-cert", "foo.com", "/bar/x", Status(404)),
            http("foo.com", "/bar", Status(308)),
        ],
    ),
    (
        "catch-all",
        &[
            http("anything.example", "/path", Pod("svc", "svc-port")),
            http("other.test", "/path", Pod("svc", "svc-port")),
            http("other.test", "/path/x", Status(404)),
        ],
    ),
    (
        "annotated",
        &[
            http("foo.com", "/bar", Pod("svc", "svc-port")),
            http("foo.com", "/", Status(404)),
        ],
    ),
    (
        "multipath",
        &[
            http("foo.com", "/", Pod("svc", "svc-port")),
            http("foo.com", "/admin/", Pod("svcadmin", "svcadmin-portadmin")),
            http("foo.com", "/admin", Status(404)),
            http("foo.com", "/x", Status(404)),
        ],
    ),
    (
        "ingress1",
        &[
            http("foo.com", "/path", Pod("svc", "svc-alt")),
            http("foo.com", "/path/x", Pod("svc", "svc-alt")),
            http("foo.com", "/pathx", Status(404)),
            http("bar.com", "/admin/users", Pod("svc2", "svc2-http")),
            http("bar.com", "/path", Status(404)),
        ],
    ),
    (
        "ingtls",
        &[
            https(DEFAULT_CERT, "foo.com", "/", Pod("svc", "svc-https")),
            https(
                DEFAULT_CERT,
                "foo.com",
                "/path/subpath/a",
                Pod("othersvc", "othersvc-8080"),
            ),
            http("foo.com", "/", Status(308)),
        ],
    ),
    (
        "ingsecret",
        &[https("secret1", "foo.com", "/anything/at/all", Pod("svc", "svc-alt"))],
    ),
    (
        "ingdefault",
        &[
            https("secret1", "foo.com", "/x", Pod("svc", "svc-alt")),
            http("other.test", "/", Status(404)),
        ],
    ),
];

/// Who answered `c` at Portico's `ip` (ports 80 and 443): "POD PORT-ID" or the status, and
/// over TLS the certificate's CN.
fn ask(rt: &tokio::runtime::Runtime, ip: &str, c: &Check) -> (String, Option<String>) {
    match c.tls {
        None => (who(format!("{ip}:80").parse().unwrap(), c.host, c.path), None),
        Some(_) => {
            let addr: SocketAddr = format!("{ip}:443").parse().unwrap();
            match rt.block_on(support::tls_get(addr, Some(c.host), c.path, false)) {
                Ok(a) if a.status == 200 => (a.body.trim().to_string(), Some(a.cert_cn)),
                Ok(a) => (a.status.to_string(), Some(a.cert_cn)),
                Err(e) => (format!("error: {e}"), None),
            }
        }
    }
}

/// Whether the answer is what `c` wants, from a pod of `pods` (Deployment → its pods).
fn matches(c: &Check, got: &(String, Option<String>), pods: &[(String, Vec<String>)]) -> Result<(), String> {
    let ok = match c.want {
        Status(s) => got.0 == s.to_string(),
        Pod(app, id) => {
            let mut w = got.0.split_whitespace();
            let (pod, port) = (w.next().unwrap_or_default(), w.next().unwrap_or_default());
            port == id && pods.iter().any(|(a, ps)| a == app && ps.iter().any(|p| p == pod))
        }
    };
    let cn_ok = match (c.tls, &got.1) {
        (None, _) => true,
        (Some(want), Some(cn)) => want == cn,
        (Some(_), None) => false,
    };
    if ok && cn_ok {
        Ok(())
    } else {
        Err(format!("{c:?}: got {got:?}"))
    }
}

#[test]
fn every_cheatsheet_form_is_answered_by_the_right_pod() {
    let Some(node) = Node::start("cheatsheet") else { return };
    node.install_portico();
    let image = node.env["AGNHOST_IMAGE"].clone();
    let mut manifests = String::new();
    for (name, replicas, ports) in APPS {
        manifests.push_str(&app(&image, name, *replicas, ports));
    }
    node.apply(&manifests);
    // The cheat-sheet's IngressClasses: `default` (the cluster's default) and `otheringress`.
    node.ok(&["apply", "-f", &format!("{DIR}classes.yaml")]);
    // Its Secrets, made as users make them; CN = the Secret's name, to tell them apart.
    for secret in ["my-cert", "secret1"] {
        let (crt, key) = node.certificate(secret, "foo.com");
        let line = format!("kubectl create secret tls {secret} --cert={crt} --key={key}");
        let out = node.sh(&line);
        assert!(out.status.success(), "`{line}`: {}", text(&out));
    }
    for (name, _, _) in APPS {
        let out = node.sh(&format!("timeout 120 kubectl rollout status deployment {name}"));
        assert!(out.status.success(), "{name}: {}", text(&out));
    }
    let pods: Vec<(String, Vec<String>)> = APPS
        .iter()
        .map(|(name, _, _)| {
            let ps = node.pod_ips("default", &format!("app={name}"));
            (name.to_string(), ps.into_iter().map(|(n, _)| n).collect())
        })
        .collect();
    let portico: Vec<String> = node
        .pod_ips("portico-system", "app.kubernetes.io/name=portico")
        .into_iter()
        .map(|(_, ip)| ip)
        .collect();
    assert_eq!(portico.len(), 2, "two Portico replicas");
    let vip = node.cluster_ip("portico-system", "portico");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    for (example, checks) in EXAMPLES {
        let yaml = std::fs::read_to_string(format!("{DIR}{example}.yaml")).unwrap();
        let line = yaml
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .and_then(|l| l.strip_suffix(" --dry-run=client -o yaml"))
            .unwrap_or_else(|| panic!("{example}.yaml starts with its kubectl command"));
        eprintln!("$ {line}");
        // The rules hold `*`: no file name expansion, as if quoted.
        let out = node.sh(&format!("set -f; {line}"));
        assert!(out.status.success(), "`{line}`: {}", text(&out));
        let name = line.split_whitespace().nth(3).unwrap();
        assert_eq!(name, *example);

        // Every replica routes as the rules say; the first check waits for the Ingress to
        // reach it, the rest must hold at once (one Ingress is compiled as a whole).
        for ip in portico.iter().chain([&vip]) {
            let first = &checks[0];
            eventually(&format!("{example} at {ip}"), Duration::from_secs(30), || {
                matches(first, &ask(&rt, ip, first), &pods)
            });
            for c in &checks[1..] {
                if let Err(e) = matches(c, &ask(&rt, ip, c), &pods) {
                    panic!("{example} at {ip}: {e}");
                }
            }
        }
        // The leader writes the Ingress's address: the portico Service's cluster IP.
        eventually(&format!("{example} gets an ADDRESS"), Duration::from_secs(30), || {
            let a = node.ok(&[
                "get",
                "ingress",
                name,
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ]);
            if a == vip { Ok(()) } else { Err(a) }
        });
        if *example == "ingdefault" {
            // The default backend serves foo.com's unmatched paths, but `foo.com/*` leaves none;
            // Portico's route table (deploy/'s advice: port-forward to the admin listener) shows it.
            let pf = node.port_forward("portico-system", "deploy/portico", 10246);
            let out = node.sh(&format!("curl -sS --max-time 5 http://{}/routes", pf.local));
            let routes: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("/routes: {e}: {}", text(&out)));
            let foo = routes["hosts"]["foo.com"].as_array().cloned().unwrap_or_default();
            assert!(
                foo.iter()
                    .any(|r| r["pathType"] == "DefaultBackend" && r["backend"]["service"]["name"] == "defaultsvc"),
                "the default backend serves foo.com's unmatched paths: {foo:?}"
            );
        }
        eprintln!(
            "  {} checks answered as the rules say on both replicas and the Service",
            checks.len()
        );

        node.ok(&["delete", "ingress", name]);
        for ip in portico.iter().chain([&vip]) {
            let first = &checks[0];
            eventually(&format!("{example} gone at {ip}"), Duration::from_secs(30), || {
                let got = ask(&rt, ip, first);
                if got.0 == "404" {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            });
        }
    }
}
