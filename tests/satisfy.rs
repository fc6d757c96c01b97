//! `satisfy` end to end: source ranges, basic auth and external auth combined as nginx's
//! `satisfy any` / `satisfy all` do, against a real auth service written here that counts
//! what it is asked, and echo pods.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portico::fixture::{self, yaml};
use support::*;

/// The auth service: `Bearer good` → 200 with `X-User: sso-user`; `Bearer forbidden` → 403;
/// `Bearer broken` → 502; anything else → 401 with a Bearer challenge. Counts its requests.
async fn auth_service() -> (SocketAddr, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = asked.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let token = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    async move {
                        let r = Response::builder();
                        let r = match token.as_str() {
                            "Bearer good" => r.status(200).header("x-user", "sso-user"),
                            "Bearer forbidden" => r.status(403),
                            "Bearer broken" => r.status(502),
                            _ => r.status(401).header("www-authenticate", "Bearer realm=\"sso\""),
                        };
                        Ok::<_, Infallible>(r.body(Full::new(Bytes::new())).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, asked)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

async fn get_as(p: &Portico, host: &str, authorization: Option<&str>, extra: &[(&str, &str)]) -> Answer {
    let mut b = Request::builder().uri("/x?a=b").header("host", host);
    if let Some(a) = authorization {
        b = b.header("authorization", a);
    }
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    request(p.http, b.body(Full::new(Bytes::new())).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn satisfy_any_and_all_combine_ranges_basic_and_external_auth() {
    let web = pods("web", 1).await;
    let (auth, asked) = auth_service().await;
    let url = format!("http://{auth}/check");
    let basic_auth = |extra: &[(&'static str, String)]| {
        let mut v: Vec<(&str, String)> = vec![
            ("auth-type", "basic".into()),
            ("auth-secret", "users".into()),
            ("auth-realm", "staff".into()),
        ];
        v.extend(extra.iter().cloned());
        v
    };
    let manifests = class()
        + &service("web", &web)
        + &yaml(&[fixture::opaque_secret("default", "users", &[("auth", b"alice:{PLAIN}alice-pw\n")]).into()])
        // The client (127.0.0.1) is in the allowlist: with any, no password is asked.
        + &nginx_annotated(
            "any-allowed",
            "any-allowed.test",
            &basic_auth(&[
                ("whitelist-source-range", "127.0.0.1/32".into()),
                ("satisfy", "any".into()),
            ]),
        )
        // Outside the allowlist: the password lets in.
        + &nginx_annotated(
            "any-outside",
            "any-outside.test",
            &basic_auth(&[
                ("allowlist-source-range", "10.0.0.0/8".into()),
                ("satisfy", "any".into()),
            ]),
        )
        // In a denied range: with any, the password still lets in (nginx's deny is one check).
        + &nginx_annotated(
            "any-denied",
            "any-denied.test",
            &basic_auth(&[
                ("denylist-source-range", "127.0.0.0/8".into()),
                ("satisfy", "any".into()),
            ]),
        )
        + &nginx_annotated(
            "all-allowed",
            "all-allowed.test",
            &basic_auth(&[
                ("whitelist-source-range", "127.0.0.1/32".into()),
                ("satisfy", "all".into()),
            ]),
        )
        + &nginx_annotated(
            "all-outside",
            "all-outside.test",
            &basic_auth(&[("whitelist-source-range", "10.0.0.0/8".into())]),
        )
        // ingress-nginx's e2e: basic and external auth with a sign-in page, satisfy any.
        + &nginx_annotated(
            "any-both",
            "any-both.test",
            &basic_auth(&[
                ("auth-url", url.clone()),
                ("auth-signin", "http://$host/auth/start".into()),
                ("auth-response-headers", "X-User".into()),
                ("satisfy", "any".into()),
            ]),
        )
        + &nginx_annotated(
            "any-both-nosignin",
            "any-nosignin.test",
            &basic_auth(&[("auth-url", url.clone()), ("satisfy", "any".into())]),
        )
        + &nginx_annotated(
            "all-both",
            "all-both.test",
            &basic_auth(&[
                ("auth-url", url.clone()),
                ("auth-signin", "http://$host/auth/start".into()),
            ]),
        )
        // An allowed client skips the auth service, and cannot forge what it would have set.
        + &nginx_annotated(
            "any-external",
            "any-external.test",
            &[
                ("auth-url", url.clone()),
                ("auth-response-headers", "X-User".into()),
                ("whitelist-source-range", "127.0.0.1/32".into()),
                ("satisfy", "any".into()),
            ],
        )
        + &nginx_annotated(
            "any-external-outside",
            "any-external-outside.test",
            &[
                ("auth-url", url.clone()),
                ("whitelist-source-range", "10.0.0.0/8".into()),
                ("satisfy", "any".into()),
            ],
        )
        + &nginx_annotated(
            "bad",
            "bad.test",
            &basic_auth(&[
                ("whitelist-source-range", "127.0.0.1/32".into()),
                ("satisfy", "ANY".into()),
            ]),
        );
    let p = Portico::start(&[("all.yaml", manifests)], &["--allow-loopback-auth-url"]).await;
    let alice = basic("alice", "alice-pw");
    let wrong = basic("alice", "nope");

    // satisfy any, allowed address: through without a password (and with a wrong one).
    assert_eq!(get_as(&p, "any-allowed.test", None, &[]).await.0, 200);
    assert_eq!(get_as(&p, "any-allowed.test", Some(&wrong), &[]).await.0, 200);

    // satisfy any, outside the allowlist or in the denylist: the password decides; without
    // it the answer is basic auth's 401 challenge, not the ranges' 403.
    for host in ["any-outside.test", "any-denied.test"] {
        assert_eq!(get_as(&p, host, Some(&alice), &[]).await.0, 200, "{host}");
        for who in [None, Some(wrong.as_str())] {
            let (s, h, _) = get_as(&p, host, who, &[]).await;
            assert_eq!(s, 401, "{host}");
            assert_eq!(h["www-authenticate"], "Basic realm=\"staff\"");
        }
    }

    // satisfy all (said or not): every check must pass.
    assert_eq!(get_as(&p, "all-allowed.test", None, &[]).await.0, 401);
    assert_eq!(get_as(&p, "all-allowed.test", Some(&alice), &[]).await.0, 200);
    assert_eq!(get_as(&p, "all-outside.test", Some(&alice), &[]).await.0, 403);

    // Basic and external auth, satisfy any: the password alone lets in without asking the
    // service; a token the service accepts alone lets in (its fields copied); with neither,
    // both say 401, which auth-signin turns into the redirect (ingress-nginx's e2e).
    let before = asked.load(Ordering::SeqCst);
    let (s, _, b) = get_as(&p, "any-both.test", Some(&alice), &[("x-user", "mallory")]).await;
    assert_eq!(s, 200);
    assert!(json(&b)["headers"].get("x-user").is_none(), "{b}");
    assert_eq!(asked.load(Ordering::SeqCst), before, "the auth service is not asked");
    let (s, _, b) = get_as(&p, "any-both.test", Some("Bearer good"), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(json(&b)["headers"]["x-user"], "sso-user");
    assert_eq!(asked.load(Ordering::SeqCst), before + 1);
    let (s, h, _) = get_as(&p, "any-both.test", None, &[]).await;
    assert_eq!(s, 302);
    assert_eq!(
        h["location"],
        "http://any-both.test/auth/start?rd=http://any-both.test%2Fx%3Fa%3Db"
    );
    // The service's 403 after basic auth's 401: the 401 (here the redirect) wins, as in nginx.
    let (s, _, _) = get_as(&p, "any-both.test", Some("Bearer forbidden"), &[]).await;
    assert_eq!(s, 302);
    // An auth service that fails is a 500, whatever came before.
    let (s, _, _) = get_as(&p, "any-both.test", Some("Bearer broken"), &[]).await;
    assert_eq!(s, 500);
    // Without auth-signin: basic auth's challenge, the first 401.
    let (s, h, _) = get_as(&p, "any-nosignin.test", None, &[]).await;
    assert_eq!(
        (s, h["www-authenticate"].to_str().unwrap()),
        (401, "Basic realm=\"staff\"")
    );
    let (s, _, _) = get_as(&p, "any-nosignin.test", Some("Bearer forbidden"), &[]).await;
    assert_eq!(s, 401);

    // satisfy all with auth-signin: basic auth's 401 goes to the sign-in page too (nginx's
    // error_page 401 covers the location); the password alone is not enough.
    let (s, h, _) = get_as(&p, "all-both.test", None, &[]).await;
    assert_eq!(s, 302);
    assert!(
        h["location"]
            .to_str()
            .unwrap()
            .starts_with("http://all-both.test/auth/start?rd=")
    );
    assert_eq!(get_as(&p, "all-both.test", Some(&alice), &[]).await.0, 302);

    // External auth and an allowlist, satisfy any.
    let before = asked.load(Ordering::SeqCst);
    let (s, _, b) = get_as(&p, "any-external.test", None, &[("x-user", "mallory")]).await;
    assert_eq!(s, 200);
    assert!(json(&b)["headers"].get("x-user").is_none(), "{b}");
    assert_eq!(asked.load(Ordering::SeqCst), before);
    assert_eq!(get_as(&p, "any-external-outside.test", None, &[]).await.0, 401);
    assert_eq!(
        get_as(&p, "any-external-outside.test", Some("Bearer forbidden"), &[])
            .await
            .0,
        403
    );
    assert_eq!(
        get_as(&p, "any-external-outside.test", Some("Bearer good"), &[])
            .await
            .0,
        200
    );

    // An invalid value is a Warning and means all.
    assert_eq!(get_as(&p, "bad.test", None, &[]).await.0, 401);
    let routes = p.routes().await;
    assert!(
        diagnostics_of(&routes, "bad")
            .iter()
            .any(|m| m.contains("satisfy=\"ANY\"")),
        "{:?}",
        diagnostics_of(&routes, "bad")
    );
    assert!(diagnostics_of(&routes, "any-both").is_empty());
}
