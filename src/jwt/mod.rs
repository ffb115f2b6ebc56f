//! Local JWT authentication with Istio `RequestAuthentication.jwtRules` semantics, as Envoy's
//! `jwt_authn` filter does it under Istio's requirement (any rule, token may be missing):
//! extract, parse, pick the rule by issuer, check time, audience, then the signature. Every token
//! in a request must verify; a request without one continues unauthenticated.

pub mod cache;
pub(crate) mod ecdsa;
pub mod extract;
pub mod host_crypto;
pub mod jwks;
pub mod montgomery;
pub(crate) mod rsa;
pub(crate) mod sharing;
pub mod status;
pub mod token;
pub mod verify;
#[cfg(test)]
#[allow(clippy::string_slice)]
mod wycheproof;

use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;

use crate::headers::HeaderMutation;
use crate::policy::AuthInfo;
use extract::{extract, without_param, Location};
use jwks::Jwks;
use status::JwtStatus;
use token::Jwt;

/// Envoy's `jwt_authn` default leeway for `exp` / `nbf`.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Envoy's default remote JWKS cache duration.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(600);
/// Default timeout of a JWKS fetch (Istio's `jwtRules[].timeout` default).
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy cuts the path in the `www-authenticate` realm at this many bytes.
pub const MAX_REALM_PATH: usize = 256;

/// Where a rule's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `jwks`: the key set given in the rule.
    Inline(Rc<Jwks>),
    /// Fetched by the proxy from `uri` through Envoy cluster `cluster`.
    Remote {
        /// `jwksUri`.
        uri: String,
        /// The Envoy cluster the fetch goes through: `jwksCluster`, else Istio's
        /// `outbound|<port>||<host>`.
        cluster: String,
        /// `:authority` of the fetch, from `uri`.
        authority: String,
        /// `:path` of the fetch, from `uri`.
        path: String,
        /// `jwtRules[].timeout`: how long one fetch may take.
        timeout: Duration,
    },
    /// OpenID discovery (an https `issuer` with neither `jwks` nor `jwksUri`): the proxy fetches
    /// the issuer's `/.well-known/openid-configuration` (`uri`) through `cluster`, then the keys
    /// at its `jwks_uri` through `jwks_cluster`, else Istio's `outbound|<port>||<jwks host>`.
    Discovery {
        /// `<issuer>/.well-known/openid-configuration`.
        uri: String,
        /// The issuer's cluster: Istio's `outbound|<port>||<issuer host>`.
        cluster: String,
        /// `:authority` of the discovery fetch, from the issuer.
        authority: String,
        /// Path of the discovery document.
        path: String,
        /// Limit of each fetch (`timeout`).
        timeout: Duration,
        /// `jwksCluster`: the cluster of the keys' fetch, whatever host `jwks_uri` names.
        jwks_cluster: Option<String>,
    },
}

/// A compiled `jwtRules[]` entry (Envoy's `JwtProvider`).
#[derive(Debug, Clone)]
pub struct JwtRule {
    /// `iss` a token must carry for this rule to verify it.
    pub issuer: String,
    /// Sanitized (no `http(s)://`, no trailing `/`); empty allows any audience.
    pub audiences: Vec<String>,
    /// `jwks` or `jwksUri`.
    pub keys: KeySource,
    /// `fromHeaders` / `fromParams` / `fromCookies`, or Envoy's defaults.
    pub locations: Vec<Location>,
    /// `forwardOriginalToken`: the token stays in the request sent upstream.
    pub forward: bool,
    /// `outputPayloadToHeader`: the header that gets the verified payload (base64url).
    pub payload_header: Option<String>,
    /// `(header, claim path)`.
    pub claim_headers: Vec<(String, Vec<String>)>,
}

/// All JWT settings of the plugin (Envoy's `JwtAuthentication`).
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// `jwtRules`, in order (a rule is referred to by its index).
    pub rules: Vec<JwtRule>,
    /// Leeway for `exp` / `nbf` (Envoy's `clock_skew_seconds`).
    pub clock_skew: Duration,
    /// How long fetched remote keys are used before they are fetched again (Envoy's
    /// `cache_duration`).
    pub refresh: Duration,
    /// Every location of every rule, each with the rules that read it.
    pub locations: Vec<(Location, Vec<usize>)>,
    /// The same locations without the rules, in extraction order (built with the table).
    pub location_list: Vec<Location>,
    /// Removals of every header written from verified tokens (built with the table).
    pub strip: Vec<HeaderMutation>,
}

/// The keys of one rule as the key store has them now.
pub enum Keys {
    /// The key set to verify with.
    Ready(Rc<Jwks>),
    /// Not fetched yet: the request waits.
    Pending,
    /// The fetch failed and no keys were ever had.
    Failed,
}

/// Gives the current keys of a rule (inline, or fetched and cached by the root context).
pub trait KeyStore {
    /// The keys of the rule at index `rule` of `JwtConfig::rules`.
    fn keys(&self, rule: usize) -> Keys;
    /// Changes whenever the rule's keys change (cached verifications of older keys are void).
    fn generation(&self, _rule: usize) -> u64 {
        0
    }
    /// A token named a key the rule's keys do not have: true when the store starts a (rate
    /// limited) refetch the request should wait for. Inline keys never refetch.
    fn unknown_key(&self, _rule: usize) -> bool {
        false
    }
}

/// What verifying tokens needs: the keys, where signatures are checked, the verified-token cache
/// and the host clock (seconds).
pub struct Verifier<'a> {
    /// The keys of every rule.
    pub keys: &'a dyn KeyStore,
    /// Pure Rust, or the host's `verify_signature` for RS* / ES*.
    pub backend: &'a dyn verify::SignatureBackend,
    /// `None`: every token is verified in full.
    pub cache: Option<&'a cache::TokenCache>,
    /// Unix seconds.
    pub now: u64,
}

/// A key store with only the inline keys (remote keys are always pending).
pub struct InlineKeys<'a>(pub &'a JwtConfig);

impl KeyStore for InlineKeys<'_> {
    fn keys(&self, rule: usize) -> Keys {
        match self.0.rules.get(rule).map(|r| &r.keys) {
            Some(KeySource::Inline(jwks)) => Keys::Ready(Rc::clone(jwks)),
            _ => Keys::Pending,
        }
    }
}

/// The result of authenticating one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// No token anywhere (or a CORS preflight): continue unauthenticated.
    NoToken,
    /// Every token verified; `mutations` remove forwarded tokens and add payload / claim headers.
    Verified {
        /// The identity policies see as `request.auth.*`.
        auth: Rc<AuthInfo>,
        /// To apply to the request before it goes on.
        mutations: Vec<HeaderMutation>,
    },
    /// A token did not verify: the reply is Envoy's 401 (or 403) with this status.
    Failed(JwtStatus),
    /// A rule's remote keys are not there yet.
    Pending {
        /// The rule's index in `JwtConfig::rules`.
        rule: usize,
    },
}

/// Why verifying one token stopped.
enum Stop {
    Failed(JwtStatus),
    Pending(usize),
}

/// Istio/Envoy audience comparison: `http(s)://` and one trailing `/` do not count.
pub fn sanitize_audience(audience: &str) -> String {
    let a = audience
        .strip_prefix("https://")
        .or_else(|| audience.strip_prefix("http://"))
        .unwrap_or(audience);
    a.strip_suffix('/').unwrap_or(a).to_string()
}

impl JwtConfig {
    /// No `jwtRules`: nothing to authenticate.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Builds the location table (call after `rules` is complete).
    pub fn index_locations(&mut self) {
        let mut table: Vec<(Location, Vec<usize>)> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            for location in &rule.locations {
                match table.iter_mut().find(|(l, _)| l == location) {
                    Some((_, rules)) => rules.push(i),
                    None => table.push((location.clone(), vec![i])),
                }
            }
        }
        self.location_list = table.iter().map(|(l, _)| l.clone()).collect();
        self.locations = table;
        self.strip = self.identity_headers();
    }

    /// Headers the filter writes from verified tokens: removed from every incoming request first,
    /// with or without a token, so a client cannot forge them.
    pub fn sanitize(&self) -> &[HeaderMutation] {
        &self.strip
    }

    fn identity_headers(&self) -> Vec<HeaderMutation> {
        let mut names: Vec<&str> = Vec::new();
        for rule in &self.rules {
            names.extend(rule.payload_header.as_deref());
            names.extend(rule.claim_headers.iter().map(|(h, _)| h.as_str()));
        }
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|n| HeaderMutation::Remove {
                name: n.to_string(),
            })
            .collect()
    }

    /// Authenticates a request (headers after `sanitize`, lowercase names, `:path` included).
    pub fn authenticate(&self, verifier: &Verifier, headers: &[(String, String)]) -> Outcome {
        let header = |name: &str| crate::headers::first(headers, name);
        let non_empty = |name: &str| header(name).is_some_and(|v| !v.is_empty());
        if header(":method") == Some("OPTIONS")
            && non_empty("origin")
            && non_empty("access-control-request-method")
        {
            return Outcome::NoToken;
        }
        let mut tokens = extract(&self.location_list, headers);
        tokens.dedup_by(|a, b| a.token == b.token && a.location == b.location);
        if tokens.is_empty() {
            return Outcome::NoToken;
        }
        // Envoy verifies the last-extracted token first; the first failure decides.
        let mut verified = Vec::with_capacity(tokens.len());
        for found in tokens.iter().rev() {
            let readers = self
                .locations
                .iter()
                .find(|(l, _)| l == found.location)
                .map_or(&[][..], |(_, r)| r);
            match self.verify_one(verifier, &found.token, readers) {
                Ok((jwt, rule)) => verified.push((jwt, rule, found.location)),
                Err(Stop::Failed(status)) => return Outcome::Failed(status),
                Err(Stop::Pending(rule)) => return Outcome::Pending { rule },
            }
        }
        verified.reverse();
        let mut mutations = Vec::new();
        for (jwt, rule, location) in &verified {
            if !rule.forward {
                match location {
                    Location::Header { name, .. } => {
                        mutations.push(HeaderMutation::Remove { name: name.clone() })
                    }
                    Location::Param(name) => {
                        let path = header(":path").unwrap_or("/");
                        mutations.push(HeaderMutation::Set {
                            name: ":path".into(),
                            value: without_param(path, name),
                        });
                    }
                    Location::Cookie(_) => {}
                }
            }
            if let Some(name) = &rule.payload_header {
                mutations.push(HeaderMutation::Append {
                    name: name.clone(),
                    value: jwt.payload_segment.clone(),
                });
            }
            for (name, path) in &rule.claim_headers {
                if let Some(value) = claim_header_value(&jwt.claims, path) {
                    mutations.push(HeaderMutation::Append {
                        name: name.clone(),
                        value,
                    });
                }
            }
        }
        // The identity policies see: the first token, as Envoy's payload metadata ends up holding.
        let Some((jwt, _, _)) = verified.first() else {
            return Outcome::NoToken;
        };
        let auth = jwt.auth_info();
        Outcome::Verified { auth, mutations }
    }

    fn verify_one(
        &self,
        v: &Verifier,
        token: &str,
        readers: &[usize],
    ) -> Result<(Rc<Jwt>, &JwtRule), Stop> {
        if let Some(hit) = v.cache.and_then(|c| c.get(token, v.now)) {
            if let Some(rule) = self.rules.get(hit.rule) {
                if readers.contains(&hit.rule) && hit.generation == v.keys.generation(hit.rule) {
                    self.check_claims(&hit.jwt, rule, v.now)?;
                    return Ok((Rc::clone(&hit.jwt), rule));
                }
            }
        }
        let jwt = Rc::new(Jwt::parse(token).map_err(Stop::Failed)?);
        let (rule_index, rule) = readers
            .iter()
            .find_map(|&i| Some((i, self.rules.get(i)?)).filter(|(_, r)| r.issuer == jwt.issuer))
            .ok_or(Stop::Failed(JwtStatus::JwtUnknownIssuer))?;
        self.check_claims(&jwt, rule, v.now)?;
        match v.keys.keys(rule_index) {
            Keys::Ready(jwks) => match verify::verify(&jwt, &jwks, v.backend) {
                Ok(()) => {}
                Err(JwtStatus::JwksKidAlgMismatch) if v.keys.unknown_key(rule_index) => {
                    return Err(Stop::Pending(rule_index))
                }
                Err(status) => return Err(Stop::Failed(status)),
            },
            Keys::Pending => return Err(Stop::Pending(rule_index)),
            Keys::Failed => return Err(Stop::Failed(JwtStatus::JwksFetchFail)),
        }
        if let Some(cache) = v.cache {
            let expires = jwt.expires.map_or(u64::MAX, |exp| {
                exp.saturating_add(self.clock_skew.as_secs())
            });
            let generation = v.keys.generation(rule_index);
            cache.insert(
                token,
                cache::Cached {
                    jwt: Rc::clone(&jwt),
                    rule: rule_index,
                    generation,
                    expires,
                },
            );
        }
        Ok((jwt, rule))
    }

    /// Time, then audience (jwt_verify_lib's order after the issuer).
    fn check_claims(&self, jwt: &Jwt, rule: &JwtRule, now: u64) -> Result<(), Stop> {
        jwt.check_time(now, self.clock_skew.as_secs())
            .map_err(Stop::Failed)?;
        let audiences = &rule.audiences;
        if !audiences.is_empty()
            && !jwt
                .audiences
                .iter()
                .any(|a| audiences.contains(&sanitize_audience(a)))
        {
            return Err(Stop::Failed(JwtStatus::JwtAudienceNotAllowed));
        }
        Ok(())
    }
}

/// A claim as header text: strings as they are, integers as integers, other numbers as Envoy
/// prints them (`1.500000`), booleans as `true`/`false`, lists of scalars joined by `,`.
fn claim_header_value(claims: &Value, path: &[String]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for key in rest {
        value = value.get(key)?;
    }
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(match n.as_u64() {
                Some(u) => u.to_string(),
                None => format!("{:.6}", n.as_f64()?),
            }),
            _ => None,
        }
    }
    let text = match value {
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        other => scalar(other)?,
    };
    (!text.is_empty()).then_some(text)
}

/// `Bearer realm="<scheme>://<host><path>"` (path cut at 256 bytes), with
/// `, error="invalid_token"` unless the token was missing (Envoy's `jwt_authn`).
pub fn www_authenticate(headers: &[(String, String)], status: JwtStatus) -> String {
    let header = |name: &str| crate::headers::first(headers, name).unwrap_or_default();
    let original = header("x-envoy-original-path");
    let path = if original.is_empty() {
        header(":path")
    } else {
        original
    };
    let mut cut = path.len().min(MAX_REALM_PATH);
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    let scheme = match header(":scheme") {
        "" => "http",
        s => s,
    };
    let realm = format!(
        "{scheme}://{}{}",
        header(":authority"),
        path.get(..cut).unwrap_or_default()
    );
    let realm = realm.replace('"', "%22");
    match status {
        JwtStatus::JwtMissed => format!("Bearer realm=\"{realm}\""),
        _ => format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
    }
}

#[cfg(test)]
mod tests;
