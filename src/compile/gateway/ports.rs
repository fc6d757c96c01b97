//! Which port Portico's pods serve each Gateway port on.
//!
//! Without a Service per Gateway every Gateway shares Portico's own address, and a listener
//! on port P is served on port P. With one (`--gateway-services`), each Gateway has an
//! address of its own, so two Gateways may both listen on port 80 and must still reach
//! different routes: each (Gateway, port) gets a target port of its own in
//! [`FIRST`]..[`FIRST`]+[`COUNT`], which the Gateway's Service maps its port to.
//!
//! Targets must be the same on every replica and stay put while Gateways come and go, since
//! a moved target means a Service update and a socket closed. So a target is a hash of the
//! Gateway's namespace, name and port, probed forward past targets already taken; the
//! probing goes in (namespace, name, port) order, so the result does not depend on the
//! order the Gateways were given in, and a collision (rare among 10,000 ports) is the only
//! way one Gateway's change can move another's target.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::config::gateway::GatewayPort;
use crate::model::ObjectKey;

/// The first target port.
pub const FIRST: u16 = 20_000;
/// How many target ports there are.
pub const COUNT: u16 = 10_000;

/// The ports of each Gateway in `gateways` (its usable listeners' ports, in any order, with
/// repeats), in the same order: ascending by port, each with its target. A port that finds no
/// free target (more than [`COUNT`] of them in all) is left out.
pub fn assign(gateways: &[(&ObjectKey, Vec<u16>)], per_gateway: bool) -> Vec<Vec<GatewayPort>> {
    let wanted: Vec<BTreeSet<u16>> = gateways.iter().map(|(_, p)| p.iter().copied().collect()).collect();
    if !per_gateway {
        return wanted
            .into_iter()
            .map(|ports| {
                ports
                    .into_iter()
                    .map(|port| GatewayPort { port, target: port })
                    .collect()
            })
            .collect();
    }
    let mut order: Vec<usize> = (0..gateways.len()).collect();
    order.sort_by(|&a, &b| gateways[a].0.cmp(gateways[b].0));
    let mut taken: HashSet<u16> = HashSet::new();
    let mut targets: BTreeMap<(usize, u16), u16> = BTreeMap::new();
    for i in order {
        for &port in &wanted[i] {
            let start = hash(gateways[i].0, port) % u64::from(COUNT);
            let found = (0..u64::from(COUNT))
                .map(|step| FIRST + u16::try_from((start + step) % u64::from(COUNT)).unwrap_or(0))
                .find(|t| !taken.contains(t));
            if let Some(t) = found {
                taken.insert(t);
                targets.insert((i, port), t);
            }
        }
    }
    wanted
        .into_iter()
        .enumerate()
        .map(|(i, ports)| {
            ports
                .into_iter()
                .filter_map(|port| targets.get(&(i, port)).map(|&target| GatewayPort { port, target }))
                .collect()
        })
        .collect()
}

/// FNV-1a, 64 bits: fixed across builds and platforms, unlike std's hasher.
fn hash(key: &ObjectKey, port: u16) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = key
        .namespace
        .bytes()
        .chain([b'/'])
        .chain(key.name.bytes())
        .chain([b':'])
        .chain(port.to_be_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("ns", name)
    }

    #[test]
    fn shared_address_serves_each_port_on_itself() {
        let a = key("a");
        let out = assign(&[(&a, vec![8080, 80, 80])], false);
        assert_eq!(
            out,
            vec![vec![
                GatewayPort { port: 80, target: 80 },
                GatewayPort {
                    port: 8080,
                    target: 8080
                }
            ]]
        );
    }

    #[test]
    fn per_gateway_targets_are_distinct_in_range_and_independent_of_order() {
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let one = assign(&[(&a, vec![80, 443]), (&b, vec![80]), (&c, vec![80, 8080])], true);
        let two = assign(&[(&c, vec![8080, 80]), (&a, vec![443, 80]), (&b, vec![80])], true);
        assert_eq!(one[0], two[1]);
        assert_eq!(one[1], two[2]);
        assert_eq!(one[2], two[0]);
        let all: Vec<u16> = one.iter().flatten().map(|p| p.target).collect();
        assert_eq!(all.len(), 5);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 5);
        assert!(all.iter().all(|t| (FIRST..FIRST + COUNT).contains(t)));
        assert_eq!(one[0].iter().map(|p| p.port).collect::<Vec<_>>(), vec![80, 443]);
    }

    #[test]
    fn a_new_gateway_leaves_the_others_targets_alone_without_collisions() {
        let (a, b) = (key("a"), key("b"));
        let before = assign(&[(&b, vec![80])], true);
        let after = assign(&[(&a, vec![80]), (&b, vec![80])], true);
        if after[0][0].target != before[0][0].target {
            assert_eq!(after[1], before[0]);
        }
    }

    #[test]
    fn more_ports_than_targets_leaves_the_rest_out() {
        let keys: Vec<ObjectKey> = (0..3).map(|i| key(&format!("g{i}"))).collect();
        let all: Vec<u16> = (1..=5000).collect();
        let input: Vec<(&ObjectKey, Vec<u16>)> = keys.iter().map(|k| (k, all.clone())).collect();
        let out = assign(&input, true);
        let total: usize = out.iter().map(Vec::len).sum();
        assert_eq!(total, usize::from(COUNT));
    }
}
