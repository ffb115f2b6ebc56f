//! Request path normalization, as Istio's `meshConfig.pathNormalization` asks Envoy to do it
//! before any filter sees the path: `NONE`, `BASE` (RFC 3986: decode unreserved escapes, resolve
//! dot segments, `\` to `/`), `MERGE_SLASHES`, `DECODE_AND_MERGE_SLASHES` (also `%2F`, `%5C`).

/// Istio's `ProxyConfig`/`MeshConfig` path normalization setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathNormalization {
    /// `NONE`: the path as sent.
    None,
    /// `BASE` (also `DEFAULT`): RFC 3986 normalization, Envoy's `normalize_path`.
    #[default]
    Base,
    /// `MERGE_SLASHES`: `BASE`, then `//` to `/` (Envoy's `merge_slashes`).
    MergeSlashes,
    /// `DECODE_AND_MERGE_SLASHES`: also decodes `%2F` and `%5C` first (Envoy's
    /// `UNESCAPE_AND_FORWARD`).
    DecodeAndMergeSlashes,
}

/// A request target split for matching: the normalized path and the untouched query (with its `?`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    /// What policies match against.
    pub path: String,
    /// `?` and the rest, or empty.
    pub query: String,
}

impl NormalizedPath {
    /// The path to forward: normalized path followed by the original query.
    pub fn to_request_path(&self) -> String {
        let mut out = String::with_capacity(self.path.len() + self.query.len());
        out.push_str(&self.path);
        out.push_str(&self.query);
        out
    }
}

/// Splits off the query and fragment, then normalizes the path as `mode` says.
pub fn normalize(request_path: &str, mode: PathNormalization) -> NormalizedPath {
    let without_fragment = request_path.split('#').next().unwrap_or("");
    let (path, query) = match without_fragment.find('?') {
        Some(i) => without_fragment.split_at(i),
        None => (without_fragment, ""),
    };
    let path = match mode {
        PathNormalization::None => path.to_string(),
        _ if !path.starts_with('/') && !path.starts_with('\\') => path.to_string(),
        // Most paths have nothing to normalize: found in one scan, without rebuilding them.
        PathNormalization::Base if is_canonical(path) => path.to_string(),
        _ if is_canonical(path) && !path.contains("//") => path.to_string(),
        PathNormalization::Base => canonical(path),
        PathNormalization::MergeSlashes => merge_slashes(&canonical(path)),
        PathNormalization::DecodeAndMergeSlashes => {
            merge_slashes(&canonical(&unescape_slashes(path)))
        }
    };
    NormalizedPath {
        path,
        query: query.to_string(),
    }
}

/// Whether Envoy's `normalize_path` refuses this request target (400 before any filter runs): an
/// escaped NUL (`%00`) in the path part, which its URL canonicalizer calls invalid. Every mode but
/// `NONE` refuses it the same way, so the answer does not depend on whether Envoy normalized first.
pub fn is_refused(request_path: &str, mode: PathNormalization) -> bool {
    if mode == PathNormalization::None {
        return false;
    }
    let path = request_path.split(['?', '#']).next().unwrap_or("");
    path.as_bytes().windows(3).any(|w| w == b"%00")
}

/// Whether `canonical` gives the path back as it is: nothing to decode (`%`), no backslash, no
/// segment that starts with a dot (`.`, `..`, or a name like `.well-known`, checked the long way).
fn is_canonical(path: &str) -> bool {
    !path.bytes().any(|b| b == b'%' || b == b'\\') && !path.contains("/.")
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `%2F` / `%5C` in either case become `/` / `\` (Envoy's UNESCAPE_AND_FORWARD).
fn unescape_slashes(path: &str) -> String {
    let mut rest = path.as_bytes();
    let mut out = Vec::with_capacity(rest.len());
    while let Some((&b, tail)) = rest.split_first() {
        if let [b'%', hi, lo, after @ ..] = rest {
            match [hi.to_ascii_uppercase(), lo.to_ascii_uppercase()] {
                [b'2', b'F'] => {
                    out.push(b'/');
                    rest = after;
                    continue;
                }
                [b'5', b'C'] => {
                    out.push(b'\\');
                    rest = after;
                    continue;
                }
                _ => {}
            }
        }
        out.push(b);
        rest = tail;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3986 section 6 normalization as Envoy's `normalize_path` does it: backslashes become
/// slashes, escapes of unreserved characters are decoded, other escapes upper-cased, and
/// dot segments (also when escaped, `%2e`) are removed. Repeated slashes are kept.
fn canonical(path: &str) -> String {
    let mut rest = path.as_bytes();
    let mut decoded = Vec::with_capacity(rest.len());
    while let Some((&b, tail)) = rest.split_first() {
        if let [b'%', hi, lo, after @ ..] = rest {
            if let (Some(h), Some(l)) = (hex_value(*hi), hex_value(*lo)) {
                let value = h * 16 + l;
                if is_unreserved(value) {
                    decoded.push(value);
                } else {
                    decoded.push(b'%');
                    decoded.push(hi.to_ascii_uppercase());
                    decoded.push(lo.to_ascii_uppercase());
                }
                rest = after;
                continue;
            }
        }
        decoded.push(if b == b'\\' { b'/' } else { b });
        rest = tail;
    }
    remove_dot_segments(&String::from_utf8_lossy(&decoded))
}

/// RFC 3986 section 5.2.4 on an absolute path; the result always starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => trailing_slash = i == last,
            ".." => {
                output.pop();
                trailing_slash = i == last;
            }
            s => {
                output.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &output {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut previous_slash = false;
    for c in path.chars() {
        if c == '/' && previous_slash {
            continue;
        }
        previous_slash = c == '/';
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escaped_nul_is_refused_as_envoy_refuses_it() {
        for mode in [
            PathNormalization::Base,
            PathNormalization::MergeSlashes,
            PathNormalization::DecodeAndMergeSlashes,
        ] {
            assert!(is_refused("/admin%00", mode));
            assert!(is_refused("/xyz/.%00../abc", mode));
            assert!(is_refused("/xyz/AAAAA%%0000/abc", mode));
            assert!(
                !is_refused("/admin?x=%00", mode),
                "the query is not the path"
            );
            assert!(!is_refused("/admin%200", mode));
            assert!(!is_refused("/admin%0", mode));
        }
        assert!(!is_refused("/admin%00", PathNormalization::None));
    }
    use PathNormalization::*;

    fn path(raw: &str, mode: PathNormalization) -> String {
        normalize(raw, mode).path
    }

    #[test]
    fn query_and_fragment_are_not_part_of_the_path() {
        let n = normalize("/headers?x=1#frag", Base);
        assert_eq!(n.path, "/headers");
        assert_eq!(n.query, "?x=1");
        assert_eq!(n.to_request_path(), "/headers?x=1");
        assert_eq!(path("/headers#x?y", None), "/headers");
    }

    #[test]
    fn base_normalization_table() {
        let cases = [
            ("/headers", "/headers"),
            ("/headers/../headers", "/headers"),
            ("/a/b/../../headers", "/headers"),
            ("/../../headers", "/headers"),
            ("/./headers", "/headers"),
            ("/headers/.", "/headers/"),
            ("/headers/..", "/"),
            ("/%68eaders", "/headers"),
            ("/%2e%2e/headers", "/headers"),
            ("/a/%2E%2E/headers", "/headers"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb/..", "/"),
            ("//headers", "//headers"),
            ("\\headers", "/headers"),
            ("/Headers", "/Headers"),
            ("/a;b=c", "/a;b=c"),
            ("/%zz", "/%zz"),
            ("/%", "/%"),
            ("/", "/"),
        ];
        for (raw, want) in cases {
            assert_eq!(path(raw, Base), want, "BASE {raw}");
        }
    }

    #[test]
    fn merge_and_decode_modes() {
        assert_eq!(path("//headers", MergeSlashes), "/headers");
        assert_eq!(path("/a//b///c", MergeSlashes), "/a/b/c");
        assert_eq!(path("/a%2Fb", MergeSlashes), "/a%2Fb");
        assert_eq!(path("/a%2fb", DecodeAndMergeSlashes), "/a/b");
        assert_eq!(
            path("/admin%2F..%2Fheaders", DecodeAndMergeSlashes),
            "/headers"
        );
        assert_eq!(path("/a%5cb", DecodeAndMergeSlashes), "/a/b");
        assert_eq!(path("//headers/../x", None), "//headers/../x");
    }

    #[test]
    fn the_fast_path_gives_what_the_long_way_gives() {
        let paths = [
            "/",
            "/a",
            "/a/",
            "/a/b/c",
            "/a//b",
            "//a",
            "/a.b/c.d",
            "/.well-known/x",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/..",
            "/.",
            "/a%2Fb",
            "/a\\b",
            "/a/b.",
            "/a/b..",
            "/a-b_c~d",
            "/a//",
            "///",
            "/é/ü",
            "/a;b=c/d",
            "/a/b/",
        ];
        for path in paths {
            for mode in [
                PathNormalization::Base,
                PathNormalization::MergeSlashes,
                PathNormalization::DecodeAndMergeSlashes,
            ] {
                let long_way = match mode {
                    PathNormalization::Base => canonical(path),
                    PathNormalization::MergeSlashes => merge_slashes(&canonical(path)),
                    _ => merge_slashes(&canonical(&unescape_slashes(path))),
                };
                assert_eq!(normalize(path, mode).path, long_way, "{path} {mode:?}");
            }
        }
    }
}
