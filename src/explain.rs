//! Decisions explained: the audit record an access log prints
//! (`%FILTER_STATE(wasm.inline_authz.decision:PLAIN)%`, the filter state Envoy keeps for the
//! filter's `set_property`) and the JSON body of a local reply (`localReplyBody: json`). Pure
//! values in, text out; the shell collects a [`Trail`] while the request runs and renders it once,
//! where the request ends.
//!
//! The record is one line of `key=value` fields separated by single spaces, in this order, a field
//! left out when it has no value:
//!
//! ```text
//! outcome=denied reason=policy:deny-admin principal=issuer/subject providers=sample-ext-authz:ok
//! ```
//!
//! - `outcome`: `allowed`, `denied` (the filter answered the request itself) or `would-deny`
//!   (forwarded, but a dry-run policy or dry-run CUSTOM check would have denied it);
//! - `reason`: the enforced reason: on `denied` the code of `x-inline-authz-denied-by` and the
//!   `denied_by` metrics (`policy:<name>`, `jwt_authn:<code>`, `rbac:no_allow_match`,
//!   `ext_authz:denied`, …); otherwise `policy:<name>` of the ALLOW policy that matched;
//! - `dry_run`: what the dry-run set would have answered when it would deny, a comma list
//!   (`policy:<name>`, `rbac:no_allow_match`, `ext_authz:denied`, `ext_authz:error`);
//! - `principal`: `<iss>/<sub>` of the verified token (Istio's `request.auth.principal`);
//! - `providers`: the CUSTOM providers asked, in order, a comma list of `<name>:<answer>` with
//!   answer `ok`, `denied` or `error`, prefixed `shadow_` for a dry-run check.
//!
//! Logfmt rather than JSON: one short line that `grep`, `awk` and log pipelines split without a
//! parser, beside Envoy's own space-separated access-log fields. Every value is percent-encoded
//! outside printable ASCII and for `%`, `=`, `,`, `"` and `\` (and so are spaces), so a name or a
//! subject can never add a field, a list entry or a line. The record holds no token, key or
//! secret: names from the configuration, reason codes and the principal only.

/// A provider's answer as the record names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It allowed (HTTP 200, gRPC `OK`).
    Ok,
    /// It denied.
    Denied,
    /// No usable answer (timeout, 5xx, failed dispatch …), whatever `failOpen` then did.
    Error,
}

/// What the decision of one request went through, gathered as the request runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trail {
    /// The ALLOW policy that matched, if one did.
    pub allowed_by: Option<String>,
    /// The reason codes of the dry-run verdicts that would deny.
    pub dry_run: Vec<String>,
    /// The providers asked, in order: name, answer, whether the check was a dry run.
    pub providers: Vec<(String, Answer, bool)>,
}

impl Trail {
    /// The record of this request: `denied` is the reason code when the filter replied itself,
    /// `principal` the verified token's `<iss>/<sub>`.
    pub fn record(&self, denied: Option<&str>, principal: Option<&str>) -> String {
        let mut out = String::with_capacity(64);
        let outcome = match denied {
            Some(_) => "denied",
            None if !self.dry_run.is_empty() => "would-deny",
            None => "allowed",
        };
        out.push_str("outcome=");
        out.push_str(outcome);
        let allowed_by = self.allowed_by.as_deref().map(|p| format!("policy:{p}"));
        if let Some(reason) = denied.or(allowed_by.as_deref()) {
            out.push_str(" reason=");
            escape_into(&mut out, reason);
        }
        if !self.dry_run.is_empty() {
            out.push_str(" dry_run=");
            list_into(&mut out, self.dry_run.iter().map(|c| (c.as_str(), "")));
        }
        if let Some(principal) = principal {
            out.push_str(" principal=");
            escape_into(&mut out, principal);
        }
        if !self.providers.is_empty() {
            out.push_str(" providers=");
            list_into(
                &mut out,
                self.providers.iter().map(|(name, answer, dry_run)| {
                    let answer = match (answer, dry_run) {
                        (Answer::Ok, false) => ":ok",
                        (Answer::Denied, false) => ":denied",
                        (Answer::Error, false) => ":error",
                        (Answer::Ok, true) => ":shadow_ok",
                        (Answer::Denied, true) => ":shadow_denied",
                        (Answer::Error, true) => ":shadow_error",
                    };
                    (name.as_str(), answer)
                }),
            );
        }
        out
    }
}

/// Entries escaped, each followed by its (plain) suffix, separated by commas.
fn list_into<'a>(out: &mut String, entries: impl Iterator<Item = (&'a str, &'static str)>) {
    for (i, (entry, suffix)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        escape_into(out, entry);
        out.push_str(suffix);
    }
}

/// Percent-encodes every byte that could break a field: outside printable ASCII, and `%`, `=`,
/// `,`, `"`, `\` (a space is outside printable ASCII here: 0x20 is encoded).
fn escape_into(out: &mut String, value: &str) {
    for &byte in value.as_bytes() {
        if (0x21..=0x7e).contains(&byte) && !b"%=,\"\\".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(hex_digit(byte >> 4).to_ascii_uppercase());
            out.push(hex_digit(byte & 0x0f).to_ascii_uppercase());
        }
    }
}

/// The hex digit of `n` (0..=15), lowercase.
fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// The body of a local reply under `localReplyBody: json`:
/// `{"status":403,"reason":"policy:deny-admin","policy":"deny-admin"}`, `policy` only when a
/// policy decided.
pub fn json_body(status: u32, reason: &str, policy: Option<&str>) -> Vec<u8> {
    let mut body = String::with_capacity(64);
    body.push_str(r#"{"status":"#);
    body.push_str(&status.to_string());
    body.push_str(r#","reason":"#);
    json_string_into(&mut body, reason);
    if let Some(policy) = policy {
        body.push_str(r#","policy":"#);
        json_string_into(&mut body, policy);
    }
    body.push('}');
    body.into_bytes()
}

/// A JSON string (RFC 8259): quotes, backslashes and control characters escaped. By hand rather
/// than with serde_json's serializer, which the filter has no other use for (a smaller `.wasm`).
fn json_string_into(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let byte = c as u8;
                out.push_str("\\u00");
                out.push(hex_digit(byte >> 4));
                out.push(hex_digit(byte & 0x0f));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allowed_request_without_policies_says_only_allowed() {
        assert_eq!(Trail::default().record(None, None), "outcome=allowed");
    }

    #[test]
    fn a_denial_names_its_reason_principal_and_providers() {
        let trail = Trail {
            providers: vec![("sample-ext-authz".into(), Answer::Ok, false)],
            ..Trail::default()
        };
        assert_eq!(
            trail.record(
                Some("policy:deny-admin"),
                Some("testing@asm.test.io/demo@asm.test.io")
            ),
            "outcome=denied reason=policy:deny-admin \
             principal=testing@asm.test.io/demo@asm.test.io providers=sample-ext-authz:ok"
        );
    }

    #[test]
    fn an_allow_names_the_allow_policy_that_matched() {
        let trail = Trail {
            allowed_by: Some("require-jwt".into()),
            ..Trail::default()
        };
        assert_eq!(
            trail.record(None, Some("https://issuer/alice")),
            "outcome=allowed reason=policy:require-jwt principal=https://issuer/alice"
        );
    }

    #[test]
    fn a_dry_run_denial_makes_a_forwarded_request_would_deny() {
        let trail = Trail {
            dry_run: vec!["ext_authz:denied".into(), "policy:no-admin".into()],
            providers: vec![
                ("a".into(), Answer::Denied, true),
                ("b".into(), Answer::Error, false),
            ],
            ..Trail::default()
        };
        assert_eq!(
            trail.record(None, None),
            "outcome=would-deny dry_run=ext_authz:denied,policy:no-admin \
             providers=a:shadow_denied,b:error"
        );
        assert!(trail
            .record(Some("ext_authz:denied"), None)
            .starts_with("outcome=denied reason=ext_authz:denied dry_run="));
    }

    #[test]
    fn characters_that_would_break_the_format_are_percent_encoded() {
        let trail = Trail {
            allowed_by: Some("a b=c,d%e\"f\\g\nh".into()),
            providers: vec![("p,q r".into(), Answer::Ok, false)],
            ..Trail::default()
        };
        let record = trail.record(None, Some("iss/sübject x=1"));
        assert_eq!(
            record,
            "outcome=allowed reason=policy:a%20b%3Dc%2Cd%25e%22f%5Cg%0Ah \
             principal=iss/s%C3%BCbject%20x%3D1 providers=p%2Cq%20r:ok"
        );
        // Split at spaces, then at the first `=`: always the five keys, never more.
        for field in record.split(' ') {
            let (key, _) = field.split_once('=').unwrap();
            assert!(["outcome", "reason", "dry_run", "principal", "providers"].contains(&key));
        }
    }

    #[test]
    fn json_body_names_the_policy_only_when_one_decided() {
        assert_eq!(
            json_body(403, "policy:deny-admin", Some("deny-admin")),
            br#"{"status":403,"reason":"policy:deny-admin","policy":"deny-admin"}"#
        );
        let body: serde_json::Value =
            serde_json::from_slice(&json_body(401, "jwt_authn:jwt_expired", None)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": 401, "reason": "jwt_authn:jwt_expired"})
        );
        let name = "\"x\"\\ \u{1}\n\tü";
        let odd: serde_json::Value =
            serde_json::from_slice(&json_body(403, "policy:x", Some(name))).unwrap();
        assert_eq!(odd["policy"], name);
    }
}
