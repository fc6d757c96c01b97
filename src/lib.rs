//! Portico: a Kubernetes ingress controller. Objects → Snapshot → compile() → ArcSwap<Config> → data plane.

pub mod admin;
pub mod balance;
pub mod compile;
pub mod demo;
pub mod live;
pub mod metrics;
pub mod model;
pub mod path;
pub mod proxy;
pub mod routes;
pub mod source;

pub use compile::{Config, Options, compile};
pub use model::{AnyObject, ObjectKey, Snapshot};
