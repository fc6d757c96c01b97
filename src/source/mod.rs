//! Sources: where objects come from (a manifests directory, or the Kubernetes API), and the
//! publisher that turns each new Snapshot into the live Config.

pub mod files;
pub mod gateway_endpoints;
pub mod gateway_services;
pub mod gateway_status;
pub mod kube;

/// Even without changes, sources compile fully this often: certificates expire with time.
pub const FULL_COMPILE_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::compile::{Options, compile, recompile_endpoints};
use crate::config::{Config, Diagnostic, Severity};
use crate::metrics::Metrics;
use crate::model::Snapshot;
use crate::proxy::live::Live;

/// Compiles Snapshots and publishes the results. Logs each diagnostic once, when it first
/// appears, rather than on every compile.
pub struct Publisher {
    pub live: Arc<Live>,
    pub options: Options,
    pub metrics: Arc<Metrics>,
    reported: Mutex<HashSet<Diagnostic>>,
}

impl Publisher {
    pub fn new(live: Arc<Live>, options: Options, metrics: Arc<Metrics>) -> Self {
        Self {
            live,
            options,
            metrics,
            reported: Mutex::new(HashSet::new()),
        }
    }

    /// Compiles and publishes; `extra` are diagnostics found before compile (unreadable files).
    pub fn publish(&self, snapshot: &Snapshot, extra: Vec<Diagnostic>) -> Arc<Config> {
        let mut opts = self.options.clone();
        opts.now = SystemTime::now();
        opts.unbound_ports = self.live.unbound_ports();
        let t = Instant::now();
        let mut cfg = compile(snapshot, &opts);
        let took = t.elapsed();
        let prev = self.live.config();
        if prev.generation > 0 && prev.global.worker_processes != cfg.global.worker_processes {
            tracing::warn!(
                "ConfigMap key worker-processes changed: it takes effect when Portico restarts (or set --worker-threads)"
            );
        }
        // What this compile did not use leaves the certificate memo.
        if let Some(cache) = &opts.cert_cache {
            cache.rotate();
        }
        Arc::make_mut(&mut cfg.diagnostics).extend(extra);
        self.metrics.compile_duration.observe(took.as_secs_f64());
        self.metrics.diagnostics.set(cfg.diagnostics.len() as i64);
        {
            let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
            let now: HashSet<Diagnostic> = cfg.diagnostics.iter().cloned().collect();
            for d in cfg.diagnostics.iter().filter(|d| !reported.contains(*d)) {
                match d.severity {
                    Severity::Error => tracing::error!(object = %d.object, reason = d.reason.as_str(), "{}", d.message),
                    Severity::Warning => {
                        tracing::warn!(object = %d.object, reason = d.reason.as_str(), "{}", d.message)
                    }
                }
            }
            *reported = now;
        }
        self.finish(cfg, snapshot.len(), took, "full")
    }

    /// After a change to EndpointSlices or Endpoints only: backends are resolved again under
    /// the live route table (see [`recompile_endpoints`]), which is much cheaper at scale.
    /// `changed`: the Services whose slices changed, when known (else all are re-resolved);
    /// then `snapshot` needs to hold only those Services and their slices and Endpoints.
    pub fn publish_endpoints(
        &self,
        snapshot: &Snapshot,
        changed: Option<&std::collections::HashSet<crate::model::ObjectKey>>,
    ) -> Arc<Config> {
        let prev = self.live.config();
        if prev.generation == 0 {
            return self.publish(snapshot, Vec::new());
        }
        let t = Instant::now();
        let cfg = recompile_endpoints(snapshot, &prev, changed);
        drop(prev);
        let took = t.elapsed();
        self.metrics.compile_duration.observe(took.as_secs_f64());
        self.finish(cfg, snapshot.len(), took, "endpoints")
    }

    /// `objects`: how many objects the compile read.
    fn finish(&self, cfg: Config, objects: usize, took: std::time::Duration, kind: &'static str) -> Arc<Config> {
        let routes = cfg.route_list.len();
        let prev = self.live.config();
        let generation = self.live.publish(cfg);
        self.metrics.config_generation.set(generation);
        let live = self.live.config();
        let certs_changed = generation == 1 || !Arc::ptr_eq(&prev.certs, &live.certs);
        self.metrics.published(&prev, &live, SystemTime::now(), certs_changed);
        drop(prev);
        tracing::info!(
            generation,
            routes,
            objects,
            compile = kind,
            compile_ms = took.as_secs_f64() * 1000.0,
            "config published"
        );
        self.live.config()
    }
}

/// Gives what a full compile freed back to the OS at once. The compile runs on a blocking
/// thread that then sits idle: mimalloc purges freed pages only when the thread that owns
/// them next calls it (or exits, ten seconds later), so at 10k Ingresses the first compile's
/// transient memory (about 5 MB: resident 78.9 and 80.0 MB when ready, 73.7 MB once settled)
/// stayed resident until then.
pub fn return_freed_memory() {
    // Linked in with the allocator crate (its C library).
    extern crate mimalloc as _;
    unsafe extern "C" {
        fn mi_collect(force: bool);
    }
    // SAFETY: mi_collect takes no pointers; it frees this thread's empty pages and purges
    // them, and is safe to call from any thread at any time.
    unsafe { mi_collect(true) }
}
