//! The Helm chart (deploy/helm/portico) with `helm` built from its Go module
//! (tests/helm/build.sh): `helm lint`, `helm template` with values files written as
//! ingress-nginx users write them (tests/fixtures/helm/), assertions on the rendered objects,
//! every rendered flag checked against `portico --help`, `helm install` with each on a real
//! kube-apiserver, and the chart compared object by object with `kubectl kustomize deploy/` for
//! deploy/base's choices.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use support::cluster::ControlPlane;
use support::go_built;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/portico");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/helm");
const BUILD_HELM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helm/build.sh");
const BUILD_KUBECTL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/build-control-plane.sh");

fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| go_built(BUILD_HELM, "helm").join("helm"))
}

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

/// `helm template RELEASE CHART -n NAMESPACE -f VALUES [--set ...]`: the rendered objects, or
/// helm's error text.
fn try_template(release: &str, namespace: &str, values: &str, set: &[&str]) -> Result<Vec<Value>, String> {
    let mut cmd = Command::new(helm());
    cmd.args([
        "template",
        release,
        CHART,
        "--namespace",
        namespace,
        "-f",
        &fixture(values),
    ]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("helm runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(parse(&String::from_utf8(out.stdout).unwrap()))
}

fn template(release: &str, namespace: &str, values: &str) -> Vec<Value> {
    try_template(release, namespace, values, &[]).unwrap_or_else(|e| panic!("helm template -f {values} failed:\n{e}"))
}

/// An ingress-nginx user's usual install: release and namespace `ingress-nginx`.
fn nginx_install(values: &str) -> Vec<Value> {
    template("ingress-nginx", "ingress-nginx", values)
}

fn parse(text: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).expect("rendered YAML parses");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", names(objects)))
}

fn has(objects: &[Value], kind: &str) -> bool {
    objects.iter().any(|o| o["kind"] == kind)
}

fn names(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn pod(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn args(workload: &Value) -> Vec<String> {
    pod(workload)["containers"][0]["args"]
        .as_array()
        .expect("the controller has args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let prefix = format!("--{flag}=");
    args.iter().find_map(|a| a.strip_prefix(&prefix))
}

fn port<'a>(service: &'a Value, name: &str) -> &'a Value {
    service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
}

const ALL: [&str; 6] = [
    "defaults.yaml",
    "daemonset-hostnetwork.yaml",
    "baremetal-nodeport.yaml",
    "aws-nlb.yaml",
    "config.yaml",
    "kustomize-base.yaml",
];

#[test]
fn lint_passes_with_every_values_file() {
    for values in ALL {
        let out = Command::new(helm())
            .args([
                "lint",
                "--strict",
                CHART,
                "--namespace",
                "ingress-nginx",
                "-f",
                &fixture(values),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm lint -f {values}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// "Never render a flag Portico does not have": each flag of each render is in `portico --help`.
#[test]
fn every_rendered_flag_is_one_portico_has() {
    let help = Command::new(env!("CARGO_BIN_EXE_portico"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for values in ALL {
        let objects = nginx_install(values);
        for workload in objects
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "DaemonSet")
        {
            if workload["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with("defaultbackend")
            {
                continue;
            }
            for a in args(workload) {
                let flag = a.split('=').next().unwrap();
                assert!(
                    help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                    "{values}: {flag} is not a flag of portico"
                );
            }
        }
    }
}

#[test]
fn no_values_install_what_ingress_nginx_installs() {
    let objects = nginx_install("defaults.yaml");
    let deployment = find(&objects, "Deployment", "ingress-nginx-controller");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let args = args(deployment);
    assert_eq!(arg(&args, "controller-name"), Some("k8s.io/ingress-nginx"));
    assert_eq!(arg(&args, "ingress-class"), Some("nginx"));
    assert_eq!(
        arg(&args, "publish-service"),
        Some("$(POD_NAMESPACE)/ingress-nginx-controller")
    );
    assert_eq!(arg(&args, "election-id"), Some("ingress-nginx-leader"));
    assert_eq!(
        arg(&args, "configmap"),
        Some("$(POD_NAMESPACE)/ingress-nginx-controller")
    );
    assert_eq!(
        arg(&args, "admin-addr"),
        Some("127.0.0.1:10246"),
        "/routes stays inside the pod"
    );
    assert_eq!(arg(&args, "shutdown-grace"), Some("30s"));
    assert!(!args.iter().any(|a| a == "--watch-ingress-without-class"));
    assert_eq!(
        pod(deployment)["containers"][0]["image"],
        "ghcr.io/portico-dev/portico:0.1.0"
    );
    assert_eq!(pod(deployment)["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(
        pod(deployment)["securityContext"]["sysctls"][0]["name"],
        "net.ipv4.ip_unprivileged_port_start"
    );

    let class = find(&objects, "IngressClass", "nginx");
    assert_eq!(class["spec"]["controller"], "k8s.io/ingress-nginx");
    assert!(
        class["metadata"]["annotations"].is_null(),
        "not the default class unless asked"
    );

    let service = find(&objects, "Service", "ingress-nginx-controller");
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert!(service["spec"]["externalTrafficPolicy"].is_null());
    assert_eq!(port(service, "https")["port"], 443);
    assert_eq!(port(service, "https")["appProtocol"], "https");
    assert_eq!(service["spec"]["selector"], pod_labels(deployment));

    let config = find(&objects, "ConfigMap", "ingress-nginx-controller");
    assert!(config["data"].as_object().is_none_or(|d| d.is_empty()), "{config}");
    let role = find(&objects, "ClusterRole", "ingress-nginx");
    assert!(
        role.to_string().contains("\"configmaps\""),
        "Portico reads the ConfigMap"
    );
    let binding = find(&objects, "ClusterRoleBinding", "ingress-nginx");
    assert_eq!(binding["subjects"][0]["namespace"], "ingress-nginx");
    for absent in [
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PrometheusRule",
        "DaemonSet",
    ] {
        assert!(!has(&objects, absent), "{absent} without being asked for");
    }
}

/// The selector a Service needs to reach the workload's pods: the pods' labels it names.
fn pod_labels(workload: &Value) -> Value {
    let labels = &workload["spec"]["template"]["metadata"]["labels"];
    let selector = workload["spec"]["selector"]["matchLabels"].as_object().unwrap();
    for (k, v) in selector {
        assert_eq!(&labels[k], v, "the selector matches the pod template");
    }
    Value::Object(selector.clone())
}

#[test]
fn daemonset_on_the_host_network() {
    let objects = nginx_install("daemonset-hostnetwork.yaml");
    assert!(!has(&objects, "Deployment"));
    let ds = find(&objects, "DaemonSet", "ingress-nginx-controller");
    assert!(ds["spec"]["replicas"].is_null());
    assert_eq!(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"], 1);
    let spec = pod(ds);
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
    assert!(
        spec["securityContext"]["sysctls"].is_null(),
        "a network sysctl is refused with the host's network"
    );
    assert_eq!(
        spec["containers"][0]["securityContext"]["capabilities"]["add"],
        json!(["NET_BIND_SERVICE"])
    );
    assert_eq!(spec["nodeSelector"]["node-role.kubernetes.io/edge"], "true");
    assert_eq!(spec["tolerations"][0]["key"], "node-role.kubernetes.io/edge");
    assert!(spec["containers"][0]["ports"][0]["hostPort"].is_null());

    let args = args(ds);
    assert!(args.iter().any(|a| a == "--watch-ingress-without-class"));
    assert_eq!(arg(&args, "publish-service"), None);
    assert_eq!(arg(&args, "publish-status-address"), Some("192.0.2.10"));
    assert_eq!(
        arg(&args, "update-status-on-shutdown"),
        None,
        "an ingress-nginx-only flag is dropped"
    );
    let class = find(&objects, "IngressClass", "nginx");
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert_eq!(
        find(&objects, "Service", "ingress-nginx-controller")["spec"]["type"],
        "ClusterIP"
    );
    assert!(!has(&objects, "PodDisruptionBudget"));
}

#[test]
fn host_ports_instead_of_the_host_network() {
    let objects = try_template(
        "ingress-nginx",
        "ingress-nginx",
        "defaults.yaml",
        &["controller.hostPort.enabled=true"],
    )
    .unwrap();
    let ports = &pod(find(&objects, "Deployment", "ingress-nginx-controller"))["containers"][0]["ports"];
    assert_eq!(
        ports[0],
        json!({"name": "http", "containerPort": 80, "hostPort": 80, "protocol": "TCP"})
    );
    assert_eq!(ports[1]["hostPort"], 443);
    assert!(ports[2]["hostPort"].is_null(), "metrics stay off the node's address");
}

#[test]
fn bare_metal_node_ports() {
    let objects = nginx_install("baremetal-nodeport.yaml");
    let service = find(&objects, "Service", "ingress-nginx-controller");
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(service["spec"]["externalTrafficPolicy"], "Local");
    assert_eq!(port(service, "http")["nodePort"], 30080);
    assert_eq!(port(service, "https")["nodePort"], 30443);
    assert_eq!(port(service, "http")["targetPort"], "http");

    let deployment = find(&objects, "Deployment", "ingress-nginx-controller");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let spec = pod(deployment);
    assert_eq!(spec["terminationGracePeriodSeconds"], 20);
    assert_eq!(
        arg(&args(deployment), "shutdown-grace"),
        Some("5s"),
        "drained before the kubelet's kill"
    );
    assert_eq!(
        spec["containers"][0]["resources"]["requests"],
        json!({"cpu": "500m", "memory": "256Mi"})
    );
    assert_eq!(spec["containers"][0]["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(
        spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );

    let pdb = find(&objects, "PodDisruptionBudget", "ingress-nginx-controller");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], pod_labels(deployment));
    let data = &find(&objects, "ConfigMap", "ingress-nginx-controller")["data"];
    assert_eq!(data["use-forwarded-headers"], "true");
    assert_eq!(data["proxy-real-ip-cidr"], "10.0.0.0/8");
}

#[test]
fn aws_network_load_balancer() {
    let objects = nginx_install("aws-nlb.yaml");
    let service = find(&objects, "Service", "ingress-nginx-controller");
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(service["spec"]["externalTrafficPolicy"], "Local");
    assert_eq!(service["spec"]["loadBalancerClass"], "service.k8s.aws/nlb");
    let annotations = &service["metadata"]["annotations"];
    assert_eq!(
        annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"],
        "ip"
    );
    assert_eq!(
        annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"],
        "internet-facing"
    );

    let internal = find(&objects, "Service", "ingress-nginx-controller-internal");
    assert_eq!(
        internal["metadata"]["annotations"],
        json!({"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"})
    );
    assert_eq!(
        internal["spec"]["type"], "LoadBalancer",
        "the external Service's type unless set"
    );
    assert_eq!(internal["spec"]["loadBalancerClass"], "service.k8s.aws/nlb");
    assert_eq!(internal["spec"]["loadBalancerSourceRanges"], json!(["10.0.0.0/8"]));
    assert_eq!(internal["spec"]["selector"], service["spec"]["selector"]);

    let deployment = find(&objects, "Deployment", "ingress-nginx-controller");
    assert_eq!(
        pod(deployment)["containers"][0]["image"],
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/portico-dev/portico:0.1.0"
    );
    let args = args(deployment);
    assert_eq!(arg(&args, "controller-name"), Some("k8s.io/ingress-nginx-public"));
    assert_eq!(arg(&args, "ingress-class"), Some("nginx-public"));
    assert_eq!(arg(&args, "election-id"), Some("ingress-nginx-public-leader"));
    assert_eq!(
        arg(&args, "publish-service"),
        Some("$(POD_NAMESPACE)/ingress-nginx-controller")
    );
    assert_eq!(
        find(&objects, "IngressClass", "nginx-public")["spec"]["controller"],
        "k8s.io/ingress-nginx-public"
    );
    assert_eq!(
        pod(deployment)["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(
        find(&objects, "PodDisruptionBudget", "ingress-nginx-controller")["spec"]["minAvailable"],
        1
    );
}

#[test]
fn controller_config_headers_metrics_autoscaling_and_default_backend() {
    let objects = nginx_install("config.yaml");
    let data = &find(&objects, "ConfigMap", "ingress-nginx-controller")["data"];
    // Every value a string, as a ConfigMap holds them.
    assert_eq!(data["proxy-send-timeout"], "120");
    assert_eq!(data["hsts"], "false");
    assert_eq!(data["proxy-body-size"], "50m");
    assert_eq!(data["log-format-upstream"], "$remote_addr - $request");
    assert_eq!(data["add-headers"], "ingress-nginx/ingress-nginx-custom-add-headers");
    assert_eq!(
        data["proxy-set-headers"],
        "ingress-nginx/ingress-nginx-custom-proxy-headers"
    );
    assert_eq!(
        find(&objects, "ConfigMap", "ingress-nginx-custom-add-headers")["data"],
        json!({"X-Frame-Options": "DENY"})
    );
    assert_eq!(
        find(&objects, "ConfigMap", "ingress-nginx-custom-proxy-headers")["data"],
        json!({"X-Team": "platform"})
    );

    let deployment = find(&objects, "Deployment", "ingress-nginx-controller");
    assert!(
        deployment["spec"]["replicas"].is_null(),
        "the autoscaler owns the replica count"
    );
    let args = args(deployment);
    assert_eq!(
        arg(&args, "default-ssl-certificate"),
        Some("ingress-nginx/wildcard-tls")
    );
    assert!(args.iter().any(|a| a == "--enable-ssl-passthrough"));
    assert_eq!(arg(&args, "watch-namespace"), Some("ingress-nginx"));
    assert_eq!(
        arg(&args, "default-backend-service"),
        Some("$(POD_NAMESPACE)/ingress-nginx-defaultbackend")
    );

    let hpa = find(&objects, "HorizontalPodAutoscaler", "ingress-nginx-controller");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "ingress-nginx-controller");
    assert_eq!(
        (hpa["spec"]["minReplicas"].clone(), hpa["spec"]["maxReplicas"].clone()),
        (json!(2), json!(6))
    );
    let metrics = hpa["spec"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 1, "memory target unset: CPU only");
    assert_eq!(metrics[0]["resource"]["name"], "cpu");
    assert_eq!(
        find(&objects, "PodDisruptionBudget", "ingress-nginx-controller")["spec"]["minAvailable"],
        1
    );

    let metrics_service = find(&objects, "Service", "ingress-nginx-controller-metrics");
    assert_eq!(port(metrics_service, "metrics")["port"], 10254);
    assert_eq!(metrics_service["spec"]["selector"], pod_labels(deployment));
    let monitor = find(&objects, "ServiceMonitor", "ingress-nginx-controller");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let rule = find(&objects, "PrometheusRule", "ingress-nginx-controller");
    assert_eq!(rule["spec"]["groups"][0]["rules"][0]["alert"], "PorticoDown");

    let backend = find(&objects, "Deployment", "ingress-nginx-defaultbackend");
    assert_eq!(
        pod(backend)["containers"][0]["image"],
        "registry.k8s.io/defaultbackend-amd64:1.5"
    );
    let backend_service = find(&objects, "Service", "ingress-nginx-defaultbackend");
    assert_eq!(backend_service["spec"]["selector"], pod_labels(backend));
    assert_ne!(backend_service["spec"]["selector"], metrics_service["spec"]["selector"]);
}

/// Values whose silent omission would leave ports closed, run the wrong image, or widen what
/// Portico watches: the install stops and says why.
#[test]
fn unsafe_values_stop_the_install() {
    let cases: [(&str, &[&str], &str); 6] = [
        ("tcp.yaml", &[], "not raw TCP or UDP"),
        (
            "defaults.yaml",
            &["udp.53=kube-system/kube-dns:53"],
            "not raw TCP or UDP",
        ),
        (
            "defaults.yaml",
            &["controller.kind=Both"],
            "use Deployment or DaemonSet",
        ),
        (
            "defaults.yaml",
            &["controller.image.image=ingress-nginx/controller"],
            "ingress-nginx's controller image",
        ),
        (
            "defaults.yaml",
            &["controller.extraArgs.annotations-prefix=example.com"],
            "extraArgs.annotations-prefix: Portico has no such flag",
        ),
        (
            "defaults.yaml",
            &["controller.scope.namespaceSelector=team=a"],
            "cannot select namespaces by label",
        ),
    ];
    for (values, set, why) in cases {
        match try_template("ingress-nginx", "ingress-nginx", values, set) {
            Ok(_) => panic!("{values} {set:?} rendered"),
            Err(e) => assert!(e.contains(why), "{values} {set:?}: {e}"),
        }
    }
}

/// A switch given a value Portico would reject is caught at install, not in a crash loop.
#[test]
fn extra_args_switches_and_overrides() {
    let set = [
        "controller.extraArgs.use-proxy-protocol=true",
        "controller.extraArgs.election-id=mine",
        "controller.extraArgs.v=2",
        "controller.extraArgs.publish-status-address=lb.example # edge: west",
    ];
    let objects = try_template("ingress-nginx", "ingress-nginx", "defaults.yaml", &set).unwrap();
    let args = args(find(&objects, "Deployment", "ingress-nginx-controller"));
    assert!(args.iter().any(|a| a == "--use-proxy-protocol"));
    assert_eq!(
        args.iter().filter(|a| a.starts_with("--election-id")).count(),
        1,
        "{args:?}"
    );
    assert_eq!(arg(&args, "election-id"), Some("mine"));
    assert!(!args.iter().any(|a| a.starts_with("--v")), "{args:?}");
    assert_eq!(
        arg(&args, "publish-status-address"),
        Some("lb.example # edge: west"),
        "a value stays one string"
    );
    let e = try_template(
        "ingress-nginx",
        "ingress-nginx",
        "defaults.yaml",
        &["controller.extraArgs.use-proxy-protocol=yes"],
    )
    .unwrap_err();
    assert!(e.contains("this switch takes true, false or nothing"), "{e}");
}

/// Helm's own labels (and the component label the chart puts on every object) are the only
/// differences allowed in a compared object's labels.
fn normalized(mut object: Value) -> Value {
    const HELM: [&str; 4] = [
        "app.kubernetes.io/instance",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/version",
        "helm.sh/chart",
    ];
    let strip = |labels: &mut Value, extra: &[&str]| {
        if let Some(map) = labels.as_object_mut() {
            for k in HELM.iter().chain(extra) {
                map.remove(*k);
            }
        }
    };
    strip(&mut object["metadata"]["labels"], &["app.kubernetes.io/component"]);
    if object["kind"] == "Deployment" {
        strip(&mut object["spec"]["selector"]["matchLabels"], &[]);
        strip(&mut object["spec"]["template"]["metadata"]["labels"], &[]);
    }
    if object["kind"] == "Service" {
        strip(&mut object["spec"]["selector"], &[]);
    }
    object
}

/// deploy/base (`kubectl kustomize deploy/`) and the chart with the same choices
/// (tests/fixtures/helm/kustomize-base.yaml, release `portico` in portico-system) render the
/// same objects, apart from: the Namespace (Helm installs into one, `--create-namespace`),
/// the chart's controller ConfigMap, its `--configmap` flag and the ClusterRole's read of
/// ConfigMaps (until deploy/base has them too), and the chart's PodDisruptionBudget.
#[test]
fn chart_renders_what_kustomize_renders() {
    let kubectl = go_built(BUILD_KUBECTL, "kubectl").join("kubectl");
    let out = Command::new(kubectl)
        .args(["kustomize", concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kustomized: Vec<Value> = parse(&String::from_utf8(out.stdout).unwrap())
        .into_iter()
        .filter(|o| o["kind"] != "Namespace")
        .map(normalized)
        .collect();
    let base_reads_configmaps = kustomized
        .iter()
        .any(|o| o["kind"] == "ClusterRole" && o.to_string().contains("\"configmaps\""));

    let mut charted = Vec::new();
    for mut object in template("portico", "portico-system", "kustomize-base.yaml") {
        let kind = object["kind"].as_str().unwrap().to_string();
        if kind == "PodDisruptionBudget" || (kind == "ConfigMap" && object["metadata"]["name"] == "portico") {
            continue;
        }
        if kind == "Deployment" {
            let args = object["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array_mut()
                .unwrap();
            let before = args.len();
            args.retain(|a| a != "--configmap=$(POD_NAMESPACE)/portico");
            assert_eq!(args.len(), before - 1, "the chart names its ConfigMap");
        }
        if kind == "ClusterRole" && !base_reads_configmaps {
            let core = &mut object["rules"][2]["resources"];
            assert_eq!(core.as_array().unwrap().last().unwrap(), "configmaps");
            core.as_array_mut().unwrap().pop();
        }
        charted.push(normalized(object));
    }
    let key = |o: &Value| format!("{}/{}", o["kind"], o["metadata"]["name"]);
    let mut left: Vec<_> = kustomized.iter().map(key).collect();
    let mut right: Vec<_> = charted.iter().map(key).collect();
    left.sort();
    right.sort();
    assert_eq!(left, right, "the same objects");
    for k in &kustomized {
        let c = charted.iter().find(|c| key(c) == key(k)).unwrap();
        assert_eq!(
            c,
            k,
            "{} differs:\nchart:     {}\nkustomize: {}",
            key(k),
            serde_json::to_string_pretty(c).unwrap(),
            serde_json::to_string_pretty(k).unwrap()
        );
    }
}

/// `--publish-service` names the Service that gets the address: the external one, else the
/// internal one, else the path given.
#[test]
fn publish_service_names_the_service_with_the_address() {
    let publish = |set: &[&str]| {
        let objects = try_template("ingress-nginx", "ingress-nginx", "defaults.yaml", set).unwrap();
        arg(
            &args(find(&objects, "Deployment", "ingress-nginx-controller")),
            "publish-service",
        )
        .map(str::to_string)
    };
    assert_eq!(
        publish(&[
            "controller.service.external.enabled=false",
            "controller.service.internal.enabled=true"
        ])
        .as_deref(),
        Some("$(POD_NAMESPACE)/ingress-nginx-controller-internal")
    );
    assert_eq!(
        publish(&["controller.publishService.pathOverride=edge/lb"]).as_deref(),
        Some("edge/lb")
    );
    assert_eq!(publish(&["controller.service.enabled=false"]), None);
    assert_eq!(publish(&["controller.publishService.enabled=false"]), None);
}

#[test]
fn image_digest_and_service_account_choices() {
    let set = [
        "controller.image.repository=mirror.example/portico",
        "controller.image.tag=0.2.0",
        "controller.image.digest=sha256:0123",
        "serviceAccount.create=false",
        "serviceAccount.name=existing",
    ];
    let objects = try_template("ingress-nginx", "ingress-nginx", "defaults.yaml", &set).unwrap();
    let spec = pod(find(&objects, "Deployment", "ingress-nginx-controller"));
    assert_eq!(
        spec["containers"][0]["image"],
        "mirror.example/portico:0.2.0@sha256:0123"
    );
    assert_eq!(spec["serviceAccountName"], "existing");
    assert!(!has(&objects, "ServiceAccount"));
    assert_eq!(
        find(&objects, "ClusterRoleBinding", "ingress-nginx")["subjects"][0]["name"],
        "existing"
    );
}

/// The internal Service takes the external one's type and class, never its addresses.
#[test]
fn the_internal_service_shares_no_address() {
    let set = [
        "controller.service.loadBalancerIP=203.0.113.7",
        "controller.service.clusterIP=10.96.0.50",
        "controller.service.internal.enabled=true",
        "controller.service.internal.loadBalancerIP=10.1.2.3",
    ];
    let objects = try_template("ingress-nginx", "ingress-nginx", "defaults.yaml", &set).unwrap();
    let external = &find(&objects, "Service", "ingress-nginx-controller")["spec"];
    let internal = &find(&objects, "Service", "ingress-nginx-controller-internal")["spec"];
    assert_eq!(external["loadBalancerIP"], "203.0.113.7");
    assert_eq!(external["clusterIP"], "10.96.0.50");
    assert_eq!(internal["loadBalancerIP"], "10.1.2.3");
    assert!(internal["clusterIP"].is_null());
    assert_eq!(internal["type"], "LoadBalancer");
}

/// `helm install` with each values file against a real kube-apiserver (tests/e2e's control
/// plane; no kubelet, so nothing runs): every object is accepted as rendered. The
/// Prometheus Operator's kinds are left out (no CRDs there), and each release gets a class
/// name of its own, as the IngressClass is cluster-wide.
#[test]
fn helm_install_is_accepted_by_a_real_api_server() {
    let cp = ControlPlane::start();
    for (i, values) in ALL.iter().enumerate() {
        let (release, namespace) = (format!("r{i}"), format!("helm-{i}"));
        let out = Command::new(helm())
            .args([
                "install",
                &release,
                CHART,
                "--namespace",
                &namespace,
                "--create-namespace",
                "-f",
                &fixture(values),
            ])
            .args(["--set", &format!("controller.ingressClassResource.name=class-{i}")])
            .args([
                "--set",
                "controller.metrics.serviceMonitor.enabled=false,controller.metrics.prometheusRule.enabled=false",
            ])
            .env("KUBECONFIG", &cp.kubeconfig)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm install -f {values}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = try_template(
            &release,
            &namespace,
            values,
            &[
                &format!("controller.ingressClassResource.name=class-{i}"),
                "controller.metrics.serviceMonitor.enabled=false,controller.metrics.prometheusRule.enabled=false",
            ],
        )
        .unwrap();
        for object in &rendered {
            let kind = object["kind"].as_str().unwrap().to_lowercase();
            let name = object["metadata"]["name"].as_str().unwrap();
            let mut get = vec!["get", kind.as_str(), name, "-o", "name"];
            if !object["metadata"]["namespace"].is_null() {
                get.extend(["--namespace", &namespace]);
            }
            assert!(
                !cp.ok(&get).trim().is_empty(),
                "{values}: {kind} {name} is in the cluster"
            );
        }
        eprintln!("helm install -f {values}: {} objects accepted", rendered.len());
    }
}
