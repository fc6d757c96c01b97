//! One request's endpoint choice: affinity first (the route's cookie affinity, else the
//! Service's ClientIP affinity), then the route's algorithm for new sessions and retries,
//! and afterwards what the session must remember (a Set-Cookie, a ClientIP pin).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use http::HeaderMap;
use http::header::{self, HeaderValue};

use super::affinity::{random_key, request_cookie, set_cookie};
use super::table::BackendState;
use super::{Tracked, now_ns, pick};
use crate::config::policy::Mode;
use crate::config::{Backend, Endpoint, Route};

/// The endpoints one request chooses among. Indexes count `ready` first, then `terminating`;
/// `states` holds the runtime state of each, in the same order.
pub struct Choice<'a, E> {
    pub route: &'a Route,
    pub backend: &'a Backend,
    pub table: &'a BackendState<E>,
    pub ready: &'a [Endpoint],
    pub terminating: &'a [Endpoint],
    pub states: &'a [Arc<E>],
}

/// What affinity decided before the request went upstream.
#[derive(Default)]
pub struct Sticky {
    /// The endpoint the session or client is pinned to.
    pub index: Option<usize>,
    /// The request carried no usable session cookie: the response sets one.
    new_session: bool,
    /// Balanced mode: the new session's key.
    key: Option<String>,
    /// ClientIP affinity: the client to pin.
    client: Option<IpAddr>,
    user_agent: Option<HeaderValue>,
}

impl<'a, E: Tracked> Choice<'a, E> {
    pub fn endpoint(&self, i: usize) -> Option<&'a Endpoint> {
        match i.checked_sub(self.ready.len()) {
            None => self.ready.get(i),
            Some(t) => self.terminating.get(t),
        }
    }

    /// The runtime state of endpoint `i`.
    pub fn state(&self, i: usize) -> Option<&'a Arc<E>> {
        self.states.get(i)
    }

    fn is_down(&self, i: usize, now: u64) -> bool {
        self.states.get(i).is_some_and(|s| s.state().is_down(now))
    }

    /// Most tries of one request: endpoints, each once (`proxy-next-upstream-tries`), or
    /// tries of the backend (a Gateway `retry`'s attempts and the first try).
    pub fn tries(&self) -> usize {
        let policy = &self.route.policy;
        // A Gateway `retry` counts tries of the backend, which may go to one endpoint again.
        if policy.next_upstream.revisit {
            return policy.tries.max(1);
        }
        policy.tries.min(self.ready.len() + self.terminating.len()).max(1)
    }

    /// The endpoint affinity pins this request to, if any. `client` gives the client
    /// address (after trusted X-Forwarded-For) and is only asked for ClientIP affinity.
    pub fn sticky(&self, headers: &HeaderMap, client: impl FnOnce() -> IpAddr, key: &hmac::Key, now: u64) -> Sticky {
        let mut s = Sticky::default();
        if let Some(cfg) = &self.route.policy.affinity {
            if cfg.conditional_same_site_none {
                s.user_agent = headers.get(header::USER_AGENT).cloned();
            }
            let sent = request_cookie(headers, &cfg.name);
            // A canary route's cookies carry its tag after a `|` (see `proxy::policy::canary`).
            let sent = match &cfg.backend_tag {
                None => sent,
                Some(tag) => sent.and_then(|v| v.strip_suffix(tag.as_str())?.strip_suffix('|')),
            };
            let index = &self.table.affinity;
            match cfg.mode {
                Mode::Persistent => {
                    s.index = sent.and_then(|v| index.persistent(self.ready, self.terminating, key, v));
                    s.new_session = s.index.is_none();
                }
                Mode::Balanced => match sent {
                    Some(k) => s.index = index.balanced(self.ready, self.terminating, k),
                    None => {
                        // A new session: a random key, drawn again while it lands on an
                        // endpoint that takes no new sessions (terminating or failing).
                        let mut k = random_key();
                        for _ in 0..16 {
                            match index.balanced(self.ready, self.terminating, &k) {
                                Some(i) if i < self.ready.len() && !self.is_down(i, now) => {
                                    s.index = Some(i);
                                    break;
                                }
                                _ => k = random_key(),
                            }
                        }
                        s.new_session = true;
                        s.key = Some(k);
                    }
                },
            }
        } else if let (Some(_), Some(table)) = (self.backend.client_ip_affinity, &self.table.client_ip) {
            let client = client();
            s.index = table.get(client, now).and_then(|(addr, hint)| {
                match self.ready.get(hint) {
                    Some(e) if e.addr == addr => Some(hint),
                    // The Config changed since the client was pinned.
                    _ => self.table.affinity.ready_index(self.ready, addr),
                }
            });
            s.client = Some(client);
        }
        s
    }

    /// The endpoint for try number `attempt`: the pinned one first (unless it is in its
    /// failure backoff), else the route's algorithm over ready endpoints not yet `tried`.
    pub fn next(
        &self,
        sticky: &Sticky,
        attempt: usize,
        tried: &[usize],
        now: u64,
        rand: &mut impl FnMut() -> u64,
    ) -> Option<usize> {
        match sticky.index {
            Some(i) if attempt == 0 && i < self.states.len() && !self.is_down(i, now) => Some(i),
            _ => pick(
                self.route.policy.load_balance,
                &self.states[..self.ready.len().min(self.states.len())],
                tried,
                &self.table.rotation,
                now,
                rand,
            ),
        }
    }

    /// After endpoint `i` answered: the Set-Cookie a new or moved session needs, and the
    /// ClientIP pin refreshed.
    pub fn remember(&self, s: &Sticky, i: usize, https: bool, key: &hmac::Key) -> Option<HeaderValue> {
        if let (Some(client), Some(timeout), Some(table), Some(ep)) = (
            s.client,
            self.backend.client_ip_affinity,
            &self.table.client_ip,
            self.endpoint(i),
        ) {
            table.set(client, ep.addr, i, now_ns(), Duration::from_secs(u64::from(timeout)));
            return None;
        }
        let cfg = self.route.policy.affinity.as_ref()?;
        let moved = s.index.is_some_and(|pinned| pinned != i) && cfg.change_on_failure;
        let index = &self.table.affinity;
        let value = match cfg.mode {
            Mode::Persistent if s.new_session || moved => {
                index.id_of(self.ready, self.terminating, key, i)?.to_string()
            }
            Mode::Balanced if moved || (s.new_session && s.index != Some(i)) => {
                // A key that maps to the endpoint that answered.
                index
                    .balanced_key_for(self.ready, self.terminating, i)
                    .or_else(|| s.key.clone())?
            }
            Mode::Balanced if s.new_session => s.key.clone()?,
            _ => return None,
        };
        // A regex path is no cookie path: `session-cookie-path` says, else `/`.
        let path = match &self.route.path {
            Some(p) if p.regex.is_none() => p.path.as_str(),
            _ => "/",
        };
        let ua = s.user_agent.as_ref().and_then(|v| v.to_str().ok());
        let value = match &cfg.backend_tag {
            None => value,
            Some(tag) => format!("{value}|{tag}"),
        };
        set_cookie(cfg, &value, path, https, ua, SystemTime::now())
    }
}
