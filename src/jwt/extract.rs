//! Where tokens are found (Envoy's `JwtLocation`): headers with a value prefix, query
//! parameters, cookies. Istio's defaults, when a rule names none: `Authorization: Bearer <token>`
//! and the `access_token` query parameter.

use std::borrow::Cow;

/// One place a token may be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// Lowercase header name and the prefix before the token (case-sensitive, as Envoy).
    Header {
        /// `fromHeaders[].name`, lowercased.
        name: String,
        /// `fromHeaders[].prefix`, e.g. `Bearer `; may be empty.
        prefix: String,
    },
    /// A query parameter (`fromParams`).
    Param(String),
    /// A cookie (`fromCookies`).
    Cookie(String),
}

impl Location {
    /// Envoy's defaults, used when a rule gives no `fromHeaders`, `fromParams` or `fromCookies`.
    pub fn defaults() -> Vec<Location> {
        vec![
            Location::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            },
            Location::Param("access_token".into()),
        ]
    }
}

/// A token and the location it came from, borrowed from the request and the configuration (a
/// token is copied only when its query parameter had to be percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted<'a> {
    /// The token text, prefix and percent-encoding removed.
    pub token: Cow<'a, str>,
    /// Where it was found (which rules may verify it, what to strip when not forwarded).
    pub location: &'a Location,
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Envoy: the prefix may stand anywhere in the value; the token starts at the first base64url or
/// dot character after it and runs to the end of the value.
fn after_prefix<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let start = value.find(prefix)? + prefix.len();
    let rest = value.get(start..)?;
    Some(match rest.find(is_token_char) {
        Some(i) => rest.get(i..).unwrap_or(value),
        None => value,
    })
}

/// Percent-decodes a query component (`+` stays `+`, as Envoy's query parser).
pub fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        if let (b'%', [hi, lo, ..]) = (byte, after) {
            if let (Some(hi), Some(lo)) = (hex(*hi), hex(*lo)) {
                out.push((hi * 16 + lo) as u8);
                rest = after.get(2..).unwrap_or_default();
                continue;
            }
        }
        out.push(byte);
        rest = after;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query of a request target, without `?` and fragment.
pub fn query_of(path: &str) -> &str {
    let without_fragment = path.split('#').next().unwrap_or("");
    without_fragment.split_once('?').map_or("", |(_, q)| q)
}

/// A query component decoded, borrowed when it has no `%` to decode.
fn decoded(text: &str) -> Cow<'_, str> {
    if text.contains('%') {
        Cow::Owned(percent_decode(text))
    } else {
        Cow::Borrowed(text)
    }
}

/// The first value of a query parameter, decoded.
fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| decoded(k) == name)
        .map(|(_, v)| decoded(v))
}

/// `:path` with every value of parameter `name` removed (the rest kept in order).
pub fn without_param(path: &str, name: &str) -> String {
    let (base, query) = match path.split_once('?') {
        Some((b, q)) => (b, q),
        None => return path.to_string(),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && decoded(pair.split('=').next().unwrap_or("")) != name)
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

fn cookie<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Every token at these locations, in Envoy's order (headers, then params, then cookies); one
/// per header value; empty tokens skipped.
pub fn extract<'a>(
    locations: &'a [Location],
    headers: &'a [(String, String)],
) -> Vec<Extracted<'a>> {
    let path = headers
        .iter()
        .find(|(n, _)| n == ":path")
        .map_or("", |(_, v)| v.as_str());
    let query = query_of(path);
    let mut found = Vec::new();
    let mut push = |token: Cow<'a, str>, location: &'a Location| {
        if !token.is_empty() {
            found.push(Extracted { token, location });
        }
    };
    for location in locations
        .iter()
        .filter(|l| matches!(l, Location::Header { .. }))
    {
        if let Location::Header { name, prefix } = location {
            for (_, value) in headers.iter().filter(|(n, _)| n == name) {
                if let Some(token) = after_prefix(value, prefix) {
                    push(Cow::Borrowed(token), location);
                }
            }
        }
    }
    for location in locations {
        match location {
            Location::Param(name) => {
                if let Some(token) = query_param(query, name) {
                    push(token, location);
                }
            }
            Location::Cookie(name) => {
                if let Some(token) = cookie(headers, name) {
                    push(Cow::Borrowed(token), location);
                }
            }
            Location::Header { .. } => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn istio_defaults_read_bearer_header_and_access_token_param() {
        let (locations, headers) = (
            Location::defaults(),
            headers(&[
                (":path", "/x?access_token=a.b.c&y=1"),
                ("authorization", "Bearer h.p.s"),
            ]),
        );
        let found = extract(&locations, &headers);
        let tokens: Vec<&str> = found.iter().map(|e| e.token.as_ref()).collect();
        assert_eq!(tokens, vec!["h.p.s", "a.b.c"]);
    }

    #[test]
    fn prefix_is_case_sensitive_and_other_schemes_are_ignored() {
        for value in ["bearer h.p.s", "Basic dXNlcjpwYXNz", "h.p.s"] {
            assert!(
                extract(
                    &Location::defaults(),
                    &headers(&[(":path", "/"), ("authorization", value)])
                )
                .is_empty(),
                "{value}"
            );
        }
    }

    #[test]
    fn each_header_value_is_one_token() {
        let (locations, headers) = (
            Location::defaults(),
            headers(&[
                (":path", "/"),
                ("authorization", "Bearer one"),
                ("authorization", "Bearer two"),
            ]),
        );
        assert_eq!(extract(&locations, &headers).len(), 2);
    }

    #[test]
    fn custom_headers_params_and_cookies() {
        let locations = vec![
            Location::Header {
                name: "x-jwt".into(),
                prefix: String::new(),
            },
            Location::Param("token".into()),
            Location::Cookie("session".into()),
        ];
        let headers = headers(&[
            (":path", "/?token=q%2Et"),
            ("x-jwt", "raw.tok.en"),
            ("cookie", "a=1; session=c.k.e"),
        ]);
        let found = extract(&locations, &headers);
        let tokens: Vec<&str> = found.iter().map(|e| e.token.as_ref()).collect();
        assert_eq!(tokens, vec!["raw.tok.en", "q.t", "c.k.e"]);
    }

    #[test]
    fn percent_decoding_never_splits_characters() {
        assert_eq!(percent_decode("a%2Eb"), "a.b");
        assert_eq!(percent_decode("%é%"), "%é%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41%4a"), "AJ");
        assert_eq!(percent_decode("a%2E"), "a.");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn removing_a_param_keeps_the_rest() {
        assert_eq!(
            without_param("/x?access_token=t&b=2", "access_token"),
            "/x?b=2"
        );
        assert_eq!(without_param("/x?access_token=t", "access_token"), "/x");
        assert_eq!(
            without_param("/x?a=1&access_token=t&access_token=u&c", "access_token"),
            "/x?a=1&c"
        );
        assert_eq!(without_param("/x", "access_token"), "/x");
    }
}
