//! ECDSA verification on NIST P-256 (ES256) and P-384 (ES384), written on crypto-bigint's
//! Montgomery arithmetic (the same code serves both curves, which keeps the `.wasm` small).
//! Verification handles public data only, so variable-time arithmetic is fine here.
//! FIPS 186-4 section 6.4.2; point formulas for a = -3 in Jacobian coordinates
//! (dbl-2001-b, add-2007-bl, from the Explicit-Formulas Database).

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Limb, Uint, U256, U384};
use sha2::{Digest, Sha256, Sha384};

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

/// Which curve a key is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    P256,
    P384,
}

impl Named {
    pub fn coordinate_len(self) -> usize {
        match self {
            Named::P256 => 32,
            Named::P384 => 48,
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

fn uint<const L: usize>(bytes: &[u8]) -> Uint<L> {
    let size = L * Limb::BYTES;
    let mut buffer = vec![0u8; size];
    let take = bytes.len().min(size);
    buffer[size - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    Uint::from_be_slice(&buffer)
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

    fn is_zero(&self, value: &DynResidue<L>) -> bool {
        value.retrieve() == Uint::ZERO
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

fn bit<const L: usize>(value: &Uint<L>, index: usize) -> bool {
    let words = value.as_words();
    let bits = Limb::BITS;
    (words[index / bits] >> (index % bits)) & 1 == 1
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
}

fn verify_on<const L: usize>(
    curve: &Curve<L>,
    params: &Params<L>,
    point: &[u8],
    digest: &[u8],
    signature: &[u8],
) -> bool {
    let size = (point.len() - 1) / 2;
    if signature.len() != 2 * size {
        return false;
    }
    let (r_bytes, s_bytes) = signature.split_at(size);
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
    // The digest is as long as the curve here (SHA-256 / P-256, SHA-384 / P-384).
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
        x: field.of(&uint::<L>(&point[1..1 + size])),
        y: field.of(&uint::<L>(&point[1 + size..])),
        z: field.one(),
    };
    let gq = field.add(&g, &q);
    let mut acc = field.infinity();
    for index in (0..L * Limb::BITS).rev() {
        acc = field.double(&acc);
        match (bit(&u1, index), bit(&u2, index)) {
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
    // x mod n (x < p < 2n for both curves).
    let v = if x >= curve.n {
        x.wrapping_sub(&curve.n)
    } else {
        x
    };
    v == r
}

fn on_curve<const L: usize>(curve: &Curve<L>, point: &[u8]) -> bool {
    let size = (point.len() - 1) / 2;
    let (x, y) = (
        uint::<L>(&point[1..1 + size]),
        uint::<L>(&point[1 + size..]),
    );
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
        };
        if !valid {
            return Err(format!("the point is not on {curve:?}"));
        }
        Ok(EcKey { curve, point })
    }

    /// A JOSE ECDSA signature (`r || s`) over `message`: SHA-256 on P-256, SHA-384 on P-384.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self.curve {
            Named::P256 => P256_PARAMS
                .with(|p| verify_on(&P256, p, &self.point, &Sha256::digest(message), signature)),
            Named::P384 => P384_PARAMS
                .with(|p| verify_on(&P384, p, &self.point, &Sha384::digest(message), signature)),
        }
    }
}

#[cfg(test)]
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
    }
}
