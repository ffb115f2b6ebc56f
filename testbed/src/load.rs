//! A bounded load on loopback: a fixed number of keep-alive connections for a fixed time, every
//! answer counted by status and every request without an answer counted by what went wrong. The
//! fault and soak tests use it to prove that nothing is lost and nothing unexpected comes back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::traffic::Connection;

/// Builds the wire bytes of request number `n` (keep-alive: no `connection: close`).
pub type MakeRequest = dyn Fn(u64) -> Vec<u8> + Send + Sync;

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer, by what went wrong (`connect: …`, `write: …`, `read: …`).
    pub unanswered: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

impl Tally {
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }

    pub fn lost(&self) -> u64 {
        self.unanswered.values().sum()
    }

    /// Answers whose status is not in `expected`.
    pub fn unexpected(&self, expected: &[u16]) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| !expected.contains(status))
            .map(|(_, n)| n)
            .sum()
    }

    /// One line: requests per second, answers by status, requests without an answer.
    pub fn summary(&self) -> String {
        let seconds = self.elapsed.as_secs_f64().max(0.001);
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        let lost: Vec<String> = self
            .unanswered
            .iter()
            .map(|(why, n)| format!("{why}×{n}"))
            .collect();
        format!(
            "{} answers in {:.1} s ({:.0}/s): {}; without an answer: {}",
            self.answered(),
            seconds,
            self.answered() as f64 / seconds,
            statuses.join(" "),
            if lost.is_empty() {
                "0".to_string()
            } else {
                lost.join(" ")
            }
        )
    }

    fn add(&mut self, other: &Tally) {
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for (why, n) in &other.unanswered {
            *self.unanswered.entry(why.clone()).or_default() += n;
        }
    }
}

/// Sends requests on `connections` keep-alive connections to 127.0.0.1:`port` for `duration`,
/// each connection one request at a time; a connection that fails is replaced. An answer must
/// arrive within `answer_timeout`, else the request counts as unanswered.
pub fn run(
    port: u16,
    connections: usize,
    duration: Duration,
    answer_timeout: Duration,
    make: Arc<MakeRequest>,
) -> Tally {
    let total = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..connections)
        .map(|index| {
            let make = Arc::clone(&make);
            let total = Arc::clone(&total);
            thread::spawn(move || {
                let mine = one_connection(
                    port,
                    index as u64,
                    connections as u64,
                    deadline,
                    answer_timeout,
                    &*make,
                );
                if let Ok(mut total) = total.lock() {
                    total.add(&mine);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    let mut tally = total.lock().map(|t| t.clone()).unwrap_or_default();
    tally.elapsed = started.elapsed();
    tally
}

fn one_connection(
    port: u16,
    first: u64,
    step: u64,
    deadline: Instant,
    answer_timeout: Duration,
    make: &MakeRequest,
) -> Tally {
    let mut tally = Tally::default();
    let mut connection = Connection::with_timeout(port, answer_timeout);
    let mut n = first;
    while Instant::now() < deadline {
        match connection.exchange(&make(n)).0 {
            Ok(status) => *tally.statuses.entry(status).or_default() += 1,
            Err(why) => {
                if why.starts_with("connect") {
                    // Nothing listening: do not spin.
                    thread::sleep(Duration::from_millis(10));
                }
                *tally.unanswered.entry(why).or_default() += 1;
            }
        }
        n += step;
    }
    tally
}
