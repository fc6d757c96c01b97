//! The live Config: published whole through ArcSwap, read with one load per request or handshake.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use arc_swap::Guard;

use crate::compile::Config;

/// Holds the Config the data plane serves. Publishing swaps the whole Config at once, so a
/// reader sees routes, certificates and backends of one generation; readers never block.
pub struct Live {
    current: ArcSwap<Config>,
    generation: AtomicU64,
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

impl Live {
    /// Starts with an empty Config (generation 0: nothing compiled yet).
    pub fn new() -> Self {
        Self {
            current: ArcSwap::from_pointee(Config::default()),
            generation: AtomicU64::new(0),
        }
    }

    /// Publishes a new Config and returns its generation (1 for the first).
    pub fn publish(&self, mut config: Config) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        config.generation = generation;
        self.current.store(Arc::new(config));
        generation
    }

    /// The current Config. Keep the guard short (drop it before awaiting); clone out the
    /// `Arc`s you need instead.
    pub fn load(&self) -> Guard<Arc<Config>> {
        self.current.load()
    }

    /// The current Config as an owned `Arc`, for work that outlives a short borrow.
    pub fn load_full(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Whether a Config has been published yet.
    pub fn is_ready(&self) -> bool {
        self.generation.load(Ordering::Acquire) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Snapshot;
    use crate::compile::{Options, compile};
    use crate::source::files::parse_manifests;

    /// Generation N routes `/` of host `h.test` to Service `gN`, and its only TLS host is
    /// `gN.test`: a reader that ever sees routes of one generation with the certificates or
    /// generation number of another has seen a torn table.
    fn config_for(n: u64) -> Config {
        let y = format!(
            "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: portico}}
spec: {{controller: portico.dev/ingress-controller}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: i, namespace: default}}
spec:
  ingressClassName: portico
  tls: [{{hosts: [g{n}.test]}}]
  rules:
  - host: h.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: g{n}, port: {{number: 80}}}}}}}}
"
        );
        let mut s = Snapshot::default();
        parse_manifests(&y).unwrap().into_iter().for_each(|o| s.insert(o));
        compile(&s, &Options::default())
    }

    #[test]
    fn readers_see_whole_generations_while_publishing() {
        let live = Arc::new(Live::new());
        assert!(!live.is_ready());
        let configs: Vec<Config> = (1..=200).map(config_for).collect();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let live = live.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    let mut last = 0u64;
                    // At least one non-empty read, however the threads are scheduled.
                    while !stop.load(Ordering::Relaxed) || seen == 0 {
                        let cfg = live.load();
                        if cfg.generation == 0 {
                            continue;
                        }
                        let route = cfg.routes.route("h.test", "/").expect("route");
                        let svc = &cfg.backend(route).expect("backend").service.name;
                        assert_eq!(*svc, format!("g{}", cfg.generation));
                        assert_eq!(
                            cfg.certs.sources.keys().next().map(String::as_str),
                            Some(format!("g{}.test", cfg.generation).as_str())
                        );
                        assert!(cfg.generation >= last, "generations only move forward");
                        last = cfg.generation;
                        seen += 1;
                    }
                    seen
                })
            })
            .collect();
        for cfg in configs {
            live.publish(cfg);
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().expect("reader ok") > 0);
        }
        assert_eq!(live.load().generation, 200);
        assert!(live.is_ready());
    }
}
