//! The demo: the filter in a real Envoy with the sample authorization service and an echo
//! upstream on loopback, replaying the ASM tutorial's three requests and two JWT cases, then the
//! tutorial's deny / allow pair through a gRPC provider (the test bed's gRPC server, which answers
//! like Istio's sample over gRPC). `--keep` leaves it running.

use std::collections::HashMap;
use std::fs;
use std::process::ExitCode;

use testbed::envoy::{render, repo_root, wasm_path, Envoy};
use testbed::grpc::{GrpcAuthz, OVERRIDE_VALUE};
use testbed::http::{Call, Response};
use testbed::services;

struct Case {
    title: &'static str,
    curl: &'static str,
    call: Call,
    check: fn(&Response) -> bool,
}

fn show(response: &Response, headers: &[&str]) {
    println!("  -> HTTP {}", response.status);
    for name in headers {
        for value in response.get_all(name) {
            println!("     {name}: {value}");
        }
    }
    let body = response.text();
    let shown: String = body.lines().take(12).collect::<Vec<_>>().join("\n     ");
    if !shown.is_empty() {
        println!("     {shown}");
    }
}

fn main() -> ExitCode {
    let keep = std::env::args().any(|a| a == "--keep");
    testbed::envoy::require_prerequisites();
    let wasm = match wasm_path() {
        Ok(path) => path,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (authz_server, _authz) =
        services::start_ext_authz().expect("start the sample ext-authz service");
    let (echo_server, _echo) = services::start_echo().expect("start the echo upstream");
    let grpc_authz = match GrpcAuthz::start() {
        Ok(grpc) => grpc,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let template =
        fs::read_to_string(repo_root().join("envoy/demo.yaml")).expect("read envoy/demo.yaml");
    let vectors: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(repo_root().join("tests/fixtures/jwt/vectors.json"))
            .expect("read the JWT fixtures"),
    )
    .expect("parse the JWT fixtures");
    let token = vectors["valid"]["RS256"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let vars = HashMap::from([
        (
            "JWKS",
            serde_json::Value::String(vectors["jwks"].to_string()).to_string(),
        ),
        ("WASM", wasm.display().to_string()),
        ("AUTHZ_PORT", authz_server.port().to_string()),
        ("AUTHZ_GRPC_PORT", grpc_authz.grpc_port().to_string()),
        ("UPSTREAM_PORT", echo_server.port().to_string()),
        (
            "LISTENER_PORT",
            if keep {
                "10000".to_string()
            } else {
                "0".to_string()
            },
        ),
    ]);
    let config = render(&template, &vars).expect("render envoy/demo.yaml");
    let envoy = match Envoy::start(&config) {
        Ok(envoy) => envoy,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let port = envoy.port("ingress");
    println!(
        "Envoy with inline-authz on 127.0.0.1:{port} (sample ext-authz on :{}, gRPC ext-authz on :{}, echo upstream on :{})\n",
        authz_server.port(),
        grpc_authz.grpc_port(),
        echo_server.port()
    );

    let cases = [
        Case {
            title: "Test 1: /ip is not protected by the policy",
            curl: "curl http://127.0.0.1:PORT/ip",
            call: Call::get("/ip").header("host", "httpbin.default:8000"),
            check: |r| r.status == 200,
        },
        Case {
            title: "Test 2: /headers with x-ext-authz: deny",
            curl: "curl -i http://127.0.0.1:PORT/headers -H 'x-ext-authz: deny'",
            call: Call::get("/headers")
                .header("host", "httpbin.default:8000")
                .header("x-ext-authz", "deny"),
            check: |r| {
                r.status == 403
                    && r.get("x-ext-authz-check-result") == Some("denied")
                    && r.text() == services::DENY_BODY
            },
        },
        Case {
            title: "Test 3: /headers with x-ext-authz: allow",
            curl: "curl http://127.0.0.1:PORT/headers -H 'x-ext-authz: allow'",
            call: Call::get("/headers")
                .header("host", "httpbin.default:8000")
                .header("x-ext-authz", "allow"),
            check: |r| {
                r.status == 200 && r.json()["headers"]["X-Ext-Authz-Check-Result"] == "allowed"
            },
        },
        Case {
            title: "Test 4: an invalid JWT is refused (RequestAuthentication)",
            curl: "curl -i http://127.0.0.1:PORT/ip -H 'Authorization: Bearer invalidToken'",
            call: Call::get("/ip").header("host", "httpbin.default:8000").header("authorization", "Bearer invalidToken"),
            check: |r| r.status == 401 && r.get("www-authenticate").is_some_and(|w| w.contains("error=\"invalid_token\"")),
        },
        Case {
            title: "Test 5: a valid JWT passes; its subject reaches the upstream as x-jwt-sub\n  (TOKEN is valid.RS256 in tests/fixtures/jwt/vectors.json)",
            curl: "curl http://127.0.0.1:PORT/headers -H 'x-ext-authz: allow' -H \"Authorization: Bearer $TOKEN\"",
            call: Call::get("/headers")
                .header("host", "httpbin.default:8000")
                .header("x-ext-authz", "allow")
                .header("authorization", &format!("Bearer {token}")),
            check: |r| r.status == 200 && r.json()["headers"]["X-Jwt-Sub"] == "demo@asm.test.io",
        },
        Case {
            title: "Test 6: over gRPC (envoyExtAuthzGrpc), /anything with x-ext-authz: deny",
            curl: "curl -i http://127.0.0.1:PORT/anything -H 'x-ext-authz: deny'",
            call: Call::get("/anything")
                .header("host", "httpbin.default:8000")
                .header("x-ext-authz", "deny"),
            check: |r| {
                r.status == 403
                    && r.get("x-ext-authz-check-result") == Some("denied")
                    && r.text() == services::DENY_BODY
            },
        },
        Case {
            title: "Test 7: over gRPC, /anything with x-ext-authz: allow; the answer's headers reach the upstream",
            curl: "curl http://127.0.0.1:PORT/anything -H 'x-ext-authz: allow'",
            call: Call::get("/anything")
                .header("host", "httpbin.default:8000")
                .header("x-ext-authz", "allow"),
            check: |r| {
                let headers = &r.json()["headers"];
                r.status == 200
                    && headers["X-Ext-Authz-Check-Result"] == "allowed"
                    && headers["X-Ext-Authz-Additional-Header-Override"] == OVERRIDE_VALUE
            },
        },
    ];
    let mut failed = 0;
    for case in &cases {
        println!(
            "{}\n  $ {}",
            case.title,
            case.curl.replace("PORT", &port.to_string())
        );
        match case.call.send(port) {
            Ok(response) => {
                show(&response, &["x-ext-authz-check-result", "www-authenticate"]);
                let ok = (case.check)(&response);
                println!("  {}\n", if ok { "as expected" } else { "NOT AS EXPECTED" });
                failed += usize::from(!ok);
            }
            Err(e) => {
                println!("  request failed: {e}\n");
                failed += 1;
            }
        }
    }
    let stats = envoy.stats("inline_authz");
    let mut names: Vec<_> = stats.iter().filter(|(_, v)| **v > 0).collect();
    names.sort();
    println!("Envoy stats:");
    for (name, value) in names {
        println!("  {name}: {value}");
    }
    if keep {
        println!("\nRunning until Ctrl-C; try the curl commands above.");
        loop {
            std::thread::park();
        }
    }
    if failed == 0 {
        println!("\nAll seven results are as the tutorials expect.");
        ExitCode::SUCCESS
    } else {
        println!("\n{failed} result(s) differ from the tutorial.");
        ExitCode::FAILURE
    }
}
