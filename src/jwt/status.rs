//! Why a token was refused, with the wording of Envoy's `jwt_authn` (jwt_verify_lib `Status`),
//! which becomes the body of the 401 / 403 reply.

/// jwt_verify_lib's `Status`, reduced to the failures this filter can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtStatus {
    JwtMissed,
    JwtNotYetValid,
    JwtExpired,
    JwtBadFormat,
    JwtHeaderParseErrorBadBase64,
    JwtHeaderParseErrorBadJson,
    JwtHeaderBadAlg,
    JwtHeaderNotImplementedAlg,
    JwtHeaderBadKid,
    JwtPayloadParseErrorBadBase64,
    JwtPayloadParseErrorBadJson,
    JwtPayloadParseErrorIssNotString,
    JwtPayloadParseErrorSubNotString,
    JwtPayloadParseErrorIatNotInteger,
    JwtPayloadParseErrorNbfNotInteger,
    JwtPayloadParseErrorExpNotInteger,
    JwtPayloadParseErrorAudNotString,
    JwtSignatureParseErrorBadBase64,
    JwtUnknownIssuer,
    JwtAudienceNotAllowed,
    JwtVerificationFail,
    JwksKidAlgMismatch,
    JwksFetchFail,
    JwtMultipleTokens,
    JwtEd25519SignatureWrongLength,
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
