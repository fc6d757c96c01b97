//! Portico: a Kubernetes ingress controller. Objects → Snapshot → compile() → ArcSwap<Config> → data plane.

pub mod compile;
pub mod live;
pub mod model;
pub mod path;
pub mod routes;
pub mod source;

pub use compile::{Config, Options, compile};
pub use model::{AnyObject, ObjectKey, Snapshot};
