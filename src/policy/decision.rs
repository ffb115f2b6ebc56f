//! The whole authorization decision as one pure function, in the order Istio puts its filters:
//! the CUSTOM providers (one `ext_authz` filter each), then RBAC DENY, then RBAC ALLOW, with the
//! dry-run policies evaluated beside them as Istio's shadow RBAC. The shell asks `decide` once
//! when the request is authenticated and, when providers were asked, once more after their
//! answers (their headers may change what DENY and ALLOW see). It only carries the answer out.

use super::{Policies, Policy, RequestAttributes};

/// Where the request is in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Authenticated; no provider asked yet.
    Authenticated,
    /// Every provider that had to be asked allowed (or failed open, or was a dry run).
    Checked,
}

/// One CUSTOM provider to ask (Envoy's `ext_authz` filter for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// Index in `extensionProviders`.
    pub provider: usize,
    /// Only dry-run policies asked for it: its answer is counted and logged, never enforced.
    pub dry_run: bool,
}

/// What DENY and ALLOW policies (enforced, or the dry-run set alone) decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// No DENY matched and ALLOW passed: `policy` names the ALLOW policy that matched (the
    /// first, in order), `None` when there are no ALLOW policies.
    Allowed {
        /// The matching ALLOW policy's `name`.
        policy: Option<&'a str>,
    },
    /// A DENY policy matched.
    Denied {
        /// The policy's `name`.
        policy: &'a str,
    },
    /// ALLOW policies exist and none matched.
    NoAllowMatch,
}

/// Why a local reply is sent (the `x-inline-authz-denied-by` code names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// `403 RBAC: access denied` from a DENY policy.
    Policy(&'a str),
    /// `403 RBAC: access denied`: ALLOW policies exist, none matched, the request had a token.
    NoAllowMatch,
    /// `401` asking for a token (RFC 6750): no ALLOW matched and the request had no token.
    TokenRequired,
}

impl Refusal<'_> {
    /// The HTTP status of the local reply.
    pub fn status(self) -> u32 {
        match self {
            Refusal::Policy(_) | Refusal::NoAllowMatch => 403,
            Refusal::TokenRequired => 401,
        }
    }
}

/// The decision on a request (Envoy's `CheckStatus` plus what to count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Ask these providers one after another, in `extensionProviders` order; the first denial or
    /// error ends the request; then `decide` again at `Stage::Checked`.
    Ask(Vec<Check>),
    /// The local verdict: forward the request when `refusal` is `None`.
    Local(Local<'a>),
}

/// DENY / ALLOW and the shadow evaluation of the dry-run set, on the same attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local<'a> {
    /// `None`: there is no enforced DENY or ALLOW policy (nothing to count).
    pub enforced: Option<Verdict<'a>>,
    /// `None`: there is no dry-run DENY or ALLOW policy.
    pub shadow: Option<Verdict<'a>>,
    /// The reply to send, or `None` to forward the request.
    pub refusal: Option<Refusal<'a>>,
}

/// The decision for `request` at `stage` (DESIGN.md, "Decisions and replies", policy rows).
pub fn decide<'a>(
    policies: &'a Policies,
    request: &RequestAttributes,
    stage: Stage,
) -> Decision<'a> {
    if stage == Stage::Authenticated {
        let checks = checks(policies, request);
        if !checks.is_empty() {
            return Decision::Ask(checks);
        }
    }
    let enforced = verdict(&policies.deny, &policies.allow, request);
    let refusal = match enforced {
        None | Some(Verdict::Allowed { .. }) => None,
        Some(Verdict::Denied { policy }) => Some(Refusal::Policy(policy)),
        Some(Verdict::NoAllowMatch) if policies.challenge_tokenless && request.auth.is_none() => {
            Some(Refusal::TokenRequired)
        }
        Some(Verdict::NoAllowMatch) => Some(Refusal::NoAllowMatch),
    };
    Decision::Local(Local {
        enforced,
        shadow: verdict(&policies.dry_deny, &policies.dry_allow, request),
        refusal,
    })
}

/// The providers to ask: per provider, an enforced CUSTOM policy that matches makes an enforced
/// check, else a matching dry-run one makes a dry-run check.
fn checks(policies: &Policies, request: &RequestAttributes) -> Vec<Check> {
    let mut checks: Vec<Check> = Vec::new();
    for custom in &policies.custom {
        if !custom.policy.matches(request) {
            continue;
        }
        let dry_run = custom.policy.dry_run;
        match checks.iter_mut().find(|c| c.provider == custom.provider) {
            Some(check) => check.dry_run &= dry_run,
            None => checks.push(Check {
                provider: custom.provider,
                dry_run,
            }),
        }
    }
    checks.sort_by_key(|c| c.provider);
    checks
}

/// DENY, then ALLOW, as Istio's RBAC filters order them; `None` when both lists are empty.
fn verdict<'a>(
    deny: &'a [Policy],
    allow: &'a [Policy],
    request: &RequestAttributes,
) -> Option<Verdict<'a>> {
    if deny.is_empty() && allow.is_empty() {
        return None;
    }
    if let Some(policy) = deny.iter().find(|p| p.matches(request)) {
        return Some(Verdict::Denied {
            policy: &policy.name,
        });
    }
    if allow.is_empty() {
        return Some(Verdict::Allowed { policy: None });
    }
    Some(match allow.iter().find(|p| p.matches(request)) {
        Some(policy) => Verdict::Allowed {
            policy: Some(&policy.name),
        },
        None => Verdict::NoAllowMatch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::matcher::{Cidr, PathMatch, StringMatch};
    use crate::policy::{Attribute, AuthInfo, Constraint, CustomPolicy, Rule, ValueMatch};

    fn on_path(name: &str, path: &str, dry_run: bool) -> Policy {
        Policy {
            name: name.into(),
            rules: vec![Rule {
                to: vec![vec![Constraint {
                    attribute: Attribute::Path,
                    values: vec![ValueMatch::Path(PathMatch::parse(path).unwrap())],
                    negated: false,
                }]],
                ..Default::default()
            }],
            dry_run,
        }
    }

    fn with_token() -> Policy {
        Policy {
            name: "require-jwt".into(),
            rules: vec![Rule {
                from: vec![vec![Constraint {
                    attribute: Attribute::RequestPrincipal,
                    values: vec![ValueMatch::Text(StringMatch::parse("*"))],
                    negated: false,
                }]],
                ..Default::default()
            }],
            dry_run: false,
        }
    }

    fn custom(provider: usize, path: &str, dry_run: bool) -> CustomPolicy {
        CustomPolicy {
            policy: on_path(&format!("custom-{provider}"), path, dry_run),
            provider,
        }
    }

    fn get(path: &str) -> RequestAttributes {
        RequestAttributes {
            method: "GET".into(),
            path: path.into(),
            ..Default::default()
        }
    }

    fn authenticated(path: &str) -> RequestAttributes {
        RequestAttributes {
            auth: Some(std::rc::Rc::new(AuthInfo {
                principal: "iss/sub".into(),
                ..Default::default()
            })),
            ..get(path)
        }
    }

    fn local(
        enforced: Option<Verdict<'static>>,
        shadow: Option<Verdict<'static>>,
        refusal: Option<Refusal<'static>>,
    ) -> Decision<'static> {
        Decision::Local(Local {
            enforced,
            shadow,
            refusal,
        })
    }

    /// Every policy row of DESIGN.md's reply table.
    #[test]
    fn the_reply_table() {
        let policies = Policies {
            deny: vec![on_path("no-admin", "/admin", false)],
            allow: vec![with_token(), on_path("public", "/public", false)],
            challenge_tokenless: true,
            ..Default::default()
        };
        let rows: [(&str, RequestAttributes, Decision); 5] = [
            (
                "a DENY policy matches: 403, whatever the token",
                authenticated("/admin"),
                local(
                    Some(Verdict::Denied { policy: "no-admin" }),
                    None,
                    Some(Refusal::Policy("no-admin")),
                ),
            ),
            (
                "no ALLOW matches, no token: 401",
                get("/private"),
                local(
                    Some(Verdict::NoAllowMatch),
                    None,
                    Some(Refusal::TokenRequired),
                ),
            ),
            (
                "an ALLOW policy matches without a token",
                get("/public"),
                local(
                    Some(Verdict::Allowed {
                        policy: Some("public"),
                    }),
                    None,
                    None,
                ),
            ),
            (
                "a valid token matches the ALLOW policy",
                authenticated("/private"),
                local(
                    Some(Verdict::Allowed {
                        policy: Some("require-jwt"),
                    }),
                    None,
                    None,
                ),
            ),
            (
                "DENY wins over ALLOW without a token too",
                get("/admin"),
                local(
                    Some(Verdict::Denied { policy: "no-admin" }),
                    None,
                    Some(Refusal::Policy("no-admin")),
                ),
            ),
        ];
        for (what, request, expected) in rows {
            assert_eq!(
                decide(&policies, &request, Stage::Authenticated),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn no_allow_match_with_a_token_is_403() {
        let policies = Policies {
            allow: vec![on_path("public", "/public", false)],
            challenge_tokenless: true,
            ..Default::default()
        };
        let decision = decide(&policies, &authenticated("/x"), Stage::Authenticated);
        assert_eq!(
            decision,
            local(
                Some(Verdict::NoAllowMatch),
                None,
                Some(Refusal::NoAllowMatch)
            )
        );
        assert_eq!(Refusal::NoAllowMatch.status(), 403);
    }

    #[test]
    fn without_jwt_rules_no_allow_match_is_403_even_without_a_token() {
        let policies = Policies {
            allow: vec![on_path("public", "/public", false)],
            ..Default::default()
        };
        let Decision::Local(local) = decide(&policies, &get("/x"), Stage::Authenticated) else {
            panic!("no CUSTOM policy: a local decision");
        };
        assert_eq!(local.refusal, Some(Refusal::NoAllowMatch));
    }

    #[test]
    fn no_policies_forward_and_count_nothing() {
        assert_eq!(
            decide(&Policies::default(), &get("/"), Stage::Authenticated),
            local(None, None, None)
        );
    }

    #[test]
    fn custom_first_then_local_after_the_checks() {
        let policies = Policies {
            custom: vec![custom(0, "/headers", false)],
            deny: vec![on_path("no-headers", "/headers", false)],
            ..Default::default()
        };
        assert_eq!(
            decide(&policies, &get("/headers"), Stage::Authenticated),
            Decision::Ask(vec![Check {
                provider: 0,
                dry_run: false
            }])
        );
        assert_eq!(
            decide(&policies, &get("/headers"), Stage::Checked),
            local(
                Some(Verdict::Denied {
                    policy: "no-headers"
                }),
                None,
                Some(Refusal::Policy("no-headers"))
            )
        );
        assert!(matches!(
            decide(&policies, &get("/ip"), Stage::Authenticated),
            Decision::Local(_)
        ));
    }

    #[test]
    fn providers_are_asked_in_extension_provider_order_once_each() {
        let policies = Policies {
            custom: vec![
                custom(2, "/a", false),
                custom(0, "/a", true),
                custom(2, "/a", true),
                custom(1, "/b", false),
            ],
            ..Default::default()
        };
        assert_eq!(
            decide(&policies, &get("/a"), Stage::Authenticated),
            Decision::Ask(vec![
                Check {
                    provider: 0,
                    dry_run: true
                },
                Check {
                    provider: 2,
                    dry_run: false
                },
            ]),
            "an enforced policy makes its provider's check enforced"
        );
    }

    #[test]
    fn dry_run_policies_are_a_shadow_that_never_refuses() {
        let policies = Policies {
            dry_deny: vec![on_path("would-deny", "/x", true)],
            dry_allow: vec![on_path("would-allow", "/y", true)],
            ..Default::default()
        };
        assert_eq!(
            decide(&policies, &get("/x"), Stage::Authenticated),
            local(
                None,
                Some(Verdict::Denied {
                    policy: "would-deny"
                }),
                None
            )
        );
        assert_eq!(
            decide(&policies, &get("/y"), Stage::Authenticated),
            local(
                None,
                Some(Verdict::Allowed {
                    policy: Some("would-allow")
                }),
                None
            )
        );
        assert_eq!(
            decide(&policies, &get("/z"), Stage::Authenticated),
            local(None, Some(Verdict::NoAllowMatch), None)
        );
    }

    /// The dry-run set sees the same attributes as the enforced one: a DENY on a source address
    /// counts a would-deny exactly where the enforced policy denies.
    #[test]
    fn dry_run_deny_matches_where_the_enforced_one_denies() {
        let on_ip = |dry_run| Policy {
            name: "deny-net".into(),
            rules: vec![Rule {
                from: vec![vec![Constraint {
                    attribute: Attribute::SourceIp,
                    values: vec![ValueMatch::Ip(Cidr::parse("10.0.0.0/8").unwrap())],
                    negated: false,
                }]],
                ..Default::default()
            }],
            dry_run,
        };
        let enforced = Policies {
            deny: vec![on_ip(false)],
            ..Default::default()
        };
        let dry = Policies {
            dry_deny: vec![on_ip(true)],
            ..Default::default()
        };
        for (ip, denied) in [("10.1.2.3", true), ("192.0.2.1", false)] {
            let request = RequestAttributes {
                source_ip: Some(ip.parse().unwrap()),
                ..get("/")
            };
            let Decision::Local(e) = decide(&enforced, &request, Stage::Authenticated) else {
                panic!()
            };
            let Decision::Local(d) = decide(&dry, &request, Stage::Authenticated) else {
                panic!()
            };
            assert_eq!(e.refusal.is_some(), denied, "{ip}");
            assert_eq!(e.enforced, d.shadow, "{ip}");
            assert_eq!(d.refusal, None);
        }
    }
}
