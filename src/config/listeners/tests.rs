use super::*;
use crate::config::route::{PathRule, PathType, RouteTableBuilder};
use crate::model::ObjectKey;

fn route(id: usize, name: &str, path: &str) -> Arc<Route> {
    Arc::new(Route {
        id,
        ingress: ObjectKey::new("ns", name),
        host: HostPattern::Any,
        path: Some(PathRule {
            path: path.into(),
            path_type: PathType::Prefix,
            regex: None,
        }),
        backend: 0,
        service: ObjectKey::new("ns", "svc"),
        ssl_redirect: false,
        policy: Default::default(),
        client_auth: None,
        canary: None,
        conditions: None,
        weighted: None,
    })
}

fn table(hostname: HostPattern, routes: &[Arc<Route>]) -> ListenerTable {
    let mut b = RouteTableBuilder::default();
    for r in routes {
        b.add_path(r.clone());
    }
    ListenerTable {
        hostname,
        via: Vec::new(),
        routes: routes.iter().map(|r| r.id).collect(),
        table: Arc::new(b.build().0),
    }
}

/// The conformance suite's GatewayHTTPListenerIsolation Gateway: four listeners on one
/// port, each with a route of its own path.
fn isolation() -> (Points, RouteTable) {
    let names = ["empty", "wild", "wild-foo", "abc"];
    let hostnames = [
        HostPattern::Any,
        HostPattern::Suffix("example.com".into()),
        HostPattern::Suffix("foo.example.com".into()),
        HostPattern::Exact("abc.foo.example.com".into()),
    ];
    let mut listeners: Vec<ListenerTable> = hostnames
        .into_iter()
        .zip(names)
        .enumerate()
        .map(|(i, (h, n))| table(h, &[route(i, n, &format!("/{n}"))]))
        .collect();
    // In no particular order, as compile sorts them.
    listeners.reverse();
    listeners.sort_by_key(|l| specificity(&l.hostname));
    let points = Points {
        points: vec![Point {
            target: 8080,
            tls: false,
            listeners,
            frontend: None,
        }],
    };
    (points, RouteTable::default())
}

fn served<'c>(
    points: &'c Points,
    ingress: &'c RouteTable,
    at: (u16, bool, bool),
    host: &str,
    path: &str,
) -> Option<String> {
    match points.route_request(ingress, at, None, host, path, &RouteRequest::default()) {
        Found::Route(r) => Some(r.ingress.name.clone()),
        _ => None,
    }
}

#[test]
fn the_most_specific_listener_hostname_takes_the_request() {
    let (points, ingress) = isolation();
    let names = ["empty", "wild", "wild-foo", "abc"];
    let hosts = [
        ("bar.com", "empty"),
        ("bar.example.com", "wild"),
        ("bar.foo.example.com", "wild-foo"),
        ("ABC.foo.example.com", "abc"),
        ("x.y.example.com", "wild"),
    ];
    for (host, owner) in hosts {
        for name in names {
            let got = served(&points, &ingress, (8080, false, false), host, &format!("/{name}"));
            let want = (name == owner).then(|| name.to_string());
            assert_eq!(got, want, "{host} /{name}");
        }
    }
}

#[test]
fn a_point_serves_only_its_own_port_and_protocol() {
    let (points, ingress) = isolation();
    assert_eq!(
        served(&points, &ingress, (8081, false, false), "bar.com", "/empty"),
        None
    );
    assert_eq!(
        served(&points, &ingress, (8080, false, true), "bar.com", "/empty"),
        None
    );
    // Portico's own socket on another port serves only the well-known port's listeners.
    assert_eq!(
        served(&points, &ingress, (9999, true, false), "bar.com", "/empty"),
        None
    );
}

#[test]
fn own_sockets_try_ingresses_first_then_listeners_then_the_catch_all() {
    let listeners = vec![table(HostPattern::Any, &[route(0, "gw", "/")])];
    let points = Points {
        points: vec![Point {
            target: 80,
            tls: false,
            listeners,
            frontend: None,
        }],
    };
    let mut b = RouteTableBuilder::default();
    let mut ing = (*route(1, "ing", "/")).clone();
    ing.host = HostPattern::Exact("ing.test".into());
    b.add_path(Arc::new(ing));
    let mut all = (*route(2, "catch-all", "/")).clone();
    all.path = None;
    b.set_catch_all(Arc::new(all));
    let ingress = b.build().0;
    let own = (31_000, true, false);
    assert_eq!(served(&points, &ingress, own, "ing.test", "/x").as_deref(), Some("ing"));
    assert_eq!(served(&points, &ingress, own, "gw.test", "/x").as_deref(), Some("gw"));
    // Without the listener (TLS socket), the Ingresses' catch-all.
    assert_eq!(
        served(&points, &ingress, (31_001, true, true), "gw.test", "/x").as_deref(),
        Some("catch-all")
    );
    // A Gateway socket never serves Ingress routes.
    assert_eq!(
        served(&points, &ingress, (80, false, false), "ing.test", "/x").as_deref(),
        Some("gw")
    );
}

#[test]
fn a_host_of_another_listener_than_the_sni_s_is_misdirected() {
    let listeners = vec![
        table(HostPattern::Exact("second.org".into()), &[route(0, "second", "/")]),
        table(HostPattern::Suffix("wild.org".into()), &[route(1, "wild", "/")]),
        table(HostPattern::Any, &[route(2, "any", "/")]),
    ];
    let points = Points {
        points: vec![Point {
            target: 443,
            tls: true,
            listeners,
            frontend: None,
        }],
    };
    let ingress = RouteTable::default();
    let at = (40_000, true, true);
    let ask = |sni: &str, host: &str| match points.route_request(
        &ingress,
        at,
        Some(sni),
        host,
        "/",
        &RouteRequest::default(),
    ) {
        Found::Route(r) => r.ingress.name.clone(),
        Found::None => "404".into(),
        Found::Misdirected => "421".into(),
    };
    assert_eq!(ask("second.org", "second.org"), "second");
    assert_eq!(ask("second.org", "example.org"), "421");
    assert_eq!(ask("example.org", "second.org"), "421");
    assert_eq!(ask("example.org", "unknown.org"), "any");
    assert_eq!(ask("a.wild.org", "b.wild.org"), "wild");
    assert_eq!(ask("a.wild.org", "second.org"), "421");
}
