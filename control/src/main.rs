//! `sluice-control`, the control process: not implemented yet.
//!
//! It will speak xDS to the control plane and push config into running dataplanes through the
//! same snapshot swap a SIGHUP reload uses (`Dataplane::apply`). Until then it says so and exits
//! non-zero rather than pretending to run.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "sluice-control: the control process (xDS, config push, kernel fallback) is not implemented in this version; \
         configure sluice with a static bootstrap file (sluice -c FILE) and reload it with SIGHUP"
    );
    ExitCode::from(2)
}
