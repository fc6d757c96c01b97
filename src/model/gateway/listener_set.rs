//! ListenerSet (`gateway.networking.k8s.io/v1`, standard channel since v1.5): listeners added
//! to a Gateway that allows it (`spec.allowedListeners`), with the fields compile() reads.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

use super::{GROUP, Listener};

resource!(ListenerSet, "ListenerSet", "listenersets", NamespaceResourceScope);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ListenerSet {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ListenerSetSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetSpec {
    #[serde(default)]
    pub parent_ref: ParentGatewayRef,
    /// A `ListenerEntry` has the fields of a Gateway listener compile reads.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// `ParentGatewayReference`: a Gateway (group and kind default to it), in the ListenerSet's
/// namespace unless `namespace` says otherwise.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentGatewayRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    pub namespace: Option<String>,
}

impl ParentGatewayRef {
    /// Whether it names a Gateway of the Gateway API group (the defaults).
    pub fn is_gateway(&self) -> bool {
        self.group.as_deref().is_none_or(|g| g == GROUP) && self.kind.as_deref().is_none_or(|k| k == "Gateway")
    }
}

/// A Gateway's `spec.allowedListeners`: which ListenerSets may attach (by default none).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedListeners {
    pub namespaces: Option<ListenerNamespaces>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerNamespaces {
    /// `None` (the default), `Same`, `All` or `Selector`.
    pub from: Option<String>,
    pub selector: Option<LabelSelector>,
}
