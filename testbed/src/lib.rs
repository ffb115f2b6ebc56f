//! Host-side test bed for inline-authz: the sample services, a raw HTTP client, the Envoy
//! launcher and the scenario builder shared by the end-to-end tests and the demo.

pub mod compare;
pub mod envoy;
pub mod grpc;
pub mod http;
pub mod lds;
pub mod load;
pub mod mtls;
pub mod protocols;
mod python;
pub mod scenario;
pub mod services;
pub mod tls;
pub mod traffic;
