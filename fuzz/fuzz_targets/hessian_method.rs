//! The Hessian reader looks into request bodies from any client to find the method name: it
//! must give a name or nothing, never panic, whatever the body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice::protocol::hessian::first_field_string(data, "methodName");
});
