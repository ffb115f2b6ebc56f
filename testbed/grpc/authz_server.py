#!/usr/bin/env python3
"""A gRPC ext_authz server (envoy.service.auth.v3.Authorization/Check) on loopback for the tests.

It answers like Istio's sample ext-authz service over gRPC, plus fault modes chosen per request,
and records every CheckRequest it gets. Written for the test bed (testbed/src/grpc.rs starts it);
needs `pip install grpcio xds-protos` (the generated Envoy protos, no protoc step).

Start-up: binds 127.0.0.1 on two ephemeral ports, prints `GRPC_PORT HTTP_PORT` as the first line
of stdout, then serves until killed. Nothing else goes to stdout.

The decision (Istio's sample, samples/extauthz): allowed when the request header
`x-ext-authz` is `allow` (or, when that header is absent, when `source.principal` ends in
`/sa/a`); denied otherwise. Allowed: status 0 and `ok_response.headers` (no append)
`x-ext-authz-check-result: allowed`, `x-ext-authz-check-received: <RECEIVED>`,
`x-ext-authz-additional-header-override: grpc-additional-header-override-value`. Denied: status 7
(PERMISSION_DENIED), `denied_response{status 403, body DENY_BODY}` with the same three headers,
`denied` as the result.

RECEIVED (the sample sends the attributes' Go text; ours is made to compare across two Envoy
listeners): `attributes.request.http` in protobuf text format on one line, with `id` cleared and
the `x-request-id` header dropped (both change on every request); everything else the proxy sent
is kept (method, path with query, host, scheme, protocol, size, the other headers, body). Source,
destination and time are left out: their ports and values differ between listeners. Longer than
60000 characters: `<too-long>` (as the sample).

Fault modes, by the request header `x-grpc-fault` (read from `attributes.request.http.headers`):
  unavailable          the call fails with gRPC status UNAVAILABLE
  internal             the call fails with gRPC status INTERNAL
  slow:<ms>            sleeps <ms>, then allows (the sample's allow answer)
  deny-status:<code>   status 7, denied_response{status <code>, body "custom denial",
                       headers x-denied-by: grpc, x-denied-append: appended (append true)}
  empty                an empty CheckResponse (no status at all)
  deny-zero            status 7, denied_response{status 0, body "zero status denial",
                       headers x-denied-by: grpc}
  mutations            status 0, ok_response{headers x-set: one (no append), x-append: two
                       (append true); headers_to_remove [x-remove-me]; response_headers_to_add
                       [x-resp: added]; query_parameters_to_set [q=set];
                       query_parameters_to_remove [drop]}
  remove-protected     status 0, ok_response{headers_to_remove [":path", "host", ":authority",
                       ":method", "x-remove-me"]}
  status:<code>        only status{code <code>, message "status only"}: no denied_response
  ok-with-denied       status 0 plus a denied_response{status 403, body "should not be seen",
                       headers x-denied-by: grpc} (no ok_response)
  garbage              the answer's message is bytes that are no protobuf (0xff 0xff 0xff)

The record: `GET http://127.0.0.1:HTTP_PORT/received?mark=<m>` answers a JSON array of the
CheckRequests whose `attributes.request.http.path` contains <m> (all of them without `mark`), in
arrival order, each as `json_format.MessageToDict(preserving_proto_field_name=True)`: int64 fields
(`size`) are strings, `raw_body` is base64, Timestamps are RFC 3339 text. A request is recorded when
it arrives, before any sleep.
"""

import json
import sys
import threading
import time
import urllib.parse
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import grpc
    from envoy.config.core.v3 import base_pb2
    from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
    from google.protobuf import json_format, text_format, wrappers_pb2
except ImportError as missing:
    print(
        f"authz_server: {missing}: pip install grpcio xds-protos",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(3)

SERVICE = "envoy.service.auth.v3.Authorization"

CHECK_HEADER = "x-ext-authz"
ALLOWED_VALUE = "allow"
RESULT_HEADER = "x-ext-authz-check-result"
RECEIVED_HEADER = "x-ext-authz-check-received"
OVERRIDE_HEADER = "x-ext-authz-additional-header-override"
OVERRIDE_VALUE = "grpc-additional-header-override-value"
DENY_BODY = "denied by ext_authz for not found header `x-ext-authz: allow` in the request"
FAULT_HEADER = "x-grpc-fault"
ALLOWED_SERVICE_ACCOUNT = "a"

OK = 0
PERMISSION_DENIED = 7

RECORD = []
RECORD_LOCK = threading.Lock()


def header(key, value, append=None):
    option = base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value))
    if append is not None:
        option.append.CopyFrom(wrappers_pb2.BoolValue(value=append))
    return option


def received_text(request):
    """The request's HTTP attributes on one line, without what changes on every request."""
    attrs = attribute_context_pb2.AttributeContext.HttpRequest()
    attrs.CopyFrom(request.attributes.request.http)
    attrs.ClearField("id")
    if "x-request-id" in attrs.headers:
        del attrs.headers["x-request-id"]
    text = text_format.MessageToString(attrs, as_one_line=True)
    return "<too-long>" if len(text) > 60000 else text


def sample_headers(request, result):
    return [
        header(RESULT_HEADER, result),
        header(RECEIVED_HEADER, received_text(request)),
        header(OVERRIDE_HEADER, OVERRIDE_VALUE),
    ]


def allow(request):
    response = external_auth_pb2.CheckResponse()
    response.status.code = OK
    response.ok_response.headers.extend(sample_headers(request, "allowed"))
    return response


def deny(request):
    response = external_auth_pb2.CheckResponse()
    response.status.code = PERMISSION_DENIED
    response.denied_response.status.code = 403
    response.denied_response.body = DENY_BODY
    response.denied_response.headers.extend(sample_headers(request, "denied"))
    return response


def sample_decision(request):
    attrs = request.attributes
    headers = attrs.request.http.headers
    if CHECK_HEADER in headers:
        allowed = headers[CHECK_HEADER] == ALLOWED_VALUE
    else:
        allowed = attrs.HasField("source") and attrs.source.principal.endswith(
            "/sa/" + ALLOWED_SERVICE_ACCOUNT
        )
    return allow(request) if allowed else deny(request)


def denial(http_status, body):
    response = external_auth_pb2.CheckResponse()
    response.status.code = PERMISSION_DENIED
    # Set even when 0, so that the DeniedHttpResponse carries an (empty) status message.
    response.denied_response.status.SetInParent()
    response.denied_response.status.code = http_status
    response.denied_response.body = body
    response.denied_response.headers.append(header("x-denied-by", "grpc"))
    return response


def mutations():
    response = external_auth_pb2.CheckResponse()
    response.status.code = OK
    ok = response.ok_response
    ok.headers.extend([header("x-set", "one"), header("x-append", "two", append=True)])
    ok.headers_to_remove.append("x-remove-me")
    ok.response_headers_to_add.append(header("x-resp", "added"))
    ok.query_parameters_to_set.append(base_pb2.QueryParameter(key="q", value="set"))
    ok.query_parameters_to_remove.append("drop")
    return response


def check(request, context):
    with RECORD_LOCK:
        RECORD.append(json_format.MessageToDict(request, preserving_proto_field_name=True))
    fault = request.attributes.request.http.headers.get(FAULT_HEADER, "")
    name, _, argument = fault.partition(":")
    if name == "unavailable":
        context.abort(grpc.StatusCode.UNAVAILABLE, "fault: unavailable")
    if name == "internal":
        context.abort(grpc.StatusCode.INTERNAL, "fault: internal")
    if name == "slow":
        time.sleep(int(argument) / 1000.0)
        return allow(request)
    if name == "deny-status":
        response = denial(int(argument), "custom denial")
        response.denied_response.headers.append(header("x-denied-append", "appended", append=True))
        return response
    if name == "status":
        response = external_auth_pb2.CheckResponse()
        response.status.code = int(argument)
        response.status.message = "status only"
        return response
    if name == "empty":
        return external_auth_pb2.CheckResponse()
    if name == "deny-zero":
        return denial(0, "zero status denial")
    if name == "mutations":
        return mutations()
    if name == "remove-protected":
        response = external_auth_pb2.CheckResponse()
        response.status.code = OK
        response.ok_response.headers_to_remove.extend(
            [":path", "host", ":authority", ":method", "x-remove-me"]
        )
        return response
    if name == "ok-with-denied":
        response = denial(403, "should not be seen")
        response.status.code = OK
        return response
    if name == "garbage":
        return b"\xff\xff\xff"
    return sample_decision(request)


def serialize(response):
    # Bytes go out as they are: the `garbage` mode's message that is no protobuf.
    return response if isinstance(response, bytes) else response.SerializeToString()


class Record(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/received":
            self.send_error(404)
            return
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        mark = query.get("mark", [None])[0]
        with RECORD_LOCK:
            chosen = [
                r
                for r in RECORD
                if mark is None
                or mark in r.get("attributes", {}).get("request", {}).get("http", {}).get("path", "")
            ]
            body = json.dumps(chosen).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    handler = grpc.unary_unary_rpc_method_handler(
        check,
        request_deserializer=external_auth_pb2.CheckRequest.FromString,
        response_serializer=serialize,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Check": handler}),)
    )
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    record = ThreadingHTTPServer(("127.0.0.1", 0), Record)
    record.daemon_threads = True
    threading.Thread(target=record.serve_forever, daemon=True).start()
    print(f"{grpc_port} {record.server_address[1]}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
