//! The manifests source: YAML/JSON files (multi-document, `kind: List`) → Snapshot objects.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::model::{AnyObject, Snapshot};

/// Why a manifest file could not be read. The file's objects are not used; the caller
/// keeps serving what it had.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// The Gateway API versions read (v1beta1 is the same schema where the CRDs still serve it).
const GATEWAY_V1: &str = "gateway.networking.k8s.io/v1";
const GATEWAY_V1BETA1: &str = "gateway.networking.k8s.io/v1beta1";

/// Kinds Portico reads; anything else in a manifest (Deployments, Namespaces, …) is skipped.
fn decode(doc: Value, out: &mut Vec<AnyObject>) -> Result<(), String> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let api = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_string();
    let wrap = |e: serde_json::Error| format!("{kind} {name}: {e}");
    let obj = match (api.as_str(), kind.as_str()) {
        (_, "List") => {
            let Some(Value::Array(items)) = doc.get("items").cloned() else {
                return Err("List without items".into());
            };
            for item in items {
                decode(item, out)?;
            }
            return Ok(());
        }
        ("networking.k8s.io/v1", "Ingress") => AnyObject::Ingress(Arc::new(serde_json::from_value(doc).map_err(wrap)?)),
        ("networking.k8s.io/v1", "IngressClass") => {
            AnyObject::IngressClass(Arc::new(serde_json::from_value(doc).map_err(wrap)?))
        }
        ("v1", "Service") => AnyObject::Service(Arc::new(serde_json::from_value(doc).map_err(wrap)?)),
        ("v1", "Secret") => AnyObject::Secret(Arc::new(serde_json::from_value(doc).map_err(wrap)?)),
        ("v1", "ConfigMap") => AnyObject::ConfigMap(Arc::new(serde_json::from_value(doc).map_err(wrap)?)),
        ("v1", "Endpoints") => AnyObject::Endpoints(Arc::new(serde_json::from_value(doc).map_err(wrap)?)),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            AnyObject::EndpointSlice(Arc::new(serde_json::from_value(doc).map_err(wrap)?))
        }
        ("v1", "Namespace") => AnyObject::Namespace(Arc::new(serde_json::from_value(doc).map_err(wrap)?)),
        (GATEWAY_V1 | GATEWAY_V1BETA1, "GatewayClass") => {
            AnyObject::GatewayClass(Arc::new(serde_json::from_value(doc).map_err(wrap)?))
        }
        (GATEWAY_V1 | GATEWAY_V1BETA1, "Gateway") => {
            AnyObject::Gateway(Arc::new(serde_json::from_value(doc).map_err(wrap)?))
        }
        (GATEWAY_V1 | GATEWAY_V1BETA1, "HTTPRoute") => {
            AnyObject::HTTPRoute(Arc::new(serde_json::from_value(doc).map_err(wrap)?))
        }
        (GATEWAY_V1, "GRPCRoute") => AnyObject::GRPCRoute(Arc::new(serde_json::from_value(doc).map_err(wrap)?)),
        (GATEWAY_V1, "TLSRoute") => AnyObject::TLSRoute(Arc::new(serde_json::from_value(doc).map_err(wrap)?)),
        (GATEWAY_V1, "ListenerSet") => AnyObject::ListenerSet(Arc::new(serde_json::from_value(doc).map_err(wrap)?)),
        (GATEWAY_V1, "BackendTLSPolicy") => {
            AnyObject::BackendTLSPolicy(Arc::new(serde_json::from_value(doc).map_err(wrap)?))
        }
        (GATEWAY_V1 | GATEWAY_V1BETA1, "ReferenceGrant") => {
            AnyObject::ReferenceGrant(Arc::new(serde_json::from_value(doc).map_err(wrap)?))
        }
        (_, "Ingress" | "IngressClass" | "EndpointSlice") => {
            return Err(format!(
                "{kind} {name}: apiVersion {api:?} is not supported (use the GA API version)"
            ));
        }
        _ => return Ok(()),
    };
    out.push(obj);
    Ok(())
}

/// Gives namespaced objects without a namespace the `default` namespace, as kubectl would.
fn default_namespace(mut doc: Value) -> Value {
    let cluster_scoped = matches!(
        doc.get("kind").and_then(Value::as_str),
        Some("IngressClass" | "GatewayClass" | "Namespace" | "List")
    );
    if !cluster_scoped
        && let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
        && !meta.contains_key("namespace")
    {
        meta.insert("namespace".into(), Value::String("default".into()));
    }
    if let Some(Value::Array(items)) = doc.get_mut("items") {
        for item in items.iter_mut() {
            *item = default_namespace(std::mem::take(item));
        }
    }
    doc
}

/// Parses one manifest text (YAML or JSON, one or many documents).
pub fn parse_manifests(text: &str) -> Result<Vec<AnyObject>, String> {
    // YAML 1.2 booleans only: `name: y` or `value: on` are strings, as the typed fields
    // they land in expect.
    let options = serde_saphyr::options! { strict_booleans: true };
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for doc in docs {
        if doc.is_null() {
            continue;
        }
        if !doc.is_object() {
            return Err("a document is not a mapping".into());
        }
        decode(default_namespace(doc), &mut out)?;
    }
    Ok(out)
}

/// The manifest files of a directory, sorted: `*.yaml`, `*.yml`, `*.json`, hidden files skipped.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !hidden && path.is_file() && matches!(ext, "yaml" | "yml" | "json") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and parses one file.
pub fn load_file(path: &Path) -> Result<Vec<AnyObject>, ManifestError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        file: file.clone(),
        source,
    })?;
    parse_manifests(&text).map_err(|message| ManifestError::Invalid { file, message })
}

/// Builds a Snapshot from every file of a directory. Files that fail are reported and left
/// out; the others are used.
pub fn load_dir(dir: &Path) -> std::io::Result<(Snapshot, Vec<ManifestError>)> {
    let mut snapshot = Snapshot::default();
    let mut errors = Vec::new();
    for path in manifest_files(dir)? {
        match load_file(&path) {
            Ok(objs) => objs.into_iter().for_each(|o| snapshot.insert(o)),
            Err(e) => errors.push(e),
        }
    }
    Ok((snapshot, errors))
}

/// Watches a directory by polling file fingerprints (modification time and size), and
/// keeps the last good objects of each file: a file that stops parsing is reported and its
/// previous objects stay in use.
pub struct DirWatch {
    dir: PathBuf,
    files: std::collections::BTreeMap<PathBuf, FileState>,
}

struct FileState {
    fingerprint: Option<(std::time::SystemTime, u64)>,
    objects: Vec<AnyObject>,
    error: Option<String>,
}

impl DirWatch {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            files: Default::default(),
        }
    }

    fn fingerprint(path: &Path) -> Option<(std::time::SystemTime, u64)> {
        let m = std::fs::metadata(path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// Rescans the directory. Returns `None` when nothing changed, else the Snapshot of all
    /// files and the errors of files that could not be read.
    pub fn poll(&mut self) -> Option<(Snapshot, Vec<crate::config::diagnostic::Diagnostic>)> {
        let listed = match manifest_files(&self.dir) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the manifests directory; keeping the current config");
                return None;
            }
        };
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|p, _| listed.contains(p));
        changed |= self.files.len() != before;
        for path in listed {
            let fp = Self::fingerprint(&path);
            let state = self.files.entry(path.clone()).or_insert(FileState {
                fingerprint: None,
                objects: Vec::new(),
                error: None,
            });
            if state.fingerprint.is_some() && state.fingerprint == fp {
                continue;
            }
            changed = true;
            state.fingerprint = fp;
            match load_file(&path) {
                Ok(objs) => {
                    state.objects = objs;
                    state.error = None;
                }
                Err(e) => {
                    tracing::error!(error = %e, "manifest rejected; its previous objects stay in use");
                    state.error = Some(e.to_string());
                }
            }
        }
        if !changed {
            return None;
        }
        Some(self.current())
    }

    /// The Snapshot of the files as last read, and the errors of files that could not be.
    pub fn current(&self) -> (Snapshot, Vec<crate::config::diagnostic::Diagnostic>) {
        let mut snapshot = Snapshot::default();
        let mut diags = Vec::new();
        for (path, state) in &self.files {
            state.objects.iter().cloned().for_each(|o| snapshot.insert(o));
            if let Some(e) = &state.error {
                diags.push(crate::config::diagnostic::Diagnostic {
                    object: crate::config::diagnostic::ObjectRef {
                        kind: "File",
                        namespace: String::new(),
                        name: path.display().to_string(),
                    },
                    severity: crate::config::diagnostic::Severity::Error,
                    reason: crate::config::diagnostic::Reason::InvalidManifest,
                    message: format!("{e}; the file's previous objects stay in use"),
                });
            }
        }
        (snapshot, diags)
    }
}

/// The manifests source: publishes the directory's objects, then follows changes every
/// `every` (and recompiles every [`super::FULL_COMPILE_EVERY`] anyway: certificates expire).
/// Reading files and compiling block, so both run off the runtime's workers.
pub async fn follow(dir: PathBuf, publisher: Arc<super::Publisher>, every: Duration) {
    let mut watch = DirWatch::new(dir);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Instant> = None;
    loop {
        tick.tick().await;
        let due = last.is_none_or(|t| t.elapsed() > super::FULL_COMPILE_EVERY);
        let p = publisher.clone();
        let step = tokio::task::spawn_blocking(move || {
            let update = watch.poll().or_else(|| due.then(|| watch.current()));
            // A panic in compile would be a bug, but one object must not stop the directory
            // from being followed for good: the last config keeps serving, and the next
            // change of the files (or the next full compile) tries again.
            let published = update.map(|(snapshot, diags)| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.publish(&snapshot, diags))).is_ok()
            });
            (watch, published)
        })
        .await;
        match step {
            Ok((w, published)) => {
                watch = w;
                if published == Some(false) {
                    publisher.metrics.apply_failed();
                    tracing::error!("compiling the manifests panicked; the last config keeps serving");
                }
                if published.is_some() {
                    last = Some(Instant::now());
                }
            }
            Err(e) => {
                publisher.metrics.apply_failed();
                tracing::error!(error = %e, "reading the manifests failed; the last config keeps serving");
                return;
            }
        }
    }
}
