//! The control socket's messages: bytes from the control process are framed, parsed as JSON,
//! read as a push and laid over a bootstrap as the dataplane does. Every stage returns a value
//! or an error, never a panic; a push that validates comes back whole.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some((message, used))) = sluice::push::decode(data) else {
        return;
    };
    assert!(used <= data.len());
    let Ok(push) = sluice::push::parse_push(&message) else {
        return;
    };
    // parse_push accepted it as a JSON object (sent as one, or as text): it must read back.
    let resources: serde_json::Value =
        serde_json::from_str(&push.static_resources).expect("accepted resources are JSON");
    assert!(resources.is_object());
    let doc = serde_json::json!({ "static_resources": resources });
    let _ = sluice::config::bootstrap::parse_bootstrap(&doc);
});
