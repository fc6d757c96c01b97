//! Gateway API status, written by the leader: each object's `/status` is read, merged with
//! what compile wants (other controllers' route parents kept, unchanged conditions keeping
//! their `lastTransitionTime`) and patched only when the result differs from what is there.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, Error};
use serde_json::{Map, Value, json};

use super::kube::{KubeOptions, desired_status};
use crate::config::gateway::StatusUpdate;

/// Attempts per object and round when the object changed between our read and our write
/// (409 Conflict); the next round (the next Config, or `retry_after`) tries again.
const ATTEMPTS: usize = 3;

/// After a round with failures, the next one comes this long after it, doubling with each
/// further failed round up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// `status.addresses` of a Gateway holds at most this many (the CRD's `maxItems`).
const MAX_ADDRESSES: usize = 16;

/// Lists in a status whose entries belong to one controller each (`controllerName`): a route's
/// `parents`, a policy's `ancestors`. Only our own entries are replaced.
const SHARED_LISTS: [&str; 2] = ["parents", "ancestors"];

/// What one round did, per object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Objects whose status was patched.
    pub written: usize,
    /// Objects read whose status already was the one wanted: no write.
    pub unchanged: usize,
    /// Objects whose wanted status is the one the last round found or wrote: no request.
    pub remembered: usize,
    /// Objects (or their CRD) that do not exist.
    pub missing: usize,
    /// Objects that could not be read or written (the next round tries again).
    pub failed: usize,
    /// Objects listed before and no longer (a route no longer attached to our Gateways) whose
    /// shared lists had our entries: those entries were taken out.
    pub withdrawn: usize,
}

/// An object's identity across rounds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Target {
    group: String,
    kind: String,
    namespace: String,
    name: String,
}

/// The leader's status writer. Holds, per object, the wanted status (without transition
/// times) that the last round left in place, so that an unchanged one costs no request;
/// a new leader starts with a new writer (and reads every object once).
pub struct StatusWriter {
    client: Client,
    /// Our GatewayClass `controllerName`: the owner of our entries in shared lists.
    controller: String,
    in_place: HashMap<Target, InPlace>,
    /// Rounds in a row that left a write to do again.
    failed_rounds: u32,
}

/// What the writer knows of an object it wrote.
struct InPlace {
    /// The wanted status, without transition times, that is in place (`None`: a write or a
    /// withdrawal that failed, to do again).
    fingerprint: Option<Value>,
    /// The `metadata.uid` it was written to: a route deleted and created again under the
    /// same name (between two rounds, or within one compile) has none of that status yet.
    uid: String,
    /// For an object with shared lists: the update that takes our entries out again.
    withdraw: Option<StatusUpdate>,
}

/// The update that empties our part of `wanted`'s shared lists, if it has any.
fn withdrawal(u: &StatusUpdate, wanted: &Value) -> Option<StatusUpdate> {
    let lists: Map<String, Value> = SHARED_LISTS
        .iter()
        .filter(|l| wanted.get(**l).is_some_and(Value::is_array))
        .map(|l| (l.to_string(), Value::Array(Vec::new())))
        .collect();
    (!lists.is_empty()).then(|| StatusUpdate {
        status: Value::Object(lists),
        ..u.clone()
    })
}

/// Counts a failure towards the one warning per kind of the round.
fn note_failure(failures: &mut BTreeMap<String, (usize, String)>, u: &StatusUpdate, e: &Error) {
    let f = failures.entry(u.kind.clone()).or_insert((0, String::new()));
    if f.0 == 0 {
        f.1 = format!("{}/{}: {e}", u.namespace, u.name);
    }
    f.0 += 1;
}

impl StatusWriter {
    pub fn new(client: Client, controller: impl Into<String>) -> Self {
        Self {
            client,
            controller: controller.into(),
            in_place: HashMap::new(),
            failed_rounds: 0,
        }
    }

    /// When the last round left writes to do again: how long to wait before the next round
    /// (with the same updates) if no new Config comes first.
    pub fn retry_after(&self) -> Option<Duration> {
        backoff(self.failed_rounds)
    }

    /// Brings each object's status to its update's. `addresses` are the Gateway
    /// `status.addresses` entries (see `gateway_addresses`): `None` when Portico's own
    /// address is unknown right now, and then a Gateway keeps the addresses it has.
    pub async fn write(&mut self, updates: &[StatusUpdate], addresses: Option<&[Value]>) -> Outcome {
        let mut outcome = Outcome::default();
        // One warning per kind and round, not one per object: a missing RBAC rule or an
        // unreachable API server would otherwise log as many lines as there are routes.
        let mut failures: BTreeMap<String, (usize, String)> = BTreeMap::new();
        let mut seen = HashMap::with_capacity(updates.len());
        for u in updates {
            let target = Target {
                group: u.group.clone(),
                kind: u.kind.clone(),
                namespace: u.namespace.clone(),
                name: u.name.clone(),
            };
            let mut wanted = without_nulls(&u.status);
            if u.kind == "Gateway"
                && let (Some(a), Some(s)) = (addresses, wanted.as_object_mut())
                && !s.contains_key("addresses")
            {
                s.insert("addresses".into(), Value::Array(a.to_vec()));
            }
            let fingerprint = without_transition_times(&wanted);
            let entry = |fingerprint| InPlace {
                fingerprint,
                uid: u.uid.clone(),
                withdraw: withdrawal(u, &wanted),
            };
            if self
                .in_place
                .get(&target)
                .is_some_and(|p| p.fingerprint.as_ref() == Some(&fingerprint) && p.uid == u.uid)
            {
                outcome.remembered += 1;
                seen.insert(target, entry(Some(fingerprint)));
                continue;
            }
            match self.write_one(u, &wanted).await {
                Ok(written) => {
                    if written {
                        outcome.written += 1;
                    } else {
                        outcome.unchanged += 1;
                    }
                    seen.insert(target, entry(Some(fingerprint)));
                }
                Err(e) if is_not_found(&e) => {
                    tracing::debug!(kind = %u.kind, namespace = %u.namespace, name = %u.name, "no such object (or no CRD); status not written");
                    outcome.missing += 1;
                    // Nothing to withdraw from an object that is not there.
                    self.in_place.remove(&target);
                }
                Err(e) => {
                    outcome.failed += 1;
                    note_failure(&mut failures, u, &e);
                    // Still listed (not withdrawn below) and to do again; withdrawn later
                    // only if an earlier round wrote it.
                    let withdraw = self.in_place.get(&target).and_then(|p| p.withdraw.clone());
                    seen.insert(
                        target,
                        InPlace {
                            fingerprint: None,
                            uid: u.uid.clone(),
                            withdraw,
                        },
                    );
                }
            }
        }
        // Objects no longer listed are forgotten (if they come back, they are read again),
        // after our entries in their shared lists are taken out. Only what this leader wrote
        // is withdrawn so: a route that lost our Gateway while no leader ran keeps its stale
        // entry until it is listed again (compile may list it with empty `parents`).
        let gone: Vec<(Target, InPlace)> = self.in_place.drain().filter(|(t, _)| !seen.contains_key(t)).collect();
        for (target, entry) in gone {
            let Some(u) = entry.withdraw else { continue };
            match self.write_one(&u, &u.status).await {
                Ok(written) => outcome.withdrawn += usize::from(written),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    outcome.failed += 1;
                    note_failure(&mut failures, &u, &e);
                    let retry = InPlace {
                        fingerprint: None,
                        uid: u.uid.clone(),
                        withdraw: Some(u),
                    };
                    seen.insert(target, retry);
                }
            }
        }
        self.in_place = seen;
        self.failed_rounds = if self.in_place.values().any(|p| p.fingerprint.is_none()) {
            self.failed_rounds.saturating_add(1)
        } else {
            0
        };
        for (kind, (n, first)) in failures {
            tracing::warn!(kind = %kind, objects = n, first = %first, "cannot write Gateway API status; retried with the next config or after a backoff");
        }
        outcome
    }

    /// Read, merge, and patch when different; true when a patch was written. A patch carries
    /// the resourceVersion it was computed from, so a concurrent change makes it fail (409)
    /// and the object is read again, up to `ATTEMPTS` times.
    async fn write_one(&self, u: &StatusUpdate, wanted: &Value) -> Result<bool, Error> {
        let gvk = GroupVersionKind::gvk(&u.group, &u.version, &u.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, &u.plural);
        let api: Api<DynamicObject> = if u.namespace.is_empty() {
            Api::all_with(self.client.clone(), &resource)
        } else {
            Api::namespaced_with(self.client.clone(), &u.namespace, &resource)
        };
        let params = PatchParams {
            field_manager: Some("portico".into()),
            ..Default::default()
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let obj = api.get_status(&u.name).await?;
            let current = obj.data.get("status").cloned().unwrap_or(Value::Null);
            let next = merged(&current, wanted, &self.controller, &now());
            if next == current {
                return Ok(false);
            }
            let patch = json!({
                "metadata": {"resourceVersion": obj.metadata.resource_version},
                "status": merge_patch(&current, &next),
            });
            match api.patch_status(&u.name, &params, &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(true),
                Err(Error::Api(s)) if s.code == 409 && attempt < ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// One leader round: Portico's own address, as Ingress status has it (`--publish-status-address`
/// or the `--publish-service` Service; read only when a Gateway is listed), then the writes.
/// Nothing listed and nothing written before, nothing done.
pub async fn write_round(
    writer: &mut StatusWriter,
    client: &Client,
    opts: &KubeOptions,
    updates: &[StatusUpdate],
) -> Outcome {
    if updates.is_empty() && writer.in_place.is_empty() {
        return Outcome::default();
    }
    let addresses = if updates.iter().any(|u| u.kind == "Gateway") {
        desired_status(client, opts).await.map(|e| gateway_addresses(&e))
    } else {
        None
    };
    let outcome = writer.write(updates, addresses.as_deref()).await;
    tracing::debug!(?outcome, "Gateway API status");
    outcome
}

/// The wait after `failed_rounds` failed rounds in a row (none after none).
pub(super) fn backoff(failed_rounds: u32) -> Option<Duration> {
    let n = failed_rounds.checked_sub(1)?;
    Some(RETRY_FIRST.saturating_mul(1 << n.min(16)).min(RETRY_MAX))
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Api(s) if s.code == 404)
}

/// The Gateway API status a Config asks for, stamped with the time of this round (the writer
/// keeps an unchanged condition's own time).
pub fn updates(cfg: &crate::config::Config) -> Vec<StatusUpdate> {
    crate::config::gateway::status_updates(&cfg.gateway, &now())
}

/// The time of a write as Kubernetes writes it (RFC 3339, whole seconds, UTC).
fn now() -> String {
    let t = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// Gateway `status.addresses` entries from the Ingress status entries Portico publishes
/// (`{"ip": ...}` or `{"hostname": ...}`, see kube.rs `desired_status`), at most as many as
/// the CRD allows.
pub fn gateway_addresses(entries: &[Value]) -> Vec<Value> {
    entries
        .iter()
        .filter_map(|e| {
            if let Some(ip) = e.get("ip").and_then(Value::as_str) {
                Some(json!({"type": "IPAddress", "value": ip}))
            } else {
                e.get("hostname")
                    .and_then(Value::as_str)
                    .map(|h| json!({"type": "Hostname", "value": h}))
            }
        })
        .take(MAX_ADDRESSES)
        .collect()
}

/// The status to write: `wanted`, with other controllers' entries of the shared lists kept
/// where they are, our entries in the places ours had, and the transition times carried over.
/// A Gateway whose `wanted` has no `addresses` keeps the ones it has.
fn merged(current: &Value, wanted: &Value, controller: &str, now: &str) -> Value {
    let mut next = wanted.clone();
    if let Some(next_map) = next.as_object_mut() {
        for list in SHARED_LISTS {
            let ours: Vec<Value> = match next_map.get(list) {
                Some(Value::Array(a)) => a.clone(),
                _ => continue,
            };
            let existing = current.get(list).and_then(Value::as_array).cloned().unwrap_or_default();
            next_map.insert(list.into(), Value::Array(shared_list(&existing, ours, controller)));
        }
        if !next_map.contains_key("addresses")
            && let Some(a) = current.get("addresses")
        {
            next_map.insert("addresses".into(), a.clone());
        }
    }
    carry_transition_times(&mut next, current, now);
    next
}

/// A shared list: the existing entries in their order, ours replaced by the wanted entry for
/// the same reference (or dropped when none is wanted), then the wanted entries that are new.
fn shared_list(existing: &[Value], mut ours: Vec<Value>, controller: &str) -> Vec<Value> {
    let mut out = Vec::with_capacity(existing.len() + ours.len());
    for e in existing {
        if e.get("controllerName").and_then(Value::as_str) != Some(controller) {
            out.push(e.clone());
        } else if let Some(i) = ours.iter().position(|w| same_entry(w, e)) {
            out.push(ours.remove(i));
        }
    }
    out.extend(ours);
    out
}

/// Whether two list entries describe the same thing: the same listener `name`, or the same
/// `parentRef`/`ancestorRef` under the same `controllerName`.
fn same_entry(a: &Value, b: &Value) -> bool {
    has_identity(a) && IDENTITY.iter().all(|k| a.get(k) == b.get(k))
}

/// The members that name a list entry.
const IDENTITY: [&str; 4] = ["name", "parentRef", "ancestorRef", "controllerName"];

fn has_identity(v: &Value) -> bool {
    IDENTITY.iter().any(|k| v.get(k).is_some())
}

/// Sets each condition's `lastTransitionTime`: the existing one when the condition is there
/// with the same `status`, else the one given, else `now`. Conditions are matched by `type`
/// within the matching entry (listener, parent) of the existing status.
fn carry_transition_times(next: &mut Value, current: &Value, now: &str) {
    match next {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let old = current.get(k.as_str()).unwrap_or(&Value::Null);
                if k == "conditions"
                    && let Value::Array(conds) = v
                {
                    for c in conds.iter_mut() {
                        carry_condition(c, old, now);
                    }
                } else {
                    carry_transition_times(v, old, now);
                }
            }
        }
        Value::Array(items) => {
            let olds = current.as_array().map(Vec::as_slice).unwrap_or_default();
            for (i, item) in items.iter_mut().enumerate() {
                // Entries with an identity (listeners, parents) by it, others by position.
                let old = if has_identity(item) {
                    olds.iter().find(|o| same_entry(item, o))
                } else {
                    olds.get(i).filter(|o| !has_identity(o))
                };
                let old = old.unwrap_or(&Value::Null);
                carry_transition_times(item, old, now);
            }
        }
        _ => {}
    }
}

fn carry_condition(c: &mut Value, olds: &Value, now: &str) {
    let Some(c) = c.as_object_mut() else { return };
    let old = olds.as_array().and_then(|o| {
        o.iter()
            .find(|o| o.get("type").is_some() && o.get("type") == c.get("type"))
    });
    let kept = old
        .filter(|o| o.get("status") == c.get("status"))
        .and_then(|o| o.get("lastTransitionTime"));
    if let Some(t) = kept {
        c.insert("lastTransitionTime".into(), t.clone());
    } else if !c.contains_key("lastTransitionTime") {
        c.insert("lastTransitionTime".into(), Value::String(now.into()));
    }
}

/// The JSON merge patch (RFC 7386) that turns `from` into `to`: changed keys only, removed
/// keys as null, lists whole. `to` holds no nulls (see `without_nulls`).
fn merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(f), Value::Object(t)) => {
            let mut p = Map::new();
            for (k, tv) in t {
                match f.get(k) {
                    Some(fv) if fv == tv => {}
                    Some(fv) => {
                        p.insert(k.clone(), merge_patch(fv, tv));
                    }
                    None => {
                        p.insert(k.clone(), tv.clone());
                    }
                }
            }
            for k in f.keys() {
                if !t.contains_key(k) {
                    p.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(p)
        }
        _ => to.clone(),
    }
}

/// `v` without null members (a merge patch cannot say "null" except as "remove").
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        _ => v.clone(),
    }
}

/// `v` without any `lastTransitionTime`: what decides whether a status changed.
fn without_transition_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "lastTransitionTime")
                .map(|(k, v)| (k.clone(), without_transition_times(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_transition_times).collect()),
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: &str = "portico.dev/gateway-controller";
    const NOW: &str = "2026-12-07T11:00:00Z";

    fn cond(ty: &str, status: &str, reason: &str, t: Option<&str>) -> Value {
        let mut c = json!({"type": ty, "status": status, "reason": reason, "message": "", "observedGeneration": 1});
        if let Some(t) = t {
            c["lastTransitionTime"] = json!(t);
        }
        c
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time_a_changed_one_gets_now() {
        let current = json!({"conditions": [
            cond("Accepted", "True", "Accepted", Some("2020-01-01T00:00:00Z")),
            cond("Programmed", "Unknown", "Pending", Some("1970-01-01T00:00:00Z")),
        ]});
        let wanted = json!({"conditions": [
            cond("Accepted", "True", "Accepted", None),
            cond("Programmed", "True", "Programmed", None),
            cond("ResolvedRefs", "True", "ResolvedRefs", None),
        ]});
        let next = merged(&current, &wanted, US, NOW);
        let times: Vec<&str> = next["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["lastTransitionTime"].as_str().unwrap())
            .collect();
        assert_eq!(times, ["2020-01-01T00:00:00Z", NOW, NOW]);
        // The same wanted status again: nothing to write.
        assert_eq!(merged(&next, &wanted, US, "2030-01-01T00:00:00Z"), next);
    }

    #[test]
    fn a_changed_reason_with_the_same_status_is_written_with_the_old_time() {
        let current = json!({"conditions": [cond("Accepted", "False", "Invalid", Some("2020-01-01T00:00:00Z"))]});
        let wanted = json!({"conditions": [cond("Accepted", "False", "NotAllowedByListeners", None)]});
        let next = merged(&current, &wanted, US, NOW);
        assert_ne!(next, current);
        assert_eq!(next["conditions"][0]["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(next["conditions"][0]["reason"], "NotAllowedByListeners");
    }

    #[test]
    fn listener_conditions_match_by_listener_name_not_position() {
        let listener = |name: &str, t: &str| json!({"name": name, "attachedRoutes": 0, "supportedKinds": [], "conditions": [cond("Accepted", "True", "Accepted", Some(t))]});
        let current =
            json!({"listeners": [listener("http", "2020-01-01T00:00:00Z"), listener("https", "2021-01-01T00:00:00Z")]});
        let mut wanted = json!({"listeners": [listener("https", "x"), listener("http", "x")]});
        for l in wanted["listeners"].as_array_mut().unwrap() {
            l["conditions"][0].as_object_mut().unwrap().remove("lastTransitionTime");
        }
        let next = merged(&current, &wanted, US, NOW);
        assert_eq!(
            next["listeners"][0]["conditions"][0]["lastTransitionTime"],
            "2021-01-01T00:00:00Z"
        );
        assert_eq!(
            next["listeners"][1]["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
    }

    #[test]
    fn route_parents_of_other_controllers_stay_ours_are_replaced_in_place() {
        let parent = |gw: &str, controller: &str, status: &str| {
            json!({"parentRef": {"name": gw}, "controllerName": controller,
                   "conditions": [cond("Accepted", status, "Accepted", Some("2020-01-01T00:00:00Z"))]})
        };
        let current = json!({"parents": [
            parent("a", US, "True"),
            parent("other", "example.com/other", "True"),
            parent("gone", US, "True"),
        ]});
        let mut wanted = json!({"parents": [parent("new", US, "True"), parent("a", US, "False")]});
        for p in wanted["parents"].as_array_mut().unwrap() {
            p["conditions"][0].as_object_mut().unwrap().remove("lastTransitionTime");
        }
        let next = merged(&current, &wanted, US, NOW);
        let names: Vec<&str> = next["parents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["parentRef"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "other", "new"], "{next}");
        assert_eq!(next["parents"][0]["conditions"][0]["status"], "False");
        assert_eq!(next["parents"][0]["conditions"][0]["lastTransitionTime"], NOW);
        assert_eq!(next["parents"][1], current["parents"][1]);
        // Nothing of ours wanted any more: only the other controller's entry stays.
        let next = merged(&current, &json!({"parents": []}), US, NOW);
        assert_eq!(next["parents"], json!([current["parents"][1]]));
    }

    #[test]
    fn a_gateway_without_wanted_addresses_keeps_its_own() {
        let current = json!({"addresses": [{"type": "IPAddress", "value": "203.0.113.1"}], "conditions": []});
        let next = merged(&current, &json!({"conditions": []}), US, NOW);
        assert_eq!(next, current);
        let wanted = json!({"addresses": [], "conditions": []});
        assert_eq!(merged(&current, &wanted, US, NOW)["addresses"], json!([]));
    }

    #[test]
    fn merge_patch_names_changes_and_removals_only() {
        let from = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "gone": true});
        let to = json!({"a": 1, "b": {"c": 2, "d": 4}, "e": [1], "new": "x"});
        assert_eq!(
            merge_patch(&from, &to),
            json!({"b": {"d": 4}, "e": [1], "new": "x", "gone": null})
        );
        assert_eq!(merge_patch(&Value::Null, &to), to);
    }

    #[test]
    fn ingress_entries_become_gateway_addresses() {
        let entries = [
            json!({"ip": "203.0.113.10"}),
            json!({"hostname": "lb.example.com"}),
            json!({}),
        ];
        assert_eq!(
            gateway_addresses(&entries),
            [
                json!({"type": "IPAddress", "value": "203.0.113.10"}),
                json!({"type": "Hostname", "value": "lb.example.com"}),
            ]
        );
        let many: Vec<Value> = (0..40).map(|i| json!({"ip": format!("203.0.113.{i}")})).collect();
        assert_eq!(gateway_addresses(&many).len(), MAX_ADDRESSES);
    }

    #[test]
    fn retries_back_off_to_five_minutes() {
        let waits = [0, 1, 2, 3, 7, 8, 40, u32::MAX].map(|n| backoff(n).map(|d| d.as_secs()));
        assert_eq!(
            waits,
            [
                None,
                Some(5),
                Some(10),
                Some(20),
                Some(300),
                Some(300),
                Some(300),
                Some(300)
            ]
        );
    }

    #[test]
    fn fingerprints_ignore_transition_times_and_nulls_are_dropped() {
        let a = json!({"conditions": [cond("Accepted", "True", "Accepted", Some("2020-01-01T00:00:00Z"))]});
        let b = json!({"conditions": [cond("Accepted", "True", "Accepted", None)]});
        assert_eq!(without_transition_times(&a), without_transition_times(&b));
        assert_eq!(
            without_nulls(&json!({"a": null, "b": [{"c": null}]})),
            json!({"b": [{}]})
        );
    }
}
