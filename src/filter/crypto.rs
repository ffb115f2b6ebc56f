//! RS* and ES* signatures checked by the host (Envoy's `verify_signature`: BoringSSL at native
//! speed) when it offers the function; everything else, and any host failure, goes to pure Rust.
//! The host gives the same verdict as pure Rust on the whole test corpus
//! (`tests/jwt.rs` runs every vector through both).

use crate::host::{ForeignError, Host};
use crate::jwt::host_crypto::{self, FUNCTION};
use crate::jwt::jwks::Jwk;
use crate::jwt::token::Alg;
use crate::jwt::verify::SignatureBackend;

/// Checks signatures through the host.
pub struct HostCrypto<'a> {
    pub(crate) host: &'a dyn Host,
}

impl SignatureBackend for HostCrypto<'_> {
    fn verify(&self, alg: Alg, key: &Jwk, input: &[u8], signature: &[u8]) -> Option<bool> {
        let (hash, ecdsa_len) = match alg {
            Alg::Rs256 => ("sha256", None),
            Alg::Rs384 => ("sha384", None),
            Alg::Rs512 => ("sha512", None),
            Alg::Es256 => ("sha256", Some(64)),
            Alg::Es384 => ("sha384", Some(96)),
            Alg::Es512 => ("sha512", Some(132)),
            _ => return None,
        };
        // The same verdicts as pure Rust: the key must fit the algorithm, and an ECDSA signature
        // must have the curve's exact length.
        if !key.material.fits(alg) {
            return Some(false);
        }
        let spki = key.spki.as_ref()?;
        let signature = match ecdsa_len {
            Some(len) if signature.len() != len => return Some(false),
            Some(_) => host_crypto::ecdsa_der(signature)?,
            None => signature.to_vec(),
        };
        let arguments = host_crypto::arguments(hash, spki, &signature, input);
        match self.host.call_foreign(FUNCTION, &arguments) {
            Ok(result) => Some(host_crypto::result(&result)),
            Err(_) => None,
        }
    }
}

/// Whether the host offers `verify_signature`: one call with a well-formed but meaningless key
/// and signature (the host answers `false`); `NotFound` means no.
pub fn host_offers_verify_signature(host: &dyn Host) -> bool {
    let mut n = [0xc5u8; 128];
    n[127] = 0x01;
    let Ok(key) = crate::jwt::rsa::RsaKey::new(&n, &[1, 0, 1]) else {
        return false;
    };
    let arguments =
        host_crypto::arguments("sha256", &host_crypto::rsa_spki(&key), &[0; 128], b"probe");
    !matches!(
        host.call_foreign(FUNCTION, &arguments),
        Err(ForeignError::NotFound | ForeignError::Failed)
    )
}
