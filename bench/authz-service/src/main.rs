//! The benchmark's authorization service: `bench-authz-service PORT` on 127.0.0.1.
//!
//! It answers exactly as the test bed's sample ext-authz service (`testbed::services::sample_decision`:
//! 200 on `x-ext-authz: allow`, 403 otherwise), and under the `/_cacheable` path prefix adds
//! `cache-control: max-age=60`, as the test bed's `/_cacheable` fault path does. The test bed's
//! `sample-services` binary does not route through its fault paths and `start_ext_authz` records
//! every request (memory that grows with the run), hence this small binary. Nothing is recorded.

use std::sync::Arc;

use testbed::http::{Handler, Reply, Request, Server};
use testbed::services;

fn main() {
    let port = std::env::args().nth(1).unwrap_or_else(|| "0".into());
    let handler: Handler = Arc::new(|request: &Request| {
        let decision = services::sample_decision(request);
        Reply::Respond(if request.path().starts_with("/_cacheable") {
            decision.header("cache-control", "max-age=60")
        } else {
            decision
        })
    });
    let server = Server::start_on(&format!("127.0.0.1:{port}"), handler).unwrap_or_else(|e| {
        eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1)
    });
    println!("authz on 127.0.0.1:{}", server.port());
    loop {
        std::thread::park();
    }
}
