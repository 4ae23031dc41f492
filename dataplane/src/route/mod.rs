//! The route model shared by every protocol that routes (rpc_proxy now, HTTP next): finding a
//! virtual host by name, matching header and string values, choosing among weighted targets.
//! Each protocol keeps its own config schema and its own request accessors on top; what a
//! match means is decided once, here, with Envoy's semantics.

pub mod matchers;
pub mod names;
pub mod target;
