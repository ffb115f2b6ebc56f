//! The messages of Envoy's `verify_signature` wasm foreign function (BoringSSL at native speed):
//! `VerifySignatureArguments {hash_function=1, public_key=2 (DER SubjectPublicKeyInfo),
//! signature=3, text=4}` and `VerifySignatureResult {result=1, error=2}`, plus the DER the host
//! wants: SubjectPublicKeyInfo for RSA and EC keys, and ECDSA signatures as `SEQUENCE {r, s}`
//! instead of JOSE's `r || s`. RS* and ES* only: the host has no PSS padding and no Ed25519 here.

use super::rsa::RsaKey;

/// The foreign function's name in Envoy.
pub const FUNCTION: &str = "verify_signature";

fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 4);
    out.push(tag);
    der_length(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER from big-endian unsigned bytes (minimal, positive).
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

const RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const PRIME256V1: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const SECP384R1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const SECP521R1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];

fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(key);
    let mut content = der(0x30, algorithm);
    content.extend(der(0x03, &bits));
    der(0x30, &content)
}

/// SubjectPublicKeyInfo of an RSA key.
pub fn rsa_spki(key: &RsaKey) -> Vec<u8> {
    let mut numbers = der_uint(&key.n);
    numbers.extend(der_uint(&key.e.to_be_bytes()));
    spki(RSA_ENCRYPTION, &der(0x30, &numbers))
}

/// SubjectPublicKeyInfo of an EC key from its uncompressed point (`04 || x || y`).
pub fn ec_spki(point: &[u8]) -> Option<Vec<u8>> {
    let curve = match point.len() {
        65 => PRIME256V1,
        97 => SECP384R1,
        133 => SECP521R1,
        _ => return None,
    };
    let mut algorithm = EC_PUBLIC_KEY.to_vec();
    algorithm.extend_from_slice(curve);
    Some(spki(&algorithm, point))
}

/// A JOSE ECDSA signature (`r || s`) as DER `SEQUENCE {INTEGER r, INTEGER s}`.
pub fn ecdsa_der(signature: &[u8]) -> Option<Vec<u8>> {
    if signature.is_empty() || signature.len() % 2 != 0 {
        return None;
    }
    let (r, s) = signature.split_at(signature.len() / 2);
    let mut content = der_uint(r);
    content.extend(der_uint(s));
    Some(der(0x30, &content))
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push(number << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `VerifySignatureArguments` serialized.
pub fn arguments(hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(public_key.len() + signature.len() + text.len() + 24);
    field(&mut out, 1, hash.as_bytes());
    field(&mut out, 2, public_key);
    field(&mut out, 3, signature);
    field(&mut out, 4, text);
    out
}

/// `VerifySignatureResult.result`; a message that does not parse is `false`.
pub fn result(bytes: &[u8]) -> bool {
    let mut i = 0;
    let mut verified = false;
    while let Some(&key) = bytes.get(i) {
        i += 1;
        match (key >> 3, key & 7) {
            (1, 0) => {
                let Some(&value) = bytes.get(i) else {
                    return false;
                };
                verified = value == 1;
                i += 1;
            }
            (_, 2) => {
                let mut len: usize = 0;
                let mut shift = 0;
                loop {
                    let Some(&b) = bytes.get(i) else { return false };
                    i += 1;
                    len |= usize::from(b & 0x7f) << shift;
                    shift += 7;
                    if b & 0x80 == 0 || shift > 28 {
                        break;
                    }
                }
                i = i.saturating_add(len);
            }
            (_, 0) => {
                while bytes.get(i).is_some_and(|b| b & 0x80 != 0) {
                    i += 1;
                }
                i += 1;
            }
            _ => return false,
        }
    }
    verified
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integers_are_minimal_and_positive() {
        assert_eq!(der_uint(&[0x00, 0x01]), vec![0x02, 0x01, 0x01]);
        assert_eq!(der_uint(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_uint(&[]), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn ecdsa_signature_becomes_a_der_sequence() {
        let mut jose = vec![0u8; 64];
        jose[31] = 5;
        jose[32] = 0x90;
        let der = ecdsa_der(&jose).unwrap();
        assert_eq!(&der[..2], &[0x30, 3 + 35]);
        assert_eq!(&der[2..5], &[0x02, 0x01, 0x05]);
        assert_eq!(&der[5..8], &[0x02, 0x21, 0x00]);
        assert!(ecdsa_der(&[1, 2, 3]).is_none());
    }

    #[test]
    fn rsa_spki_has_the_standard_2048_bit_header() {
        let mut n = vec![0xc0; 256];
        n[255] = 1;
        let key = RsaKey::new(&n, &[1, 0, 1]).unwrap();
        let der = rsa_spki(&key);
        // The well-known prefix of every 2048-bit RSA SubjectPublicKeyInfo.
        assert_eq!(
            &der[..12],
            &[0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86]
        );
        assert_eq!(&der[der.len() - 5..], &[0x02, 0x03, 0x01, 0x00, 0x01]);
    }

    #[test]
    fn protobuf_messages_round_trip_the_fields_envoy_reads() {
        let args = arguments("sha256", &[1, 2], &[3], b"text");
        assert_eq!(
            args,
            [
                0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6', 0x12, 2, 1, 2, 0x1a, 1, 3, 0x22, 4,
                b't', b'e', b'x', b't'
            ]
        );
        assert!(result(&[0x08, 0x01]));
        assert!(!result(&[0x08, 0x00, 0x12, 0x03, b'b', b'a', b'd']));
        assert!(!result(&[0x12, 0x03, b'b', b'a', b'd']));
        assert!(!result(&[]));
        assert!(!result(&[0x08]));
    }
}
