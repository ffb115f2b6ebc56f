//! The verified-token cache of one VM (Envoy `jwt_authn`'s `jwt_cache_config`): a token whose
//! signature was verified with a rule's current keys is not verified again until it expires or
//! the keys change. Keyed by the whole token, compared in full (a token differing in any byte is
//! another entry), bounded, oldest entries evicted first. Time and audience are still checked per request.

use std::rc::Rc;

use super::token::Jwt;
use crate::expiring::ExpiringMap;

/// Envoy's default `jwt_cache_size` is 100; a gateway sees more distinct tokens than that.
pub const DEFAULT_SIZE: usize = 1000;

/// A verified token.
#[derive(Debug)]
pub(crate) struct Cached {
    pub jwt: Rc<Jwt>,
    pub rule: usize,
    /// The rule's key generation it was verified with.
    pub generation: u64,
    /// Seconds: `exp` + clock skew (or never).
    pub expires: u64,
}

/// The verified tokens of one VM, by token text (Envoy `jwt_authn`'s `JwtCache`).
#[derive(Debug)]
pub struct TokenCache(ExpiringMap<str, Rc<Cached>>);

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> TokenCache {
        TokenCache(ExpiringMap::new(capacity))
    }

    pub(crate) fn get(&self, token: &str, now: u64) -> Option<Rc<Cached>> {
        if self.0.capacity() == 0 {
            return None;
        }
        self.0.get(token, now)
    }

    pub(crate) fn insert(&self, token: &str, cached: Cached) {
        // Good through its expiry second, as the time check (`now > exp + skew` is expired).
        let expires = cached.expires.saturating_add(1);
        self.0.insert(Rc::from(token), Rc::new(cached), expires);
    }

    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Tokens cached now.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No token cached.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
