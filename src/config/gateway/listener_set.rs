//! What compile decided about ListenerSets: their conditions and listeners, and their status.

use serde::Serialize;
use serde_json::{Value, json};

use super::{Condition, ListenerReport, StatusUpdate, conditions, listener_status, update};
use crate::model::ObjectKey;

/// A ListenerSet whose parentRef is a Gateway of ours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListenerSetReport {
    pub key: ObjectKey,
    pub generation: i64,
    /// Accepted and Programmed.
    pub conditions: Vec<Condition>,
    /// Its listeners (none when the Gateway does not allow it).
    pub listeners: Vec<ListenerReport>,
    pub uid: String,
}

impl ListenerSetReport {
    /// Whether it is attached to its Gateway (`Accepted: True`): counted in the Gateway's
    /// `attachedListenerSets`.
    pub fn accepted(&self) -> bool {
        self.conditions.iter().any(|c| c.type_ == "Accepted" && c.status)
    }
}

pub(super) fn status_update(r: &ListenerSetReport, now: &str) -> StatusUpdate {
    let listeners: Vec<Value> = r
        .listeners
        .iter()
        .map(|l| listener_status(l, r.generation, now))
        .collect();
    let status = json!({
        "conditions": conditions(&r.conditions, r.generation, now),
        "listeners": listeners,
    });
    update("ListenerSet", "listenersets", &r.key, &r.uid, status)
}
