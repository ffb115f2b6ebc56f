#!/usr/bin/env python3
"""A TLS front for the test bed's JWKS server (testbed/src/tls.rs starts it): the https side of
OIDC discovery and of https `jwks_uri`s, on loopback.

Usage: tls_front.py BACKEND_PORT DIR

Start-up: makes a fresh test CA and one server certificate signed by it (EC P-256, valid from one
day ago to one day ahead, SAN DNS names: the arguments of HOSTS below), writes them to DIR as
`ca.pem`, `server.pem` and `server-key.pem`, binds 127.0.0.1 on an ephemeral port, prints that
port as the first line of stdout, then serves until killed. Nothing else goes to stdout.

Each TLS connection (any SNI: one certificate covers every host) is opened as a plain TCP
connection to 127.0.0.1:BACKEND_PORT, and the bytes are copied both ways until either side
closes: the HTTP server behind (testbed/src/services.rs `JwksServer`) sees the request as sent,
`host` header included, and its answers and faults (status, body, delay, reset, garbage) come back
inside TLS. A backend reset aborts the TLS connection.

Needs the `cryptography` package (pip install cryptography): exit code 3 when it is missing.
"""

import asyncio
import datetime
import os
import ssl
import sys

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError as error:
    print(f"tls_front.py: {error}: pip install cryptography", file=sys.stderr)
    sys.exit(3)

# The test CA, as the mTLS certificates make it (one CA recipe for the test bed).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtls_certs import make_ca  # noqa: E402

# The names the server certificate holds (the test bed's `.example` https hosts).
HOSTS = ["issuer.example", "keys.example", "other-keys.example"]


def pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certificates(directory):
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=1)

    ca_key, ca = make_ca("inline-authz test CA")
    ca_name = ca.subject

    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTS[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    paths = {name: os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server-key.pem")}
    with open(paths["ca.pem"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["server.pem"], "wb") as f:
        f.write(server.public_bytes(serialization.Encoding.PEM))
    with open(paths["server-key.pem"], "wb") as f:
        f.write(pem(key))
    return paths


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()
    except (ConnectionError, OSError, ssl.SSLError):
        writer.transport.abort()


async def serve(backend_port, context):
    async def handle(client_reader, client_writer):
        try:
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        except OSError:
            client_writer.transport.abort()
            return
        await asyncio.gather(
            pipe(client_reader, backend_writer),
            pipe(backend_reader, client_writer),
            return_exceptions=True,
        )
        for writer in (backend_writer, client_writer):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main():
    backend_port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    paths = make_certificates(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths["server.pem"], paths["server-key.pem"])
    asyncio.run(serve(backend_port, context))


if __name__ == "__main__":
    main()
