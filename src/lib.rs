//! inline-authz: Istio AuthorizationPolicy and the Envoy `ext_authz` HTTP callout as one
//! proxy-wasm filter. Entry point and module list only.

// Every public item says what it is (clippy runs with -D warnings: an undocumented one fails it).
#![warn(missing_docs)]
// A panic takes a worker's filter down: no indexing or slicing that can go out of bounds (or, for
// strings, off a character boundary) in what ships. The library only: its unit tests may index
// (clippy.toml), and so may the end-to-end suites in tests/, which are crates of their own.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

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
