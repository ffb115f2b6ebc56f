//! Signature verification, pure Rust (RSA and ECDSA P-256/P-384/P-521 on crypto-bigint, jwt-compact's
//! Ed25519 and HMAC), and the key choice of jwt_verify_lib: by `kid` when both sides have one, by `alg` when
//! the key names one, by key type always.

use jwt_compact::alg::{Ed25519, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key};
use jwt_compact::{Algorithm, AlgorithmSignature};

use super::ecdsa::Named;
use super::jwks::{Jwk, Jwks, KeyMaterial};
use super::rsa::Hash;
use super::status::JwtStatus;
use super::token::{Alg, Jwt};

/// jwt-compact's HMAC `try_from_slice` panics on a slice of the wrong length (so did its
/// ed25519-compact backend), so the length is checked first: a wrong-length signature simply does
/// not verify (jwt_verify_lib).
fn check<A: Algorithm>(alg: &A, key: &A::VerifyingKey, signature: &[u8], input: &[u8]) -> bool {
    if A::Signature::LENGTH.is_some_and(|length| length.get() != signature.len()) {
        return false;
    }
    A::Signature::try_from_slice(signature).is_ok_and(|s| alg.verify_signature(&s, key, input))
}

/// Verifies one signature with one key; false when the key type does not fit the algorithm.
pub(crate) fn verify_signature(
    alg: Alg,
    key: &KeyMaterial,
    input: &[u8],
    signature: &[u8],
) -> bool {
    match (alg, key) {
        (Alg::Rs256, KeyMaterial::Rsa(key)) => key.verify_pkcs1v15(Hash::Sha256, input, signature),
        (Alg::Rs384, KeyMaterial::Rsa(key)) => key.verify_pkcs1v15(Hash::Sha384, input, signature),
        (Alg::Rs512, KeyMaterial::Rsa(key)) => key.verify_pkcs1v15(Hash::Sha512, input, signature),
        (Alg::Ps256, KeyMaterial::Rsa(key)) => key.verify_pss(Hash::Sha256, input, signature),
        (Alg::Ps384, KeyMaterial::Rsa(key)) => key.verify_pss(Hash::Sha384, input, signature),
        (Alg::Ps512, KeyMaterial::Rsa(key)) => key.verify_pss(Hash::Sha512, input, signature),
        (Alg::Es256, KeyMaterial::Ec(key)) if key.curve == Named::P256 => {
            key.verify(input, signature)
        }
        (Alg::Es384, KeyMaterial::Ec(key)) if key.curve == Named::P384 => {
            key.verify(input, signature)
        }
        (Alg::Es512, KeyMaterial::Ec(key)) if key.curve == Named::P521 => {
            key.verify(input, signature)
        }
        (Alg::EdDsa, KeyMaterial::Ed25519(key)) => check(&Ed25519, key, signature, input),
        (Alg::Hs256, KeyMaterial::Oct(secret)) => {
            check(&Hs256, &Hs256Key::new(&secret.0), signature, input)
        }
        (Alg::Hs384, KeyMaterial::Oct(secret)) => {
            check(&Hs384, &Hs384Key::new(&secret.0), signature, input)
        }
        (Alg::Hs512, KeyMaterial::Oct(secret)) => {
            check(&Hs512, &Hs512Key::new(&secret.0), signature, input)
        }
        _ => false,
    }
}

/// Where signatures are checked.
pub trait SignatureBackend {
    /// `Some(verdict)` when this backend checked the signature, `None` to leave it to pure Rust.
    fn verify(&self, alg: Alg, key: &Jwk, input: &[u8], signature: &[u8]) -> Option<bool>;
}

/// Pure Rust for every algorithm.
pub struct PureRust;

impl SignatureBackend for PureRust {
    fn verify(&self, _: Alg, _: &Jwk, _: &[u8], _: &[u8]) -> Option<bool> {
        None
    }
}

/// Verifies a token against a key set: `JwksKidAlgMismatch` when no key may verify it,
/// `JwtVerificationFail` when candidates exist and none verifies.
pub fn verify(jwt: &Jwt, jwks: &Jwks, backend: &dyn SignatureBackend) -> Result<(), JwtStatus> {
    let mut candidate = false;
    for key in &jwks.keys {
        if let (Some(token_kid), Some(key_kid)) = (&jwt.kid, &key.kid) {
            if token_kid != key_kid {
                continue;
            }
        }
        if key.alg.as_deref().is_some_and(|a| a != jwt.alg.name()) {
            continue;
        }
        // As jwt_verify_lib: a key past the kid / alg filters is a candidate whatever its type;
        // a type that does not fit the algorithm simply fails (an RSA key never verifies HS256).
        candidate = true;
        if jwt.alg == Alg::EdDsa
            && matches!(key.material, KeyMaterial::Ed25519(_))
            && jwt.signature.len() != 64
        {
            return Err(JwtStatus::JwtEd25519SignatureWrongLength);
        }
        let verified = backend
            .verify(jwt.alg, key, &jwt.signing_input, &jwt.signature)
            .unwrap_or_else(|| {
                verify_signature(jwt.alg, &key.material, &jwt.signing_input, &jwt.signature)
            });
        if verified {
            return Ok(());
        }
    }
    Err(if candidate {
        JwtStatus::JwtVerificationFail
    } else {
        JwtStatus::JwksKidAlgMismatch
    })
}
