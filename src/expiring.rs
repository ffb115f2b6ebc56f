//! A bounded map whose entries expire: the storage of the verified-token cache and of the
//! authorization decision cache. Keys are SHA-256 digests; the oldest entry goes first when full.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

/// Values by 32-byte key, each with an expiry time (seconds); at most `capacity` of them.
#[derive(Debug, Default)]
pub struct ExpiringMap<V> {
    entries: RefCell<HashMap<[u8; 32], (V, u64)>>,
    order: RefCell<VecDeque<[u8; 32]>>,
    capacity: usize,
}

impl<V: Clone> ExpiringMap<V> {
    pub fn new(capacity: usize) -> ExpiringMap<V> {
        ExpiringMap {
            entries: RefCell::new(HashMap::new()),
            order: RefCell::new(VecDeque::new()),
            capacity,
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

    /// The value, unless it expired at or before `now` (then it is dropped).
    pub fn get(&self, key: &[u8; 32], now: u64) -> Option<V> {
        let (value, expires) = self.entries.borrow().get(key).cloned()?;
        if now >= expires {
            self.entries.borrow_mut().remove(key);
            return None;
        }
        Some(value)
    }

    pub fn insert(&self, key: [u8; 32], value: V, expires: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        let mut order = self.order.borrow_mut();
        if entries.insert(key, (value, expires)).is_none() {
            order.push_back(key);
        }
        // Keys of entries dropped on expiry stay in `order` until they come round: bound both.
        while entries.len() > self.capacity || order.len() > self.capacity * 2 {
            match order.pop_front() {
                Some(old) => {
                    entries.remove(&old);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_oldest_goes_first() {
        let map = ExpiringMap::new(2);
        map.insert([1; 32], "a", 110);
        assert_eq!(map.get(&[1; 32], 109), Some("a"));
        assert_eq!(map.get(&[1; 32], 110), None, "expired");
        map.insert([2; 32], "b", 200);
        map.insert([3; 32], "c", 200);
        map.insert([4; 32], "d", 200);
        assert_eq!(map.get(&[2; 32], 100), None, "the oldest went first");
        assert_eq!(map.get(&[4; 32], 100), Some("d"));
        assert_eq!(map.len(), 2);
        let off = ExpiringMap::new(0);
        off.insert([5; 32], "e", 200);
        assert!(off.is_empty());
    }
}
