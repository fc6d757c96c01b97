//! Ingress semantics: which Ingresses are ours, and their rules, TLS and default backends
//! turned into routes, with conflicts settled oldest-first.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::Ing as Ingress;
use crate::model::ingress::Backend as IngressBackend;

use super::Options;
use super::annotations::Annotations;
use super::backend::Resolver;
use super::canary::{self, Canaries};
use super::mtls::HostPolicies;
use super::tls::parse_tls_secret;
use crate::config::backend::BackendId;
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::mtls::ClientAuthStore;
use crate::config::route::{HostPattern, PathRule, PathType, Route, RouteTableBuilder, path_regex};
use crate::config::tls::CertStore;
use crate::model::{ObjectKey, Snapshot};
use crate::path;

pub use crate::model::ingress::CLASS_ANNOTATION;
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

// Annotation prefixes Portico reads, its own first: `portico.dev/x` wins over the
// ingress-nginx spelling of the same setting.
use crate::model::ingress::ANNOTATION_PREFIXES;

/// Decides which Ingresses are ours. Built once per compile from the IngressClasses.
pub struct ClassFilter<'a> {
    opts: &'a Options,
    /// IngressClass name → whether its controller is ours.
    classes: HashMap<&'a str, bool>,
    /// One of our IngressClasses is the cluster's default class.
    default_is_ours: bool,
}

impl<'a> ClassFilter<'a> {
    pub fn new(snapshot: &'a Snapshot, opts: &'a Options) -> Self {
        let mut classes = HashMap::new();
        let mut default_is_ours = false;
        for (key, c) in snapshot.ingress_classes.iter() {
            let ours = c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(opts.controller_name.as_str());
            let is_default = c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
            default_is_ours |= ours && is_default;
            classes.insert(key.name.as_str(), ours);
        }
        Self {
            opts,
            classes,
            default_is_ours,
        }
    }

    /// Why an Ingress is not ours, for `/routes`; `None` when it is ours.
    pub fn mismatch(&self, ing: &Ingress) -> Option<String> {
        if let Some(class) = ing.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()) {
            return match self.classes.get(class) {
                None => Some(format!("IngressClass {class} does not exist")),
                Some(true) => None,
                Some(false) => Some(format!("IngressClass {class} belongs to another controller")),
            };
        }
        if let Some(class) = ing.metadata.annotations.get(CLASS_ANNOTATION) {
            return (class != self.opts.ingress_class)
                .then(|| format!("annotation {CLASS_ANNOTATION}={class} names another class"));
        }
        if self.opts.watch_without_class || self.default_is_ours {
            return None;
        }
        Some("no ingress class, and no default IngressClass of ours".to_string())
    }
}

/// Reads an annotation under Portico's or ingress-nginx's prefix.
pub fn annotation<'a>(ing: &'a Ingress, name: &str) -> Option<(&'static str, &'a str)> {
    let annotations = &ing.metadata.annotations;
    if annotations.is_empty() {
        return None;
    }
    ANNOTATION_PREFIXES
        .iter()
        .find_map(|p| annotations.get(&format!("{p}{name}")).map(|v| (*p, v)))
}

/// Everything the Ingress pass produces.
pub struct Compiled {
    pub builder: RouteTableBuilder,
    pub routes: Vec<Arc<Route>>,
    pub admitted: Vec<ObjectKey>,
    pub ignored: Vec<(ObjectKey, String)>,
    pub client_auth: ClientAuthStore,
    /// TLSRoutes' passthrough hosts (gateway::tls), merged into `Config::passthrough`.
    pub gateway_passthrough: Vec<super::gateway::tls::Host>,
    /// The Gateway listeners' serving points (gateway::listeners).
    pub gateway_listeners: Option<Arc<crate::config::listeners::Points>>,
    /// Gateway TLS listeners' SNI claims and target ports (gateway::sni).
    pub sni_gate: crate::config::sni_gate::SniGate,
}

/// A path claim: the same host, path and match kind may be served by one Ingress only.
type Claim = canary::Claim;

pub struct IngressPass<'s, 'r> {
    pub snapshot: &'s Snapshot,
    pub opts: &'s Options,
    pub resolver: &'r mut Resolver<'s>,
    pub diags: &'r mut Diagnostics,
    pub certs: &'r mut CertStore,
    pub parsed_secrets: HashMap<ObjectKey, SecretResult>,
    /// The `--configmap`'s settings (route defaults, global auth).
    pub global: &'s crate::config::global::Global,
}

type SecretResult = Result<Arc<rustls::sign::CertifiedKey>, (Reason, String)>;

struct TlsHost {
    owner: ObjectKey,
    secret: Option<String>,
}

impl IngressPass<'_, '_> {
    fn warn(&mut self, key: &ObjectKey, severity: Severity, reason: Reason, msg: String) {
        self.diags.push(ObjectRef::ingress(key), severity, reason, msg);
    }

    /// `service_upstream`: the backend's cluster-IP twin where the Service has one.
    pub(super) fn backend(
        &mut self,
        key: &ObjectKey,
        b: &IngressBackend,
        service_upstream: bool,
    ) -> Option<(BackendId, ObjectKey)> {
        match self.resolver.ingress_backend(&key.namespace, b) {
            Ok((id, (backend, problem))) => {
                if let Some((reason, msg)) = problem {
                    self.warn(key, Severity::Error, reason, format!("{msg}; its paths answer 503"));
                }
                let id = match service_upstream {
                    false => id,
                    true => self.resolver.cluster_ip(id).unwrap_or_else(|msg| {
                        let msg = format!("service-upstream: {msg}; its pods are used");
                        self.warn(key, Severity::Warning, Reason::InvalidAnnotation, msg);
                        id
                    }),
                };
                Some((id, backend.service.clone()))
            }
            Err(msg) => {
                self.warn(key, Severity::Error, Reason::UnsupportedBackend, msg);
                None
            }
        }
    }

    /// Compiles the Ingresses that are ours, oldest first so that the oldest claim on a
    /// host+path (or a host's certificate or default backend) wins.
    pub fn run(mut self) -> Compiled {
        let filter = ClassFilter::new(self.snapshot, self.opts);
        let mut owned: Vec<(&ObjectKey, &Ingress)> = Vec::new();
        let mut ignored = Vec::new();
        for (k, ing) in self.snapshot.ingresses.iter() {
            match filter.mismatch(ing) {
                None => owned.push((k, ing.as_ref())),
                Some(why) => ignored.push((k.clone(), why)),
            }
        }
        // Objects without a creation time (hand-written manifests) count as newest.
        owned.sort_by(|(ka, a), (kb, b)| {
            let ta = a.metadata.creation_timestamp.as_ref();
            let tb = b.metadata.creation_timestamp.as_ref();
            (ta.is_none(), ta, ka).cmp(&(tb.is_none(), tb, kb))
        });

        let mut builder = RouteTableBuilder::default();
        let mut routes = Vec::new();
        let mut claims: HashMap<Claim, ObjectKey> = HashMap::new();
        let mut tls_hosts: HashMap<HostPattern, TlsHost> = HashMap::new();
        let mut admitted = Vec::with_capacity(owned.len());

        let default_policy = Arc::new(self.global.routes.policy());
        // A canary Ingress has no TLS or hosts of its own: it adds to its primary's paths.
        let empty = Default::default();
        let mut canaries = Canaries::default();
        let primaries: Vec<_> = owned.iter().filter(|(_, i)| !canary::is_canary(i)).copied().collect();
        // TLS first: whether a host has TLS decides the redirects of every route on it.
        for (key, ing) in &primaries {
            self.tls(key, ing, &mut tls_hosts);
        }
        // Client certificates are set per host, by the oldest Ingress on it that asks.
        let client_auth = HostPolicies::collect(&primaries, self.diags, &self.snapshot.secrets);
        for (key, ing) in owned {
            admitted.push(key.clone());
            let spec = ing.spec.as_ref().unwrap_or(&empty);
            let mut notes = Annotations {
                ing,
                key,
                diags: self.diags,
                secrets: &self.snapshot.secrets,
                global_auth: self.global.global_auth.as_deref(),
            };
            notes.unsupported();
            let canary = notes.canary().map(Arc::new);
            let ssl_redirect = notes.bool("ssl-redirect", true);
            let force_ssl_redirect = notes.bool("force-ssl-redirect", false);
            // Most Ingresses carry no annotations: they share one default policy.
            let mut policy = notes.policy();
            self.error_pages(key, ing, &mut policy);
            super::global::route_policy(&mut policy, ing, key, self.global, self.snapshot, self.diags);
            let policy = match policy {
                p if p == *default_policy => default_policy.clone(),
                p => Arc::new(p),
            };
            // An exact host has TLS when listed itself or covered by a `*.` entry one label up.
            let has_tls = |host: &HostPattern| match host {
                HostPattern::Any | HostPattern::Regex(_) | HostPattern::Suffix(_) => false,
                HostPattern::Wildcard(_) => tls_hosts.contains_key(host),
                HostPattern::Exact(h) => {
                    tls_hosts.contains_key(host)
                        || h.split_once('.').is_some_and(|(first, rest)| {
                            !first.is_empty() && tls_hosts.contains_key(&HostPattern::Wildcard(rest.to_string()))
                        })
                }
            };
            let rules = spec.rules.as_deref().unwrap_or(&[]);
            if let (Some(c), Some(b)) = (&canary, &spec.default_backend) {
                canaries.add(key, None, b, c, &policy);
            }
            let default_backend = (spec.default_backend.as_ref())
                .filter(|_| canary.is_none())
                .and_then(|b| self.backend(key, b, policy.service_upstream));

            let mut hosts_of_ingress: Vec<HostPattern> = Vec::new();
            for rule in rules {
                let host = match HostPattern::parse(rule.host.as_deref()) {
                    Ok(h) => h,
                    Err(msg) => {
                        self.warn(
                            key,
                            Severity::Error,
                            Reason::InvalidHost,
                            format!("{msg}; rule skipped"),
                        );
                        continue;
                    }
                };
                if !hosts_of_ingress.contains(&host) {
                    hosts_of_ingress.push(host.clone());
                }
                let redirect = (ssl_redirect && has_tls(&host)) || force_ssl_redirect;
                for p in rule.http.as_ref().map(|h| &*h.paths).unwrap_or(&[]) {
                    let path_type = match &*p.path_type {
                        "Exact" => PathType::Exact,
                        "Prefix" => PathType::Prefix,
                        "ImplementationSpecific" => PathType::ImplementationSpecific,
                        other => {
                            self.warn(
                                key,
                                Severity::Error,
                                Reason::InvalidPath,
                                format!(
                                    "pathType {other:?} is not Exact, Prefix or ImplementationSpecific; path skipped"
                                ),
                            );
                            continue;
                        }
                    };
                    let raw = p.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
                    // With use-regex (or rewrite-target) a non-Exact path is a regex, kept as written.
                    let as_regex = (policy.use_regex || policy.rewrite_target.is_some()) && !path_type.is_exact();
                    let regex = if as_regex {
                        match path_regex(raw) {
                            Ok(r) => Some(r),
                            Err(e) => {
                                self.warn(
                                    key,
                                    Severity::Error,
                                    Reason::InvalidPath,
                                    format!("path {raw:?} on host {host} is not a valid regex: {e}; path skipped"),
                                );
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    let normalized = match path::normalize(raw) {
                        _ if as_regex => raw.to_string(),
                        Ok(n) => n.into_owned(),
                        Err(e) => {
                            self.warn(
                                key,
                                Severity::Error,
                                Reason::InvalidPath,
                                format!("path {raw:?} on host {host}: {e}; path skipped"),
                            );
                            continue;
                        }
                    };
                    let claim: Claim = (host.clone(), normalized.clone(), path_type.is_exact());
                    if let Some(spec) = &canary {
                        canaries.add(key, Some((claim, path_type)), &p.backend, spec, &policy);
                        continue;
                    }
                    if let Some(winner) = claims.get(&claim) {
                        let msg = if winner == key {
                            format!("host {host} path {raw} ({path_type:?}) is listed twice; the first is used")
                        } else {
                            format!(
                                "host {host} path {raw} ({path_type:?}) is already served by Ingress {winner}, which is older; this path is not served"
                            )
                        };
                        self.warn(key, Severity::Warning, Reason::PathConflict, msg);
                        continue;
                    }
                    let Some((backend, service)) = self.backend(key, &p.backend, policy.service_upstream) else {
                        continue;
                    };
                    canaries.primary(claim.clone(), routes.len());
                    claims.insert(claim, key.clone());
                    let route = Arc::new(Route {
                        id: routes.len(),
                        ingress: key.clone(),
                        host: host.clone(),
                        path: Some(PathRule {
                            path: normalized,
                            path_type,
                            regex,
                        }),
                        backend,
                        service,
                        ssl_redirect: redirect,
                        policy: super::no_auth::exempt(&policy, raw, self.global),
                        client_auth: client_auth.of_route(key, &host),
                        canary: None,
                        conditions: None,
                        weighted: None,
                    });
                    routes.push(route);
                }
            }

            let Some((default_backend, default_service)) = default_backend else {
                continue;
            };
            // A default backend serves its Ingress's hosts; with no host of its own (no
            // rules, or rules without host) it is the catch-all for every host.
            let named: Vec<HostPattern> = hosts_of_ingress
                .into_iter()
                .filter(|h| *h != HostPattern::Any)
                .collect();
            let targets = if named.is_empty() || rules.iter().any(|r| r.host.as_deref().unwrap_or("").is_empty()) {
                vec![HostPattern::Any]
            } else {
                named
            };
            for host in targets {
                let route = Arc::new(Route {
                    id: routes.len(),
                    ingress: key.clone(),
                    host: host.clone(),
                    path: None,
                    backend: default_backend,
                    service: default_service.clone(),
                    ssl_redirect: (ssl_redirect && has_tls(&host)) || force_ssl_redirect,
                    policy: policy.clone(),
                    client_auth: client_auth.of_route(key, &host),
                    canary: None,
                    conditions: None,
                    weighted: None,
                });
                let existing = if host == HostPattern::Any {
                    builder.set_catch_all(route.clone())
                } else {
                    builder.set_host_default(route.clone())
                };
                match existing {
                    Some(winner) if winner.ingress != *key => {
                        let what = if host == HostPattern::Any {
                            "the catch-all default backend".to_string()
                        } else {
                            format!("the default backend of host {host}")
                        };
                        self.warn(
                            key,
                            Severity::Warning,
                            Reason::DefaultBackendConflict,
                            format!(
                                "{what} is already set by Ingress {}, which is older; this one is not used",
                                winner.ingress
                            ),
                        );
                    }
                    Some(_) => {}
                    None => routes.push(route),
                }
            }
        }
        // Path routes enter the table once their canaries are attached (in the order added:
        // it ranks them); canary routes are reached through their primary only.
        let first_canary = routes.len();
        canaries.attach(&mut routes, &mut self);
        for route in &routes[..first_canary] {
            match route.path {
                Some(_) => builder.add_path(route.clone()),
                // The catch-all may have got a canary.
                None if route.host == HostPattern::Any => builder.replace_catch_all(route.clone()),
                None => {}
            }
        }
        Compiled {
            builder,
            routes,
            admitted,
            ignored,
            client_auth: client_auth.store,
            gateway_passthrough: Vec::new(),
            gateway_listeners: None,
            sni_gate: Default::default(),
        }
    }

    fn tls(&mut self, key: &ObjectKey, ing: &Ingress, tls_hosts: &mut HashMap<HostPattern, TlsHost>) {
        let Some(spec) = &ing.spec else { return };
        for tls in spec.tls.as_deref().unwrap_or(&[]) {
            let secret = tls.secret_name.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
            // Without hosts, a TLS entry covers the hosts of the Ingress's rules.
            let listed: Vec<String> = match tls.hosts.as_deref() {
                Some(h) if !h.is_empty() => h.iter().map(|h| h.to_string()).collect(),
                _ => spec
                    .rules
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(|r| r.host.as_deref().map(str::to_string))
                    .filter(|h| !h.is_empty())
                    .collect(),
            };
            for raw in listed {
                let host = match HostPattern::parse(Some(&raw)) {
                    Ok(h) => h,
                    Err(msg) => {
                        self.warn(
                            key,
                            Severity::Warning,
                            Reason::InvalidHost,
                            format!("TLS {msg}; ignored"),
                        );
                        continue;
                    }
                };
                if let Some(existing) = tls_hosts.get(&host) {
                    if existing.secret != secret && existing.owner != *key {
                        self.warn(
                            key,
                            Severity::Warning,
                            Reason::CertificateConflict,
                            format!(
                                "TLS host {host} already takes its certificate from Ingress {}, which is older; secret {} is not used for it",
                                existing.owner,
                                secret.as_deref().unwrap_or("(default)")
                            ),
                        );
                    }
                    continue;
                }
                tls_hosts.insert(
                    host.clone(),
                    TlsHost {
                        owner: key.clone(),
                        secret: secret.clone(),
                    },
                );
                let Some(name) = &secret else {
                    self.certs.note_default(&host, "no secretName");
                    continue;
                };
                let skey = ObjectKey::new(key.namespace.clone(), name.clone());
                match self.secret(&skey) {
                    Ok(ck) => self.certs.insert(&host, ck, format!("secret {skey}")),
                    Err((reason, msg)) => {
                        self.warn(
                            key,
                            Severity::Error,
                            reason,
                            format!(
                                "TLS secret {skey} for host {host}: {msg}; the default certificate is served instead"
                            ),
                        );
                        self.certs.note_default(&host, &format!("secret {skey} unusable"));
                    }
                }
            }
        }
    }

    /// Parses a Secret once per compile, however many hosts use it.
    pub fn secret(&mut self, key: &ObjectKey) -> SecretResult {
        if let Some(done) = self.parsed_secrets.get(key) {
            return done.clone();
        }
        let result = match self.snapshot.secrets.get(key) {
            None => Err((Reason::SecretNotFound, "the Secret does not exist".into())),
            Some(secret) => parse_tls_secret(secret, self.opts.now, self.opts.cert_cache.as_deref()),
        };
        self.parsed_secrets.insert(key.clone(), result.clone());
        result
    }
}
