//! The codec against frames captured from sofa-bolt-node (testdata/bolt, copied from the shared
//! captures): decode, check every field, edit, re-encode, compare.

use super::*;

/// The frames of a `socat -x` dump, in order.
fn frames(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/testdata/bolt/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('>') || line.starts_with('<') {
            out.push(Vec::new());
        } else if let Some(cur) = out.last_mut() {
            cur.extend(
                line.split_whitespace()
                    .map(|h| u8::from_str_radix(h, 16).expect("hex byte")),
            );
        }
    }
    out
}

const SERVICE: &str = "com.alipay.sofa.rpc.quickstart.HelloService:1.0";

#[test]
fn v1_request_and_response_decode_field_by_field() {
    let f = frames("bolt-v1-hexdump.txt");
    let (req, resp) = (&f[0], &f[1]);
    assert_eq!(req.len(), 361);
    let head = Bolt.decode(req, 1 << 20).unwrap().unwrap();
    assert_eq!(
        head,
        FrameHead {
            kind: FrameKind::Request,
            request_id: 1,
            len: 361,
            timeout_ms: 3000,
            status: 0
        }
    );
    assert_eq!(Bolt.service(req).as_deref(), Some(SERVICE));
    assert_eq!(Bolt.method(req).as_deref(), Some("sayHello"));
    assert_eq!(Bolt.header(req, "service"), Some(SERVICE.as_bytes()));
    assert_eq!(Bolt.header(req, "absent"), None);
    let head = Bolt.decode(resp, 1 << 20).unwrap().unwrap();
    assert_eq!(head.kind, FrameKind::Response);
    assert_eq!((head.request_id, head.len, head.status), (1, 177, 0));
    assert!(Bolt.is_success(head.status));
}

#[test]
fn v2_frames_carry_a_crc_that_is_checked_and_rewritten() {
    let f = frames("bolt-v2crc-hexdump.txt");
    let (req, resp) = (&f[0], &f[1]);
    let head = Bolt.decode(req, 1 << 20).unwrap().unwrap();
    assert_eq!(head.kind, FrameKind::Request);
    assert_eq!((head.request_id, head.len, head.timeout_ms), (1, 367, 3000));
    assert_eq!(Bolt.service(req).as_deref(), Some(SERVICE));
    assert_eq!(Bolt.method(req).as_deref(), Some("sayHello"));
    let head = Bolt.decode(resp, 1 << 20).unwrap().unwrap();
    assert_eq!(
        (head.kind, head.len, head.status),
        (FrameKind::Response, 183, 0)
    );

    // Rewrite the id: the CRC must follow, and rewriting back restores the captured bytes.
    let mut edited = req.clone();
    Bolt.set_request_id(&mut edited, 0xdead_beef);
    let h = Bolt.decode(&edited, 1 << 20).unwrap().unwrap();
    assert_eq!(h.request_id, 0xdead_beef);
    Bolt.set_request_id(&mut edited, 1);
    assert_eq!(&edited, req);

    let mut bad = req.clone();
    bad[100] ^= 0x01;
    assert!(matches!(
        Bolt.decode(&bad, 1 << 20),
        Err(CodecError::BadChecksum { .. })
    ));
}

#[test]
fn request_encoder_reproduces_the_captures() {
    for (name, proto) in [
        ("bolt-v1-hexdump.txt", PROTO_V1),
        ("bolt-v2crc-hexdump.txt", PROTO_V2),
    ] {
        let f = frames(name);
        let req = &f[0];
        let l = Layout::of(req).unwrap().unwrap();
        let mut out = BytesMut::new();
        RequestSpec {
            proto,
            ver1: 2,
            crc: true,
            oneway: false,
            request_id: 1,
            timeout_ms: 3000,
            class: l.class(req),
            headers: &[("service", SERVICE)],
            content: l.content(req),
        }
        .encode(&mut out);
        assert_eq!(&out[..], &req[..], "{name}");
    }
}

#[test]
fn response_encoder_reproduces_the_captures() {
    for name in ["bolt-v1-hexdump.txt", "bolt-v2crc-hexdump.txt"] {
        let f = frames(name);
        let (req, resp) = (&f[0], &f[1]);
        let l = Layout::of(resp).unwrap().unwrap();
        // The captured response carries a class name; compare everything after re-adding it.
        let mut out = BytesMut::new();
        encode_response(req, status::SUCCESS, l.content(resp), &mut out);
        let h = Bolt.decode(&out, 1 << 20).unwrap().unwrap();
        assert_eq!((h.kind, h.request_id), (FrameKind::Response, 1), "{name}");
        assert_eq!(
            Layout::of(&out).unwrap().unwrap().content(&out),
            l.content(resp)
        );
    }
}

#[test]
fn every_prefix_of_a_frame_asks_for_more() {
    for name in ["bolt-v1-hexdump.txt", "bolt-v2crc-hexdump.txt"] {
        for frame in frames(name) {
            for n in 0..frame.len() {
                assert_eq!(Bolt.decode(&frame[..n], 1 << 20), Ok(None), "{name} at {n}");
            }
        }
    }
}

#[test]
fn limits_and_garbage_are_errors() {
    let f = frames("bolt-v1-hexdump.txt");
    assert_eq!(
        Bolt.decode(&f[0], 100),
        Err(CodecError::TooLarge {
            len: 361,
            limit: 100
        })
    );
    // The length is checked from the header alone, before the body arrives.
    assert!(matches!(
        Bolt.decode(&f[0][..22], 100),
        Err(CodecError::TooLarge { .. })
    ));
    assert_eq!(
        Bolt.decode(b"GET / HTTP/1.1\r\n", 1 << 20),
        Err(CodecError::UnknownMagic(b'G'))
    );
    let mut bad_type = f[0].clone();
    bad_type[1] = 7;
    assert!(matches!(
        Bolt.decode(&bad_type, 1 << 20),
        Err(CodecError::Malformed(_))
    ));
    // A header map whose key length runs past its end.
    let mut cut = f[0].clone();
    cut[22 + 44 + 3] = 0xff;
    assert!(matches!(
        Bolt.decode(&cut, 1 << 20),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn local_replies_mirror_the_request_version() {
    for name in ["bolt-v1-hexdump.txt", "bolt-v2crc-hexdump.txt"] {
        let req = &frames(name)[0];
        let mut out = BytesMut::new();
        Bolt.local_reply(req, LocalReply::Timeout, &mut out);
        let h = Bolt.decode(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(h.kind, FrameKind::Response);
        assert_eq!((h.request_id, h.status), (1, status::TIMEOUT), "{name}");
        assert_eq!(out[0], req[0]);
    }
    let mut hb = BytesMut::new();
    Bolt.heartbeat(42, &mut hb);
    let h = Bolt.decode(&hb, 1 << 20).unwrap().unwrap();
    assert_eq!((h.kind, h.request_id), (FrameKind::Heartbeat, 42));
    let mut ack = BytesMut::new();
    Bolt.local_reply(&hb, LocalReply::HeartbeatAck, &mut ack);
    let h = Bolt.decode(&ack, 1 << 20).unwrap().unwrap();
    assert_eq!(
        (h.kind, h.request_id, h.status),
        (FrameKind::HeartbeatAck, 42, 0)
    );
}

#[test]
fn oneway_requests_are_told_apart() {
    let mut out = BytesMut::new();
    RequestSpec {
        proto: PROTO_V1,
        ver1: 1,
        crc: false,
        oneway: true,
        request_id: 9,
        timeout_ms: 0,
        class: b"x",
        headers: &[],
        content: b"abc",
    }
    .encode(&mut out);
    let h = Bolt.decode(&out, 1 << 20).unwrap().unwrap();
    assert_eq!((h.kind, h.request_id, h.len), (FrameKind::Oneway, 9, 26));
}
