//! The live data plane state: the published Config and the runtime tables reconciled with
//! it, swapped together through ArcSwap and read with one load per request or handshake.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use arc_swap::Guard;
use prometheus_client::metrics::counter::Counter;

use super::policy::limits::{self, Limiter};
use super::upstream::EndpointRuntime;
use super::upstream::tls::Clients;
use crate::balance::table::{BackendState, Registry, reconcile};
use crate::config::Config;

/// A route's request counters, one per status class, looked up on first use.
pub type RouteCounters = std::sync::OnceLock<[Counter; 5]>;

/// One Config and the runtime state the data plane keeps for it.
pub struct Plane {
    pub config: Arc<Config>,
    /// Aligned with `config.backends`.
    pub backends: Box<[Arc<BackendState<EndpointRuntime>>]>,
    /// Aligned with `config.route_list`.
    pub routes: Arc<[RouteCounters]>,
    /// The TLS clients of routes with `proxy-ssl-*` settings.
    pub upstream_tls: Arc<Clients>,
    /// The `limit-*` state of routes with limits, aligned with `config.route_list`.
    pub limits: Arc<[Option<Arc<Limiter>>]>,
}

impl Plane {
    fn new(config: Arc<Config>, prev: Option<&Plane>, registry: &Registry<EndpointRuntime>) -> Plane {
        let backends = reconcile(
            prev.map(|p| (&*p.config, &*p.backends)),
            &config,
            registry,
            EndpointRuntime::new,
        )
        .into();
        let (routes, upstream_tls) = match prev {
            Some(p) if Arc::ptr_eq(&p.config.route_list, &config.route_list) => {
                (p.routes.clone(), p.upstream_tls.clone())
            }
            _ => (
                (0..config.route_list.len()).map(|_| RouteCounters::new()).collect(),
                Arc::new(Clients::reconcile(
                    prev.map(|p| (&*p.config, &*p.upstream_tls)),
                    &config,
                )),
            ),
        };
        let limits = match prev {
            Some(p)
                if Arc::ptr_eq(&p.config.route_list, &config.route_list) && p.config.replicas == config.replicas =>
            {
                p.limits.clone()
            }
            _ => limits::reconcile(prev.map(|p| (&*p.config, &*p.limits)), &config),
        };
        Plane {
            config,
            backends,
            routes,
            upstream_tls,
            limits,
        }
    }
}

/// Holds the Plane the data plane serves. Publishing swaps the whole Plane at once, so a
/// reader sees routes, certificates, backends and their runtime state of one generation;
/// readers never block.
pub struct Live {
    current: ArcSwap<Plane>,
    generation: AtomicU64,
    /// Endpoint runtime state by address, shared by successive Planes.
    registry: Arc<Registry<EndpointRuntime>>,
    /// Publishers take turns, so each reconciles with the Plane the last one stored.
    publishing: Mutex<()>,
    /// The generation of each Config published, for the data plane's reconcilers that own
    /// sockets (Gateway listener ports).
    published: tokio::sync::watch::Sender<u64>,
    /// Gateway listener ports that could not be bound, with why (the next compile reports
    /// their listeners as not Programmed).
    unbound: Mutex<std::collections::BTreeMap<u16, String>>,
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

impl Live {
    /// Starts with an empty Config (generation 0: nothing compiled yet).
    pub fn new() -> Self {
        let registry = Arc::new(Registry::default());
        Self {
            current: ArcSwap::from_pointee(Plane::new(Arc::default(), None, &registry)),
            generation: AtomicU64::new(0),
            registry,
            publishing: Mutex::new(()),
            published: tokio::sync::watch::Sender::new(0),
            unbound: Mutex::default(),
        }
    }

    /// Publishes a new Config with its runtime tables and returns its generation (1 for the
    /// first).
    pub fn publish(&self, mut config: Config) -> u64 {
        let _turn = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.load(Ordering::Acquire) + 1;
        config.generation = generation;
        let prev = self.current.load();
        let plane = Plane::new(Arc::new(config), Some(&prev), &self.registry);
        drop(prev);
        self.current.store(Arc::new(plane));
        self.generation.store(generation, Ordering::Release);
        self.published.send_replace(generation);
        generation
    }

    /// The Gateway listener ports that could not be bound, with why.
    pub fn unbound_ports(&self) -> std::collections::BTreeMap<u16, String> {
        self.unbound.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records that `port` could not be bound (`Some(why)`), or no longer fails (`None`).
    pub fn set_unbound(&self, port: u16, why: Option<String>) {
        let mut unbound = self.unbound.lock().unwrap_or_else(|p| p.into_inner());
        match why {
            Some(why) => drop(unbound.insert(port, why)),
            None => drop(unbound.remove(&port)),
        }
    }

    /// Told the generation of every Config published from now on.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// The current Plane. Keep the guard short (drop it before awaiting); clone out the
    /// `Arc`s you need instead.
    pub fn load(&self) -> Guard<Arc<Plane>> {
        self.current.load()
    }

    /// The current Config, for work that outlives a short borrow.
    pub fn config(&self) -> Arc<Config> {
        self.current.load().config.clone()
    }

    /// Whether a Config has been published yet.
    pub fn is_ready(&self) -> bool {
        self.generation.load(Ordering::Acquire) > 0
    }

    /// Endpoint runtime state by address (ExternalName endpoints join at request time; the
    /// idle-connection reaper walks it).
    pub fn registry(&self) -> &Arc<Registry<EndpointRuntime>> {
        &self.registry
    }
}
