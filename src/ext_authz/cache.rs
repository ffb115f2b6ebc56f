//! The authorization decision cache (beyond Envoy): an answer the service marks cacheable
//! (`Cache-Control: max-age=N` or `s-maxage=N`, and neither `no-store`, `no-cache` nor `private`)
//! is reused for an identical check request until it expires. Identical means the same cluster,
//! method, path and query, every forwarded and added header, and the body: everything the service
//! sees, compared in full. 5xx answers and failures are never cached. Bounded per VM.

use std::rc::Rc;

use super::{CallResponse, CheckRequest};
use crate::expiring::ExpiringMap;

/// `decisionCacheSize` when left out: answers kept per VM.
pub const DEFAULT_SIZE: usize = 1000;
/// An answer is never reused for longer than a day, whatever the service says.
pub const MAX_AGE_CAP: u64 = 86_400;

/// The key of a check request: everything the authorization service receives, as one byte
/// string with unambiguous separators (lengths before each part).
pub fn key(cluster: &str, request: &CheckRequest) -> Vec<u8> {
    let body = request.body.as_deref().unwrap_or_default();
    let size = request
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 8)
        .sum::<usize>()
        + cluster.len()
        + body.len()
        + 12;
    let mut key = Vec::with_capacity(size);
    let mut part = |bytes: &[u8]| {
        key.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        key.extend_from_slice(bytes);
    };
    part(cluster.as_bytes());
    for (name, value) in &request.headers {
        part(name.as_bytes());
        part(value.as_bytes());
    }
    part(body);
    key
}

/// How long an answer may be reused, from its `Cache-Control` (a shared cache's reading).
pub fn max_age(response: &CallResponse) -> Option<u64> {
    let status = response.status()?;
    if status >= 500 {
        return None;
    }
    let mut max_age = None;
    let mut shared_max_age = None;
    for (_, value) in response
        .headers
        .iter()
        .filter(|(n, _)| n == "cache-control")
    {
        for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            let (name, argument) = match directive.split_once('=') {
                Some((n, a)) => (
                    n.trim().to_string(),
                    Some(a.trim().trim_matches('"').to_string()),
                ),
                None => (directive.clone(), None),
            };
            match (name.as_str(), argument) {
                ("no-store" | "no-cache" | "private", _) => return None,
                ("max-age", Some(a)) => max_age = a.parse::<u64>().ok(),
                ("s-maxage", Some(a)) => shared_max_age = a.parse::<u64>().ok(),
                _ => {}
            }
        }
    }
    shared_max_age
        .or(max_age)
        .filter(|age| *age > 0)
        .map(|age| age.min(MAX_AGE_CAP))
}

/// Answers are shared (`Rc`): a hit hands out the stored answer without copying its headers.
#[derive(Debug)]
pub struct DecisionCache(ExpiringMap<[u8], Rc<CallResponse>>);

impl DecisionCache {
    pub(crate) fn new(capacity: usize) -> DecisionCache {
        DecisionCache(ExpiringMap::new(capacity))
    }

    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// No answer kept (expired ones may still count until they are evicted).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn get(&self, key: &[u8], now: u64) -> Option<Rc<CallResponse>> {
        self.0.get(key, now)
    }

    /// Whether `offer` would keep this answer (its `Cache-Control` allows, the cache is on).
    pub(crate) fn accepts(&self, response: &CallResponse) -> bool {
        self.0.capacity() > 0 && max_age(response).is_some()
    }

    /// Keeps the answer if its `Cache-Control` allows; returns whether it did. The key is only
    /// made then.
    pub fn offer(&self, key: impl FnOnce() -> Vec<u8>, response: &CallResponse, now: u64) -> bool {
        let Some(age) = max_age(response).filter(|_| self.0.capacity() > 0) else {
            return false;
        };
        self.0
            .insert(Rc::from(key()), Rc::new(response.clone()), now + age);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u32, cache_control: &[&str]) -> CallResponse {
        let mut headers = vec![(":status".to_string(), status.to_string())];
        headers.extend(
            cache_control
                .iter()
                .map(|v| ("cache-control".to_string(), v.to_string())),
        );
        CallResponse {
            headers,
            body: vec![],
        }
    }

    #[test]
    fn only_answers_marked_cacheable_are_kept() {
        assert_eq!(max_age(&answer(200, &["max-age=60"])), Some(60));
        assert_eq!(max_age(&answer(403, &["public, max-age=30"])), Some(30));
        assert_eq!(max_age(&answer(200, &["max-age=60, s-maxage=5"])), Some(5));
        assert_eq!(
            max_age(&answer(200, &["max-age=999999"])),
            Some(MAX_AGE_CAP)
        );
        for no in [
            &[][..],
            &["no-store"],
            &["max-age=60, private"],
            &["no-cache", "max-age=60"],
            &["max-age=0"],
            &["max-age=abc"],
        ] {
            assert_eq!(max_age(&answer(200, no)), None, "{no:?}");
        }
        assert_eq!(
            max_age(&answer(503, &["max-age=60"])),
            None,
            "errors are never cached"
        );
    }

    fn request(path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> CheckRequest {
        let mut all = vec![(":path".to_string(), path.to_string())];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        CheckRequest {
            headers: all,
            body: body.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn the_key_covers_everything_the_service_sees() {
        let base = key("c", &request("/a", &[("authorization", "Bearer x")], None));
        assert_eq!(
            base,
            key("c", &request("/a", &[("authorization", "Bearer x")], None))
        );
        assert_ne!(
            base,
            key("c", &request("/a", &[("authorization", "Bearer y")], None))
        );
        assert_ne!(
            base,
            key("c", &request("/b", &[("authorization", "Bearer x")], None))
        );
        assert_ne!(
            base,
            key("d", &request("/a", &[("authorization", "Bearer x")], None))
        );
        assert_ne!(
            base,
            key(
                "c",
                &request("/a", &[("authorization", "Bearer x")], Some(b"1"))
            )
        );
        // Header boundaries count: `ab: c` is not `a: bc`.
        assert_ne!(
            key("c", &request("/", &[("ab", "c")], None)),
            key("c", &request("/", &[("a", "bc")], None))
        );
    }

    #[test]
    fn entries_expire_and_the_cache_is_bounded() {
        let cache = DecisionCache::new(2);
        let ok = answer(200, &["max-age=10"]);
        assert!(cache.offer(|| vec![1; 32], &ok, 100));
        assert!(cache.get(&[1; 32], 109).is_some());
        assert!(cache.get(&[1; 32], 110).is_none(), "expired");
        cache.offer(|| vec![2; 32], &ok, 100);
        cache.offer(|| vec![3; 32], &ok, 100);
        cache.offer(|| vec![4; 32], &ok, 100);
        assert!(cache.get(&[2; 32], 101).is_none(), "oldest evicted");
        assert!(cache.get(&[4; 32], 101).is_some());
        assert!(
            !DecisionCache::new(0).offer(|| vec![5; 32], &ok, 100),
            "size 0 disables it"
        );
        assert!(!cache.offer(|| vec![6; 32], &answer(200, &[]), 100));
    }
}
