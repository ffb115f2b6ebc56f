//! Policy matching: a fixed set of CUSTOM / DENY / ALLOW policies (exact, prefix, suffix,
//! presence and template paths, notPaths, methods, hosts, `when` headers, ipBlocks) evaluated
//! against fuzz-made requests, with the decisions that must follow from the policies.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use inline_authz::config::Config;
use inline_authz::policy::path::normalize;
use inline_authz::policy::{decide, Decision, RequestAttributes, Stage, Verdict};
use libfuzzer_sys::fuzz_target;

const POLICIES: &str = r#"{
  "extensionProviders": [{"name": "authz", "envoyExtAuthzHttp": {"service": "authz.default", "port": 8000}}],
  "policies": [
    {"name": "custom-api", "action": "CUSTOM", "provider": {"name": "authz"},
     "rules": [{"to": [{"operation": {"paths": ["/api/*"], "notPaths": ["/api/public/*"]}}]}]},
    {"name": "deny-admin", "action": "DENY",
     "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]},
    {"name": "deny-php", "action": "DENY",
     "rules": [{"to": [{"operation": {"paths": ["*.php"], "methods": ["GET", "POST"]}}]}]},
    {"name": "deny-blocked-net", "action": "DENY",
     "rules": [{"from": [{"source": {"ipBlocks": ["192.0.2.0/24", "2001:db8::/32"]}}]}]},
    {"name": "deny-red-team", "action": "DENY",
     "rules": [{"when": [{"key": "request.headers[x-team]", "values": ["red"]}]}]},
    {"name": "dry-deny-debug", "action": "DENY", "dryRun": true,
     "rules": [{"to": [{"operation": {"paths": ["/debug*"]}}]}]},
    {"name": "allow-public", "action": "ALLOW",
     "rules": [{"to": [{"operation": {"hosts": ["*.example.com", "example.org"],
                                      "notMethods": ["DELETE"]}}]},
               {"to": [{"operation": {"paths": ["/v1/{*}/items/{**}"]}}],
                "when": [{"key": "request.headers[x-token]", "values": ["*"]}]},
               {"from": [{"source": {"ipBlocks": ["10.0.0.0/8"], "notRemoteIpBlocks": ["10.9.0.0/16"]}}],
                "to": [{"operation": {"methods": ["GET"]}}]}]}
  ]
}"#;

#[derive(Arbitrary, Debug)]
enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl From<&Ip> for IpAddr {
    fn from(ip: &Ip) -> IpAddr {
        match ip {
            Ip::V4(o) => IpAddr::V4(Ipv4Addr::from(*o)),
            Ip::V6(o) => IpAddr::V6(Ipv6Addr::from(*o)),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    mode: u8,
    method: String,
    path: String,
    authority: String,
    headers: Vec<(String, String)>,
    source_ip: Option<Ip>,
    remote_ip: Option<Ip>,
}

thread_local! {
    static CONFIG: Config = Config::parse(POLICIES.as_bytes()).expect("fixture policies parse");
}

fuzz_target!(|input: Input| {
    use inline_authz::policy::path::PathNormalization::*;
    let mode = [None, Base, MergeSlashes, DecodeAndMergeSlashes][usize::from(input.mode % 4)];
    let path = normalize(&input.path, mode).path;
    let request = RequestAttributes {
        method: input.method,
        path,
        authority: input.authority,
        headers: input
            .headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect(),
        source_ip: input.source_ip.as_ref().map(IpAddr::from),
        remote_ip: input.remote_ip.as_ref().map(IpAddr::from),
        ..Default::default()
    };

    CONFIG.with(|config| {
        let policies = &config.policies;
        let first = decide(policies, &request, Stage::Authenticated);
        assert_eq!(
            first,
            decide(policies, &request, Stage::Authenticated),
            "deterministic"
        );
        let custom = match &first {
            Decision::Ask(checks) => Some(checks.as_slice()),
            Decision::Local(_) => Option::None,
        };
        let Decision::Local(local) = decide(policies, &request, Stage::Checked) else {
            panic!("after the checks the decision is local");
        };
        let decision = local.enforced.unwrap_or(Verdict::Allowed {
            policy: Option::None,
        });

        let p = request.path.as_str();
        if p.starts_with("/api/") && !p.starts_with("/api/public/") {
            assert_eq!(custom.map(<[_]>::len), Some(1), "{p:?}");
        } else {
            assert_eq!(custom, Option::None, "{p:?}");
        }

        let must_deny = p == "/admin"
            || p.starts_with("/admin/")
            || (p.ends_with(".php") && matches!(request.method.as_str(), "GET" | "POST"))
            || request.header("x-team").as_deref() == Some("red")
            || match request.source_ip {
                Some(IpAddr::V4(v4)) => v4.octets()[..3] == [192, 0, 2],
                Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                    Some(v4) => v4.octets()[..3] == [192, 0, 2],
                    Option::None => v6.segments()[..2] == [0x2001, 0x0db8],
                },
                Option::None => false,
            };
        match decision {
            Verdict::Denied { .. } => assert!(must_deny, "denied without cause: {request:?}"),
            _ => assert!(!must_deny, "not denied: {request:?} -> {decision:?}"),
        }
        // An authority starting with `[` is an IPv6 literal: its port is only split off after
        // `]:` (Envoy rejects a malformed one before any filter runs).
        if decision == Verdict::NoAllowMatch && !request.authority.starts_with('[') {
            let host = request.authority.to_ascii_lowercase();
            let host = match host.rsplit_once(':') {
                Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
                    h
                }
                _ => host.as_str(),
            };
            assert!(
                !((host.ends_with(".example.com") || host == "example.org")
                    && request.method != "DELETE"),
                "allow-public host rule should have matched: {request:?}"
            );
        }
    });
});
