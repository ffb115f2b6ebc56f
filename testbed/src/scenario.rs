//! Builds one Envoy with many listeners from the templates in `envoy/`: each listener is one
//! scenario (the filter with a plugin configuration, or native ext_authz for comparison), so a
//! test binary starts Envoy once and every test talks to its own listener.

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;

use serde_json::json;

use crate::envoy::{render, repo_root, wasm_path, Envoy};
use crate::grpc::GrpcAuthz;
use crate::http::Server;
use crate::services::{self, JwksServer, Recorder};
use crate::tls::{TlsFront, DOWN_HOST, TLS_HOSTS};

/// A listener to add to the generated Envoy config.
pub enum Listener {
    /// The filter with this plugin configuration (JSON); `hold_headers` sets Envoy's
    /// `allow_on_headers_stop_iteration` (needed to read a body while the headers wait).
    Wasm {
        name: String,
        config: String,
        hold_headers: bool,
        /// Writes Envoy's file access log [`ACCESS_LOG_FORMAT`] to [`access_log_path`]`(name)`.
        access_log: bool,
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
            access_log: false,
        }
    }

    /// This listener with Envoy's file access log ([`ACCESS_LOG_FORMAT`]) written to
    /// [`access_log_path`]`(name)`; read it with [`Bed::access_log`]. Only the filter's
    /// listeners have one.
    pub fn with_access_log(mut self) -> Listener {
        if let Listener::Wasm { access_log, .. } = &mut self {
            *access_log = true;
        }
        self
    }

    /// As `wasm`, in an Envoy wasm filter without `allow_on_headers_stop_iteration` (Istio today).
    pub fn wasm_without_header_hold(name: &str, config: &str) -> Listener {
        Listener::Wasm {
            name: name.into(),
            config: config.into(),
            hold_headers: false,
            access_log: false,
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

    /// Whether this listener calls a gRPC authorization service: native ext_authz with a
    /// `grpc_service`, or a plugin configuration with an `envoyExtAuthzGrpc` provider or naming
    /// one of the gRPC clusters. A `Bed` starts the gRPC server only then.
    pub fn uses_grpc(&self) -> bool {
        let text = match self {
            Listener::Wasm { config, .. } => config,
            Listener::Native { ext_authz, .. } => ext_authz,
            Listener::NativeRbac { .. } | Listener::NativeJwt { .. } => return false,
        };
        GRPC_MARKERS.iter().any(|m| text.contains(m))
    }

    /// Whether this listener names one of the https `.example` hosts of the TLS front
    /// ([`TLS_HOSTS`]: an OIDC issuer, an https `jwks_uri`, a native `remote_jwks`). A `Bed`
    /// starts the TLS front only then.
    pub fn uses_tls(&self) -> bool {
        let text = match self {
            Listener::Wasm { config, .. } => config,
            Listener::Native { ext_authz, .. } => ext_authz,
            Listener::NativeJwt { jwt_authn, .. } => jwt_authn,
            Listener::NativeRbac { .. } => return false,
        };
        TLS_HOSTS.iter().any(|host| text.contains(host))
    }
}

/// The access-log line of a listener `with_access_log`: the response code and the filter's
/// audit record (docs/operating.md, "The audit record").
pub const ACCESS_LOG_FORMAT: &str =
    "%RESPONSE_CODE% %FILTER_STATE(wasm.inline_authz.decision:PLAIN)%\n";

/// Where the access log of listener `name` goes (one file per test process and listener).
pub fn access_log_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "inline-authz-access-{}-{name}.log",
        std::process::id()
    ))
}

/// The HTTP connection manager's `access_log` list (JSON, which YAML reads as a flow value).
fn access_log_config(name: &str, on: bool) -> String {
    if !on {
        return "[]".into();
    }
    // A file left by an earlier Envoy of this process would hold its lines.
    let _ = fs::remove_file(access_log_path(name));
    json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": access_log_path(name).display().to_string(),
            "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}},
        },
    }])
    .to_string()
}

/// Text that marks a listener configuration as calling the gRPC authorization service.
const GRPC_MARKERS: [&str; 5] = [
    "grpc_service",
    "envoyExtAuthzGrpc",
    GRPC_CLUSTER,
    "authz-grpc",
    "dead-grpc",
];

/// The cluster Istio makes for the sample's gRPC port (`envoyExtAuthzGrpc` with service
/// `ext-authz.default.svc.cluster.local`, port 9000): `outbound|<port>||<host>`.
pub const GRPC_CLUSTER: &str = "outbound|9000||ext-authz.default.svc.cluster.local";
/// The authority istiod sets beside it: the provider's service host.
pub const GRPC_AUTHORITY: &str = "ext-authz.default.svc.cluster.local";

/// Native ext_authz's typed_config (JSON) as istiod builds it from an `envoyExtAuthzGrpc`
/// provider (istio/istio `pilot/pkg/security/authz/builder/extauthz.go`, `generateGRPCConfig`):
/// `grpc_service{envoy_grpc{cluster_name, authority}, timeout}` (`timeout`: the provider's, e.g.
/// `"600s"`, Istio's default), `transport_api_version: V3`, `failure_mode_allow` (`failOpen`),
/// `status_on_error` (`statusOnError`; `None` leaves it out: Envoy's 403), and `with_request_body`
/// from `includeRequestBodyInCheck` as `(max_request_bytes, allow_partial_message, pack_as_bytes)`.
/// istiod also sets `filter_enabled_metadata` (its CUSTOM-rule gate, filled by an RBAC shadow
/// filter); the test bed gates with per-route `disabled` instead (`Listener::native`), as for the
/// HTTP provider.
pub fn native_grpc_ext_authz(
    cluster: &str,
    authority: &str,
    timeout: &str,
    fail_open: bool,
    status_on_error: Option<u16>,
    body: Option<(u32, bool, bool)>,
) -> String {
    let mut config = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "grpc_service": {
            "envoy_grpc": {"cluster_name": cluster, "authority": authority},
            "timeout": timeout,
        },
        "transport_api_version": "V3",
        "failure_mode_allow": fail_open,
    });
    if let Some(code) = status_on_error {
        config["status_on_error"] = json!({"code": code});
    }
    if let Some((max_request_bytes, allow_partial_message, pack_as_bytes)) = body {
        config["with_request_body"] = json!({
            "max_request_bytes": max_request_bytes,
            "allow_partial_message": allow_partial_message,
            "pack_as_bytes": pack_as_bytes,
        });
    }
    config.to_string()
}

/// The services and the Envoy of one test binary.
pub struct Bed {
    pub envoy: Envoy,
    pub authz: Recorder,
    pub upstream: Recorder,
    pub jwks: JwksServer,
    /// The gRPC ext_authz server, started when a listener uses it (`Listener::uses_grpc`).
    pub grpc: Option<GrpcAuthz>,
    /// The TLS front of `jwks` for the https `.example` hosts, started when a listener names one
    /// (`Listener::uses_tls`).
    pub tls: Option<TlsFront>,
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

/// A loopback port nothing listens on (a cluster that refuses connections): `free_port`.
pub fn dead_port() -> u16 {
    free_port()
}

/// A loopback port free now, and below Linux's ephemeral range (32768–60999), so no socket asking
/// for "any port" (a client's, another test bed's) is ever given it before its user binds it or
/// while it must stay dead — an ephemeral one freed here could be, and then answer or be taken.
/// Each call tries another port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..1000 {
        let n = seed.wrapping_add(NEXT.fetch_add(7919, Ordering::Relaxed));
        let port = 20_000 + (n % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    9
}

/// The TLS front as the Envoy config needs it: its port and the CA its certificate chains to.
#[derive(Debug, Clone)]
pub struct TlsEndpoint {
    pub port: u16,
    pub ca: PathBuf,
}

/// The loopback ports of the services around Envoy.
#[derive(Debug, Clone)]
pub struct Ports {
    pub authz: u16,
    pub upstream: u16,
    pub jwks: u16,
    /// The gRPC ext_authz server (clusters `authz-grpc` and `outbound|9000||ext-authz…`).
    pub authz_grpc: u16,
    /// The TLS front (clusters `outbound|443||<TLS_HOSTS>`); `None`: those clusters lead to a
    /// dead port.
    pub tls: Option<TlsEndpoint>,
}

impl Ports {
    /// Ports nothing listens on (for configs that are only validated).
    pub fn unused() -> Ports {
        Ports {
            authz: 9,
            upstream: 9,
            jwks: 9,
            authz_grpc: 9,
            tls: None,
        }
    }
}

/// One STATIC cluster to 127.0.0.1:`port` (JSON, which YAML reads as a flow value).
fn loopback_cluster(
    name: &str,
    port: u16,
    transport_socket: serde_json::Value,
) -> serde_json::Value {
    json!({
        "name": name,
        "connect_timeout": "1s",
        "type": "STATIC",
        "transport_socket": transport_socket,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}}]}],
        },
    })
}

/// An `envoy.transport_sockets.tls` UpstreamTlsContext sending SNI `host`; with `ca`, the server's
/// certificate must chain to it and hold the DNS SAN `host` (Envoy checks no hostname by itself:
/// the SAN matcher is that check). Without `ca` (nothing listens behind) no validation.
fn upstream_tls(host: &str, ca: Option<&PathBuf>) -> serde_json::Value {
    let mut context = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": host,
    });
    if let Some(ca) = ca {
        context["common_tls_context"] = json!({"validation_context": {
            "trusted_ca": {"filename": ca.display().to_string()},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}],
        }});
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": context})
}

/// The clusters of the https `.example` hosts, as Istio names them (`outbound|443||<host>`): each
/// of [`TLS_HOSTS`] over TLS to the TLS front (a dead port when it does not run), and
/// [`DOWN_HOST`] to a dead port.
fn tls_clusters(tls: Option<&TlsEndpoint>, dead: u16) -> String {
    let mut clusters: Vec<serde_json::Value> = TLS_HOSTS
        .iter()
        .map(|host| {
            loopback_cluster(
                &format!("outbound|443||{host}"),
                tls.map_or(dead, |t| t.port),
                upstream_tls(host, tls.map(|t| &t.ca)),
            )
        })
        .collect();
    clusters.push(loopback_cluster(
        &format!("outbound|443||{DOWN_HOST}"),
        dead,
        upstream_tls(DOWN_HOST, None),
    ));
    clusters
        .iter()
        .map(|c| format!("  - {c}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Renders the whole Envoy config for these listeners and ports.
pub fn render_config(
    listeners: &[Listener],
    ports: Ports,
    envoy_normalize: bool,
) -> Result<String, String> {
    // The .wasm is needed (and checked fresh) only when a listener runs the filter.
    let wasm = if listeners.iter().any(|l| matches!(l, Listener::Wasm { .. })) {
        wasm_path()?.display().to_string()
    } else {
        String::new()
    };
    let mut rendered = String::new();
    for listener in listeners {
        let mut vars: HashMap<&str, String> = HashMap::new();
        vars.insert("ENVOY_NORMALIZE_PATH", envoy_normalize.to_string());
        let text = match listener {
            Listener::Wasm {
                name,
                config,
                hold_headers,
                access_log,
            } => {
                vars.insert("NAME", name.clone());
                vars.insert("HOLD_HEADERS", hold_headers.to_string());
                vars.insert("ACCESS_LOG", access_log_config(name, *access_log));
                vars.insert("PLUGIN_CONFIG", yaml_quote(config));
                vars.insert("WASM", wasm.clone());
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
    vars.insert("AUTHZ_GRPC_PORT", ports.authz_grpc.to_string());
    let dead = dead_port();
    vars.insert("DEAD_PORT", dead.to_string());
    vars.insert("TLS_CLUSTERS", tls_clusters(ports.tls.as_ref(), dead));
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
        let grpc = if listeners.iter().any(Listener::uses_grpc) {
            Some(GrpcAuthz::start().unwrap_or_else(|e| panic!("gRPC ext_authz server: {e}")))
        } else {
            None
        };
        let tls = if listeners.iter().any(Listener::uses_tls) {
            Some(TlsFront::start(jwks_server.port()).unwrap_or_else(|e| panic!("TLS front: {e}")))
        } else {
            None
        };
        let ports = Ports {
            tls: tls.as_ref().map(|t| TlsEndpoint {
                port: t.port(),
                ca: t.ca(),
            }),
            authz: authz_server.port(),
            upstream: echo_server.port(),
            jwks: jwks_server.port(),
            // Nothing listens there when no listener needs the gRPC server.
            authz_grpc: grpc.as_ref().map_or_else(dead_port, GrpcAuthz::grpc_port),
        };
        let config = edit(
            render_config(listeners, ports, envoy_normalize).unwrap_or_else(|e| panic!("{e}")),
        );
        // Access logs are flushed every 100 ms, not Envoy's default 10 s: tests read them.
        let logged = listeners.iter().any(|l| {
            matches!(
                l,
                Listener::Wasm {
                    access_log: true,
                    ..
                }
            )
        });
        let flush: &[&str] = if logged {
            &["--file-flush-interval-msec", "100"]
        } else {
            &[]
        };
        let envoy =
            Envoy::start_with_args(&config, workers, flush).unwrap_or_else(|e| panic!("{e}"));
        Bed {
            envoy,
            authz,
            upstream,
            jwks,
            grpc,
            tls,
            _servers: (authz_server, echo_server, jwks_server),
        }
    }

    pub fn port(&self, listener: &str) -> u16 {
        self.envoy.port(listener)
    }

    /// The lines of listener `name`'s access log so far (see [`Listener::with_access_log`]).
    pub fn access_log(&self, name: &str) -> Vec<String> {
        fs::read_to_string(access_log_path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The gRPC ext_authz server; panics when no listener of this bed uses it.
    pub fn grpc(&self) -> &GrpcAuthz {
        match &self.grpc {
            Some(grpc) => grpc,
            None => panic!("no listener of this Bed uses gRPC, so no gRPC ext_authz server runs"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_grpc_ext_authz_is_what_istiod_builds() {
        let config: serde_json::Value = serde_json::from_str(&native_grpc_ext_authz(
            GRPC_CLUSTER,
            GRPC_AUTHORITY,
            "600s",
            true,
            Some(503),
            Some((4096, true, true)),
        ))
        .unwrap_or_default();
        assert_eq!(
            config,
            json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                "grpc_service": {
                    "envoy_grpc": {"cluster_name": GRPC_CLUSTER, "authority": GRPC_AUTHORITY},
                    "timeout": "600s",
                },
                "transport_api_version": "V3",
                "failure_mode_allow": true,
                "status_on_error": {"code": 503},
                "with_request_body": {
                    "max_request_bytes": 4096,
                    "allow_partial_message": true,
                    "pack_as_bytes": true,
                },
            })
        );
        let plain = native_grpc_ext_authz("authz-grpc", "a", "1s", false, None, None);
        assert!(!plain.contains("status_on_error") && !plain.contains("with_request_body"));
    }

    #[test]
    fn only_listeners_naming_an_https_example_host_need_the_tls_front() {
        let discovered = r#"{"jwtRules": [{"issuer": "https://issuer.example"}]}"#;
        assert!(Listener::wasm("w", discovered).uses_tls());
        let native = r#"{"remote_jwks": {"http_uri": {"cluster": "outbound|443||keys.example"}}}"#;
        assert!(Listener::native_jwt("n", native).uses_tls());
        let plain = r#"{"jwtRules": [{"issuer": "i", "jwksUri": "http://jwks.example/keys"}]}"#;
        assert!(!Listener::wasm("p", plain).uses_tls());
        assert!(!Listener::native_rbac("r", "{}").uses_tls());
    }

    #[test]
    fn https_clusters_trust_the_test_ca_and_match_their_own_san() {
        let tls = TlsEndpoint {
            port: 4443,
            ca: PathBuf::from("/tmp/ca.pem"),
        };
        let rendered = tls_clusters(Some(&tls), 9);
        let clusters: Vec<serde_json::Value> = rendered
            .lines()
            .map(|l| serde_json::from_str(l.trim_start_matches("  - ")).unwrap_or_default())
            .collect();
        assert_eq!(clusters.len(), 4);
        let keys = &clusters[1];
        assert_eq!(keys["name"], "outbound|443||keys.example");
        let context = &keys["transport_socket"]["typed_config"];
        assert_eq!(context["sni"], "keys.example");
        let validation = &context["common_tls_context"]["validation_context"];
        assert_eq!(validation["trusted_ca"]["filename"], "/tmp/ca.pem");
        assert_eq!(
            validation["match_typed_subject_alt_names"][0],
            json!({"san_type": "DNS", "matcher": {"exact": "keys.example"}})
        );
        let port = |c: &serde_json::Value| {
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"]
                .clone()
        };
        assert_eq!(port(keys), 4443);
        assert_eq!(clusters[3]["name"], "outbound|443||down.example");
        assert_eq!(port(&clusters[3]), 9);
        // Without the front every https cluster leads to the dead port.
        assert!(!tls_clusters(None, 9).contains("4443"));
    }

    #[test]
    fn only_grpc_listeners_need_the_grpc_server() {
        let grpc = native_grpc_ext_authz("authz-grpc", "a", "1s", false, None, None);
        assert!(Listener::native_everywhere("n", &grpc).uses_grpc());
        let provider = r#"{"extensionProviders": [{"name": "p", "envoyExtAuthzGrpc": {}}]}"#;
        assert!(Listener::wasm("w", provider).uses_grpc());
        let http = r#"{"http_service": {"server_uri": {"cluster": "authz"}}}"#;
        assert!(!Listener::native_everywhere("h", http).uses_grpc());
        assert!(!Listener::native_rbac("r", "{}").uses_grpc());
    }
}
