//! The HTTP/1 decoders on untrusted bytes: requests and responses, fed whole and in two pieces
//! split where the first byte says. Never a panic; the same messages either way; body bytes
//! never more than what came in; a Content-Length body is exactly that long.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice::protocol::http1::{Limits, Message, RequestDecoder, ResponseDecoder};

#[derive(Debug, PartialEq)]
enum Step {
    Head(String, Option<u64>),
    Data(usize),
    End(usize),
    Error(u16),
}

fn content_length(h: &sluice::protocol::http1::HeaderBlock) -> Option<u64> {
    std::str::from_utf8(h.get("content-length")?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Decodes `pieces` in turn, then the end of input; data steps are merged so that where the
/// input was split does not show.
fn run(pieces: &[&[u8]], response: bool) -> Vec<Step> {
    let limits = Limits {
        max_head_bytes: 4096,
        max_headers: 16,
    };
    let mut req = RequestDecoder::new(limits);
    let mut resp = ResponseDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let push = |out: &mut Vec<Step>, s: Step| match (out.last_mut(), &s) {
        (Some(Step::Data(n)), Step::Data(m)) => *n += m,
        _ => out.push(s),
    };
    for (i, piece) in pieces.iter().enumerate() {
        buf.extend_from_slice(piece);
        let last = i + 1 == pieces.len();
        loop {
            let step = if response {
                resp.decode(&mut buf, false).map(|m| {
                    m.map(|m| match m {
                        Message::Head(h) => {
                            Step::Head(h.status.to_string(), content_length(&h.headers))
                        }
                        Message::Data(d) => Step::Data(d.len()),
                        Message::End(t) => Step::End(t.map_or(0, |t| t.len())),
                    })
                })
            } else {
                req.decode(&mut buf).map(|m| {
                    m.map(|m| match m {
                        Message::Head(h) => {
                            Step::Head(h.method().to_string(), content_length(&h.headers))
                        }
                        Message::Data(d) => Step::Data(d.len()),
                        Message::End(t) => Step::End(t.map_or(0, |t| t.len())),
                    })
                })
            };
            match step {
                Ok(Some(s)) => push(&mut out, s),
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(e.status, 400 | 426 | 431 | 501), "{e}");
                    out.push(Step::Error(e.status));
                    return out;
                }
            }
        }
        if last {
            let end = if response {
                resp.decode_eof(&buf).map(|m| m.is_some())
            } else {
                req.decode_eof(&buf).map(|m| m.is_some())
            };
            match end {
                Ok(true) => out.push(Step::End(0)),
                Ok(false) => {}
                Err(e) => out.push(Step::Error(e.status)),
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let response = first & 1 == 1;
    let at = (first as usize * 7) % (input.len() + 1);
    let whole = run(&[input], response);
    let split = run(&[&input[..at], &input[at..]], response);
    assert_eq!(whole, split, "split at {at}");
    let body: usize = whole
        .iter()
        .map(|s| if let Step::Data(n) = s { *n } else { 0 })
        .sum();
    assert!(body <= input.len());
    // A request that ended normally after a Content-Length head carried exactly that much
    // (responses may rightly ignore it: 1xx, 204, 304, Transfer-Encoding).
    if response {
        return;
    }
    let mut expect = None;
    let mut got = 0u64;
    for s in &whole {
        match s {
            Step::Head(_, cl) => {
                expect = *cl;
                got = 0;
            }
            Step::Data(n) => got += *n as u64,
            Step::End(_) => {
                if let Some(cl) = expect.take() {
                    assert_eq!(got, cl, "Content-Length body of another length");
                }
            }
            Step::Error(_) => break,
        }
    }
});
