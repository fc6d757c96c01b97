//! External authentication (`auth-url` and its family) end to end: a real auth service,
//! written here, that records exactly what each auth request carried and answers by the
//! bearer token it finds; Portico in front of echo pods.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;

/// One auth request as the service saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    headers: HeaderMap,
}

/// The auth service: `Bearer good` → 200 with user fields and a cookie; `Bearer forbidden`
/// → 403 with a cookie; `Bearer broken` → 502; anything else → 401 with a challenge.
async fn auth_service() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        log.lock().unwrap().push(Seen {
                            method: req.method().to_string(),
                            target: req.uri().to_string(),
                            headers: req.headers().clone(),
                        });
                        let token = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        let r = Response::builder();
                        let r = match token {
                            "Bearer good" => r
                                .status(200)
                                .header("x-auth-request-user", "alice")
                                .header("x-auth-request-email", "alice@example.org")
                                .header("x-not-listed", "no")
                                .header("set-cookie", "session=fresh; Path=/"),
                            "Bearer forbidden" => r.status(403).header("set-cookie", "tried=1"),
                            "Bearer broken" => r.status(502),
                            _ => r.status(401).header("www-authenticate", "Bearer realm=\"sso\""),
                        };
                        Ok::<_, Infallible>(r.body(Full::new(Bytes::from_static(b"auth body"))).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn get_with(p: &Portico, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut b = Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    request(p.http, b.body(Full::new(Bytes::new())).unwrap()).await.unwrap()
}

fn last(seen: &Arc<Mutex<Vec<Seen>>>) -> Seen {
    seen.lock()
        .unwrap()
        .last()
        .cloned()
        .expect("the auth service was asked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_url_family_against_a_real_service() {
    let web = pods("web", 1).await;
    let (auth, seen) = auth_service().await;
    let url = format!("http://{auth}/oauth2/auth?orig=$escaped_request_uri");
    let manifests = class()
        + &service("web", &web)
        + &nginx_annotated(
            "ext",
            "ext.test",
            &[
                ("auth-url", url.clone()),
                (
                    "auth-response-headers",
                    "X-Auth-Request-User, X-Auth-Request-Email".into(),
                ),
            ],
        )
        + &nginx_annotated(
            "signin",
            "signin.test",
            &[
                ("auth-url", url.clone()),
                ("auth-signin", "https://$host/oauth2/start".into()),
                ("auth-method", "POST".into()),
                ("auth-request-redirect", "https://signin.test/back".into()),
            ],
        )
        + &nginx_annotated(
            "param",
            "param.test",
            &[
                ("auth-url", url.clone()),
                ("auth-signin", "https://sso.example/start".into()),
                ("auth-signin-redirect-param", "orig".into()),
            ],
        )
        + &nginx_annotated(
            "always",
            "always.test",
            &[("auth-url", url.clone()), ("auth-always-set-cookie", "true".into())],
        )
        + &nginx_annotated(
            "cached",
            "cached.test",
            &[
                ("auth-url", format!("http://{auth}/cached")),
                ("auth-cache-key", "$http_authorization".into()),
                ("auth-cache-duration", "200 401 10m".into()),
            ],
        )
        + &nginx_annotated(
            "injection",
            "injection.test",
            &[("auth-url", format!("http://{auth}/x$request_body"))],
        )
        + &nginx_annotated(
            "host-var",
            "*.wild.test",
            &[("auth-url", "http://$host/oauth2/auth".into())],
        )
        + &annotated_ingress(
            "twin",
            "twin.test",
            "/",
            "web",
            &[("portico.dev/auth-url", &format!("http://{auth}/twin"))],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &["--allow-loopback-auth-url"]).await;

    // 2xx: through, with the listed fields copied (a client's own copy replaced, or removed
    // when the service does not send it), the cookie on the response.
    let (s, h, b) = get_with(
        &p,
        "ext.test",
        "/app/page?a=1&b=2",
        &[
            ("authorization", "Bearer good"),
            ("cookie", "_oauth2_proxy=abc"),
            ("x-auth-request-user", "mallory"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let echoed = json(&b);
    assert_eq!(echoed["target"], "/app/page?a=1&b=2");
    assert_eq!(echoed["headers"]["x-auth-request-user"], "alice");
    assert_eq!(echoed["headers"]["x-auth-request-email"], "alice@example.org");
    assert!(echoed["headers"].get("x-not-listed").is_none());
    assert_eq!(h["set-cookie"], "session=fresh; Path=/");

    // What the auth service saw: the original request's method, URL, cookies and
    // Authorization, the forwarding fields, and no body framing.
    let a = last(&seen);
    assert_eq!(a.method, "GET");
    assert_eq!(a.target, "/oauth2/auth?orig=%2Fapp%2Fpage%3Fa%3D1%26b%3D2");
    let hv = |n: &str| a.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(hv("host").as_deref(), Some(auth.to_string().as_str()));
    assert_eq!(
        hv("x-original-url").as_deref(),
        Some("http://ext.test/app/page?a=1&b=2")
    );
    assert_eq!(hv("x-original-method").as_deref(), Some("GET"));
    assert_eq!(hv("authorization").as_deref(), Some("Bearer good"));
    assert_eq!(hv("cookie").as_deref(), Some("_oauth2_proxy=abc"));
    assert_eq!(hv("x-forwarded-host").as_deref(), Some("ext.test"));
    assert_eq!(hv("x-forwarded-proto").as_deref(), Some("http"));
    // The client's own X-Forwarded-For is not believed (no --trusted-proxies): the peer.
    assert_eq!(hv("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(hv("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(hv("x-auth-request-redirect").as_deref(), Some("/app/page?a=1&b=2"));
    assert!(hv("x-request-id").is_some());
    assert!(hv("content-length").is_none() && hv("transfer-encoding").is_none());
    assert!(hv("x-original-uri").is_none(), "only with auth-method");

    // Whatever the client's method, the auth request is a GET without body (nginx's
    // auth_request subrequest; auth services serving GET and HEAD only rely on it) and says
    // the method in X-Original-Method; the upstream gets the request and its body.
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let req = Request::builder()
            .method(method)
            .uri("/form")
            .header("host", "ext.test")
            .header("authorization", "Bearer good")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(b"a=1&b=2")))
            .unwrap();
        let (s, _, b) = request(p.http, req).await.unwrap();
        assert_eq!(s, 200, "{method}: {b}");
        if method != "HEAD" {
            let echoed = json(&b);
            assert_eq!(
                (echoed["method"].as_str(), echoed["body_bytes"].as_u64()),
                (Some(method), Some(7))
            );
        }
        let a = last(&seen);
        assert_eq!(a.method, "GET", "{method}");
        assert_eq!(a.headers["x-original-method"], method);
        assert!(!a.headers.contains_key("content-length") && !a.headers.contains_key("transfer-encoding"));
    }

    // Cookies sent as fields of their own (as HTTP/2 clients do) reach the auth service as
    // one Cookie field, joined with "; " (RFC 9113, 8.2.3).
    let (s, _, _) = get_with(
        &p,
        "ext.test",
        "/",
        &[
            ("authorization", "Bearer good"),
            ("cookie", "_oauth2_proxy_0=first"),
            ("cookie", "_oauth2_proxy_1=second; theme=dark"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let cookies: Vec<_> = last(&seen).headers.get_all("cookie").iter().cloned().collect();
    assert_eq!(cookies, ["_oauth2_proxy_0=first; _oauth2_proxy_1=second; theme=dark"]);

    // 401 without auth-signin: to the client, with the service's challenge; 403 as is;
    // anything else 500. The upstream is never reached.
    let (s, h, _) = get_with(&p, "ext.test", "/", &[]).await;
    assert_eq!(
        (s, h["www-authenticate"].to_str().unwrap()),
        (401, "Bearer realm=\"sso\"")
    );
    let (s, h, _) = get_with(&p, "ext.test", "/", &[("authorization", "Bearer forbidden")]).await;
    assert_eq!(s, 403);
    assert!(
        !h.contains_key("set-cookie"),
        "cookies on errors only with auth-always-set-cookie"
    );
    let (s, _, b) = get_with(&p, "ext.test", "/", &[("authorization", "Bearer broken")]).await;
    assert_eq!(s, 500);
    assert!(!b.contains("auth body"));

    // auth-signin: a 401 becomes a 302 with rd= the original URL; auth-method and
    // auth-request-redirect shape the auth request.
    let (s, h, _) = get_with(&p, "signin.test", "/deep/link?x=1", &[]).await;
    assert_eq!(s, 302);
    assert_eq!(
        h["location"],
        "https://signin.test/oauth2/start?rd=http://signin.test%2Fdeep%2Flink%3Fx%3D1"
    );
    let a = last(&seen);
    assert_eq!(a.method, "POST");
    assert_eq!(a.headers["x-original-method"], "GET");
    assert_eq!(a.headers["x-original-uri"], "/deep/link?x=1");
    assert_eq!(a.headers["x-scheme"], "http");
    assert_eq!(a.headers["x-auth-request-redirect"], "https://signin.test/back");
    let (s, _, _) = get_with(&p, "signin.test", "/", &[("authorization", "Bearer good")]).await;
    assert_eq!(s, 200);

    let (s, h, _) = get_with(&p, "param.test", "/p", &[]).await;
    assert_eq!(
        (s, h["location"].to_str().unwrap()),
        (302, "https://sso.example/start?orig=http://param.test%2Fp")
    );

    // auth-always-set-cookie: the service's cookie also on a denial.
    let (s, h, _) = get_with(&p, "always.test", "/", &[("authorization", "Bearer forbidden")]).await;
    assert_eq!((s, h["set-cookie"].to_str().unwrap()), (403, "tried=1"));

    // auth-cache-key: the same key is asked once while the answer is fresh; another key is
    // asked again. 401s are cached too (listed in auth-cache-duration).
    let count = |path: &str| seen.lock().unwrap().iter().filter(|s| s.target == path).count();
    for _ in 0..3 {
        assert_eq!(
            get_with(&p, "cached.test", "/", &[("authorization", "Bearer good")])
                .await
                .0,
            200
        );
    }
    assert_eq!(count("/cached"), 1);
    for _ in 0..2 {
        assert_eq!(
            get_with(&p, "cached.test", "/", &[("authorization", "Bearer nope")])
                .await
                .0,
            401
        );
    }
    assert_eq!(count("/cached"), 2);

    // The portico.dev/ twin.
    assert_eq!(get_with(&p, "twin.test", "/", &[]).await.0, 401);
    assert_eq!(count("/twin"), 1);

    // Undocumented variables and variables in the host part are refused: the Ingress denies
    // (503) and nothing is sent anywhere.
    let before = seen.lock().unwrap().len();
    for host in ["injection.test", "hostvar.wild.test"] {
        let (s, _, _) = get_with(&p, host, "/", &[("authorization", "Bearer good")]).await;
        assert_eq!(s, 503, "{host}");
    }
    assert_eq!(seen.lock().unwrap().len(), before);
    let routes = p.routes().await;
    assert!(
        diagnostics_of(&routes, "injection")
            .iter()
            .any(|m| m.contains("$request_body"))
    );
    assert!(
        diagnostics_of(&routes, "host-var")
            .iter()
            .any(|m| m.contains("host part") && m.contains("exact"))
    );
}

/// The oauth2-proxy setup `auth-url: https://$host/oauth2/auth`: where every host of the
/// Ingress is an exact name, the auth request goes to the request's host, resolved through
/// the same address checks (a loopback one only with --allow-loopback-auth-url). The other
/// auth annotations take any variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_url_host_from_the_request_and_variables_everywhere() {
    let web = pods("web", 1).await;
    let (auth, seen) = auth_service().await;
    let port = auth.port();
    let manifests = class()
        + &service("web", &web)
        + &nginx_annotated(
            "local",
            "localhost",
            &[
                (
                    "auth-url",
                    format!("http://$host:{port}/oauth2/auth?m=$request_method&a=$arg_a"),
                ),
                ("auth-signin", "$scheme://$best_http_host/start?from=$uri".into()),
                ("auth-cache-key", "$cookie_session".into()),
                ("auth-cache-duration", "200 401 10m".into()),
            ],
        );
    let p = Portico::start(&[("all.yaml", manifests.clone())], &["--allow-loopback-auth-url"]).await;
    let (s, h, _) = get_with(&p, "localhost", "/page?a=7", &[("cookie", "session=s1")]).await;
    assert_eq!(s, 302);
    assert_eq!(
        h["location"],
        "http://localhost/start?from=/page&rd=http://localhost%2Fpage%3Fa%3D7"
    );
    let a = last(&seen);
    assert_eq!(a.target, "/oauth2/auth?m=GET&a=7");
    assert_eq!(a.headers["host"], format!("localhost:{port}"));
    // The cache key is the session cookie: the same session is not asked again, another is.
    let asked = || seen.lock().unwrap().len();
    let before = asked();
    let (s, _, _) = get_with(&p, "localhost", "/other", &[("cookie", "session=s1")]).await;
    assert_eq!((s, asked()), (302, before));
    let (s, _, _) = get_with(
        &p,
        "localhost",
        "/",
        &[("cookie", "session=s2"), ("authorization", "Bearer good")],
    )
    .await;
    assert_eq!((s, asked()), (200, before + 1));
    drop(p);

    // Without the flag the request's host, a loopback address here, is refused: 500, and
    // nothing reaches the service.
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let before = asked();
    let (s, _, _) = get_with(&p, "localhost", "/", &[("authorization", "Bearer good")]).await;
    assert_eq!((s, asked()), (500, before));
}

/// `--global-auth-url` applies to Ingresses without their own `auth-url`, unless they say
/// `enable-global-auth: "false"`; without `--allow-loopback-auth-url` a loopback auth service
/// is refused (500), never skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_auth_url_and_loopback_refusal() {
    let web = pods("web", 1).await;
    let (auth, seen) = auth_service().await;
    let manifests = class()
        + &service("web", &web)
        + &nginx_annotated("plain", "plain.test", &[])
        + &nginx_annotated("opt-out", "optout.test", &[("enable-global-auth", "false".into())])
        + &nginx_annotated("own", "own.test", &[("auth-url", format!("http://{auth}/own"))]);
    let global = format!("http://{auth}/global");
    let p = Portico::start(
        &[("all.yaml", manifests.clone())],
        &["--global-auth-url", &global, "--allow-loopback-auth-url"],
    )
    .await;
    assert_eq!(get_with(&p, "plain.test", "/", &[]).await.0, 401);
    assert_eq!(
        get_with(&p, "plain.test", "/", &[("authorization", "Bearer good")])
            .await
            .0,
        200
    );
    assert_eq!(get_with(&p, "optout.test", "/", &[]).await.0, 200);
    assert_eq!(get_with(&p, "own.test", "/", &[]).await.0, 401);
    let targets: Vec<String> = seen.lock().unwrap().iter().map(|s| s.target.clone()).collect();
    assert_eq!(targets, ["/global", "/global", "/own"]);
    drop(p);

    let p = Portico::start(&[("all.yaml", manifests)], &["--global-auth-url", &global]).await;
    assert_eq!(
        get_with(&p, "plain.test", "/", &[("authorization", "Bearer good")])
            .await
            .0,
        500
    );
    assert_eq!(
        get_with(&p, "own.test", "/", &[("authorization", "Bearer good")])
            .await
            .0,
        500
    );
    assert_eq!(seen.lock().unwrap().len(), 3, "nothing reached the loopback service");
}

/// The ConfigMap's global auth (`global-auth-*`, `no-auth-locations`): the same family as the
/// annotations, against the same auth service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_auth_family_from_the_configmap() {
    use portico::fixture::{self, Prefix, yaml};
    let web = pods("web", 1).await;
    let (auth, seen) = auth_service().await;
    let with = |t: &'static str| [("authorization", t)];
    let url = format!("http://{auth}/check?from=global");
    let app = fixture::ingress("default", "app")
        .class("portico")
        .rule("app.test", "/", Prefix, "web", 80)
        .rule("app.test", "/public", Prefix, "web", 80)
        .rule("app.test", "/.well-known/acme-challenge", Prefix, "web", 80);
    let optout = fixture::ingress("default", "optout")
        .class("portico")
        .annotation("nginx.ingress.kubernetes.io/enable-global-auth", "false")
        .rule("optout.test", "/", Prefix, "web", 80);
    let cm = |extra: &[(&str, &str)]| {
        let mut data = vec![
            ("global-auth-url", url.as_str()),
            ("global-auth-method", "POST"),
            ("global-auth-signin", "https://login.example/start"),
            ("global-auth-signin-redirect-param", "return_to"),
            ("global-auth-response-headers", "X-Auth-Request-User"),
            ("global-auth-request-redirect", "https://app.test/back"),
            ("global-auth-cache-key", "$http_authorization"),
            ("global-auth-cache-duration", "200 10m"),
            ("global-auth-always-set-cookie", "true"),
            ("global-auth-snippet", "return 200;"),
        ];
        data.extend_from_slice(extra);
        yaml(&[fixture::config_map("ingress-nginx", "ingress-nginx-controller", &data).into()])
    };
    let manifests = class() + &service("web", &web) + &yaml(&[app.into(), optout.into()]);
    let p = Portico::start(
        &[
            ("all.yaml", manifests),
            ("cm.yaml", cm(&[("no-auth-locations", "/public")])),
        ],
        &[
            "--configmap",
            "ingress-nginx/ingress-nginx-controller",
            "--allow-loopback-auth-url",
        ],
    )
    .await;
    let asked = || seen.lock().unwrap().len();

    // global-auth-signin with its redirect parameter: a 401 becomes a 302.
    let (s, h, _) = get_with(&p, "app.test", "/x?y=1", &[]).await;
    assert_eq!(s, 302);
    assert_eq!(
        h["location"],
        "https://login.example/start?return_to=http://app.test%2Fx%3Fy%3D1"
    );
    // global-auth-method and global-auth-request-redirect shape the auth request.
    let a = last(&seen);
    assert_eq!((a.method.as_str(), a.target.as_str()), ("POST", "/check?from=global"));
    assert_eq!(a.headers["x-original-uri"], "/x?y=1");
    assert_eq!(a.headers["x-auth-request-redirect"], "https://app.test/back");

    // global-auth-response-headers reach the pod; the answer is cached by its key.
    let before = asked();
    for _ in 0..2 {
        let (s, _, b) = get_with(&p, "app.test", "/", &with("Bearer good")).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(json(&b)["headers"]["x-auth-request-user"], "alice");
    }
    assert_eq!(asked(), before + 1, "global-auth-cache-key: asked once");

    // global-auth-always-set-cookie: the cookie on a denial too.
    let (s, h, _) = get_with(&p, "app.test", "/", &with("Bearer forbidden")).await;
    assert_eq!((s, h["set-cookie"].to_str().unwrap()), (403, "tried=1"));

    // no-auth-locations: Ingress paths starting with /public are not authenticated; the
    // ACME path is no longer listed, so it is; enable-global-auth "false" opts out.
    let before = asked();
    assert_eq!(get_with(&p, "app.test", "/public/page", &[]).await.0, 200);
    assert_eq!(get_with(&p, "optout.test", "/", &[]).await.0, 200);
    assert_eq!(asked(), before, "the auth service was not asked");
    assert_eq!(
        get_with(&p, "app.test", "/.well-known/acme-challenge/t", &[]).await.0,
        302
    );

    let diags = diagnostics_of(&p.routes().await, "ingress-nginx-controller").join("\n");
    assert!(diags.contains("global-auth-snippet"), "{diags}");

    // Without the key, ingress-nginx's default: the ACME HTTP-01 path is exempt.
    let generation = p.routes().await["generation"].as_u64().unwrap();
    p.write("cm.yaml", &cm(&[]));
    p.wait_generation(generation + 1).await;
    assert_eq!(
        get_with(&p, "app.test", "/.well-known/acme-challenge/t", &[]).await.0,
        200
    );
    assert_eq!(get_with(&p, "app.test", "/public/page", &[]).await.0, 302);
}
