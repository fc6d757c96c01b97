//! Connections kept open to auth services (`auth-keepalive`): idle ones per service and
//! keepalive settings, most recently used first, each closed after its requests or when
//! idle for longer than its timeout. Runtime state of the data plane, never in Config.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1::SendRequest;

use crate::config::auth::AuthKeepalive;

/// The most pools (distinct auth services × settings) kept; past it idle connections of a
/// new pool are not kept. Pools come from the Config, never from requests.
const MAX_POOLS: usize = 4096;

/// Which connections may serve an auth request: same service, same settings.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub settings: AuthKeepalive,
}

/// A connection to an auth service, with how many requests it has carried. Dropping it
/// closes the connection at once, whatever state it is in (its task is aborted).
pub struct Conn {
    pub sender: SendRequest<Empty<Bytes>>,
    pub served: u32,
    task: tokio::task::AbortHandle,
}

impl Conn {
    /// `task` drives the connection.
    pub fn new(sender: SendRequest<Empty<Bytes>>, task: tokio::task::AbortHandle) -> Self {
        Self {
            sender,
            served: 0,
            task,
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    idle: VecDeque<Idle>,
    /// A task is closing this pool's connections as they time out.
    sweeping: bool,
}

/// Every auth service's idle connections.
#[derive(Clone, Default)]
pub struct Pools(Arc<Mutex<HashMap<Key, Pool>>>);

impl Pools {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Pool>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection for `key` that is still open.
    pub fn take(&self, key: &Key) -> Option<Conn> {
        let mut pools = self.lock();
        let pool = pools.get_mut(key)?;
        let now = Instant::now();
        while let Some(idle) = pool.idle.pop_back() {
            if !idle.conn.sender.is_closed() && now.saturating_duration_since(idle.since) < key.settings.timeout {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next auth request, unless it has carried its last one; past
    /// `idle` connections the least recently used is closed (dropping it closes it).
    pub fn put(&self, key: &Key, conn: Conn) {
        if conn.served >= key.settings.requests || conn.sender.is_closed() {
            return;
        }
        let mut pools = self.lock();
        if !pools.contains_key(key) && pools.len() >= MAX_POOLS {
            return;
        }
        let pool = pools.entry(key.clone()).or_default();
        pool.idle.push_back(Idle {
            conn,
            since: Instant::now(),
        });
        while pool.idle.len() > key.settings.idle as usize {
            pool.idle.pop_front();
        }
        if !pool.sweeping {
            pool.sweeping = true;
            tokio::spawn(sweep(self.clone(), key.clone()));
        }
    }

    /// How many idle connections `key` has (for tests).
    #[cfg(test)]
    fn idle(&self, key: &Key) -> usize {
        self.lock().get(key).map_or(0, |p| p.idle.len())
    }
}

/// Closes `key`'s connections as their idle time runs out; ends (and forgets the pool)
/// when none is left.
async fn sweep(pools: Pools, key: Key) {
    let timeout = key.settings.timeout;
    loop {
        let next = {
            let mut all = pools.lock();
            let Some(pool) = all.get_mut(&key) else { return };
            let now = Instant::now();
            // The oldest are in front.
            while pool
                .idle
                .front()
                .is_some_and(|i| now.saturating_duration_since(i.since) >= timeout || i.conn.sender.is_closed())
            {
                pool.idle.pop_front();
            }
            match pool.idle.front() {
                Some(oldest) => oldest.since + timeout,
                None => {
                    all.remove(&key);
                    return;
                }
            }
        };
        tokio::time::sleep_until(next.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn conn(listener: &tokio::net::TcpListener) -> (Conn, tokio::net::TcpStream) {
        let addr = listener.local_addr().unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (sender, c) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
        let mut conn = Conn::new(sender, tokio::spawn(c).abort_handle());
        conn.served = 1;
        (conn, server)
    }

    fn key(idle: u32, requests: u32) -> Key {
        Key {
            tls: false,
            host: "auth".into(),
            port: 80,
            settings: AuthKeepalive {
                idle,
                requests,
                timeout: Duration::from_secs(600),
            },
        }
    }

    #[tokio::test]
    async fn keeps_at_most_idle_and_never_a_spent_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pools = Pools::default();
        let k = key(2, 5);
        let mut servers = Vec::new();
        for _ in 0..3 {
            let (c, s) = conn(&listener).await;
            servers.push(s);
            pools.put(&k, c);
        }
        assert_eq!(pools.idle(&k), 2);
        let (mut spent, s) = conn(&listener).await;
        servers.push(s);
        spent.served = 5;
        pools.put(&k, spent);
        assert_eq!(pools.idle(&k), 2);
        assert!(pools.take(&k).is_some() && pools.take(&k).is_some());
        assert!(pools.take(&k).is_none());
        assert!(pools.take(&key(2, 6)).is_none(), "other settings, other pool");
    }
}
