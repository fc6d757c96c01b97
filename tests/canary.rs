//! Canary Ingresses end to end over real sockets: a primary Service and a canary Service of
//! echo pods behind one host and path, split as ingress-nginx splits them (session cookie,
//! then header, then cookie, then weight).

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use portico::fixture::{IngressBuilder, yaml};
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// An Ingress `name` for `host` path `/` → `svc`, annotations under the ingress-nginx prefix.
fn ing(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> IngressBuilder {
    annotations
        .iter()
        .fold(ingress_with(name, host, "/", svc, &[]), |i, (k, v)| {
            i.annotation(&format!("{NGINX}{k}"), v)
        })
}

/// A primary Ingress on `host` → Service `web`, and a canary one → Service `canary`.
fn pair(host: &str, primary: &[(&str, &str)], canary: &[(&str, &str)]) -> String {
    let mut notes = vec![("canary", "true")];
    notes.extend_from_slice(canary);
    yaml(&[
        ing(&format!("{host}-main"), host, "web", primary).into(),
        ing(&format!("{host}-canary"), host, "canary", &notes).into(),
    ])
}

/// Services `web` and `canary`, one echo pod each, and the class.
async fn services() -> String {
    let web = pods("web", 1).await;
    let canary = pods("canary", 1).await;
    class() + &service("web", &web) + &service("canary", &canary)
}

/// One GET with `headers`: the status, the pod that answered, and the Set-Cookie values.
async fn call(p: &Portico, host: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<String>) {
    let mut b = Request::builder().uri("/").header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (status, h, body) = request(p.http, b.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let pod = match status {
        200 => json(&body)["pod"].as_str().unwrap().to_string(),
        _ => String::new(),
    };
    let cookies = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    (status, pod, cookies)
}

/// The pod that answers a GET with `headers`.
async fn who(p: &Portico, host: &str, headers: &[(&str, &str)]) -> String {
    let (status, pod, _) = call(p, host, headers).await;
    assert_eq!(status, 200, "{host} {headers:?}");
    pod
}

/// How many of `n` GETs the canary answers.
async fn canary_share(p: &Portico, host: &str, headers: &[(&str, &str)], n: usize) -> usize {
    let mut k = 0;
    for _ in 0..n {
        match who(p, host, headers).await.as_str() {
            "canary-0" => k += 1,
            "web-0" => {}
            other => panic!("answered by {other}"),
        }
    }
    k
}

/// Asserts that `k` canary answers of `n` are within 4 standard deviations of a binomial
/// with probability `share` (a false alarm about once in 16 000 runs).
fn assert_binomial(k: usize, n: usize, share: f64, what: &str) {
    let mean = n as f64 * share;
    let sd = (n as f64 * share * (1.0 - share)).sqrt();
    assert!(
        (k as f64 - mean).abs() <= 4.0 * sd,
        "{what}: {k} of {n} to the canary, expected {mean} ± {}",
        4.0 * sd
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_always_never_value_and_pattern() {
    let manifests = services().await
        + &pair("h.test", &[], &[("canary-by-header", "X-Canary")])
        + &pair(
            "hw.test",
            &[],
            &[("canary-by-header", "X-Canary"), ("canary-weight", "100")],
        )
        + &pair(
            "v.test",
            &[],
            &[("canary-by-header", "X-Canary"), ("canary-by-header-value", "yes")],
        )
        + &pair(
            "pat.test",
            &[],
            &[
                ("canary-by-header", "x_canary"),
                ("canary-by-header-pattern", "^v[0-9]+$"),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // /routes shows the canary on its primary's path.
    let routes = p.routes().await;
    let paths = routes["hosts"]["h.test"].as_array().unwrap();
    let main = paths.iter().find(|r| r["ingress"] == "default/h.test-main").unwrap();
    assert_eq!(main["canary"]["ingress"], "default/h.test-canary", "{paths:?}");
    assert_eq!(main["canary"]["rules"]["header"]["name"], "x-canary", "{paths:?}");
    assert_eq!(main["canary"]["rules"]["weightTotal"], 100, "{paths:?}");
    assert!(
        paths.iter().any(|r| r["ingress"] == "default/h.test-canary"),
        "{paths:?}"
    );

    assert_eq!(who(&p, "h.test", &[]).await, "web-0");
    assert_eq!(who(&p, "h.test", &[("x-canary", "always")]).await, "canary-0");
    assert_eq!(who(&p, "h.test", &[("X-CANARY", "always")]).await, "canary-0");
    assert_eq!(who(&p, "h.test", &[("x-canary", "never")]).await, "web-0");
    assert_eq!(
        who(&p, "h.test", &[("x-canary", "Always")]).await,
        "web-0",
        "values are case-sensitive"
    );
    // `never` beats the weight; other values fall through to it.
    assert_eq!(who(&p, "hw.test", &[]).await, "canary-0");
    assert_eq!(who(&p, "hw.test", &[("x-canary", "never")]).await, "web-0");
    assert_eq!(who(&p, "hw.test", &[("x-canary", "maybe")]).await, "canary-0");
    // With a value, only that value sends to the canary; always and never mean nothing.
    assert_eq!(who(&p, "v.test", &[("x-canary", "yes")]).await, "canary-0");
    assert_eq!(who(&p, "v.test", &[("x-canary", "always")]).await, "web-0");
    assert_eq!(who(&p, "v.test", &[("x-canary", "Yes")]).await, "web-0");
    assert_eq!(who(&p, "v.test", &[]).await, "web-0");
    // A pattern matches the value; `_` in the header name stands for `-`, as in nginx.
    assert_eq!(who(&p, "pat.test", &[("x-canary", "v2")]).await, "canary-0");
    assert_eq!(who(&p, "pat.test", &[("x-canary", "v12")]).await, "canary-0");
    assert_eq!(who(&p, "pat.test", &[("x-canary", "v")]).await, "web-0");
    assert_eq!(who(&p, "pat.test", &[("x-canary", "always")]).await, "web-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_always_never_and_precedence() {
    let manifests = services().await
        + &pair("c.test", &[], &[("canary-by-cookie", "use_canary")])
        + &pair(
            "all.test",
            &[],
            &[
                ("canary-by-header", "X-Canary"),
                ("canary-by-cookie", "use_canary"),
                ("canary-weight", "100"),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    assert_eq!(who(&p, "c.test", &[]).await, "web-0");
    assert_eq!(who(&p, "c.test", &[("cookie", "use_canary=always")]).await, "canary-0");
    assert_eq!(
        who(&p, "c.test", &[("cookie", "a=b; use_canary=always")]).await,
        "canary-0"
    );
    assert_eq!(who(&p, "c.test", &[("cookie", "use_canary=never")]).await, "web-0");
    assert_eq!(who(&p, "c.test", &[("cookie", "use_canary=yes")]).await, "web-0");
    assert_eq!(who(&p, "c.test", &[("cookie", "other=always")]).await, "web-0");

    // Header beats cookie beats weight.
    let both = |h: &'static str, c: &'static str| [("x-canary", h), ("cookie", c)];
    assert_eq!(who(&p, "all.test", &both("never", "use_canary=always")).await, "web-0");
    assert_eq!(
        who(&p, "all.test", &both("always", "use_canary=never")).await,
        "canary-0"
    );
    assert_eq!(who(&p, "all.test", &both("other", "use_canary=never")).await, "web-0");
    assert_eq!(who(&p, "all.test", &[("cookie", "use_canary=never")]).await, "web-0");
    assert_eq!(who(&p, "all.test", &[("cookie", "use_canary=other")]).await, "canary-0");
    assert_eq!(who(&p, "all.test", &[]).await, "canary-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_splits_within_binomial_bounds() {
    let manifests = services().await
        + &pair("w30.test", &[], &[("canary-weight", "30")])
        + &pair(
            "total.test",
            &[],
            &[("canary-weight", "100"), ("canary-weight-total", "400")],
        )
        + &pair("w0.test", &[], &[("canary-weight", "0")])
        + &pair("w100.test", &[], &[("canary-weight", "100")])
        + &pair(
            "full.test",
            &[],
            &[("canary-weight", "1000"), ("canary-weight-total", "1000")],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    let n = 2000;
    let k = canary_share(&p, "w30.test", &[], n).await;
    assert_binomial(k, n, 0.3, "canary-weight 30");
    let k = canary_share(&p, "total.test", &[], n).await;
    assert_binomial(k, n, 0.25, "canary-weight 100 of 400");
    assert_eq!(canary_share(&p, "w0.test", &[], 300).await, 0, "weight 0");
    assert_eq!(canary_share(&p, "w100.test", &[], 300).await, 300, "weight 100");
    assert_eq!(
        canary_share(&p, "full.test", &[], 300).await,
        300,
        "weight 1000 of 1000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_canary_sends_everything_to_the_primary() {
    let base = services().await;
    let p = Portico::start(
        &[(
            "all.yaml",
            base.clone() + &pair("r.test", &[], &[("canary-weight", "100")]),
        )],
        &[],
    )
    .await;
    assert_eq!(canary_share(&p, "r.test", &[], 20).await, 20);
    let generation = p.routes().await["generation"].as_u64().unwrap();
    p.write(
        "all.yaml",
        &(base + &yaml(&[ing("r.test-main", "r.test", "web", &[]).into()])),
    );
    p.wait_generation(generation + 1).await;
    assert_eq!(canary_share(&p, "r.test", &[("x-canary", "always")], 50).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_without_primary_is_a_diagnostic_and_not_served() {
    let manifests = services().await
        + &yaml(&[ing(
            "lonely",
            "lonely.test",
            "canary",
            &[("canary", "true"), ("canary-weight", "100")],
        )
        .into()])
        + &yaml(&[ing("not-canary", "n.test", "web", &[("canary-weight", "50")]).into()]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    let (status, _, _) = call(&p, "lonely.test", &[]).await;
    assert_eq!(status, 404);
    let routes = p.routes().await;
    let diags = diagnostics_of(&routes, "lonely");
    assert!(
        diags.iter().any(|d| d.contains("no primary (non-canary) Ingress")),
        "{diags:?}"
    );
    // canary-* without canary: "true" is a plain Ingress, and says so.
    assert_eq!(canary_share(&p, "n.test", &[], 20).await, 0);
    let diags = diagnostics_of(&routes, "not-canary");
    assert!(
        diags.iter().any(|d| d.contains("canary-weight has no effect")),
        "{diags:?}"
    );
}

/// The name=value part of a Set-Cookie for `name`, if one was set.
fn cookie<'c>(set: &'c [String], name: &str) -> Option<&'c str> {
    set.iter()
        .find_map(|c| c.split(';').next().filter(|nv| nv.starts_with(&format!("{name}="))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_affinity_keeps_canary_sessions_on_the_canary() {
    let primary = [("affinity", "cookie"), ("session-cookie-name", "aff")];
    let manifests = services().await
        + &pair(
            "s.test",
            &primary,
            &[("canary-by-header", "ForceCanary"), ("canary-by-header-value", "yes")],
        )
        + &pair(
            "l.test",
            &primary,
            &[
                ("canary-by-header", "ForceCanary"),
                ("canary-by-header-value", "yes"),
                ("affinity-canary-behavior", "legacy"),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // A session the canary served stays there without the header.
    let (_, pod, set) = call(&p, "s.test", &[("forcecanary", "yes")]).await;
    assert_eq!(pod, "canary-0");
    let aff = cookie(&set, "aff")
        .expect("the canary sets the affinity cookie")
        .to_string();
    for _ in 0..50 {
        assert_eq!(who(&p, "s.test", &[("cookie", &aff)]).await, "canary-0");
    }
    // A session the primary served stays there, even with the header (as ingress-nginx).
    let (_, pod, set) = call(&p, "s.test", &[]).await;
    assert_eq!(pod, "web-0");
    let main = cookie(&set, "aff")
        .expect("the primary sets the affinity cookie")
        .to_string();
    assert_ne!(main, aff);
    for _ in 0..20 {
        assert_eq!(
            who(&p, "s.test", &[("cookie", &main), ("forcecanary", "yes")]).await,
            "web-0"
        );
    }

    // Legacy: the canary keeps no sessions, so it sets no cookie.
    let (_, pod, set) = call(&p, "l.test", &[("forcecanary", "yes")]).await;
    assert_eq!(pod, "canary-0");
    assert_eq!(cookie(&set, "aff"), None, "{set:?}");
    assert_eq!(who(&p, "l.test", &[]).await, "web-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_answers_for_its_own_endpoints() {
    let web = pods("web", 1).await;
    let canary = pods("canary", 1).await;
    let rule = [("canary-by-header", "CanaryByHeader")];
    let manifests = class()
        + &service("web", &web)
        + &service("canary", &canary)
        + &service("gone", &[])
        + &yaml(&[
            ing("a-main", "a.test", "web", &[]).into(),
            ing("a-canary", "a.test", "gone", &[("canary", "true"), rule[0]]).into(),
            ing("b-main", "b.test", "gone", &[]).into(),
            ing("b-canary", "b.test", "canary", &[("canary", "true"), rule[0]]).into(),
        ]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    // A canary without endpoints answers 503 for what it is sent, and only for that.
    assert_eq!(call(&p, "a.test", &[("canarybyheader", "always")]).await.0, 503);
    assert_eq!(who(&p, "a.test", &[("canarybyheader", "never")]).await, "web-0");
    assert_eq!(who(&p, "a.test", &[]).await, "web-0");
    // And the other way round.
    assert_eq!(who(&p, "b.test", &[("canarybyheader", "always")]).await, "canary-0");
    assert_eq!(call(&p, "b.test", &[("canarybyheader", "never")]).await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_backend_canary_splits_the_catch_all() {
    let header = ("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary");
    let main = portico::fixture::ingress("default", "main")
        .class("portico")
        .default_backend("web", 80);
    let canary = portico::fixture::ingress("default", "main-canary")
        .class("portico")
        .default_backend("canary", 80)
        .annotation("nginx.ingress.kubernetes.io/canary", "true")
        .annotation(header.0, header.1);
    let manifests = services().await + &yaml(&[main.into(), canary.into()]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    assert_eq!(who(&p, "any.test", &[]).await, "web-0");
    assert_eq!(who(&p, "other.test", &[("x-canary", "always")]).await, "canary-0");
    assert_eq!(who(&p, "other.test", &[("x-canary", "never")]).await, "web-0");
}
