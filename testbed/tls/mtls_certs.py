#!/usr/bin/env python3
"""Per-run certificates for the mTLS suite (testbed/src/mtls.rs runs it, tests/mtls.rs uses them).

Usage: mtls_certs.py DIR

Writes to DIR a fresh test CA (`ca.pem`), a server certificate signed by it (`server.pem`,
`server-key.pem`: DNS SANs SERVER_NAMES, IP SAN 127.0.0.1) and one client certificate per entry
of CLIENTS (`<name>.pem`, `<name>-key.pem`), all EC P-256, valid from one day ago to one day
ahead. `untrusted` is signed by a second CA that the listeners do not trust. Then prints `ok` as
the only line of stdout and exits.

Needs the `cryptography` package (pip install cryptography): exit code 3 when it is missing.
"""

import datetime
import ipaddress
import os
import sys

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError as error:
    print(f"mtls_certs.py: {error}: pip install cryptography", file=sys.stderr)
    sys.exit(3)

# The names the server certificate holds (keep in step with `SERVER_NAMES` in testbed/src/mtls.rs).
SERVER_NAMES = ["mtls.example", "other.example"]

# name -> (subject attributes, URI SANs, DNS SANs); keep in step with `CLIENTS` in
# testbed/src/mtls.rs.
CLIENTS = {
    "foo-bar": ([("CN", "foo-bar")], ["spiffe://cluster.local/ns/foo/sa/bar"], []),
    "baz-qux": ([("CN", "baz-qux")], ["spiffe://cluster.local/ns/baz/sa/qux"], []),
    "sleep": ([("CN", "sleep")], ["spiffe://cluster.local/ns/default/sa/sleep"], []),
    "dns-only": ([("CN", "dns-client")], [], ["client.example"]),
    "two-dns": ([("CN", "two-dns")], [], ["one.example", "two.example"]),
    "subject-only": ([("O", "inline-authz"), ("CN", "legacy-client")], [], []),
    "subject-spiffe": ([("CN", "spiffe://cluster.local/ns/foo/sa/bar")], [], []),
    "two-uris": (
        [("CN", "two-uris")],
        ["spiffe://cluster.local/ns/foo/sa/first", "spiffe://cluster.local/ns/baz/sa/second"],
        ["first.example", "second.example"],
    ),
    "https-uri": ([("CN", "https-uri")], ["https://client.example/workload"], []),
    "ns-only-uri": ([("CN", "ns-only-uri")], ["spiffe://cluster.local/ns/foo"], []),
    "untrusted": ([("CN", "untrusted")], ["spiffe://cluster.local/ns/foo/sa/bar"], []),
}

ATTRIBUTES = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME}


def window():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(days=1), now + datetime.timedelta(days=1)


def make_ca(common_name):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start, end = window()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca_key, ca_cert, subject, sans, usage):
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = window()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def write(directory, name, key, cert):
    with open(os.path.join(directory, f"{name}.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(directory, f"{name}-key.pem"), "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def main():
    directory = sys.argv[1]
    os.makedirs(directory, exist_ok=True)
    ca_key, ca = make_ca("inline-authz mTLS test CA")
    other_key, other = make_ca("inline-authz untrusted CA")
    with open(os.path.join(directory, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))

    server_sans = [x509.DNSName(n) for n in SERVER_NAMES]
    server_sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAMES[0])])
    key, cert = issue(ca_key, ca, subject, server_sans, ExtendedKeyUsageOID.SERVER_AUTH)
    write(directory, "server", key, cert)

    for name, (attributes, uris, dns) in CLIENTS.items():
        subject = x509.Name([x509.NameAttribute(ATTRIBUTES[k], v) for k, v in attributes])
        sans = [x509.UniformResourceIdentifier(u) for u in uris]
        sans += [x509.DNSName(d) for d in dns]
        signer = (other_key, other) if name == "untrusted" else (ca_key, ca)
        key, cert = issue(*signer, subject, sans, ExtendedKeyUsageOID.CLIENT_AUTH)
        write(directory, name, key, cert)
    print("ok", flush=True)


if __name__ == "__main__":
    main()
