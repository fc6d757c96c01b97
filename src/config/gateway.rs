//! Gateway API: what compile wants written into the objects' `/status` (the leader writes it).

/// The status one Gateway API object should have: compile produces the list, the leader's
/// writer (source/gateway_status.rs) patches each object's `/status` when it differs.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusUpdate {
    /// API group, `gateway.networking.k8s.io`.
    pub group: String,
    /// API version, `v1`.
    pub version: String,
    /// `Gateway`, `HTTPRoute`, ...
    pub kind: String,
    /// The resource's plural name in URLs: `gateways`, `httproutes`, ...
    pub plural: String,
    /// Empty for cluster-scoped kinds (GatewayClass).
    pub namespace: String,
    pub name: String,
    /// The whole `status` object. Conditions may leave `lastTransitionTime` out: the writer
    /// keeps the object's own when a condition's status did not change, else sets the time
    /// of the write. Route `parents` (policy `ancestors`) list this controller's entries only;
    /// other controllers' entries are kept. A Gateway's `addresses`, when left out, are
    /// Portico's own (its Ingress status address), filled in by the writer.
    pub status: serde_json::Value,
}
