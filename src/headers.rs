//! Header rules as data: the filter computes a list of mutations and the host applies them.

/// One change to a header map (Envoy's `HeaderValueOption` actions, reduced to what we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMutation {
    /// Replace every value of the header with this one (Envoy `setCopy`).
    Set {
        /// Lowercase header name.
        name: String,
        /// The one value it keeps.
        value: String,
    },
    /// Add one more value, keeping existing ones (Envoy `addCopy`).
    Append {
        /// Lowercase header name.
        name: String,
        /// The value added.
        value: String,
    },
    /// Remove every value of the header.
    Remove {
        /// Lowercase header name.
        name: String,
    },
}

impl HeaderMutation {
    /// The header it changes.
    pub fn name(&self) -> &str {
        match self {
            HeaderMutation::Set { name, .. }
            | HeaderMutation::Append { name, .. }
            | HeaderMutation::Remove { name } => name,
        }
    }
}

/// Pseudo-headers (`:path`, `:status` …) and `host` are never taken from, or removed at, the
/// authorization service's word: changing them would reroute or break the request (as Envoy).
pub fn is_protected(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

/// A header as the host hands it over, as text: the name lowercased and the value's bytes reused
/// in place (no copy unless a byte is not UTF-8, which becomes U+FFFD).
pub fn as_text((mut name, value): (String, Vec<u8>)) -> (String, String) {
    name.make_ascii_lowercase();
    let value = String::from_utf8(value)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
    (name, value)
}

/// The first value of a header in a plain header list (lowercase names).
pub fn first<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Applies mutations to a plain header list (lowercase names), the way the host applies them.
pub fn apply(headers: &mut Vec<(String, String)>, mutations: &[HeaderMutation]) {
    for mutation in mutations {
        match mutation {
            HeaderMutation::Set { name, value } => {
                headers.retain(|(n, _)| n != name);
                headers.push((name.clone(), value.clone()));
            }
            HeaderMutation::Append { name, value } => headers.push((name.clone(), value.clone())),
            HeaderMutation::Remove { name } => headers.retain(|(n, _)| n != name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_become_lowercase_text_with_invalid_bytes_replaced() {
        assert_eq!(
            as_text(("X-Tenant".to_string(), b"ok".to_vec())),
            ("x-tenant".to_string(), "ok".to_string())
        );
        assert_eq!(
            as_text(("x-t".to_string(), b"blocked\xff".to_vec())),
            ("x-t".to_string(), "blocked\u{fffd}".to_string())
        );
    }

    #[test]
    fn set_replaces_append_keeps_remove_drops() {
        let mut headers = vec![
            ("a".to_string(), "1".to_string()),
            ("a".into(), "2".into()),
            ("b".into(), "x".into()),
        ];
        apply(
            &mut headers,
            &[
                HeaderMutation::Set {
                    name: "a".into(),
                    value: "3".into(),
                },
                HeaderMutation::Append {
                    name: "c".into(),
                    value: "y".into(),
                },
                HeaderMutation::Remove { name: "b".into() },
            ],
        );
        assert_eq!(
            headers,
            vec![("a".into(), "3".into()), ("c".into(), "y".into())]
        );
    }

    #[test]
    fn pseudo_headers_and_host_are_protected() {
        assert!(is_protected(":path"));
        assert!(is_protected("Host"));
        assert!(!is_protected("x-user"));
    }
}
