//! Path normalization under every `pathNormalization` mode, with the invariants the module
//! promises (and Envoy's `normalize_path` / `merge_slashes` / `UNESCAPE_AND_FORWARD` hold).

#![no_main]

use inline_authz::policy::path::{normalize, PathNormalization};
use libfuzzer_sys::fuzz_target;

const MODES: [PathNormalization; 4] = [
    PathNormalization::None,
    PathNormalization::Base,
    PathNormalization::MergeSlashes,
    PathNormalization::DecodeAndMergeSlashes,
];

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let without_fragment = raw.split('#').next().unwrap_or("");
    let (raw_path, raw_query) = match without_fragment.find('?') {
        Some(i) => without_fragment.split_at(i),
        None => (without_fragment, ""),
    };
    let absolute = raw_path.starts_with('/') || raw_path.starts_with('\\');

    for mode in MODES {
        let n = normalize(&raw, mode);
        assert_eq!(n.query, raw_query, "{mode:?}: the query is kept as sent");
        assert_eq!(
            n.to_request_path(),
            format!("{}{}", n.path, n.query),
            "{mode:?}"
        );
        if mode == PathNormalization::None || !absolute {
            assert_eq!(n.path, raw_path, "{mode:?}: left as sent");
            continue;
        }
        assert!(n.path.starts_with('/'), "{mode:?}: {raw:?} -> {:?}", n.path);
        assert!(!n.path.contains('\\'), "{mode:?}: {raw:?} -> {:?}", n.path);
        assert!(
            n.path.split('/').all(|s| s != "." && s != ".."),
            "{mode:?}: dot segment left in {raw:?} -> {:?}",
            n.path
        );
        if mode != PathNormalization::Base {
            assert!(!n.path.contains("//"), "{mode:?}: {raw:?} -> {:?}", n.path);
        }
        // Decoding is one pass, as Envoy's: `%%32F` -> `%2F`, `%%34%31` -> `%41` are decoded
        // again by a second pass. Without `%` in the input, normalizing is idempotent.
        if !raw_path.contains('%') {
            let again = normalize(&n.path, mode);
            assert_eq!(again.path, n.path, "{mode:?}: not idempotent on {raw:?}");
        }
    }

    let base = normalize(&raw, PathNormalization::Base).path;
    if absolute {
        assert_eq!(
            normalize(&raw, PathNormalization::MergeSlashes).path,
            merge_slashes(&base),
            "MERGE_SLASHES is BASE then merged slashes"
        );
    }
});
