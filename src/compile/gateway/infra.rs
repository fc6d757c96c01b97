//! A Gateway's own infrastructure: its `spec.infrastructure` and `spec.addresses` checked
//! against what Portico can give, and what goes into its Service (`--gateway-services`).
//!
//! Portico takes no parameters, so any `parametersRef` is `Accepted=False InvalidParameters`.
//! The only address type it can give is `IPAddress`, as an external IP of the Gateway's
//! Service; another type is `Accepted=False UnsupportedAddress`. A static IP must lie in
//! `--gateway-address-cidrs` (none by default: an external IP draws the node's traffic for
//! that address to Portico, so who may claim which is the operator's call), else the Gateway
//! is `Programmed=False AddressNotUsable`. An `IPAddress` without a value is the Service's
//! own address.

use std::net::IpAddr;

use super::Options;
use super::cond;
use crate::config::diagnostic::{Diagnostics, ObjectRef, Reason, Severity};
use crate::config::gateway::{Condition, GatewayService};
use crate::model::ObjectKey;
use crate::model::gateway::Gateway;

/// The CRD's bounds (`maxItems`, `maxProperties`), kept for manifests that skip validation.
const MAX_ADDRESSES: usize = 16;
const MAX_LABELS: usize = 8;
const MAX_ANNOTATIONS: usize = 16;

const INVALID_PARAMETERS: &str = "InvalidParameters";
const UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
const ADDRESS_NOT_USABLE: &str = "AddressNotUsable";

/// What a Gateway's infrastructure makes of its conditions and its Service.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    /// Replaces `Accepted` (with False) and `Programmed` (with False, `Invalid`).
    not_accepted: Option<Condition>,
    /// Replaces `Programmed` (with False) when it would be True.
    not_programmed: Option<Condition>,
    /// With `--gateway-services`, for an accepted Gateway whose addresses are usable.
    pub service: Option<GatewayService>,
}

impl Verdict {
    /// The Gateway's `Accepted` and `Programmed` conditions, given the listeners' ones.
    pub fn conditions(&self, accepted: Condition, programmed: Condition) -> (Condition, Condition) {
        if let Some(a) = &self.not_accepted {
            let p = Condition::new(cond::PROGRAMMED, false, cond::INVALID, a.message.clone());
            return (a.clone(), p);
        }
        match &self.not_programmed {
            Some(p) if programmed.status => (accepted, p.clone()),
            _ => (accepted, programmed),
        }
    }
}

pub fn check(key: &ObjectKey, gateway: &Gateway, opts: &Options, diags: &mut Diagnostics) -> Verdict {
    let mut verdict = Verdict::default();
    let mut report = |c: &Condition| {
        diags.push(
            ObjectRef::new("Gateway", key),
            Severity::Error,
            Reason::NotAccepted,
            c.message.clone(),
        )
    };
    let infra = gateway.spec.infrastructure.as_ref();
    if let Some(p) = infra.and_then(|i| i.parameters_ref.as_ref()) {
        let c = Condition::new(
            cond::ACCEPTED,
            false,
            INVALID_PARAMETERS,
            format!(
                "infrastructure.parametersRef: Portico takes no parameters ({:?} of group {:?}, {:?}, is not supported)",
                p.kind, p.group, p.name
            ),
        );
        report(&c);
        verdict.not_accepted = Some(c);
    }
    let mut external_ips: Vec<IpAddr> = Vec::new();
    for a in gateway.spec.addresses.iter().take(MAX_ADDRESSES) {
        let type_ = a.type_.as_deref().unwrap_or("IPAddress");
        if type_ != "IPAddress" {
            if verdict.not_accepted.is_none() {
                let c = Condition::new(
                    cond::ACCEPTED,
                    false,
                    UNSUPPORTED_ADDRESS,
                    format!("address type {type_:?} is not supported (IPAddress is)"),
                );
                report(&c);
                verdict.not_accepted = Some(c);
            }
            continue;
        }
        if a.value.is_empty() {
            continue;
        }
        let problem = match a.value.parse::<IpAddr>() {
            Err(_) => Some(format!("address {:?} is not an IP address", a.value)),
            Ok(_) if !opts.gateway_services => Some(format!(
                "address {}: static addresses need a Service per Gateway (--gateway-services)",
                a.value
            )),
            Ok(ip) if !opts.gateway_address_cidrs.iter().any(|c| c.contains(ip)) => Some(format!(
                "address {ip} is not in --gateway-address-cidrs ({}); remove it or ask for one in those ranges",
                cidrs(opts)
            )),
            Ok(ip) => {
                if !external_ips.contains(&ip) {
                    external_ips.push(ip);
                }
                None
            }
        };
        if let Some(msg) = problem
            && verdict.not_programmed.is_none()
        {
            let c = Condition::new(cond::PROGRAMMED, false, ADDRESS_NOT_USABLE, msg);
            report(&c);
            verdict.not_programmed = Some(c);
        }
    }
    if opts.gateway_services && verdict.not_accepted.is_none() && verdict.not_programmed.is_none() {
        verdict.service = Some(GatewayService {
            labels: infra
                .map(|i| {
                    i.labels
                        .iter()
                        .take(MAX_LABELS)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            annotations: infra
                .map(|i| {
                    i.annotations
                        .iter()
                        .take(MAX_ANNOTATIONS)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            external_ips,
        });
    }
    verdict
}

/// The features the GatewayClasses claim: static addresses only with a Service per Gateway.
pub fn supported_features(opts: &Options) -> Vec<&'static str> {
    crate::config::gateway::SUPPORTED_FEATURES
        .iter()
        .copied()
        .filter(|f| opts.gateway_services || !WITH_SERVICES.contains(f))
        .collect()
}

/// Features that need each Gateway's own Service: static addresses become its external
/// IPs, only it has every listener port, only its ports are the Gateway's alone, and only it
/// (beside the Gateway, labelled with its name) carries `spec.infrastructure`'s labels and
/// annotations.
const WITH_SERVICES: [&str; 6] = [
    "GatewayStaticAddresses",
    "GatewayInfrastructure",
    "GatewayPort8080",
    "HTTPRouteParentRefPort",
    // gwfront: client certificates are validated only on a Gateway's own ports.
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
];

fn cidrs(opts: &Options) -> String {
    if opts.gateway_address_cidrs.is_empty() {
        return "none set".into();
    }
    let list: Vec<String> = opts.gateway_address_cidrs.iter().map(ToString::to_string).collect();
    list.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gateway::{GatewayInfrastructure, GatewaySpecAddress, LocalParametersReference};

    fn gateway(addresses: &[(Option<&str>, &str)]) -> Gateway {
        let mut g = Gateway::default();
        g.spec.addresses = addresses
            .iter()
            .map(|(t, v)| GatewaySpecAddress {
                type_: t.map(str::to_string),
                value: v.to_string(),
            })
            .collect();
        g
    }

    fn opts(cidrs: &[&str]) -> Options {
        Options {
            gateway_services: true,
            gateway_address_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            ..Options::default()
        }
    }

    fn run(g: &Gateway, o: &Options) -> (Verdict, usize) {
        let mut diags = Diagnostics::default();
        let v = check(&ObjectKey::new("ns", "gw"), g, o, &mut diags);
        (v, diags.into_sorted().len())
    }

    fn ok() -> (Condition, Condition) {
        (
            Condition::new(cond::ACCEPTED, true, "Accepted", ""),
            Condition::new(cond::PROGRAMMED, true, "Programmed", ""),
        )
    }

    fn reasons(v: &Verdict) -> (&'static str, bool, &'static str, bool) {
        let (a, p) = ok();
        let (a, p) = v.conditions(a, p);
        (a.reason, a.status, p.reason, p.status)
    }

    #[test]
    fn the_conformance_static_addresses_sequence() {
        let o = opts(&["198.51.100.0/24"]);
        let invalid = (Some("test/fake-invalid-type"), "fake address teehee!");
        let unusable = (Some("IPAddress"), "203.0.113.9");
        let usable = (Some("IPAddress"), "198.51.100.20");
        let (v, n) = run(&gateway(&[invalid, unusable, usable]), &o);
        assert_eq!(reasons(&v), (UNSUPPORTED_ADDRESS, false, cond::INVALID, false));
        assert_eq!((v.service, n), (None, 2));
        let (v, _) = run(&gateway(&[unusable, usable]), &o);
        assert_eq!(reasons(&v), ("Accepted", true, ADDRESS_NOT_USABLE, false));
        assert!(v.conditions(ok().0, ok().1).1.message.contains("203.0.113.9"));
        assert_eq!(v.service, None);
        let (v, n) = run(&gateway(&[usable, (None, "198.51.100.20")]), &o);
        assert_eq!(reasons(&v), ("Accepted", true, "Programmed", true));
        assert_eq!(n, 0);
        assert_eq!(
            v.service.unwrap().external_ips,
            vec!["198.51.100.20".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn without_cidrs_or_services_no_static_address_is_usable_but_an_empty_one_is() {
        let g = gateway(&[(None, "198.51.100.20")]);
        assert_eq!(reasons(&run(&g, &opts(&[])).0).2, ADDRESS_NOT_USABLE);
        let shared = Options {
            gateway_services: false,
            ..opts(&["0.0.0.0/0"])
        };
        let (v, _) = run(&g, &shared);
        assert_eq!(reasons(&v).2, ADDRESS_NOT_USABLE);
        assert!(v.conditions(ok().0, ok().1).1.message.contains("--gateway-services"));
        let (v, n) = run(&gateway(&[(Some("IPAddress"), "")]), &opts(&[]));
        assert_eq!((reasons(&v), n), (("Accepted", true, "Programmed", true), 0));
        assert!(v.service.unwrap().external_ips.is_empty());
        // Without --gateway-services no Service is asked for.
        assert_eq!(run(&gateway(&[]), &shared).0.service, None);
    }

    #[test]
    fn a_hostname_address_is_unsupported_and_a_listener_failure_is_kept() {
        let (v, _) = run(&gateway(&[(Some("Hostname"), "gw.example.com")]), &opts(&[]));
        assert_eq!(reasons(&v).0, UNSUPPORTED_ADDRESS);
        // Programmed already False for the listeners stays as the listeners say.
        let (v, _) = run(&gateway(&[(None, "203.0.113.1")]), &opts(&[]));
        let invalid = Condition::new(cond::PROGRAMMED, false, cond::INVALID, "no listener");
        assert_eq!(v.conditions(ok().0, invalid.clone()).1, invalid);
    }

    #[test]
    fn static_addresses_and_listener_ports_are_claimed_with_services_only() {
        let own = supported_features(&opts(&[]));
        let shared = supported_features(&Options::default());
        for f in WITH_SERVICES {
            assert!(own.contains(&f) && !shared.contains(&f), "{f}");
        }
        assert_eq!(own.len(), crate::config::gateway::SUPPORTED_FEATURES.len());
        assert_eq!(shared.len() + WITH_SERVICES.len(), own.len());
    }

    #[test]
    fn parameters_are_invalid_metadata_goes_to_the_service() {
        let mut g = gateway(&[]);
        g.spec.infrastructure = Some(GatewayInfrastructure {
            labels: [("key2".to_string(), "value2".to_string())].into(),
            annotations: (0..40).map(|i| (format!("a{i}"), "v".to_string())).collect(),
            parameters_ref: None,
        });
        let svc = run(&g, &opts(&[])).0.service.unwrap();
        assert_eq!(svc.labels["key2"], "value2");
        assert_eq!(svc.annotations.len(), MAX_ANNOTATIONS);
        g.spec.infrastructure.as_mut().unwrap().parameters_ref = Some(LocalParametersReference {
            group: "invalid.io".into(),
            kind: "InvalidParameters".into(),
            name: "invalid".into(),
        });
        let (v, n) = run(&g, &opts(&[]));
        assert_eq!(reasons(&v), (INVALID_PARAMETERS, false, cond::INVALID, false));
        assert_eq!((v.service, n), (None, 1));
    }
}
