//! Sources: where objects come from (a manifests directory, or the Kubernetes API).

pub mod files;
