//! JSON Web Key Sets: parsed once into typed public keys (RSA, EC P-256 / P-384 / P-521, Ed25519) and
//! HMAC secrets (`oct`). Keys of unknown or unsupported types are skipped, as jwt_verify_lib does.

use std::fmt;

use serde_json::Value;

use super::ecdsa::{EcKey, Named};
use super::token::{base64url_decode, Alg};

/// An HMAC secret; its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// The verifying material of one key.
#[derive(Clone, Debug)]
pub(crate) enum KeyMaterial {
    Rsa(super::rsa::RsaKey),
    Ec(super::ecdsa::EcKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Oct(Secret),
}

impl KeyMaterial {
    /// Whether a key of this type may verify `alg` (an RSA key is never an HMAC secret).
    pub fn fits(&self, alg: Alg) -> bool {
        if let KeyMaterial::Ec(key) = self {
            return matches!(
                (key.curve, alg),
                (Named::P256, Alg::Es256) | (Named::P384, Alg::Es384) | (Named::P521, Alg::Es512)
            );
        }
        matches!(
            (self, alg),
            (
                KeyMaterial::Rsa(_),
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512
            ) | (KeyMaterial::Ed25519(_), Alg::EdDsa)
                | (KeyMaterial::Oct(_), Alg::Hs256 | Alg::Hs384 | Alg::Hs512)
        )
    }
}

/// One JSON Web Key (Envoy's `Jwks::Pubkey`).
#[derive(Clone, Debug)]
pub struct Jwk {
    /// The key id a token's `kid` header names.
    pub kid: Option<String>,
    /// The algorithm the key is restricted to, if the set says so.
    pub alg: Option<String>,
    pub(crate) material: KeyMaterial,
    /// DER SubjectPublicKeyInfo for the host's `verify_signature` (RSA and EC keys).
    pub spki: Option<Vec<u8>>,
}

/// A key set; never empty once parsed.
#[derive(Clone, Debug, Default)]
pub struct Jwks {
    /// The usable keys, in the set's order.
    pub keys: Vec<Jwk>,
}

fn field<'a>(key: &'a Value, name: &str) -> Option<&'a str> {
    key.get(name).and_then(Value::as_str)
}

fn decoded(key: &Value, name: &str) -> Result<Vec<u8>, String> {
    let text = field(key, name).ok_or_else(|| format!("missing \"{name}\""))?;
    base64url_decode(text).ok_or_else(|| format!("\"{name}\" is not base64url"))
}

/// A coordinate left-padded to the curve size: Envoy accepts one that is a byte short.
fn coordinate(bytes: Vec<u8>, size: usize) -> Result<Vec<u8>, String> {
    if bytes.len() > size || bytes.len() + 1 < size {
        return Err(format!(
            "EC coordinate of {} bytes for a {size}-byte curve",
            bytes.len()
        ));
    }
    let mut padded = vec![0; size - bytes.len()];
    padded.extend(bytes);
    Ok(padded)
}

fn ec_key(key: &Value, curve: Named) -> Result<KeyMaterial, String> {
    let size = curve.coordinate_len();
    let x = coordinate(decoded(key, "x")?, size)?;
    let y = coordinate(decoded(key, "y")?, size)?;
    Ok(KeyMaterial::Ec(EcKey::new(curve, &x, &y)?))
}

fn spki_of(material: &KeyMaterial) -> Option<Vec<u8>> {
    match material {
        KeyMaterial::Rsa(key) => Some(super::host_crypto::rsa_spki(key)),
        KeyMaterial::Ec(key) => super::host_crypto::ec_spki(&key.point),
        KeyMaterial::Ed25519(_) | KeyMaterial::Oct(_) => None,
    }
}

fn material(key: &Value) -> Result<Option<KeyMaterial>, String> {
    let kty = field(key, "kty").ok_or("missing \"kty\"")?;
    Ok(Some(match kty {
        "RSA" => KeyMaterial::Rsa(super::rsa::RsaKey::new(
            &decoded(key, "n")?,
            &decoded(key, "e")?,
        )?),
        "EC" => match field(key, "crv").ok_or("missing \"crv\"")? {
            "P-256" => ec_key(key, Named::P256)?,
            "P-384" => ec_key(key, Named::P384)?,
            "P-521" => ec_key(key, Named::P521)?,
            _ => return Ok(None),
        },
        "OKP" => match field(key, "crv").ok_or("missing \"crv\"")? {
            "Ed25519" => KeyMaterial::Ed25519(
                <[u8; 32]>::try_from(decoded(key, "x")?.as_slice())
                    .ok()
                    .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
                    .ok_or_else(|| "invalid Ed25519 key".to_string())?,
            ),
            _ => return Ok(None),
        },
        "oct" => {
            let k = decoded(key, "k")?;
            if k.is_empty() {
                return Err("empty \"k\"".into());
            }
            KeyMaterial::Oct(Secret(k))
        }
        _ => return Ok(None),
    }))
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`), or a single JWK. A key that is malformed is an
    /// error naming its index; keys of unsupported types are skipped; no usable key is an error.
    pub fn parse(text: &str) -> Result<Jwks, String> {
        let json: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let single;
        let keys: &[Value] = match json.get("keys") {
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err("\"keys\" must be a list".into()),
            None if json.get("kty").is_some() => {
                single = [json.clone()];
                &single
            }
            None => return Err("missing \"keys\"".into()),
        };
        let mut jwks = Jwks::default();
        for (i, key) in keys.iter().enumerate() {
            if field(key, "use").is_some_and(|u| u != "sig") {
                continue;
            }
            let Some(material) = material(key).map_err(|m| format!("keys[{i}]: {m}"))? else {
                continue;
            };
            jwks.keys.push(Jwk {
                kid: field(key, "kid").map(str::to_string),
                alg: field(key, "alg").map(str::to_string),
                spki: spki_of(&material),
                material,
            });
        }
        if jwks.keys.is_empty() {
            return Err("no usable key (RSA, EC P-256/P-384/P-521, OKP Ed25519, oct)".into());
        }
        Ok(jwks)
    }
}
