//! The admin endpoint's HTTP request-head parser takes bytes from any client that can reach the
//! admin port: it must return a request, "need more" or an error, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(req)) = sluice::admin::parse_request(data) {
        assert!(req.path.starts_with('/'));
        assert!(!req.method.is_empty());
    }
});
