//! TLS termination: the SNI certificate resolver over the live store, and the server config.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
// tokio's clock (std's outside a paused test runtime), so that tests can age sessions.
use tokio::time::Instant;

use super::live::Live;
use crate::config::tls_options::SslSession;

/// Picks the certificate from the current Config's store on every handshake, so a new
/// Config rotates certificates without touching the listener.
#[derive(Debug)]
pub struct LiveCerts(pub Arc<Live>);

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("generation", &self.load().config.generation)
            .finish()
    }
}

impl ResolvesServerCert for LiveCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().config.certs.resolve(hello.server_name())
    }
}

/// TLS 1.2 and 1.3 only (or what `opts` narrows that to, with its cipher suites), ALPN h2
/// and http/1.1, certificates by SNI, sessions resumed from `sessions` (see [`Sessions`]);
/// client certificates as `client_auth` asks (rustls's `NoClientAuth`, or
/// `mtls::RequestClientCert` for hosts with an `auth-tls` policy).
pub fn server_config(
    live: Arc<Live>,
    sessions: Arc<Sessions>,
    opts: &super::tls_options::TlsOptions,
    client_auth: Arc<dyn ClientCertVerifier>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(suites) = &opts.cipher_suites {
        provider.cipher_suites.clone_from(suites);
    }
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&opts.versions)?
        .with_client_cert_verifier(client_auth)
        .with_cert_resolver(Arc::new(LiveCerts(live)));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.ignore_client_order = opts.prefer_server_ciphers;
    // One TLS 1.3 ticket per handshake, as Go's crypto/tls (so Traefik and Caddy) sends, and
    // OpenSSL after a resumed one; rustls's default of two costs every client a second ticket
    // to decode and store (measured: about 88k instructions more per resumed connection in
    // h2load). A client asking for more by RFC 9149 gets up to four.
    // `ssl-session-*` of the live Config, else the flags'.
    sessions.apply(&opts.session);
    let resume = sessions.capacity() > 0 || opts.session.tickets;
    cfg.send_tls13_tickets = if resume { 1 } else { 0 };
    cfg.max_tls13_tickets = if resume { 4 } else { 0 };
    if opts.session.tickets {
        cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    }
    cfg.session_storage = sessions;
    Ok(cfg)
}

/// Server-side TLS session cache (tickets carry only an id, as ingress-nginx's
/// `ssl-session-tickets: false`), bounded in number and age like its `ssl-session-cache-size`
/// and `ssl-session-timeout`: a resumption secret is kept at most `ttl`, the oldest session
/// goes first when the cache is full. rustls's own cache holds 256 sessions without expiry.
#[derive(Debug)]
pub struct Sessions {
    /// The flags' values, for when the ConfigMap sets none.
    default_capacity: usize,
    default_ttl: Duration,
    /// As the current TLS settings say (`ssl-session-cache(-size)`, `ssl-session-timeout`).
    capacity: AtomicUsize,
    ttl_nanos: AtomicU64,
    inner: Mutex<SessionMap>,
}

#[derive(Debug, Default)]
struct SessionMap {
    /// id → (secret state, stored at, insertion number).
    map: HashMap<Vec<u8>, (Vec<u8>, Instant, u64)>,
    /// Ids in insertion order with their insertion number; entries whose number no longer
    /// matches the map (taken or overwritten) are skipped and compacted away.
    order: VecDeque<(u64, Vec<u8>)>,
    next: u64,
}

impl Sessions {
    /// `capacity` 0 turns resumption off.
    pub fn new(capacity: usize, ttl: Duration) -> Arc<Self> {
        Arc::new(Sessions {
            default_capacity: capacity,
            default_ttl: ttl,
            capacity: AtomicUsize::new(capacity),
            ttl_nanos: AtomicU64::new(nanos(ttl)),
            inner: Mutex::new(SessionMap::default()),
        })
    }

    /// Takes the `--configmap`'s values, or the flags' for those it does not set. A smaller
    /// cache or a shorter timeout applies to the sessions already stored as they are looked up
    /// or the next one is stored.
    pub fn apply(&self, s: &SslSession) {
        let capacity = s.sessions.unwrap_or(self.default_capacity);
        self.capacity.store(capacity, Ordering::Relaxed);
        self.ttl_nanos
            .store(nanos(s.timeout.unwrap_or(self.default_ttl)), Ordering::Relaxed);
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    fn ttl(&self) -> Duration {
        Duration::from_nanos(self.ttl_nanos.load(Ordering::Relaxed))
    }

    fn lookup(&self, key: &[u8], remove: bool) -> Option<Vec<u8>> {
        let mut m = self.inner.lock().ok()?;
        let fresh = m.map.get(key)?.1.elapsed() < self.ttl();
        if remove || !fresh {
            let (value, ..) = m.map.remove(key)?;
            return fresh.then_some(value);
        }
        m.map.get(key).map(|(value, ..)| value.clone())
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl SessionMap {
    /// Drops sessions from the oldest end while `drop` says so for the live ones.
    fn evict(&mut self, mut drop: impl FnMut(&Instant, usize) -> bool) {
        while let Some((seq, key)) = self.order.front() {
            match self.map.get(key) {
                Some((_, at, s)) if s == seq => {
                    if !drop(at, self.map.len()) {
                        break;
                    }
                    self.map.remove(key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
    }
}

impl StoresServerSessions for Sessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let capacity = self.capacity();
        let Ok(mut m) = self.inner.lock() else { return false };
        if capacity == 0 {
            // Resumption turned off: what was stored goes too.
            m.map.clear();
            m.order.clear();
            return false;
        }
        let now = Instant::now();
        let ttl = self.ttl();
        m.evict(|at, len| len >= capacity || now.duration_since(*at) >= ttl);
        if m.order.len() >= capacity.saturating_mul(2) {
            let SessionMap { map, order, .. } = &mut *m;
            order.retain(|(seq, key)| map.get(key).is_some_and(|(_, _, s)| s == seq));
        }
        let seq = m.next;
        m.next += 1;
        m.order.push_back((seq, key.clone()));
        m.map.insert(key, (value, now, seq));
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lookup(key, false)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lookup(key, true)
    }

    fn can_cache(&self) -> bool {
        self.capacity() > 0
    }
}

/// The self-signed certificate used when nothing else covers a name.
pub fn self_signed(common_name: &str, organization: Option<&str>) -> Result<Arc<CertifiedKey>, String> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()]).map_err(|e| e.to_string())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(rcgen::DnType::OrganizationName, o);
    }
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Vec<u8> {
        vec![n; 32]
    }

    #[test]
    fn sessions_take_once_get_keeps() {
        let s = Sessions::new(8, Duration::from_secs(600));
        assert!(s.can_cache());
        assert!(s.put(id(1), b"one".to_vec()));
        assert_eq!(s.get(&id(1)).as_deref(), Some(&b"one"[..]));
        assert_eq!(s.get(&id(1)).as_deref(), Some(&b"one"[..]));
        assert_eq!(s.take(&id(1)).as_deref(), Some(&b"one"[..]));
        assert_eq!(s.take(&id(1)), None);
        assert_eq!(s.get(&id(1)), None);
        assert_eq!(s.get(&id(2)), None);
    }

    #[test]
    fn sessions_full_cache_drops_the_oldest() {
        let s = Sessions::new(3, Duration::from_secs(600));
        for n in 1..=3 {
            s.put(id(n), vec![n]);
        }
        // Overwriting 1 makes it the newest; 2 is now the oldest.
        s.put(id(1), vec![10]);
        s.put(id(4), vec![4]);
        assert_eq!(s.get(&id(2)), None);
        assert_eq!(s.get(&id(1)), Some(vec![10]));
        assert_eq!(s.get(&id(3)), Some(vec![3]));
        assert_eq!(s.get(&id(4)), Some(vec![4]));
        assert_eq!(s.inner.lock().unwrap().map.len(), 3);
    }

    #[test]
    fn sessions_follow_the_configmap_live() {
        let s = Sessions::new(8, Duration::from_secs(600));
        assert!(s.put(id(1), vec![1]));
        s.apply(&SslSession {
            sessions: Some(0),
            ..Default::default()
        });
        assert!(!s.can_cache());
        assert!(!s.put(id(2), vec![2]));
        assert_eq!(s.get(&id(1)), None, "turning the cache off empties it");
        s.apply(&SslSession {
            timeout: Some(Duration::ZERO),
            ..Default::default()
        });
        assert!(s.put(id(3), vec![3]));
        assert_eq!(s.get(&id(3)), None, "the new timeout applies");
        s.apply(&SslSession::default());
        assert!(s.put(id(4), vec![4]));
        assert_eq!(s.get(&id(4)), Some(vec![4]), "the flags' values again");
    }

    #[test]
    fn sessions_expire() {
        let s = Sessions::new(8, Duration::ZERO);
        s.put(id(1), vec![1]);
        assert_eq!(s.get(&id(1)), None);
        s.put(id(2), vec![2]);
        assert_eq!(s.take(&id(2)), None);
        // Expired sessions are dropped, not kept until the cache fills.
        s.put(id(3), vec![3]);
        assert_eq!(s.inner.lock().unwrap().map.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_last_their_ttl_and_no_longer() {
        let ttl = Duration::from_secs(1);
        let s = Sessions::new(8, ttl);
        s.put(id(1), vec![1]);
        s.put(id(2), vec![2]);
        tokio::time::advance(ttl - Duration::from_millis(1)).await;
        assert_eq!(s.get(&id(1)), Some(vec![1]));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(s.get(&id(1)), None);
        assert_eq!(s.take(&id(2)), None);
    }

    #[test]
    fn sessions_bookkeeping_stays_bounded_under_resumption() {
        // Each resumption takes one session and stores the next (TLS 1.3 single-use tickets).
        let s = Sessions::new(4, Duration::from_secs(600));
        s.put(id(0), vec![0]);
        for n in 1..=200u8 {
            assert_eq!(s.take(&id(n - 1)), Some(vec![n - 1]));
            s.put(id(n), vec![n]);
        }
        let m = s.inner.lock().unwrap();
        assert_eq!(m.map.len(), 1);
        assert!(m.order.len() <= 8, "{} ids kept", m.order.len());
    }

    #[test]
    fn sessions_off() {
        let s = Sessions::new(0, Duration::from_secs(600));
        assert!(!s.can_cache());
        assert!(!s.put(id(1), vec![1]));
        assert_eq!(s.get(&id(1)), None);
    }
}
