#!/usr/bin/env python3
"""Upstreams for tests/protocols.rs: a gRPC service and a WebSocket service on loopback.

Written for the test bed (testbed/src/protocols.rs starts it); needs `pip install grpcio
websockets`.

Start-up: binds 127.0.0.1 on two ephemeral ports, prints `GRPC_PORT WS_PORT` as the first line of
stdout, then serves until killed. Nothing else goes to stdout.

gRPC (HTTP/2, plaintext): `/echo.Echo/Say`, unary, raw bytes (no protobuf: the client sends and
reads bytes). The answer is JSON: `{"message": <the request as text>, "metadata": {<name>:
<value>, ...}}`, the metadata being what the call arrived with (the headers Envoy forwarded),
without the ones that change on every request (`x-request-id`, `x-forwarded-*`, `user-agent`,
`x-envoy-expected-rq-timeout-ms`).

WebSocket (RFC 6455): every path is accepted; each message is sent back as it came, except the
text `whoami`, answered with JSON `{"path": <request target>, "headers": {<name>: <value>}}` (the
upgrade request's headers as the upstream got them, names lowercase).
"""

import json
import sys
import threading
from concurrent import futures

try:
    import grpc
    from websockets.sync.server import serve
except ImportError as missing:
    print(f"upstream: {missing}: pip install grpcio websockets", file=sys.stderr, flush=True)
    sys.exit(3)

VOLATILE = ("x-request-id", "x-forwarded-for", "x-forwarded-proto", "user-agent",
            "x-envoy-expected-rq-timeout-ms")


def say(request, context):
    metadata = {k: v for k, v in context.invocation_metadata() if k not in VOLATILE}
    answer = {"message": request.decode("utf-8", "replace"), "metadata": metadata}
    return json.dumps(answer, sort_keys=True).encode()


def websocket(connection):
    for message in connection:
        if message == "whoami":
            request = connection.request
            headers = {k.lower(): v for k, v in request.headers.raw_items()}
            connection.send(json.dumps({"path": request.path, "headers": headers}, sort_keys=True))
        else:
            connection.send(message)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    handler = grpc.unary_unary_rpc_method_handler(say)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("echo.Echo", {"Say": handler}),)
    )
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ws = serve(websocket, "127.0.0.1", 0)
    threading.Thread(target=ws.serve_forever, daemon=True).start()
    print(f"{grpc_port} {ws.socket.getsockname()[1]}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
