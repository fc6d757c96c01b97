//! ListenerSet attachment, conflicts and route attachment, from manifests.

use crate::compile::{Options, compile};
use crate::config::Config;
use crate::config::gateway::{Condition, ListenerReport, ListenerSetReport};
use crate::fixture;
use crate::model::AnyObject;
use crate::source::files::parse_manifests;

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: portico}\nspec: {controllerName: portico.dev/gateway-controller}\n";

/// Gateway `infra/gw` with `allowedListeners` `from` (none when empty) and `listeners`
/// (YAML flow items).
fn gateway(from: &str, listeners: &[&str]) -> String {
    let allowed = match from {
        "" => String::new(),
        f => format!("  allowedListeners: {{namespaces: {{from: {f}, selector: {{matchLabels: {{allowed: ns}}}}}}}}\n"),
    };
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: infra}}\nspec:\n  gatewayClassName: portico\n{allowed}  listeners:\n{}",
        listeners.iter().map(|l| format!("  - {l}\n")).collect::<String>()
    )
}

/// ListenerSet `ns/name` of Gateway `infra/gw`, created at second `t`.
fn set(ns: &str, name: &str, t: u32, listeners: &[&str]) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {{name: {name}, namespace: {ns}, generation: 2, creationTimestamp: \"2026-01-01T00:00:{t:02}Z\"}}\nspec:\n  parentRef: {{name: gw, namespace: infra}}\n  listeners:\n{}",
        listeners.iter().map(|l| format!("  - {l}\n")).collect::<String>()
    )
}

fn http(name: &str, host: &str) -> String {
    format!(
        "{{name: {name}, port: 80, protocol: HTTP, hostname: {host}, allowedRoutes: {{namespaces: {{from: All}}}}}}"
    )
}

fn build(yaml: &str) -> Config {
    let mut objects = parse_manifests(CLASS).unwrap();
    objects.extend(parse_manifests(yaml).expect("manifests parse"));
    for (ns, name, ip) in [("infra", "v1", "10.0.0.1"), ("infra", "v2", "10.0.0.2")] {
        let svc: AnyObject = fixture::service(ns, name).port("http", 80).into();
        objects.push(svc);
        let slice = fixture::slice(ns, &format!("{name}-1"), name)
            .port("http", 8080)
            .endpoint(ip)
            .ready(true);
        objects.push(slice.into());
    }
    compile(&fixture::snapshot(objects), &Options::default())
}

fn ls<'c>(cfg: &'c Config, name: &str) -> &'c ListenerSetReport {
    cfg.gateway
        .listener_sets
        .iter()
        .find(|s| s.key.name == name)
        .unwrap_or_else(|| panic!("no ListenerSet {name}: {:#?}", cfg.gateway.listener_sets))
}

/// `type=status:reason` of conditions.
fn conds(list: &[Condition]) -> Vec<String> {
    list.iter()
        .map(|c| format!("{}={}:{}", c.type_, c.status, c.reason))
        .collect()
}

fn listener<'c>(s: &'c ListenerSetReport, name: &str) -> &'c ListenerReport {
    s.listeners.iter().find(|l| l.name == name).expect("listener")
}

const ATTACHED: [&str; 2] = ["Accepted=true:Accepted", "Programmed=true:Programmed"];
const NOT_ALLOWED: [&str; 2] = ["Accepted=false:NotAllowed", "Programmed=false:NotAllowed"];

#[test]
fn allowed_listeners_decide_which_sets_attach() {
    let labelled = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: picked, labels: {allowed: ns}}\n";
    for (from, attached) in [
        ("", vec![]),
        ("None", vec![]),
        ("Same", vec!["same"]),
        ("Selector", vec!["picked"]),
        ("All", vec!["same", "picked", "other"]),
    ] {
        let mut yaml = gateway(from, &[&http("own", "gw.test")]) + labelled;
        for (ns, name) in [("infra", "same"), ("picked", "picked"), ("other", "other")] {
            yaml += &set(ns, name, 1, &[&http(&format!("{name}-l"), &format!("{name}.test"))]);
        }
        let cfg = build(&yaml);
        let g = &cfg.gateway.gateways[0];
        assert_eq!(g.attached_listener_sets as usize, attached.len(), "from {from:?}");
        assert_eq!(conds(&g.conditions)[0], "Accepted=true:Accepted");
        assert_eq!(
            g.listeners.len(),
            1,
            "the Gateway's status lists its own listeners only"
        );
        for name in ["same", "picked", "other"] {
            let s = ls(&cfg, name);
            if attached.contains(&name) {
                assert_eq!(conds(&s.conditions), ATTACHED, "{name} with from {from:?}");
                assert_eq!(
                    conds(&listener(s, &format!("{name}-l")).conditions),
                    [
                        "Accepted=true:Accepted",
                        "Programmed=true:Programmed",
                        "ResolvedRefs=true:ResolvedRefs",
                        "Conflicted=false:NoConflicts"
                    ]
                );
            } else {
                assert_eq!(conds(&s.conditions), NOT_ALLOWED, "{name} with from {from:?}");
                assert!(s.listeners.is_empty());
            }
            assert_eq!(s.generation, 2);
        }
    }
}

#[test]
fn a_listener_conflicting_with_one_before_it_is_refused() {
    // The Gateway's own listeners come first, then the sets oldest first: the later of two
    // conflicting listeners is refused, the earlier keeps serving.
    let yaml = gateway("Same", &[&http("gw-a", "a.test"), &http("gw-b", "b.test")])
        + &set(
            "infra",
            "newer",
            5,
            &[&http("dup-b", "b.test"), &http("dup-c", "c.test")],
        )
        + &set(
            "infra",
            "older",
            1,
            &[&http("first", "one.test"), &http("own-c", "c.test")],
        )
        + &set("infra", "only-b", 3, &[&http("dup-b", "b.test")])
        + &set(
            "infra",
            "tcp",
            4,
            &["{name: tcp, port: 80, protocol: TCP}", &http("after-tcp", "after.test")],
        );
    let cfg = build(&yaml);
    let hostname = [
        "Accepted=false:HostnameConflict",
        "Programmed=false:HostnameConflict",
        "ResolvedRefs=true:ResolvedRefs",
        "Conflicted=true:HostnameConflict",
    ];
    let fine = |s: &ListenerSetReport, l: &str| conds(&listener(s, l).conditions)[0] == "Accepted=true:Accepted";
    let older = ls(&cfg, "older");
    assert_eq!(conds(&older.conditions), ATTACHED);
    assert!(fine(older, "first") && fine(older, "own-c"));
    let newer = ls(&cfg, "newer");
    assert_eq!(
        conds(&listener(newer, "dup-b").conditions),
        hostname,
        "conflicts with gw-b"
    );
    assert_eq!(
        conds(&listener(newer, "dup-c").conditions),
        hostname,
        "conflicts with older's own-c"
    );
    assert_eq!(
        conds(&newer.conditions),
        ["Accepted=false:ListenersNotValid", "Programmed=false:ListenersNotValid"]
    );
    assert_eq!(
        conds(&ls(&cfg, "only-b").conditions),
        ["Accepted=false:ListenersNotValid", "Programmed=false:ListenersNotValid"]
    );
    let tcp = ls(&cfg, "tcp");
    assert_eq!(
        conds(&listener(tcp, "tcp").conditions)[..2],
        ["Accepted=false:ProtocolConflict", "Programmed=false:ProtocolConflict"]
    );
    assert_eq!(
        conds(&listener(tcp, "tcp").conditions)[3],
        "Conflicted=true:ProtocolConflict"
    );
    assert!(fine(tcp, "after-tcp"), "a refused listener holds no port");
    assert_eq!(
        conds(&tcp.conditions)[..],
        ["Accepted=true:ListenersNotValid", "Programmed=true:Programmed"]
    );
    let g = &cfg.gateway.gateways[0];
    assert_eq!(g.attached_listener_sets, 2, "older and tcp");
    assert!(
        g.listeners
            .iter()
            .all(|l| conds(&l.conditions)[0] == "Accepted=true:Accepted")
    );
}

fn route(name: &str, ns: &str, parents: &str, path: &str, to: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: {parents}\n  rules:\n  - matches: [{{path: {{value: {path}}}}}]\n    backendRefs: [{{name: {to}, namespace: infra, port: 80}}]\n"
    )
}

const GW: &str = "{name: gw, namespace: infra}";
const LS: &str = "{kind: ListenerSet, group: gateway.networking.k8s.io, name: ls, namespace: infra}";

#[test]
fn routes_attach_to_the_listeners_of_the_parent_they_name() {
    let ls_listeners = [
        http("ls-1", "ls1.test"),
        http("ls-2", "ls2.test"),
        "{name: ls-same, port: 80, protocol: HTTP, hostname: same.test}".to_string(),
    ];
    let refs: Vec<&str> = ls_listeners.iter().map(String::as_str).collect();
    let yaml = gateway("All", &[&http("gw-l", "gw.test")])
        + &set("infra", "ls", 1, &refs)
        + &route("both", "infra", &format!("[{GW}, {LS}]"), "/both", "v1")
        + &route("gw-only", "infra", &format!("[{GW}]"), "/gw", "v2")
        + &route(
            "gw-section",
            "infra",
            "[{name: gw, namespace: infra, sectionName: ls-1}]",
            "/bad",
            "v2",
        )
        + &route(
            "ls-section",
            "infra",
            "[{kind: ListenerSet, group: gateway.networking.k8s.io, name: ls, namespace: infra, sectionName: ls-1}]",
            "/sec",
            "v2",
        )
        + &route("elsewhere", "other", &format!("[{LS}]"), "/other", "v1")
        + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {name: from-other, namespace: infra}\n\
           spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: other}]\n  to: [{group: \"\", kind: Service}]\n";
    let cfg = build(&yaml);
    let at = |host: &str, path: &str| {
        super::super::tests::routed(&cfg, host, path).map(|r| cfg.backend(r).unwrap().service.name.clone())
    };
    assert_eq!(at("gw.test", "/both").as_deref(), Some("v1"));
    assert_eq!(at("ls1.test", "/both").as_deref(), Some("v1"));
    assert_eq!(at("ls2.test", "/both").as_deref(), Some("v1"));
    assert_eq!(at("gw.test", "/gw").as_deref(), Some("v2"));
    assert_eq!(
        at("ls1.test", "/gw"),
        None,
        "a Gateway parentRef reaches the Gateway's own listeners"
    );
    assert_eq!(at("ls1.test", "/bad"), None);
    assert_eq!(at("ls1.test", "/sec").as_deref(), Some("v2"));
    assert_eq!(at("ls2.test", "/sec"), None);
    assert_eq!(at("ls2.test", "/other").as_deref(), Some("v1"));
    assert_eq!(at("same.test", "/other"), None, "Same is the ListenerSet's namespace");

    let parents = |name: &str| {
        let r = cfg.gateway.routes.iter().find(|r| r.key.name == name).unwrap();
        r.parents
            .iter()
            .map(|p| {
                format!(
                    "{}/{}:{}",
                    p.parent_ref.kind,
                    p.parent_ref.name,
                    conds(&p.conditions)[0]
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        parents("both"),
        [
            "Gateway/gw:Accepted=true:Accepted",
            "ListenerSet/ls:Accepted=true:Accepted"
        ]
    );
    assert_eq!(parents("gw-only"), ["Gateway/gw:Accepted=true:Accepted"]);
    assert_eq!(parents("gw-section"), ["Gateway/gw:Accepted=false:NoMatchingParent"]);
    let s = ls(&cfg, "ls");
    let attached = |l: &str| listener(s, l).attached_routes;
    assert_eq!((attached("ls-1"), attached("ls-2"), attached("ls-same")), (3, 2, 1));
    assert_eq!(cfg.gateway.gateways[0].listeners[0].attached_routes, 2);
}

#[test]
fn a_route_to_a_set_its_gateway_refuses_is_not_accepted() {
    let yaml = gateway("", &[&http("gw-l", "gw.test")])
        + &set("infra", "ls", 1, &[&http("ls-1", "ls1.test")])
        + &route("r", "infra", &format!("[{LS}]"), "/", "v1");
    let cfg = build(&yaml);
    let r = cfg.gateway.routes.iter().find(|r| r.key.name == "r").unwrap();
    assert_eq!(conds(&r.parents[0].conditions)[0], "Accepted=false:NoMatchingParent");
    assert!(super::super::tests::routed(&cfg, "ls1.test", "/").is_none());
    // A set whose Gateway is not ours has no status from us.
    let theirs = set("infra", "ls", 1, &[&http("ls-1", "ls1.test")]).replace("name: gw,", "name: elsewhere,");
    assert!(
        build(&(gateway("All", &[&http("gw-l", "gw.test")]) + &theirs))
            .gateway
            .listener_sets
            .is_empty()
    );
}

#[test]
fn certificates_of_a_set_need_a_grant_to_the_listener_set() {
    let secret = fixture::yaml(&[fixture::tls_secret_files("certs", "cert", "rsa.crt", "rsa-pkcs1.key").into()]);
    let https = "{name: tls, port: 443, protocol: HTTPS, hostname: s.test, tls: {certificateRefs: [{name: cert, namespace: certs}]}}";
    let grant = |kind: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {{name: g-{kind}, namespace: certs}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: {kind}, namespace: infra}}]\n  to: [{{group: \"\", kind: Secret}}]\n"
        )
    };
    let base = gateway("All", &[&http("gw-l", "gw.test")]) + &set("infra", "ls", 1, &[https]) + "\n" + &secret;
    // A grant to Gateways is not one to ListenerSets.
    let cfg = build(&(base.clone() + &grant("Gateway")));
    let s = ls(&cfg, "ls");
    assert_eq!(
        conds(&listener(s, "tls").conditions)[2],
        "ResolvedRefs=false:RefNotPermitted"
    );
    assert_eq!(conds(&s.conditions)[0], "Accepted=false:ListenersNotValid");
    let cfg = build(&(base + &grant("ListenerSet")));
    let s = ls(&cfg, "ls");
    assert_eq!(
        conds(&listener(s, "tls").conditions)[2],
        "ResolvedRefs=true:ResolvedRefs"
    );
    assert_eq!(conds(&s.conditions), ATTACHED);
    assert!(
        cfg.certs.sources.contains_key("s.test"),
        "{:?}",
        cfg.certs.sources.keys()
    );
}

#[test]
fn listeners_past_the_limits_are_refused() {
    let many: Vec<String> = (0..70).map(|i| http(&format!("l{i}"), &format!("h{i}.test"))).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let parent = "[{kind: ListenerSet, group: gateway.networking.k8s.io, name: big, namespace: infra}]";
    let cfg = build(
        &(gateway("All", &[&http("gw-l", "gw.test")])
            + &set("infra", "big", 1, &refs)
            + &route("r", "infra", parent, "/", "v1")),
    );
    let s = ls(&cfg, "big");
    assert_eq!(s.listeners.len(), 70);
    assert_eq!(conds(&listener(s, "l63").conditions)[0], "Accepted=true:Accepted");
    assert_eq!(
        conds(&listener(s, "l64").conditions)[..2],
        ["Accepted=false:TooManyListeners", "Programmed=false:TooManyListeners"]
    );
    assert_eq!(conds(&s.conditions)[0], "Accepted=true:ListenersNotValid");
    assert!(super::super::tests::routed(&cfg, "h63.test", "/").is_some());
    assert!(
        super::super::tests::routed(&cfg, "h64.test", "/").is_none(),
        "a refused listener serves nothing"
    );
}
