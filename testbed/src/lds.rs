//! Envoy with its listeners from a file, as a control plane pushes them over LDS: the bootstrap's
//! `dynamic_resources.lds_config.path_config_source` watches a directory, and every new version
//! of the listener file is written beside it and renamed in (the atomic replacement Envoy's
//! docs ask for). Listeners are rendered from the same templates as `scenario::Bed`'s.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::envoy::Envoy;
use crate::http::Server;
use crate::scenario::{render_config, Listener, Ports};
use crate::services::{self, Recorder};

const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const WASM_FILTER: &str = "envoy.filters.http.wasm";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// An Envoy whose listeners come from LDS on the filesystem, and the echo upstream behind it.
pub struct LdsBed {
    pub envoy: Envoy,
    pub upstream: Recorder,
    ports: Ports,
    dir: PathBuf,
    _echo: Server,
}

impl LdsBed {
    /// Starts the echo upstream and one Envoy (one worker, `envoy_args` added to its command
    /// line) serving `listeners` from its listener file.
    pub fn start(listeners: &[Listener], envoy_args: &[&str]) -> Result<LdsBed, String> {
        let (echo, upstream) = services::start_echo().map_err(|e| format!("echo upstream: {e}"))?;
        let ports = Ports {
            upstream: echo.port(),
            ..Ports::unused()
        };
        let dir = std::env::temp_dir().join(format!(
            "inline-authz-lds-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let first = listener_file(listeners, ports.clone(), &|_| {})?;
        let mut bootstrap = yaml_to_json(&render_config(&[], ports.clone(), false)?)?;
        if let Some(resources) = bootstrap["static_resources"].as_object_mut() {
            resources.remove("listeners");
        }
        // LDS needs a node identity, even from a file.
        bootstrap["node"] = json!({"id": "inline-authz-test", "cluster": "inline-authz-test"});
        bootstrap["dynamic_resources"] = json!({"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {
                "path": dir.join("lds/listeners.json"),
                "watched_directory": {"path": dir.join("lds")}
            }
        }});
        fs::create_dir_all(dir.join("lds")).map_err(|e| e.to_string())?;
        let started = replace_listener_file(&dir, &first)
            .and_then(|()| Envoy::start_with_args(&bootstrap.to_string(), 1, envoy_args));
        match started {
            Ok(envoy) => Ok(LdsBed {
                envoy,
                upstream,
                ports,
                dir,
                _echo: echo,
            }),
            Err(error) => {
                let _ = fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }

    /// Replaces the listener file with one serving `listeners`.
    pub fn push(&self, listeners: &[Listener]) -> Result<(), String> {
        self.push_edited(listeners, &|_| {})
    }

    /// As `push`, each listener's JSON passed through `edit` first (see `wasm_plugin`).
    pub fn push_edited(
        &self,
        listeners: &[Listener],
        edit: &dyn Fn(&mut Value),
    ) -> Result<(), String> {
        replace_listener_file(
            &self.dir,
            &listener_file(listeners, self.ports.clone(), edit)?,
        )
    }

    /// The port the named listener is bound to now (`None`: no such listener).
    pub fn listener_port(&self, name: &str) -> Option<u16> {
        let text = self.envoy.admin("/listeners?format=json").ok()?;
        let json: Value = serde_json::from_str(&text).ok()?;
        json["listener_statuses"]
            .as_array()?
            .iter()
            .find(|status| status["name"] == name)
            .and_then(|status| status["local_address"]["socket_address"]["port_value"].as_u64())
            .and_then(|port| u16::try_from(port).ok())
    }

    /// Polls the stat `name` until `done` holds for its value (true) or `timeout` passes (false).
    pub fn wait_for_stat(&self, name: &str, done: impl Fn(u64) -> bool, timeout: Duration) -> bool {
        self.envoy.wait_for_stat(name, done, timeout)
    }
}

impl Drop for LdsBed {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes the new version beside the watched directory, then renames it in.
fn replace_listener_file(dir: &Path, file: &Value) -> Result<(), String> {
    let temp = dir.join("listeners.json.new");
    fs::write(&temp, file.to_string()).map_err(|e| e.to_string())?;
    fs::rename(&temp, dir.join("lds/listeners.json")).map_err(|e| e.to_string())
}

/// The wasm filter's `PluginConfig` (`vm_config`, `configuration`, `fail_open` …) in a listener
/// as `push_edited` hands it over.
pub fn wasm_plugin(listener: &mut Value) -> Option<&mut Value> {
    listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        .as_array_mut()?
        .iter_mut()
        .find(|filter| filter["name"] == WASM_FILTER)
        .map(|filter| &mut filter["typed_config"]["config"])
}

/// An LDS `DiscoveryResponse` with these listeners, as the static ones `render_config` makes.
fn listener_file(
    listeners: &[Listener],
    ports: Ports,
    edit: &dyn Fn(&mut Value),
) -> Result<Value, String> {
    let config = yaml_to_json(&render_config(listeners, ports, false)?)?;
    let mut resources = Vec::new();
    for listener in config["static_resources"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut listener = listener.clone();
        edit(&mut listener);
        if let Some(fields) = listener.as_object_mut() {
            fields.insert("@type".into(), LISTENER_TYPE.into());
        }
        resources.push(listener);
    }
    Ok(json!({ "resources": resources }))
}

fn yaml_to_json(yaml: &str) -> Result<Value, String> {
    serde_yaml::from_str(yaml).map_err(|e| format!("rendered config is not YAML: {e}"))
}
