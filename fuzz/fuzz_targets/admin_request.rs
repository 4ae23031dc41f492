//! The admin endpoint's request reading (the data path's HTTP/1 codec, as admin uses it) takes
//! bytes from any client that can reach the admin port: it must return a request, "need more"
//! or an error with a status, never panic.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    match sluice::admin::parse_request(&mut sluice::admin::request_decoder(), &mut buf) {
        Ok(Some(req)) => {
            assert!(req.path.starts_with('/'));
            assert!(!req.method.is_empty());
        }
        Ok(None) => {}
        Err(e) => assert!((400..500).contains(&e.status) || e.status == 501, "{e}"),
    }
});
