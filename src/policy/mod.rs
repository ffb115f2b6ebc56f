//! Istio `AuthorizationPolicy` evaluation as pure functions: CUSTOM first, then DENY, then ALLOW.
//! Rules of a policy are OR-ed; `from`, `to`, `when` of a rule are AND-ed; list entries are OR-ed;
//! `not*` fields exclude.

pub mod decision;
pub mod matcher;
pub mod path;

use std::net::IpAddr;

pub use decision::{decide, Check, Decision, Local, Refusal, Stage, Verdict};
use matcher::{Cidr, HostMatch, PathMatch, StringMatch};

/// Authenticated request identity from a verified JWT (Istio's `request.auth.*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthInfo {
    /// `<iss>/<sub>`.
    pub principal: String,
    /// The token's `aud` values (`request.auth.audiences`).
    pub audiences: Vec<String>,
    /// The token's `azp` claim (`request.auth.presenter`).
    pub presenter: Option<String>,
    /// The whole payload, for `request.auth.claims[...]` conditions.
    pub claims: std::rc::Rc<serde_json::Value>,
}

/// What policies look at, gathered once per request (Envoy RBAC's view of a request).
#[derive(Debug, Clone, Default)]
pub struct RequestAttributes {
    /// `:method` (`methods` / `notMethods`).
    pub method: String,
    /// Normalized path, without query or fragment.
    pub path: String,
    /// `:authority` as sent, port included (`hosts` / `notHosts`).
    pub authority: String,
    /// Lowercase names, in arrival order; repeated names stay separate entries.
    pub headers: Vec<(String, String)>,
    /// The downstream connection's peer (`source.ip`, `ipBlocks`).
    pub source_ip: Option<IpAddr>,
    /// `remote.ip` / `remoteIpBlocks`: the client as Envoy resolved it (XFF, PROXY protocol);
    /// the shell reads it from the same `source.address` property as `source_ip`.
    pub remote_ip: Option<IpAddr>,
    /// The local address the connection arrived on (`destination.ip`).
    pub destination_ip: Option<IpAddr>,
    /// `destination.port` / `ports`.
    pub destination_port: Option<u16>,
    /// The TLS server name (`connection.sni`).
    pub sni: Option<String>,
    /// The peer certificate's identities (mTLS), in the order Envoy RBAC's `authenticated`
    /// matcher tries them: URI SAN (`spiffe://cluster.local/ns/default/sa/sleep`), DNS SAN,
    /// subject (RFC 2253, `CN=…`), empty ones left out; empty without a peer certificate. A
    /// `principals` or `namespaces` value matches when it matches any of them.
    pub peer_identities: Vec<String>,
    /// Set once a JWT rule verified the request's token.
    pub auth: Option<std::rc::Rc<AuthInfo>>,
}

impl RequestAttributes {
    /// All values of a header joined by `,`, as Envoy's header matchers see a repeated header.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut joined: Option<String> = None;
        for (_, value) in self.headers.iter().filter(|(n, _)| n == name) {
            match joined.as_mut() {
                Some(j) => {
                    j.push(',');
                    j.push_str(value);
                }
                None => joined = Some(value.clone()),
            }
        }
        joined
    }

    /// Replaces every value of `name` (a header rule applied before local evaluation).
    pub fn set_header(&mut self, name: &str, value: Option<&str>) {
        self.headers.retain(|(n, _)| n != name);
        if let Some(v) = value {
            self.headers.push((name.to_string(), v.to_string()));
        }
    }
}

/// The request attribute a constraint looks at (Istio's source / operation / condition keys).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Attribute {
    RequestPrincipal,
    PeerPrincipal,
    Namespace,
    SourceIp,
    RemoteIp,
    DestinationIp,
    DestinationPort,
    Host,
    Method,
    Path,
    Sni,
    Header(String),
    AuthAudiences,
    AuthPresenter,
    AuthClaim(Vec<String>),
}

/// One accepted value of a constraint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ValueMatch {
    Text(StringMatch),
    Host(HostMatch),
    Path(PathMatch),
    Ip(Cidr),
    Port(u16),
}

/// `field: [values]` (or `notField`): true when any value matches; negated for `not*`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Constraint {
    pub attribute: Attribute,
    pub values: Vec<ValueMatch>,
    pub negated: bool,
}

enum Value<'a> {
    Text(&'a str),
    Ip(IpAddr),
    Port(u16),
}

impl ValueMatch {
    fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (ValueMatch::Text(m), Value::Text(v)) => m.matches(v),
            (ValueMatch::Host(m), Value::Text(v)) => m.matches(v),
            (ValueMatch::Path(m), Value::Text(v)) => m.matches(v),
            (ValueMatch::Ip(c), Value::Ip(ip)) => c.contains(*ip),
            (ValueMatch::Port(p), Value::Port(v)) => p == v,
            _ => false,
        }
    }
}

impl Constraint {
    pub fn matches(&self, request: &RequestAttributes) -> bool {
        let any = |value: Value| self.values.iter().any(|m| m.matches(&value));
        let hit = match &self.attribute {
            Attribute::Method => any(Value::Text(&request.method)),
            Attribute::Path => any(Value::Text(&request.path)),
            Attribute::Host => any(Value::Text(&request.authority)),
            Attribute::Header(name) => request.header(name).is_some_and(|v| any(Value::Text(&v))),
            Attribute::SourceIp => request.source_ip.is_some_and(|ip| any(Value::Ip(ip))),
            Attribute::RemoteIp => request.remote_ip.is_some_and(|ip| any(Value::Ip(ip))),
            Attribute::DestinationIp => request.destination_ip.is_some_and(|ip| any(Value::Ip(ip))),
            Attribute::DestinationPort => request
                .destination_port
                .is_some_and(|p| any(Value::Port(p))),
            Attribute::Sni => request.sni.as_deref().is_some_and(|s| any(Value::Text(s))),
            Attribute::PeerPrincipal => self.any_identity(request, principal_matches),
            Attribute::Namespace => self.any_identity(request, namespace_matches),
            Attribute::RequestPrincipal => request
                .auth
                .as_ref()
                .is_some_and(|a| !a.principal.is_empty() && any(Value::Text(&a.principal))),
            Attribute::AuthAudiences => request
                .auth
                .as_ref()
                .is_some_and(|a| a.audiences.iter().any(|aud| any(Value::Text(aud)))),
            Attribute::AuthPresenter => request
                .auth
                .as_ref()
                .and_then(|a| a.presenter.as_deref())
                .is_some_and(|p| any(Value::Text(p))),
            Attribute::AuthClaim(path) => request.auth.as_ref().is_some_and(|a| {
                claim_values(&a.claims, path)
                    .iter()
                    .any(|v| any(Value::Text(v)))
            }),
        };
        hit != self.negated
    }

    /// Whether a value matches one of the peer's identities, as `matches` says for Istio's value.
    fn any_identity(
        &self,
        request: &RequestAttributes,
        matches: fn(&StringMatch, &str) -> bool,
    ) -> bool {
        request.peer_identities.iter().any(|identity| {
            self.values
                .iter()
                .any(|v| matches!(v, ValueMatch::Text(m) if matches(m, identity)))
        })
    }
}

/// Istio's `principals` / `source.principal` value on one identity, as istiod compiles it for
/// `authenticated.principal_name` (`StringMatcherWithPrefix(value, "spiffe://")`): exact or
/// prefix `spiffe://<value>`, `*<suffix>` the regex `spiffe://.*<suffix>`, and `*` the regex
/// `.+`, which any identity matches, a DNS SAN or a subject too.
fn principal_matches(value: &StringMatch, identity: &str) -> bool {
    let spiffe = identity.strip_prefix("spiffe://");
    match value {
        StringMatch::Presence => !identity.is_empty(),
        StringMatch::Exact(v) => spiffe == Some(v.as_str()),
        StringMatch::Prefix(p) => spiffe.is_some_and(|s| s.starts_with(p.as_str())),
        StringMatch::Suffix(x) => spiffe.is_some_and(|s| s.ends_with(x.as_str())),
    }
}

/// Istio's `namespaces` / `source.namespace` value on one identity, as istiod compiles it: the
/// regex `.*/ns/<value>/.*`, each `*` of the value `.*` (`srcNamespaceGenerator`). Any identity
/// holding `/ns/<value>/` matches, a subject `CN=spiffe://…/ns/<value>/…` too. The pattern has
/// no other operator, so its literal pieces are looked for in order, each leftmost.
fn namespace_matches(value: &StringMatch, identity: &str) -> bool {
    let pattern = match value {
        StringMatch::Exact(v) => format!("/ns/{v}/"),
        StringMatch::Prefix(p) => format!("/ns/{p}*/"),
        StringMatch::Suffix(x) => format!("/ns/*{x}/"),
        StringMatch::Presence => "/ns/*/".to_string(),
    };
    let mut rest = identity;
    for piece in pattern.split('*') {
        match rest.split_once(piece) {
            Some((_, after)) => rest = after,
            None => return false,
        }
    }
    true
}

/// A claim at a nested path, as strings: a string, or each string of a list (Istio's semantics).
fn claim_values(claims: &serde_json::Value, path: &[String]) -> Vec<String> {
    let mut value = claims;
    for key in path {
        match value.get(key) {
            Some(v) => value = v,
            None => return Vec::new(),
        }
    }
    match value {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        serde_json::Value::Bool(b) => vec![b.to_string()],
        serde_json::Value::Number(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

/// One rule: every present part must match; each part is a list whose entries are OR-ed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rule {
    /// `from[]`, each entry the AND of its source fields.
    pub from: Vec<Vec<Constraint>>,
    /// `to[]`, each entry the AND of its operation fields.
    pub to: Vec<Vec<Constraint>>,
    /// `when[]`, all AND-ed.
    pub when: Vec<Constraint>,
}

fn all(constraints: &[Constraint], request: &RequestAttributes) -> bool {
    constraints.iter().all(|c| c.matches(request))
}

impl Rule {
    pub fn matches(&self, request: &RequestAttributes) -> bool {
        (self.from.is_empty() || self.from.iter().any(|f| all(f, request)))
            && (self.to.is_empty() || self.to.iter().any(|t| all(t, request)))
            && all(&self.when, request)
    }
}

/// A named policy; with no rules it never matches (Istio).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// `policies[].name` (default `policies[<index>]`): how logs, metrics and denial reasons
    /// name it.
    pub name: String,
    pub(crate) rules: Vec<Rule>,
    /// Evaluated and counted, never enforced.
    pub dry_run: bool,
}

impl Policy {
    pub(crate) fn matches(&self, request: &RequestAttributes) -> bool {
        self.rules.iter().any(|r| r.matches(request))
    }
}

/// A CUSTOM policy and the provider it names (its index in `extensionProviders`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomPolicy {
    /// Its rules say which requests go to the provider.
    pub policy: Policy,
    /// Index in `extensionProviders`.
    pub provider: usize,
}

/// The compiled policies of one plugin, grouped by action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    /// CUSTOM policies, enforced and dry-run (each knows which).
    pub custom: Vec<CustomPolicy>,
    /// Enforced DENY policies.
    pub deny: Vec<Policy>,
    /// Enforced ALLOW policies.
    pub allow: Vec<Policy>,
    /// Dry-run DENY / ALLOW policies: a shadow evaluation of their own, as Istio's shadow RBAC.
    pub dry_deny: Vec<Policy>,
    /// Dry-run ALLOW policies, the other half of the shadow evaluation.
    pub dry_allow: Vec<Policy>,
    /// JWT rules exist: a request without a token that no ALLOW policy matches gets 401 asking
    /// for one (the ingress tutorial's answer), not 403.
    pub(crate) challenge_tokenless: bool,
}

/// Which request properties the policies read (dry-run ones included), so the hot path asks the
/// host only for those.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub(crate) source_ip: bool,
    pub(crate) remote_ip: bool,
    pub(crate) destination_ip: bool,
    pub(crate) destination_port: bool,
    pub(crate) sni: bool,
    pub(crate) peer_principal: bool,
    /// The normalized path: a `paths` / `notPaths` rule, or a CUSTOM policy (its check request
    /// carries the path).
    pub(crate) path: bool,
    /// The request headers at all: a rule on the method, host, path or a header, a CUSTOM policy,
    /// JWT rules, JSON local replies (`Config` adds the last two). A plugin of address and
    /// identity rules only never reads them.
    pub(crate) headers: bool,
}

impl Policies {
    /// No policy of any action, dry-run ones included: every request is allowed.
    pub fn is_empty(&self) -> bool {
        self.custom.is_empty()
            && self.deny.is_empty()
            && self.allow.is_empty()
            && self.dry_deny.is_empty()
            && self.dry_allow.is_empty()
    }

    /// Every policy, enforced and dry-run, of every action.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Policy> {
        self.custom
            .iter()
            .map(|c| &c.policy)
            .chain(&self.deny)
            .chain(&self.allow)
            .chain(&self.dry_deny)
            .chain(&self.dry_allow)
    }

    /// The request properties any policy reads: a dry-run policy gets the same attributes as
    /// an enforced one, so it counts what the enforced one would deny.
    pub fn needs(&self) -> Needs {
        let mut needs = Needs {
            path: !self.custom.is_empty(),
            headers: !self.custom.is_empty(),
            ..Needs::default()
        };
        for rule in self.all().flat_map(|p| &p.rules) {
            let constraints = rule
                .from
                .iter()
                .flatten()
                .chain(rule.to.iter().flatten())
                .chain(&rule.when);
            for c in constraints {
                match c.attribute {
                    Attribute::SourceIp => needs.source_ip = true,
                    Attribute::RemoteIp => needs.remote_ip = true,
                    Attribute::DestinationIp => needs.destination_ip = true,
                    Attribute::DestinationPort => needs.destination_port = true,
                    Attribute::Sni => needs.sni = true,
                    Attribute::PeerPrincipal | Attribute::Namespace => needs.peer_principal = true,
                    Attribute::Path => {
                        needs.path = true;
                        needs.headers = true;
                    }
                    _ => needs.headers = true,
                }
            }
        }
        needs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(attribute: Attribute, values: &[&str], negated: bool) -> Constraint {
        Constraint {
            attribute,
            values: values
                .iter()
                .map(|v| ValueMatch::Text(StringMatch::parse(v)))
                .collect(),
            negated,
        }
    }

    fn paths(values: &[&str], negated: bool) -> Constraint {
        Constraint {
            attribute: Attribute::Path,
            values: values
                .iter()
                .map(|v| ValueMatch::Path(PathMatch::parse(v).unwrap()))
                .collect(),
            negated,
        }
    }

    fn request(method: &str, path: &str) -> RequestAttributes {
        RequestAttributes {
            method: method.into(),
            path: path.into(),
            authority: "httpbin.default:8000".into(),
            ..Default::default()
        }
    }

    fn policy(name: &str, rules: Vec<Rule>) -> Policy {
        Policy {
            name: name.into(),
            rules,
            dry_run: false,
        }
    }

    #[test]
    fn rule_parts_are_anded_and_entries_ored() {
        let rule = Rule {
            to: vec![
                vec![
                    paths(&["/headers"], false),
                    text(Attribute::Method, &["GET"], false),
                ],
                vec![paths(&["/admin/*"], false)],
            ],
            when: vec![text(
                Attribute::Header("x-team".into()),
                &["blue", "green"],
                false,
            )],
            ..Default::default()
        };
        let mut r = request("GET", "/headers");
        assert!(!rule.matches(&r), "when part not satisfied");
        r.headers.push(("x-team".into(), "green".into()));
        assert!(rule.matches(&r));
        r.method = "POST".into();
        assert!(!rule.matches(&r), "GET and /headers are AND-ed");
        r.path = "/admin/users".into();
        assert!(rule.matches(&r), "second to entry is OR-ed");
    }

    #[test]
    fn not_fields_exclude() {
        let rule = Rule {
            to: vec![vec![
                paths(&["/api/*"], false),
                paths(&["/api/health"], true),
            ]],
            ..Default::default()
        };
        assert!(rule.matches(&request("GET", "/api/users")));
        assert!(!rule.matches(&request("GET", "/api/health")));
    }

    #[test]
    fn empty_rule_matches_everything_and_no_rules_match_nothing() {
        assert!(Rule::default().matches(&request("GET", "/x")));
        assert!(!policy("none", vec![]).matches(&request("GET", "/x")));
    }

    #[test]
    fn dry_run_policies_are_read_for_the_properties_they_need() {
        let constraint = |attribute| Constraint {
            attribute,
            values: vec![],
            negated: false,
        };
        let dry = |attribute| Policy {
            name: "dry".into(),
            rules: vec![Rule {
                when: vec![constraint(attribute)],
                ..Default::default()
            }],
            dry_run: true,
        };
        type Read = fn(&Needs) -> bool;
        let cases: [(Attribute, Read); 7] = [
            (Attribute::SourceIp, |n| n.source_ip),
            (Attribute::RemoteIp, |n| n.remote_ip),
            (Attribute::DestinationIp, |n| n.destination_ip),
            (Attribute::DestinationPort, |n| n.destination_port),
            (Attribute::Sni, |n| n.sni),
            (Attribute::PeerPrincipal, |n| n.peer_principal),
            (Attribute::Namespace, |n| n.peer_principal),
        ];
        for (attribute, needed) in cases {
            let deny = Policies {
                dry_deny: vec![dry(attribute.clone())],
                ..Default::default()
            };
            let allow = Policies {
                dry_allow: vec![dry(attribute.clone())],
                ..Default::default()
            };
            assert!(needed(&deny.needs()), "dry-run DENY on {attribute:?}");
            assert!(needed(&allow.needs()), "dry-run ALLOW on {attribute:?}");
        }
        assert_eq!(Policies::default().needs(), Needs::default());
    }

    #[test]
    fn absent_attributes_fail_values_and_pass_not_values() {
        let r = request("GET", "/");
        assert!(!text(Attribute::RequestPrincipal, &["*"], false).matches(&r));
        assert!(text(Attribute::RequestPrincipal, &["*"], true).matches(&r));
        assert!(!text(Attribute::Header("x-missing".into()), &["*"], false).matches(&r));
        assert!(text(Attribute::PeerPrincipal, &["cluster.local/*"], true).matches(&r));
        assert!(text(Attribute::PeerPrincipal, &["*"], true).matches(&r));
        assert!(!text(Attribute::Namespace, &["*"], false).matches(&r));
    }

    #[test]
    fn repeated_headers_are_joined_with_commas() {
        let mut r = request("GET", "/");
        r.headers.push(("x-a".into(), "1".into()));
        r.headers.push(("x-a".into(), "2".into()));
        assert_eq!(r.header("x-a").as_deref(), Some("1,2"));
        assert!(text(Attribute::Header("x-a".into()), &["1,2"], false).matches(&r));
        r.set_header("x-a", Some("3"));
        assert_eq!(r.header("x-a").as_deref(), Some("3"));
    }

    #[test]
    fn identity_attributes() {
        let mut r = request("GET", "/");
        r.peer_identities = vec!["spiffe://cluster.local/ns/foo/sa/bar".into()];
        r.source_ip = Some("10.0.0.5".parse().unwrap());
        r.destination_port = Some(8000);
        assert!(text(Attribute::Namespace, &["foo"], false).matches(&r));
        assert!(text(Attribute::PeerPrincipal, &["*/sa/bar"], false).matches(&r));
        let ip = Constraint {
            attribute: Attribute::SourceIp,
            values: vec![ValueMatch::Ip(Cidr::parse("10.0.0.0/8").unwrap())],
            negated: false,
        };
        assert!(ip.matches(&r));
        let port = Constraint {
            attribute: Attribute::DestinationPort,
            values: vec![ValueMatch::Port(8000)],
            negated: true,
        };
        assert!(!port.matches(&r));
    }

    #[test]
    fn peer_identities_match_principals_and_namespaces_as_istio_compiles_them() {
        const FOO_BAR: &str = "spiffe://cluster.local/ns/foo/sa/bar";
        use Attribute::{Namespace as Ns, PeerPrincipal as P};
        // (identities, attribute, value, matches): URI SAN, DNS SAN, subject, in Envoy's order.
        let rows: [(&[&str], Attribute, &str, bool); 30] = [
            (&[FOO_BAR], P, "cluster.local/ns/foo/sa/bar", true),
            (&[FOO_BAR], P, "cluster.local/ns/foo/*", true),
            (&[FOO_BAR], P, "*/sa/bar", true),
            (&[FOO_BAR], P, "*", true),
            (&[FOO_BAR], P, FOO_BAR, false), // istiod prefixes it again: spiffe://spiffe://…
            (&[FOO_BAR], P, "cluster.local/ns/foo", false),
            (&[FOO_BAR], Ns, "foo", true),
            (&[FOO_BAR], Ns, "fo*", true),
            (&[FOO_BAR], Ns, "*oo", true),
            (&[FOO_BAR], Ns, "*", true),
            (&[FOO_BAR], Ns, "bar", false),
            (&[FOO_BAR], Ns, "f*o", true), // a `*` inside is `.*` too
            // A DNS SAN or a subject is an identity for `*` only: the others need `spiffe://`.
            (&["client.example"], P, "*", true),
            (&["client.example"], P, "client.example", false),
            (&["client.example"], P, "*.example", false),
            (&["client.example"], Ns, "*", false),
            (&["CN=legacy,O=inline-authz"], P, "*", true),
            (
                &["CN=legacy,O=inline-authz"],
                P,
                "CN=legacy,O=inline-authz",
                false,
            ),
            // A SPIFFE ID in the subject's CN: its namespace matches, its principal does not.
            (
                &["CN=spiffe://cluster.local/ns/foo/sa/bar"],
                P,
                "cluster.local/ns/foo/sa/bar",
                false,
            ),
            (
                &["CN=spiffe://cluster.local/ns/foo/sa/bar"],
                Ns,
                "foo",
                true,
            ),
            // The regex wants `/ns/<value>/`: nothing after the namespace, no namespace.
            (&["spiffe://cluster.local/ns/foo"], Ns, "foo", false),
            (
                &["spiffe://cluster.local/ns/foo"],
                P,
                "cluster.local/ns/foo*",
                true,
            ),
            (&["spiffe://ns/foo/sa/x"], Ns, "foo", true), // trust domain `ns`: the regex sees it
            (
                &["https://client.example/workload"],
                P,
                "https://client.example/workload",
                false,
            ),
            (&["https://client.example/workload"], P, "*", true),
            // Any identity may match: the URI SAN, the DNS SAN or the subject.
            (&[FOO_BAR, "bar.example"], P, "*", true),
            (
                &["spiffe://td/ns/a/sa/x", "CN=spiffe://td/ns/b/sa/y"],
                Ns,
                "b",
                true,
            ),
            (&["spiffe://td/ns/a/sa/x", "CN=y"], P, "td/ns/a/sa/x", true),
            (&[], P, "*", false),
            (&[], Ns, "*", false),
        ];
        for (identities, attribute, value, want) in rows {
            let mut r = request("GET", "/");
            r.peer_identities = identities.iter().map(|i| i.to_string()).collect();
            let label = format!("{attribute:?} {value:?} on {identities:?}");
            assert_eq!(
                text(attribute.clone(), &[value], false).matches(&r),
                want,
                "{label}"
            );
            assert_eq!(
                text(attribute, &[value], true).matches(&r),
                !want,
                "not {label}"
            );
        }
    }

    #[test]
    fn claims_are_matched_by_nested_path_and_list_items() {
        let mut r = request("GET", "/");
        r.auth = Some(std::rc::Rc::new(AuthInfo {
            principal: "iss/sub".into(),
            audiences: vec!["a".into(), "b".into()],
            presenter: None,
            claims: std::rc::Rc::new(
                serde_json::json!({"groups": ["dev", "ops"], "org": {"team": "blue"}, "level": 3}),
            ),
        }));
        assert!(text(Attribute::AuthClaim(vec!["groups".into()]), &["ops"], false).matches(&r));
        assert!(text(
            Attribute::AuthClaim(vec!["org".into(), "team".into()]),
            &["blue"],
            false
        )
        .matches(&r));
        assert!(text(Attribute::AuthClaim(vec!["level".into()]), &["3"], false).matches(&r));
        assert!(text(Attribute::AuthAudiences, &["b"], false).matches(&r));
        assert!(text(Attribute::RequestPrincipal, &["iss/*"], false).matches(&r));
    }
}
