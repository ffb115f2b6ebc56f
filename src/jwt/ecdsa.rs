//! ECDSA verification on NIST P-256 (ES256), P-384 (ES384) and P-521 (ES512), written on
//! crypto-bigint's Montgomery arithmetic (the same code serves the three curves, which keeps the
//! `.wasm` small).
//! Verification handles public data only, so variable-time arithmetic is fine here.
//! FIPS 186-4 section 6.4.2; point formulas for a = -3 in Jacobian coordinates
//! (dbl-2001-b, add-2007-bl, from the Explicit-Formulas Database).

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Limb, Uint, U256, U384, U576};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// A short Weierstrass curve y² = x³ - 3x + b.
struct Curve<const L: usize> {
    p: Uint<L>,
    n: Uint<L>,
    b: Uint<L>,
    gx: Uint<L>,
    gy: Uint<L>,
}

const P256: Curve<{ U256::LIMBS }> = Curve {
    p: U256::from_be_hex("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"),
    n: U256::from_be_hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
    b: U256::from_be_hex("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b"),
    gx: U256::from_be_hex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"),
    gy: U256::from_be_hex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"),
};

const P384: Curve<{ U384::LIMBS }> = Curve {
    p: U384::from_be_hex("fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff"),
    n: U384::from_be_hex("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"),
    b: U384::from_be_hex("b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef"),
    gx: U384::from_be_hex("aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7"),
    gy: U384::from_be_hex("3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f"),
};

// P-521 in 576 bits: the smallest size crypto-bigint has on both 64-bit hosts and wasm32.
const P521: Curve<{ U576::LIMBS }> = Curve {
    p: U576::from_be_hex("00000000000001ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    n: U576::from_be_hex("00000000000001fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409"),
    b: U576::from_be_hex("0000000000000051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00"),
    gx: U576::from_be_hex("00000000000000c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66"),
    gy: U576::from_be_hex("000000000000011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650"),
};

/// Which curve a key is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    P256,
    P384,
    P521,
}

impl Named {
    /// The length of a coordinate, and of `r` and `s` in a JOSE signature (RFC 7518 section 3.4).
    pub fn coordinate_len(self) -> usize {
        match self {
            Named::P256 => 32,
            Named::P384 => 48,
            Named::P521 => 66,
        }
    }
}

/// A public key: the curve and the uncompressed point `04 || x || y`, checked to be on it.
#[derive(Clone, PartialEq, Eq)]
pub struct EcKey {
    pub curve: Named,
    pub point: Vec<u8>,
}

impl std::fmt::Debug for EcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcKey({:?})", self.curve)
    }
}

/// Big-endian bytes as an integer (the low `L` limbs' worth of them).
fn uint<const L: usize>(bytes: &[u8]) -> Uint<L> {
    let mut buffer = vec![0u8; L * Limb::BYTES];
    for (to, from) in buffer.iter_mut().rev().zip(bytes.iter().rev()) {
        *to = *from;
    }
    Uint::from_be_slice(&buffer)
}

/// The coordinates of an uncompressed point `04 || x || y` (both halves of the same length).
fn coordinates(point: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_, xy) = point.split_first()?;
    xy.split_at_checked(xy.len() / 2)
}

/// A point in Jacobian coordinates; `z = 0` is the point at infinity.
#[derive(Clone, Copy)]
struct Point<const L: usize> {
    x: DynResidue<L>,
    y: DynResidue<L>,
    z: DynResidue<L>,
}

struct Field<const L: usize> {
    params: DynResidueParams<L>,
}

impl<const L: usize> Field<L> {
    fn of(&self, value: &Uint<L>) -> DynResidue<L> {
        DynResidue::new(value, self.params)
    }

    fn zero(&self) -> DynResidue<L> {
        DynResidue::zero(self.params)
    }

    fn one(&self) -> DynResidue<L> {
        DynResidue::one(self.params)
    }

    /// Residues are kept below the modulus, and zero is zero in Montgomery form too: no
    /// conversion needed.
    fn is_zero(&self, value: &DynResidue<L>) -> bool {
        *value.as_montgomery() == Uint::ZERO
    }

    fn infinity(&self) -> Point<L> {
        Point {
            x: self.one(),
            y: self.one(),
            z: self.zero(),
        }
    }

    fn double(&self, p: &Point<L>) -> Point<L> {
        if self.is_zero(&p.z) || self.is_zero(&p.y) {
            return self.infinity();
        }
        let delta = p.z.square();
        let gamma = p.y.square();
        let beta = p.x * gamma;
        let t = (p.x - delta) * (p.x + delta);
        let alpha = t + t + t;
        let beta4 = beta + beta + beta + beta;
        let x3 = alpha.square() - (beta4 + beta4);
        let z3 = (p.y + p.z).square() - gamma - delta;
        let gamma2 = gamma.square();
        let gamma8 = {
            let g2 = gamma2 + gamma2;
            let g4 = g2 + g2;
            g4 + g4
        };
        let y3 = alpha * (beta4 - x3) - gamma8;
        Point {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    fn add(&self, p: &Point<L>, q: &Point<L>) -> Point<L> {
        if self.is_zero(&p.z) {
            return *q;
        }
        if self.is_zero(&q.z) {
            return *p;
        }
        let z1z1 = p.z.square();
        let z2z2 = q.z.square();
        let u1 = p.x * z2z2;
        let u2 = q.x * z1z1;
        let s1 = p.y * q.z * z2z2;
        let s2 = q.y * p.z * z1z1;
        let h = u2 - u1;
        let r_half = s2 - s1;
        if self.is_zero(&h) {
            return if self.is_zero(&r_half) {
                self.double(p)
            } else {
                self.infinity()
            };
        }
        let h2 = h + h;
        let i = h2.square();
        let j = h * i;
        let r = r_half + r_half;
        let v = u1 * i;
        let x3 = r.square() - j - (v + v);
        let s1j = s1 * j;
        let y3 = r * (v - x3) - (s1j + s1j);
        let z3 = ((p.z + q.z).square() - z1z1 - z2z2) * h;
        Point {
            x: x3,
            y: y3,
            z: z3,
        }
    }
}

/// The Montgomery parameters of a curve's field and group order, computed once per VM: they cost
/// far more than a verification.
struct Params<const L: usize> {
    field: DynResidueParams<L>,
    order: DynResidueParams<L>,
}

impl<const L: usize> Params<L> {
    fn of(curve: &Curve<L>) -> Params<L> {
        Params {
            field: DynResidueParams::new(&curve.p),
            order: DynResidueParams::new(&curve.n),
        }
    }
}

thread_local! {
    static P256_PARAMS: Params<{ U256::LIMBS }> = Params::of(&P256);
    static P384_PARAMS: Params<{ U384::LIMBS }> = Params::of(&P384);
    static P521_PARAMS: Params<{ U576::LIMBS }> = Params::of(&P521);
}

fn verify_on<const L: usize>(
    curve: &Curve<L>,
    params: &Params<L>,
    point: &[u8],
    digest: &[u8],
    signature: &[u8],
) -> bool {
    let Some((x, y)) = coordinates(point) else {
        return false;
    };
    if signature.len() != 2 * x.len() {
        return false;
    }
    let (r_bytes, s_bytes) = signature.split_at(x.len());
    let (r, s) = (uint::<L>(r_bytes), uint::<L>(s_bytes));
    if r == Uint::ZERO || s == Uint::ZERO || r >= curve.n || s >= curve.n {
        return false;
    }
    let scalars = Field {
        params: params.order,
    };
    let (w, invertible) = scalars.of(&s).invert();
    if !bool::from(invertible) {
        return false;
    }
    // The digest is as long as the group order (SHA-256 / P-256, SHA-384 / P-384) or shorter
    // (SHA-512 / P-521): no bits to drop (FIPS 186-4 section 6.4.2, step 3).
    let e = scalars.of(&uint::<L>(digest));
    let u1 = (e * w).retrieve();
    let u2 = (scalars.of(&r) * w).retrieve();

    let field = Field {
        params: params.field,
    };
    let g = Point {
        x: field.of(&curve.gx),
        y: field.of(&curve.gy),
        z: field.one(),
    };
    let q = Point {
        x: field.of(&uint::<L>(x)),
        y: field.of(&uint::<L>(y)),
        z: field.one(),
    };
    let gq = field.add(&g, &q);
    let mut acc = field.infinity();
    let top = u1.bits_vartime().max(u2.bits_vartime());
    for index in (0..top).rev() {
        acc = field.double(&acc);
        match (u1.bit_vartime(index), u2.bit_vartime(index)) {
            (true, true) => acc = field.add(&acc, &gq),
            (true, false) => acc = field.add(&acc, &g),
            (false, true) => acc = field.add(&acc, &q),
            (false, false) => {}
        }
    }
    if field.is_zero(&acc.z) {
        return false;
    }
    let (z_inv, ok) = acc.z.invert();
    if !bool::from(ok) {
        return false;
    }
    let x = (acc.x * z_inv.square()).retrieve();
    // x mod n (x < p < 2n for the three curves).
    let v = if x >= curve.n {
        x.wrapping_sub(&curve.n)
    } else {
        x
    };
    v == r
}

fn on_curve<const L: usize>(curve: &Curve<L>, point: &[u8]) -> bool {
    let Some((x, y)) = coordinates(point) else {
        return false;
    };
    let (x, y) = (uint::<L>(x), uint::<L>(y));
    if x >= curve.p || y >= curve.p {
        return false;
    }
    let field = Field {
        params: DynResidueParams::new(&curve.p),
    };
    let (x, y) = (field.of(&x), field.of(&y));
    let three_x = x + x + x;
    y.square() == x.square() * x - three_x + field.of(&curve.b)
}

impl EcKey {
    /// From JWK `x` and `y` (already left-padded to the curve size), checked to be on the curve.
    pub fn new(curve: Named, x: &[u8], y: &[u8]) -> Result<EcKey, String> {
        let size = curve.coordinate_len();
        if x.len() != size || y.len() != size {
            return Err("EC coordinates of the wrong size".into());
        }
        let mut point = vec![0x04];
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        let valid = match curve {
            Named::P256 => on_curve(&P256, &point),
            Named::P384 => on_curve(&P384, &point),
            Named::P521 => on_curve(&P521, &point),
        };
        if !valid {
            return Err(format!("the point is not on {curve:?}"));
        }
        Ok(EcKey { curve, point })
    }

    /// A JOSE ECDSA signature (`r || s`) over `message`: SHA-256 on P-256, SHA-384 on P-384,
    /// SHA-512 on P-521.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self.curve {
            Named::P256 => P256_PARAMS
                .with(|p| verify_on(&P256, p, &self.point, &Sha256::digest(message), signature)),
            Named::P384 => P384_PARAMS
                .with(|p| verify_on(&P384, p, &self.point, &Sha384::digest(message), signature)),
            Named::P521 => P521_PARAMS
                .with(|p| verify_on(&P521, p, &self.point, &Sha512::digest(message), signature)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::string_slice)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_generators_are_on_their_curves() {
        let g256 = [
            vec![4u8],
            hex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"),
            hex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"),
        ]
        .concat();
        assert!(on_curve(&P256, &g256));
        let mut off = g256.clone();
        off[64] ^= 1;
        assert!(!on_curve(&P256, &off));
        let g384 = [vec![4u8], hex("aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7"), hex("3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f")].concat();
        assert!(on_curve(&P384, &g384));
        assert!(EcKey::new(Named::P384, &g384[1..49], &g384[49..]).is_ok());
        assert!(EcKey::new(Named::P256, &off[1..33], &off[33..]).is_err());
        let g521 = [vec![4u8], hex("00c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66"), hex("011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650")].concat();
        assert!(on_curve(&P521, &g521));
        assert!(EcKey::new(Named::P521, &g521[1..67], &g521[67..]).is_ok());
        let mut off521 = g521.clone();
        off521[132] ^= 1;
        assert!(EcKey::new(Named::P521, &off521[1..67], &off521[67..]).is_err());
    }
}
