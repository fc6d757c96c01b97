//! `upstream-hash-by` end to end: a real `portico` process, echo pods on loopback, and the
//! pod each request key lands on, before and after the Service scales down.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

const HASH_BY: &str = "nginx.ingress.kubernetes.io/upstream-hash-by";

fn manifests(pods: &[SocketAddr], notes: &[(&str, &str)]) -> String {
    class() + &service("web", pods) + &annotated_ingress("h", "h.test", "/", "web", notes)
}

/// The pod that answered `path` on h.test, with `header` sent when given.
async fn pod_for(p: &Portico, path: &str, header: Option<(&str, &str)>) -> String {
    let mut req = Request::builder().uri(path).header("host", "h.test");
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let (status, _, body) = request(p.http, req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    json(&body)["pod"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_uri_goes_to_the_same_pod_and_uris_spread() {
    let web = pods("web", 4).await;
    let p = Portico::start(&[("all.yaml", manifests(&web, &[(HASH_BY, "$request_uri")]))], &[]).await;
    let mut used = HashSet::new();
    for k in 0..40 {
        let path = format!("/item/{k}?v=1");
        let first = pod_for(&p, &path, None).await;
        for _ in 0..5 {
            assert_eq!(pod_for(&p, &path, None).await, first, "{path}");
        }
        used.insert(first);
    }
    // 40 keys on 4 pods: all on two or fewer pods has odds below 1e-11.
    assert!(used.len() >= 3, "{used:?}");
    assert!(diagnostics_of(&p.routes().await, "h").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_and_text_key_sticks_whatever_the_path() {
    let web = pods("web", 3).await;
    let notes = [("portico.dev/upstream-hash-by", "tenant-${http_x_tenant}")];
    let p = Portico::start(&[("all.yaml", manifests(&web, &notes))], &[]).await;
    let mut used = HashSet::new();
    for t in 0..30 {
        let tenant = format!("t{t}");
        let first = pod_for(&p, "/a", Some(("x-tenant", &tenant))).await;
        for path in ["/b", "/c?x=1", "/a/d"] {
            assert_eq!(pod_for(&p, path, Some(("x-tenant", &tenant))).await, first);
        }
        used.insert(first);
    }
    assert!(used.len() >= 2, "{used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_one_of_five_pods_moves_only_the_keys_that_were_on_it() {
    let web = pods("web", 5).await;
    let notes = [(HASH_BY, "$arg_user")];
    let p = Portico::start(&[("all.yaml", manifests(&web, &notes))], &[]).await;
    let keys = 200;
    let mut before = HashMap::new();
    for k in 0..keys {
        before.insert(k, pod_for(&p, &format!("/?user=u{k}"), None).await);
    }
    let on_2 = before.values().filter(|v| *v == "web-2").count();
    assert!(on_2 > 0, "no key was on web-2");
    let without_2: Vec<SocketAddr> = web
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, a)| *a)
        .collect();
    p.write("all.yaml", &manifests(&without_2, &notes));
    p.wait_generation(2).await;
    let mut moved = 0;
    for k in 0..keys {
        let now = pod_for(&p, &format!("/?user=u{k}"), None).await;
        if before[&k] == "web-2" {
            assert_ne!(now, "web-2");
            moved += 1;
        } else {
            assert_eq!(now, before[&k], "user u{k} was not on the removed pod");
        }
    }
    // Only web-2's keys moved: about 1/5 of them.
    assert_eq!(moved, on_2);
    let frac = moved as f64 / keys as f64;
    assert!(frac <= 0.2 + 0.1, "{moved} of {keys} keys moved");
    // And the pod coming back takes its keys back.
    p.write("all.yaml", &manifests(&web, &notes));
    p.wait_generation(3).await;
    for k in 0..keys {
        assert_eq!(pod_for(&p, &format!("/?user=u{k}"), None).await, before[&k]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_variable_is_a_warning_and_requests_are_balanced() {
    let web = pods("web", 3).await;
    let notes = [(HASH_BY, "$request_body")];
    let p = Portico::start(&[("all.yaml", manifests(&web, &notes))], &[]).await;
    let diags = diagnostics_of(&p.routes().await, "h");
    assert!(
        diags
            .iter()
            .any(|d| d.contains("upstream-hash-by") && d.contains("$request_body")),
        "{diags:?}"
    );
    // Round robin, as without the annotation: the same path visits every pod.
    let mut used = HashSet::new();
    for _ in 0..6 {
        used.insert(pod_for(&p, "/same", None).await);
    }
    assert_eq!(used.len(), 3, "{used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_affinity_wins_over_the_hash() {
    let web = pods("web", 3).await;
    let notes = [
        (HASH_BY, "$request_uri"),
        ("nginx.ingress.kubernetes.io/affinity", "cookie"),
    ];
    let p = Portico::start(&[("all.yaml", manifests(&web, &notes))], &[]).await;
    let diags = diagnostics_of(&p.routes().await, "h");
    assert!(
        diags
            .iter()
            .any(|d| d.contains("upstream-hash-by") && d.contains("affinity")),
        "{diags:?}"
    );
    let (status, headers, _) = get(p.http, "h.test", "/x").await.unwrap();
    assert_eq!(status, 200);
    assert!(headers.contains_key("set-cookie"), "affinity sets its cookie");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subset_key_spreads_its_requests_over_its_subset_only() {
    let web = pods("web", 6).await;
    let notes = [
        (HASH_BY, "$http_x_user"),
        ("nginx.ingress.kubernetes.io/upstream-hash-by-subset", "true"),
        ("nginx.ingress.kubernetes.io/upstream-hash-by-subset-size", "2"),
    ];
    let p = Portico::start(&[("all.yaml", manifests(&web, &notes))], &[]).await;
    let mut subsets = HashSet::new();
    for u in 0..12 {
        let user = format!("u{u}");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..40 {
            seen.insert(pod_for(&p, "/", Some(("x-user", &user))).await);
        }
        // Each request draws one of the 2: both show up in 40 unless with odds of 2^-39.
        assert_eq!(seen.len(), 2, "{user}: {seen:?}");
        subsets.insert(seen);
    }
    // 6 pods in subsets of 2 are 3 disjoint subsets.
    assert!(subsets.len() >= 2 && subsets.len() <= 3, "{subsets:?}");
    let all: Vec<&String> = subsets.iter().flatten().collect();
    assert_eq!(
        all.len(),
        all.iter().collect::<HashSet<_>>().len(),
        "subsets are disjoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_subset_size_is_a_warning_and_the_default_three() {
    let web = pods("web", 6).await;
    let notes = [
        (HASH_BY, "$request_uri"),
        ("nginx.ingress.kubernetes.io/upstream-hash-by-subset", "true"),
        (
            "nginx.ingress.kubernetes.io/upstream-hash-by-subset-size",
            "99999999999",
        ),
    ];
    let p = Portico::start(&[("all.yaml", manifests(&web, &notes))], &[]).await;
    let diags = diagnostics_of(&p.routes().await, "h");
    assert!(
        diags.iter().any(|d| d.contains("upstream-hash-by-subset-size")),
        "{diags:?}"
    );
    let mut seen = HashSet::new();
    for _ in 0..60 {
        seen.insert(pod_for(&p, "/one", None).await);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}
