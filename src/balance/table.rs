//! The runtime tables behind a Config: per backend, its endpoints' state (interned by address,
//! so every Config names the same state for the same endpoint), its round-robin cursor, its
//! cookie-affinity index and its ClientIP memory. [`reconcile`] builds them for a new Config
//! from those of the previous one, keeping the state of what did not change.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use super::RoundRobin;
use super::affinity::{AffinityIndex, ClientIpTable};
use super::hash::HashIndex;
use crate::config::{Backend, Config, PortRef};
use crate::model::ObjectKey;

/// The runtime state of one backend of a Config.
pub struct BackendState<E> {
    /// The state of each endpoint: the Backend's ready endpoints, then its terminating ones,
    /// in the same order.
    pub endpoints: Box<[Arc<E>]>,
    /// How many of `endpoints` are ready.
    pub ready: usize,
    /// Kept for the same Service port across Configs, so a new Config does not restart the
    /// rotation at the first endpoint.
    pub rotation: Arc<RoundRobin>,
    /// Cookie-affinity lookups over `endpoints`, built on first use.
    pub affinity: AffinityIndex,
    /// `sessionAffinity: ClientIP`: the Service's client → endpoint memory.
    pub client_ip: Option<Arc<ClientIpTable>>,
    /// `upstream-hash-by`: the ring of the ready endpoints, built on first use.
    pub hash: HashIndex,
}

impl<E> BackendState<E> {
    pub fn ready(&self) -> &[Arc<E>] {
        &self.endpoints[..self.ready]
    }
}

/// Interns runtime state by identity, so successive Configs share it. Entries die with the
/// last table that names them.
pub struct Registry<E> {
    endpoints: Mutex<HashMap<SocketAddr, Weak<E>>>,
    client_ip: Mutex<HashMap<ObjectKey, Weak<ClientIpTable>>>,
}

impl<E> Default for Registry<E> {
    fn default() -> Self {
        Self {
            endpoints: Mutex::default(),
            client_ip: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<E> Registry<E> {
    /// The state of the endpoint at `addr`, made by `make` on first use.
    pub fn endpoint(&self, addr: SocketAddr, make: impl FnOnce(SocketAddr) -> E) -> Arc<E> {
        let mut map = lock(&self.endpoints);
        if let Some(s) = map.get(&addr).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(make(addr));
        map.insert(addr, Arc::downgrade(&s));
        s
    }

    /// The ClientIP affinity table of a Service, created on first use.
    pub fn client_ip_table(&self, service: &ObjectKey) -> Arc<ClientIpTable> {
        let mut map = lock(&self.client_ip);
        if let Some(t) = map.get(service).and_then(Weak::upgrade) {
            return t;
        }
        let t = Arc::new(ClientIpTable::default());
        map.insert(service.clone(), Arc::downgrade(&t));
        t
    }

    /// Forgets dead entries and returns the live endpoint states (for idle-connection reaping).
    pub fn sweep(&self) -> Vec<Arc<E>> {
        lock(&self.client_ip).retain(|_, w| w.strong_count() > 0);
        let mut map = lock(&self.endpoints);
        map.retain(|_, w| w.strong_count() > 0);
        map.values().filter_map(Weak::upgrade).collect()
    }
}

/// The backend tables for `next`, aligned with `next.backends`. A backend the previous
/// Config had unchanged (the same `Arc`, or an equal value for the same Service port) keeps
/// its whole table; a changed one keeps its cursor, and its endpoints keep their state
/// through the registry.
pub fn reconcile<E>(
    prev: Option<(&Config, &[Arc<BackendState<E>>])>,
    next: &Config,
    registry: &Registry<E>,
    make: impl Fn(SocketAddr) -> E,
) -> Vec<Arc<BackendState<E>>> {
    let mut by_port: Option<HashMap<(&ObjectKey, &PortRef), usize>> = None;
    next.backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let Some((pc, ps)) = prev else {
                return Arc::new(fresh(b, None, registry, &make));
            };
            if let (Some(old), Some(state)) = (pc.backends.get(i), ps.get(i))
                && Arc::ptr_eq(old, b)
            {
                return state.clone();
            }
            let index = by_port.get_or_insert_with(|| {
                pc.backends
                    .iter()
                    .enumerate()
                    .map(|(j, o)| ((&o.service, &o.port), j))
                    .collect()
            });
            match index
                .get(&(&b.service, &b.port))
                .and_then(|&j| Some((pc.backends.get(j)?, ps.get(j)?)))
            {
                Some((old, state)) if **old == **b => state.clone(),
                Some((_, state)) => Arc::new(fresh(b, Some(state.rotation.clone()), registry, &make)),
                None => Arc::new(fresh(b, None, registry, &make)),
            }
        })
        .collect()
}

fn fresh<E>(
    b: &Backend,
    rotation: Option<Arc<RoundRobin>>,
    registry: &Registry<E>,
    make: &impl Fn(SocketAddr) -> E,
) -> BackendState<E> {
    let endpoints: Box<[Arc<E>]> = b
        .ready()
        .iter()
        .chain(b.terminating())
        .map(|e| registry.endpoint(e.addr, make))
        .collect();
    BackendState {
        endpoints,
        ready: b.ready().len(),
        rotation: rotation.unwrap_or_default(),
        affinity: AffinityIndex::default(),
        client_ip: b.client_ip_affinity.map(|_| registry.client_ip_table(&b.service)),
        hash: HashIndex::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::EndpointState;
    use crate::config::{Endpoint, Target};

    fn backend(svc: &str, addrs: &[&str]) -> Arc<Backend> {
        let ready: Vec<Endpoint> = addrs
            .iter()
            .map(|a| Endpoint {
                addr: a.parse().unwrap(),
                target: None,
                zone: None,
            })
            .collect();
        let mut b = Backend::unavailable(ObjectKey::new("ns", svc), PortRef::Number(80), String::new());
        b.target = Target::Endpoints {
            ready: ready.into(),
            terminating: Arc::new([]),
        };
        Arc::new(b)
    }

    fn config(backends: Vec<Arc<Backend>>) -> Config {
        Config {
            backends,
            ..Default::default()
        }
    }

    #[test]
    fn unchanged_backends_keep_their_tables_and_endpoints_their_state() {
        let registry = Registry::default();
        let make = EndpointState::new;
        let one = config(vec![
            backend("a", &["10.0.0.1:80", "10.0.0.2:80"]),
            backend("b", &["10.0.1.1:80"]),
        ]);
        let t1 = reconcile(None, &one, &registry, make);
        t1[0].endpoints[1].failed(0);
        t1[0].rotation.next();
        // A recompile: `a` equal but a new value, `b` scaled up, `c` new, in another order.
        let two = config(vec![
            backend("c", &["10.0.2.1:80"]),
            backend("b", &["10.0.1.1:80", "10.0.0.2:80"]),
            backend("a", &["10.0.0.1:80", "10.0.0.2:80"]),
        ]);
        let t2 = reconcile(Some((&one, &t1)), &two, &registry, make);
        assert!(Arc::ptr_eq(&t2[2], &t1[0]), "an equal backend keeps its table");
        assert!(!Arc::ptr_eq(&t2[1], &t1[1]), "a changed backend gets a new table");
        assert!(Arc::ptr_eq(&t2[1].rotation, &t1[1].rotation), "but keeps its cursor");
        assert!(
            Arc::ptr_eq(&t2[1].endpoints[1], &t1[0].endpoints[1]),
            "an endpoint keeps its state across backends and Configs"
        );
        assert_eq!(t2[1].endpoints[1].failures(), 1);
        assert_eq!(t2[0].endpoints.len(), 1);
        // The same Arc at the same index is taken over without a look at its value.
        let three = config(two.backends.clone());
        let t3 = reconcile(Some((&two, &t2)), &three, &registry, make);
        assert!(t3.iter().zip(&t2).all(|(a, b)| Arc::ptr_eq(a, b)));
        drop((t1, t2));
        let live = registry.sweep();
        assert_eq!(live.len(), 4, "endpoints of the newest tables stay interned");
        drop(t3);
        drop(live);
        assert!(registry.sweep().is_empty(), "and die with them");
    }
}
