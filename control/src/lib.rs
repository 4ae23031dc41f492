//! sluice's control process as a library: the xDS client (`xds`), the link to a dataplane's
//! control socket (`dataplane_link`) and the host kernel's fallback TAP (`fallback`). The binary `sluice-control` is in main.rs; the fuzz
//! targets drive `xds::state` directly.

pub mod dataplane_link;
pub mod fallback;
pub mod xds;
