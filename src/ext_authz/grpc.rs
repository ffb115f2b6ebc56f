//! The gRPC authorization callout: Istio's `envoyExtAuthzGrpc` provider, with the messages of
//! `envoy.service.auth.v3.Authorization/Check` as Envoy's `ext_authz` gRPC client fills and reads
//! them. The few message types are written here with their field numbers (prost derive, no protoc).
//! Pure functions only: the shell dispatches the bytes and hands the answer back.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::check::PARTIAL_BODY_HEADER;
use super::{CheckResponse, ErrorKind, RequestBody};
use crate::headers::{is_protected, HeaderMutation};

/// The service of Envoy's authorization API, v3.
pub const SERVICE: &str = "envoy.service.auth.v3.Authorization";
/// Its one method.
pub const METHOD: &str = "Check";

/// The messages, field by field as in Envoy's protos (`envoy/service/auth/v3/*.proto`,
/// `envoy/config/core/v3/*.proto`, `google/rpc/status.proto`). Only the fields Envoy fills with
/// Istio's settings, and those it reads from the answer.
pub mod proto {
    // Each field is the proto field of the same name and number.
    #![allow(missing_docs)]

    use std::collections::BTreeMap;

    /// `envoy.service.auth.v3.CheckRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckRequest {
        #[prost(message, optional, tag = "1")]
        pub attributes: Option<AttributeContext>,
    }

    /// `envoy.service.auth.v3.AttributeContext`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeContext {
        #[prost(message, optional, tag = "1")]
        pub source: Option<Peer>,
        #[prost(message, optional, tag = "2")]
        pub destination: Option<Peer>,
        #[prost(message, optional, tag = "4")]
        pub request: Option<Request>,
        /// Envoy sends both, empty, with Istio's settings.
        #[prost(message, optional, tag = "11")]
        pub metadata_context: Option<Metadata>,
        #[prost(message, optional, tag = "13")]
        pub route_metadata_context: Option<Metadata>,
    }

    /// `envoy.config.core.v3.Metadata` (always empty here).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {}

    /// `AttributeContext.Peer`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Peer {
        #[prost(message, optional, tag = "1")]
        pub address: Option<Address>,
        #[prost(string, tag = "2")]
        pub service: String,
        #[prost(string, tag = "4")]
        pub principal: String,
    }

    /// `envoy.config.core.v3.Address` (the socket address only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Address {
        #[prost(message, optional, tag = "1")]
        pub socket_address: Option<SocketAddress>,
    }

    /// `envoy.config.core.v3.SocketAddress` (protocol TCP = 0).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SocketAddress {
        #[prost(int32, tag = "1")]
        pub protocol: i32,
        #[prost(string, tag = "2")]
        pub address: String,
        #[prost(uint32, tag = "3")]
        pub port_value: u32,
    }

    /// `AttributeContext.Request`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(message, optional, tag = "1")]
        pub time: Option<Timestamp>,
        #[prost(message, optional, tag = "2")]
        pub http: Option<HttpRequest>,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `AttributeContext.HttpRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpRequest {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub method: String,
        #[prost(btree_map = "string, string", tag = "3")]
        pub headers: BTreeMap<String, String>,
        #[prost(string, tag = "4")]
        pub path: String,
        #[prost(string, tag = "5")]
        pub host: String,
        #[prost(string, tag = "6")]
        pub scheme: String,
        #[prost(int64, tag = "9")]
        pub size: i64,
        #[prost(string, tag = "10")]
        pub protocol: String,
        #[prost(string, tag = "11")]
        pub body: String,
        #[prost(bytes = "vec", tag = "12")]
        pub raw_body: Vec<u8>,
    }

    /// `envoy.service.auth.v3.CheckResponse` (`http_response` is a oneof of fields 2 and 3).
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
        #[prost(string, tag = "2")]
        pub message: String,
    }

    /// `envoy.service.auth.v3.OkHttpResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OkHttpResponse {
        #[prost(message, repeated, tag = "2")]
        pub headers: Vec<HeaderValueOption>,
        #[prost(string, repeated, tag = "5")]
        pub headers_to_remove: Vec<String>,
        #[prost(message, repeated, tag = "6")]
        pub response_headers_to_add: Vec<HeaderValueOption>,
        #[prost(message, repeated, tag = "7")]
        pub query_parameters_to_set: Vec<QueryParameter>,
        #[prost(string, repeated, tag = "8")]
        pub query_parameters_to_remove: Vec<String>,
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

    /// `envoy.type.v3.HttpStatus` (the enum's value is the HTTP status number).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
    }

    /// `envoy.config.core.v3.HeaderValueOption`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValueOption {
        #[prost(message, optional, tag = "1")]
        pub header: Option<HeaderValue>,
        #[prost(message, optional, tag = "2")]
        pub append: Option<BoolValue>,
    }

    /// `envoy.config.core.v3.HeaderValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
        #[prost(bytes = "vec", tag = "3")]
        pub raw_value: Vec<u8>,
    }

    /// `google.protobuf.BoolValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BoolValue {
        #[prost(bool, tag = "1")]
        pub value: bool,
    }

    /// `envoy.config.core.v3.QueryParameter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct QueryParameter {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `envoy.config.core.v3.GrpcService` with its `envoy_grpc` target.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GrpcService {
        #[prost(message, optional, tag = "1")]
        pub envoy_grpc: Option<EnvoyGrpc>,
    }

    /// `GrpcService.EnvoyGrpc`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EnvoyGrpc {
        #[prost(string, tag = "1")]
        pub cluster_name: String,
        #[prost(string, tag = "2")]
        pub authority: String,
    }
}

use prost::Message;

/// The upstream of the call as Envoy's `proxy_grpc_call` reads it: a serialized `GrpcService`
/// naming the cluster and the `:authority` Istio gives the call (the service's host name).
pub fn grpc_service(cluster: &str, authority: &str) -> Vec<u8> {
    proto::GrpcService {
        envoy_grpc: Some(proto::EnvoyGrpc {
            cluster_name: cluster.to_string(),
            authority: authority.to_string(),
        }),
    }
    .encode_to_vec()
}

/// A peer of the connection as Envoy describes it to the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// `ip`, `port`.
    pub address: Option<(String, u32)>,
    /// URI SAN, else DNS SAN, else subject of its certificate; empty without mTLS.
    pub principal: String,
}

/// What the shell gathers from the host for a check request beyond the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The downstream peer (the client, or the mesh peer with mTLS).
    pub source: Peer,
    /// This proxy's side of the connection.
    pub destination: Peer,
    /// When the request started.
    pub time: SystemTime,
    /// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`.
    pub protocol: String,
    /// The request's id (Envoy puts its stream id here; a wasm filter has none: the context id).
    pub id: String,
    /// Body bytes received so far (Envoy's `bytesReceived()` when the check is made).
    pub size: i64,
}

fn peer(peer: &Peer) -> proto::Peer {
    proto::Peer {
        address: peer.address.as_ref().map(|(ip, port)| proto::Address {
            socket_address: Some(proto::SocketAddress {
                protocol: 0,
                address: ip.clone(),
                port_value: *port,
            }),
        }),
        service: String::new(),
        principal: peer.principal.clone(),
    }
}

/// Text as Envoy's `sanitizeUtf8String` leaves it: every byte that is not valid UTF-8 becomes
/// `!`. Header values reach the filter already decoded, their invalid bytes as U+FFFD.
fn sanitized(text: &str) -> String {
    text.replace('\u{fffd}', "!")
}

fn sanitized_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(std::iter::repeat_n('!', chunk.invalid().len()));
    }
    out
}

/// The `CheckRequest` Envoy sends with Istio's settings: every request header (pseudo-headers
/// included, repeated names joined with `,`), the path with its query, the body per
/// `includeRequestBodyInCheck` (`raw_body` with `packAsBytes`).
pub fn check_request(
    connection: &Connection,
    headers: &[(String, String)],
    path: &str,
    body: Option<&RequestBody>,
    pack_as_bytes: bool,
) -> Vec<u8> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        if name == PARTIAL_BODY_HEADER {
            continue;
        }
        let value = sanitized(if name == ":path" { path } else { value });
        map.entry(name.clone())
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    let header = |name: &str| map.get(name).cloned().unwrap_or_default();
    let mut http = proto::HttpRequest {
        id: connection.id.clone(),
        method: header(":method"),
        path: sanitized(path),
        host: header(":authority"),
        scheme: header(":scheme"),
        protocol: connection.protocol.clone(),
        size: connection.size,
        ..Default::default()
    };
    if let Some(body) = body {
        map.insert(PARTIAL_BODY_HEADER.into(), body.partial.to_string());
        if pack_as_bytes {
            http.raw_body = body.bytes.clone();
        } else {
            http.body = sanitized_bytes(&body.bytes);
        }
    }
    http.headers = map;
    let since = connection
        .time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    proto::CheckRequest {
        attributes: Some(proto::AttributeContext {
            source: Some(peer(&connection.source)),
            destination: Some(peer(&connection.destination)),
            request: Some(proto::Request {
                time: Some(proto::Timestamp {
                    seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
                }),
                http: Some(http),
            }),
            metadata_context: Some(proto::Metadata {}),
            route_metadata_context: Some(proto::Metadata {}),
        }),
    }
    .encode_to_vec()
}

/// How the call ended, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// gRPC status OK and the response message.
    Message(Vec<u8>),
    /// A non-OK gRPC status of the call itself (UNAVAILABLE on a reset, DEADLINE_EXCEEDED …).
    Failed(u32),
}

fn header_of(option: &proto::HeaderValueOption) -> Option<(String, String, bool)> {
    let header = option.header.as_ref()?;
    let value = if header.value.is_empty() && !header.raw_value.is_empty() {
        String::from_utf8_lossy(&header.raw_value).into_owned()
    } else {
        header.value.clone()
    };
    let append = option.append.as_ref().is_some_and(|a| a.value);
    Some((header.key.to_ascii_lowercase(), value, append))
}

/// Reads the answer as Envoy's gRPC ext_authz client does: allowed when `status.code` is 0 (a
/// missing status is 0), denied otherwise, an error when the call failed or the answer does not
/// decode. `request_headers` and `path` are the request as it is now (an `append` adds to an
/// existing header only; query parameter mutations rebuild the path).
pub fn interpret(
    outcome: &CallOutcome,
    request_headers: &[(String, String)],
    path: &str,
) -> CheckResponse {
    let bytes = match outcome {
        CallOutcome::Message(bytes) => bytes,
        CallOutcome::Failed(code) => return CheckResponse::Error(ErrorKind::GrpcStatus(*code)),
    };
    let Ok(answer) = proto::CheckResponse::decode(bytes.as_slice()) else {
        return CheckResponse::Error(ErrorKind::Undecodable);
    };
    if answer.status.as_ref().map_or(0, |s| s.code) != 0 {
        let denied = answer.denied_response.unwrap_or_default();
        let status = denied
            .status
            .as_ref()
            .map(|s| s.code)
            .filter(|c| (100..=599).contains(c))
            .map_or(403, |c| c as u32);
        // Envoy sets each header on its local reply; one marked `append` is dropped.
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value, append) in denied.headers.iter().filter_map(header_of) {
            if !append {
                headers.retain(|(n, _)| *n != name);
                headers.push((name, value));
            }
        }
        return CheckResponse::Denied {
            status,
            headers,
            body: denied.body.into_bytes(),
        };
    }
    let ok = answer.ok_response.unwrap_or_default();
    let mut upstream = Vec::new();
    for (name, value, append) in ok.headers.iter().filter_map(header_of) {
        if is_protected(&name) {
            continue;
        }
        if !append {
            upstream.push(HeaderMutation::Set { name, value });
            continue;
        }
        // Envoy appends only to a header the request already has, joined with a comma.
        let existing = joined(request_headers, &upstream, &name);
        if let Some(existing) = existing {
            upstream.push(HeaderMutation::Set {
                name,
                value: format!("{existing},{value}"),
            });
        }
    }
    for name in &ok.headers_to_remove {
        let name = name.to_ascii_lowercase();
        if !is_protected(&name) {
            upstream.push(HeaderMutation::Remove { name });
        }
    }
    if !ok.query_parameters_to_set.is_empty() || !ok.query_parameters_to_remove.is_empty() {
        upstream.push(HeaderMutation::Set {
            name: ":path".into(),
            value: rebuild_query(
                path,
                &ok.query_parameters_to_set,
                &ok.query_parameters_to_remove,
            ),
        });
    }
    let downstream = ok
        .response_headers_to_add
        .iter()
        .filter_map(header_of)
        .map(|(name, value, append)| {
            if append {
                HeaderMutation::Append { name, value }
            } else {
                HeaderMutation::Set { name, value }
            }
        })
        .collect();
    CheckResponse::Ok {
        upstream,
        downstream,
    }
}

/// A header's value as the request will have it after the mutations so far.
fn joined(
    headers: &[(String, String)],
    mutations: &[HeaderMutation],
    name: &str,
) -> Option<String> {
    let mut view: Vec<(String, String)> =
        headers.iter().filter(|(n, _)| n == name).cloned().collect();
    crate::headers::apply(&mut view, mutations);
    let values: Vec<&str> = view
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// `:path` with its query rebuilt as Envoy does after query parameter mutations: the removed
/// names dropped, each set one dropped where it was and added at the end, the rest in order.
fn rebuild_query(path: &str, set: &[proto::QueryParameter], remove: &[String]) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key.to_string(), value.to_string())
        })
        .collect();
    params.retain(|(key, _)| !remove.contains(key) && !set.iter().any(|p| p.key == *key));
    params.extend(set.iter().map(|p| (p.key.clone(), p.value.clone())));
    let mut out = base.to_string();
    for (i, (key, value)) in params.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

#[cfg(test)]
mod tests;
