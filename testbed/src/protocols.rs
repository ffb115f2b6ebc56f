//! The protocols clients run, around one Envoy (`tests/protocols.rs`): HTTP/2 without TLS (h2c,
//! prior knowledge, through `curl --http2-prior-knowledge`), gRPC (a real grpcio client and
//! service), WebSocket (a raw client, a real `websockets` service), and the odd HTTP/1.x
//! exchanges (`Expect: 100-continue`, chunked bodies, HEAD, HTTP/1.0) written byte for byte.
//!
//! ```ignore
//! let upstreams = Upstreams::start()?;   // python3 testbed/protocols/upstream.py
//! let bed = Bed::start_edited(&listeners, false, |c| upstreams.edit(&c));
//! grpc_calls(&[json!({"port": bed.port("jwt"), "message": "hi"})]);
//! ```
//!
//! The upstream process is killed when `Upstreams` is dropped, and with the test binary should
//! that die first (spawned like Envoy).

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use serde_yaml::Value as Yaml;

use crate::envoy::{repo_root, unprepared};
use crate::http::{parse_headers, read_body, read_head, Call, Response};
use crate::python;

/// The Python modules the upstreams and the gRPC client need, as `pip` names them.
pub const PIP_PACKAGES: &str = "grpcio websockets";
/// The gRPC method of the upstream (`/echo.Echo/Say`): every route under `/echo.Echo/` goes there.
pub const GRPC_METHOD: &str = "/echo.Echo/Say";
/// Requests under this prefix go to the WebSocket upstream.
pub const WS_PREFIX: &str = "/ws";
/// The `:authority` the gRPC client sends (the same on every listener, so replies compare).
pub const GRPC_AUTHORITY: &str = "protocols.test";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The gRPC and WebSocket upstreams (`testbed/protocols/upstream.py`).
pub struct Upstreams {
    child: Child,
    pub grpc_port: u16,
    pub ws_port: u16,
    log: PathBuf,
}

impl Upstreams {
    pub fn start() -> Result<Upstreams, String> {
        let log = std::env::temp_dir().join(format!(
            "inline-authz-upstreams-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let (child, (grpc_port, ws_port)) = python::start(
            "the gRPC and WebSocket upstreams",
            "testbed/protocols/upstream.py",
            &[],
            &log,
            PIP_PACKAGES,
            |line| {
                let mut words = line.split_whitespace().map(str::parse::<u16>);
                match (words.next(), words.next()) {
                    (Some(Ok(grpc)), Some(Ok(ws))) => Some((grpc, ws)),
                    _ => None,
                }
            },
        )?;
        Ok(Upstreams {
            child,
            grpc_port,
            ws_port,
            log,
        })
    }

    /// The rendered Envoy config with, on every listener alike (filter and native): WebSocket
    /// upgrades, HTTP/1.0 (`accept_http_10`, default host `localhost`), HTTP/2 extended CONNECT,
    /// and routes `/echo.Echo/` → the gRPC upstream (HTTP/2), `/ws` → the WebSocket upstream, in
    /// front of the template's routes (so every filter of the listener applies to them).
    pub fn edit(&self, config: &str) -> String {
        let mut root: Yaml = serde_yaml::from_str(config).unwrap_or_else(|e| panic!("{e}"));
        let yaml = |text: &str| -> Yaml { serde_yaml::from_str(text).unwrap_or(Yaml::Null) };
        let routes = yaml(&format!(
            "[{{match: {{prefix: \"/echo.Echo/\"}}, route: {{cluster: grpc-upstream}}}},
              {{match: {{prefix: \"{WS_PREFIX}\"}}, route: {{cluster: ws-upstream}}}}]"
        ));
        let listeners = root["static_resources"]["listeners"]
            .as_sequence_mut()
            .unwrap_or_else(|| panic!("no listeners"));
        for listener in listeners {
            let hcm = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
            hcm["upgrade_configs"] = yaml("[{upgrade_type: websocket}]");
            hcm["http_protocol_options"] =
                yaml("{accept_http_10: true, default_host_for_http_10: localhost}");
            hcm["http2_protocol_options"] = yaml("{allow_connect: true}");
            let host = &mut hcm["route_config"]["virtual_hosts"][0]["routes"];
            if let (Some(existing), Some(ours)) = (host.as_sequence_mut(), routes.as_sequence()) {
                for (i, route) in ours.iter().enumerate() {
                    existing.insert(i, route.clone());
                }
            }
        }
        let cluster = |name: &str, port: u16, h2: bool| {
            let options = if h2 {
                "typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {\"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http2_protocol_options: {}}}},"
            } else {
                ""
            };
            yaml(&format!(
                "{{name: {name}, connect_timeout: 1s, type: STATIC, {options}
                  load_assignment: {{cluster_name: {name}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]}}}}"
            ))
        };
        if let Some(clusters) = root["static_resources"]["clusters"].as_sequence_mut() {
            clusters.push(cluster("grpc-upstream", self.grpc_port, true));
            clusters.push(cluster("ws-upstream", self.ws_port, false));
        }
        serde_yaml::to_string(&root).unwrap_or_else(|e| panic!("{e}"))
    }

    /// What the upstream process wrote to stderr.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !thread::panicking() {
            let _ = fs::remove_file(&self.log);
        }
    }
}

/// Makes the gRPC calls (`testbed/protocols/grpc_client.py`: one object per call, see its
/// docstring) with a real grpcio client; what the client saw, per call.
pub fn grpc_calls(calls: &[Value]) -> Vec<Value> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let output = Command::new(&python)
        .arg(repo_root().join("testbed/protocols/grpc_client.py"))
        .arg(Value::Array(calls.to_vec()).to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}", unprepared(format!("cannot run {python}: {e}"))));
    if output.status.code() == Some(3) {
        panic!(
            "{}",
            unprepared(format!("grpcio missing ({python}): pip install grpcio"))
        );
    }
    match serde_json::from_slice(&output.stdout) {
        Ok(Value::Array(all)) => all,
        _ => panic!(
            "gRPC client: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Headers and metadata that change on every request or connection.
const VOLATILE: [&str; 4] = [
    "date",
    "server",
    "x-envoy-upstream-service-time",
    "x-request-id",
];

/// Sends `call` as one gRPC call (`grpc_calls`): the target is the method, the headers the
/// metadata (`host`: the `:authority`, [`GRPC_AUTHORITY`] when none), the body the message. What
/// the client saw, as a `Response` for `compare::observe_via`: status 200, headers `grpc-code`
/// (the `grpc.StatusCode` name, `OK` on success), `grpc-message`, then the initial and trailing
/// metadata as `initial:<name>` / `trailing:<name>` (volatile ones left out); body: the answer.
pub fn grpc(call: &Call, port: u16) -> io::Result<Response> {
    let authority = call
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map_or(GRPC_AUTHORITY, |(_, v)| v.as_str());
    let metadata: Vec<Value> = call
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
        .map(|(n, v)| serde_json::json!([n.to_ascii_lowercase(), v]))
        .collect();
    let spec = serde_json::json!({
        "port": port, "method": call.target, "authority": authority, "metadata": metadata,
        "message": String::from_utf8_lossy(call.body.as_deref().unwrap_or_default()),
    });
    let seen = grpc_calls(&[spec]).pop().unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut headers = vec![
        ("grpc-code".to_string(), text(&seen["code"])),
        ("grpc-message".to_string(), text(&seen["details"])),
    ];
    for part in ["initial", "trailing"] {
        for pair in seen[part].as_array().into_iter().flatten() {
            let name = text(&pair[0]);
            if !VOLATILE.contains(&name.as_str()) {
                headers.push((format!("{part}:{name}"), text(&pair[1])));
            }
        }
    }
    Ok(Response {
        status: 200,
        headers,
        body: text(&seen["response"]).into_bytes(),
    })
}

/// Whether this `curl` speaks HTTP/2 (the h2c cases need it).
pub fn curl_has_http2() -> bool {
    Command::new("curl")
        .arg("-V")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("HTTP2"))
}

/// Sends `call` over cleartext HTTP/2 with prior knowledge (`curl --http2-prior-knowledge`; a
/// `host` header becomes `:authority`) and reads the whole answer.
pub fn h2c(call: &Call, port: u16) -> io::Result<Response> {
    if !curl_has_http2() {
        return Err(io::Error::other(unprepared(
            "no curl with HTTP/2 (apt-get install curl)".into(),
        )));
    }
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "-i",
        "--http2-prior-knowledge",
        "--path-as-is",
        "--max-time",
        "20",
        "-X",
        &call.method,
    ]);
    for (name, value) in &call.headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    if call.body.is_some() {
        command.args(["--data-binary", "@-"]);
    }
    command
        .arg(format!("http://127.0.0.1:{port}{}", call.target))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(call.body.as_deref().unwrap_or_default())?;
    }
    let output = child.wait_with_output()?;
    // A reply sent before the upload ended (a 413 at the headers) is followed by a stream reset,
    // which curl reports as an error after printing the reply: the reply is what counts.
    if !output.status.success() && !output.stdout.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(io::Error::other(format!(
            "curl: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let mut response = parse_exchange(&output.stdout)?;
    response.headers.retain(|(n, _)| n != ":status-line");
    Ok(response)
}

/// Writes `bytes` on a new connection and reads until the server closes it: the first head
/// (its status line kept as the pseudo-header `:status-line`), then everything after it as the
/// body, unparsed, so a body that should not be there (HEAD) shows.
pub fn exchange(port: u16, bytes: &[u8]) -> io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(bytes)?;
    let mut all = Vec::new();
    stream.read_to_end(&mut all)?;
    parse_exchange(&all)
}

fn parse_exchange(all: &[u8]) -> io::Result<Response> {
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no complete head"))?;
    let head = String::from_utf8_lossy(&all[..end]);
    let lines: Vec<String> = head.split("\r\n").map(str::to_string).collect();
    let status_line = lines.first().cloned().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, status_line.clone()))?;
    let mut headers = parse_headers(&lines[1..]);
    headers.push((":status-line".into(), status_line.trim_end().to_string()));
    Ok(Response {
        status,
        headers,
        body: all[end + 4..].to_vec(),
    })
}

/// `call` written as HTTP/1.0 (`connection: close` left out: 1.0 closes by itself).
pub fn http10(call: &Call) -> Vec<u8> {
    let wire = call.wire(true);
    let text = String::from_utf8_lossy(&wire).into_owned();
    text.replacen(" HTTP/1.1\r\n", " HTTP/1.0\r\n", 1)
        .into_bytes()
}

/// `call` with its body sent as `transfer-encoding: chunked`, in chunks of `size` bytes.
pub fn chunked(call: &Call, size: usize) -> Vec<u8> {
    let mut head = call.clone();
    let body = head.body.take().unwrap_or_default();
    let mut bytes = head
        .header("transfer-encoding", "chunked")
        .wire(false)
        .to_vec();
    for chunk in body.chunks(size.max(1)) {
        bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        bytes.extend_from_slice(chunk);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    bytes
}

/// Sends `call` with `expect: 100-continue`, its body only after the interim answer: the
/// interim status (100, or `None` when the final answer came first) and the final answer.
pub fn expect_continue(call: &Call, port: u16) -> io::Result<(Option<u16>, Response)> {
    let mut head = call.clone();
    let body = head.body.take().unwrap_or_default();
    let mut wire = head.header("expect", "100-continue");
    wire = wire.header("content-length", &body.len().to_string());
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut writer = stream.try_clone()?;
    writer.write_all(&wire.wire(false))?;
    let mut reader = BufReader::new(stream);
    let lines = read_head(&mut reader)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"))?;
    let status: u16 = lines[0]
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 100 {
        let headers = parse_headers(&lines[1..]);
        let body = read_body(&mut reader, &headers)?;
        return Ok((
            None,
            Response {
                status,
                headers,
                body,
            },
        ));
    }
    writer.write_all(&body)?;
    let response = crate::http::read_response(&mut reader, false)?;
    Ok((Some(100), response))
}

/// A WebSocket key (RFC 6455's example nonce) and its accept value.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A WebSocket connection after a 101.
pub struct WebSocket {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// Sends the upgrade request `call` (the WebSocket headers added); the answer's head, and the
/// open socket when it was a 101. A refusal is read whole (its body too).
pub fn ws_connect(call: &Call, port: u16) -> io::Result<(Response, Option<WebSocket>)> {
    let upgrade = call
        .clone()
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", WS_KEY);
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut writer = stream.try_clone()?;
    writer.write_all(&upgrade.wire(true))?;
    let mut reader = BufReader::new(stream);
    let lines = read_head(&mut reader)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"))?;
    let status: u16 = lines[0]
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = parse_headers(&lines[1..]);
    if status == 101 {
        let response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        return Ok((response, Some(WebSocket { reader, writer })));
    }
    let body = read_body(&mut reader, &headers)?;
    Ok((
        Response {
            status,
            headers,
            body,
        },
        None,
    ))
}

/// Sends `call` as a WebSocket upgrade (`ws_connect`), as a `Response` for
/// `compare::observe_via`: a refusal as it came; a 101 with its headers and, as body, JSON
/// `{"echo": <what a text frame "hello" came back as>, "upstream": <the upstream's "whoami">}`
/// (the upstream's view of the upgrade request: path and headers, volatile ones left out).
pub fn websocket(call: &Call, port: u16) -> io::Result<Response> {
    let (mut response, socket) = ws_connect(call, port)?;
    let Some(mut socket) = socket else {
        return Ok(response);
    };
    socket.send_text("hello")?;
    let echo = socket.read_text()?;
    socket.send_text("whoami")?;
    let mut upstream: Value = serde_json::from_str(&socket.read_text()?).unwrap_or_default();
    if let Some(headers) = upstream["headers"].as_object_mut() {
        headers.retain(|name, _| !VOLATILE.contains(&name.as_str()));
    }
    response.body = serde_json::json!({"echo": echo, "upstream": upstream})
        .to_string()
        .into_bytes();
    Ok(response)
}

impl WebSocket {
    /// Sends one masked text frame (payloads under 126 bytes).
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        let payload = text.as_bytes();
        let len = u8::try_from(payload.len())
            .ok()
            .filter(|l| *l < 126)
            .ok_or_else(|| io::Error::other("frame too long for this client"))?;
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![0x81, 0x80 | len];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.writer.write_all(&frame)
    }

    /// Reads one unmasked frame from the server; its payload as text.
    pub fn read_text(&mut self) -> io::Result<String> {
        let mut head = [0u8; 2];
        self.reader.read_exact(&mut head)?;
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                self.reader.read_exact(&mut ext)?;
                usize::from(u16::from_be_bytes(ext))
            }
            127 => {
                let mut ext = [0u8; 8];
                self.reader.read_exact(&mut ext)?;
                usize::try_from(u64::from_be_bytes(ext)).unwrap_or(usize::MAX)
            }
            short => usize::from(short),
        };
        let mut payload = vec![0; len];
        self.reader.read_exact(&mut payload)?;
        Ok(String::from_utf8_lossy(&payload).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http10_and_chunked_requests_are_written_as_on_the_wire() {
        let call = Call::post("/x", b"hello").header("host", "h");
        let one_oh = String::from_utf8(http10(&call)).unwrap_or_default();
        assert!(one_oh.starts_with("POST /x HTTP/1.0\r\nhost: h\r\ncontent-length: 5\r\n"));
        assert!(!one_oh.contains("connection: close"));
        let chunks = String::from_utf8(chunked(&call, 2)).unwrap_or_default();
        assert!(chunks.contains("transfer-encoding: chunked\r\n"));
        assert!(!chunks.contains("content-length"));
        assert!(chunks.ends_with("\r\n\r\n2\r\nhe\r\n2\r\nll\r\n1\r\no\r\n0\r\n\r\n"));
    }

    #[test]
    fn an_exchange_keeps_the_status_line_and_every_byte_after_the_head() {
        let response = parse_exchange(b"HTTP/1.0 403 Forbidden\r\na: 1\r\n\r\nrest").unwrap();
        assert_eq!(response.status, 403);
        assert_eq!(response.get(":status-line"), Some("HTTP/1.0 403 Forbidden"));
        assert_eq!(response.text(), "rest");
    }
}
