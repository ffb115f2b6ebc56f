//! inline-authz: Istio AuthorizationPolicy and the Envoy `ext_authz` HTTP callout as one
//! proxy-wasm filter. Entry point and module list only.

// Every public item says what it is (clippy runs with -D warnings: an undocumented one fails it).
#![warn(missing_docs)]

pub mod config;
pub(crate) mod expiring;
pub mod explain;
pub mod ext_authz;
pub mod filter;
pub mod headers;
pub mod host;
pub mod jwt;
pub mod policy;

#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)] // the entry point the SDK's macro writes
mod entry {
    use crate::filter;

    proxy_wasm::main! {{
        filter::start();
    }}
}
