//! Backend resolution: an Ingress backend (Service + port) → the pod endpoints to dial.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::model::ingress::Backend as IngressBackend;
use k8s_openapi::api::core::v1::Endpoints;

use crate::config::diagnostic::Reason;
use crate::config::{Backend, BackendId, Endpoint, PortRef, Protocol, Target};
use crate::model::{ObjectKey, Slice, Snapshot, Svc, SvcPort};

/// Slices and legacy Endpoints indexed by the Service they belong to.
pub struct EndpointIndex<'a> {
    /// namespace → service name → slices.
    slices: HashMap<&'a str, HashMap<&'a str, Vec<&'a Slice>>>,
    snapshot: &'a Snapshot,
}

/// Kubernetes' own bounds for `sessionAffinityConfig.clientIP.timeoutSeconds` (1 to a day)
/// and its default: the API server refuses other values, but nothing checks a manifests file.
pub const MAX_CLIENT_IP_TIMEOUT: u32 = 86_400;
const DEFAULT_CLIENT_IP_TIMEOUT: u32 = 10_800;

/// A Service's ClientIP affinity timeout in seconds; `Err` with the value given when that is
/// out of range (and the default applies).
pub fn client_ip_timeout(svc: &Svc) -> Result<u32, i32> {
    match svc.client_ip_timeout {
        None => Ok(DEFAULT_CLIENT_IP_TIMEOUT),
        Some(t) => u32::try_from(t)
            .ok()
            .filter(|t| (1..=MAX_CLIENT_IP_TIMEOUT).contains(t))
            .ok_or(t),
    }
}

/// The warning for a Service whose ClientIP timeout is out of range, if it is.
pub fn client_ip_timeout_problem(svc: &Svc) -> Option<String> {
    if !svc.client_ip_affinity {
        return None;
    }
    let t = client_ip_timeout(svc).err()?;
    Some(format!(
        "sessionAffinityConfig.clientIP.timeoutSeconds {t} is not from 1 to {MAX_CLIENT_IP_TIMEOUT}; using {DEFAULT_CLIENT_IP_TIMEOUT}"
    ))
}

impl<'a> EndpointIndex<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        Self::filtered(snapshot, None)
    }

    /// Indexes only the slices of `only` (all when `None`).
    fn filtered(snapshot: &'a Snapshot, only: Option<&std::collections::HashSet<ObjectKey>>) -> Self {
        let mut slices: HashMap<&str, HashMap<&str, Vec<&Slice>>> = HashMap::new();
        for (key, slice) in snapshot.endpoint_slices.iter() {
            let Some(svc) = slice.service.as_deref() else {
                continue;
            };
            if let Some(only) = only
                && !only.contains(&ObjectKey::new(key.namespace.as_str(), svc))
            {
                continue;
            }
            slices
                .entry(key.namespace.as_str())
                .or_default()
                .entry(svc)
                .or_default()
                .push(slice);
        }
        Self { slices, snapshot }
    }

    fn slices_for<'s>(&'s self, svc: &ObjectKey) -> &'s [&'a Slice] {
        self.slices
            .get(svc.namespace.as_str())
            .and_then(|m| m.get(svc.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn legacy_endpoints(&self, svc: &ObjectKey) -> Option<&'a Endpoints> {
        self.snapshot.endpoints.get(svc).map(|e| e.as_ref())
    }
}

/// A backend and, when something is wrong with it, the reason to report.
pub type Resolved = (Arc<Backend>, Option<(Reason, String)>);

/// Resolves backends once per (Service, port) and shares the result between routes.
pub struct Resolver<'a> {
    index: EndpointIndex<'a>,
    snapshot: &'a Snapshot,
    /// Service → its resolved ports (a Service has few) → backend id.
    cache: HashMap<ObjectKey, Vec<(PortRef, BackendId)>>,
    /// Backends by id, in the order they were first asked for.
    list: Vec<Resolved>,
    /// Backend id → the id of its `service-upstream` twin.
    cluster_ip: HashMap<BackendId, BackendId>,
    /// The one empty endpoint list every backend without (terminating) endpoints shares.
    empty: Arc<[Endpoint]>,
}

impl<'a> Resolver<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        Self {
            index: EndpointIndex::new(snapshot),
            snapshot,
            cache: HashMap::new(),
            list: Vec::new(),
            cluster_ip: HashMap::new(),
            empty: Arc::new([]),
        }
    }

    /// A resolver that may only be asked about `services` (it indexes their slices alone).
    pub fn for_services(snapshot: &'a Snapshot, services: &std::collections::HashSet<ObjectKey>) -> Self {
        Self {
            index: EndpointIndex::filtered(snapshot, Some(services)),
            snapshot,
            cache: HashMap::new(),
            list: Vec::new(),
            cluster_ip: HashMap::new(),
            empty: Arc::new([]),
        }
    }

    /// All backends resolved so far, indexed by their id.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.list.iter().map(|(b, _)| b.clone()).collect()
    }

    /// Resolves an Ingress backend in `namespace`. Returns the backend (possibly
    /// `Unavailable`) and, when something is wrong, the reason to report.
    pub fn ingress_backend(&mut self, namespace: &str, b: &IngressBackend) -> Result<(BackendId, Resolved), String> {
        let Some(svc) = &b.service else {
            return Err(match &b.resource {
                Some(r) => format!(
                    "backend resource {}/{} is not supported; use a Service backend",
                    r.kind, r.name
                ),
                None => "backend names no Service".to_string(),
            });
        };
        let port = match svc.port.as_ref() {
            Some(p) => match (&p.number, &p.name) {
                (Some(n), _) => PortRef::Number(*n),
                (None, Some(name)) if !name.is_empty() => PortRef::Name(name.to_string()),
                _ => return Err(format!("backend Service {} has no port number or name", svc.name)),
            },
            None => return Err(format!("backend Service {} has no port", svc.name)),
        };
        Ok(self.service(&ObjectKey::new(namespace, svc.name.clone()), port))
    }

    /// A backend that answers 503 for a reference compile refused (a cross-namespace Service
    /// without ReferenceGrant, a kind that is no Service). Keyed by a name no Service can
    /// have, so that re-resolving it (an endpoints-only recompile) never finds endpoints.
    pub fn refused(&mut self, to: &ObjectKey, reason: &str) -> BackendId {
        let key = ObjectKey::new(to.namespace.as_str(), format!("({} refused)", to.name));
        let backend = Backend::unavailable(key, PortRef::Number(0), reason.to_string());
        let id = self.list.len();
        self.list.push((Arc::new(backend), None));
        id
    }

    /// Resolves a Service port (by number or name) to a shared backend.
    pub fn service(&mut self, key: &ObjectKey, port: PortRef) -> (BackendId, Resolved) {
        if let Some(&(_, id)) = self
            .cache
            .get(key)
            .and_then(|ports| ports.iter().find(|(p, _)| *p == port))
        {
            return (id, self.list[id].clone());
        }
        let mut resolved = resolve(
            self.snapshot.services.get(key).map(|s| s.as_ref()),
            key,
            &port,
            &self.index,
        );
        self.share_endpoints(key, &mut resolved.0);
        let entry = (Arc::new(resolved.0), resolved.1);
        let id = self.list.len();
        self.list.push(entry.clone());
        self.cache.entry(key.clone()).or_default().push((port, id));
        (id, entry)
    }

    /// Two ports of one Service usually name the same slice port (an Ingress path naming
    /// port 80, another naming it `http`), and most backends have no terminating endpoints:
    /// such lists are shared with the Service's backends resolved before (one list of each
    /// at 10k Ingresses of two paths each was 2.5 MB). Only memory changes: the contents
    /// are equal.
    fn share_endpoints(&self, key: &ObjectKey, backend: &mut Backend) {
        let Target::Endpoints { ready, terminating } = &mut backend.target else {
            return;
        };
        for list in [&mut *ready, &mut *terminating] {
            if list.is_empty() {
                *list = self.empty.clone();
            }
        }
        let earlier = self
            .cache
            .get(key)
            .into_iter()
            .flatten()
            .map(|&(_, id)| &self.list[id].0);
        for other in earlier {
            if let Target::Endpoints {
                ready: r,
                terminating: t,
            } = &other.target
            {
                if r == ready {
                    *ready = r.clone();
                }
                if t == terminating {
                    *terminating = t.clone();
                }
            }
        }
    }

    /// `service-upstream`: the twin of backend `id` that sends to the Service's cluster IP and
    /// port instead of its pods. ExternalName and unavailable backends stay as they are; a
    /// Service without cluster IP (headless) is an `Err` and the pods are used, as
    /// ingress-nginx does.
    pub fn cluster_ip(&mut self, id: BackendId) -> Result<BackendId, String> {
        if let Some(&twin) = self.cluster_ip.get(&id) {
            return Ok(twin);
        }
        let Some((b, _)) = self.list.get(id) else { return Ok(id) };
        if !matches!(b.target, Target::Endpoints { .. }) {
            return Ok(id);
        }
        let key = &b.service;
        let svc = self.snapshot.services.get(key);
        let ip = svc
            .and_then(|s| s.cluster_ip.as_deref())
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .ok_or_else(|| format!("Service {key} has no cluster IP (headless)"))?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("Service {key} has cluster IP {ip:?}, which is no IP address"))?;
        let port = svc
            .and_then(|s| match &b.port {
                PortRef::Number(n) => s.port_numbered(*n),
                PortRef::Name(name) => s.port_named(name),
            })
            .and_then(|p| u16::try_from(p.port).ok())
            .ok_or_else(|| format!("Service {key} has no usable port {}", b.port))?;
        let ready: Arc<[Endpoint]> = Arc::new([Endpoint {
            addr: SocketAddr::new(ip, port),
            target: None,
            zone: None,
        }]);
        let twin = Backend {
            target: Target::Endpoints {
                ready,
                terminating: self.empty.clone(),
            },
            service_upstream: true,
            ..(**b).clone()
        };
        let twin_id = self.list.len();
        self.list.push((Arc::new(twin), None));
        self.cluster_ip.insert(id, twin_id);
        Ok(twin_id)
    }

    /// The first port of a Service: how `--default-backend-service` picks its port.
    pub fn first_port(&self, key: &ObjectKey) -> Option<PortRef> {
        let p = self.snapshot.services.get(key)?.ports.first()?;
        Some(PortRef::Number(p.port))
    }
}

fn unavailable(
    key: &ObjectKey,
    port: &PortRef,
    reason: Reason,
    message: String,
) -> (Backend, Option<(Reason, String)>) {
    (
        Backend::unavailable(key.clone(), port.clone(), message.clone()),
        Some((reason, message)),
    )
}

fn resolve(
    svc: Option<&Svc>,
    key: &ObjectKey,
    port: &PortRef,
    index: &EndpointIndex<'_>,
) -> (Backend, Option<(Reason, String)>) {
    let Some(svc) = svc else {
        return unavailable(
            key,
            port,
            Reason::ServiceNotFound,
            format!("Service {key} does not exist"),
        );
    };
    let is_external = svc.external;
    let found = match port {
        PortRef::Number(n) => svc.port_numbered(*n),
        PortRef::Name(name) => svc.port_named(name),
    };
    let sp: SvcPort = match found {
        Some(p) => p.clone(),
        // An ExternalName Service often lists no ports: the number is the one to dial.
        None if is_external => match port {
            PortRef::Number(n) => SvcPort {
                port: *n,
                ..Default::default()
            },
            PortRef::Name(_) => {
                return unavailable(
                    key,
                    port,
                    Reason::ServicePortNotFound,
                    format!("Service {key} has no port named {port}"),
                );
            }
        },
        None => {
            let what = match port {
                PortRef::Number(n) => format!("port {n}"),
                PortRef::Name(n) => format!("port named {n}"),
            };
            return unavailable(
                key,
                port,
                Reason::ServicePortNotFound,
                format!("Service {key} has no {what}"),
            );
        }
    };
    let client_ip_affinity = svc
        .client_ip_affinity
        .then(|| client_ip_timeout(svc).unwrap_or(DEFAULT_CLIENT_IP_TIMEOUT));
    let mut backend = Backend {
        service: key.clone(),
        port: port.clone(),
        target: Target::Unavailable { reason: String::new() },
        client_ip_affinity,
        app_protocol: sp.app_protocol.as_deref().map(str::to_string),
        protocol: Protocol::from_app_protocol(sp.app_protocol.as_deref()),
        service_upstream: false,
    };
    if is_external {
        let host = svc.external_name.as_deref().unwrap_or_default().to_string();
        let dial_port = match sp.target_port {
            Some(n) if n > 0 => n,
            _ => sp.port,
        };
        let Ok(dial_port) = u16::try_from(dial_port) else {
            return unavailable(
                key,
                port,
                Reason::ServicePortNotFound,
                format!("Service {key} has an invalid port"),
            );
        };
        if host.is_empty() {
            return unavailable(
                key,
                port,
                Reason::UnsupportedBackend,
                format!("ExternalName Service {key} has no externalName"),
            );
        }
        backend.target = Target::ExternalName { host, port: dial_port };
        return (backend, None);
    }
    let publish_not_ready = svc.publish_not_ready_addresses;
    let (ready, terminating) = endpoints_for(key, &sp, publish_not_ready, index);
    backend.target = Target::Endpoints {
        ready: ready.into(),
        terminating: terminating.into(),
    };
    (backend, None)
}

/// Collects the endpoints of one Service port: from EndpointSlices when any exist for the
/// Service, else from the legacy Endpoints object.
fn endpoints_for(
    key: &ObjectKey,
    sp: &SvcPort,
    publish_not_ready: bool,
    index: &EndpointIndex<'_>,
) -> (Vec<Endpoint>, Vec<Endpoint>) {
    let (ready, terminating) = endpoint_keys(key, sp, publish_not_ready, index);
    let endpoints = |set: BTreeSet<EndpointKey>| -> Vec<Endpoint> {
        set.into_iter()
            .map(|(addr, target, zone)| Endpoint { addr, target, zone })
            .collect()
    };
    (endpoints(ready), endpoints(terminating))
}

/// An endpoint as collected: address, target name, zone.
type EndpointKey = (SocketAddr, Option<String>, Option<String>);

fn endpoint_keys(
    key: &ObjectKey,
    sp: &SvcPort,
    publish_not_ready: bool,
    index: &EndpointIndex<'_>,
) -> (BTreeSet<EndpointKey>, BTreeSet<EndpointKey>) {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    // Slices name ports by the Service port's name ("" when unnamed); that is how a named
    // targetPort arrives already resolved to a number.
    let want = sp.name.as_deref().unwrap_or("");
    let slices = index.slices_for(key);
    if !slices.is_empty() {
        for slice in slices {
            if slice.fqdn {
                continue;
            }
            let Some(port) = slice.port(want).and_then(|p| p.port) else {
                continue;
            };
            for ep in &slice.endpoints {
                let set = if ep.terminating == Some(true) {
                    if ep.serving == Some(false) {
                        continue;
                    }
                    &mut terminating
                } else if ep.ready != Some(false) || publish_not_ready {
                    &mut ready
                } else {
                    continue;
                };
                let target = ep.target.as_deref().map(str::to_string);
                let zone = ep.zone.as_deref().map(str::to_string);
                for ip in &ep.addresses {
                    set.insert((SocketAddr::new(*ip, port), target.clone(), zone.clone()));
                }
            }
        }
        // An endpoint listed twice (slices overlap while they are being rebalanced) is only
        // dialled as ready.
        terminating.retain(|e| !ready.contains(e));
        return (ready, terminating);
    }
    if let Some(eps) = index.legacy_endpoints(key) {
        for subset in eps.subsets.as_deref().unwrap_or(&[]) {
            let Some(port) = subset
                .ports
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .find(|p| p.name.as_deref().unwrap_or("") == want)
                .and_then(|p| u16::try_from(p.port).ok())
            else {
                continue;
            };
            let not_ready: &[_] = if publish_not_ready {
                subset.not_ready_addresses.as_deref().unwrap_or(&[])
            } else {
                &[]
            };
            for a in subset.addresses.as_deref().unwrap_or(&[]).iter().chain(not_ready) {
                if let Ok(ip) = a.ip.parse::<IpAddr>() {
                    let target = a.target_ref.as_ref().and_then(|r| r.name.clone());
                    ready.insert((SocketAddr::new(ip, port), target, None));
                }
            }
        }
    }
    (ready, terminating)
}
