//! Runs the sample authorization service and the echo upstream until stopped:
//! `sample-services [AUTHZ_PORT] [UPSTREAM_PORT]` (defaults 9000 and 9001, on 127.0.0.1).

use std::sync::Arc;

use testbed::http::{Handler, Reply, Request, Server};
use testbed::services;

fn main() {
    let mut args = std::env::args().skip(1);
    let authz_port = args.next().unwrap_or_else(|| "9000".into());
    let upstream_port = args.next().unwrap_or_else(|| "9001".into());
    let authz: Handler = Arc::new(|r: &Request| Reply::Respond(services::sample_decision(r)));
    let echo: Handler = Arc::new(|r: &Request| Reply::Respond(services::echo(r)));
    let start = |port: &str, handler: Handler| {
        Server::start_on(&format!("127.0.0.1:{port}"), handler).unwrap_or_else(|e| {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1)
        })
    };
    let a = start(&authz_port, authz);
    let u = start(&upstream_port, echo);
    println!(
        "sample ext-authz on 127.0.0.1:{}, echo upstream on 127.0.0.1:{}",
        a.port(),
        u.port()
    );
    loop {
        std::thread::park();
    }
}
