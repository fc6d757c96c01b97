//! Canary Ingresses (`canary: "true"`): their rules read from annotations, and each of their
//! paths attached to the primary route with the same host and path as its alternative.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::ingress::Backend as IngressBackend;

use super::annotations::{Annotations, valid_cookie_name};
use super::ingress::{IngressPass, annotation};
use crate::config::canary::{Canary, HeaderMatch, HeaderPattern, HeaderRule};
use crate::config::diagnostic::{ObjectRef, Reason, Severity};
use crate::config::policy::{CookieAffinity, Policy};
use crate::config::route::{HostPattern, PathType, Route};
use crate::model::ObjectKey;

/// The annotations that only mean something on a canary Ingress.
const RULES: [&str; 6] = [
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
];

/// The longest `canary-by-header-value` or `canary-by-header-pattern`.
const MAX_VALUE: usize = 1024;

/// A canary Ingress's settings, read once for all its paths.
#[derive(Clone, Debug)]
pub struct Spec {
    pub header: Option<HeaderRule>,
    pub cookie: Option<String>,
    pub weight: u32,
    pub weight_total: u32,
    /// `affinity-canary-behavior`: `sticky` (true, the default) or `legacy`.
    pub sticky: bool,
}

impl Annotations<'_> {
    /// The canary settings when the Ingress is a canary (`canary: "true"`). On other
    /// Ingresses the `canary-*` annotations have no effect, and are reported.
    pub fn canary(&mut self) -> Option<Spec> {
        if !self.bool("canary", false) {
            for name in RULES {
                if let Some((prefix, _)) = annotation(self.ing, name) {
                    self.diags.push(
                        ObjectRef::ingress(self.key),
                        Severity::Warning,
                        Reason::InvalidAnnotation,
                        format!(
                            "annotation {prefix}{name} has no effect: the Ingress is not a canary (canary: \"true\")"
                        ),
                    );
                }
            }
            return None;
        }
        let max = Canary::MAX_WEIGHT;
        let weight = self
            .parsed(
                "canary-weight",
                &format!("a whole number from 0 to {max}"),
                "using 0",
                |v| v.parse::<u32>().ok().filter(|n| *n <= max),
            )
            .unwrap_or(0);
        let weight_total = self
            .parsed(
                "canary-weight-total",
                &format!("a whole number from 1 to {max}"),
                "using 100",
                |v| v.parse::<u32>().ok().filter(|n| (1..=max).contains(n)),
            )
            .unwrap_or(100);
        // ingress-nginx's balancer takes the total only when it is above 100: say so.
        if weight_total < 100
            && let Some((prefix, _)) = annotation(self.ing, "canary-weight-total")
        {
            self.diags.push(
                ObjectRef::ingress(self.key),
                Severity::Warning,
                Reason::InvalidAnnotation,
                format!("annotation {prefix}canary-weight-total={weight_total} is below 100, which counts as 100 (as in ingress-nginx): canary-weight is out of 100"),
            );
        }
        let weight_total = weight_total.max(100);
        let cookie = self.parsed(
            "canary-by-cookie",
            "a cookie name (letters, digits, !#$%&'*+-.^_`|~)",
            "not used",
            |v| valid_cookie_name(v).then(|| v.to_string()),
        );
        let sticky = self
            .parsed(
                "affinity-canary-behavior",
                "\"sticky\" or \"legacy\"",
                "using sticky",
                |v| match v {
                    "sticky" => Some(true),
                    "legacy" => Some(false),
                    _ => None,
                },
            )
            .unwrap_or(true);
        Some(Spec {
            header: self.canary_header(),
            cookie,
            weight,
            weight_total,
            sticky,
        })
    }

    fn canary_header(&mut self) -> Option<HeaderRule> {
        // nginx reads `$http_NAME`: any case, `_` standing for `-`.
        let name = self.parsed(
            "canary-by-header",
            "a header name (letters, digits, - and _)",
            "not used",
            |v| {
                (!v.is_empty()
                    && v.len() <= 256
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
                .then(|| v.to_ascii_lowercase().replace('_', "-"))
            },
        );
        let value = self.parsed(
            "canary-by-header-value",
            &format!("a header value (printable, up to {MAX_VALUE} bytes)"),
            "not used",
            |v| {
                (!v.is_empty() && v.len() <= MAX_VALUE && v.bytes().all(|b| (0x20..0x7f).contains(&b)))
                    .then(|| v.to_string())
            },
        );
        let pattern = match &value {
            // ingress-nginx ignores the pattern when a value is given.
            Some(_) => None,
            None => self.parsed(
                "canary-by-header-pattern",
                &format!("a regular expression up to {MAX_VALUE} bytes"),
                "not used",
                |v| {
                    (!v.is_empty() && v.len() <= MAX_VALUE)
                        .then(|| HeaderPattern::new(v, false).ok())
                        .flatten()
                },
            ),
        };
        let Some(name) = name else {
            for n in ["canary-by-header-value", "canary-by-header-pattern"] {
                if let Some((prefix, _)) = annotation(self.ing, n) {
                    self.diags.push(
                        ObjectRef::ingress(self.key),
                        Severity::Warning,
                        Reason::InvalidAnnotation,
                        format!("annotation {prefix}{n} has no effect without a valid canary-by-header"),
                    );
                }
            }
            return None;
        };
        let matches = match (value, pattern) {
            (Some(v), _) => HeaderMatch::Value(v),
            (None, Some(p)) => HeaderMatch::Pattern(p),
            (None, None) => HeaderMatch::AlwaysNever,
        };
        Some(HeaderRule { name, matches })
    }
}

/// A path claim, as the Ingress pass keys them: host, path as matched, Exact or not.
pub type Claim = (HostPattern, String, bool);

/// Whether an Ingress is a canary, before its annotations are read (and reported).
pub fn is_canary(ing: &crate::model::Ing) -> bool {
    annotation(ing, "canary").is_some_and(|(_, v)| v.trim() == "true")
}

/// What a canary Ingress's backend is the canary of.
enum Target {
    /// A rule's path: the primary route with the same claim. ingress-nginx matches the path
    /// type too (Prefix is not ImplementationSpecific there).
    Path(Claim, PathType),
    /// Its defaultBackend: every route of nginx's default server (the catch-all and the paths
    /// of rules without host).
    Default,
}

/// One path (or the defaultBackend) of a canary Ingress, waiting for its primaries.
struct Pending<'s> {
    key: &'s ObjectKey,
    target: Target,
    backend: &'s IngressBackend,
    spec: Arc<Spec>,
    /// The canary Ingress's own policy: what a canary keeps of it is `load-balance` and,
    /// with `legacy` behaviour, its own affinity.
    policy: Arc<Policy>,
}

/// The canary paths and primary routes of one compile, matched up once all are known.
#[derive(Default)]
pub struct Canaries<'s> {
    pending: Vec<Pending<'s>>,
    /// Claim → the index in the route list of the primary route serving it.
    primaries: HashMap<Claim, usize>,
}

impl<'s> Canaries<'s> {
    /// A primary route was added at `index` for `claim`.
    pub fn primary(&mut self, claim: Claim, index: usize) {
        self.primaries.entry(claim).or_insert(index);
    }

    /// A canary Ingress's path, or with `path` `None` its defaultBackend (canaries come
    /// oldest first: the first for a path wins).
    pub fn add(
        &mut self,
        key: &'s ObjectKey,
        path: Option<(Claim, PathType)>,
        backend: &'s IngressBackend,
        spec: &Arc<Spec>,
        policy: &Arc<Policy>,
    ) {
        self.pending.push(Pending {
            key,
            target: path.map_or(Target::Default, |(c, t)| Target::Path(c, t)),
            backend,
            spec: spec.clone(),
            policy: policy.clone(),
        });
    }

    /// Attaches each canary path to its primary route: the canary's own route is appended to
    /// `routes` (it gets an id, metrics and `/routes` like any route) and the primary points
    /// to it. Backends are resolved (and their problems reported) as any of the pass's.
    pub fn attach(self, routes: &mut Vec<Arc<Route>>, pass: &mut IngressPass<'_, '_>) {
        let first_canary = routes.len();
        for p in &self.pending {
            let (what, targets): (String, Vec<usize>) = match &p.target {
                Target::Path(claim, _) => {
                    let (host, path, exact) = claim;
                    let exact = if *exact { " (Exact)" } else { "" };
                    let index = self.primaries.get(claim).copied();
                    (format!("host {host} path {path}{exact}"), index.into_iter().collect())
                }
                Target::Default => (
                    "the defaultBackend".to_string(),
                    (0..first_canary)
                        .filter(|&i| routes[i].host == HostPattern::Any)
                        .collect(),
                ),
            };
            if targets.is_empty() {
                pass.diags.push(
                    ObjectRef::ingress(p.key),
                    Severity::Warning,
                    Reason::Canary,
                    format!("canary for {what}: no primary (non-canary) Ingress serves it; it is not served"),
                );
                continue;
            }
            let mut resolved = None;
            for index in targets {
                if !attach_one(p, &what, index, routes, pass, &mut resolved) {
                    break;
                }
            }
        }
    }
}

/// Attaches canary `p` to the primary route at `index`, resolving its backend on first use
/// (kept in `resolved`). False when the backend cannot be resolved: nothing more to try.
fn attach_one(
    p: &Pending<'_>,
    what: &str,
    index: usize,
    routes: &mut Vec<Arc<Route>>,
    pass: &mut IngressPass<'_, '_>,
    resolved: &mut Option<(usize, ObjectKey)>,
) -> bool {
    let primary = routes[index].clone();
    let mut warn = |msg: String| {
        pass.diags.push(
            ObjectRef::ingress(p.key),
            Severity::Warning,
            Reason::Canary,
            format!("canary for {what}: {msg}"),
        )
    };
    if let Target::Path(_, path_type) = &p.target
        && let Some(rule) = primary.path.as_ref().filter(|r| r.path_type != *path_type)
    {
        warn(format!(
            "its pathType {path_type:?} differs from its primary's ({:?}, Ingress {}); as in ingress-nginx it is not used",
            rule.path_type, primary.ingress
        ));
        return true;
    }
    if let Some(c) = &primary.canary {
        warn(format!(
            "Ingress {} is already the canary of {}, and a path has one canary at most (as ingress-nginx); this one is not used there",
            c.route.ingress,
            primary.path.as_ref().map_or("the catch-all", |r| r.path.as_str())
        ));
        return true;
    }
    let (backend, service) = match resolved {
        Some(r) => r.clone(),
        // The canary's own `service-upstream`: where its Service's traffic goes is its own.
        None => match pass.backend(p.key, p.backend, p.policy.service_upstream) {
            Some(r) => resolved.insert(r).clone(),
            None => return false,
        },
    };
    if service == primary.service && backend == primary.backend {
        let msg = format!("canary for {what}: it names its primary's own Service port; it has no effect there");
        pass.diags
            .push(ObjectRef::ingress(p.key), Severity::Warning, Reason::Canary, msg);
        return true;
    }
    let route = Arc::new(Route {
        id: routes.len(),
        ingress: p.key.clone(),
        backend,
        service,
        policy: Arc::new(canary_policy(&primary.policy, &p.policy, p.spec.sticky, p.key)),
        canary: None,
        ..(*primary).clone()
    });
    let spec = &p.spec;
    let canary = Canary {
        route: route.clone(),
        header: spec.header.clone(),
        cookie: spec.cookie.clone(),
        weight: spec.weight,
        weight_total: spec.weight_total,
    };
    drop(primary);
    routes.push(route);
    Arc::make_mut(&mut routes[index]).canary = Some(Arc::new(canary));
    true
}

/// The policy of a canary route: the primary's, except `load-balance` and `upstream-hash-by`,
/// which the canary Ingress sets for its own Service (as ingress-nginx documents), and affinity: with `sticky` behaviour the primary's
/// (so a session the canary served stays there), with `legacy` the canary's own. Either way
/// its cookies are told from the primary's by a tag.
fn canary_policy(primary: &Policy, own: &Policy, sticky: bool, key: &ObjectKey) -> Policy {
    let affinity = if sticky { &primary.affinity } else { &own.affinity };
    Policy {
        load_balance: own.load_balance,
        hash_by: own.hash_by.clone(),
        affinity: affinity.as_ref().map(|a| CookieAffinity {
            backend_tag: Some(tag(key)),
            ..a.clone()
        }),
        ..primary.clone()
    }
}

/// A short tag for a canary Ingress's sessions that names nothing about the cluster.
fn tag(key: &ObjectKey) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("canary:{key}").as_bytes());
    digest.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use crate::compile::{Options, compile};
    use crate::config::canary::{Canary, HeaderMatch};
    use crate::config::diagnostic::{Reason, Severity};
    use crate::config::policy::Algorithm;
    use crate::config::{Config, Route};
    use crate::fixture::{self, Exact, ImplementationSpecific, IngressBuilder, PathType, Prefix};
    use crate::model::AnyObject;

    const NGINX: &str = "nginx.ingress.kubernetes.io/";

    /// The class and Services a, b and c, one ready pod each.
    fn base() -> Vec<AnyObject> {
        let mut objects = vec![fixture::portico_class().into()];
        for s in ["a", "b", "c"] {
            objects.push(fixture::service("default", s).port("http", 80).into());
            objects.push(
                fixture::slice("default", &format!("{s}-x"), s)
                    .port("http", 8080)
                    .endpoint("10.0.0.1")
                    .into(),
            );
        }
        objects
    }

    fn ing(name: &str, created: &str, host: &str, ty: PathType, svc: &str, notes: &[(&str, &str)]) -> IngressBuilder {
        let i = fixture::ingress("default", name)
            .class("portico")
            .created(created)
            .rule(host, "/app", ty, svc, 80);
        notes
            .iter()
            .fold(i, |i, (k, v)| i.annotation(&format!("{NGINX}{k}"), v))
    }

    /// A canary Ingress (`canary: "true"` and `notes`) for h.test /app → `svc`.
    fn canary(name: &str, created: &str, svc: &str, notes: &[(&str, &str)]) -> IngressBuilder {
        let mut all = vec![("canary", "true")];
        all.extend_from_slice(notes);
        ing(name, created, "h.test", Prefix, svc, &all)
    }

    fn build(extra: Vec<IngressBuilder>) -> Config {
        let objects = base().into_iter().chain(extra.into_iter().map(Into::into));
        compile(&fixture::snapshot(objects), &Options::default())
    }

    fn primary(cfg: &Config) -> &Route {
        cfg.routes.route("h.test", "/app").expect("h.test/app is served")
    }

    fn warnings(cfg: &Config, reason: Reason, ingress: &str) -> Vec<String> {
        cfg.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning && d.reason == reason && d.object.name == ingress)
            .map(|d| d.message.clone())
            .collect()
    }

    #[test]
    fn a_canary_joins_its_primary_in_either_order_without_conflict() {
        for (main_time, canary_time) in [
            ("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"),
            ("2024-02-01T00:00:00Z", "2024-01-01T00:00:00Z"),
        ] {
            let cfg = build(vec![
                ing(
                    "main",
                    main_time,
                    "h.test",
                    Prefix,
                    "a",
                    &[("proxy-read-timeout", "30")],
                ),
                canary(
                    "can",
                    canary_time,
                    "b",
                    &[("canary-weight", "30"), ("proxy-read-timeout", "5")],
                ),
            ]);
            assert!(cfg.diagnostics.is_empty(), "{:?}", cfg.diagnostics);
            let r = primary(&cfg);
            assert_eq!(r.ingress.name, "main");
            assert_eq!(cfg.backend(r).unwrap().service.name, "a");
            let c = r.canary.as_ref().expect("the primary has the canary");
            assert_eq!(
                (c.weight, c.weight_total, &c.header, &c.cookie),
                (30, 100, &None, &None)
            );
            assert_eq!(c.route.ingress.name, "can");
            assert_eq!(cfg.backend(&c.route).unwrap().service.name, "b");
            // Listed with an id of its own, and reached through the primary only.
            assert!(Arc::ptr_eq(&cfg.route_list[c.route.id], &c.route));
            // The primary's policy, not the canary's other annotations.
            assert_eq!(c.route.policy.read_timeout, r.policy.read_timeout);
            assert_eq!(r.policy.read_timeout, Some(std::time::Duration::from_secs(30)));
        }
    }

    #[test]
    fn canaries_without_primary_or_second_ones_are_warnings() {
        let cfg = build(vec![
            ing("main", "2024-01-01T00:00:00Z", "h.test", Prefix, "a", &[]),
            canary("first", "2024-01-02T00:00:00Z", "b", &[]),
            canary("second", "2024-01-03T00:00:00Z", "c", &[]),
            canary("same", "2024-01-04T00:00:00Z", "a", &[]),
            ing(
                "exact",
                "2024-01-05T00:00:00Z",
                "h.test",
                Exact,
                "c",
                &[("canary", "true")],
            ),
            ing(
                "lonely",
                "2024-01-06T00:00:00Z",
                "l.test",
                Prefix,
                "b",
                &[("canary", "true")],
            ),
            ing(
                "implspec",
                "2024-01-07T00:00:00Z",
                "h.test",
                ImplementationSpecific,
                "c",
                &[("canary", "true")],
            ),
        ]);
        assert_eq!(primary(&cfg).canary.as_ref().unwrap().route.ingress.name, "first");
        assert_eq!(warnings(&cfg, Reason::Canary, "first"), Vec::<String>::new());
        assert!(warnings(&cfg, Reason::Canary, "second")[0].contains("already the canary of /app"));
        assert!(warnings(&cfg, Reason::Canary, "exact")[0].contains("no primary"));
        assert!(warnings(&cfg, Reason::Canary, "lonely")[0].contains("no primary"));
        assert!(warnings(&cfg, Reason::Canary, "implspec")[0].contains("pathType"));
        assert_eq!(cfg.routes.route("l.test", "/app"), None, "a canary alone is not served");
        // Canaries are ours even when not served, and never conflict with their primary.
        assert!(cfg.admitted.iter().any(|k| k.name == "lonely"));
        assert!(
            cfg.diagnostics.iter().all(|d| d.reason != Reason::PathConflict),
            "{:?}",
            cfg.diagnostics
        );
    }

    #[test]
    fn rules_are_read_and_bounded() {
        let rules = |notes: &[(&str, &str)]| {
            let cfg = build(vec![
                ing("main", "2024-01-01T00:00:00Z", "h.test", Prefix, "a", &[]),
                canary("can", "2024-01-02T00:00:00Z", "b", notes),
            ]);
            let c = primary(&cfg).canary.clone().expect("canary");
            (c, warnings(&cfg, Reason::InvalidAnnotation, "can"))
        };
        let (c, w) = rules(&[("canary-by-header", "X_Canary"), ("canary-by-cookie", "ab")]);
        let h = c.header.as_ref().unwrap();
        assert_eq!((h.name.as_str(), &h.matches), ("x-canary", &HeaderMatch::AlwaysNever));
        assert_eq!(c.cookie.as_deref(), Some("ab"));
        assert!(w.is_empty(), "{w:?}");
        // A value wins over a pattern, as in ingress-nginx.
        let (c, _) = rules(&[
            ("canary-by-header", "x"),
            ("canary-by-header-value", "yes"),
            ("canary-by-header-pattern", "^v"),
        ]);
        assert_eq!(c.header.as_ref().unwrap().matches, HeaderMatch::Value("yes".into()));
        let (c, _) = rules(&[("canary-by-header", "x"), ("canary-by-header-pattern", "^v[0-9]+")]);
        assert!(matches!(c.header.as_ref().unwrap().matches, HeaderMatch::Pattern(ref p) if p.0.is_match("v12")));
        // Invalid values are warnings and the defaults.
        for (notes, name) in [
            (&[("canary-weight", "-1")][..], "canary-weight"),
            (&[("canary-weight", "1000000001")], "canary-weight"),
            (&[("canary-weight", "18446744073709551616")], "canary-weight"),
            (&[("canary-weight-total", "0")], "canary-weight-total"),
            (&[("canary-by-header", "x y")], "canary-by-header"),
            (&[("canary-by-header-value", "yes")], "canary-by-header-value"),
            (
                &[("canary-by-header", "x"), ("canary-by-header-pattern", "(")],
                "canary-by-header-pattern",
            ),
            (&[("canary-by-cookie", "a;b")], "canary-by-cookie"),
            (&[("affinity-canary-behavior", "sometimes")], "affinity-canary-behavior"),
        ] {
            let (c, w) = rules(notes);
            assert!(w.iter().any(|m| m.contains(name)), "{notes:?}: {w:?}");
            assert_eq!((c.weight, c.weight_total), (0, 100), "{notes:?}");
            assert!(c.cookie.is_none() && c.header.as_ref().is_none_or(|h| h.matches == HeaderMatch::AlwaysNever));
        }
        let too_long = "a".repeat(1025);
        let (c, w) = rules(&[("canary-by-header", "x"), ("canary-by-header-pattern", &too_long)]);
        assert_eq!(c.header.as_ref().unwrap().matches, HeaderMatch::AlwaysNever);
        assert!(!w.is_empty());
        // ingress-nginx's balancer takes a total only above 100.
        let (c, w) = rules(&[("canary-weight-total", "50")]);
        assert_eq!(c.weight_total, 100);
        assert!(w[0].contains("counts as 100"), "{w:?}");
        assert!(rules(&[("canary-weight-total", "100")]).1.is_empty());
        assert_eq!(rules(&[("canary-weight-total", "400")]).0.weight_total, 400);
        assert_eq!(rules(&[("canary-weight", "1000000000")]).0.weight, 1_000_000_000);
    }

    #[test]
    fn a_default_backend_canary_joins_the_default_server() {
        let primary_ing = fixture::ingress("default", "main")
            .class("portico")
            .created("2024-01-01T00:00:00Z")
            .default_backend("a", 80)
            .rule("", "/x", Prefix, "a", 80);
        let can = |created: &str| {
            fixture::ingress("default", "can")
                .class("portico")
                .created(created)
                .default_backend("b", 80)
                .annotation("nginx.ingress.kubernetes.io/canary", "true")
        };
        let named = ing("named", "2024-01-03T00:00:00Z", "h.test", Prefix, "c", &[]);
        let cfg = build(vec![primary_ing, can("2024-01-02T00:00:00Z"), named.clone()]);
        assert!(cfg.diagnostics.is_empty(), "{:?}", cfg.diagnostics);
        for (host, path) in [("any.test", "/"), ("any.test", "/x/y")] {
            let r = cfg.routes.route(host, path).unwrap();
            assert_eq!(
                r.ingress.name, "main",
                "{host}{path}: the canary is no catch-all itself"
            );
            let c = r
                .canary
                .as_ref()
                .unwrap_or_else(|| panic!("{host}{path} has the canary"));
            assert_eq!(cfg.backend(&c.route).unwrap().service.name, "b");
        }
        assert!(
            primary(&cfg).canary.is_none(),
            "named hosts are not nginx's default server"
        );
        // Without a catch-all or host-less path, it has no primary.
        let cfg = build(vec![named, can("2024-01-02T00:00:00Z")]);
        assert!(warnings(&cfg, Reason::Canary, "can")[0].contains("no primary"));
        assert_eq!(cfg.routes.route("other.test", "/"), None);
    }

    /// Awkward pieces (and some pairs) as each canary annotation's value: read or refused,
    /// never a panic, and what is kept is within the caps.
    #[test]
    fn awkward_values_are_kept_within_the_caps_or_refused() {
        const PIECES: &[&str] = &[
            "",
            "0",
            "1",
            "99",
            "100",
            "101",
            "-1",
            "+5",
            " 7",
            "1e3",
            "4294967295",
            "4294967296",
            "1000000000",
            "1000000001",
            "18446744073709551616",
            "always",
            "never",
            "x",
            "X_Y",
            "(",
            "[a-",
            "\\",
            "a{1000}{1000}",
            "\u{663}",
            "\0",
            ";",
            "=",
            "|",
            "\u{00e9}",
        ];
        let names = [
            "canary-weight",
            "canary-weight-total",
            "canary-by-header",
            "canary-by-header-value",
            "canary-by-header-pattern",
            "canary-by-cookie",
            "affinity-canary-behavior",
        ];
        for name in names {
            for a in PIECES {
                for b in ["", "0", "(", " "] {
                    let value = format!("{a}{b}");
                    let notes = [("canary-by-header", "x"), (name, value.as_str())];
                    let cfg = build(vec![
                        ing("main", "2024-01-01T00:00:00Z", "h.test", Prefix, "a", &[]),
                        canary("can", "2024-01-02T00:00:00Z", "b", &notes),
                    ]);
                    let c = primary(&cfg).canary.clone().expect("still a canary");
                    assert!(c.weight <= Canary::MAX_WEIGHT, "{name}={value:?}");
                    assert!((100..=Canary::MAX_WEIGHT).contains(&c.weight_total), "{name}={value:?}");
                    if let Some(h) = &c.header {
                        assert!(!h.name.is_empty() && h.name.len() <= 256, "{name}={value:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn portico_spelling_works_and_wins() {
        let cfg = build(vec![
            ing("main", "2024-01-01T00:00:00Z", "h.test", Prefix, "a", &[]),
            ing(
                "can",
                "2024-01-02T00:00:00Z",
                "h.test",
                Prefix,
                "b",
                &[("canary-weight", "10")],
            )
            .annotation("portico.dev/canary", "true")
            .annotation("portico.dev/canary-weight", "20"),
        ]);
        assert_eq!(primary(&cfg).canary.as_ref().expect("canary").weight, 20);
    }

    #[test]
    fn canary_annotations_without_canary_are_warnings() {
        let cfg = build(vec![ing(
            "main",
            "2024-01-01T00:00:00Z",
            "h.test",
            Prefix,
            "a",
            &[("canary-weight", "50"), ("canary", "false")],
        )]);
        assert!(primary(&cfg).canary.is_none());
        assert!(warnings(&cfg, Reason::InvalidAnnotation, "main")[0].contains("not a canary"));
    }

    #[test]
    fn sticky_canaries_take_the_primary_affinity_legacy_ones_their_own() {
        let aff = [("affinity", "cookie"), ("session-cookie-name", "aff")];
        let with = |notes: &[(&str, &str)]| {
            let cfg = build(vec![
                ing("main", "2024-01-01T00:00:00Z", "h.test", Prefix, "a", &aff),
                canary("can", "2024-01-02T00:00:00Z", "b", notes),
            ]);
            let r = primary(&cfg);
            let c = r.canary.as_ref().unwrap();
            assert_eq!(r.policy.affinity.as_ref().unwrap().backend_tag, None);
            (c.route.policy.affinity.clone(), c.route.policy.load_balance)
        };
        let (a, lb) = with(&[("load-balance", "ewma")]);
        let a = a.expect("sticky: the primary's affinity");
        assert_eq!(a.name, "aff");
        let tag = a.backend_tag.expect("tagged");
        assert!(tag.len() == 12 && tag.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(lb, Algorithm::Ewma, "a canary keeps its load-balance");
        assert_eq!(with(&[("affinity-canary-behavior", "legacy")]).0, None);
        let (a, _) = with(&[
            ("affinity-canary-behavior", "legacy"),
            ("affinity", "cookie"),
            ("session-cookie-name", "own"),
        ]);
        assert_eq!(a.unwrap().name, "own");
    }

    use std::sync::Arc;
}
