//! Clients that keep sending while a test changes Envoy under them, and every request's outcome
//! in the order it was sent, so a test can say what was answered before, during and after the
//! change. One client keeps its connection open; the other opens a connection per request.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::http::{read_response, Call};

/// How a client holds its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// One connection for request after request, replaced only when the server closes it.
    KeepAlive,
    /// A new connection for every request (`connection: close`).
    NewConnections,
}

/// One request as its client saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub client: Client,
    /// When the request was written.
    pub sent: Instant,
    pub path: String,
    /// The answer's status, or what went wrong (`connect: …`, `write: …`, `read: …`).
    pub result: Result<u16, String>,
    /// The answer carried `connection: close`: the server closed a kept-alive connection.
    pub closed_by_server: bool,
}

/// Running clients; `stop` ends them and hands back what they saw.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    clients: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Traffic {
    /// Starts a keep-alive client and a new-connection client against 127.0.0.1:`port`, each
    /// cycling through `paths` with `pause` between requests (the clients stay light on CPU).
    pub fn start(port: u16, paths: &[&str], pause: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let paths: Arc<Vec<String>> = Arc::new(paths.iter().map(|p| p.to_string()).collect());
        let clients = [Client::KeepAlive, Client::NewConnections]
            .into_iter()
            .map(|client| {
                let stop = Arc::clone(&stop);
                let answered = Arc::clone(&answered);
                let paths = Arc::clone(&paths);
                thread::spawn(move || {
                    let mut outcomes = Vec::new();
                    let mut connection = Connection::new(port);
                    for path in paths.iter().cycle() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let outcome = match client {
                            Client::KeepAlive => connection.get(path),
                            Client::NewConnections => on_new_connection(port, path),
                        };
                        if outcome.result.is_ok() {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        outcomes.push(outcome);
                        thread::sleep(pause);
                    }
                    outcomes
                })
            })
            .collect();
        Traffic {
            stop,
            answered,
            clients,
        }
    }

    /// Requests answered so far, by all clients.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    /// Waits until `more` requests beyond those answered now got an answer, or `timeout`.
    pub fn wait_for_answers(&self, more: u64, timeout: Duration) -> bool {
        let target = self.answered() + more;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.answered() >= target {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Stops the clients; each request's outcome, every client's in the order it sent them.
    pub fn stop(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        std::mem::take(&mut self.clients)
            .into_iter()
            .flat_map(|client| client.join().unwrap_or_default())
            .collect()
    }
}

/// A test that fails before `stop` does not leave its clients running.
impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A kept-alive connection to 127.0.0.1:`port`, reopened when the server closes it or fails.
pub struct Connection {
    port: u16,
    answer_timeout: Duration,
    reader: Option<BufReader<TcpStream>>,
}

impl Connection {
    pub fn new(port: u16) -> Connection {
        Connection::with_timeout(port, Duration::from_secs(10))
    }

    /// As `new`, an answer due within `answer_timeout`.
    pub fn with_timeout(port: u16, answer_timeout: Duration) -> Connection {
        Connection {
            port,
            answer_timeout,
            reader: None,
        }
    }

    /// GET `path` on the open connection (opening one first if there is none).
    pub fn get(&mut self, path: &str) -> Outcome {
        let sent = Instant::now();
        let (result, closed_by_server) = self.exchange(&Call::get(path).wire(true));
        Outcome {
            client: Client::KeepAlive,
            sent,
            path: path.to_string(),
            result,
            closed_by_server,
        }
    }

    /// Writes one keep-alive request (its wire bytes) and reads the answer: its status, or what
    /// went wrong (`connect: …`, `write: …`, `read: …`), and whether the server closed the
    /// connection with it. A connection that failed or was closed is replaced on the next call.
    pub fn exchange(&mut self, request: &[u8]) -> (Result<u16, String>, bool) {
        if self.reader.is_none() {
            match connect(self.port, self.answer_timeout) {
                Ok(stream) => self.reader = Some(BufReader::new(stream)),
                Err(e) => return (Err(format!("connect: {e}")), false),
            }
        }
        let Some(reader) = self.reader.as_mut() else {
            return (Err("no connection".into()), false);
        };
        if let Err(e) = reader.get_mut().write_all(request) {
            self.reader = None;
            return (Err(format!("write: {e}")), false);
        }
        match read_response(reader, false) {
            Ok(response) => {
                let closed = response
                    .get("connection")
                    .is_some_and(|c| c.eq_ignore_ascii_case("close"));
                if closed {
                    self.reader = None;
                }
                (Ok(response.status), closed)
            }
            Err(e) => {
                self.reader = None;
                (Err(format!("read: {e}")), false)
            }
        }
    }
}

fn on_new_connection(port: u16, path: &str) -> Outcome {
    let sent = Instant::now();
    let result = connect(port, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))
        .and_then(|mut stream| {
            stream
                .write_all(&Call::get(path).to_bytes())
                .map_err(|e| format!("write: {e}"))?;
            read_response(&mut BufReader::new(stream), false).map_err(|e| format!("read: {e}"))
        });
    Outcome {
        client: Client::NewConnections,
        sent,
        path: path.to_string(),
        result: result.map(|r| r.status),
        closed_by_server: false,
    }
}

fn connect(port: u16, answer_timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(answer_timeout))?;
    Ok(stream)
}
