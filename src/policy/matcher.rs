//! Istio's value matchers: strings (exact, `abc*`, `*abc`, `*`), hosts, paths with templates,
//! CIDR blocks and ports. Mirrors what Istio generates for Envoy's RBAC filter.

use std::net::IpAddr;

/// Istio string match: exact `abc`, prefix `abc*`, suffix `*abc`, presence `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Presence,
}

impl StringMatch {
    pub fn parse(pattern: &str) -> StringMatch {
        if pattern == "*" {
            StringMatch::Presence
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            StringMatch::Suffix(suffix.to_string())
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            StringMatch::Prefix(prefix.to_string())
        } else {
            StringMatch::Exact(pattern.to_string())
        }
    }

    /// Like `parse`, for values compared case-insensitively (header names, hosts).
    pub fn parse_lowercase(pattern: &str) -> StringMatch {
        StringMatch::parse(&pattern.to_ascii_lowercase())
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(p) => value.starts_with(p.as_str()),
            StringMatch::Suffix(s) => value.ends_with(s.as_str()),
            StringMatch::Presence => true,
        }
    }
}

/// A list of header-name patterns compared case-insensitively, as Istio generates them
/// (`ignore_case: true`) for `includeRequestHeadersInCheck` and the `headersTo*` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderNames(Vec<StringMatch>);

impl HeaderNames {
    /// Compiles Istio's patterns (`x-*`, `*-id`, `authorization`, `*`).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> HeaderNames {
        HeaderNames(
            patterns
                .iter()
                .map(|p| StringMatch::parse_lowercase(p.as_ref()))
                .collect(),
        )
    }

    /// `name` must already be lowercase (header names from Envoy are).
    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|m| m.matches(name))
    }

    /// No pattern: the list matches no header.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `hosts` / `notHosts`: case-insensitive; a pattern without a port matches the host on any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostMatch {
    pattern: StringMatch,
    has_port: bool,
}

impl HostMatch {
    pub fn parse(pattern: &str) -> HostMatch {
        let has_port = split_port(pattern).1.is_some();
        HostMatch {
            pattern: StringMatch::parse_lowercase(pattern),
            has_port,
        }
    }

    pub fn matches(&self, authority: &str) -> bool {
        let mut authority = authority.to_ascii_lowercase();
        // `example.com.` (the root dot of a fully qualified name) is the same host as
        // `example.com`: a DENY on the one cannot be walked around with the other.
        let (host, port) = split_port(&authority);
        if let Some(bare) = host.strip_suffix('.') {
            let without_dot = match port {
                Some(port) => format!("{bare}:{port}"),
                None => bare.to_string(),
            };
            authority = without_dot;
        }
        if self.pattern.matches(&authority) {
            return true;
        }
        match split_port(&authority) {
            (host, Some(_)) if !self.has_port => self.pattern.matches(host),
            _ => false,
        }
    }
}

/// Splits `host:port` and `[v6]:port`; a bare IPv6 address has no port.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.rsplit_once("]:") {
            Some((host, port)) => (
                authority.get(..=host.len()).unwrap_or(authority),
                Some(port),
            ),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port))
        }
        _ => (authority, None),
    }
}

/// `paths` / `notPaths`: an Istio string match, or a template with `{*}` (one segment) and
/// `{**}` (the rest of the path, last operator only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathMatch {
    String(StringMatch),
    Template(Vec<TemplateSegment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateSegment {
    Literal(String),
    One,
    Rest,
}

impl PathMatch {
    pub fn parse(pattern: &str) -> Result<PathMatch, String> {
        if !pattern.contains('{') && !pattern.contains('}') {
            return Ok(PathMatch::String(StringMatch::parse(pattern)));
        }
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(format!("path template {pattern:?} must start with '/'"));
        };
        let parts: Vec<&str> = body.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = match *part {
                "{*}" => TemplateSegment::One,
                "{**}" if i + 1 == parts.len() => TemplateSegment::Rest,
                "{**}" => return Err(format!("{pattern:?}: {{**}} must be the last operator")),
                p if p.contains('{') || p.contains('}') || p.contains('*') => {
                    return Err(format!(
                        "{pattern:?}: a template operator must be a whole segment, {{*}} or {{**}}"
                    ))
                }
                p => TemplateSegment::Literal(p.to_string()),
            };
            segments.push(segment);
        }
        Ok(PathMatch::Template(segments))
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::String(m) => m.matches(path),
            PathMatch::Template(segments) => {
                let Some(body) = path.strip_prefix('/') else {
                    return false;
                };
                let mut rest = body;
                for (i, segment) in segments.iter().enumerate() {
                    let last = i + 1 == segments.len();
                    if let TemplateSegment::Rest = segment {
                        return !rest.is_empty();
                    }
                    let (head, tail) = match rest.split_once('/') {
                        Some((h, t)) => (h, Some(t)),
                        None => (rest, None),
                    };
                    let ok = match segment {
                        TemplateSegment::Literal(l) => head == l,
                        TemplateSegment::One => !head.is_empty(),
                        TemplateSegment::Rest => true,
                    };
                    if !ok {
                        return false;
                    }
                    match (tail, last) {
                        (None, true) => return true,
                        (Some(_), true) | (None, false) => return false,
                        (Some(t), false) => rest = t,
                    }
                }
                false
            }
        }
    }
}

/// An IP block: `10.0.0.0/8`, `192.168.1.7`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{text:?} has an invalid prefix length"))?,
        };
        Ok(Cidr {
            network,
            prefix_len,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_match_forms() {
        let cases = [
            ("/headers", "/headers", true),
            ("/headers", "/headers/", false),
            ("/api/*", "/api/v1", true),
            ("/api/*", "/api", false),
            ("*.png", "/a/b.png", true),
            ("*.png", "/a/b.jpg", false),
            ("*", "anything", true),
            ("GET", "get", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(
                StringMatch::parse(pattern).matches(value),
                want,
                "{pattern} vs {value}"
            );
        }
    }

    #[test]
    fn header_names_ignore_case_and_take_patterns() {
        let names = HeaderNames::new(&["X-Ext-Authz", "x-user-*", "*-id"]);
        assert!(names.matches("x-ext-authz"));
        assert!(names.matches("x-user-email"));
        assert!(names.matches("x-request-id"));
        assert!(!names.matches("cookie"));
        assert!(HeaderNames::new(&["*"]).matches("cookie"));
    }

    #[test]
    fn a_trailing_root_dot_is_the_same_host() {
        let admin = HostMatch::parse("admin.example.com");
        for authority in [
            "admin.example.com.",
            "ADMIN.example.com.",
            "admin.example.com.:8080",
        ] {
            assert!(admin.matches(authority), "{authority}");
        }
        assert!(!admin.matches("admin.example.com.."));
        assert!(!admin.matches("admin.example.com.evil"));
        assert!(HostMatch::parse("*.example.com").matches("a.example.com."));
        assert!(HostMatch::parse("[::1]").matches("[::1]:80"));
    }

    #[test]
    fn hosts_match_case_insensitively_with_or_without_port() {
        let cases = [
            ("example.com", "example.com", true),
            ("example.com", "EXAMPLE.com:8080", true),
            ("example.com:8080", "example.com:8080", true),
            ("example.com:8080", "example.com:9090", false),
            ("example.com:8080", "example.com", false),
            ("*.example.com", "api.example.com:443", true),
            ("api.*", "api.example.com", true),
            ("example.com", "evil-example.com", false),
            ("[::1]", "[::1]:80", true),
        ];
        for (pattern, authority, want) in cases {
            assert_eq!(
                HostMatch::parse(pattern).matches(authority),
                want,
                "{pattern} vs {authority}"
            );
        }
    }

    #[test]
    fn path_templates() {
        let one = PathMatch::parse("/users/{*}/profile").unwrap();
        assert!(one.matches("/users/alice/profile"));
        assert!(!one.matches("/users/alice/bob/profile"));
        assert!(!one.matches("/users//profile"));
        let rest = PathMatch::parse("/files/{**}").unwrap();
        assert!(rest.matches("/files/a/b/c"));
        assert!(!rest.matches("/files/"));
        assert!(!rest.matches("/other/a"));
        assert!(PathMatch::parse("/a/{**}/b").is_err());
        assert!(PathMatch::parse("/a/x{*}").is_err());
    }

    #[test]
    fn cidr_blocks() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.9.9".parse().unwrap()));
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0", "banana", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
