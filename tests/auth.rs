//! Authentication annotations end to end over real sockets: basic auth against htpasswd files
//! made by Apache's own `htpasswd` (bcrypt, SHA-1, apr1-MD5), as an `auth-file` and an
//! `auth-map` Secret; and every way a misconfiguration denies instead of letting requests in.

mod support;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use portico::fixture::{self, yaml};
use support::*;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// Runs Apache's `htpasswd` (apache2-utils) with `args`; its stdout.
fn htpasswd(args: &[&str]) -> String {
    let out = Command::new("htpasswd")
        .args(args)
        .output()
        .expect("htpasswd (apache2-utils) is installed: .ci/run installs it");
    assert!(
        out.status.success(),
        "htpasswd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An htpasswd file written by `htpasswd` itself: alice with bcrypt (cost 5), bob with SHA-1,
/// carol with apr1-MD5.
fn htpasswd_file(dir: &Path) -> Vec<u8> {
    let file = dir.join("htpasswd");
    let f = file.to_str().unwrap();
    htpasswd(&["-c", "-b", "-B", "-C", "5", f, "alice", "alice-pw"]);
    htpasswd(&["-b", "-s", f, "bob", "bob:pw"]);
    htpasswd(&["-b", "-m", f, "carol", "carol-pw"]);
    std::fs::read(&file).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

async fn get_as(p: &Portico, host: &str, authorization: Option<&str>, extra: &[(&str, &str)]) -> Answer {
    let mut b = Request::builder().uri("/x").header("host", host);
    if let Some(a) = authorization {
        b = b.header("authorization", a);
    }
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    request(p.http, b.body(Full::new(Bytes::new())).unwrap()).await.unwrap()
}

fn nginx_ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let full: Vec<(String, &str)> = annotations.iter().map(|(k, v)| (format!("{NGINX}{k}"), *v)).collect();
    let full: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    annotated_ingress(name, host, "/", "web", &full)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_htpasswd_files() {
    let web = pods("web", 1).await;
    let tmp = std::env::temp_dir().join(format!("portico-auth-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let file = htpasswd_file(&tmp);
    // `htpasswd -n` prints `user:hash`: an auth-map Secret holds the hash under the user.
    let dave = htpasswd(&["-n", "-b", "-B", "-C", "4", "dave", "dave-pw"]);
    let (_, dave_hash) = dave.trim().split_once(':').unwrap();
    let eve = htpasswd(&["-n", "-b", "-m", "eve", "eve-pw"]);
    let (_, eve_hash) = eve.trim().split_once(':').unwrap();

    let secrets = yaml(&[
        fixture::opaque_secret("default", "users", &[("auth", &file)]).into(),
        fixture::opaque_secret(
            "default",
            "user-map",
            &[("dave", dave_hash.as_bytes()), ("eve", eve_hash.as_bytes())],
        )
        .into(),
        fixture::opaque_secret("default", "no-auth-key", &[("htpasswd", &file)]).into(),
        fixture::opaque_secret("default", "garbage", &[("auth", b"foo:\nbar\n")]).into(),
        fixture::opaque_secret("other", "users", &[("auth", &file)]).into(),
    ]);
    let manifests = class()
        + &service("web", &web)
        + &secrets
        + &nginx_ingress(
            "file",
            "file.test",
            &[
                ("auth-type", "basic"),
                ("auth-secret", "users"),
                ("auth-realm", "Staff only"),
            ],
        )
        + &nginx_ingress(
            "map",
            "map.test",
            &[
                ("auth-type", "basic"),
                ("auth-secret", "default/user-map"),
                ("auth-secret-type", "auth-map"),
            ],
        )
        + &annotated_ingress(
            "twin",
            "twin.test",
            "/",
            "web",
            &[("portico.dev/auth-type", "basic"), ("portico.dev/auth-secret", "users")],
        )
        + &nginx_ingress(
            "cors",
            "cors.test",
            &[
                ("auth-type", "basic"),
                ("auth-secret", "users"),
                ("enable-cors", "true"),
            ],
        )
        + &nginx_ingress(
            "bad-realm",
            "realm.test",
            &[
                ("auth-type", "basic"),
                ("auth-secret", "users"),
                ("auth-realm", "x\" , Basic realm=\"y"),
            ],
        )
        + &nginx_ingress(
            "missing",
            "missing.test",
            &[("auth-type", "basic"), ("auth-secret", "nope")],
        )
        + &nginx_ingress("no-secret", "nosecret.test", &[("auth-type", "basic")])
        + &nginx_ingress(
            "no-key",
            "nokey.test",
            &[("auth-type", "basic"), ("auth-secret", "no-auth-key")],
        )
        + &nginx_ingress(
            "garbage",
            "garbage.test",
            &[("auth-type", "basic"), ("auth-secret", "garbage")],
        )
        + &nginx_ingress(
            "cross",
            "cross.test",
            &[("auth-type", "basic"), ("auth-secret", "other/users")],
        )
        + &nginx_ingress(
            "digest",
            "digest.test",
            &[("auth-type", "digest"), ("auth-secret", "users")],
        )
        + &nginx_ingress(
            "bad-type",
            "badtype.test",
            &[
                ("auth-type", "basic"),
                ("auth-secret", "users"),
                ("auth-secret-type", "auth-files"),
            ],
        )
        + &nginx_ingress("secret-only", "secretonly.test", &[("auth-secret", "users")]);
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // Each hash form htpasswd writes, with the right password (twice: the second bcrypt
    // check is answered from the memory of verified passwords), a wrong one, none, another
    // user's, and another scheme.
    for (user, pw) in [("alice", "alice-pw"), ("bob", "bob:pw"), ("carol", "carol-pw")] {
        for _ in 0..2 {
            let (s, _, b) = get_as(&p, "file.test", Some(&basic(user, pw)), &[]).await;
            assert_eq!((s, json(&b)["target"].as_str().unwrap()), (200, "/x"), "{user}");
        }
        let (s, h, _) = get_as(&p, "file.test", Some(&basic(user, "wrong")), &[]).await;
        assert_eq!(s, 401, "{user} with a wrong password");
        assert_eq!(h["www-authenticate"], "Basic realm=\"Staff only\"");
        let (s, _, _) = get_as(&p, "file.test", Some(&basic(user, &format!("{pw}x"))), &[]).await;
        assert_eq!(s, 401, "{user} with a longer password");
    }
    let (s, h, _) = get_as(&p, "file.test", None, &[]).await;
    assert_eq!(
        (s, h["www-authenticate"].to_str().unwrap()),
        (401, "Basic realm=\"Staff only\"")
    );
    let (s, _, _) = get_as(&p, "file.test", Some(&basic("alice", "carol-pw")), &[]).await;
    assert_eq!(s, 401, "another user's password");
    let (s, _, _) = get_as(&p, "file.test", Some(&basic("mallory", "alice-pw")), &[]).await;
    assert_eq!(s, 401, "unknown user");
    let bearer = format!("Bearer {}", STANDARD.encode("alice:alice-pw"));
    let (s, _, _) = get_as(&p, "file.test", Some(&bearer), &[]).await;
    assert_eq!(s, 401, "not Basic");
    let (s, _, _) = get_as(&p, "file.test", Some("Basic %%%"), &[]).await;
    assert_eq!(s, 401, "not base64");

    // auth-map: bcrypt and apr1 values under the user names.
    let (s, _, _) = get_as(&p, "map.test", Some(&basic("dave", "dave-pw")), &[]).await;
    assert_eq!(s, 200);
    let (s, _, _) = get_as(&p, "map.test", Some(&basic("eve", "eve-pw")), &[]).await;
    assert_eq!(s, 200);
    let (s, h, _) = get_as(&p, "map.test", Some(&basic("eve", "dave-pw")), &[]).await;
    assert_eq!((s, h["www-authenticate"].to_str().unwrap()), (401, "Basic realm=\"\""));

    // The portico.dev/ spelling works the same.
    assert_eq!(get_as(&p, "twin.test", None, &[]).await.0, 401);
    assert_eq!(get_as(&p, "twin.test", Some(&basic("bob", "bob:pw")), &[]).await.0, 200);

    // A 401 still carries the CORS fields, so that a browser script can read it.
    let (s, h, _) = get_as(&p, "cors.test", None, &[("origin", "https://app.example")]).await;
    assert_eq!((s, h["access-control-allow-origin"].to_str().unwrap()), (401, "*"));

    // A realm that would break out of the quoted string is refused: the empty realm is sent.
    let (s, h, _) = get_as(&p, "realm.test", None, &[]).await;
    assert_eq!((s, h["www-authenticate"].to_str().unwrap()), (401, "Basic realm=\"\""));
    assert_eq!(
        get_as(&p, "realm.test", Some(&basic("carol", "carol-pw")), &[]).await.0,
        200
    );

    // Misconfigurations deny: 503 for every request, right credentials or not, as
    // ingress-nginx answers for a denied location.
    for host in [
        "missing.test",
        "nosecret.test",
        "nokey.test",
        "cross.test",
        "badtype.test",
    ] {
        for auth in [None, Some(basic("alice", "alice-pw"))] {
            let (s, h, b) = get_as(&p, host, auth.as_deref(), &[]).await;
            assert_eq!(s, 503, "{host}");
            assert!(!h.contains_key("www-authenticate"), "{host}");
            assert!(!b.contains("Secret"), "the reason stays in the diagnostics: {b}");
        }
    }
    // Digest over an htpasswd file: no line is an htdigest line of the realm, so 401.
    assert_eq!(
        get_as(&p, "digest.test", Some(&basic("alice", "alice-pw")), &[])
            .await
            .0,
        401
    );
    // A Secret with no usable line: everyone gets 401 (as nginx finds no matching user).
    let (s, _, _) = get_as(&p, "garbage.test", Some(&basic("foo", "")), &[]).await;
    assert_eq!(s, 401);
    // auth-secret without auth-type is no authentication, as in ingress-nginx, with a Warning.
    assert_eq!(get_as(&p, "secretonly.test", None, &[]).await.0, 200);

    let routes = p.routes().await;
    for (ingress, needle) in [
        ("missing", "does not exist"),
        ("no-secret", "auth-secret is not set"),
        ("no-key", "has no key \"auth\""),
        ("cross", "another namespace"),
        ("digest", "holds no usable user of the realm"),
        ("bad-type", "auth-secret-type"),
        ("bad-realm", "auth-realm"),
        ("garbage", "holds no usable user"),
        ("secret-only", "has no effect without"),
    ] {
        let d = diagnostics_of(&routes, ingress);
        assert!(d.iter().any(|m| m.contains(needle)), "{ingress}: {d:?}");
    }
    // Diagnostics and /routes name lines and counts, never a hash.
    let text = routes.to_string();
    for secret_part in ["$2y$", "$apr1$", "{SHA}", dave_hash, eve_hash] {
        assert!(!text.contains(secret_part), "/routes shows {secret_part}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Runs Apache's `htdigest` (apache2-utils) for `user` in `realm` with `password` (it reads
/// the password twice from stdin) into `file`.
fn htdigest(file: &Path, create: bool, realm: &str, user: &str, password: &str) {
    use std::io::Write as _;
    let mut cmd = Command::new("htdigest");
    if create {
        cmd.arg("-c");
    }
    let mut child = cmd
        .args([file.to_str().unwrap(), realm, user])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("htdigest (apache2-utils) is installed: .ci/run installs it");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n{password}\n").as_bytes()).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "htdigest {user}");
}

/// `curl --digest -u {user_pass}` to `http://{host}:{port}{path}` (resolved to Portico) with
/// extra arguments: the last status and body.
async fn curl_digest(p: &Portico, host: &str, path: &str, user_pass: &str, extra: &[&str]) -> (u16, String) {
    let port = p.http.port();
    let mut args: Vec<String> = [
        "-s",
        "--max-time",
        "10",
        "--digest",
        "-u",
        user_pass,
        "-w",
        "\n%{http_code}",
    ]
    .map(String::from)
    .to_vec();
    args.extend(["--resolve".into(), format!("{host}:{port}:127.0.0.1")]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("http://{host}:{port}{path}"));
    let out =
        tokio::task::spawn_blocking(move || Command::new("curl").args(&args).output().expect("curl is installed"))
            .await
            .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        status.parse().unwrap_or_else(|_| panic!("curl: {text:?}")),
        body.to_string(),
    )
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest as _, Md5};
    Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Authorization` a client sends for GET /x answering `challenge` as `user` with
/// `password` and nonce count `nc`.
fn digest_answer(challenge: &str, user: &str, realm: &str, password: &str, nc: &str) -> String {
    let nonce = challenge.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap();
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex("GET:/x");
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"/x\", qop=auth, nc={nc}, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_auth_with_htdigest_files() {
    let web = pods("web", 1).await;
    let tmp = std::env::temp_dir().join(format!("portico-digest-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let file = tmp.join("htdigest");
    htdigest(&file, true, "Staff only", "alice", "alice-pw");
    htdigest(&file, false, "Staff only", "bob", "bob:pw");
    htdigest(&file, false, "Other", "carol", "carol-pw");
    let text = std::fs::read(&file).unwrap();
    let dave_ha1 = md5_hex("dave:Staff only:dave-pw");

    let secrets = yaml(&[
        fixture::opaque_secret("default", "digest-users", &[("auth", &text)]).into(),
        fixture::opaque_secret(
            "default",
            "digest-map",
            &[("dave", format!("Staff only:{dave_ha1}").as_bytes())],
        )
        .into(),
        fixture::opaque_secret("default", "digest-garbage", &[("auth", b"alice:Staff only:nothex\n")]).into(),
    ]);
    let staff = [
        ("auth-type", "digest"),
        ("auth-secret", "digest-users"),
        ("auth-realm", "Staff only"),
    ];
    let manifests = class()
        + &service("web", &web)
        + &secrets
        + &nginx_ingress("staff", "staff.test", &staff)
        + &annotated_ingress(
            "other",
            "other.test",
            "/",
            "web",
            &[
                ("portico.dev/auth-type", "digest"),
                ("portico.dev/auth-secret", "digest-users"),
                ("portico.dev/auth-realm", "Other"),
            ],
        )
        + &nginx_ingress(
            "map",
            "map.test",
            &[
                ("auth-type", "digest"),
                ("auth-secret", "digest-map"),
                ("auth-secret-type", "auth-map"),
                ("auth-realm", "Staff only"),
            ],
        )
        + &nginx_ingress(
            "no-realm",
            "norealm.test",
            &[("auth-type", "digest"), ("auth-secret", "digest-users")],
        )
        + &nginx_ingress(
            "garbage",
            "garbage.test",
            &[
                ("auth-type", "digest"),
                ("auth-secret", "digest-garbage"),
                ("auth-realm", "Staff only"),
            ],
        )
        + &nginx_ingress(
            "missing",
            "missing.test",
            &[("auth-type", "digest"), ("auth-secret", "nope")],
        );
    let p = Portico::start(&[("all.yaml", manifests)], &[]).await;

    // No credentials: 401 with the module's challenge.
    let (s, h, _) = get_as(&p, "staff.test", None, &[]).await;
    let challenge = h["www-authenticate"].to_str().unwrap().to_string();
    assert_eq!(s, 401);
    assert!(
        challenge.starts_with("Digest algorithm=\"MD5\", qop=\"auth\", realm=\"Staff only\", nonce=\""),
        "{challenge}"
    );
    assert!(!challenge.contains("stale"), "{challenge}");

    // curl's digest against the htdigest file: right password (a query and a POST body
    // included), wrong password, another user's, a user of another realm.
    for (user, pw) in [("alice", "alice-pw"), ("bob", "bob:pw")] {
        let (s, b) = curl_digest(&p, "staff.test", "/x?q=1", &format!("{user}:{pw}"), &[]).await;
        assert_eq!((s, json(&b)["target"].as_str().unwrap()), (200, "/x?q=1"), "{user}");
        let (s, _) = curl_digest(&p, "staff.test", "/x", &format!("{user}:{pw}x"), &[]).await;
        assert_eq!(s, 401, "{user} with a wrong password");
    }
    let (s, b) = curl_digest(&p, "staff.test", "/form", "alice:alice-pw", &["-d", "a=1"]).await;
    assert_eq!((s, json(&b)["method"].as_str().unwrap()), (200, "POST"));
    let (s, _) = curl_digest(&p, "staff.test", "/x", "alice:bob:pw", &[]).await;
    assert_eq!(s, 401, "another user's password");
    let (s, _) = curl_digest(&p, "staff.test", "/x", "carol:carol-pw", &[]).await;
    assert_eq!(s, 401, "carol is a user of the realm Other");
    // The portico.dev/ spelling; the realm decides which lines count.
    assert_eq!(curl_digest(&p, "other.test", "/x", "carol:carol-pw", &[]).await.0, 200);
    assert_eq!(curl_digest(&p, "other.test", "/x", "alice:alice-pw", &[]).await.0, 401);
    // auth-map: realm:HA1 under the user name.
    assert_eq!(curl_digest(&p, "map.test", "/x", "dave:dave-pw", &[]).await.0, 200);
    assert_eq!(curl_digest(&p, "map.test", "/x", "dave:alice-pw", &[]).await.0, 401);
    // No auth-realm: the empty realm, which no line has; never an open door.
    let (s, h, _) = get_as(&p, "norealm.test", None, &[]).await;
    assert_eq!(s, 401);
    assert!(h["www-authenticate"].to_str().unwrap().contains("realm=\"\""));
    assert_eq!(
        curl_digest(&p, "norealm.test", "/x", "alice:alice-pw", &[]).await.0,
        401
    );
    assert_eq!(
        curl_digest(&p, "garbage.test", "/x", "alice:alice-pw", &[]).await.0,
        401
    );
    // A Secret that does not exist denies everything.
    let (s, h, _) = get_as(&p, "missing.test", None, &[]).await;
    assert_eq!(s, 503);
    assert!(!h.contains_key("www-authenticate"));

    // By hand: the answer passes with Authentication-Info; the same nonce count again is a
    // replay (401, not stale); the next count passes; a forged or malformed answer is 401.
    let good = digest_answer(&challenge, "alice", "Staff only", "alice-pw", "00000001");
    let (s, h, _) = get_as(&p, "staff.test", Some(&good), &[]).await;
    assert_eq!(s, 200);
    let info = h["authentication-info"].to_str().unwrap();
    assert!(info.starts_with("qop=\"auth\", rspauth=\""), "{info}");
    assert!(info.ends_with("cnonce=\"c0ffee\", nc=00000001"), "{info}");
    let (s, h, _) = get_as(&p, "staff.test", Some(&good), &[]).await;
    assert_eq!(s, 401, "a replayed nonce count");
    assert!(!h["www-authenticate"].to_str().unwrap().contains("stale"));
    let next = digest_answer(&challenge, "alice", "Staff only", "alice-pw", "00000002");
    assert_eq!(get_as(&p, "staff.test", Some(&next), &[]).await.0, 200);
    let forged = challenge.replace("nonce=\"0", "nonce=\"1");
    let forged = digest_answer(&forged, "alice", "Staff only", "alice-pw", "00000001");
    assert_eq!(get_as(&p, "staff.test", Some(&forged), &[]).await.0, 401);
    // A count past the module's 20 replays asks for a new nonce: stale.
    let late = digest_answer(&challenge, "alice", "Staff only", "alice-pw", "00000014");
    let (s, h, _) = get_as(&p, "staff.test", Some(&late), &[]).await;
    assert_eq!(s, 401);
    assert!(h["www-authenticate"].to_str().unwrap().ends_with(", stale=\"true\""));
    for bad in [
        "Digest",
        "Digest username=\"alice\"",
        "Digest username=\"a, realm=x",
        "Basic YTpi",
    ] {
        let (s, h, _) = get_as(&p, "staff.test", Some(bad), &[]).await;
        assert_eq!(s, 401, "{bad}");
        assert!(h["www-authenticate"].to_str().unwrap().starts_with("Digest "), "{bad}");
    }

    let routes = p.routes().await;
    for (ingress, needle) in [
        ("no-realm", "holds no usable user of the realm \"\""),
        ("garbage", "line 1: the hash is not 32 hexadecimal digits"),
        ("missing", "does not exist"),
    ] {
        let d = diagnostics_of(&routes, ingress);
        assert!(d.iter().any(|m| m.contains(needle)), "{ingress}: {d:?}");
    }
    let text = routes.to_string();
    assert!(!text.contains(&dave_ha1), "/routes shows an HA1");
    assert!(diagnostics_of(&routes, "staff").is_empty());

    // Five failed answers from one address, and it is ignored for the module's evasion time:
    // 401 without a challenge, the right password included.
    for _ in 0..5 {
        assert_eq!(curl_digest(&p, "staff.test", "/x", "alice:nope", &[]).await.0, 401);
    }
    let (s, h, _) = get_as(&p, "staff.test", None, &[]).await;
    assert_eq!(s, 401);
    assert!(!h.contains_key("www-authenticate"));
    assert_eq!(curl_digest(&p, "staff.test", "/x", "alice:alice-pw", &[]).await.0, 401);
    let _ = std::fs::remove_dir_all(&tmp);
}
