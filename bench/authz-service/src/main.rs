//! The benchmark's authorization service: `bench-authz-service [HTTP_PORT [GRPC_PORT]]` on
//! 127.0.0.1 (0 or absent: an ephemeral port). It prints `authz on 127.0.0.1:<HTTP_PORT>`, then
//! `authz-grpc on 127.0.0.1:<GRPC_PORT>`, then serves until killed.
//!
//! HTTP: it answers exactly as the test bed's sample ext-authz service
//! (`testbed::services::sample_decision`: 200 on `x-ext-authz: allow`, 403 otherwise), and under
//! the `/_cacheable` path prefix adds `cache-control: max-age=60`, as the test bed's `/_cacheable`
//! fault path does. The test bed's `sample-services` binary does not route through its fault
//! paths and `start_ext_authz` records every request (memory that grows with the run), hence this
//! small binary. Nothing is recorded.
//!
//! gRPC (HTTP/2, plaintext): `envoy.service.auth.v3.Authorization/Check`, with the same decision as
//! Istio's sample over gRPC (`testbed/grpc/authz_server.py`): allowed when the request header
//! `x-ext-authz` is `allow` (or, without that header, when `source.principal` ends in `/sa/a`),
//! denied otherwise. Allowed: status 0 and `ok_response.headers` `x-ext-authz-check-result:
//! allowed` and `x-ext-authz-additional-header-override: grpc-additional-header-override-value`.
//! Denied: status 7 (PERMISSION_DENIED), `denied_response{status 403, body DENY_BODY}` with the
//! same headers and `denied` as the result. The sample's third header, the echo of what it
//! received (`x-ext-authz-check-received`), is left out: it is a debugging aid that costs a text
//! rendering of every request here and a longer header on both sides of the comparison. The test
//! bed's Python server (grpcio, a thread pool, a record of every request) would be the bottleneck
//! of a benchmark; this one is tonic on one tokio thread (the benchmark pins the service to one
//! core). The messages are written here with their field numbers (prost derive, no protoc), only
//! the fields this service reads or writes: prost skips the others.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use testbed::http::{Handler, Reply, Request, Server};
use testbed::services::{self, DENY_BODY};
use tokio_stream::StreamExt;

/// The one method of `envoy.service.auth.v3.Authorization`, as an HTTP/2 path.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";
const CHECK_HEADER: &str = "x-ext-authz";
const ALLOWED_VALUE: &str = "allow";
const RESULT_HEADER: &str = "x-ext-authz-check-result";
const OVERRIDE_HEADER: &str = "x-ext-authz-additional-header-override";
const OVERRIDE_VALUE: &str = "grpc-additional-header-override-value";
const ALLOWED_PRINCIPAL_SUFFIX: &str = "/sa/a";
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;

/// The messages of `envoy/service/auth/v3/*.proto` this service reads and writes, field by field.
mod proto {
    use std::collections::HashMap;

    /// `envoy.service.auth.v3.CheckRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckRequest {
        #[prost(message, optional, tag = "1")]
        pub attributes: Option<AttributeContext>,
    }

    /// `envoy.service.auth.v3.AttributeContext` (source and request only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeContext {
        #[prost(message, optional, tag = "1")]
        pub source: Option<Peer>,
        #[prost(message, optional, tag = "4")]
        pub request: Option<Request>,
    }

    /// `AttributeContext.Peer` (the principal only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Peer {
        #[prost(string, tag = "4")]
        pub principal: String,
    }

    /// `AttributeContext.Request` (http only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(message, optional, tag = "2")]
        pub http: Option<HttpRequest>,
    }

    /// `AttributeContext.HttpRequest` (the headers only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpRequest {
        #[prost(map = "string, string", tag = "3")]
        pub headers: HashMap<String, String>,
    }

    /// `envoy.service.auth.v3.CheckResponse` (`http_response`: a oneof of fields 2 and 3).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<Status>,
        #[prost(message, optional, tag = "2")]
        pub denied_response: Option<DeniedHttpResponse>,
        #[prost(message, optional, tag = "3")]
        pub ok_response: Option<OkHttpResponse>,
    }

    /// `google.rpc.Status`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
    }

    /// `envoy.service.auth.v3.OkHttpResponse` (headers only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OkHttpResponse {
        #[prost(message, repeated, tag = "2")]
        pub headers: Vec<HeaderValueOption>,
    }

    /// `envoy.service.auth.v3.DeniedHttpResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeniedHttpResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<HttpStatus>,
        #[prost(message, repeated, tag = "2")]
        pub headers: Vec<HeaderValueOption>,
        #[prost(string, tag = "3")]
        pub body: String,
    }

    /// `envoy.type.v3.HttpStatus`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
    }

    /// `envoy.config.core.v3.HeaderValueOption` (no `append`: Envoy's default).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValueOption {
        #[prost(message, optional, tag = "1")]
        pub header: Option<HeaderValue>,
    }

    /// `envoy.config.core.v3.HeaderValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

fn header(key: &str, value: &str) -> proto::HeaderValueOption {
    proto::HeaderValueOption {
        header: Some(proto::HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
        }),
    }
}

/// The sample's decision over gRPC (see the module's documentation).
fn grpc_decision(request: &proto::CheckRequest) -> proto::CheckResponse {
    let attributes = request.attributes.as_ref();
    let header_value = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .and_then(|h| h.headers.get(CHECK_HEADER));
    let allowed = match header_value {
        Some(value) => value == ALLOWED_VALUE,
        None => attributes
            .and_then(|a| a.source.as_ref())
            .is_some_and(|s| s.principal.ends_with(ALLOWED_PRINCIPAL_SUFFIX)),
    };
    let result = if allowed { "allowed" } else { "denied" };
    let headers = vec![
        header(RESULT_HEADER, result),
        header(OVERRIDE_HEADER, OVERRIDE_VALUE),
    ];
    if allowed {
        proto::CheckResponse {
            status: Some(proto::Status { code: OK }),
            denied_response: None,
            ok_response: Some(proto::OkHttpResponse { headers }),
        }
    } else {
        proto::CheckResponse {
            status: Some(proto::Status {
                code: PERMISSION_DENIED,
            }),
            denied_response: Some(proto::DeniedHttpResponse {
                status: Some(proto::HttpStatus { code: 403 }),
                headers,
                body: DENY_BODY.to_string(),
            }),
            ok_response: None,
        }
    }
}

/// The unary method: decode (tonic), decide, encode (tonic).
struct Check;

impl tonic::server::UnaryService<proto::CheckRequest> for Check {
    type Response = proto::CheckResponse;
    type Future = Ready<Result<tonic::Response<proto::CheckResponse>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<proto::CheckRequest>) -> Self::Future {
        ready(Ok(tonic::Response::new(grpc_decision(request.get_ref()))))
    }
}

/// The HTTP/2 service: `Check` at its path, UNIMPLEMENTED elsewhere (what tonic-build generates,
/// written out for one method).
#[derive(Clone)]
struct Authorization;

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl tower_service::Service<http::Request<tonic::body::Body>> for Authorization {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != CHECK_PATH {
            let status =
                tonic::Status::unimplemented(format!("no method {}", request.uri().path()));
            return Box::pin(ready(Ok(status.into_http())));
        }
        Box::pin(async move {
            let codec =
                tonic_prost::ProstCodec::<proto::CheckResponse, proto::CheckRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(grpc.unary(Check, request).await)
        })
    }
}

fn listen_or_exit(port: &str) -> TcpListener {
    TcpListener::bind(format!("127.0.0.1:{port}")).unwrap_or_else(|e| {
        eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1)
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let http_port = args.next().unwrap_or_else(|| "0".into());
    let grpc_port = args.next().unwrap_or_else(|| "0".into());
    let handler: Handler = Arc::new(|request: &Request| {
        let decision = services::sample_decision(request);
        Reply::Respond(if request.path().starts_with("/_cacheable") {
            decision.header("cache-control", "max-age=60")
        } else {
            decision
        })
    });
    let server = Server::start_on(&format!("127.0.0.1:{http_port}"), handler).unwrap_or_else(|e| {
        eprintln!("cannot listen on 127.0.0.1:{http_port}: {e}");
        std::process::exit(1)
    });
    let grpc = listen_or_exit(&grpc_port);
    let grpc_port = grpc.local_addr().map(|a| a.port()).unwrap_or(0);
    if let Err(e) = grpc.set_nonblocking(true) {
        eprintln!("gRPC listener: {e}");
        std::process::exit(1)
    }
    println!("authz on 127.0.0.1:{}", server.port());
    println!("authz-grpc on 127.0.0.1:{grpc_port}");

    // One thread for every gRPC connection (Envoy multiplexes its checks on one HTTP/2 connection
    // per worker): the benchmark pins this process to one core, where more threads only switch.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("tokio runtime: {e}");
            std::process::exit(1)
        });
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(grpc)?;
        // Small answers on a long-lived connection: no Nagle delay (tonic's own tcp_nodelay
        // setting does not apply to an incoming stream handed to it).
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
            stream.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
        tonic::transport::Server::builder()
            .serve_with_incoming(Authorization, incoming)
            .await
            .map_err(std::io::Error::other)
    });
    if let Err(e) = served {
        eprintln!("gRPC server: {e}");
        std::process::exit(1)
    }
    drop(server);
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn check(headers: &[(&str, &str)], principal: &str) -> proto::CheckResponse {
        let request = proto::CheckRequest {
            attributes: Some(proto::AttributeContext {
                source: Some(proto::Peer {
                    principal: principal.into(),
                }),
                request: Some(proto::Request {
                    http: Some(proto::HttpRequest {
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    }),
                }),
            }),
        };
        // Through the wire format, as Envoy sends it.
        let bytes = request.encode_to_vec();
        grpc_decision(&proto::CheckRequest::decode(bytes.as_slice()).unwrap_or_default())
    }

    #[test]
    fn decides_as_the_sample() {
        let allowed = check(&[("x-ext-authz", "allow")], "");
        assert_eq!(allowed.status.map(|s| s.code), Some(OK));
        assert!(allowed.ok_response.is_some() && allowed.denied_response.is_none());

        let denied = check(&[("x-ext-authz", "deny")], "spiffe://c/ns/d/sa/a");
        assert_eq!(denied.status.map(|s| s.code), Some(PERMISSION_DENIED));
        let denial = denied.denied_response.unwrap_or_default();
        assert_eq!(denial.status.map(|s| s.code), Some(403));
        assert_eq!(denial.body, DENY_BODY);

        let by_principal = check(&[], "spiffe://c/ns/d/sa/a");
        assert_eq!(by_principal.status.map(|s| s.code), Some(OK));
        let nobody = check(&[], "spiffe://c/ns/d/sa/b");
        assert_eq!(nobody.status.map(|s| s.code), Some(PERMISSION_DENIED));
    }
}
