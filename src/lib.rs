//! inline-authz: Istio AuthorizationPolicy and the Envoy `ext_authz` HTTP callout as one
//! proxy-wasm filter. Entry point and module list only.

pub mod config;
pub(crate) mod expiring;
pub mod ext_authz;
pub mod filter;
pub mod headers;
pub mod host;
pub mod jwt;
pub mod policy;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    filter::start();
}}
