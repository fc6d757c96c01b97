//! The HTTPS listener's settings in ingress-nginx's syntax: `ssl-protocols` and `ssl-ciphers`
//! (OpenSSL names mapped to rustls's suites), as flags and `--configmap` keys give them.

use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};

/// Protocol versions and cipher suites of the HTTPS listener.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// `None`: the crypto provider's suites, in its order.
    pub cipher_suites: Option<Vec<SupportedCipherSuite>>,
    /// `ssl-session-*` from the `--configmap`; unset ones keep the flags' values.
    pub session: SslSession,
    /// `ssl-prefer-server-ciphers`: the first suite of the server's list that the client
    /// offers, not the client's favourite. On by default, as ingress-nginx's `http` block
    /// sets it.
    pub prefer_server_ciphers: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            cipher_suites: None,
            session: SslSession::default(),
            prefer_server_ciphers: true,
        }
    }
}

/// TLS session resumption as the `--configmap` sets it (`None`: `--tls-session-cache`,
/// `--tls-session-timeout`, and no stateless tickets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SslSession {
    /// `ssl-session-cache: "false"` is `Some(0)`; else `ssl-session-cache-size` in sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
    /// `ssl-session-timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<std::time::Duration>,
    /// `ssl-session-tickets`: stateless TLS 1.3 tickets (sealed with a key Portico makes and
    /// rotates) instead of tickets that name a session in the cache.
    pub tickets: bool,
}

impl SslSession {
    /// nginx's "one megabyte of the cache contains about 4000 sessions".
    pub const SESSIONS_PER_MIB: u64 = 4000;
    /// The largest `ssl-session-cache-size`, in bytes.
    pub const MAX_CACHE_BYTES: u64 = 100 << 20;
    /// The longest `ssl-session-timeout` (as `--tls-session-timeout`).
    pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
}

/// `ssl-protocols`: space-separated `TLSv1.2` and `TLSv1.3` (ingress-nginx's default is both).
/// Older versions are refused: rustls implements none of them.
pub fn parse_protocols(v: &str) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let mut out: Vec<&'static SupportedProtocolVersion> = Vec::new();
    for token in v
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
    {
        let version = match token {
            "TLSv1.3" => &rustls::version::TLS13,
            "TLSv1.2" => &rustls::version::TLS12,
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => {
                return Err(format!(
                    "{token} is not supported: Portico (rustls) speaks TLS 1.2 and TLS 1.3 only; use \"TLSv1.2 TLSv1.3\" or \"TLSv1.3\""
                ));
            }
            _ => return Err(format!("{token:?} is not a protocol: use TLSv1.2 and/or TLSv1.3")),
        };
        if !out.contains(&version) {
            out.push(version);
        }
    }
    if out.is_empty() {
        return Err("no protocol given: use \"TLSv1.2 TLSv1.3\" or \"TLSv1.3\"".into());
    }
    // Newest first, as rustls orders them.
    out.sort_by_key(|v| std::cmp::Reverse(u16::from(v.version)));
    Ok(out)
}

/// OpenSSL's names of the suites rustls implements (TLS 1.3 names are the IANA ones, as
/// OpenSSL's `Ciphersuites` setting takes them).
const NAMES: &[(&str, CipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    ("TLS_AES_128_GCM_SHA256", CipherSuite::TLS13_AES_128_GCM_SHA256),
    ("TLS_AES_256_GCM_SHA384", CipherSuite::TLS13_AES_256_GCM_SHA384),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

/// OpenSSL suites that ingress-nginx's default and Mozilla's "intermediate" and "old" lists
/// name and rustls does not implement (finite-field DHE, CBC, static RSA, 3DES): skipped
/// with a warning, so that a list copied from ingress-nginx still works.
const NOT_IN_RUSTLS: &[&str] = &[
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-SHA256",
    "DHE-RSA-AES256-SHA256",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA256",
    "AES256-SHA256",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

/// `ssl-ciphers`: an OpenSSL cipher list (`:`, `,` or space separated) → the provider's
/// suites in that order, and warnings for what is skipped. A TLS 1.3 suite named there limits
/// TLS 1.3 to the named ones; without any, every TLS 1.3 suite stays (nginx's `ssl_ciphers`
/// does not touch TLS 1.3 either). Unknown names are an error, so that a typo does not
/// quietly weaken the list.
pub fn parse_ciphers(
    v: &str,
    provider: &rustls::crypto::CryptoProvider,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<(Vec<SupportedCipherSuite>, Vec<String>), String> {
    let mut tls12 = Vec::new();
    let mut tls13 = Vec::new();
    let mut warnings = Vec::new();
    for token in v
        .split(|c: char| c == ':' || c == ',' || c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
    {
        if let Some((_, id)) = NAMES.iter().find(|(n, _)| *n == token) {
            let Some(suite) = provider.cipher_suites.iter().find(|s| s.suite() == *id) else {
                warnings.push(format!("cipher {token} is not offered by the crypto provider; skipped"));
                continue;
            };
            let list = if suite.version() == &rustls::version::TLS13 {
                &mut tls13
            } else {
                &mut tls12
            };
            if !list.contains(suite) {
                list.push(*suite);
            }
        } else if NOT_IN_RUSTLS.contains(&token) {
            warnings.push(format!(
                "cipher {token} is not implemented by rustls (no finite-field DHE, CBC or static-RSA suites); skipped"
            ));
        } else if token.starts_with(['!', '-', '+', '@'])
            || token.contains('+')
            || token.chars().all(|c| c.is_ascii_uppercase())
        {
            warnings.push(format!(
                "{token}: OpenSSL cipher-string keywords and operators are not supported, only suite names; skipped"
            ));
        } else {
            return Err(format!(
                "{token:?} is not a cipher suite name Portico knows; supported: {}",
                NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let wants12 = versions.contains(&&rustls::version::TLS12);
    let wants13 = versions.contains(&&rustls::version::TLS13);
    if wants12 && tls12.is_empty() {
        return Err("no TLS 1.2 cipher suite left in --ssl-ciphers while TLS 1.2 is enabled (--ssl-protocols)".into());
    }
    if wants13 && tls13.is_empty() {
        tls13 = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
    }
    Ok((tls13.into_iter().chain(tls12).collect(), warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> rustls::crypto::CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    #[test]
    fn protocols() {
        let both = parse_protocols("TLSv1.2 TLSv1.3").unwrap();
        assert_eq!(both, vec![&rustls::version::TLS13, &rustls::version::TLS12]);
        assert_eq!(parse_protocols(" TLSv1.3 ").unwrap(), vec![&rustls::version::TLS13]);
        assert_eq!(parse_protocols("TLSv1.2").unwrap(), vec![&rustls::version::TLS12]);
        let e = parse_protocols("TLSv1 TLSv1.1 TLSv1.2 TLSv1.3").unwrap_err();
        assert!(
            e.contains("TLSv1 is not supported") && e.contains("TLS 1.2 and TLS 1.3 only"),
            "{e}"
        );
        assert!(parse_protocols("TLSv1.4").is_err());
        assert!(parse_protocols("").is_err());
    }

    #[test]
    fn ingress_nginx_default_cipher_list() {
        // ingress-nginx's default ssl-ciphers: its two DHE suites are skipped with warnings.
        let list = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256";
        let all = TlsOptions::default().versions;
        let (suites, warnings) = parse_ciphers(list, &provider(), &all).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let tls12: Vec<_> = suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .collect();
        assert_eq!(tls12.len(), 6);
        assert_eq!(tls12[0].suite(), CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
        // TLS 1.3 untouched: all three.
        assert_eq!(suites.len(), 9);
    }

    #[test]
    fn cipher_choices_and_errors() {
        let all = TlsOptions::default().versions;
        let (s, w) = parse_ciphers(
            "ECDHE-ECDSA-CHACHA20-POLY1305 TLS_AES_256_GCM_SHA384 !aNULL HIGH",
            &provider(),
            &all,
        )
        .unwrap();
        assert_eq!(
            s.iter().map(|s| s.suite()).collect::<Vec<_>>(),
            vec![
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            ]
        );
        assert_eq!(w.len(), 2, "{w:?}");
        let e = parse_ciphers("ECDHE-RSA-AES128-GMC-SHA256", &provider(), &all).unwrap_err();
        assert!(
            e.contains("ECDHE-RSA-AES128-GMC-SHA256") && e.contains("supported:"),
            "{e}"
        );
        // TLS 1.2 on but no TLS 1.2 suite left.
        assert!(parse_ciphers("DHE-RSA-AES128-GCM-SHA256", &provider(), &all).is_err());
        let only13 = [&rustls::version::TLS13];
        let (s, _) = parse_ciphers("TLS_CHACHA20_POLY1305_SHA256", &provider(), &only13).unwrap();
        assert_eq!(s.len(), 1);
    }
}
