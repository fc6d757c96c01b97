//! The SNI gate (`config::sni_gate`): which names Gateway TLS listeners claim on the shared
//! ports, and, with a Service per Gateway, each Gateway target port's own passthrough hosts.

use super::GatewayState;
use super::tls::Host;
use crate::config::gateway::GatewayReport;
use crate::config::sni_gate::SniGate;

/// Builds the gate from the Gateways (`states`, in the same order as `reports`) and their
/// TLSRoute hosts. With `per_gateway` (`--gateway-services`) the hosts go to their
/// Gateway's target port and are taken out of `hosts` (the shared table does not serve
/// them); without, the hostnames of usable TLS listeners become claims.
pub(super) fn gate(
    states: &[GatewayState],
    reports: &[GatewayReport],
    hosts: &mut Vec<Host>,
    per_gateway: bool,
) -> SniGate {
    let mut gate = SniGate::default();
    if !per_gateway {
        for l in states
            .iter()
            .flat_map(|g| &g.listeners)
            .filter(|l| l.usable && l.spec.protocol == "TLS")
        {
            if let Some(h) = l.spec.hostname.as_deref() {
                gate.claims.insert(h.to_ascii_lowercase());
            }
        }
        return gate;
    }
    let target = |gi: usize, port: u16| {
        reports
            .get(gi)
            .and_then(|r| r.ports.iter().find(|p| p.port == port))
            .map(|p| p.target)
    };
    for (gi, gw) in states.iter().enumerate() {
        for l in gw.listeners.iter().filter(|l| l.usable) {
            let Some(t) = u16::try_from(l.spec.port).ok().and_then(|p| target(gi, p)) else {
                continue;
            };
            match l.spec.protocol.as_str() {
                "TLS" => {
                    gate.targets.entry(t).or_default();
                }
                "HTTPS" => gate.targets.entry(t).or_default().terminate = true,
                _ => {}
            }
        }
    }
    for h in std::mem::take(hosts) {
        if let Some(t) = target(h.via.0, h.via.1).and_then(|t| gate.targets.get_mut(&t)) {
            t.passthrough.entry(h.name).or_insert(h.backend);
        }
    }
    gate
}

#[cfg(test)]
mod tests;
