//! The xDS client: ADS over gRPC, state of the world and delta, turning what it learns into
//! pushes to a dataplane.
pub mod bootstrap;
pub mod client;
pub mod compose;
pub mod decode;
pub mod kind;
pub mod routes;
pub mod state;
pub mod status;
