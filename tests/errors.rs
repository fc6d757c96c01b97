//! `custom-http-errors`, `default-backend` and `--default-backend-service` end to end: a real
//! `portico` process, an upstream that answers the status its path asks for, and an error
//! backend written here that reports the X-* headers it received, as ingress-nginx's custom
//! error backends read them.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpListener;

const ERRORS: &str = "nginx.ingress.kubernetes.io/custom-http-errors";
const DEFAULT_BACKEND: &str = "nginx.ingress.kubernetes.io/default-backend";

/// Serves `answer` on a loopback port, forever.
async fn serve(answer: fn(Request<Incoming>) -> Response<Full<Bytes>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { continue };
            tokio::spawn(async move {
                let svc = service_fn(move |req| async move { Ok::<_, Infallible>(answer(req)) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// The upstream: `/status/NNN` answers NNN with body `app NNN`; anything else 200.
fn app(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let code = req
        .uri()
        .path()
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(200);
    let mut r = Response::new(Full::new(Bytes::from(format!("app {code}"))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r
}

/// The error backend: answers the status X-Code names, with a JSON report of the request.
fn error_backend(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let code = h("x-code").and_then(|c| c.parse::<u16>().ok()).unwrap_or(404);
    let report = serde_json::json!({
        "backend": "errors",
        "method": req.method().as_str(),
        "target": req.uri().to_string(),
        "host": h("host"),
        "x-code": h("x-code"),
        "x-format": h("x-format"),
        "x-original-uri": h("x-original-uri"),
        "x-namespace": h("x-namespace"),
        "x-ingress-name": h("x-ingress-name"),
        "x-service-name": h("x-service-name"),
        "x-service-port": h("x-service-port"),
        "x-request-id": h("x-request-id"),
    });
    let mut r = Response::new(Full::new(Bytes::from(report.to_string())));
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut()
        .insert("x-error-method", req.method().as_str().parse().unwrap());
    r
}

async fn send(p: &Portico, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    request(p.http, req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_codes_are_answered_by_the_error_backend_with_the_x_headers() {
    let (up, errs) = (serve(app).await, serve(error_backend).await);
    let manifests = class()
        + &service("app", &[up])
        + &service("errors", &[errs])
        + &annotated_ingress(
            "shop",
            "e.test",
            "/",
            "app",
            &[(ERRORS, "404, 503"), (DEFAULT_BACKEND, "errors")],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    assert!(diagnostics_of(&p.routes().await, "shop").is_empty());

    let (status, _, body) = send(
        &p,
        "e.test",
        "/status/404?lang=de",
        &[("accept", "application/json"), ("x-request-id", "req-42")],
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let r = json(&body);
    assert_eq!(r["backend"], "errors");
    assert_eq!(r["method"], "GET");
    assert_eq!(r["target"], "/?lang=de", "the path becomes /, the query stays");
    assert_eq!(r["host"], "e.test");
    assert_eq!(r["x-code"], "404");
    assert_eq!(r["x-format"], "application/json");
    assert_eq!(r["x-original-uri"], "/status/404?lang=de");
    assert_eq!(r["x-namespace"], "default");
    assert_eq!(r["x-ingress-name"], "shop");
    assert_eq!(r["x-service-name"], "app");
    assert_eq!(r["x-service-port"], "80");
    assert_eq!(r["x-request-id"], "req-42");

    // A generated request id reaches the error backend too; no Accept, no X-Format.
    let (status, _, body) = send(&p, "e.test", "/status/503", &[]).await;
    assert_eq!(status, 503);
    let r = json(&body);
    assert_eq!(r["x-code"], "503");
    assert_eq!(r["x-format"], serde_json::Value::Null);
    assert_eq!(r["x-request-id"].as_str().map(str::len), Some(32));

    // An HTTP/2 client names the host in the request target: the error backend gets it as Host.
    let h2 = tls_get(p.https, Some("e.test"), "/status/404", true).await.unwrap();
    assert_eq!(h2.status, 404, "{}", h2.body);
    let r = json(&h2.body);
    assert_eq!((&r["host"], &r["x-code"]), (&"e.test".into(), &"404".into()));

    // HEAD asks the error backend with HEAD.
    let req = Request::builder()
        .method("HEAD")
        .uri("/status/404")
        .header("host", "e.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body) = request(p.http, req).await.unwrap();
    assert_eq!((status, body.as_str()), (404, ""));
    assert_eq!(headers["x-error-method"], "HEAD");

    // Codes not listed, and successes, are the upstream's own.
    for (path, code) in [("/status/500", 500), ("/status/403", 403), ("/ok", 200)] {
        let (status, _, body) = send(&p, "e.test", path, &[]).await;
        assert_eq!((status, body.as_str()), (code, format!("app {code}").as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portico_own_errors_go_to_the_global_default_backend_when_listed() {
    let errs = serve(error_backend).await;
    // `app` has no endpoints (Portico answers 503), `gone` does not exist (503 too).
    let manifests = class()
        + &service("app", &[])
        + &service("errors", &[errs])
        + &annotated_ingress("shop", "e.test", "/", "app", &[(ERRORS, "503")])
        + &annotated_ingress("plain", "p.test", "/", "app", &[]);
    let p = Portico::start(
        &[("all.yaml", manifests)],
        &["--default-backend-service", "default/errors"],
    )
    .await;
    let (status, _, body) = send(&p, "e.test", "/cart", &[("accept", "text/html")]).await;
    assert_eq!(status, 503, "{body}");
    let r = json(&body);
    assert_eq!(r["x-code"], "503");
    assert_eq!(r["x-format"], "text/html");
    assert_eq!(r["x-original-uri"], "/cart");
    assert_eq!(r["x-service-name"], "app");
    // Without the annotation, Portico's own answer.
    let (status, _, body) = send(&p, "p.test", "/cart", &[]).await;
    assert_eq!(status, 503);
    assert!(!body.contains("errors"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_ready_endpoints_falls_back_to_the_default_backend() {
    let web = pods("fallback", 1).await;
    let up = serve(app).await;
    let manifests = |app_pods: &[SocketAddr]| {
        class()
            + &service("app", app_pods)
            + &service("fallback", &web)
            + &annotated_ingress("shop", "f.test", "/", "app", &[(DEFAULT_BACKEND, "fallback")])
    };
    let p = Portico::start(&[("all.yaml", manifests(&[]))], &[]).await;
    let (status, _, body) = send(&p, "f.test", "/cart?id=7", &[]).await;
    assert_eq!(status, 200, "{body}");
    let r = json(&body);
    assert_eq!(r["pod"], "fallback-0");
    assert_eq!(r["target"], "/cart?id=7", "the request goes as it came");
    // Once the Service has an endpoint, it serves again.
    p.write("all.yaml", &manifests(&[up]));
    p.wait_generation(2).await;
    let (status, _, body) = send(&p, "f.test", "/status/201", &[]).await;
    assert_eq!((status, body.as_str()), (201, "app 201"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_error_backend_leaves_the_upstream_answer() {
    let up = serve(app).await;
    let manifests = class()
        + &service("app", &[up])
        + &service("errors", &[refused_addr()])
        + &annotated_ingress(
            "shop",
            "e.test",
            "/",
            "app",
            &[(ERRORS, "404"), (DEFAULT_BACKEND, "errors")],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let (status, _, body) = send(&p, "e.test", "/status/404", &[]).await;
    assert_eq!((status, body.as_str()), (404, "app 404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_and_missing_backends_are_warnings() {
    let up = serve(app).await;
    let manifests = class()
        + &service("app", &[up])
        + &annotated_ingress("codes", "a.test", "/", "app", &[(ERRORS, "404,2000")])
        + &annotated_ingress("nowhere", "b.test", "/", "app", &[(ERRORS, "404")])
        + &annotated_ingress("missing", "c.test", "/", "app", &[(DEFAULT_BACKEND, "nope")]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let routes = p.routes().await;
    let has = |ing: &str, words: &[&str]| {
        let d = diagnostics_of(&routes, ing);
        assert!(d.iter().any(|m| words.iter().all(|w| m.contains(w))), "{ing}: {d:?}");
    };
    has("codes", &["custom-http-errors", "2000"]);
    has("nowhere", &["custom-http-errors", "no error backend"]);
    has("missing", &["default-backend", "nope", "does not exist"]);
    // Each is still served, as without the annotation.
    for host in ["a.test", "b.test", "c.test"] {
        let (status, _, body) = send(&p, host, "/status/404", &[]).await;
        assert_eq!((status, body.as_str()), (404, "app 404"), "{host}");
    }
}
