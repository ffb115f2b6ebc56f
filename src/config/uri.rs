//! The `http://` / `https://` URL of a `jwksUri`, split as the JWKS fetch needs it: the Envoy
//! cluster is named after host and port (`outbound|443||issuer.example`), the request carries the
//! authority and path. Deliberately small (no userinfo, no IPv6 literal without a port); no URL
//! crate in the `.wasm`.

/// A `jwksUri` split into its parts; `port` is the scheme's default when the URL names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Uri<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: u16,
    /// `host[:port]` as written, for the `:authority` header.
    pub authority: &'a str,
    /// From the first `/` after the authority on (query included), `/` when there is none.
    pub path: &'a str,
}

impl<'a> Uri<'a> {
    /// Splits `scheme://authority/path`; the error says what is wrong, for `jwksUri: <error>`.
    pub(crate) fn parse(text: &'a str) -> Result<Uri<'a>, &'static str> {
        let (scheme, rest) = text
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
            .ok_or("must be an http:// or https:// URL")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| "has an invalid port")?),
            None => (authority, if scheme == "https" { 443 } else { 80 }),
        };
        if host.is_empty() || authority.contains('@') {
            return Err("must name a host");
        }
        Ok(Uri {
            scheme,
            host,
            port,
            authority,
            path,
        })
    }

    /// Istio's name for the cluster of this URL's host: `outbound|<port>||<host>`.
    pub(crate) fn cluster(&self) -> String {
        format!("outbound|{}||{}", self.port, self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> Result<(&str, &str, u16, &str, &str), &'static str> {
        Uri::parse(text).map(|u| (u.scheme, u.host, u.port, u.authority, u.path))
    }

    #[test]
    fn urls_split_into_host_port_authority_and_path() {
        let cases = [
            (
                "https://issuer.example/jwks.json",
                (
                    "https",
                    "issuer.example",
                    443,
                    "issuer.example",
                    "/jwks.json",
                ),
            ),
            (
                "http://issuer.example",
                ("http", "issuer.example", 80, "issuer.example", "/"),
            ),
            (
                "https://b.example:8443/keys.json",
                ("https", "b.example", 8443, "b.example:8443", "/keys.json"),
            ),
            ("http://x:0/k", ("http", "x", 0, "x:0", "/k")),
            (
                "http://[::1]:8080/k",
                ("http", "[::1]", 8080, "[::1]:8080", "/k"),
            ),
            ("https://x/a//b?c=d", ("https", "x", 443, "x", "/a//b?c=d")),
            // Taken as written, as before Uri existed: a query without a path stays in the host.
            ("http://x?y", ("http", "x?y", 80, "x?y", "/")),
        ];
        for (text, want) in cases {
            assert_eq!(parts(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn other_schemes_bad_ports_and_missing_hosts_are_refused() {
        let cases = [
            ("ftp://x/k", "must be an http:// or https:// URL"),
            ("HTTP://x/", "must be an http:// or https:// URL"),
            ("http:/x", "must be an http:// or https:// URL"),
            ("issuer.example/jwks", "must be an http:// or https:// URL"),
            ("http://x:99999/k", "has an invalid port"),
            ("http://x:/k", "has an invalid port"),
            ("http://x:-1/", "has an invalid port"),
            ("http://[::1]/k", "has an invalid port"),
            ("http://@:99999", "has an invalid port"),
            ("http://:80/", "must name a host"),
            ("https://", "must name a host"),
            ("http://u@x/k", "must name a host"),
        ];
        for (text, want) in cases {
            assert_eq!(parts(text), Err(want), "{text}");
        }
    }
}
