//! RSA signature verification (RS256/384/512: PKCS#1 v1.5, PS256/384/512: PSS with MGF1 and a
//! salt as long as the hash) on Montgomery arithmetic sized to the key (`montgomery.rs`). Only the
//! public operation `s^e mod n` is needed, with `e` = 3 or 65537 (the exponents Envoy accepts),
//! which keeps the `.wasm` small and the check fast.

use sha2::{Digest, Sha256, Sha384, Sha512};

use super::montgomery::Modulus;

/// An RSA public key: the modulus without leading zeros, the public exponent, and the Montgomery
/// constants of the modulus (computed once, when the key is read).
#[derive(Clone, PartialEq, Eq)]
pub struct RsaKey {
    pub n: Vec<u8>,
    pub e: u32,
    modulus: Modulus,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaKey({} bits, e={})", self.bits(), self.e)
    }
}

/// The hash of RS* / PS* algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha384 => run::<Sha384>(parts),
            Hash::Sha512 => run::<Sha512>(parts),
        }
    }

    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// DER of `DigestInfo` up to the digest (RFC 8017 section 9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

impl RsaKey {
    /// From JWK `n` and `e` (big-endian bytes): 1024 to 4096 bits, odd, `e` 3 or 65537.
    pub fn new(n: &[u8], e: &[u8]) -> Result<RsaKey, String> {
        let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
        if n.len() < 128 || n.len() > 512 {
            return Err(format!(
                "RSA modulus of {} bits (1024 to 4096 supported)",
                n.len() * 8
            ));
        }
        if n.last().is_some_and(|b| b % 2 == 0) {
            return Err("RSA modulus is even".into());
        }
        let e = e.iter().skip_while(|b| **b == 0).try_fold(0u64, |acc, b| {
            (acc < 1 << 32).then(|| acc << 8 | u64::from(*b))
        });
        let e = match e {
            Some(3) => 3,
            Some(65537) => 65537,
            _ => return Err("RSA exponent must be 3 or 65537".into()),
        };
        let modulus = Modulus::new(&n).ok_or("RSA modulus is not usable")?;
        Ok(RsaKey { n, e, modulus })
    }

    pub fn bits(&self) -> usize {
        let top = self.n.first().copied().unwrap_or(0);
        self.n.len() * 8 - top.leading_zeros() as usize
    }

    /// `signature^e mod n` as big-endian bytes of the modulus length; `None` for a signature of
    /// another length or not below `n`.
    fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.n.len() {
            return None;
        }
        self.modulus.pow(signature, self.e)
    }

    /// RSASSA-PKCS1-v1_5 (RS256/384/512).
    pub fn verify_pkcs1v15(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        // EM = 00 01 PS 00 T, PS at least 8 bytes of ff (RFC 8017 section 9.2).
        let prefix = hash.digest_info_prefix();
        let t_len = prefix.len() + hash.len();
        let Some(ps_len) = em.len().checked_sub(t_len + 3).filter(|len| *len >= 8) else {
            return false;
        };
        let mut expected = Vec::with_capacity(em.len());
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + ps_len, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(&hash.digest(&[message]));
        constant_time_eq(&em, &expected)
    }

    /// RSASSA-PSS (PS256/384/512): MGF1 with the same hash, salt length = hash length (RFC 7518).
    pub fn verify_pss(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(m) = self.public_op(signature) else {
            return false;
        };
        let em_bits = self.bits() - 1;
        let em_len = em_bits.div_ceil(8);
        // I2OSP(m, emLen): the bytes above emLen must be zero.
        let Some((extra, em)) = m
            .len()
            .checked_sub(em_len)
            .and_then(|at| m.split_at_checked(at))
        else {
            return false;
        };
        if extra.iter().any(|b| *b != 0) {
            return false;
        }
        // EM = maskedDB || H || bc, DB = PS (zeros) || 01 || salt.
        let (h_len, s_len) = (hash.len(), hash.len());
        let Some(ps_len) = em_len.checked_sub(h_len + s_len + 2) else {
            return false;
        };
        let Some((masked_db, [h @ .., 0xbc])) = em.split_at_checked(ps_len + 1 + s_len) else {
            return false;
        };
        let unused_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8.checked_shr(unused_bits as u32).unwrap_or(0);
        if masked_db.first().is_none_or(|b| b & !top_mask != 0) {
            return false;
        }
        let mut db = mgf1(hash, h, masked_db.len());
        for (d, m) in db.iter_mut().zip(masked_db) {
            *d ^= m;
        }
        if let Some(first) = db.first_mut() {
            *first &= top_mask;
        }
        let Some((ps, [0x01, salt @ ..])) = db.split_at_checked(ps_len) else {
            return false;
        };
        if ps.iter().any(|b| *b != 0) {
            return false;
        }
        let m_hash = hash.digest(&[message]);
        let h2 = hash.digest(&[&[0u8; 8], &m_hash, salt]);
        constant_time_eq(h, &h2)
    }
}

fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.len());
    let mut counter: u32 = 0;
    while out.len() < len {
        out.extend(hash.digest(&[seed, &counter.to_be_bytes()]));
        counter += 1;
    }
    out.truncate(len);
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
