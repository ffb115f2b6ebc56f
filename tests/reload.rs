//! Changing the plugin configuration at runtime: Envoy gets its listener over LDS from a file
//! (replaced atomically) while two clients keep sending, one on a kept-alive connection and one
//! on a new connection per request. A new policy takes over with no request lost; a configuration
//! the filter refuses is rejected by Envoy and the running one keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use testbed::http::Call;
use testbed::lds::{wasm_plugin, LdsBed};
use testbed::scenario::Listener;
use testbed::traffic::{Client, Connection, Outcome, Traffic};

/// Old filter chains drain for 1 s, and every old connection is closed at its next answer
/// (Envoy's default is a gradual drain over 600 s).
const DRAIN: [&str; 4] = ["--drain-time-s", "1", "--drain-strategy", "immediate"];

const DENY_A: &str = r#"{"policies": [{"name": "deny-a", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/a"]}}]}]}]}"#;
const DENY_B: &str = r#"{"policies": [{"name": "deny-b", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/b"]}}]}]}]}"#;
/// Refused by the filter's `on_configure`: an unknown action.
const REFUSED: &str = r#"{"policies": [{"name": "deny-c", "action": "ALOW", "rules": [{"to": [{"operation": {"paths": ["/c"]}}]}]}]}"#;
const REFUSED_LINE: &str = r#"invalid configuration: policies[0].action: unknown action "ALOW""#;

const PATHS: [&str; 2] = ["/a", "/b"];
const PAUSE: Duration = Duration::from_millis(1);
const WAIT: Duration = Duration::from_secs(10);

const UPDATE_SUCCESS: &str = "listener_manager.lds.update_success";
const UPDATE_REJECTED: &str = "listener_manager.lds.update_rejected";
const IN_PLACE_UPDATED: &str = "listener_manager.listener_in_place_updated";
const CHAINS_DRAINING: &str = "listener_manager.total_filter_chains_draining";

/// One Envoy and one pair of clients at a time: the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start(listeners: &[Listener]) -> LdsBed {
    LdsBed::start(listeners, &DRAIN).unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    A,
    B,
}

/// The policy that answered: A denies only `/a`, B denies only `/b`.
fn policy(outcome: &Outcome) -> Option<Policy> {
    match (outcome.path.as_str(), &outcome.result) {
        ("/a", Ok(403)) | ("/b", Ok(200)) => Some(Policy::A),
        ("/a", Ok(200)) | ("/b", Ok(403)) => Some(Policy::B),
        _ => None,
    }
}

/// Every request got an answer from policy A or B.
fn assert_answered_by_a_or_b(bed: &LdsBed, outcomes: &[Outcome]) {
    let odd: Vec<&Outcome> = outcomes.iter().filter(|o| policy(o).is_none()).collect();
    assert!(
        odd.is_empty(),
        "{} of {} requests got no answer or one from neither policy, first: {:?}\n--- envoy log tail ---\n{}",
        odd.len(),
        outcomes.len(),
        &odd[..odd.len().min(5)],
        bed.envoy.log_tail(30)
    );
}

fn count(outcomes: &[Outcome], client: Client, policy_seen: Policy) -> usize {
    outcomes
        .iter()
        .filter(|o| o.client == client && policy(o) == Some(policy_seen))
        .count()
}

fn status(port: u16, path: &str) -> u16 {
    Call::get(path).send(port).map(|r| r.status).unwrap_or(0)
}

/// Polls until `path` on `port` answers `want` (a new connection each time) or `WAIT` passes.
fn wait_for_status(port: u16, path: &str, want: u16) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if status(port, path) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_new_plugin_configuration_for_the_same_vm_takes_over_under_traffic_and_no_request_is_lost() {
    let _serial = serial();
    let bed = start(&[Listener::wasm("reload", DENY_A)]);
    let port = bed.listener_port("reload").unwrap();
    let traffic = Traffic::start(port, &PATHS, PAUSE);
    assert!(traffic.wait_for_answers(500, WAIT), "no traffic");
    let successes = bed.envoy.stat(UPDATE_SUCCESS);
    let in_place = bed.envoy.stat(IN_PLACE_UPDATED);
    let vms = bed.envoy.stat("wasm.envoy.wasm.runtime.v8.active");

    // Only the wasm `configuration` changes: same vm_config, same plugin name and root_id.
    let pushed = Instant::now();
    bed.push(&[Listener::wasm("reload", DENY_B)]).unwrap();
    assert!(
        bed.wait_for_stat(UPDATE_SUCCESS, |n| n > successes, WAIT),
        "update not applied\n{}",
        bed.envoy.log_tail(30)
    );
    let applied = pushed.elapsed();
    assert!(bed.wait_for_stat(CHAINS_DRAINING, |n| n == 1, WAIT));
    assert!(bed.wait_for_stat(CHAINS_DRAINING, |n| n == 0, WAIT));
    let drained = Instant::now();
    assert!(traffic.wait_for_answers(1000, WAIT), "traffic stalled");
    let outcomes = traffic.stop();

    assert_answered_by_a_or_b(&bed, &outcomes);
    for outcome in &outcomes {
        if outcome.sent < pushed {
            assert_eq!(
                policy(outcome),
                Some(Policy::A),
                "before the push: {outcome:?}"
            );
        }
        if outcome.sent > drained {
            assert_eq!(
                policy(outcome),
                Some(Policy::B),
                "after the drain: {outcome:?}"
            );
        }
    }
    for client in [Client::KeepAlive, Client::NewConnections] {
        let seen: Vec<Policy> = outcomes
            .iter()
            .filter(|o| o.client == client)
            .filter_map(policy)
            .collect();
        let first_b = seen.iter().position(|p| *p == Policy::B).unwrap();
        assert!(
            seen[first_b..].iter().all(|p| *p == Policy::B),
            "{client:?} saw policy A again after policy B"
        );
    }
    // The kept-alive connection's last answer from policy A closed it (the drain); its next
    // connection got policy B.
    let last_a = outcomes
        .iter()
        .rfind(|o| o.client == Client::KeepAlive && policy(o) == Some(Policy::A))
        .unwrap();
    assert!(
        last_a.sent > pushed && last_a.closed_by_server,
        "{last_a:?}"
    );

    assert_eq!(bed.listener_port("reload"), Some(port), "same socket");
    assert_eq!(bed.envoy.stat(IN_PLACE_UPDATED), in_place + 1);
    assert_eq!(bed.envoy.stat("wasm.envoy.wasm.runtime.v8.active"), vms);
    assert!(bed.envoy.stat("http.reload.downstream_cx_drain_close") >= 1);
    println!(
        "{} requests, all answered: keep-alive A {} / B {}, new connections A {} / B {}; \
         update applied {} ms after the push, old chain drained {} ms after it",
        outcomes.len(),
        count(&outcomes, Client::KeepAlive, Policy::A),
        count(&outcomes, Client::KeepAlive, Policy::B),
        count(&outcomes, Client::NewConnections, Policy::A),
        count(&outcomes, Client::NewConnections, Policy::B),
        applied.as_millis(),
        (drained - pushed).as_millis(),
    );
}

#[test]
fn a_configuration_the_filter_refuses_is_rejected_and_the_running_one_keeps_serving() {
    let _serial = serial();
    let bed = start(&[Listener::wasm("reload", DENY_B)]);
    let port = bed.listener_port("reload").unwrap();
    let traffic = Traffic::start(port, &PATHS, PAUSE);
    assert!(traffic.wait_for_answers(300, WAIT), "no traffic");
    let successes = bed.envoy.stat(UPDATE_SUCCESS);
    let rejections = bed.envoy.stat(UPDATE_REJECTED);
    let in_place = bed.envoy.stat(IN_PLACE_UPDATED);

    bed.push(&[Listener::wasm("reload", REFUSED)]).unwrap();
    assert!(
        bed.wait_for_stat(UPDATE_REJECTED, |n| n > rejections, WAIT),
        "update not rejected\n{}",
        bed.envoy.log_tail(30)
    );
    assert!(traffic.wait_for_answers(1000, WAIT), "traffic stalled");
    let outcomes = traffic.stop();

    assert_answered_by_a_or_b(&bed, &outcomes);
    assert!(
        outcomes.iter().all(|o| policy(o) == Some(Policy::B)),
        "policy B must keep serving"
    );
    assert!(
        outcomes.iter().all(|o| !o.closed_by_server),
        "no connection is drained"
    );
    assert_eq!(bed.envoy.stat(UPDATE_SUCCESS), successes);
    assert_eq!(bed.envoy.stat(IN_PLACE_UPDATED), in_place);
    assert_eq!(bed.envoy.stat(CHAINS_DRAINING), 0);
    for line in [
        REFUSED_LINE,
        "Wasm VM failed Failed to configure base Wasm plugin",
        "Plugin reload failed to load",
        "lds: listener 'reload' config rejected: Unable to create Wasm plugin reload",
    ] {
        assert!(
            bed.envoy.wait_for_log(line),
            "{line}\n{}",
            bed.envoy.log_tail(30)
        );
    }
    println!(
        "{} requests during the rejected update, all answered by policy B",
        outcomes.len()
    );

    // The next good version is taken as usual.
    bed.push(&[Listener::wasm("reload", DENY_A)]).unwrap();
    assert!(bed.wait_for_stat(UPDATE_SUCCESS, |n| n > successes, WAIT));
    assert!(wait_for_status(port, "/a", 403), "policy A never took over");
    assert_eq!(status(port, "/b"), 200);
}

/// A change to a listener as pushed.
type Edit = fn(&mut Value);

fn fail_open(listener: &mut Value) {
    if let Some(plugin) = wasm_plugin(listener) {
        plugin["fail_open"] = true.into();
    }
}

fn failure_policy_fail_open(listener: &mut Value) {
    if let Some(plugin) = wasm_plugin(listener).and_then(Value::as_object_mut) {
        plugin.remove("fail_open");
        plugin.insert("failure_policy".into(), "FAIL_OPEN".into());
    }
}

#[test]
fn a_refused_configuration_is_rejected_even_by_a_fail_open_plugin() {
    let _serial = serial();
    let bed = start(&[Listener::wasm("reload", DENY_B)]);
    let port = bed.listener_port("reload").unwrap();
    let edits: [(&str, Edit); 2] = [
        ("fail_open: true", fail_open),
        ("failure_policy: FAIL_OPEN", failure_policy_fail_open),
    ];
    let mut serving = (DENY_B, "/b", "/a");
    for (name, edit) in edits {
        let (_, denied, allowed) = serving;
        let rejections = bed.envoy.stat(UPDATE_REJECTED);
        bed.push_edited(&[Listener::wasm("reload", REFUSED)], &edit)
            .unwrap();
        assert!(
            bed.wait_for_stat(UPDATE_REJECTED, |n| n > rejections, WAIT),
            "{name}: update not rejected\n{}",
            bed.envoy.log_tail(30)
        );
        assert_eq!(
            status(port, denied),
            403,
            "{name}: the old policy keeps serving"
        );
        assert_eq!(status(port, allowed), 200, "{name}");

        // The same edit with a good configuration is accepted: the field itself is fine.
        let next = if serving.0 == DENY_B {
            (DENY_A, "/a", "/b")
        } else {
            (DENY_B, "/b", "/a")
        };
        let successes = bed.envoy.stat(UPDATE_SUCCESS);
        bed.push_edited(&[Listener::wasm("reload", next.0)], &edit)
            .unwrap();
        assert!(
            bed.wait_for_stat(UPDATE_SUCCESS, |n| n > successes, WAIT),
            "{name}: a good configuration was not taken\n{}",
            bed.envoy.log_tail(30)
        );
        assert!(wait_for_status(port, next.1, 403), "{name}");
        assert_eq!(status(port, next.2), 200, "{name}");
        serving = next;
    }
}

#[test]
fn a_refused_listener_does_not_hold_back_the_good_ones_in_the_same_update() {
    let _serial = serial();
    let bed = start(&[
        Listener::wasm("first", DENY_A),
        Listener::wasm("second", DENY_A),
    ]);
    let first = bed.listener_port("first").unwrap();
    let second = bed.listener_port("second").unwrap();
    let rejections = bed.envoy.stat(UPDATE_REJECTED);
    let successes = bed.envoy.stat(UPDATE_SUCCESS);

    bed.push(&[
        Listener::wasm("first", DENY_B),
        Listener::wasm("second", REFUSED),
    ])
    .unwrap();
    assert!(bed.wait_for_stat(UPDATE_REJECTED, |n| n > rejections, WAIT));
    assert!(
        wait_for_status(first, "/b", 403),
        "the good listener was held back"
    );
    assert_eq!(status(first, "/a"), 200);
    assert_eq!(
        status(second, "/a"),
        403,
        "the refused one keeps its old version"
    );
    assert_eq!(status(second, "/b"), 200);
    assert_eq!(
        bed.envoy.stat(UPDATE_SUCCESS),
        successes,
        "the update as a whole counts as rejected"
    );
}

#[test]
fn with_envoy_default_drain_a_kept_alive_connection_keeps_the_old_policy_for_a_while() {
    let _serial = serial();
    // No drain options: `--drain-strategy gradual`, `--drain-time-s 600`.
    let bed =
        LdsBed::start(&[Listener::wasm("reload", DENY_A)], &[]).unwrap_or_else(|e| panic!("{e}"));
    let port = bed.listener_port("reload").unwrap();
    let mut kept = Connection::new(port);
    assert_eq!(policy(&kept.get("/a")), Some(Policy::A));
    let successes = bed.envoy.stat(UPDATE_SUCCESS);

    bed.push(&[Listener::wasm("reload", DENY_B)]).unwrap();
    assert!(bed.wait_for_stat(UPDATE_SUCCESS, |n| n > successes, WAIT));
    assert!(bed.wait_for_stat(CHAINS_DRAINING, |n| n == 1, WAIT));
    assert!(
        wait_for_status(port, "/b", 403),
        "new connections get policy B"
    );
    // Each answer on an old connection closes it with a chance of (time draining / 600 s): it
    // stays on policy A until then.
    for path in PATHS.iter().cycle().take(20) {
        let outcome = kept.get(path);
        assert_eq!(policy(&outcome), Some(Policy::A), "{outcome:?}");
        if outcome.closed_by_server {
            break;
        }
    }
}
