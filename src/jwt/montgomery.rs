//! `x^e mod n` for RSA's public operation: Montgomery multiplication (CIOS) on 32-bit limbs with
//! 64-bit products, which wasm32 has as one instruction. Only public values pass through here (a
//! signature, a public key, a public exponent), so nothing needs to run in constant time.

/// An odd modulus with its Montgomery constants (computed once per key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modulus {
    /// Little-endian 32-bit limbs.
    n: Vec<u32>,
    /// `-n^-1 mod 2^32`.
    n0: u32,
    /// `R^2 mod n`, `R = 2^(32 * limbs)`.
    r2: Vec<u32>,
    /// The modulus length in bytes (results are this long).
    len: usize,
}

/// Big-endian bytes to little-endian limbs, `limbs` of them (bytes that do not fit are dropped:
/// callers check the length first).
fn to_limbs(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks(4)) {
        *limb = chunk
            .iter()
            .fold(0u32, |acc, byte| acc << 8 | u32::from(*byte));
    }
    out
}

/// `a >= b`, both `k` limbs.
fn at_least(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

/// `a -= b` over the limbs of `b`, returning the borrow.
fn subtract(a: &mut [u32], b: &[u32]) -> bool {
    let mut borrow = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(*y))
            .wrapping_sub(borrow);
        *x = d as u32;
        borrow = (d >> 63) & 1;
    }
    borrow == 1
}

/// `t += a * b` over the limbs of `b` (`t` at least as long), returning the carry out of the last
/// limb: the loop of all the arithmetic here. Zipped slices, so no bounds checks; always inlined,
/// because the build optimizes for size and a call per row is measurable (bench/README.md).
#[inline(always)]
fn multiply_add(t: &mut [u32], a: u64, b: &[u32]) -> u64 {
    let mut carry = 0u64;
    for (tj, bj) in t.iter_mut().zip(b) {
        let s = u64::from(*tj) + a * u64::from(*bj) + carry;
        *tj = s as u32;
        carry = s >> 32;
    }
    carry
}

/// 1 in `k` limbs.
fn one(k: usize) -> Vec<u32> {
    let mut one = vec![0u32; k];
    if let Some(low) = one.first_mut() {
        *low = 1;
    }
    one
}

impl Modulus {
    /// From big-endian bytes without leading zeros; `None` for an even or empty modulus.
    pub fn new(n: &[u8]) -> Option<Modulus> {
        if n.last().is_none_or(|b| b % 2 == 0) {
            return None;
        }
        let k = n.len().div_ceil(4);
        let limbs = to_limbs(n, k);
        let low = *limbs.first()?;
        // n * inv = 1 mod 2^32 by Newton's iteration (each step doubles the correct bits).
        let mut inv = 1u32;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(low.wrapping_mul(inv)));
        }
        // R^2 mod n by doubling 1 (64 * k times), reducing each time.
        let mut r2 = one(k);
        for _ in 0..64 * k {
            let mut carry = 0u32;
            for limb in r2.iter_mut() {
                let next = *limb >> 31;
                *limb = *limb << 1 | carry;
                carry = next;
            }
            if carry == 1 || at_least(&r2, &limbs) {
                subtract(&mut r2, &limbs);
            }
        }
        Some(Modulus {
            n: limbs,
            n0: inv.wrapping_neg(),
            r2,
            len: n.len(),
        })
    }

    /// `a * b * R^-1 mod n` into `out` (`a`, `b`, `out` of `k` limbs, `t` scratch of `2k + 1`):
    /// the product, then Montgomery reduction. Slices of other sizes give a wrong result, never
    /// a panic (the callers size them).
    fn mul(&self, a: &[u32], b: &[u32], t: &mut [u32], out: &mut [u32]) {
        let k = self.n.len();
        t.fill(0);
        for (i, &ai) in a.iter().enumerate() {
            // Row i: t[i..i + k] += a_i * b, its carry into t[i + k].
            if let Some((top, row)) = t.get_mut(i..=i + k).and_then(<[u32]>::split_last_mut) {
                *top = multiply_add(row, u64::from(ai), b) as u32;
            }
        }
        self.reduce(t, out);
    }

    /// `a * a * R^-1 mod n`: as `mul`, but each cross product `a_i * a_j` is computed once and
    /// doubled, about half the multiplications of the product (16 of RSA's 18 products are
    /// squares).
    fn square(&self, a: &[u32], t: &mut [u32], out: &mut [u32]) {
        let k = self.n.len();
        t.fill(0);
        for (i, &ai) in a.iter().enumerate() {
            // Row i: t[2i + 1..i + k] += a_i * a[i + 1..], its carry into t[i + k].
            let row = t
                .get_mut(2 * i + 1..=i + k)
                .and_then(<[u32]>::split_last_mut);
            if let (Some((top, row)), Some(rest)) = (row, a.get(i + 1..)) {
                *top = multiply_add(row, u64::from(ai), rest) as u32;
            }
        }
        // The cross products are below a^2 / 2: doubled, they still fit in 2k limbs.
        let mut top = 0u32;
        for limb in t.get_mut(..2 * k).unwrap_or_default() {
            let next = *limb >> 31;
            *limb = *limb << 1 | top;
            top = next;
        }
        let mut carry = 0u64;
        for (pair, &ai) in t.chunks_exact_mut(2).zip(a) {
            let [low_limb, high_limb] = pair else {
                continue;
            };
            let square = u64::from(ai) * u64::from(ai);
            let low = u64::from(*low_limb) + (square & 0xffff_ffff) + carry;
            *low_limb = low as u32;
            let high = u64::from(*high_limb) + (square >> 32) + (low >> 32);
            *high_limb = high as u32;
            carry = high >> 32;
        }
        self.reduce(t, out);
    }

    /// Montgomery reduction of the product in `t` (`2k` limbs and a spare one): one limb at a
    /// time, then at most one subtraction of `n`.
    fn reduce(&self, t: &mut [u32], out: &mut [u32]) {
        let k = self.n.len();
        for i in 0..k {
            // Step i: t[i..i + k] += m * n clears limb i; the carry runs on above it.
            let Some(&low) = t.get(i) else { return };
            let m = u64::from(low.wrapping_mul(self.n0));
            let Some(row) = t.get_mut(i..i + k) else {
                return;
            };
            let mut carry = multiply_add(row, m, &self.n);
            let Some(above) = t.get_mut(i + k..) else {
                return;
            };
            for tj in above {
                if carry == 0 {
                    break;
                }
                let s = u64::from(*tj) + carry;
                *tj = s as u32;
                carry = s >> 32;
            }
        }
        let (Some(result), Some(&spare)) = (t.get(k..2 * k), t.get(2 * k)) else {
            return;
        };
        if out.len() != result.len() {
            return;
        }
        out.copy_from_slice(result);
        if spare != 0 || at_least(out, &self.n) {
            subtract(out, &self.n);
        }
    }

    /// `base^e mod n` as big-endian bytes of the modulus length; `None` when `base` (big-endian)
    /// is longer than the modulus or not below it.
    pub fn pow(&self, base: &[u8], e: u32) -> Option<Vec<u8>> {
        let k = self.n.len();
        if base.len() > self.len || e == 0 {
            return None;
        }
        let x = to_limbs(base, k);
        if at_least(&x, &self.n) {
            return None;
        }
        let mut t = vec![0u32; 2 * k + 1];
        let mut base_m = vec![0u32; k];
        self.mul(&x, &self.r2, &mut t, &mut base_m);
        let mut acc = base_m.clone();
        let mut next = vec![0u32; k];
        // Square-and-multiply over the bits below the top one. An odd exponent's last step
        // multiplies by the base as it came (not in Montgomery form), which also leaves the
        // Montgomery form: for e = 65537, 16 squarings and one multiplication in all.
        let top = 31 - e.leading_zeros();
        let exit_with_base = e & 1 == 1 && top > 0;
        for bit in (u32::from(exit_with_base)..top).rev() {
            self.square(&acc, &mut t, &mut next);
            std::mem::swap(&mut acc, &mut next);
            if (e >> bit) & 1 == 1 {
                self.mul(&acc, &base_m, &mut t, &mut next);
                std::mem::swap(&mut acc, &mut next);
            }
        }
        if exit_with_base {
            self.square(&acc, &mut t, &mut next);
            std::mem::swap(&mut acc, &mut next);
            self.mul(&acc, &x, &mut t, &mut next);
        } else {
            self.mul(&acc, &one(k), &mut t, &mut next);
        }
        let mut bytes = Vec::with_capacity(4 * k);
        for limb in next.iter().rev() {
            bytes.extend_from_slice(&limb.to_be_bytes());
        }
        Some(bytes.split_off(bytes.len() - self.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Schoolbook `base^e mod n` on u128 for small moduli.
    fn reference(base: u128, e: u32, n: u128) -> u128 {
        let mut acc = 1u128;
        for _ in 0..e {
            acc = acc * base % n;
        }
        acc
    }

    fn be(value: u128, len: usize) -> Vec<u8> {
        value.to_be_bytes()[16 - len..].to_vec()
    }

    #[test]
    fn small_moduli_match_schoolbook_arithmetic() {
        for n in [3u128, 0xffff_fffb, 0x1_0000_000f, 0xffff_ffff_ffff_ffc5] {
            let len = (128 - n.leading_zeros() as usize).div_ceil(8);
            let modulus = Modulus::new(&be(n, len)).unwrap();
            for base in [0u128, 1, 2, n / 3, n - 1] {
                for e in [1u32, 2, 3, 17] {
                    let got = modulus.pow(&be(base, len), e).unwrap();
                    assert_eq!(got, be(reference(base, e, n), len), "{base}^{e} mod {n}");
                }
            }
            assert_eq!(modulus.pow(&be(n, len), 3), None, "base not below n");
        }
    }

    #[test]
    fn large_moduli_match_crypto_bigint() {
        use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
        use crypto_bigint::{Encoding, U2048};
        // An odd 2048-bit modulus and a base below it, from a fixed pattern.
        let n: Vec<u8> = (0..256u32)
            .map(|i| (i.wrapping_mul(151).wrapping_add(7) % 251) as u8 | (0x80 * u8::from(i == 0)))
            .map(|b| b | 1)
            .collect();
        let base: Vec<u8> = (0..256u32).map(|i| (i * 13 % 256) as u8 & 0x7f).collect();
        let modulus = Modulus::new(&n).unwrap();
        let params = DynResidueParams::new(&U2048::from_be_slice(&n));
        for e in [1u32, 2, 3, 4, 17, 65537, 0x8000_0001] {
            let expected = DynResidue::new(&U2048::from_be_slice(&base), params)
                .pow(&U2048::from_u32(e))
                .retrieve()
                .to_be_bytes();
            assert_eq!(modulus.pow(&base, e).unwrap(), expected.to_vec(), "e = {e}");
        }
    }

    #[test]
    fn squaring_matches_multiplying_by_itself() {
        // All-ones limbs carry the most through the doubling; n - 1 is the largest input.
        let mut n = vec![0xffu8; 256];
        n[255] = 0xf1;
        let modulus = Modulus::new(&n).unwrap();
        let k = modulus.n.len();
        let mut n_minus_1 = modulus.n.clone();
        n_minus_1[0] -= 1;
        let mut pattern = vec![0u32; k];
        for (i, limb) in pattern.iter_mut().enumerate() {
            *limb = (i as u32).wrapping_mul(0x9e37_79b9) >> 1;
        }
        let mut ones = vec![0xffff_ffffu32; k];
        ones[k - 1] = 0x7fff_ffff;
        let mut one = vec![0u32; k];
        one[0] = 1;
        for a in [vec![0u32; k], one, n_minus_1, pattern, ones] {
            let mut t = vec![0u32; 2 * k + 1];
            let (mut squared, mut multiplied) = (vec![0u32; k], vec![0u32; k]);
            modulus.square(&a, &mut t, &mut squared);
            modulus.mul(&a, &a, &mut t, &mut multiplied);
            assert_eq!(squared, multiplied);
        }
    }

    #[test]
    fn even_or_empty_moduli_are_refused() {
        assert_eq!(Modulus::new(&[]), None);
        assert_eq!(Modulus::new(&[0x10, 0x02]), None);
    }
}
