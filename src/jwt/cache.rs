//! The verified-token cache of one VM (Envoy `jwt_authn`'s `jwt_cache_config`): a token whose
//! signature was verified with a rule's current keys is not verified again until it expires or
//! the keys change. Keyed by SHA-256 of the whole token (a token differing in any byte is another
//! entry), bounded, oldest entries evicted first. Time and audience are still checked per request.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::token::Jwt;

/// Envoy's default `jwt_cache_size` is 100; a gateway sees more distinct tokens than that.
pub const DEFAULT_SIZE: usize = 1000;

/// A verified token.
#[derive(Debug)]
pub struct Cached {
    pub jwt: Rc<Jwt>,
    pub rule: usize,
    /// The rule's key generation it was verified with.
    pub generation: u64,
    /// Seconds: `exp` + clock skew (or never).
    pub expires: u64,
}

#[derive(Debug, Default)]
pub struct TokenCache {
    entries: RefCell<HashMap<[u8; 32], Rc<Cached>>>,
    order: RefCell<VecDeque<[u8; 32]>>,
    capacity: usize,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            ..TokenCache::default()
        }
    }

    pub fn get(&self, token: &str, now: u64) -> Option<Rc<Cached>> {
        if self.capacity == 0 {
            return None;
        }
        let k = key(token);
        let hit = self.entries.borrow().get(&k).cloned()?;
        if now > hit.expires {
            self.entries.borrow_mut().remove(&k);
            return None;
        }
        Some(hit)
    }

    pub fn insert(&self, token: &str, cached: Cached) {
        if self.capacity == 0 {
            return;
        }
        let k = key(token);
        let mut entries = self.entries.borrow_mut();
        let mut order = self.order.borrow_mut();
        if entries.insert(k, Rc::new(cached)).is_none() {
            order.push_back(k);
        }
        while entries.len() > self.capacity {
            match order.pop_front() {
                Some(old) => {
                    entries.remove(&old);
                }
                None => break,
            }
        }
        // Keys of entries removed on expiry stay in `order` until they come round: bound it too.
        while order.len() > self.capacity * 2 {
            if let Some(old) = order.pop_front() {
                entries.remove(&old);
            }
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
