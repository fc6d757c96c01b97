//! The rest of ingress-nginx's common annotations end to end over real sockets: server-alias,
//! from-to-www-redirect, denylist-source-range, x-forwarded-prefix, enable-access-log,
//! service-upstream and the response rewrites (proxy-redirect-*, proxy-cookie-*). Echo pods
//! show what the upstream received.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use portico::fixture::{self, IngressBuilder, Prefix, yaml};
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// An Ingress for `host` + `path` → `svc` port 80, `annotations` under the ingress-nginx prefix.
fn ing(name: &str, host: &str, path: &str, svc: &str, annotations: &[(&str, &str)]) -> IngressBuilder {
    annotations.iter().fold(
        fixture::ingress("default", name)
            .class("portico")
            .rule(host, path, Prefix, svc, 80),
        |i, (k, v)| i.annotation(&format!("{NGINX}{k}"), v),
    )
}

fn manifest(ingresses: Vec<IngressBuilder>) -> String {
    yaml(&ingresses.into_iter().map(Into::into).collect::<Vec<_>>())
}

async fn send(addr: std::net::SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut b = Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    request(addr, b.body(Full::new(Bytes::new())).unwrap()).await.unwrap()
}

fn location(h: &http::HeaderMap) -> &str {
    h.get("location").map_or("", |v| v.to_str().unwrap())
}

/// A self-signed certificate for `names`, its subject CN the first name, as a TLS Secret.
fn generated_secret(name: &str, names: &[&str]) -> String {
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    yaml(&[fixture::tls_secret("default", name, &cert.pem(), &key.serialize_pem()).into()])
}

/// ingress-nginx's e2e `server-alias`: the aliases serve every path of the host (also those
/// of other Ingresses), the Host goes upstream as sent, and an alias never takes a host
/// another Ingress defines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_alias_serves_the_hosts_paths_and_never_takes_a_defined_host() {
    let web = pods("web", 1).await;
    let other = pods("other", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &service("other", &other)
        + &tls_secret("default", "rsa", "rsa.crt", "rsa-pkcs8.key")
        + &manifest(vec![
            ing("app-a", "foo.test", "/app-a", "web", &[]).created("2024-01-01T00:00:00Z"),
            ing(
                "app-b",
                "foo.test",
                "/app-b",
                "web",
                &[("server-alias", "bar.test, taken.test,bad_host!, *.wild.test")],
            )
            .created("2024-01-02T00:00:00Z"),
            ing("taken", "taken.test", "/", "other", &[]).created("2024-01-03T00:00:00Z"),
            ing("late", "foo.test", "/late", "web", &[("server-alias", "late.test")]).created("2024-01-04T00:00:00Z"),
            ing(
                "tls",
                "rsa.example.com",
                "/",
                "web",
                &[("server-alias", "foo.com,plain.test")],
            )
            .tls(&["rsa.example.com"], Some("rsa")),
        ]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    for host in ["foo.test", "bar.test", "x.wild.test"] {
        for path in ["/app-a", "/app-b", "/late"] {
            let (s, _, b) = get(p.http, host, path).await.unwrap();
            assert_eq!(s, 200, "{host}{path}");
            let echo = json(&b);
            assert_eq!(echo["pod"], "web-0", "{host}{path}");
            assert_eq!(echo["headers"]["host"], host, "the Host goes upstream as sent");
        }
    }
    // taken.test stays the other Ingress's; the second aliases of foo.test are not used.
    let (s, _, b) = get(p.http, "taken.test", "/app-a").await.unwrap();
    assert_eq!((s, json(&b)["pod"].as_str().unwrap()), (200, "other-0"));
    assert_eq!(get(p.http, "late.test", "/app-a").await.unwrap().0, 404);
    assert_eq!(get(p.http, "nothing.test", "/app-a").await.unwrap().0, 404);

    let routes = p.routes().await;
    let diags = diagnostics_of(&routes, "app-b").join("\n");
    assert!(diags.contains("taken.test"), "{diags}");
    assert!(diags.contains("bad_host!"), "{diags}");
    let diags = diagnostics_of(&routes, "late").join("\n");
    assert!(diags.contains("app-b"), "{diags}");

    // The host's certificate answers for an alias it covers (rsa.crt names foo.com), the
    // default certificate for one it does not.
    let a = tls_get(p.https, Some("foo.com"), "/", false).await.unwrap();
    assert_eq!((a.status, a.cert_cn.as_str()), (200, "rsa.example.com"));
    assert_eq!(json(&a.body)["headers"]["host"], "foo.com");
    let a = tls_get(p.https, Some("plain.test"), "/", false).await.unwrap();
    assert_eq!(a.status, 200);
    assert_ne!(a.cert_cn, "rsa.example.com");
}

/// ingress-nginx's e2e `from-to-www-redirect`: 308 to `$scheme://host:$server_port` and the
/// request URI less one trailing slash, with the host's certificate when it covers the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_to_www_redirects_to_the_host_with_its_certificate() {
    let web = pods("web", 1).await;
    let clash = pods("clash", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &service("clash", &clash)
        + &generated_secret("both", &["wwwtls.test", "www.wwwtls.test"])
        + &tls_secret("default", "wild", "ec.crt", "ec-sec1.key")
        + &manifest(vec![
            ing("bare", "wwwtls.test", "/", "web", &[("from-to-www-redirect", "true")])
                .tls(&["wwwtls.test", "www.wwwtls.test"], Some("both")),
            ing("www", "www.other.test", "/", "web", &[("from-to-www-redirect", "true")]),
            ing("clash", "clash.test", "/", "web", &[("from-to-www-redirect", "true")]),
            ing("clash-www", "www.clash.test", "/", "clash", &[]),
            ing(
                "uncovered",
                "www.example.com",
                "/",
                "web",
                &[("from-to-www-redirect", "true")],
            )
            .tls(&["www.example.com"], Some("wild")),
            ing("bad", "bad.test", "/", "web", &[("from-to-www-redirect", "yes")]),
        ]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let http_port = p.http.port();

    let (s, h, _) = get(p.http, "www.other.test", "/x").await.unwrap();
    assert_eq!((s, location(&h)), (200, ""), "the host itself is served");
    let (s, h, _) = get(p.http, "other.test", "/foo").await.unwrap();
    assert_eq!(s, 308);
    assert_eq!(location(&h), format!("http://www.other.test:{http_port}/foo"));
    let (s, h, _) = get(p.http, "other.test", "/foo/?a=1/").await.unwrap();
    assert_eq!(
        (s, location(&h)),
        (308, format!("http://www.other.test:{http_port}/foo/?a=1").as_str())
    );
    let (_, h, _) = get(p.http, "OTHER.test", "/").await.unwrap();
    assert_eq!(location(&h), format!("http://www.other.test:{http_port}"));

    // Plain HTTP stays plain; HTTPS goes to HTTPS with the certificate naming both.
    let (s, h, _) = get(p.http, "www.wwwtls.test", "/foo").await.unwrap();
    assert_eq!(
        (s, location(&h)),
        (308, format!("http://wwwtls.test:{http_port}/foo").as_str())
    );
    let a = tls_get(p.https, Some("www.wwwtls.test"), "/", false).await.unwrap();
    assert_eq!(a.status, 308);
    assert_eq!(location(&a.headers), format!("https://wwwtls.test:{}", p.https.port()));
    assert_eq!(a.cert_cn, "wwwtls.test");
    let a = tls_get(p.https, Some("wwwtls.test"), "/", false).await.unwrap();
    assert_eq!((a.status, a.cert_cn.as_str()), (200, "wwwtls.test"));

    // A name another Ingress defines is never taken.
    let (s, _, b) = get(p.http, "www.clash.test", "/").await.unwrap();
    assert_eq!((s, json(&b)["pod"].as_str().unwrap()), (200, "clash-0"));
    let routes = p.routes().await;
    assert!(
        diagnostics_of(&routes, "clash").join("\n").contains("www.clash.test"),
        "{routes}"
    );
    // A certificate that does not name the other host: redirect, default certificate, Warning.
    let a = tls_get(p.https, Some("example.com"), "/", false).await.unwrap();
    assert_eq!(a.status, 308);
    assert_ne!(a.cert_cn, "*.example.com");
    assert!(
        diagnostics_of(&routes, "uncovered")
            .join("\n")
            .contains("does not cover"),
        "{routes}"
    );
    // A bad value: Warning, no redirect.
    assert!(
        diagnostics_of(&routes, "bad")
            .join("\n")
            .contains("from-to-www-redirect")
    );
    assert_eq!(get(p.http, "www.bad.test", "/").await.unwrap().0, 404);
}

/// ingress-nginx's e2e `denylist-source-range`, with the client address from a trusted
/// proxy's X-Forwarded-For as there: listed addresses get 403, others pass; with an
/// allowlist too, the denylist is looked at first; a typo makes the location answer 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denylist_source_range_comes_before_the_allowlist() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &manifest(vec![
            ing(
                "deny",
                "deny.test",
                "/",
                "web",
                &[("denylist-source-range", "18.0.0.0/8, 56.0.0.1")],
            ),
            ing(
                "both",
                "both.test",
                "/",
                "web",
                &[
                    ("denylist-source-range", "18.1.0.0/16, 56.0.0.0/8"),
                    ("whitelist-source-range", "18.0.0.0/8, 55.0.0.0/8"),
                ],
            ),
            ing(
                "typo",
                "typo.test",
                "/",
                "web",
                &[("denylist-source-range", "18.0.0.0/8, 56.0.0.300")],
            ),
        ]);
    let p = Portico::start(&[("all.yaml", manifests)], &["--trusted-proxies", "127.0.0.1/32"]).await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for (host, ip, status) in [
        ("deny.test", "18.0.0.1", 403),
        ("deny.test", "56.0.0.1", 403),
        ("deny.test", "56.0.0.2", 200),
        ("both.test", "18.1.0.1", 403),
        ("both.test", "10.10.10.10", 403),
        ("both.test", "18.2.0.1", 200),
        ("both.test", "55.1.1.1", 200),
        ("both.test", "56.0.0.1", 403),
        // A list with an entry that is no address denies the location, as ingress-nginx.
        ("typo.test", "10.10.10.10", 503),
        ("typo.test", "18.0.0.1", 503),
        ("typo.test", "2001:db8::1", 503),
    ] {
        assert_eq!(send(p.http, host, "/", &from(ip)).await.0, status, "{host} from {ip}");
    }
    // Without the proxy's word the peer itself counts.
    assert_eq!(get(p.http, "deny.test", "/").await.unwrap().0, 200);
    let diags = diagnostics_of(&p.routes().await, "typo").join("\n");
    assert!(diags.contains("56.0.0.300") && diags.contains("503"), "{diags}");
}

/// ingress-nginx's e2e `x-forwarded-prefix`: the value goes upstream (in place of one the
/// client sent); empty sends none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_prefix_goes_upstream() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &manifest(vec![
            ing(
                "xfp",
                "xfp.test",
                "/",
                "web",
                &[("x-forwarded-prefix", "/test/value"), ("rewrite-target", "/foo")],
            ),
            ing("empty", "noxfp.test", "/", "web", &[("x-forwarded-prefix", "")]),
            ing("bad", "bad.test", "/", "web", &[("x-forwarded-prefix", "/a\"b")]),
            ing("none", "none.test", "/", "web", &[]),
        ]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let echo = json(
        &send(p.http, "xfp.test", "/", &[("x-forwarded-prefix", "/spoofed")])
            .await
            .2,
    );
    assert_eq!(echo["headers"]["x-forwarded-prefix"], "/test/value");
    assert_eq!(echo["target"], "/foo");
    let echo = json(&get(p.http, "noxfp.test", "/").await.unwrap().2);
    assert!(echo["headers"].get("x-forwarded-prefix").is_none(), "{echo}");
    let echo = json(&get(p.http, "bad.test", "/").await.unwrap().2);
    assert!(echo["headers"].get("x-forwarded-prefix").is_none(), "{echo}");
    assert!(
        diagnostics_of(&p.routes().await, "bad")
            .join("\n")
            .contains("x-forwarded-prefix")
    );
    // Without the annotation a client's field passes as nginx passes it.
    let echo = json(
        &send(p.http, "none.test", "/", &[("x-forwarded-prefix", "/mine")])
            .await
            .2,
    );
    assert_eq!(echo["headers"]["x-forwarded-prefix"], "/mine");
}

/// ingress-nginx's e2e `preserve-trailing-slash`: its HTTPS redirect drops one trailing `/`
/// of the request target unless the annotation keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_redirects_drop_a_trailing_slash_unless_preserved() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &manifest(vec![
            ing(
                "keep",
                "keep.test",
                "/",
                "web",
                &[("force-ssl-redirect", "true"), ("preserve-trailing-slash", "true")],
            ),
            ing("drop", "drop.test", "/", "web", &[("force-ssl-redirect", "true")]),
        ]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let port = p.https.port();
    for (host, path, to) in [
        ("keep.test", "/", "/"),
        ("keep.test", "/a/", "/a/"),
        ("drop.test", "/", ""),
        ("drop.test", "/a/", "/a"),
        ("drop.test", "/a/?q=1", "/a/?q=1"),
        ("drop.test", "/a", "/a"),
    ] {
        let (s, h, _) = get(p.http, host, path).await.unwrap();
        assert_eq!(
            (s, location(&h)),
            (308, format!("https://{host}:{port}{to}").as_str()),
            "{host}{path}"
        );
    }
}

/// `enable-access-log: "false"` leaves an Ingress's requests out of the access log; the
/// others are logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_access_log_false_leaves_the_ingress_out() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &manifest(vec![
            ing("quiet", "quiet.test", "/", "web", &[("enable-access-log", "false")]),
            ing("loud", "loud.test", "/", "web", &[("enable-access-log", "true")]),
        ]);
    let p = Portico::start(&[("all.yaml", manifests)], &["--access-log", "on"]).await;
    assert_eq!(get(p.http, "quiet.test", "/q").await.unwrap().0, 200);
    assert_eq!(get(p.http, "loud.test", "/l").await.unwrap().0, 200);
    // Each line is written before its response leaves, so once the second request's line
    // is in, the first one's would be too.
    let mut waits = 0;
    let hosts = loop {
        let hosts: Vec<String> = p
            .access_lines()
            .iter()
            .map(|v| v["fields"]["host"].as_str().unwrap_or("").to_string())
            .collect();
        if hosts.iter().any(|h| h == "loud.test") {
            break hosts;
        }
        waits += 1;
        assert!(waits < 1000, "no access log line for loud.test: {hosts:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(hosts, ["loud.test"]);
}

/// `service-upstream`: requests go to the Service's cluster IP and port, not to the pods its
/// EndpointSlices list; a headless Service is a Warning and its pods are used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_upstream_sends_to_the_cluster_ip() {
    // The "cluster IP" is a loopback echo server standing in for kube-proxy's VIP.
    let vip = pods("vip", 1).await[0];
    let web = pods("web", 1).await;
    let mut mesh = fixture::service("default", "mesh").port("http", vip.port().into());
    mesh.0.spec.as_mut().unwrap().cluster_ip = Some(vip.ip().to_string());
    let mut headless = fixture::service("default", "headless").port("http", 80);
    headless.0.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    let port = i32::from(vip.port());
    let manifests = class()
        + &service_with(mesh, &web)
        + &service_with(headless, &web)
        + &yaml(&[
            fixture::ingress("default", "mesh")
                .class("portico")
                .rule("mesh.test", "/", Prefix, "mesh", port)
                .annotation(&format!("{NGINX}service-upstream"), "true")
                .into(),
            fixture::ingress("default", "pods")
                .class("portico")
                .rule("pods.test", "/", Prefix, "mesh", port)
                .into(),
        ])
        + &manifest(vec![ing(
            "headless",
            "headless.test",
            "/",
            "headless",
            &[("service-upstream", "true")],
        )]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    for _ in 0..3 {
        let (s, _, b) = get(p.http, "mesh.test", "/").await.unwrap();
        assert_eq!((s, json(&b)["pod"].as_str().unwrap()), (200, "vip-0"));
    }
    let (s, _, b) = get(p.http, "pods.test", "/").await.unwrap();
    assert_eq!(
        (s, json(&b)["pod"].as_str().unwrap()),
        (200, "web-0"),
        "the same Service without the annotation"
    );
    let (s, _, b) = get(p.http, "headless.test", "/").await.unwrap();
    assert_eq!((s, json(&b)["pod"].as_str().unwrap()), (200, "web-0"));
    let routes = p.routes().await;
    assert!(
        diagnostics_of(&routes, "headless").join("\n").contains("headless"),
        "{routes}"
    );
}

/// `proxy-buffering`, `proxy-request-buffering` and `proxy-http-version` are accepted
/// (Portico streams; 1.0 reaches the echo pod as HTTP/1.0, see tests/http10.rs); bad values
/// are Warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffering_and_http_version_are_accepted_or_warned() {
    let web = pods("web", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &manifest(vec![
            ing(
                "ok",
                "ok.test",
                "/",
                "web",
                &[
                    ("proxy-buffering", "on"),
                    ("proxy-request-buffering", "off"),
                    ("proxy-http-version", "1.1"),
                ],
            ),
            ing(
                "warned",
                "warned.test",
                "/",
                "web",
                &[("proxy-buffering", "maybe"), ("proxy-http-version", "2.0")],
            ),
            ing("ten", "ten.test", "/", "web", &[("proxy-http-version", "1.0")]),
        ]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    for host in ["ok.test", "warned.test"] {
        let (s, _, b) = get(p.http, host, "/").await.unwrap();
        assert_eq!((s, json(&b)["version"].as_str().unwrap()), (200, "HTTP/1.1"), "{host}");
    }
    let (s, _, b) = get(p.http, "ten.test", "/").await.unwrap();
    assert_eq!((s, json(&b)["version"].as_str().unwrap()), (200, "HTTP/1.0"));
    let routes = p.routes().await;
    assert_eq!(diagnostics_of(&routes, "ok"), Vec::<String>::new());
    assert_eq!(diagnostics_of(&routes, "ten"), Vec::<String>::new());
    let warned = diagnostics_of(&routes, "warned").join("\n");
    assert!(warned.contains("proxy-buffering") && warned.contains("2.0"), "{warned}");
}

/// A backend that answers every request with a redirect and cookies naming itself as
/// `localhost:8000` (nginx's proxy_redirect and proxy_cookie_* examples).
async fn self_naming_backend() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { continue };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    let r = http::Response::builder()
                        .status(302)
                        .header("location", "http://localhost:8000/two/some/uri/")
                        .header("refresh", "5; url=http://localhost:8000/two/x")
                        .header("set-cookie", "a=b; path=/two/some/uri/; Domain=.localhost; HttpOnly")
                        .header("set-cookie", "c=d; Path=/other; Domain=other.org")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// nginx's `~`/`~*` forms through real sockets: a match anywhere replaces the whole value
/// with the replacement, its captures (numbered and named) and the request's variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_regex_forms_use_captures_and_variables() {
    let up = self_naming_backend().await;
    let manifests = class()
        + &service("up", &[up])
        + &manifest(vec![ing(
            "re",
            "re.test",
            "/",
            "up",
            &[
                ("proxy-redirect-from", r"~^http://[^:]+:\d+/two/(.*)$"),
                (
                    "proxy-redirect-to",
                    "$scheme://$host:$server_port/one/$1?m=$request_method",
                ),
                ("proxy-cookie-path", "~*^/TWO/(.*)$ /$namespace/$1"),
                ("proxy-cookie-domain", r"~^\.?(?<d>local)host$ $d.$host"),
            ],
        )]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let port = p.http.port();
    let (s, h, _) = get(p.http, "Re.Test", "/").await.unwrap();
    assert_eq!(
        (s, location(&h)),
        (302, format!("http://re.test:{port}/one/some/uri/?m=GET").as_str())
    );
    assert_eq!(h["refresh"], format!("5; url=http://re.test:{port}/one/x?m=GET"));
    let cookies: Vec<&str> = h.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(
        cookies,
        [
            "a=b; path=/default/some/uri/; Domain=local.re.test; HttpOnly",
            "c=d; Path=/other; Domain=other.org"
        ]
    );
    assert_eq!(diagnostics_of(&p.routes().await, "re"), Vec::<String>::new());
}

/// nginx's documented examples through real sockets: Location and Refresh get the new
/// start, Set-Cookie its new Path and Domain; `off`/`default` and other Ingresses leave the
/// fields alone; a regular expression that does not compile is a Warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_fields_are_rewritten_as_nginx_does() {
    let up = self_naming_backend().await;
    let manifests = class()
        + &service("up", &[up])
        + &manifest(vec![
            ing(
                "rw",
                "rw.test",
                "/",
                "up",
                &[
                    ("proxy-redirect-from", "http://localhost:8000/two/"),
                    ("proxy-redirect-to", "https://frontend/one/"),
                    ("proxy-cookie-path", "/two/ /"),
                    ("proxy-cookie-domain", "localhost example.org"),
                ],
            ),
            ing(
                "off",
                "off.test",
                "/",
                "up",
                &[("proxy-redirect-from", "default"), ("proxy-cookie-path", "off")],
            ),
            ing("plain", "plain.test", "/", "up", &[]),
            ing(
                "bad",
                "bad.test",
                "/",
                "up",
                &[("proxy-redirect-from", "~^http://(.*$"), ("proxy-cookie-domain", "one")],
            ),
        ]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let cookies = |h: &http::HeaderMap| -> Vec<String> {
        h.get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    let (s, h, _) = get(p.http, "rw.test", "/").await.unwrap();
    assert_eq!((s, location(&h)), (302, "https://frontend/one/some/uri/"));
    assert_eq!(h["refresh"], "5; url=https://frontend/one/x");
    assert_eq!(
        cookies(&h),
        [
            "a=b; path=/some/uri/; Domain=example.org; HttpOnly",
            "c=d; Path=/other; Domain=other.org"
        ]
    );
    for host in ["off.test", "plain.test", "bad.test"] {
        let (s, h, _) = get(p.http, host, "/").await.unwrap();
        assert_eq!(
            (s, location(&h)),
            (302, "http://localhost:8000/two/some/uri/"),
            "{host}"
        );
        assert_eq!(h["refresh"], "5; url=http://localhost:8000/two/x", "{host}");
        assert_eq!(
            cookies(&h),
            [
                "a=b; path=/two/some/uri/; Domain=.localhost; HttpOnly",
                "c=d; Path=/other; Domain=other.org"
            ],
            "{host}"
        );
    }
    let routes = p.routes().await;
    assert_eq!(diagnostics_of(&routes, "off"), Vec::<String>::new());
    let bad = diagnostics_of(&routes, "bad").join("\n");
    assert!(
        bad.contains("proxy-redirect-from") && bad.contains("proxy-cookie-domain"),
        "{bad}"
    );
}

/// `server-alias` with nginx's `~` regular-expression names: tried after exact and wildcard
/// names, case-insensitively; a bad expression is a Warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_aliases_come_after_exact_and_wildcard_names() {
    let web = pods("web", 1).await;
    let other = pods("other", 1).await;
    let manifests = class()
        + &service("web", &web)
        + &service("other", &other)
        + &tls_secret("default", "rsa", "rsa.crt", "rsa-pkcs8.key")
        + &manifest(vec![
            ing(
                "www",
                "www.test",
                "/",
                "web",
                &[(
                    "server-alias",
                    r"~^www\d+\.example\.(com|org)$, ~^api\.(eu|us)\.test$, ~(unclosed, plain.test",
                )],
            ),
            ing("exact", "www7.example.com", "/", "other", &[]),
            ing("wild", "*.example.org", "/", "other", &[]),
            ing(
                "tls",
                "rsa.example.com",
                "/",
                "web",
                &[("server-alias", r"~^secure\d+\.test$")],
            )
            .tls(&["rsa.example.com"], Some("rsa")),
        ]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;
    let pod = |b: &str| json(b)["pod"].as_str().unwrap().to_string();

    for host in ["www1.example.com", "WWW12.Example.COM", "api.eu.test", "plain.test"] {
        let (s, _, b) = get(p.http, host, "/x").await.unwrap();
        assert_eq!((s, pod(&b)), (200, "web-0".to_string()), "{host}");
        assert_eq!(json(&b)["headers"]["host"], host, "the Host goes upstream as sent");
    }
    // An exact name and a wildcard name come first, as in nginx.
    let (s, _, b) = get(p.http, "www7.example.com", "/").await.unwrap();
    assert_eq!((s, pod(&b)), (200, "other-0".to_string()));
    let (s, _, b) = get(p.http, "www1.example.org", "/").await.unwrap();
    assert_eq!((s, pod(&b)), (200, "other-0".to_string()));
    // Not matched: no rule.
    for host in ["wwwx.example.com", "www1.example.com.evil.test", "api.asia.test"] {
        assert_eq!(get(p.http, host, "/").await.unwrap().0, 404, "{host}");
    }

    let diags = diagnostics_of(&p.routes().await, "www").join("\n");
    assert!(
        diags.contains("~(unclosed") && diags.contains("not a valid regular expression"),
        "{diags}"
    );

    // A regex alias of a TLS host: its routes (and redirect to HTTPS), with the default
    // certificate, as for a wildcard alias.
    let (s, h, _) = get(p.http, "secure5.test", "/").await.unwrap();
    assert_eq!(s, 308);
    assert!(
        h["location"].to_str().unwrap().starts_with("https://secure5.test"),
        "{h:?}"
    );
    let a = tls_get(p.https, Some("secure5.test"), "/", false).await.unwrap();
    assert_eq!((a.status, json(&a.body)["pod"].as_str().unwrap()), (200, "web-0"));
    assert_ne!(a.cert_cn, "rsa.example.com");
}
