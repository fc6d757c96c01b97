//! ListenerSets in manifests mode over real sockets: a Gateway that allows ListenerSets serves
//! their listeners' routes next to its own, each route only through the listeners of the
//! parents it names (the conformance suite's ListenerSetHTTPRouting,
//! ListenerSetDualParentRefIndependence and ListenerSetGatewayParentSectionNameNotFound), and
//! `/routes` shows each ListenerSet's status.

mod support;

use serde_json::Value;
use support::gateway_api::{GATEWAY_CLASS, conditions};
use support::*;

const NS: &str = "gateway-conformance-infra";

/// Gateway `gw` (two listeners of its own, ListenerSets from every namespace), ListenerSets
/// `ls-1` and `ls-2` (two listeners each), a ListenerSet `ls-3` on a Gateway that allows
/// none, and routes to them.
fn manifests() -> String {
    let listener = |name: &str| {
        format!(
            "  - {{name: {name}, port: 80, protocol: HTTP, hostname: {name}.com, allowedRoutes: {{namespaces: {{from: All}}}}}}\n"
        )
    };
    let gateway = |name: &str, allowed: &str, listeners: &[&str]| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  gatewayClassName: portico\n{allowed}  listeners:\n{}",
            listeners.iter().map(|l| listener(l)).collect::<String>()
        )
    };
    let set = |name: &str, gateway: &str, listeners: &[&str]| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  parentRef: {{kind: Gateway, group: gateway.networking.k8s.io, name: {gateway}}}\n  listeners:\n{}",
            listeners.iter().map(|l| listener(l)).collect::<String>()
        )
    };
    let route = |name: &str, parents: &[(&str, &str, Option<&str>)], path: &str, backend: &str| {
        let parents: Vec<String> = parents
            .iter()
            .map(|(kind, name, section)| {
                let section = section.map(|s| format!(", sectionName: {s}")).unwrap_or_default();
                format!("{{kind: {kind}, group: gateway.networking.k8s.io, name: {name}{section}}}")
            })
            .collect();
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  parentRefs: [{}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs: [{{name: {backend}, port: 8080}}]\n",
            parents.join(", ")
        )
    };
    let gw = ("Gateway", "gw", None);
    let ls1 = ("ListenerSet", "ls-1", None);
    let ls2 = ("ListenerSet", "ls-2", None);
    [
        gateway(
            "gw",
            "  allowedListeners: {namespaces: {from: All}}\n",
            &["gw-l1", "gw-l2"],
        ),
        gateway("closed", "", &["closed-l"]),
        set("ls-1", "gw", &["ls1-l1", "ls1-l2"]),
        set("ls-2", "gw", &["ls2-l1", "ls2-l2"]),
        set("ls-3", "closed", &["ls3-l"]),
        route("everywhere", &[gw, ls1, ls2], "/route", "v1"),
        route("gateway-only", &[gw], "/gateway-route", "v2"),
        route(
            "gateway-section",
            &[("Gateway", "gw", Some("gw-l1"))],
            "/gateway-section",
            "v3",
        ),
        route("set-1", &[ls1], "/set-1", "v2"),
        route(
            "set-1-section",
            &[("ListenerSet", "ls-1", Some("ls1-l1"))],
            "/set-1-section",
            "v3",
        ),
        route(
            "wrong-parent",
            &[
                ("Gateway", "gw", Some("ls1-l2")),
                ("ListenerSet", "ls-1", Some("ls1-l2")),
            ],
            "/wrong-parent",
            "v2",
        ),
        route("closed-set", &[("ListenerSet", "ls-3", None)], "/closed", "v1"),
    ]
    .concat()
}

fn backend(name: &str, pods: &[std::net::SocketAddr]) -> String {
    let mut slice = portico::fixture::slice(NS, &format!("{name}-0"), name).port("http", pods[0].port().into());
    for p in pods {
        slice = slice.endpoint(&p.ip().to_string());
    }
    portico::fixture::yaml(&[
        portico::fixture::service(NS, name).port("http", 8080).into(),
        slice.into(),
    ])
}

fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x["key"]["name"] == name || x["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list:#}"))
}

#[tokio::test]
async fn listener_set_listeners_serve_the_routes_of_their_parent_refs() {
    let (v1, v2, v3) = (
        pods("infra-backend-v1", 1).await,
        pods("infra-backend-v2", 1).await,
        pods("infra-backend-v3", 1).await,
    );
    let p = Portico::start(
        &[
            ("class.yaml", GATEWAY_CLASS.to_string()),
            (
                "backends.yaml",
                backend("v1", &v1) + &backend("v2", &v2) + &backend("v3", &v3),
            ),
            ("gateway.yaml", manifests()),
        ],
        &[],
    )
    .await;
    // (host, path, the backend's pod, or None: 404)
    let gw = ["gw-l1.com", "gw-l2.com"];
    let ls1 = ["ls1-l1.com", "ls1-l2.com"];
    let ls2 = ["ls2-l1.com", "ls2-l2.com"];
    let mut cases: Vec<(&str, &str, Option<&str>)> = Vec::new();
    for h in gw.iter().chain(&ls1).chain(&ls2) {
        cases.push((h, "/route", Some("infra-backend-v1-0")));
        let own = gw.contains(h);
        cases.push((h, "/gateway-route", own.then_some("infra-backend-v2-0")));
        cases.push((
            h,
            "/gateway-section",
            (*h == "gw-l1.com").then_some("infra-backend-v3-0"),
        ));
        cases.push((h, "/set-1", ls1.contains(h).then_some("infra-backend-v2-0")));
        cases.push((
            h,
            "/set-1-section",
            (*h == "ls1-l1.com").then_some("infra-backend-v3-0"),
        ));
        cases.push((h, "/wrong-parent", (*h == "ls1-l2.com").then_some("infra-backend-v2-0")));
    }
    cases.push(("ls3-l.com", "/closed", None));
    for (host, path, pod) in cases {
        let (status, _, body) = get(p.http, host, path).await.unwrap();
        match pod {
            Some(pod) => {
                assert_eq!(status, 200, "{host}{path}: {body}");
                assert_eq!(json(&body)["pod"], pod, "{host}{path}");
            }
            None => assert_eq!(status, 404, "{host}{path}: {body}"),
        }
    }

    let routes = p.routes().await;
    let api = &routes["gatewayApi"];
    let gateway = find(&api["gateways"], "gw");
    assert_eq!(gateway["attached_listener_sets"], 2, "{gateway:#}");
    assert_eq!(gateway["listeners"].as_array().unwrap().len(), 2);
    for (set, counts) in [("ls-1", [3, 3]), ("ls-2", [1, 1])] {
        let s = find(&api["listener_sets"], set);
        assert_eq!(
            conditions(&s["conditions"]),
            ["Accepted=true:Accepted", "Programmed=true:Programmed"]
        );
        let attached: Vec<u64> = s["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["attachedRoutes"].as_u64().unwrap())
            .collect();
        assert_eq!(attached, counts, "{set}: {s:#}");
    }
    assert_eq!(
        conditions(&find(&api["listener_sets"], "ls-3")["conditions"]),
        ["Accepted=false:NotAllowed", "Programmed=false:NotAllowed"]
    );
    let parents = |route: &str| -> Vec<String> {
        find(&api["routes"], route)["parents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    p["parentRef"]["kind"].as_str().unwrap(),
                    conditions(&p["conditions"])[0]
                )
            })
            .collect()
    };
    assert_eq!(
        parents("wrong-parent"),
        [
            "Gateway:Accepted=false:NoMatchingParent",
            "ListenerSet:Accepted=true:Accepted"
        ]
    );
    assert_eq!(parents("closed-set"), ["ListenerSet:Accepted=false:NoMatchingParent"]);
    // `/routes` says which listener, of which ListenerSet, serves a host.
    let via = &routes["hosts"]["ls1-l1.com"][0]["gateway"]["via"];
    assert_eq!(via[0]["listener"], "ls1-l1", "{via:#}");
    assert_eq!(via[0]["listener_set"]["name"], "ls-1", "{via:#}");
}
