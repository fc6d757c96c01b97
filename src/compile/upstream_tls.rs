//! `proxy-ssl-*` annotations → [`UpstreamTls`]: the Secret's `ca.crt`, `tls.crt` and
//! `tls.key` parsed into DER, the verify switch and depth, the name, SNI, protocols and the
//! OpenSSL cipher list mapped to rustls's suites. What cannot be honoured denies (503) with a
//! Warning; verification is never dropped silently.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::annotations::Annotations;
use super::auth::secret_key;
use super::ingress::annotation;
use super::mtls::pem_blocks;
use crate::config::diagnostic::{ObjectRef, Reason, Severity};
use crate::config::upstream_tls::{ClientCert, Der, KeyForm, PrivateKey, Protocols, Tls12Suite, UpstreamTls, Verify};

/// The annotations that only mean something with `proxy-ssl-secret`.
const DEPENDENT: [&str; 6] = [
    "proxy-ssl-verify",
    "proxy-ssl-verify-depth",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
    "proxy-ssl-protocols",
    "proxy-ssl-ciphers",
];

/// `proxy-ssl-protocols`: `TLSv1.2` and `TLSv1.3`, space-separated. Returns the versions and
/// one note per word not used; `Err` when no usable version is left.
pub fn parse_protocols(v: &str) -> Result<(Protocols, Vec<String>), String> {
    let mut p = Protocols {
        tls12: false,
        tls13: false,
    };
    let mut notes = Vec::new();
    for word in v.split_ascii_whitespace() {
        match word {
            "TLSv1.2" => p.tls12 = true,
            "TLSv1.3" => p.tls13 = true,
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => notes.push(format!(
                "{word} is not available (rustls speaks TLS 1.2 and 1.3 only); ignored"
            )),
            other => notes.push(format!("{:?} is not a TLS protocol version; ignored", clip(other))),
        }
    }
    if !p.tls12 && !p.tls13 {
        return Err("names neither TLSv1.2 nor TLSv1.3".into());
    }
    Ok((p, notes))
}

/// What an OpenSSL cipher-list word selects among rustls's TLS 1.2 suites: `Some` for a word
/// OpenSSL knows (an empty list when rustls has none of its suites), `None` for an unknown word.
fn select(word: &str) -> Option<Vec<Tls12Suite>> {
    use Tls12Suite::*;
    if let Some(s) = Tls12Suite::ALL.iter().find(|s| s.openssl_name() == word) {
        return Some(vec![*s]);
    }
    let all = Tls12Suite::ALL.to_vec();
    let set = match word {
        "DEFAULT" | "ALL" | "HIGH" | "ECDHE" | "EECDH" | "kECDHE" | "kEECDH" | "AEAD" | "TLSv1.2" | "FIPS" => all,
        "aECDSA" | "ECDSA" => vec![EcdheEcdsaAes256Gcm, EcdheEcdsaAes128Gcm, EcdheEcdsaChacha20],
        "aRSA" => vec![EcdheRsaAes256Gcm, EcdheRsaAes128Gcm, EcdheRsaChacha20],
        "AES" | "AESGCM" => vec![
            EcdheEcdsaAes256Gcm,
            EcdheEcdsaAes128Gcm,
            EcdheRsaAes256Gcm,
            EcdheRsaAes128Gcm,
        ],
        "AES128" => vec![EcdheEcdsaAes128Gcm, EcdheRsaAes128Gcm],
        "AES256" => vec![EcdheEcdsaAes256Gcm, EcdheRsaAes256Gcm],
        "SHA384" => vec![EcdheEcdsaAes256Gcm, EcdheRsaAes256Gcm],
        "SHA256" => vec![
            EcdheEcdsaAes128Gcm,
            EcdheRsaAes128Gcm,
            EcdheEcdsaChacha20,
            EcdheRsaChacha20,
        ],
        "CHACHA20" => vec![EcdheEcdsaChacha20, EcdheRsaChacha20],
        // Families OpenSSL knows whose suites rustls does not implement.
        "aNULL"
        | "eNULL"
        | "NULL"
        | "COMPLEMENTOFALL"
        | "COMPLEMENTOFDEFAULT"
        | "MEDIUM"
        | "LOW"
        | "EXPORT"
        | "EXP"
        | "MD5"
        | "RC4"
        | "DES"
        | "3DES"
        | "IDEA"
        | "SEED"
        | "CAMELLIA"
        | "CAMELLIA128"
        | "CAMELLIA256"
        | "ARIA"
        | "ARIA128"
        | "ARIA256"
        | "DSS"
        | "aDSS"
        | "DH"
        | "DHE"
        | "EDH"
        | "kDHE"
        | "ADH"
        | "AECDH"
        | "kRSA"
        | "RSA"
        | "PSK"
        | "kPSK"
        | "aPSK"
        | "ECDHEPSK"
        | "DHEPSK"
        | "RSAPSK"
        | "SRP"
        | "kSRP"
        | "aSRP"
        | "SHA1"
        | "SHA"
        | "AESCCM"
        | "AESCCM8"
        | "CCM"
        | "CBC"
        | "GOST"
        | "kGOST"
        | "aGOST"
        | "SUITEB128"
        | "SUITEB192"
        | "SUITEB128ONLY"
        | "aECDH"
        | "kECDH"
        | "ECDH"
        | "TLSv1"
        | "SSLv3"
        | "kEDH" => vec![],
        _ => return None,
    };
    Some(set)
}

/// `proxy-ssl-ciphers`, an OpenSSL cipher list (`HIGH:!aNULL`, `ECDHE-RSA-AES128-GCM-SHA256`,
/// `ECDHE+AESGCM`, `-X`, `!X`, `+X`; `@STRENGTH` and `@SECLEVEL=n` have no effect) mapped onto
/// the TLS 1.2 suites rustls offers. Returns the suites and one note per word naming only
/// suites rustls lacks; `Err` when the list is malformed or selects none.
pub fn parse_ciphers(v: &str) -> Result<(Vec<Tls12Suite>, Vec<String>), String> {
    // ingress-nginx accepts these characters only.
    if v.is_empty() || v.len() > 4096 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"+:_-!@=.".contains(&b)) {
        return Err("not an OpenSSL cipher list".into());
    }
    let mut chosen: Vec<Tls12Suite> = Vec::new();
    let mut banned: Vec<Tls12Suite> = Vec::new();
    let mut notes = Vec::new();
    for word in v.split([':', ',']).filter(|w| !w.is_empty()) {
        if word.starts_with('@') {
            continue;
        }
        let (op, body) = match word.as_bytes()[0] {
            b'!' | b'-' | b'+' => (word.as_bytes()[0], &word[1..]),
            _ => (b' ', word),
        };
        // `A+B`: the suites in both.
        let mut set: Option<Vec<Tls12Suite>> = None;
        for part in body.split('+') {
            let Some(s) = select(part) else {
                if op == b' ' || op == b'+' {
                    notes.push(format!(
                        "{:?} is not a cipher rustls offers to upstreams; ignored",
                        clip(word)
                    ));
                }
                set = Some(vec![]);
                break;
            };
            set = Some(match set {
                None => s,
                Some(have) => have.into_iter().filter(|x| s.contains(x)).collect(),
            });
        }
        let set = set.unwrap_or_default();
        match op {
            b'!' => {
                chosen.retain(|s| !set.contains(s));
                banned.extend(set);
            }
            b'-' => chosen.retain(|s| !set.contains(s)),
            // `+X` moves the chosen suites of X to the end.
            b'+' => {
                let (moved, kept): (Vec<_>, Vec<_>) = chosen.iter().partition(|s| set.contains(s));
                chosen = kept.into_iter().chain(moved).collect();
            }
            _ => {
                for s in set {
                    if !chosen.contains(&s) && !banned.contains(&s) {
                        chosen.push(s);
                    }
                }
            }
        }
    }
    if chosen.is_empty() {
        return Err("selects none of the TLS 1.2 cipher suites rustls offers".into());
    }
    Ok((chosen, notes))
}

/// A user's word in a diagnostic, cut short.
pub(crate) fn clip(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `ca.crt`: every PEM certificate must parse as a trust anchor.
pub(crate) fn parse_cas(pem: &[u8]) -> Result<Arc<[Der]>, String> {
    let certs: Vec<CertificateDer<'static>> = pem_blocks(pem, "ca.crt", "CERTIFICATE")?;
    for cert in &certs {
        webpki::anchor_from_trusted_cert(cert)
            .map_err(|e| format!("ca.crt holds a certificate that cannot be a trust anchor: {e}"))?;
    }
    Ok(certs.iter().map(|c| Der::from(c.as_ref())).collect())
}

/// `tls.crt` (the chain, leaf first) and `tls.key`, checked to belong together.
pub(crate) fn parse_client_cert(crt: &[u8], key: &[u8]) -> Result<ClientCert, String> {
    let chain: Vec<CertificateDer<'static>> = pem_blocks(crt, "tls.crt", "CERTIFICATE")?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("tls.key is not a PEM private key: {e}"))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| format!("tls.key cannot be used: {e}"))?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) = certified.keys_match() {
        return Err("tls.key does not match the certificate in tls.crt".into());
    }
    let (form, der) = match &key {
        PrivateKeyDer::Pkcs1(k) => (KeyForm::Pkcs1, k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(k) => (KeyForm::Sec1, k.secret_sec1_der()),
        PrivateKeyDer::Pkcs8(k) => (KeyForm::Pkcs8, k.secret_pkcs8_der()),
        _ => return Err("tls.key is in a form that cannot be used".into()),
    };
    Ok(ClientCert {
        chain: chain.iter().map(|c| Der::from(c.as_ref())).collect(),
        key: PrivateKey {
            form,
            der: Der::from(der),
        },
    })
}

/// `proxy-ssl-name`: a DNS name or an IP address.
fn server_name(v: &str) -> Option<Arc<str>> {
    (v.len() <= 253 && !v.contains('*') && ServerName::try_from(v).is_ok()).then(|| Arc::from(v.to_ascii_lowercase()))
}

fn on_off(v: &str) -> Option<bool> {
    match v {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

impl Annotations<'_> {
    fn upstream_tls_warning(&mut self, reason: Reason, msg: String) {
        self.diags
            .push(ObjectRef::ingress(self.key), Severity::Warning, reason, msg);
    }

    /// TLS settings for the route's HTTPS/GRPCS upstream, when a `proxy-ssl-*` annotation asks.
    pub fn upstream_tls(&mut self) -> Option<Arc<UpstreamTls>> {
        let mut tls = UpstreamTls {
            secret: None,
            denied: None,
            verify: None,
            client_cert: None,
            name: None,
            server_name: false,
            protocols: Protocols::default(),
            ciphers: None,
        };
        let deny = |this: &mut Self, mut tls: UpstreamTls, reason: Reason, why: String| {
            let msg = format!("TLS to the upstream: {why}; every request to this Ingress is answered 503");
            this.upstream_tls_warning(reason, msg.clone());
            tls.denied = Some(msg.into());
            Some(Arc::new(tls))
        };
        // A value that is neither on nor off may have meant on: it denies rather than leaving
        // the backend unverified (ingress-nginx takes it for off).
        let verify = match annotation(self.ing, "proxy-ssl-verify").map(|(p, v)| (p, on_off(v.trim()))) {
            None => false,
            Some((_, Some(v))) => v,
            Some((prefix, None)) => {
                let why = format!("{prefix}proxy-ssl-verify is neither \"on\" nor \"off\"");
                return deny(self, tls, Reason::InvalidAnnotation, why);
            }
        };
        let Some((prefix, name)) = annotation(self.ing, "proxy-ssl-secret") else {
            // ingress-nginx reads none of the others without the Secret. Verification asked
            // for without a CA is refused rather than dropped.
            if verify {
                return deny(
                    self,
                    tls,
                    Reason::InvalidAnnotation,
                    "proxy-ssl-verify is on without proxy-ssl-secret (its ca.crt holds the CAs to verify with)".into(),
                );
            }
            for dependent in DEPENDENT {
                if let Some((prefix, _)) = annotation(self.ing, dependent) {
                    self.upstream_tls_warning(
                        Reason::InvalidAnnotation,
                        format!(
                            "annotation {prefix}{dependent} has no effect without {prefix}proxy-ssl-secret (as in ingress-nginx)"
                        ),
                    );
                }
            }
            return None;
        };
        let key = match secret_key(name, self.key, &format!("{prefix}proxy-ssl-secret")) {
            Ok(key) => key,
            Err(why) => return deny(self, tls, Reason::InvalidAnnotation, why),
        };
        tls.secret = Some(key.to_string().into());
        let Some(secret) = self.secrets.get(&key) else {
            return deny(
                self,
                tls,
                Reason::SecretNotFound,
                format!("Secret {key} does not exist"),
            );
        };
        let fields = super::tls::secret_fields(secret);
        let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let (ca, crt, pem_key) = (field("ca.crt"), field("tls.crt"), field("tls.key"));
        let bad = |why: String| format!("Secret {key}: {why}");
        match (crt, pem_key) {
            (Some(crt), Some(k)) => match parse_client_cert(crt, k) {
                Ok(c) => tls.client_cert = Some(c),
                Err(why) => return deny(self, tls, Reason::InvalidCertificate, bad(why)),
            },
            (None, None) => {}
            (Some(_), None) => {
                return deny(
                    self,
                    tls,
                    Reason::InvalidCertificate,
                    bad("has tls.crt without tls.key".into()),
                );
            }
            (None, Some(_)) => {
                return deny(
                    self,
                    tls,
                    Reason::InvalidCertificate,
                    bad("has tls.key without tls.crt".into()),
                );
            }
        }
        let roots = match ca.map(parse_cas) {
            Some(Ok(roots)) => Some(roots),
            Some(Err(why)) => return deny(self, tls, Reason::InvalidCertificate, bad(why)),
            None if tls.client_cert.is_none() => {
                let why = bad("holds neither ca.crt nor tls.crt and tls.key".into());
                return deny(self, tls, Reason::InvalidCertificate, why);
            }
            None => None,
        };
        let depth = self
            .parsed(
                "proxy-ssl-verify-depth",
                &format!("a whole number up to {}", Verify::MAX_DEPTH),
                &format!("using {}", Verify::DEFAULT_DEPTH),
                |v| v.parse::<u8>().ok().filter(|d| *d <= Verify::MAX_DEPTH),
            )
            // ingress-nginx takes 0 for the default.
            .filter(|d| *d > 0)
            .unwrap_or(Verify::DEFAULT_DEPTH);
        if verify {
            let Some(roots) = roots else {
                let why = bad("has no ca.crt, which proxy-ssl-verify: on needs".into());
                return deny(self, tls, Reason::InvalidCertificate, why);
            };
            tls.verify = Some(Verify {
                roots,
                depth,
                subject_alt_names: Arc::new([]),
            });
        }
        tls.name = self.parsed(
            "proxy-ssl-name",
            "a DNS name or an IP address",
            "the endpoint's address is verified and no SNI is sent",
            server_name,
        );
        tls.server_name = self
            .parsed("proxy-ssl-server-name", "\"on\" or \"off\"", "no SNI is sent", on_off)
            .unwrap_or(false);
        if let Some((p, notes)) = self.parsed(
            "proxy-ssl-protocols",
            "a list of TLSv1.2 and TLSv1.3",
            "using TLSv1.2 TLSv1.3",
            |v| parse_protocols(v).ok(),
        ) {
            tls.protocols = p;
            self.notes("proxy-ssl-protocols", notes);
        }
        if let Some((suites, notes)) = self.parsed(
            "proxy-ssl-ciphers",
            "an OpenSSL cipher list selecting a TLS 1.2 suite rustls offers (ECDHE with AES-GCM or CHACHA20-POLY1305)",
            "every suite is offered",
            |v| parse_ciphers(v).ok(),
        ) {
            // The default order means "no restriction": keep the common value small.
            tls.ciphers = (suites != Tls12Suite::ALL).then_some(suites);
            self.notes("proxy-ssl-ciphers", notes);
        }
        Some(Arc::new(tls))
    }

    fn notes(&mut self, name: &str, notes: Vec<String>) {
        let prefix = annotation(self.ing, name).map_or("", |(p, _)| p);
        for note in notes {
            self.upstream_tls_warning(Reason::InvalidAnnotation, format!("annotation {prefix}{name}: {note}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Tls12Suite::*;

    #[test]
    fn protocols() {
        let (p, notes) = parse_protocols("TLSv1.2 TLSv1.3").unwrap();
        assert!(p.tls12 && p.tls13 && notes.is_empty());
        let (p, notes) = parse_protocols("  TLSv1.3 ").unwrap();
        assert!(!p.tls12 && p.tls13 && notes.is_empty());
        let (p, notes) = parse_protocols("TLSv1 TLSv1.1 TLSv1.2").unwrap();
        assert!(p.tls12 && !p.tls13);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("not available"));
        assert!(parse_protocols("TLSv1.1").is_err());
        assert!(parse_protocols("").is_err());
        let (_, notes) = parse_protocols("TLSv1.2 bogus").unwrap();
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn ciphers() {
        let all = |v| parse_ciphers(v).unwrap().0;
        assert_eq!(all("DEFAULT"), Tls12Suite::ALL);
        assert_eq!(all("HIGH:!aNULL:!MD5"), Tls12Suite::ALL);
        // ingress-nginx's e2e value: no AES leaves ChaCha20.
        assert_eq!(all("HIGH:!AES"), [EcdheEcdsaChacha20, EcdheRsaChacha20]);
        assert_eq!(all("ECDHE-RSA-AES128-GCM-SHA256"), [EcdheRsaAes128Gcm]);
        assert_eq!(
            all("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"),
            [EcdheRsaAes128Gcm, EcdheEcdsaAes256Gcm]
        );
        assert_eq!(all("ECDHE+AESGCM+AES128"), [EcdheEcdsaAes128Gcm, EcdheRsaAes128Gcm]);
        assert_eq!(
            all("ALL:-aRSA:aRSA+CHACHA20"),
            [
                EcdheEcdsaAes256Gcm,
                EcdheEcdsaAes128Gcm,
                EcdheEcdsaChacha20,
                EcdheRsaChacha20
            ]
        );
        assert_eq!(
            all("ALL:!aRSA:aRSA"),
            [EcdheEcdsaAes256Gcm, EcdheEcdsaAes128Gcm, EcdheEcdsaChacha20]
        );
        assert_eq!(all("AES:CHACHA20:+AES")[..2], [EcdheEcdsaChacha20, EcdheRsaChacha20]);
        assert_eq!(all("HIGH:@STRENGTH"), Tls12Suite::ALL);
        // Suites rustls does not implement: noted, the rest used.
        let (s, notes) = parse_ciphers("DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305").unwrap();
        assert_eq!(s, [EcdheRsaChacha20]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        // Excluding what rustls lacks is fine and silent.
        assert!(parse_ciphers("HIGH:!DHE:!3DES").unwrap().1.is_empty());
        assert!(parse_ciphers("AES128-SHA").is_err());
        assert!(parse_ciphers("RC4:MD5").is_err());
        assert!(parse_ciphers("HIGH;rm -rf").is_err());
        assert!(parse_ciphers("").is_err());
        assert!(parse_ciphers("!").is_err());
        assert!(parse_ciphers("+").is_err());
        assert!(parse_ciphers("-:+:!:@").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(server_name("Backend.Internal").as_deref(), Some("backend.internal"));
        assert!(server_name("10.0.0.1").is_some());
        assert!(server_name("*.internal").is_none());
        assert!(server_name("bad name").is_none());
        assert!(server_name("").is_none());
    }

    #[test]
    fn secrets_material() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["backend.internal".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let c = parse_client_cert(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(c.chain.len(), 1);
        assert_eq!(c.key.form, KeyForm::Pkcs8);
        let other = rcgen::KeyPair::generate().unwrap();
        assert!(parse_client_cert(cert.pem().as_bytes(), other.serialize_pem().as_bytes()).is_err());
        assert!(parse_client_cert(b"junk", key.serialize_pem().as_bytes()).is_err());
        assert!(parse_client_cert(cert.pem().as_bytes(), b"junk").is_err());
        // A self-signed leaf is still a usable trust anchor.
        assert_eq!(parse_cas(cert.pem().as_bytes()).unwrap().len(), 1);
        assert!(parse_cas(b"").is_err());
        assert!(parse_cas(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }
}
