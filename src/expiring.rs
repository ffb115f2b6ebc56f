//! A bounded map whose entries expire: the storage of the verified-token cache and of the
//! authorization decision cache. Keys are the exact bytes looked up (the whole token, the whole
//! check request), compared in full: no digest to compute per request, no collision to craft.
//! The oldest entry goes first when full.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::rc::Rc;

/// Values by key, each with an expiry time (seconds); at most `capacity` of them.
#[derive(Debug)]
pub struct ExpiringMap<K: ?Sized, V> {
    entries: RefCell<HashMap<Rc<K>, (V, u64)>>,
    order: RefCell<VecDeque<Rc<K>>>,
    capacity: usize,
}

impl<K: Eq + Hash + ?Sized, V: Clone> ExpiringMap<K, V> {
    pub fn new(capacity: usize) -> ExpiringMap<K, V> {
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
    pub fn get(&self, key: &K, now: u64) -> Option<V> {
        let (value, expires) = self.entries.borrow().get(key).cloned()?;
        if now >= expires {
            self.entries.borrow_mut().remove(key);
            return None;
        }
        Some(value)
    }

    pub fn insert(&self, key: Rc<K>, value: V, expires: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        let mut order = self.order.borrow_mut();
        if entries.insert(Rc::clone(&key), (value, expires)).is_none() {
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
        let map: ExpiringMap<str, &str> = ExpiringMap::new(2);
        map.insert(Rc::from("1"), "a", 110);
        assert_eq!(map.get("1", 109), Some("a"));
        assert_eq!(map.get("1", 110), None, "expired");
        map.insert(Rc::from("2"), "b", 200);
        map.insert(Rc::from("3"), "c", 200);
        map.insert(Rc::from("4"), "d", 200);
        assert_eq!(map.get("2", 100), None, "the oldest went first");
        assert_eq!(map.get("4", 100), Some("d"));
        assert_eq!(map.len(), 2);
        let off: ExpiringMap<str, &str> = ExpiringMap::new(0);
        off.insert(Rc::from("5"), "e", 200);
        assert!(off.is_empty());
    }
}
