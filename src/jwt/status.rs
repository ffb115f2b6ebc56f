//! Why a token was refused, with the wording of Envoy's `jwt_authn` (jwt_verify_lib `Status`),
//! which becomes the body of the 401 / 403 reply.

/// jwt_verify_lib's `Status`, reduced to the failures this filter can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtStatus {
    /// No token, and the policies ask for one (the 401 `Bearer realm` challenge).
    JwtMissed,
    /// `nbf` is later than now plus the clock skew.
    JwtNotYetValid,
    /// `exp` is earlier than now minus the clock skew.
    JwtExpired,
    /// Not three non-empty segments separated by dots.
    JwtBadFormat,
    /// The header segment is not base64url.
    JwtHeaderParseErrorBadBase64,
    /// The header is not a JSON object.
    JwtHeaderParseErrorBadJson,
    /// `alg` is missing or not a string.
    JwtHeaderBadAlg,
    /// `alg` is not one Envoy accepts (`none` included).
    JwtHeaderNotImplementedAlg,
    /// `kid` is not a string.
    JwtHeaderBadKid,
    /// The payload segment is not base64url.
    JwtPayloadParseErrorBadBase64,
    /// The payload is not a JSON object.
    JwtPayloadParseErrorBadJson,
    /// `iss` is not a string.
    JwtPayloadParseErrorIssNotString,
    /// `sub` is not a string.
    JwtPayloadParseErrorSubNotString,
    /// `iat` is not an integer.
    JwtPayloadParseErrorIatNotInteger,
    /// `nbf` is not an integer.
    JwtPayloadParseErrorNbfNotInteger,
    /// `exp` is not an integer.
    JwtPayloadParseErrorExpNotInteger,
    /// `aud` is neither a string nor a list of strings.
    JwtPayloadParseErrorAudNotString,
    /// The signature segment is not base64url.
    JwtSignatureParseErrorBadBase64,
    /// No rule has the token's `iss`.
    JwtUnknownIssuer,
    /// None of the token's audiences is one of the rule's (403).
    JwtAudienceNotAllowed,
    /// Keys fit the token, and none verifies its signature.
    JwtVerificationFail,
    /// No key of the set fits the token's `kid` and `alg`.
    JwksKidAlgMismatch,
    /// The rule's remote keys could not be fetched, and none were ever had.
    JwksFetchFail,
    /// Envoy's status for several tokens where one is allowed; this filter verifies them all and never answers it.
    JwtMultipleTokens,
    /// An EdDSA signature that is not 64 bytes.
    JwtEd25519SignatureWrongLength,
    /// Envoy's status for a key set without a usable key; here such a set is refused when it is parsed.
    JwksNoValidKeys,
}

impl JwtStatus {
    /// Envoy's message for this status (the reply body).
    pub fn message(self) -> &'static str {
        match self {
            JwtStatus::JwtMissed => "Jwt is missing",
            JwtStatus::JwtNotYetValid => "Jwt not yet valid",
            JwtStatus::JwtExpired => "Jwt is expired",
            JwtStatus::JwtBadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            JwtStatus::JwtHeaderParseErrorBadBase64 => "Jwt header is an invalid Base64url encoded",
            JwtStatus::JwtHeaderParseErrorBadJson => "Jwt header is an invalid JSON",
            JwtStatus::JwtHeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            JwtStatus::JwtHeaderNotImplementedAlg => "Jwt header [alg] is not supported",
            JwtStatus::JwtHeaderBadKid => "Jwt header [kid] field is not a string",
            JwtStatus::JwtPayloadParseErrorBadBase64 => {
                "Jwt payload is an invalid Base64url encoded"
            }
            JwtStatus::JwtPayloadParseErrorBadJson => "Jwt payload is an invalid JSON",
            JwtStatus::JwtPayloadParseErrorIssNotString => {
                "Jwt payload [iss] field is not a string"
            }
            JwtStatus::JwtPayloadParseErrorSubNotString => {
                "Jwt payload [sub] field is not a string"
            }
            JwtStatus::JwtPayloadParseErrorIatNotInteger => {
                "Jwt payload [iat] field is not an integer"
            }
            JwtStatus::JwtPayloadParseErrorNbfNotInteger => {
                "Jwt payload [nbf] field is not an integer"
            }
            JwtStatus::JwtPayloadParseErrorExpNotInteger => {
                "Jwt payload [exp] field is not an integer"
            }
            JwtStatus::JwtPayloadParseErrorAudNotString => {
                "Jwt payload [aud] field is not a string or string list"
            }
            JwtStatus::JwtSignatureParseErrorBadBase64 => {
                "Jwt signature is an invalid Base64url encoded"
            }
            JwtStatus::JwtUnknownIssuer => "Jwt issuer is not configured",
            JwtStatus::JwtAudienceNotAllowed => "Audiences in Jwt are not allowed",
            JwtStatus::JwtVerificationFail => "Jwt verification fails",
            JwtStatus::JwksKidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
            JwtStatus::JwksFetchFail => "Jwks remote fetch is failed",
            JwtStatus::JwtMultipleTokens => "Found multiple Jwt tokens",
            JwtStatus::JwtEd25519SignatureWrongLength => "Jwt ED25519 signature is wrong length",
            JwtStatus::JwksNoValidKeys => "Jwks doesn't have any valid public key",
        }
    }

    /// A stable snake_case code (`jwt_expired`, `jwks_fetch_fail`) for logs, metrics and the
    /// denial reason header.
    pub fn code(self) -> String {
        let name = format!("{self:?}");
        let mut code = String::with_capacity(name.len() + 4);
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                code.push('_');
            }
            code.push(c.to_ascii_lowercase());
        }
        code
    }

    /// 403 for a token that is valid but not for this audience (as `jwt_authn`), else 401.
    pub fn http_status(self) -> u32 {
        match self {
            JwtStatus::JwtAudienceNotAllowed => 403,
            _ => 401,
        }
    }
}
