//! ListenerSets: a ListenerSet whose parentRef is a Gateway of ours that allows it
//! (`spec.allowedListeners`) adds its listeners to that Gateway's list, after the Gateway's
//! own and in the spec's precedence (oldest set first, then by namespace/name). They are
//! validated like the Gateway's own ([`super::listener`]); a listener that conflicts with
//! one before it (the Gateway's, or an earlier set's) is refused, not the earlier one.

use super::{
    Condition, GatewayState, ListenerState, cond, conflict, generation, listener, namespace_labels, not_accepted,
    oldest_first, selects, uid,
};
use crate::compile::Options;
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::gateway::ListenerSetReport;
use crate::model::gateway::{Gateway, Listener};
use crate::model::{ObjectKey, Snapshot};

const NOT_ALLOWED: &str = "NotAllowed";
const TOO_MANY_LISTENERS: &str = "TooManyListeners";

/// Listeners of one ListenerSet (the CRD's `maxItems`), and of one Gateway with its sets:
/// more are refused (`TooManyListeners`), which bounds the conflict checks.
const MAX_SET_LISTENERS: usize = 64;
const MAX_GATEWAY_LISTENERS: usize = 1024;
const PARENT_NOT_ACCEPTED: &str = "ParentNotAccepted";

/// A ListenerSet whose parentRef is a Gateway of ours.
pub(super) struct SetState {
    key: ObjectKey,
    generation: i64,
    uid: String,
    /// The Gateway's `allowedListeners` lets it attach (its listeners are in the list).
    allowed: bool,
}

/// Adds the listeners of the ListenerSets each Gateway allows to its list, and records
/// every ListenerSet that names one of them (for its status).
pub(super) fn attach<'s>(
    snapshot: &'s Snapshot,
    opts: &Options,
    gateways: &mut [GatewayState<'s>],
    diags: &mut Diagnostics,
) {
    if snapshot.listener_sets.is_empty() {
        return;
    }
    let mut sets: Vec<(&ObjectKey, &crate::model::gateway::ListenerSet)> = snapshot
        .listener_sets
        .iter()
        .filter(|(_, s)| s.spec.parent_ref.is_gateway())
        .map(|(k, s)| (k, s.as_ref()))
        .collect();
    sets.sort_by(|(ka, a), (kb, b)| oldest_first((ka, &a.metadata), (kb, &b.metadata)));
    for (key, set) in sets {
        let parent = &set.spec.parent_ref;
        let ns = parent.namespace.as_deref().unwrap_or(&key.namespace);
        let gkey = ObjectKey::new(ns, parent.name.as_str());
        let Some(gw) = gateways.iter_mut().find(|g| g.key == gkey) else {
            continue;
        };
        let allowed = allows(snapshot, gw.gateway, &gkey, &key.namespace);
        let si = gw.sets.len();
        gw.sets.push(SetState {
            key: key.clone(),
            generation: generation(&set.metadata),
            uid: uid(&set.metadata),
            allowed,
        });
        if !allowed {
            diags.push(
                ObjectRef::new("ListenerSet", key),
                Severity::Error,
                Reason::NotAccepted,
                format!("Gateway {gkey} does not allow this ListenerSet (spec.allowedListeners)"),
            );
            continue;
        }
        for (i, l) in set.spec.listeners.iter().enumerate() {
            let too_many = i >= MAX_SET_LISTENERS || gw.listeners.len() >= MAX_GATEWAY_LISTENERS;
            let conflicted = match too_many {
                true => no_conflict(),
                false => first_conflict(&gw.listeners, l),
            };
            let mut state = listener(snapshot, opts, ("ListenerSet", key), l, conflicted, diags);
            state.from = Some(si);
            // gwfront: the Gateway's client-certificate validation covers its ListenerSets' ports.
            super::frontend::apply(
                snapshot,
                opts,
                ("ListenerSet", key),
                (&gkey, gw.gateway),
                &mut state,
                diags,
            );
            // A refused listener is not accepted, for the reason of its conflict.
            let c = &mut state.report.conditions;
            if too_many {
                let msg = format!(
                    "at most {MAX_SET_LISTENERS} listeners per ListenerSet and {MAX_GATEWAY_LISTENERS} per Gateway with its ListenerSets"
                );
                c[0] = not_accepted(TOO_MANY_LISTENERS, msg.clone());
                c[1] = Condition::new(cond::PROGRAMMED, false, TOO_MANY_LISTENERS, msg);
                state.usable = false;
            } else if c[3].status {
                let (reason, msg) = (c[3].reason, c[3].message.clone());
                c[0] = not_accepted(reason, msg.clone());
                c[1] = Condition::new(cond::PROGRAMMED, false, reason, msg);
            }
            gw.listeners.push(state);
        }
    }
}

/// The first conflict of `l` with a listener before it that holds its place (accepted and
/// not conflicted itself): a protocol conflict before a hostname conflict. Else none.
fn first_conflict(before: &[ListenerState], l: &Listener) -> Condition {
    let holders = before
        .iter()
        .filter(|o| o.report.conditions[0].status && !o.report.conditions[3].status);
    let mut found: Option<Condition> = None;
    for o in holders {
        match conflict(l, o.spec) {
            Some(c) if c.reason == cond::PROTOCOL_CONFLICT => return c,
            Some(c) => {
                found.get_or_insert(c);
            }
            None => {}
        }
    }
    found.unwrap_or_else(no_conflict)
}

fn no_conflict() -> Condition {
    Condition::new(cond::CONFLICTED, false, cond::NO_CONFLICTS, "no conflicts")
}

/// Whether Gateway `gateway` lets a ListenerSet in namespace `ns` attach: its
/// `allowedListeners.namespaces.from` is `Same`, `All`, or `Selector` selecting `ns`
/// (`None`, the default, allows none).
fn allows(snapshot: &Snapshot, gateway: &Gateway, gkey: &ObjectKey, ns: &str) -> bool {
    let from = gateway
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match from.and_then(|f| f.from.as_deref()).unwrap_or("None") {
        "All" => true,
        "Same" => ns == gkey.namespace,
        "Selector" => from
            .and_then(|f| f.selector.as_ref())
            .is_some_and(|s| selects(s, &namespace_labels(snapshot, ns))),
        _ => false,
    }
}

/// The Gateway and the index in its `sets` of ListenerSet `key`, if its parent is ours.
pub(super) fn find(gateways: &[GatewayState], key: &ObjectKey) -> Option<(usize, usize)> {
    gateways
        .iter()
        .enumerate()
        .find_map(|(gi, g)| g.sets.iter().position(|s| s.key == *key).map(|si| (gi, si)))
}

/// Why a route cannot attach to a ListenerSet at all (its Gateway does not allow it).
pub(super) fn refused(set: &SetState) -> Option<Condition> {
    (!set.allowed).then(|| {
        not_accepted(
            cond::NO_MATCHING_PARENT,
            format!("ListenerSet {} is not attached to its Gateway", set.key),
        )
    })
}

/// The namespace a listener's `allowedRoutes` `Same` means: its Gateway's or its ListenerSet's.
pub(super) fn owner_namespace<'g>(gw: &'g GatewayState, from: Option<usize>) -> &'g str {
    match from {
        None => &gw.key.namespace,
        Some(si) => &gw.sets[si].key.namespace,
    }
}

/// The ListenerSet listener `li` of a Gateway comes from, if not from the Gateway itself.
pub(super) fn of(gw: &GatewayState, li: usize) -> Option<ObjectKey> {
    gw.listeners[li].from.map(|si| gw.sets[si].key.clone())
}

/// The ListenerSets attached to a Gateway (accepted: allowed, with a usable listener, on a
/// Gateway with one of its own).
pub(super) fn attached(gw: &GatewayState) -> u32 {
    if !gw.listeners.iter().any(|l| l.from.is_none() && l.usable) {
        return 0;
    }
    let n = (0..gw.sets.len())
        .filter(|&si| gw.sets[si].allowed && usable(gw, si) > 0)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// How many of set `si`'s listeners are usable.
fn usable(gw: &GatewayState, si: usize) -> usize {
    gw.listeners.iter().filter(|l| l.from == Some(si) && l.usable).count()
}

/// Each ListenerSet's status: Accepted and Programmed, and its listeners'.
pub(super) fn reports(gateways: &[GatewayState]) -> Vec<ListenerSetReport> {
    let mut out = Vec::new();
    for gw in gateways {
        let parent_accepted = gw.listeners.iter().any(|l| l.from.is_none() && l.usable);
        for (si, set) in gw.sets.iter().enumerate() {
            let listeners: Vec<_> = gw
                .listeners
                .iter()
                .filter(|l| l.from == Some(si))
                .map(|l| l.report.clone())
                .collect();
            let usable = usable(gw, si);
            let both = |status: bool, accepted: &'static str, programmed: &'static str, msg: &str| {
                vec![
                    Condition::new(cond::ACCEPTED, status, accepted, msg),
                    Condition::new(cond::PROGRAMMED, status, programmed, msg),
                ]
            };
            let conditions = if !set.allowed {
                both(
                    false,
                    NOT_ALLOWED,
                    NOT_ALLOWED,
                    "the Gateway's allowedListeners does not allow this ListenerSet",
                )
            } else if !parent_accepted {
                both(
                    false,
                    PARENT_NOT_ACCEPTED,
                    PARENT_NOT_ACCEPTED,
                    "the Gateway has no valid listener of its own",
                )
            } else if usable == 0 {
                both(
                    false,
                    cond::LISTENERS_NOT_VALID,
                    cond::LISTENERS_NOT_VALID,
                    "no listener is valid",
                )
            } else if usable < listeners.len() {
                let msg = format!(
                    "{} of {} listeners are not valid",
                    listeners.len() - usable,
                    listeners.len()
                );
                both(true, cond::LISTENERS_NOT_VALID, "Programmed", &msg)
            } else {
                both(true, "Accepted", "Programmed", "attached to the Gateway")
            };
            out.push(ListenerSetReport {
                key: set.key.clone(),
                generation: set.generation,
                conditions,
                listeners,
                uid: set.uid.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
