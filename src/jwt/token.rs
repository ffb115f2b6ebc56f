//! A JWT split and decoded, nothing trusted yet: header (`alg`, `kid`), payload claims, the
//! signing input and the signature bytes. Errors use Envoy's statuses.

use serde_json::{Map, Value};

use super::status::JwtStatus;

/// Signature algorithms Envoy's `jwt_authn` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256 and MGF1.
    Ps256,
    /// RSASSA-PSS with SHA-384 and MGF1.
    Ps384,
    /// RSASSA-PSS with SHA-512 and MGF1.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// ECDSA on P-521 with SHA-512.
    Es512,
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// HMAC with SHA-256 (an `oct` key).
    Hs256,
    /// HMAC with SHA-384 (an `oct` key).
    Hs384,
    /// HMAC with SHA-512 (an `oct` key).
    Hs512,
}

impl Alg {
    /// The JOSE `alg` name (`RS256`, `EdDSA`); `None` for one Envoy does not accept.
    pub fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "ES512" => Alg::Es512,
            "EdDSA" => Alg::EdDsa,
            "HS256" => Alg::Hs256,
            "HS384" => Alg::Hs384,
            "HS512" => Alg::Hs512,
            _ => return None,
        })
    }

    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Es512 => "ES512",
            Alg::EdDsa => "EdDSA",
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
        }
    }
}

/// A parsed, unverified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt {
    /// The header's `alg`.
    pub alg: Alg,
    /// The header's `kid`: which key of the set signed it.
    pub kid: Option<String>,
    /// The payload (a JSON object), shared with the policies' view of the request.
    pub claims: std::rc::Rc<Value>,
    /// The base64url payload segment as sent (for `outputPayloadToHeader`).
    pub payload_segment: String,
    /// `iss` (empty when absent).
    pub issuer: String,
    /// `sub` (empty when absent).
    pub subject: String,
    /// `aud`, a single string becoming a list of one.
    pub audiences: Vec<String>,
    /// `nbf`, Unix seconds.
    pub not_before: Option<u64>,
    /// `exp`, Unix seconds.
    pub expires: Option<u64>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: Vec<u8>,
    /// The decoded signature segment.
    pub signature: Vec<u8>,
    /// The identity policies see, made on first use (`auth_info`).
    auth: std::cell::OnceCell<std::rc::Rc<crate::policy::AuthInfo>>,
}

/// base64url without padding (padding tolerated, as jwt_verify_lib does).
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // A single leftover character (6 bits) cannot encode a byte.
    if bits >= 6 {
        return None;
    }
    Some(out)
}

/// base64url without padding.
pub fn base64url_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let sextet = ((n >> (18 - 6 * i)) & 63) as usize;
            out.extend(ALPHABET.get(sextet).map(|&c| char::from(c)));
        }
    }
    out
}

fn integer(value: Option<&Value>, error: JwtStatus) -> Result<Option<u64>, JwtStatus> {
    match value {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(error),
    }
}

impl Jwt {
    /// Splits and decodes a compact JWS, checking claim types as jwt_verify_lib does; the
    /// signature is not checked here.
    pub fn parse(token: &str) -> Result<Jwt, JwtStatus> {
        // jwt_verify_lib splits with SkipEmpty: empty sections do not count.
        let parts: Vec<&str> = token.split('.').filter(|p| !p.is_empty()).collect();
        let [header, payload, signature] = parts[..] else {
            return Err(JwtStatus::JwtBadFormat);
        };
        let header_json =
            base64url_decode(header).ok_or(JwtStatus::JwtHeaderParseErrorBadBase64)?;
        let header_map: Map<String, Value> = serde_json::from_slice(&header_json)
            .map_err(|_| JwtStatus::JwtHeaderParseErrorBadJson)?;
        let alg_name = header_map
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwtStatus::JwtHeaderBadAlg)?;
        let alg = Alg::parse(alg_name).ok_or(JwtStatus::JwtHeaderNotImplementedAlg)?;
        let kid = match header_map.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(JwtStatus::JwtHeaderBadKid),
        };
        let payload_json =
            base64url_decode(payload).ok_or(JwtStatus::JwtPayloadParseErrorBadBase64)?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload_json)
            .map_err(|_| JwtStatus::JwtPayloadParseErrorBadJson)?;
        let text = |name: &str, error: JwtStatus| -> Result<String, JwtStatus> {
            match claims.get(name) {
                None => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(error),
            }
        };
        let issuer = text("iss", JwtStatus::JwtPayloadParseErrorIssNotString)?;
        let subject = text("sub", JwtStatus::JwtPayloadParseErrorSubNotString)?;
        let audiences = match claims.get("aud") {
            None => Vec::new(),
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(JwtStatus::JwtPayloadParseErrorAudNotString)?,
            Some(_) => return Err(JwtStatus::JwtPayloadParseErrorAudNotString),
        };
        integer(
            claims.get("iat"),
            JwtStatus::JwtPayloadParseErrorIatNotInteger,
        )?;
        let not_before = integer(
            claims.get("nbf"),
            JwtStatus::JwtPayloadParseErrorNbfNotInteger,
        )?;
        let expires = integer(
            claims.get("exp"),
            JwtStatus::JwtPayloadParseErrorExpNotInteger,
        )?;
        let signature =
            base64url_decode(signature).ok_or(JwtStatus::JwtSignatureParseErrorBadBase64)?;
        let signing_input = format!("{header}.{payload}").into_bytes();
        Ok(Jwt {
            alg,
            kid,
            claims: std::rc::Rc::new(Value::Object(claims)),
            payload_segment: payload.to_string(),
            issuer,
            subject,
            audiences,
            not_before,
            expires,
            signing_input,
            signature,
            auth: std::cell::OnceCell::new(),
        })
    }

    /// The identity policies see (`request.auth.*`: `<iss>/<sub>`, `aud`, `azp`, the claims),
    /// made once per token: a token from the verified-token cache hands every request the same
    /// one, without a `format!` or a copy of its audiences each time.
    pub fn auth_info(&self) -> std::rc::Rc<crate::policy::AuthInfo> {
        let made = self.auth.get_or_init(|| {
            std::rc::Rc::new(crate::policy::AuthInfo {
                principal: format!("{}/{}", self.issuer, self.subject),
                audiences: self.audiences.clone(),
                presenter: self
                    .claims
                    .get("azp")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                claims: std::rc::Rc::clone(&self.claims),
            })
        });
        std::rc::Rc::clone(made)
    }

    /// `exp` / `nbf` against the host's clock, with leeway (jwt_verify_lib's rule).
    pub fn check_time(&self, now: u64, skew: u64) -> Result<(), JwtStatus> {
        if self
            .not_before
            .is_some_and(|nbf| now.saturating_add(skew) < nbf)
        {
            return Err(JwtStatus::JwtNotYetValid);
        }
        if self
            .expires
            .is_some_and(|exp| now > exp.saturating_add(skew))
        {
            return Err(JwtStatus::JwtExpired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            base64url_encode(header.as_bytes()),
            base64url_encode(payload.as_bytes())
        )
    }

    #[test]
    fn base64url_round_trips() {
        for text in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "\u{ff}\u{fe}",
        ] {
            let encoded = base64url_encode(text.as_bytes());
            assert!(!encoded.contains('='));
            assert_eq!(base64url_decode(&encoded).as_deref(), Some(text.as_bytes()));
        }
        assert_eq!(base64url_decode("Zm9v"), Some(b"foo".to_vec()));
        assert_eq!(base64url_decode("Zg=="), Some(b"f".to_vec()));
        assert_eq!(base64url_decode("Z"), None);
        assert_eq!(
            base64url_decode("Zm9v+"),
            None,
            "standard base64 is not base64url"
        );
    }

    #[test]
    fn parses_claims_of_a_well_formed_token() {
        let jwt = Jwt::parse(&token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":200,"nbf":100,"iat":100}"#,
        ))
        .unwrap();
        assert_eq!((jwt.alg, jwt.kid.as_deref()), (Alg::Rs256, Some("k1")));
        assert_eq!((jwt.issuer.as_str(), jwt.subject.as_str()), ("i", "s"));
        assert_eq!(jwt.audiences, vec!["a", "b"]);
        assert_eq!((jwt.not_before, jwt.expires), (Some(100), Some(200)));
        assert_eq!(jwt.signature, b"sig");
    }

    #[test]
    fn malformed_tokens_get_envoys_statuses() {
        let cases = [
            ("invalidToken".to_string(), JwtStatus::JwtBadFormat),
            ("a.b".to_string(), JwtStatus::JwtBadFormat),
            ("a.b.c.d".to_string(), JwtStatus::JwtBadFormat),
            ("a..b".to_string(), JwtStatus::JwtBadFormat),
            (
                format!("{}.e30.", base64url_encode(br#"{"alg":"none"}"#)),
                JwtStatus::JwtBadFormat,
            ),
            (
                "!!.e30.c2ln".to_string(),
                JwtStatus::JwtHeaderParseErrorBadBase64,
            ),
            (
                token("not json", "{}"),
                JwtStatus::JwtHeaderParseErrorBadJson,
            ),
            (token(r#"{"typ":"JWT"}"#, "{}"), JwtStatus::JwtHeaderBadAlg),
            (
                token(r#"{"alg":"none"}"#, "{}"),
                JwtStatus::JwtHeaderNotImplementedAlg,
            ),
            (
                token(r#"{"alg":"RS256","kid":7}"#, "{}"),
                JwtStatus::JwtHeaderBadKid,
            ),
            (
                token(r#"{"alg":"RS256"}"#, "[1]"),
                JwtStatus::JwtPayloadParseErrorBadJson,
            ),
            (
                token(r#"{"alg":"RS256"}"#, r#"{"iss":1}"#),
                JwtStatus::JwtPayloadParseErrorIssNotString,
            ),
            (
                token(r#"{"alg":"RS256"}"#, r#"{"exp":"soon"}"#),
                JwtStatus::JwtPayloadParseErrorExpNotInteger,
            ),
            (
                token(r#"{"alg":"RS256"}"#, r#"{"aud":[1]}"#),
                JwtStatus::JwtPayloadParseErrorAudNotString,
            ),
            (
                format!("{}.e30.!!", base64url_encode(br#"{"alg":"RS256"}"#)),
                JwtStatus::JwtSignatureParseErrorBadBase64,
            ),
        ];
        for (token, want) in cases {
            assert_eq!(Jwt::parse(&token).err(), Some(want), "{token}");
        }
    }

    #[test]
    fn time_checks_allow_the_clock_skew() {
        let jwt = Jwt::parse(&token(r#"{"alg":"HS256"}"#, r#"{"nbf":1000,"exp":2000}"#)).unwrap();
        assert_eq!(jwt.check_time(1500, 60), Ok(()));
        assert_eq!(jwt.check_time(939, 60), Err(JwtStatus::JwtNotYetValid));
        assert_eq!(jwt.check_time(940, 60), Ok(()));
        assert_eq!(jwt.check_time(2060, 60), Ok(()));
        assert_eq!(jwt.check_time(2061, 60), Err(JwtStatus::JwtExpired));
    }
}
