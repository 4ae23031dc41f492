//! Config text (YAML or JSON) into the validated bootstrap: every input is either accepted or
//! rejected with a path-carrying error, never a panic. Config later also arrives over xDS, from
//! the network.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for json in [false, true] {
        if let Ok(doc) = sluice::config::parse_text(text, json) {
            let _ = sluice::config::bootstrap::parse_bootstrap(&doc);
        }
    }
});
