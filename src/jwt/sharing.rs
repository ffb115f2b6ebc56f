//! What the VMs of one proxy tell each other about remote keys, through proxy-wasm shared data:
//! who fetches a key set now (a lease, taken by compare-and-swap), and the keys a VM fetched (or
//! that its fetch failed). Typed records with their encodings, pure; the root context reads and
//! writes them through `Host`. The encodings stay as they were, so VMs of an older and a newer
//! plugin build running side by side during a reload still understand each other.

use super::{JwtRule, KeySource};

/// The shared-data key of a rule's fetched keys: one per issuer, URI and cluster (two plugins
/// fetching the same URI through different clusters stay apart).
pub fn keys_key(rule: &JwtRule) -> String {
    match &rule.keys {
        KeySource::Remote { uri, cluster, .. } | KeySource::Discovery { uri, cluster, .. } => {
            format!("inline-authz/jwks/{}|{uri}|{cluster}", rule.issuer)
        }
        KeySource::Inline(_) => format!("inline-authz/jwks/{}", rule.issuer),
    }
}

/// The shared-data key of a rule's fetch lease.
pub fn lease_key(rule: &JwtRule) -> String {
    format!("{}#lease", keys_key(rule))
}

/// The fetch lease of a key set: the VM `owner` fetches it until `until` (Unix seconds).
/// Encoded `<until> <owner>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub until: u64,
    pub owner: String,
}

impl Lease {
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.until, self.owner).into_bytes()
    }

    /// `None` for a value that is no lease (it does not hold anything).
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (until, owner) = text.split_once(' ').unwrap_or((text, ""));
        Some(Lease {
            until: until.parse().ok()?,
            owner: owner.to_string(),
        })
    }

    /// Whether the lease keeps VM `me` from fetching at `now`.
    pub fn bars(&self, me: &str, now: u64) -> bool {
        self.until > now && self.owner != me
    }
}

/// A key set one VM fetched, for the others: when, and the JWKS text; `jwks: None` says the
/// fetch failed and no VM has keys. Encoded `<fetched_at>\n<jwks>` (an empty JWKS: failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedKeys {
    pub fetched_at: u64,
    pub jwks: Option<String>,
}

impl SharedKeys {
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{}\n{}",
            self.fetched_at,
            self.jwks.as_deref().unwrap_or("")
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<SharedKeys> {
        let text = String::from_utf8_lossy(bytes);
        let (stamp, jwks) = text.split_once('\n')?;
        Some(SharedKeys {
            fetched_at: stamp.parse().ok()?,
            jwks: (!jwks.is_empty()).then(|| jwks.to_string()),
        })
    }

    /// Whether the record is still worth taking at `now` after the refresh interval.
    pub fn is_fresh(&self, now: u64, refresh_secs: u64) -> bool {
        now.saturating_sub(self.fetched_at) < refresh_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_round_trips_and_bars_only_other_vms_until_it_ends() {
        let lease = Lease {
            until: 107,
            owner: "1700000000-1".into(),
        };
        assert_eq!(Lease::decode(&lease.encode()), Some(lease.clone()));
        assert_eq!(lease.encode(), b"107 1700000000-1");
        assert!(lease.bars("other", 106));
        assert!(!lease.bars("1700000000-1", 106), "the owner renews it");
        assert!(!lease.bars("other", 107), "expired");
        assert_eq!(Lease::decode(b"soon someone"), None);
    }

    #[test]
    fn shared_keys_round_trip_and_an_empty_jwks_means_the_fetch_failed() {
        let keys = SharedKeys {
            fetched_at: 1_700_000_000,
            jwks: Some(r#"{"keys":[]}"#.into()),
        };
        assert_eq!(SharedKeys::decode(&keys.encode()), Some(keys));
        let failed = SharedKeys {
            fetched_at: 5,
            jwks: None,
        };
        assert_eq!(failed.encode(), b"5\n");
        assert_eq!(SharedKeys::decode(b"5\n"), Some(failed));
        assert_eq!(SharedKeys::decode(b"no stamp"), None);
        let fresh = SharedKeys::decode(b"100\n{}").unwrap();
        assert!(fresh.is_fresh(699, 600));
        assert!(!fresh.is_fresh(700, 600));
    }
}
