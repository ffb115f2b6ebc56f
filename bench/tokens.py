#!/usr/bin/env python3
"""Key pairs, a JWKS and JWTs for the benchmark (signed with Python's `cryptography`).

    bench/tokens.py [--out DIR] [--count N] [--force]

Writes under DIR (default bench/.work/tokens):
  keys/<alg>.pem        private keys (generated once, reused)
  jwks.json             the public keys of all four algorithms, each with `kid` and `alg`
  issuer.txt            the `iss` of every token
  <alg>-one.txt         one token (the "repeated token" scenarios send it every time)
  <alg>-many.txt        N distinct tokens (different `sub` and `jti`), one per line
  <alg>-bad.txt         one token with a corrupted signature (the benchmark checks it gets 401)
  manifest.json         what was generated (count, algorithms), so a rerun reuses the files

for RS256 (RSA 2048), PS256 (RSA 2048), ES256 (P-256) and EdDSA (Ed25519). Every token expires in
2100. Nothing is regenerated when the manifest already matches (pass --force to start over).
"""

import argparse
import base64
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "bench@inline-authz.test"
AUDIENCE = "bench"
ALGS = ["RS256", "ES256", "EdDSA", "PS256"]
EXP = 4102444800  # 2100-01-01T00:00:00Z
IAT = 1700000000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int, size: int | None = None) -> str:
    size = size or (n.bit_length() + 7) // 8
    return b64(n.to_bytes(size, "big"))


def new_key(alg):
    if alg in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(alg)


def load_or_create_key(path, alg):
    if os.path.exists(path):
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)
    key = new_key(alg)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with open(path, "wb") as f:
        f.write(pem)
    return key


def kid(alg):
    return f"bench-{alg.lower()}"


def jwk(alg, key):
    pub = key.public_key()
    out = {"kid": kid(alg), "alg": alg, "use": "sig"}
    if alg in ("RS256", "PS256"):
        numbers = pub.public_numbers()
        out.update(kty="RSA", n=uint(numbers.n), e=uint(numbers.e))
    elif alg == "ES256":
        numbers = pub.public_numbers()
        out.update(kty="EC", crv="P-256", x=uint(numbers.x, 32), y=uint(numbers.y, 32))
    else:
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        out.update(kty="OKP", crv="Ed25519", x=b64(raw))
    return out


def sign(alg, key, data: bytes) -> bytes:
    if alg == "RS256":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        # JWA: salt length = hash length (32 bytes for SHA-256).
        return key.sign(
            data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
        )
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.sign(data)


def token(alg, key, index: int) -> str:
    header = {"alg": alg, "typ": "JWT", "kid": kid(alg)}
    # Same length for every index (zero-padded), so "one" and "many" send requests of equal size.
    payload = {
        "iss": ISSUER,
        "sub": f"user-{index:06d}@bench.test",
        "aud": AUDIENCE,
        "iat": IAT,
        "exp": EXP,
        "jti": f"{alg.lower()}-{index:06d}",
    }
    signing_input = (
        b64(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64(json.dumps(payload, separators=(",", ":")).encode())
    )
    return signing_input + "." + b64(sign(alg, key, signing_input.encode()))


def corrupt(tok: str) -> str:
    head, payload, sig = tok.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{payload}.{b64(bytes(raw))}"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(here, ".work", "tokens"))
    parser.add_argument("--count", type=int, default=10000, help="distinct tokens per algorithm")
    parser.add_argument("--force", action="store_true", help="new keys and tokens")
    args = parser.parse_args()

    out = args.out
    keys_dir = os.path.join(out, "keys")
    manifest_path = os.path.join(out, "manifest.json")
    want = {"count": args.count, "algs": ALGS, "issuer": ISSUER, "exp": EXP}
    if not args.force and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            if json.load(f) == want and all(
                os.path.exists(os.path.join(out, f"{a}-many.txt")) for a in ALGS
            ):
                print(f"tokens: reusing {out} ({args.count} distinct per algorithm)")
                return
    if args.force and os.path.isdir(keys_dir):
        for name in os.listdir(keys_dir):
            os.remove(os.path.join(keys_dir, name))
    os.makedirs(keys_dir, exist_ok=True)

    keys = {alg: load_or_create_key(os.path.join(keys_dir, f"{alg}.pem"), alg) for alg in ALGS}
    with open(os.path.join(out, "jwks.json"), "w") as f:
        json.dump({"keys": [jwk(alg, keys[alg]) for alg in ALGS]}, f)
    with open(os.path.join(out, "issuer.txt"), "w") as f:
        f.write(ISSUER + "\n")
    for alg in ALGS:
        one = token(alg, keys[alg], 0)
        with open(os.path.join(out, f"{alg}-one.txt"), "w") as f:
            f.write(one + "\n")
        with open(os.path.join(out, f"{alg}-bad.txt"), "w") as f:
            f.write(corrupt(one) + "\n")
        with open(os.path.join(out, f"{alg}-many.txt"), "w") as f:
            for i in range(1, args.count + 1):
                f.write(token(alg, keys[alg], i) + "\n")
        print(f"tokens: {alg}: 1 + {args.count} distinct", flush=True)
    with open(manifest_path, "w") as f:
        json.dump(want, f)


if __name__ == "__main__":
    sys.exit(main())
