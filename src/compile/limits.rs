//! Rate and connection limit annotations → [`Limits`] (`limit-rps`, `limit-rpm`,
//! `limit-connections`, `limit-burst-multiplier`, `limit-whitelist`), and the count of live
//! Portico replicas that `--limits-per-cluster` divides them by.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::annotations::Annotations;
use super::ingress::annotation;
use crate::config::Cidr;
use crate::config::limits::{Limits, Rate, Replicas};
use crate::model::{ObjectKey, Snapshot};

/// The status codes of refused requests: `(limit-req-status-code, limit-conn-status-code)`
/// unless the `--configmap` sets them (`compile::global::route_policy` puts them in).
pub const STATUS_CODES: (u16, u16) = (Limits::DEFAULT_STATUS, Limits::DEFAULT_STATUS);

impl Annotations<'_> {
    /// The route's limits; `None` when none of `limit-rps`, `limit-rpm` and
    /// `limit-connections` is set to a valid number above 0 (0 is "no limit", as in
    /// ingress-nginx).
    pub fn limits(&mut self) -> Option<Arc<Limits>> {
        let rps = self.count("limit-rps", Limits::MAX_RPS);
        let rpm = self.count("limit-rpm", Limits::MAX_RPM);
        let connections = self.count("limit-connections", Limits::MAX_CONNECTIONS);
        if rps.is_none() && rpm.is_none() && connections.is_none() {
            return None;
        }
        let max = Limits::MAX_BURST_MULTIPLIER;
        let multiplier = self
            .parsed(
                "limit-burst-multiplier",
                &format!("a whole number up to {max}"),
                &format!("using {}", Limits::DEFAULT_BURST_MULTIPLIER),
                |v| v.parse::<u32>().ok().filter(|n| *n <= max),
            )
            .unwrap_or(Limits::DEFAULT_BURST_MULTIPLIER);
        // Both factors are capped, so the product fits a u64 with room to spare.
        let rate = |limit: u32, secs: u64| Rate {
            limit,
            per: Duration::from_secs(secs),
            burst: u64::from(limit) * u64::from(multiplier),
        };
        let (req_status, conn_status) = STATUS_CODES;
        Some(Arc::new(Limits {
            rps: rps.map(|n| rate(n, 1)),
            rpm: rpm.map(|n| rate(n, 60)),
            connections,
            whitelist: self.whitelist(),
            req_status,
            conn_status,
        }))
    }

    /// A limit: a whole number up to `max`; `None` when absent, 0 or invalid (reported).
    fn count(&mut self, name: &str, max: u32) -> Option<u32> {
        let expected = format!("a whole number up to {max}");
        self.parsed(name, &expected, "no limit", |v| {
            v.parse::<u32>().ok().filter(|n| *n <= max)
        })
        .filter(|n| *n > 0)
    }

    /// `limit-whitelist` (or its newer name `limit-allowlist`). Invalid entries are reported
    /// and dropped: a typo exempts nobody.
    fn whitelist(&mut self) -> Vec<Cidr> {
        let Some((prefix, raw, name)) = ["limit-whitelist", "limit-allowlist"]
            .iter()
            .find_map(|n| annotation(self.ing, n).map(|(p, v)| (p, v, *n)))
        else {
            return Vec::new();
        };
        let mut cidrs = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.parse::<Cidr>() {
                Ok(c) => cidrs.push(c),
                Err(_) => self.invalid(prefix, name, entry, "a CIDR", "this entry exempts nobody"),
            }
        }
        cidrs
    }
}

/// The live replicas of Portico's own Service `service` (`--limits-per-cluster`): its
/// EndpointSlices' distinct ready addresses. At least 1: before its own pod is ready, a
/// replica counts itself.
pub fn replicas(snapshot: &Snapshot, service: Option<&ObjectKey>) -> Replicas {
    let Some(service) = service else {
        return Replicas::default();
    };
    let mut live: BTreeSet<IpAddr> = BTreeSet::new();
    let from = ObjectKey::new(service.namespace.clone(), String::new());
    let in_namespace = snapshot
        .endpoint_slices
        .range(from..)
        .take_while(|(key, _)| key.namespace == service.namespace);
    for (_, slice) in in_namespace {
        if slice.service.as_deref() != Some(service.name.as_str()) {
            continue;
        }
        for ep in slice.endpoints.iter().filter(|e| e.is_ready()) {
            live.extend(ep.addresses.iter().copied());
        }
    }
    Replicas {
        service: Some(service.clone()),
        live: u32::try_from(live.len()).unwrap_or(u32::MAX).max(1),
    }
}

/// [`replicas`] after a change to the EndpointSlices of the Services in `changed` (`None`:
/// any), whose objects alone `snapshot` may hold: counted again only when Portico's own
/// Service is among them.
pub fn recount(snapshot: &Snapshot, prev: &Replicas, changed: Option<&HashSet<ObjectKey>>) -> Replicas {
    match (&prev.service, changed) {
        (Some(ours), Some(changed)) if !changed.contains(ours) => prev.clone(),
        (service, _) => replicas(snapshot, service.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::diagnostic::{Diagnostic, Diagnostics, Reason};
    use crate::fixture;
    use crate::model::AnyObject;

    /// The limits of an Ingress with `notes` (names under `prefix`), and the diagnostics.
    fn limits_of(prefix: &str, notes: &[(&str, &str)]) -> (Option<Arc<Limits>>, Vec<Diagnostic>) {
        let mut ing = k8s_openapi::api::networking::v1::Ingress::default();
        ing.metadata.annotations = Some(
            notes
                .iter()
                .map(|(k, v)| (format!("{prefix}{k}"), v.to_string()))
                .collect(),
        );
        let ing = crate::model::Ing::from(&ing);
        let key = ObjectKey::new("default", "i");
        let mut diags = Diagnostics::default();
        let limits = Annotations {
            ing: &ing,
            key: &key,
            diags: &mut diags,
            secrets: &BTreeMap::new(),
            global_auth: None,
        }
        .limits();
        (limits, diags.into_sorted())
    }

    const NGINX: &str = "nginx.ingress.kubernetes.io/";

    fn warned(diags: &[Diagnostic], name: &str) -> bool {
        diags
            .iter()
            .any(|d| d.reason == Reason::InvalidAnnotation && d.message.contains(name))
    }

    #[test]
    fn rates_get_a_burst_of_the_multiplier_default_five() {
        let (l, diags) = limits_of(NGINX, &[("limit-rps", "10"), ("limit-rpm", "300")]);
        let l = l.unwrap();
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(l.rps.unwrap().burst, 50);
        assert_eq!(l.rps.unwrap().per, Duration::from_secs(1));
        assert_eq!((l.rpm.unwrap().limit, l.rpm.unwrap().burst), (300, 1500));
        assert_eq!(l.rpm.unwrap().per, Duration::from_secs(60));
        assert_eq!(l.connections, None);
        assert_eq!((l.req_status, l.conn_status), (503, 503));
        let (l, _) = limits_of("portico.dev/", &[("limit-rps", "7"), ("limit-burst-multiplier", "0")]);
        assert_eq!(l.unwrap().rps.unwrap().burst, 0, "portico.dev/ spelling, no burst");
    }

    #[test]
    fn no_limit_is_none_and_zero_is_no_limit() {
        assert_eq!(limits_of(NGINX, &[]).0, None);
        assert_eq!(limits_of(NGINX, &[("limit-whitelist", "10.0.0.0/8")]).0, None);
        let (l, diags) = limits_of(NGINX, &[("limit-rps", "0"), ("limit-connections", "0")]);
        assert_eq!(l, None);
        assert!(diags.is_empty(), "{diags:?}");
    }

    #[test]
    fn bad_and_huge_values_are_warnings_and_no_limit() {
        for v in ["-1", "1.5", "ten", "1000001", "18446744073709551616", " ", "1e3"] {
            let (l, diags) = limits_of(NGINX, &[("limit-rps", v), ("limit-connections", v)]);
            assert_eq!(l, None, "{v:?}");
            if !v.trim().is_empty() {
                assert!(
                    warned(&diags, "limit-rps") && warned(&diags, "limit-connections"),
                    "{v:?}: {diags:?}"
                );
            }
        }
        let (l, diags) = limits_of(NGINX, &[("limit-rpm", "60000001"), ("limit-rps", "1000000")]);
        let l = l.unwrap();
        assert_eq!(l.rpm, None);
        assert!(warned(&diags, "limit-rpm"));
        assert_eq!(l.rps.unwrap().burst, 5_000_000);
        let (l, diags) = limits_of(NGINX, &[("limit-rps", "1000000"), ("limit-burst-multiplier", "1001")]);
        assert_eq!(l.unwrap().rps.unwrap().burst, 5_000_000, "the default multiplier");
        assert!(warned(&diags, "limit-burst-multiplier"));
        let (l, _) = limits_of(NGINX, &[("limit-rps", "1000000"), ("limit-burst-multiplier", "1000")]);
        assert_eq!(l.unwrap().rps.unwrap().burst, 1_000_000_000, "the largest burst");
    }

    #[test]
    fn whitelist_entries_that_are_not_cidrs_exempt_nobody() {
        let (l, diags) = limits_of(
            NGINX,
            &[
                ("limit-connections", "3"),
                ("limit-whitelist", "10.0.0.0/8, nonsense, 192.168.1.1,::1/129"),
            ],
        );
        let l = l.unwrap();
        let shown: Vec<String> = l.whitelist.iter().map(|c| c.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.1.1/32"]);
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert!(warned(&diags, "limit-whitelist"));
        let (l, _) = limits_of(NGINX, &[("limit-rps", "1"), ("limit-allowlist", "10.1.0.0/16")]);
        assert_eq!(l.unwrap().whitelist.len(), 1, "the newer name");
    }

    fn snapshot(objects: Vec<AnyObject>) -> Snapshot {
        let mut s = Snapshot::default();
        for o in objects {
            s.insert(o);
        }
        s
    }

    #[test]
    fn replicas_are_the_ready_addresses_of_our_own_service() {
        let ours = ObjectKey::new("ingress", "portico");
        let s = snapshot(vec![
            fixture::slice("ingress", "portico-a", "portico")
                .port("http", 80)
                .endpoint("10.0.0.1")
                .endpoint("10.0.0.2")
                .into(),
            // The same pod in a second slice counts once.
            fixture::slice("ingress", "portico-b", "portico")
                .port("https", 443)
                .endpoint("10.0.0.2")
                .endpoint("10.0.0.3")
                .endpoint("10.0.0.6")
                .ready(false)
                .endpoint("10.0.0.7")
                .terminating(true)
                .into(),
            // Another namespace's Service of the same name is not ours.
            fixture::slice("default", "portico-c", "portico")
                .port("http", 80)
                .endpoint("10.0.0.4")
                .into(),
            fixture::slice("ingress", "web-a", "web")
                .port("http", 80)
                .endpoint("10.0.0.5")
                .into(),
        ]);
        assert_eq!(replicas(&s, Some(&ours)).live, 3);
        assert_eq!(replicas(&s, Some(&ours)).divisor(), 3);
        assert_eq!(replicas(&s, None), Replicas::default());
        assert_eq!(replicas(&s, None).divisor(), 1);
        let none = replicas(&Snapshot::default(), Some(&ours));
        assert_eq!((none.live, none.divisor()), (1, 1), "a replica counts itself");
        // An endpoints-only recompile of other Services (whose snapshot holds only theirs)
        // keeps the count; one of ours counts again.
        let three = replicas(&s, Some(&ours));
        let web = HashSet::from([ObjectKey::new("ingress", "web")]);
        assert_eq!(recount(&Snapshot::default(), &three, Some(&web)), three);
        let both = HashSet::from([ours.clone()]);
        assert_eq!(recount(&Snapshot::default(), &three, Some(&both)).live, 1);
        assert_eq!(recount(&s, &three, None), three);
    }
}
