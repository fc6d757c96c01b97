//! Portico: a Kubernetes ingress controller. Objects → Snapshot → compile() → ArcSwap<Config> → data plane.

pub mod admin;
pub mod balance;
pub mod compile;
pub mod config;
pub mod demo;
pub mod explain;
pub mod fixture;
pub mod metrics;
pub mod model;
pub mod path;
pub mod proxy;
pub mod source;

pub use compile::{Options, compile};
pub use config::Config;
pub use model::{AnyObject, ObjectKey, Snapshot};
