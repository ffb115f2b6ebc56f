//! The keys of every JWT rule: inline ones as configured, remote ones (`jwksUri`) fetched by the
//! root context at start, again every `jwksRefreshInterval`, and once more (rate limited) when a
//! token names an unknown key. The last good key set is kept when a fetch fails.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::jwt::jwks::Jwks;
use crate::jwt::{JwtConfig, KeySource, KeyStore, Keys};

/// A failed fetch is tried again after this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// A token naming an unknown `kid` triggers at most one refetch per rule in this window.
pub const UNKNOWN_KID_REFETCH_EVERY: Duration = Duration::from_secs(30);

/// Which fetch of a remote key set is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// The issuer's OpenID discovery document (it names the keys' URL).
    Discovery,
    /// The key set itself.
    Keys,
}

#[derive(Debug, Default)]
struct Remote {
    jwks: Option<Rc<Jwks>>,
    fetched_at: Option<SystemTime>,
    /// The last attempt failed (the old keys, if any, stay in use).
    failed: bool,
    next_attempt: Option<SystemTime>,
    in_flight: Option<(u32, Fetch)>,
    last_unknown_kid_refetch: Option<SystemTime>,
    /// The next fetch was asked for by an unknown `kid`.
    forced: bool,
    /// Counts successful fetches: cached verifications of older keys are void.
    generation: u64,
}

#[derive(Debug)]
enum Slot {
    Inline(Rc<Jwks>),
    Remote(Remote),
}

/// Key sets by rule index (the root context's `JwksCache`).
#[derive(Debug)]
pub struct KeyCache {
    slots: RefCell<Vec<Slot>>,
    refresh: Duration,
    now: RefCell<SystemTime>,
}

impl KeyCache {
    pub(crate) fn new(config: &JwtConfig) -> KeyCache {
        let slots = config
            .rules
            .iter()
            .map(|r| match &r.keys {
                KeySource::Inline(jwks) => Slot::Inline(Rc::clone(jwks)),
                KeySource::Remote { .. } | KeySource::Discovery { .. } => {
                    Slot::Remote(Remote::default())
                }
            })
            .collect();
        KeyCache {
            slots: RefCell::new(slots),
            refresh: config.refresh,
            now: RefCell::new(SystemTime::UNIX_EPOCH),
        }
    }

    /// The clock the rate limit of unknown-kid refetches reads (set by the caller per request).
    pub fn set_now(&self, now: SystemTime) {
        *self.now.borrow_mut() = now;
    }

    /// Remote rules that should be fetched now.
    pub fn due(&self, now: SystemTime) -> Vec<usize> {
        let slots = self.slots.borrow();
        slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| match slot {
                Slot::Remote(r) if r.in_flight.is_none() => {
                    let due = match (r.next_attempt, r.fetched_at) {
                        (Some(at), _) => now >= at,
                        (None, None) => true,
                        (None, Some(at)) => {
                            now.duration_since(at).unwrap_or_default() >= self.refresh
                        }
                    };
                    due.then_some(i)
                }
                _ => None,
            })
            .collect()
    }

    /// No key was ever fetched and no fetch has failed yet (requests wait).
    pub fn is_waiting_for_first(&self, rule: usize) -> bool {
        matches!(self.keys(rule), Keys::Pending)
    }

    /// The rule has no keys at all (never fetched, or every fetch failed).
    pub fn has_no_keys(&self, rule: usize) -> bool {
        !matches!(self.keys(rule), Keys::Ready(_))
    }

    /// A refetch asked for by a token with an unknown key (not to be skipped for a lease).
    pub fn forced(&self, rule: usize) -> bool {
        matches!(self.slots.borrow().get(rule), Some(Slot::Remote(r)) if r.forced)
    }

    /// Whether the rule's keys were fetched before `at` (seconds), or never.
    pub fn older_than(&self, rule: usize, at: u64) -> bool {
        match self.slots.borrow().get(rule) {
            Some(Slot::Remote(r)) => r
                .fetched_at
                .is_none_or(|f| crate::host::unix_seconds(f) < at),
            _ => false,
        }
    }

    pub(crate) fn started(&self, rule: usize, token: u32, fetch: Fetch) {
        if let Some(Slot::Remote(r)) = self.slots.borrow_mut().get_mut(rule) {
            r.in_flight = Some((token, fetch));
            r.next_attempt = None;
            r.forced = false;
        }
    }

    /// The rule a fetch answer belongs to, and which fetch it answers.
    pub fn rule_of(&self, token: u32) -> Option<(usize, Fetch)> {
        self.slots
            .borrow()
            .iter()
            .enumerate()
            .find_map(|(i, s)| match s {
                Slot::Remote(Remote {
                    in_flight: Some((t, fetch)),
                    ..
                }) if *t == token => Some((i, *fetch)),
                _ => None,
            })
    }

    /// Records a fetch result; a failure keeps the last good keys and schedules a retry.
    pub fn fetched(&self, rule: usize, now: SystemTime, result: Result<Jwks, String>) {
        if let Some(Slot::Remote(r)) = self.slots.borrow_mut().get_mut(rule) {
            r.in_flight = None;
            match result {
                Ok(jwks) => {
                    r.jwks = Some(Rc::new(jwks));
                    r.generation += 1;
                    r.fetched_at = Some(now);
                    r.failed = false;
                    r.next_attempt = None;
                }
                Err(_) => {
                    r.failed = true;
                    r.next_attempt = Some(now + RETRY_AFTER);
                }
            }
        }
    }
}

impl KeyStore for KeyCache {
    fn keys(&self, rule: usize) -> Keys {
        match self.slots.borrow().get(rule) {
            Some(Slot::Inline(jwks)) => Keys::Ready(Rc::clone(jwks)),
            Some(Slot::Remote(Remote {
                jwks: Some(jwks), ..
            })) => Keys::Ready(Rc::clone(jwks)),
            Some(Slot::Remote(Remote { failed: true, .. })) | None => Keys::Failed,
            Some(Slot::Remote(_)) => Keys::Pending,
        }
    }

    fn generation(&self, rule: usize) -> u64 {
        match self.slots.borrow().get(rule) {
            Some(Slot::Remote(r)) => r.generation,
            _ => 0,
        }
    }

    fn unknown_key(&self, rule: usize) -> bool {
        let now = *self.now.borrow();
        let mut slots = self.slots.borrow_mut();
        let Some(Slot::Remote(r)) = slots.get_mut(rule) else {
            return false;
        };
        if r.in_flight.is_some() {
            return true;
        }
        let recent = r.last_unknown_kid_refetch.is_some_and(|at| {
            now.duration_since(at).unwrap_or_default() < UNKNOWN_KID_REFETCH_EVERY
        });
        if recent {
            return false;
        }
        r.last_unknown_kid_refetch = Some(now);
        r.next_attempt = Some(now);
        r.forced = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::JwtRule;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn jwks() -> Jwks {
        Jwks::parse(r#"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"}]}"#).unwrap()
    }

    fn cache() -> KeyCache {
        let rule = JwtRule {
            issuer: "i".into(),
            audiences: vec![],
            keys: KeySource::Remote {
                uri: "http://j/k".into(),
                cluster: "c".into(),
                authority: "j".into(),
                path: "/k".into(),
                timeout: Duration::from_secs(1),
            },
            locations: vec![],
            forward: false,
            payload_header: None,
            claim_headers: vec![],
        };
        KeyCache::new(&JwtConfig {
            rules: vec![rule],
            clock_skew: Duration::ZERO,
            refresh: Duration::from_secs(600),
            ..JwtConfig::default()
        })
    }

    #[test]
    fn first_fetch_then_refresh_on_the_interval() {
        let cache = cache();
        assert!(matches!(cache.keys(0), Keys::Pending));
        assert_eq!(cache.due(at(0)), vec![0]);
        cache.started(0, 7, Fetch::Keys);
        assert!(cache.due(at(1)).is_empty(), "one fetch in flight at a time");
        assert_eq!(cache.rule_of(7), Some((0, Fetch::Keys)));
        cache.fetched(0, at(1), Ok(jwks()));
        assert!(matches!(cache.keys(0), Keys::Ready(_)));
        assert!(cache.due(at(500)).is_empty());
        assert_eq!(cache.due(at(601)), vec![0]);
    }

    #[test]
    fn a_failed_fetch_keeps_the_last_good_keys_and_retries() {
        let cache = cache();
        cache.started(0, 1, Fetch::Keys);
        cache.fetched(0, at(0), Err("refused".into()));
        assert!(matches!(cache.keys(0), Keys::Failed), "no keys ever: fail");
        assert!(cache.due(at(4)).is_empty());
        assert_eq!(cache.due(at(5)), vec![0]);
        cache.started(0, 2, Fetch::Keys);
        cache.fetched(0, at(5), Ok(jwks()));
        cache.started(0, 3, Fetch::Keys);
        cache.fetched(0, at(700), Err("500".into()));
        assert!(
            matches!(cache.keys(0), Keys::Ready(_)),
            "last known good kept"
        );
    }

    #[test]
    fn unknown_kid_refetches_at_most_every_30_seconds() {
        let cache = cache();
        cache.started(0, 1, Fetch::Keys);
        cache.fetched(0, at(0), Ok(jwks()));
        cache.set_now(at(100));
        assert!(cache.unknown_key(0));
        assert_eq!(cache.due(at(100)), vec![0]);
        cache.started(0, 2, Fetch::Keys);
        assert!(cache.unknown_key(0), "wait for the refetch in flight");
        cache.fetched(0, at(101), Ok(jwks()));
        cache.set_now(at(110));
        assert!(!cache.unknown_key(0), "rate limited");
        cache.set_now(at(131));
        assert!(cache.unknown_key(0));
    }
}
