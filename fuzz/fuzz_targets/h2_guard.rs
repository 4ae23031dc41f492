//! The HTTP/2 frame guard (flood limits, the hidden shutdown-PING acknowledgement) on untrusted
//! bytes, read in pieces of untrusted sizes. Never a panic; reading the bytes in pieces ends
//! exactly as reading them whole does (same bytes handed on, same verdict); the only byte it
//! changes is the last of an acknowledgement of h2's shutdown PING.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::proxy::http::h2_guard::FrameGuard;
use std::rc::Rc;

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let preface = cuts & 1 != 0;
    let mut whole = rest.to_vec();
    let whole_ok = FrameGuard::new((), preface, Rc::default())
        .observe(&mut whole)
        .is_ok();
    // The same bytes in pieces of 1..=16 bytes, sized by the first byte's bits.
    let mut pieces = rest.to_vec();
    let mut g = FrameGuard::new((), preface, Rc::default());
    let mut ok = true;
    let mut at = 0;
    let mut step = usize::from(cuts >> 4) + 1;
    while at < pieces.len() && ok {
        let end = (at + step).min(pieces.len());
        ok = g.observe(&mut pieces[at..end]).is_ok();
        at = end;
        step = step % 16 + 1;
    }
    if ok {
        // (A limit passed partway stops that read: compare only when both saw everything.)
        assert_eq!(
            ok, whole_ok,
            "the verdict depends on how the bytes were cut"
        );
        assert_eq!(
            pieces, whole,
            "the bytes handed on depend on how they were cut"
        );
    }
    for (i, (a, b)) in rest.iter().zip(&whole).enumerate() {
        if a != b {
            // Only a PING acknowledgement's last payload byte.
            assert!(
                i >= 16 && rest[i - 16..i - 12] == [0, 0, 8, 6],
                "byte {i} changed"
            );
        }
    }
});
