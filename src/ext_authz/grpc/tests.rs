use super::proto::{
    BoolValue, DeniedHttpResponse, HeaderValue, HeaderValueOption, HttpStatus, OkHttpResponse,
    QueryParameter, Status,
};
use super::*;

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn option(key: &str, value: &str, append: Option<bool>) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value: value.into(),
            raw_value: vec![],
        }),
        append: append.map(|value| BoolValue { value }),
    }
}

fn answer(response: proto::CheckResponse) -> CallOutcome {
    CallOutcome::Message(response.encode_to_vec())
}

fn connection() -> Connection {
    Connection {
        source: Peer {
            address: Some(("10.0.0.7".into(), 43210)),
            principal: "spiffe://cluster.local/ns/default/sa/sleep".into(),
        },
        destination: Peer {
            address: Some(("127.0.0.1".into(), 8080)),
            principal: String::new(),
        },
        time: SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5),
        protocol: "HTTP/1.1".into(),
        id: "7".into(),
        size: 0,
    }
}

#[test]
fn the_upstream_names_the_cluster_and_istios_authority() {
    let bytes = grpc_service("outbound|9000||ext-authz", "ext-authz");
    let decoded = proto::GrpcService::decode(bytes.as_slice()).unwrap();
    let target = decoded.envoy_grpc.unwrap();
    assert_eq!(target.cluster_name, "outbound|9000||ext-authz");
    assert_eq!(target.authority, "ext-authz");
    assert!(String::from_utf8(bytes).is_ok(), "short names stay text");
}

#[test]
fn the_check_request_carries_every_header_joined_the_path_with_query_and_the_peers() {
    let request = headers(&[
        (":method", "GET"),
        (":path", "/raw/../headers?x=1"),
        (":authority", "httpbin"),
        (":scheme", "http"),
        ("x-a", "1"),
        ("x-a", "2"),
        ("x-envoy-auth-partial-body", "spoofed"),
        ("x-bad", "bin\u{fffd}ary"),
    ]);
    let bytes = check_request(&connection(), &request, "/headers?x=1", None, false);
    let sent = proto::CheckRequest::decode(bytes.as_slice()).unwrap();
    let attributes = sent.attributes.unwrap();
    let http = attributes.request.as_ref().unwrap().http.clone().unwrap();
    assert_eq!(
        (
            http.method.as_str(),
            http.path.as_str(),
            http.host.as_str(),
            http.scheme.as_str()
        ),
        ("GET", "/headers?x=1", "httpbin", "http")
    );
    assert_eq!(
        (http.protocol.as_str(), http.id.as_str(), http.size),
        ("HTTP/1.1", "7", 0)
    );
    assert_eq!(
        http.headers.get(":path").map(String::as_str),
        Some("/headers?x=1")
    );
    assert_eq!(http.headers.get("x-a").map(String::as_str), Some("1,2"));
    assert_eq!(
        http.headers.get("x-bad").map(String::as_str),
        Some("bin!ary")
    );
    assert!(
        !http.headers.contains_key("x-envoy-auth-partial-body"),
        "a client's partial-body header is dropped"
    );
    assert_eq!(http.body, "");
    let source = attributes.source.unwrap();
    let address = source.address.unwrap().socket_address.unwrap();
    assert_eq!(
        (address.address.as_str(), address.port_value),
        ("10.0.0.7", 43210)
    );
    assert_eq!(
        source.principal,
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
    let time = attributes.request.unwrap().time.unwrap();
    assert_eq!((time.seconds, time.nanos), (1_700_000_000, 5));
}

#[test]
fn the_body_goes_as_text_or_as_bytes_with_the_partial_flag() {
    let body = RequestBody {
        bytes: b"ab\xffcd".to_vec(),
        partial: true,
    };
    let request = headers(&[(":method", "POST"), (":path", "/upload")]);
    let text = check_request(&connection(), &request, "/upload", Some(&body), false);
    let http = proto::CheckRequest::decode(text.as_slice())
        .unwrap()
        .attributes
        .unwrap()
        .request
        .unwrap()
        .http
        .unwrap();
    assert_eq!(http.body, "ab!cd", "invalid UTF-8 becomes '!' as in Envoy");
    assert!(http.raw_body.is_empty());
    assert_eq!(
        http.headers.get(PARTIAL_BODY_HEADER).map(String::as_str),
        Some("true")
    );
    let bytes = check_request(&connection(), &request, "/upload", Some(&body), true);
    let http = proto::CheckRequest::decode(bytes.as_slice())
        .unwrap()
        .attributes
        .unwrap()
        .request
        .unwrap()
        .http
        .unwrap();
    assert_eq!(http.raw_body, b"ab\xffcd");
    assert_eq!(http.body, "");
}

#[test]
fn status_ok_allows_and_a_missing_status_is_ok() {
    assert_eq!(
        interpret(&answer(proto::CheckResponse::default()), &[], "/"),
        CheckResponse::Ok {
            upstream: vec![],
            downstream: vec![]
        }
    );
    assert_eq!(
        interpret(&CallOutcome::Message(vec![]), &[], "/"),
        CheckResponse::Ok {
            upstream: vec![],
            downstream: vec![]
        },
        "an empty message is an empty CheckResponse"
    );
}

#[test]
fn an_allow_sets_appends_to_existing_removes_and_adds_response_headers() {
    let response = proto::CheckResponse {
        status: Some(Status::default()),
        ok_response: Some(OkHttpResponse {
            headers: vec![
                option("X-Set", "one", None),
                option("x-set-false", "f", Some(false)),
                option("x-append", "two", Some(true)),
                option("x-append-missing", "none", Some(true)),
                option(":path", "/evil", None),
                option("host", "evil", None),
            ],
            headers_to_remove: vec!["X-Remove-Me".into(), ":authority".into(), "host".into()],
            response_headers_to_add: vec![
                option("x-resp", "added", None),
                option("x-resp-more", "more", Some(true)),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    let request = headers(&[("x-append", "one"), ("x-remove-me", "gone")]);
    assert_eq!(
        interpret(&answer(response), &request, "/"),
        CheckResponse::Ok {
            upstream: vec![
                HeaderMutation::Set {
                    name: "x-set".into(),
                    value: "one".into()
                },
                HeaderMutation::Set {
                    name: "x-set-false".into(),
                    value: "f".into()
                },
                HeaderMutation::Set {
                    name: "x-append".into(),
                    value: "one,two".into()
                },
                HeaderMutation::Remove {
                    name: "x-remove-me".into()
                },
            ],
            downstream: vec![
                HeaderMutation::Set {
                    name: "x-resp".into(),
                    value: "added".into()
                },
                HeaderMutation::Append {
                    name: "x-resp-more".into(),
                    value: "more".into()
                },
            ],
        }
    );
}

#[test]
fn query_parameter_mutations_rebuild_the_path_with_the_set_ones_last() {
    let response = proto::CheckResponse {
        ok_response: Some(OkHttpResponse {
            query_parameters_to_set: vec![QueryParameter {
                key: "q".into(),
                value: "set".into(),
            }],
            query_parameters_to_remove: vec!["drop".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let CheckResponse::Ok { upstream, .. } =
        interpret(&answer(response), &[], "/search?z=1&drop=x&q=old&a=b%20c")
    else {
        panic!("allowed");
    };
    assert_eq!(
        upstream,
        vec![HeaderMutation::Set {
            name: ":path".into(),
            value: "/search?z=1&a=b%20c&q=set".into()
        }]
    );
}

#[test]
fn a_non_zero_status_denies_with_the_denied_response_or_403() {
    let response = proto::CheckResponse {
        status: Some(Status {
            code: 7,
            message: String::new(),
        }),
        denied_response: Some(DeniedHttpResponse {
            status: Some(HttpStatus { code: 418 }),
            headers: vec![
                option("x-denied-by", "grpc", None),
                option("x-denied-by", "again", None),
                option("set-cookie", "a", Some(true)),
                option("set-cookie", "b", Some(true)),
            ],
            body: "custom denial".into(),
        }),
        ..Default::default()
    };
    assert_eq!(
        interpret(&answer(response), &[], "/"),
        CheckResponse::Denied {
            status: 418,
            headers: vec![("x-denied-by".into(), "again".into())],
            body: b"custom denial".to_vec(),
        }
    );
    for code in [0, 99, 600] {
        let response = proto::CheckResponse {
            status: Some(Status {
                code: 16,
                message: String::new(),
            }),
            denied_response: Some(DeniedHttpResponse {
                status: Some(HttpStatus { code }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            matches!(
                interpret(&answer(response), &[], "/"),
                CheckResponse::Denied { status: 403, .. }
            ),
            "{code}"
        );
    }
}

#[test]
fn status_ok_beside_a_denied_response_still_allows() {
    let response = proto::CheckResponse {
        status: Some(Status::default()),
        denied_response: Some(DeniedHttpResponse {
            status: Some(HttpStatus { code: 500 }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(
        interpret(&answer(response), &[], "/"),
        CheckResponse::Ok { .. }
    ));
}

#[test]
fn a_failed_call_or_an_answer_that_does_not_decode_is_an_error() {
    assert_eq!(
        interpret(&CallOutcome::Failed(14), &[], "/"),
        CheckResponse::Error(ErrorKind::GrpcStatus(14))
    );
    assert_eq!(
        interpret(&CallOutcome::Message(vec![0x0a, 0xff]), &[], "/"),
        CheckResponse::Error(ErrorKind::Undecodable)
    );
}

/// A fixture made by Python's protobuf from Envoy's own protos (`tests/fixtures/grpc/`).
fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/grpc/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn known_connection() -> Connection {
    Connection {
        source: Peer {
            address: Some(("10.0.0.1".into(), 34567)),
            principal: String::new(),
        },
        destination: Peer {
            address: Some(("10.0.0.2".into(), 8080)),
            principal: String::new(),
        },
        time: SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_000_000),
        protocol: "HTTP/1.1".into(),
        id: "1234567890123456789".into(),
        size: 11,
    }
}

/// Our bytes, without the two empty metadata messages the fixture leaves out.
fn without_metadata(bytes: &[u8]) -> Vec<u8> {
    let mut request = proto::CheckRequest::decode(bytes).unwrap();
    if let Some(a) = request.attributes.as_mut() {
        a.metadata_context = None;
        a.route_metadata_context = None;
    }
    request.encode_to_vec()
}

#[test]
fn the_check_request_is_byte_for_byte_what_envoys_protos_encode() {
    let headers = headers(&[
        (":method", "POST"),
        (":path", "/anything?a=1&b=2"),
        (":authority", "httpbin.default:8000"),
        ("x-ext-authz", "allow"),
    ]);
    for (file, pack_as_bytes, bytes) in [
        ("request_known.bin", false, b"hello world".to_vec()),
        ("request_raw_body.bin", true, b"hello \x00\xffbin".to_vec()),
    ] {
        let body = RequestBody {
            bytes,
            partial: false,
        };
        // The fixture's header map has neither :method nor the partial-body header; its scheme
        // field is set without a :scheme header.
        let mut sent = proto::CheckRequest::decode(
            check_request(
                &known_connection(),
                &headers,
                "/anything?a=1&b=2",
                Some(&body),
                pack_as_bytes,
            )
            .as_slice(),
        )
        .unwrap();
        let http = sent
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
            .unwrap();
        assert_eq!(
            http.headers.remove(PARTIAL_BODY_HEADER).as_deref(),
            Some("false")
        );
        http.headers.remove(":method");
        http.scheme = "http".into();
        assert_eq!(
            without_metadata(&sent.encode_to_vec()),
            fixture(file),
            "{file}"
        );
    }
}

#[test]
fn envoys_answers_read_as_envoy_reads_them() {
    let request = headers(&[("x-append", "one"), ("x-remove-me", "yes")]);
    let read = |file: &str| {
        interpret(
            &CallOutcome::Message(fixture(file)),
            &request,
            "/anything?drop=1&q=orig",
        )
    };
    let CheckResponse::Ok {
        upstream,
        downstream,
    } = read("response_allow_sample.bin")
    else {
        panic!("the sample allows");
    };
    assert_eq!(upstream.len(), 3);
    assert!(downstream.is_empty());
    let set = |name: &str, value: &str| HeaderMutation::Set {
        name: name.into(),
        value: value.into(),
    };
    assert_eq!(
        read("response_allow_mutations.bin"),
        CheckResponse::Ok {
            upstream: vec![
                set("x-set", "one"),
                set("x-append", "one,two"),
                set("x-append-false", "three"),
                HeaderMutation::Remove {
                    name: "x-remove-me".into()
                },
                set(":path", "/anything?q=set&new=a b"),
            ],
            downstream: vec![
                set("x-resp", "added"),
                HeaderMutation::Append {
                    name: "x-resp-append".into(),
                    value: "more".into()
                },
            ],
        }
    );
    let CheckResponse::Denied {
        status,
        headers,
        body,
    } = read("response_deny_sample.bin")
    else {
        panic!("the sample denies");
    };
    assert_eq!(status, 403);
    assert_eq!(headers.len(), 2);
    assert!(String::from_utf8(body)
        .unwrap()
        .starts_with("denied by ext_authz"));
    assert_eq!(
        read("response_deny_418.bin"),
        CheckResponse::Denied {
            status: 418,
            headers: vec![("x-denied-by".into(), "grpc".into())],
            body: b"custom denial".to_vec(),
        }
    );
    assert!(matches!(
        read("response_deny_status_zero.bin"),
        CheckResponse::Denied { status: 403, .. }
    ));
    assert!(matches!(
        read("response_empty.bin"),
        CheckResponse::Ok { .. }
    ));
    assert!(matches!(
        read("response_ok_with_denied.bin"),
        CheckResponse::Ok { .. }
    ));
    assert_eq!(
        read("response_error_status_message.bin"),
        CheckResponse::Denied {
            status: 403,
            headers: vec![],
            body: vec![]
        }
    );
}
