//! The configuration exactly as written by the user: Istio field names, every field known.
//! Validation and compilation happen in the domain modules beside it; this file only mirrors the
//! schema.

use std::collections::BTreeMap;

use serde::de::{value, DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "PluginConfig")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    /// Istio `RequestAuthentication.spec.jwtRules`.
    #[serde(default)]
    pub jwt_rules: Vec<RawJwtRule>,
    /// Leeway for `exp` / `nbf`, e.g. `60s` (default).
    pub clock_skew: Option<String>,
    /// How often `jwksUri` keys are fetched again, e.g. `10m` (default).
    pub jwks_refresh_interval: Option<String>,
    /// Istio `meshConfig.extensionProviders` (only `envoyExtAuthzHttp`).
    #[serde(default)]
    pub extension_providers: Vec<RawExtensionProvider>,
    /// Istio `AuthorizationPolicy.spec` entries, plus `name` and `dryRun`.
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
    /// `NONE`, `BASE` (default), `MERGE_SLASHES` or `DECODE_AND_MERGE_SLASHES`.
    #[cfg_attr(feature = "schema", schemars(with = "Option<RawPathNormalization>"))]
    pub path_normalization: Option<OneOf<RawPathNormalization>>,
    /// Adds `x-inline-authz-denied-by: <reason>` to every local reply (opt-in).
    #[serde(default)]
    pub expose_denial_reason: bool,
    /// Verified tokens kept per VM (default 1000; 0 turns the cache off).
    pub jwt_cache_size: Option<u32>,
    /// Cacheable authorization answers kept per VM (default 1000; 0 turns the cache off).
    pub decision_cache_size: Option<u32>,
    /// Where RS*/ES* signatures are checked: `auto` (Envoy's BoringSSL when the host offers
    /// `verify_signature`, else pure Rust), `host` (refuse to start without it) or `rust`.
    #[cfg_attr(feature = "schema", schemars(with = "Option<RawSignatureBackend>"))]
    pub signature_backend: Option<OneOf<RawSignatureBackend>>,
    /// Writes the decision of every request to Envoy filter state `wasm.inline_authz.decision`,
    /// for access logs (`%FILTER_STATE(wasm.inline_authz.decision:PLAIN)%`); opt-in: one more
    /// hostcall per request.
    #[serde(default)]
    pub audit_record: bool,
    /// The body of the filter's local replies: `envoy` (default: Envoy's texts) or `json`
    /// (`{"status": 403, "reason": "...", "policy": "..."}`, `content-type: application/json`).
    #[cfg_attr(feature = "schema", schemars(with = "Option<RawLocalReplyBody>"))]
    pub local_reply_body: Option<OneOf<RawLocalReplyBody>>,
}

/// `RequestAuthentication.spec.jwtRules[]`, plus `jwksCluster` for plain Envoy.
#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "JwtRule")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawJwtRule {
    pub issuer: String,
    pub audiences: Option<Vec<String>>,
    pub jwks_uri: Option<String>,
    pub jwks: Option<String>,
    pub jwks_cluster: Option<String>,
    pub from_headers: Option<Vec<RawFromHeader>>,
    pub from_params: Option<Vec<String>>,
    pub from_cookies: Option<Vec<String>>,
    pub output_payload_to_header: Option<String>,
    #[serde(default)]
    pub forward_original_token: bool,
    pub output_claim_to_headers: Option<Vec<RawClaimToHeader>>,
    /// JWKS fetch timeout (Istio `jwtRules[].timeout`).
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "FromHeader")
)]
#[serde(deny_unknown_fields)]
pub struct RawFromHeader {
    pub name: String,
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "ClaimToHeader")
)]
#[serde(deny_unknown_fields)]
pub struct RawClaimToHeader {
    pub header: String,
    pub claim: String,
}

/// `meshConfig.extensionProviders[]`: an `envoyExtAuthzHttp` or an `envoyExtAuthzGrpc` service.
#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "ExtensionProvider")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawExtensionProvider {
    pub name: String,
    pub envoy_ext_authz_http: Option<RawExtAuthzHttp>,
    pub envoy_ext_authz_grpc: Option<RawExtAuthzGrpc>,
}

/// `meshConfig.extensionProviders[].envoyExtAuthzGrpc`, plus our explicit `cluster`.
#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "EnvoyExtAuthzGrpc")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawExtAuthzGrpc {
    pub service: String,
    pub port: NumberOrString,
    /// An Envoy cluster that speaks HTTP/2; default `outbound|<port>||<service>`.
    pub cluster: Option<String>,
    pub timeout: Option<String>,
    #[serde(default)]
    pub fail_open: bool,
    pub status_on_error: Option<NumberOrString>,
    pub include_request_body_in_check: Option<RawBodyInCheck>,
    /// Istio's field; the filter's header changes always make Envoy choose the route again.
    #[serde(default)]
    #[allow(dead_code)]
    pub clear_route_cache: bool,
}

/// `meshConfig.extensionProviders[].envoyExtAuthzHttp`.
#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "EnvoyExtAuthzHttp")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawExtAuthzHttp {
    pub service: String,
    pub port: NumberOrString,
    pub cluster: Option<String>,
    pub timeout: Option<String>,
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub fail_open: bool,
    pub status_on_error: Option<NumberOrString>,
    /// Deprecated in Istio in favour of `includeRequestHeadersInCheck`; accepted for pasting.
    pub include_headers_in_check: Option<Vec<String>>,
    pub include_request_headers_in_check: Option<Vec<String>>,
    #[serde(default)]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    pub include_request_body_in_check: Option<RawBodyInCheck>,
    #[serde(default)]
    pub headers_to_upstream_on_allow: Vec<String>,
    #[serde(default)]
    pub headers_to_downstream_on_allow: Vec<String>,
    pub headers_to_downstream_on_deny: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "IncludeRequestBodyInCheck")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBodyInCheck {
    pub max_request_bytes: Option<u32>,
    #[serde(default)]
    pub allow_partial_message: bool,
    /// gRPC: the body goes as bytes (`raw_body`); over HTTP it has no effect (as in Envoy).
    #[serde(default)]
    pub pack_as_bytes: bool,
}

/// `AuthorizationPolicy.spec` without `selector` / `targetRef` (the WasmPlugin selects the workload).
#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "Policy")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPolicy {
    /// Used in logs, metrics and the denial reason; default `policies[<index>]`.
    pub name: Option<String>,
    /// `CUSTOM`, `DENY` or `ALLOW` (default `ALLOW`).
    #[cfg_attr(feature = "schema", schemars(with = "Option<RawAction>"))]
    pub action: Option<OneOf<RawAction>>,
    /// CUSTOM only: the extension provider to call.
    pub provider: Option<RawProviderRef>,
    pub rules: Option<Vec<RawRule>>,
    /// Evaluated, logged and counted as "would deny", never enforced (Istio's dry-run annotation).
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "ProviderRef")
)]
#[serde(deny_unknown_fields)]
pub struct RawProviderRef {
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "Rule")
)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(default)]
    pub from: Vec<RawFrom>,
    #[serde(default)]
    pub to: Vec<RawTo>,
    #[serde(default)]
    pub when: Vec<RawCondition>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "From")
)]
#[serde(deny_unknown_fields)]
pub struct RawFrom {
    pub source: Option<RawSource>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "To")
)]
#[serde(deny_unknown_fields)]
pub struct RawTo {
    pub operation: Option<RawOperation>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "Source")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSource {
    pub principals: Option<Vec<String>>,
    pub not_principals: Option<Vec<String>>,
    pub request_principals: Option<Vec<String>>,
    pub not_request_principals: Option<Vec<String>>,
    pub namespaces: Option<Vec<String>>,
    pub not_namespaces: Option<Vec<String>>,
    pub ip_blocks: Option<Vec<String>>,
    pub not_ip_blocks: Option<Vec<String>>,
    pub remote_ip_blocks: Option<Vec<String>>,
    pub not_remote_ip_blocks: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "Operation")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawOperation {
    pub hosts: Option<Vec<String>>,
    pub not_hosts: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<NumberOrString>>"))]
    pub ports: Option<Ports>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<NumberOrString>>"))]
    pub not_ports: Option<Ports>,
    pub methods: Option<Vec<String>>,
    pub not_methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub not_paths: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "Condition")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawCondition {
    pub key: String,
    pub values: Option<Vec<String>>,
    pub not_values: Option<Vec<String>>,
}

/// Istio writes ports and status codes both as numbers and as strings (`port: "8000"`).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum NumberOrString {
    Number(u64),
    Text(String),
}

impl NumberOrString {
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            NumberOrString::Number(n) => Some(*n),
            NumberOrString::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// `ports: [8080, "9090"]` read as `["8080", "9090"]`, so that every operation field is a list
/// of text.
#[derive(Debug, Deserialize)]
#[serde(from = "Vec<NumberOrString>")]
pub struct Ports(Vec<String>);

impl From<Vec<NumberOrString>> for Ports {
    fn from(ports: Vec<NumberOrString>) -> Ports {
        let text = |port| match port {
            NumberOrString::Number(n) => n.to_string(),
            NumberOrString::Text(t) => t,
        };
        Ports(ports.into_iter().map(text).collect())
    }
}

impl std::ops::Deref for Ports {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.0
    }
}

/// `policies[].action`: Istio's `AuthorizationPolicy.Action`, without `AUDIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "Action")
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RawAction {
    Custom,
    Deny,
    #[default]
    Allow,
}

/// `pathNormalization`: Istio's `meshConfig.pathNormalization` (`DEFAULT` is `BASE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "PathNormalization")
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RawPathNormalization {
    None,
    Base,
    MergeSlashes,
    DecodeAndMergeSlashes,
    Default,
}

/// `signatureBackend`: where RS*/ES* signatures are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "SignatureBackend")
)]
#[serde(rename_all = "lowercase")]
pub enum RawSignatureBackend {
    Auto,
    Host,
    Rust,
}

/// `localReplyBody`: how the filter's local replies are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(rename = "LocalReplyBody")
)]
#[serde(rename_all = "lowercase")]
pub enum RawLocalReplyBody {
    Envoy,
    Json,
}

/// A name of the closed set `T`, read by `T`'s serde variant names (the ones the schema lists:
/// each field takes its schema from `Option<T>`). Any other name is refused in the words of
/// `T::refusal`, not with serde's "unknown variant" message. A wrapper because
/// `#[serde(try_from = "String")]` on `T` would make the schema a plain string, and a field's
/// `deserialize_with` needs `#[serde(default)]`, which changes how a struct written as a JSON
/// array is read.
#[derive(Debug, Clone, Copy)]
pub struct OneOf<T>(pub T);

/// How the filter refuses a name that is not in a closed set.
pub trait Refusal {
    /// The error message for `name`, which is not one of the set.
    fn refusal(name: &str) -> String;
}

impl<'de, T: DeserializeOwned + Refusal> Deserialize<'de> for OneOf<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<OneOf<T>, D::Error> {
        let name = String::deserialize(deserializer)?;
        let known: Result<T, value::Error> = T::deserialize(value::StrDeserializer::new(&name));
        known
            .map(OneOf)
            .map_err(|_| D::Error::custom(T::refusal(&name)))
    }
}

impl Refusal for RawAction {
    fn refusal(name: &str) -> String {
        match name {
            "AUDIT" => "AUDIT is not supported".to_string(),
            _ => format!("unknown action {name:?} (CUSTOM, DENY, ALLOW)"),
        }
    }
}

impl Refusal for RawPathNormalization {
    fn refusal(name: &str) -> String {
        format!("unknown value {name:?} (NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)")
    }
}

impl Refusal for RawSignatureBackend {
    fn refusal(name: &str) -> String {
        format!("unknown value {name:?} (auto, host, rust)")
    }
}

impl Refusal for RawLocalReplyBody {
    fn refusal(name: &str) -> String {
        format!("unknown value {name:?} (envoy, json)")
    }
}
