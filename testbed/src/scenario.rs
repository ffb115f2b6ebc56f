//! Builds one Envoy with many listeners from the templates in `envoy/`: each listener is one
//! scenario (the filter with a plugin configuration, or native ext_authz for comparison), so a
//! test binary starts Envoy once and every test talks to its own listener.

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;

use crate::envoy::{render, repo_root, wasm_path, Envoy};
use crate::http::Server;
use crate::services::{self, JwksServer, Recorder};

/// A listener to add to the generated Envoy config.
pub enum Listener {
    /// The filter with this plugin configuration (JSON); `hold_headers` sets Envoy's
    /// `allow_on_headers_stop_iteration` (needed to read a body while the headers wait).
    Wasm {
        name: String,
        config: String,
        hold_headers: bool,
    },
    /// Native `ext_authz` with this typed_config (JSON), enabled on one path / prefix only.
    Native {
        name: String,
        ext_authz: String,
        protected_path: String,
        protected_prefix: String,
    },
    /// Native RBAC with this typed_config (JSON), behind Envoy's `normalize_path`.
    NativeRbac { name: String, rbac: String },
    /// Native jwt_authn with this typed_config (JSON).
    NativeJwt { name: String, jwt_authn: String },
}

impl Listener {
    pub fn wasm(name: &str, config: &str) -> Listener {
        Listener::Wasm {
            name: name.into(),
            config: config.into(),
            hold_headers: true,
        }
    }

    /// As `wasm`, in an Envoy wasm filter without `allow_on_headers_stop_iteration` (Istio today).
    pub fn wasm_without_header_hold(name: &str, config: &str) -> Listener {
        Listener::Wasm {
            name: name.into(),
            config: config.into(),
            hold_headers: false,
        }
    }

    /// A plugin configuration kept under `envoy/scenarios/<file>`.
    pub fn wasm_file(name: &str, file: &str) -> Listener {
        let path = repo_root().join("envoy/scenarios").join(file);
        let config =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Listener::wasm(name, &config)
    }

    pub fn native(name: &str, ext_authz: &str, protected_path: &str) -> Listener {
        Listener::Native {
            name: name.into(),
            ext_authz: ext_authz.into(),
            protected_path: protected_path.into(),
            // A prefix no request uses: only the exact path is protected.
            protected_prefix: "/__never__".into(),
        }
    }

    pub fn native_jwt(name: &str, jwt_authn: &str) -> Listener {
        Listener::NativeJwt {
            name: name.into(),
            jwt_authn: jwt_authn.into(),
        }
    }

    pub fn native_rbac(name: &str, rbac: &str) -> Listener {
        Listener::NativeRbac {
            name: name.into(),
            rbac: rbac.into(),
        }
    }

    pub fn native_everywhere(name: &str, ext_authz: &str) -> Listener {
        Listener::Native {
            name: name.into(),
            ext_authz: ext_authz.into(),
            protected_path: "/__never__".into(),
            protected_prefix: "/".into(),
        }
    }
}

/// The services and the Envoy of one test binary.
pub struct Bed {
    pub envoy: Envoy,
    pub authz: Recorder,
    pub upstream: Recorder,
    pub jwks: JwksServer,
    _servers: (Server, Server, Server),
}

/// One-line JSON, as YAML single-quoted text.
fn yaml_quote(json: &str) -> String {
    let compact: String = match serde_json::from_str::<serde_json::Value>(json) {
        Ok(value) => value.to_string(),
        Err(_) => json.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    compact.replace('\'', "''")
}

fn template(name: &str) -> String {
    let path = repo_root().join("envoy").join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A loopback port nothing listens on.
pub fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9)
}

/// The loopback ports of the services around Envoy.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub authz: u16,
    pub upstream: u16,
    pub jwks: u16,
}

impl Ports {
    /// Ports nothing listens on (for configs that are only validated).
    pub fn unused() -> Ports {
        Ports {
            authz: 9,
            upstream: 9,
            jwks: 9,
        }
    }
}

/// Renders the whole Envoy config for these listeners and ports.
pub fn render_config(
    listeners: &[Listener],
    ports: Ports,
    envoy_normalize: bool,
) -> Result<String, String> {
    let wasm = wasm_path()?;
    let mut rendered = String::new();
    for listener in listeners {
        let mut vars: HashMap<&str, String> = HashMap::new();
        vars.insert("ENVOY_NORMALIZE_PATH", envoy_normalize.to_string());
        let text = match listener {
            Listener::Wasm {
                name,
                config,
                hold_headers,
            } => {
                vars.insert("NAME", name.clone());
                vars.insert("HOLD_HEADERS", hold_headers.to_string());
                vars.insert("PLUGIN_CONFIG", yaml_quote(config));
                vars.insert("WASM", wasm.display().to_string());
                render(&template("listener-wasm.yaml"), &vars)?
            }
            Listener::Native {
                name,
                ext_authz,
                protected_path,
                protected_prefix,
            } => {
                vars.insert("NAME", name.clone());
                vars.insert(
                    "EXT_AUTHZ",
                    ext_authz.split_whitespace().collect::<Vec<_>>().join(" "),
                );
                vars.insert("PROTECTED_PATH", protected_path.clone());
                vars.insert("PROTECTED_PREFIX", protected_prefix.clone());
                render(&template("listener-native.yaml"), &vars)?
            }
            Listener::NativeJwt { name, jwt_authn } => {
                vars.insert("NAME", name.clone());
                vars.insert(
                    "JWT_AUTHN",
                    jwt_authn.split_whitespace().collect::<Vec<_>>().join(" "),
                );
                render(&template("listener-native-jwt.yaml"), &vars)?
            }
            Listener::NativeRbac { name, rbac } => {
                vars.insert("NAME", name.clone());
                vars.insert(
                    "RBAC",
                    rbac.split_whitespace().collect::<Vec<_>>().join(" "),
                );
                render(&template("listener-native-rbac.yaml"), &vars)?
            }
        };
        rendered.push_str(&text);
    }
    let mut vars: HashMap<&str, String> = HashMap::new();
    vars.insert("LISTENERS", rendered.trim_end().to_string());
    vars.insert("AUTHZ_PORT", ports.authz.to_string());
    vars.insert("UPSTREAM_PORT", ports.upstream.to_string());
    vars.insert("JWKS_PORT", ports.jwks.to_string());
    vars.insert("DEAD_PORT", dead_port().to_string());
    render(&template("base.yaml"), &vars)
}

impl Bed {
    /// Starts the sample services and one Envoy with these listeners.
    pub fn start(listeners: &[Listener]) -> Bed {
        Bed::start_with(listeners, false)
    }

    /// As `start`, with Envoy's own `normalize_path` on or off.
    pub fn start_with(listeners: &[Listener], envoy_normalize: bool) -> Bed {
        Bed::start_prepared(listeners, envoy_normalize, |_| {})
    }

    /// As `start`, with the JWKS server set up by `prepare` before Envoy starts (remote keys
    /// are fetched when the filter is configured).
    pub fn start_prepared(
        listeners: &[Listener],
        envoy_normalize: bool,
        prepare: impl FnOnce(&JwksServer),
    ) -> Bed {
        Bed::start_on_workers(listeners, envoy_normalize, 1, prepare)
    }

    /// As `start_with`, with the rendered Envoy config passed through `edit` first (a setting
    /// the templates do not expose, e.g. `use_remote_address`).
    pub fn start_edited(
        listeners: &[Listener],
        envoy_normalize: bool,
        edit: impl FnOnce(String) -> String,
    ) -> Bed {
        Bed::start_full(listeners, envoy_normalize, 1, |_| {}, edit)
    }

    /// As `start_prepared`, with `workers` Envoy worker threads.
    pub fn start_on_workers(
        listeners: &[Listener],
        envoy_normalize: bool,
        workers: u32,
        prepare: impl FnOnce(&JwksServer),
    ) -> Bed {
        Bed::start_full(listeners, envoy_normalize, workers, prepare, |config| {
            config
        })
    }

    fn start_full(
        listeners: &[Listener],
        envoy_normalize: bool,
        workers: u32,
        prepare: impl FnOnce(&JwksServer),
        edit: impl FnOnce(String) -> String,
    ) -> Bed {
        let (authz_server, authz) =
            services::start_ext_authz().unwrap_or_else(|e| panic!("authz service: {e}"));
        let (echo_server, upstream) =
            services::start_echo().unwrap_or_else(|e| panic!("echo upstream: {e}"));
        let (jwks_server, jwks) =
            services::start_jwks().unwrap_or_else(|e| panic!("jwks server: {e}"));
        prepare(&jwks);
        let ports = Ports {
            authz: authz_server.port(),
            upstream: echo_server.port(),
            jwks: jwks_server.port(),
        };
        let config = edit(
            render_config(listeners, ports, envoy_normalize).unwrap_or_else(|e| panic!("{e}")),
        );
        let envoy = Envoy::start_with_workers(&config, workers).unwrap_or_else(|e| panic!("{e}"));
        Bed {
            envoy,
            authz,
            upstream,
            jwks,
            _servers: (authz_server, echo_server, jwks_server),
        }
    }

    pub fn port(&self, listener: &str) -> u16 {
        self.envoy.port(listener)
    }
}

/// A marker unique to one request, to find it in the services' records. Always the same length,
/// so that bodies echoing it compare equal in length across listeners.
pub fn marker(_tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "mark={:08}{:08}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
