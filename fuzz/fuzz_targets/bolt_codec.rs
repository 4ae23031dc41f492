//! The Bolt codec reads bytes from any client and any upstream. Whatever the bytes, decode must
//! return a frame head, "need more" or an error, never panic; and on a frame it did accept,
//! every read and edit the proxy makes must hold: the head's length is within the input, an id
//! rewrite decodes back to that id with the rest of the frame unchanged, and local replies are
//! frames that decode with the request's id.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice::protocol::bolt::Bolt;
use sluice::protocol::registry;
use sluice::protocol::xprotocol::{Codec, FrameKind, LocalReply};

fuzz_target!(|data: &[u8]| {
    let _ = registry::detect(&registry::builtin(), data);
    let Ok(Some(head)) = Bolt.decode(data, 1 << 20) else {
        return;
    };
    assert!(head.len <= data.len());
    let frame = &data[..head.len];
    let _ = Bolt.service(frame);
    let _ = Bolt.method(frame);
    let _ = Bolt.header(frame, "service");

    let mut edited = frame.to_vec();
    Bolt.set_request_id(&mut edited, 0x0102_0304);
    let again = Bolt.decode(&edited, 1 << 20).unwrap().unwrap();
    assert_eq!(again.request_id, 0x0102_0304);
    assert_eq!((again.kind, again.len), (head.kind, head.len));

    if head.kind.is_request() && head.kind != FrameKind::Oneway {
        for reply in [
            LocalReply::Timeout,
            LocalReply::HeartbeatAck,
            LocalReply::NoRoute,
        ] {
            let mut out = BytesMut::new();
            Bolt.local_reply(frame, reply, &mut out);
            let r = Bolt.decode(&out, 1 << 20).unwrap().unwrap();
            assert_eq!(r.request_id, head.request_id);
            assert_eq!(r.len, out.len());
        }
    }
});
