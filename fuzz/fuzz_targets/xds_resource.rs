//! An xDS response of arbitrary bytes, as any of the four resource types, through the whole
//! client: protobuf decoding, JSON, TypedStruct unwrapping, RPC route translation, validation by
//! the dataplane's reader and snapshot composition. Whatever the bytes, the client answers with
//! an ACK or a NACK and never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_control::xds::compose::StaticResources;
use sluice_control::xds::kind::Kind;
use sluice_control::xds::state::{Client, Incoming, Mode, Response, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let kind = Kind::ALL[usize::from(selector & 3)];
    let mode = if selector & 4 == 0 {
        Mode::StateOfTheWorld
    } else {
        Mode::Delta
    };
    let mut client = Client::new(mode, StaticResources::default());
    let response = Response {
        type_url: kind.type_url().into(),
        version_info: "1".into(),
        nonce: "n".into(),
        resources: vec![Incoming {
            name: (mode == Mode::Delta).then(|| "r".into()),
            version: "1".into(),
            type_url: kind.type_url().into(),
            bytes: bytes.to_vec(),
        }],
        removed: Vec::new(),
    };
    match client.receive(response) {
        Step::Reply(replies) => assert!(!replies.is_empty()),
        Step::Push(pending) => {
            let _ = pending.static_resources();
            let _ = client.finish(*pending, Ok(()));
        }
    }
});
