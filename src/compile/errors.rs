//! `default-backend` and `custom-http-errors`: an Ingress's fallback Service and the status
//! codes its error backend answers instead of the upstream, resolved to backend indexes.

use std::sync::Arc;

use crate::model::Ing as Ingress;

use super::annotations::Annotations;
use super::ingress::IngressPass;
use crate::config::BackendId;
use crate::config::diagnostic::{ObjectRef, Reason, Severity};
use crate::config::errors::ErrorPages;
use crate::config::policy::Policy;
use crate::model::ObjectKey;

/// Parses a `custom-http-errors` list: status codes from 300 to 599 (what nginx's
/// `proxy_intercept_errors` can intercept), comma-separated, duplicates dropped.
pub fn parse_codes(v: &str) -> Option<Vec<u16>> {
    let mut codes = Vec::new();
    for entry in v.split(',').map(str::trim) {
        if entry.len() != 3 {
            return None;
        }
        let code: u16 = entry.parse().ok().filter(|c| (300..=599).contains(c))?;
        codes.push(code);
    }
    codes.sort_unstable();
    codes.dedup();
    (codes.len() <= ErrorPages::MAX_CODES).then_some(codes)
}

/// Whether `name` is a Service name (an RFC 1035 label).
fn service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl IngressPass<'_, '_> {
    /// Reads `default-backend` and `custom-http-errors` of one Ingress into its policy.
    pub(super) fn error_pages(&mut self, key: &ObjectKey, ing: &Ingress, policy: &mut Policy) {
        let mut notes = Annotations::of(ing, key, self.diags, &self.snapshot.secrets);
        let name = notes.parsed(
            "default-backend",
            "the name of a Service in the Ingress's namespace",
            "not used",
            |v| service_name(v).then(|| v.to_string()),
        );
        let codes = notes.parsed(
            "custom-http-errors",
            &format!(
                "a comma-separated list of status codes from 300 to 599 (at most {})",
                ErrorPages::MAX_CODES
            ),
            "errors are not intercepted",
            parse_codes,
        );
        let own = name.and_then(|n| self.first_port_backend(key, &ObjectKey::new(key.namespace.clone(), n)));
        policy.default_backend = own;
        // The `--configmap`'s `custom-http-errors` applies where the annotation is not set (the
        // annotation replaces it for its Ingress, as in ingress-nginx).
        let codes = codes.unwrap_or_else(|| self.global.custom_http_errors.clone());
        if codes.is_empty() {
            return;
        }
        let global = self.opts.default_backend_service.clone();
        let backend = own.or_else(|| {
            let g = global.as_ref()?;
            let port = self.resolver.first_port(g)?;
            Some(self.resolver.service(g, port).0)
        });
        match backend {
            Some(backend) => policy.error_pages = Some(Arc::new(ErrorPages { codes, backend })),
            None => self.diags.push(
                ObjectRef::ingress(key),
                Severity::Warning,
                Reason::InvalidAnnotation,
                "custom-http-errors has no effect: there is no error backend (no usable default-backend annotation, no --default-backend-service)".into(),
            ),
        }
    }

    /// The backend of a Service's first port, as ingress-nginx takes for `default-backend`;
    /// `None`, with a Warning, when the Service does not exist or has no port.
    fn first_port_backend(&mut self, ingress: &ObjectKey, service: &ObjectKey) -> Option<BackendId> {
        let Some(port) = self.resolver.first_port(service) else {
            let why = if self.snapshot.services.contains_key(service) {
                "has no port"
            } else {
                "does not exist"
            };
            self.diags.push(
                ObjectRef::ingress(ingress),
                Severity::Warning,
                Reason::ServiceNotFound,
                format!("default-backend: Service {service} {why}; the annotation is not used"),
            );
            return None;
        };
        Some(self.resolver.service(service, port).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{Options, compile, recompile_endpoints};
    use crate::config::Config;
    use crate::fixture::{self, Prefix};
    use crate::model::AnyObject;

    fn service(name: &str, ip: Option<&str>) -> Vec<AnyObject> {
        let mut v: Vec<AnyObject> = vec![fixture::service("default", name).port("http", 80).into()];
        if let Some(ip) = ip {
            v.push(
                fixture::slice("default", &format!("{name}-1"), name)
                    .port("http", 8080)
                    .endpoint(ip)
                    .into(),
            );
        }
        v
    }

    fn policy_of(cfg: &Config, ingress: &str) -> Arc<Policy> {
        cfg.route_list
            .iter()
            .find(|r| r.ingress.name == ingress)
            .unwrap()
            .policy
            .clone()
    }

    #[test]
    fn default_backend_and_error_pages_name_backends_that_endpoint_recompiles_keep() {
        let mut objects: Vec<AnyObject> = vec![fixture::portico_class().into()];
        objects.extend(service("app", None));
        objects.extend(service("fallback", Some("10.0.0.2")));
        objects.extend(service("global", Some("10.0.0.3")));
        let ingress = |name: &str, host: &str, notes: &[(&str, &str)]| -> AnyObject {
            notes
                .iter()
                .fold(
                    fixture::ingress("default", name)
                        .class("portico")
                        .rule(host, "/", Prefix, "app", 80),
                    |i, (k, v)| i.annotation(&format!("nginx.ingress.kubernetes.io/{k}"), v),
                )
                .into()
        };
        objects.push(ingress(
            "own",
            "a.test",
            &[("default-backend", "fallback"), ("custom-http-errors", "503,404")],
        ));
        objects.push(ingress("global", "b.test", &[("custom-http-errors", "502")]));
        let snap = fixture::snapshot(objects);
        let opts = Options {
            default_backend_service: Some(ObjectKey::new("default", "global")),
            ..Options::default()
        };
        let cfg = compile(&snap, &opts);
        assert!(cfg.diagnostics.is_empty(), "{:?}", cfg.diagnostics);
        let service_of = |cfg: &Config, id: BackendId| cfg.backends[id].service.name.clone();
        let own = policy_of(&cfg, "own");
        assert_eq!(service_of(&cfg, own.default_backend.unwrap()), "fallback");
        let pages = own.error_pages.as_ref().unwrap();
        assert_eq!(
            (pages.codes.as_slice(), service_of(&cfg, pages.backend)),
            (&[404, 503][..], "fallback".into())
        );
        let global = policy_of(&cfg, "global");
        assert_eq!(global.default_backend, None);
        assert_eq!(service_of(&cfg, global.error_pages.as_ref().unwrap().backend), "global");
        // An endpoints-only recompile keeps the backends where the policies point.
        let again = recompile_endpoints(&snap, &cfg, None);
        assert_eq!(again.route_list, cfg.route_list);
        for id in [own.default_backend.unwrap(), pages.backend] {
            assert_eq!(service_of(&again, id), "fallback");
        }
        assert_eq!(again.backends.len(), cfg.backends.len());
    }

    #[test]
    fn codes_are_three_digit_statuses_from_300_to_599() {
        assert_eq!(parse_codes("404,500"), Some(vec![404, 500]));
        assert_eq!(parse_codes(" 503 , 404, 503"), Some(vec![404, 503]));
        for bad in ["", "404,", "200", "600", "40", "4040", "+404", "abc", "404;500", "٤٠٤"] {
            assert_eq!(parse_codes(bad), None, "{bad:?}");
        }
        let all: Vec<String> = (300..=599).map(|c: u16| c.to_string()).collect();
        assert_eq!(parse_codes(&all[..100].join(",")).map(|c| c.len()), Some(100));
        assert_eq!(parse_codes(&all[..101].join(",")), None);
    }

    #[test]
    fn service_names_are_dns_labels() {
        assert!(service_name("custom-errors"));
        assert!(service_name("e404"));
        for bad in ["", "Errors", "-x", "x-", "9x", "ns/x", "x.y", &"a".repeat(64)] {
            assert!(!service_name(bad), "{bad:?}");
        }
    }
}
