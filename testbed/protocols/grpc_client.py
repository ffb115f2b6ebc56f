#!/usr/bin/env python3
"""A real gRPC client (grpcio) for tests/protocols.rs: makes the calls it is given and prints what
the client saw.

Usage: `grpc_client.py CALLS`, CALLS a JSON array of objects `{"port": <Envoy listener>,
"method": "/echo.Echo/Say", "message": <text>, "metadata": [[name, value], ...],
"authority": <the :authority to send>}`. Prints one JSON array, one object per call, in order:
`{"code": <grpc.StatusCode name, "OK" on success>, "details": <the status message>,
"initial": [[name, value], ...], "trailing": [[name, value], ...], "response": <the answer as
text, null on failure>}`. Exit 3 when grpcio is missing.
"""

import json
import sys

try:
    import grpc
except ImportError as missing:
    print(f"grpc_client: {missing}: pip install grpcio", file=sys.stderr, flush=True)
    sys.exit(3)


def pairs(metadata):
    return [[m.key, m.value if isinstance(m.value, str) else m.value.decode("latin-1")]
            for m in (metadata or ())]


def call(spec):
    options = [("grpc.default_authority", spec.get("authority", "protocols.test"))]
    with grpc.insecure_channel(f"127.0.0.1:{spec['port']}", options=options) as channel:
        method = channel.unary_unary(spec.get("method", "/echo.Echo/Say"))
        metadata = [tuple(p) for p in spec.get("metadata", [])]
        try:
            response, state = method.with_call(
                spec.get("message", "").encode(), metadata=metadata, timeout=20
            )
            return {"code": "OK", "details": state.details() or "",
                    "initial": pairs(state.initial_metadata()),
                    "trailing": pairs(state.trailing_metadata()),
                    "response": response.decode("utf-8", "replace")}
        except grpc.RpcError as error:
            return {"code": error.code().name, "details": error.details() or "",
                    "initial": pairs(error.initial_metadata()),
                    "trailing": pairs(error.trailing_metadata()),
                    "response": None}


def main():
    calls = json.loads(sys.argv[1])
    print(json.dumps([call(spec) for spec in calls]), flush=True)


if __name__ == "__main__":
    main()
