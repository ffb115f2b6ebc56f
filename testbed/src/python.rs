//! Starts the test bed's Python helpers (the gRPC ext_authz server, the TLS front): the script
//! runs tied to the test process like Envoy, its stderr goes to a log file, and its first stdout
//! line (its ports) is waited for. A missing interpreter or Python package goes through the test
//! bed's prerequisite check (`envoy::unprepared`).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::thread;
use std::time::Duration;

use crate::envoy::{repo_root, spawn_tied_to_us, unprepared};

/// The exit code of a helper script when a Python module is missing.
const MISSING_MODULE: i32 = 3;

/// Runs `python3 -u <script> <args…>` (`PYTHON` overrides the interpreter) as `what`, and hands
/// its first stdout line to `parse`; the rest of its output is drained so it never blocks on a
/// full pipe. `pip` names the packages it needs, for the message when one is missing.
pub(crate) fn start<T>(
    what: &str,
    script: &str,
    args: &[String],
    log: &Path,
    pip: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<(Child, T), String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let stderr = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut command = Command::new(&python);
    command
        .arg("-u")
        .arg(repo_root().join(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = spawn_tied_to_us(command).map_err(|e| {
        unprepared(format!(
            "cannot start {python} for {what} ({e}): install Python 3, then pip install {pip}"
        ))
    })?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err(format!("{what} has no stdout"));
    };
    let (tx, rx) = channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        let read = reader.read_line(&mut first).map(|_| first);
        let _ = tx.send(read);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| format!("{what} printed no ports within 30 s"))
        .and_then(|read| read.map_err(|e| e.to_string()));
    if let Some(value) = line.as_deref().ok().and_then(&parse) {
        return Ok((child, value));
    }
    let _ = child.kill();
    let status = child.wait().ok().and_then(|s| s.code());
    let mut errors = String::new();
    let _ = fs::File::open(log).and_then(|mut f| f.read_to_string(&mut errors));
    if status == Some(MISSING_MODULE) {
        return Err(unprepared(format!(
            "Python packages of {what} missing ({python}): pip install {pip}"
        )));
    }
    Err(format!(
        "{what} did not start (first line {line:?}, exit {status:?}):\n{errors}"
    ))
}
