//! A rolling update of an app under constant load on a real one-node cluster, as a user runs
//! it (`kubectl set env deployment/web ...`): the app's pods terminate slowly (a preStop sleep,
//! as apps that drain do). Through three Ingresses on the same Service: no affinity, cookie
//! affinity (`nginx.ingress.kubernetes.io/affinity: cookie`, balanced) and persistent cookie
//! affinity. No request fails; a session pinned to a pod that starts terminating keeps being
//! answered by it until that pod leaves the EndpointSlice.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::load::{Load, Spec, Tally};
use support::node::{Node, app_manifest, text};

/// When a poller of the EndpointSlices first saw each pod terminating and first saw it gone
/// (absent from the slices, or no longer serving).
#[derive(Default, Debug, Clone)]
struct Seen {
    terminating: Option<Instant>,
    left: Option<Instant>,
}

struct SliceWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    thread: std::thread::JoinHandle<()>,
}

impl SliceWatch {
    fn start(node: &Node, service: &str) -> SliceWatch {
        let (kubectl, kubeconfig): (PathBuf, PathBuf) = (node.kubectl.clone(), node.kubeconfig.clone());
        let selector = format!("kubernetes.io/service-name={service}");
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
        let (s, m) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let out = std::process::Command::new(&kubectl)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args([
                        "get",
                        "endpointslices",
                        "-l",
                        &selector,
                        "-o",
                        r#"jsonpath={range .items[*].endpoints[*]}{.targetRef.name} {.conditions.serving} {.conditions.terminating}{"\n"}{end}"#,
                    ])
                    .output()
                    .unwrap();
                let now = Instant::now();
                if !out.status.success() {
                    continue;
                }
                let mut serving = Vec::new();
                let mut m = m.lock().unwrap();
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    let f: Vec<&str> = line.split(' ').collect();
                    let [pod, srv, term] = f[..] else { continue };
                    let e = m.entry(pod.to_string()).or_default();
                    if term == "true" {
                        e.terminating.get_or_insert(now);
                    }
                    if srv == "true" {
                        serving.push(pod.to_string());
                    }
                }
                for (pod, e) in m.iter_mut() {
                    if !serving.contains(pod) {
                        e.left.get_or_insert(now);
                    }
                }
                drop(m);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        SliceWatch { stop, seen, thread }
    }

    fn stop(self) -> HashMap<String, Seen> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

/// How long a terminating app pod answers before it is killed, with room for the poller that
/// sees it terminating: the preStop alone holds it 8 s, the grace period ends at 15 s.
const SERVED_UNTIL_KILLED: Duration = Duration::from_secs(10);
/// How long after the test's poller sees a pod leave the slice Portico may still retry for it.
const SLICE_SEEN: Duration = Duration::from_secs(2);

/// Checks each session of `t` against what the slices showed: a session leaves a pod only
/// once that pod is terminating, after it answered while terminating. `pinned`: sessions never
/// move between pods that are both serving, and stay on a terminating pod until it is killed
/// (persistent mode; balanced mode may remap a session when a new pod joins the ring, as
/// documented), except just after leaving a killed pod: the container dies at the end of its
/// grace period a moment before the EndpointSlice drops it, and until Portico sees that,
/// requests whose cookie still names it are retried on other pods
/// (`session-cookie-change-on-failure` is off).
/// Returns how many sessions a terminating pod answered until it was killed.
fn check_sessions(what: &str, t: &Tally, seen: &HashMap<String, Seen>, pinned: bool) -> usize {
    let mut kept = 0;
    for (i, runs) in t.sessions.iter().enumerate() {
        // When the session last left a terminating pod: when that pod left the slice.
        let mut left_terminating: Option<Instant> = None;
        for w in runs.windows(2) {
            let (from, to) = (&w[0], &w[1]);
            let s = seen.get(&from.pod).cloned().unwrap_or_default();
            let moved = to.first;
            match s.terminating {
                Some(term) if term <= moved => {
                    assert!(
                        from.last >= term,
                        "{what} session {i}: left {} when it started terminating, before it stopped serving: {runs:?} {s:?}",
                        from.pod
                    );
                    let left = s
                        .left
                        .unwrap_or_else(|| panic!("{what}: {} never left the slice", from.pod));
                    left_terminating = Some(left);
                    // The app serves until it is killed at the end of its grace period (15 s;
                    // the preStop alone takes 8 s), a moment before the slice drops the pod:
                    // how long before depends on how busy the node is, so the session is
                    // judged by how long the terminating pod kept answering it.
                    let served = from.last.saturating_duration_since(term);
                    if served >= SERVED_UNTIL_KILLED {
                        kept += 1;
                    } else {
                        // Balanced: a pod that joined the ring took this session's position.
                        assert!(
                            !pinned,
                            "{what} session {i}: moved from {} after {served:?} of its termination, before it was killed: {runs:?}",
                            from.pod
                        );
                    }
                    eprintln!(
                        "{what} session {i}: {} answered it for {:.1} s while terminating; moved to {} {:.1} s after that pod was seen terminating ({:+.1} s from seen leaving the slice)",
                        from.pod,
                        served.as_secs_f64(),
                        to.pod,
                        moved.saturating_duration_since(term).as_secs_f64(),
                        moved.saturating_duration_since(left).as_secs_f64()
                            - left.saturating_duration_since(moved).as_secs_f64(),
                    );
                }
                // Until Portico sees the killed pod leave the slice, requests whose cookie
                // names it are retried on other pods (`session-cookie-change-on-failure` is
                // off), so a pinned session may hop until then.
                _ => assert!(
                    !pinned || left_terminating.is_some_and(|left| moved <= left + SLICE_SEEN),
                    "{what} session {i}: moved from {} to {} while {} was serving: {runs:?}",
                    from.pod,
                    to.pod,
                    from.pod
                ),
            }
        }
    }
    kept
}

#[test]
fn rolling_update_under_load_with_and_without_cookie_affinity() {
    let Some(node) = Node::start("rollout") else { return };
    // Persistent cookies mean the same on both replicas with a shared key (README, "Load
    // balancing and affinity"): the Secret deploy/ reads, made before the install.
    node.run(&[
        "kubectl create namespace portico-system",
        "kubectl -n portico-system create secret generic portico-affinity --from-literal=key=$(openssl rand -hex 32)",
    ]);
    node.install_portico();
    // The app drains slowly: 8 s of preStop while it still serves, as apps behind load
    // balancers do (serve-hostname also ignores SIGTERM: it serves until killed at the end of
    // the 15 s grace period); ready only when it answers.
    let pod = format!(
        "terminationGracePeriodSeconds: 15
containers:
- name: app
  image: {}
  imagePullPolicy: Never
  args: [serve-hostname, --port=8080]
  ports: [{{containerPort: 8080}}]
  readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
  lifecycle: {{preStop: {{sleep: {{seconds: 8}}}}}}
",
        node.env["AGNHOST_IMAGE"]
    );
    node.apply(&app_manifest(
        "web",
        3,
        &pod,
        "- {name: http, port: 80, targetPort: 8080}",
    ));
    node.run(&[
        "kubectl create ingress plain --class=portico --rule=plain.example/*=web:80",
        "kubectl create ingress balanced --class=portico --rule=balanced.example/*=web:80 --annotation nginx.ingress.kubernetes.io/affinity=cookie",
        "kubectl create ingress persistent --class=portico --rule=persistent.example/*=web:80 --annotation nginx.ingress.kubernetes.io/affinity=cookie --annotation nginx.ingress.kubernetes.io/affinity-mode=persistent",
        "timeout 120 kubectl rollout status deployment web",
    ]);
    let vip: SocketAddr = format!("{}:80", node.cluster_ip("portico-system", "portico"))
        .parse()
        .unwrap();
    let old: Vec<String> = node.pod_ips("default", "app=web").into_iter().map(|(n, _)| n).collect();
    for host in ["plain.example", "balanced.example", "persistent.example"] {
        support::node::eventually(&format!("{host} is served"), Duration::from_secs(60), || {
            let w = support::load::who(vip, host, "/");
            if old.contains(&w) { Ok(()) } else { Err(w) }
        });
    }

    let watch = SliceWatch::start(&node, "web");
    let plain = Load::start(Spec {
        threads: 3,
        ..Spec::new(vip, "plain.example", "/")
    });
    // Sessions: each thread keeps its cookie; new connections spread them over both replicas.
    let session = |host: &str| Spec {
        threads: 6,
        cookies: true,
        keep_alive: false,
        pause: Duration::from_millis(20),
        ..Spec::new(vip, host, "/")
    };
    let balanced = Load::start(session("balanced.example"));
    let persistent = Load::start(session("persistent.example"));
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let out = node.sh("kubectl set env deployment/web RELEASE=2 && timeout 300 kubectl rollout status deployment web");
    assert!(out.status.success(), "{}", text(&out));
    // The last old pods are still draining when the rollout says it is done.
    support::node::eventually("the old pods are gone", Duration::from_secs(60), || {
        let p = node.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
        if p.lines().count() == 3 { Ok(()) } else { Err(p) }
    });
    std::thread::sleep(Duration::from_secs(2));
    eprintln!("rolling update of 3 pods took {:.0} s", started.elapsed().as_secs_f64());
    let (plain, balanced, persistent) = (plain.stop(), balanced.stop(), persistent.stop());
    let seen = watch.stop();
    let new: Vec<String> = node.pod_ips("default", "app=web").into_iter().map(|(n, _)| n).collect();

    for (what, t) in [
        ("no affinity", &plain),
        ("balanced cookie", &balanced),
        ("persistent cookie", &persistent),
    ] {
        eprintln!("{what}: {}", t.summary());
        assert_eq!(t.failed, 0, "{what}: no failed request: {:?}", t.errors);
        if what == "no affinity" {
            assert!(
                new.iter().all(|p| t.pods.contains_key(p)),
                "{what}: the new pods answer: {:?}",
                t.pods
            );
        }
        assert!(
            old.iter().any(|p| t.pods.contains_key(p)),
            "{what}: old pods answered first"
        );
    }
    let kept_balanced = check_sessions("balanced", &balanced, &seen, false);
    let kept_persistent = check_sessions("persistent", &persistent, &seen, true);
    // Every persistent session began on an old pod, all of which terminated, and moved only
    // away from terminating pods.
    assert!(
        kept_persistent >= persistent.sessions.len(),
        "{kept_persistent} moves for {} sessions",
        persistent.sessions.len()
    );
    assert!(
        kept_balanced > 0,
        "some balanced session was answered by its terminating pod until it left"
    );
    for runs in balanced.sessions.iter().chain(&persistent.sessions) {
        let last = &runs.last().expect("every session was answered").pod;
        assert!(new.contains(last), "every session ends on a new pod: {runs:?}");
    }
}
