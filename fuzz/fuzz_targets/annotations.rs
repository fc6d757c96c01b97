#![no_main]
//! Arbitrary annotations on an Ingress through compile(): every value is used or becomes a
//! diagnostic, never a panic, and what a route keeps is within the documented caps, so the
//! data plane can use it as it is (the Set-Cookie line of its affinity included).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arbitrary::Arbitrary;
use k8s_openapi::api::networking::v1::Ingress;
use libfuzzer_sys::fuzz_target;
use portico::compile::known::ANNOTATIONS;
use portico::config::policy::{CookieAffinity, Cors, Policy};
use portico::{AnyObject, Snapshot};

#[derive(Arbitrary, Debug)]
enum Name {
    /// One of the annotations ingress-nginx knows, under either prefix: most inputs should
    /// reach a parser.
    Known {
        index: u16,
        portico: bool,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Note {
    name: Name,
    value: String,
}

const BASE: &str = "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portico}
spec: {controller: portico.dev/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.0.0.1]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: fuzzed, namespace: default}
spec:
  ingressClassName: portico
  rules:
  - host: fuzz.test
    http:
      paths:
      - {path: /app, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}
";

fn base() -> &'static (Snapshot, Ingress) {
    static BASE_OBJECTS: OnceLock<(Snapshot, Ingress)> = OnceLock::new();
    BASE_OBJECTS.get_or_init(|| {
        let mut snapshot = Snapshot::default();
        let mut ingress = None;
        for o in portico::source::files::parse_manifests(BASE).expect("the base manifests parse") {
            match o {
                AnyObject::Ingress(i) => ingress = Some((*i).clone()),
                o => snapshot.insert(o),
            }
        }
        (snapshot, ingress.expect("the base has an Ingress"))
    })
}

fn within_caps(p: &Policy) {
    for t in [p.connect_timeout, p.read_timeout, p.send_timeout]
        .into_iter()
        .flatten()
    {
        assert!(!t.is_zero() && t <= Policy::MAX_TIMEOUT, "timeout {t:?}");
    }
    assert!(p.tries >= 1 && (p.tries <= Policy::MAX_TRIES || p.tries == usize::MAX));
    if let Some(c) = &p.cors {
        assert!(c.max_age <= Cors::MAX_AGE_LIMIT);
    }
    if let Some(a) = &p.affinity {
        for s in [a.expires, a.max_age].into_iter().flatten() {
            assert!(s <= CookieAffinity::MAX_LIFETIME, "cookie lifetime {s}");
        }
        let cookie = portico::balance::affinity::set_cookie(a, "v", "/app", true, None, SystemTime::now());
        assert!(cookie.is_some(), "{a:?} makes no Set-Cookie value");
    }
}

fuzz_target!(|notes: Vec<Note>| {
    let (snapshot, ingress) = base();
    let mut ing = ingress.clone();
    let mut map = BTreeMap::new();
    for n in notes {
        let key = match n.name {
            Name::Known { index, portico } => {
                let name = ANNOTATIONS[usize::from(index) % ANNOTATIONS.len()].0;
                let prefix = if portico {
                    "portico.dev/"
                } else {
                    "nginx.ingress.kubernetes.io/"
                };
                format!("{prefix}{name}")
            }
            Name::Raw(k) => k,
        };
        map.insert(key, n.value);
    }
    ing.metadata.annotations = Some(map);
    let mut snapshot = snapshot.clone();
    snapshot.insert(AnyObject::Ingress(Arc::new(ing)));
    let cfg = portico::compile(&snapshot, &portico::Options::default());
    for route in cfg.route_list.iter() {
        within_caps(&route.policy);
    }
});
