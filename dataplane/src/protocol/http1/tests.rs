use super::encode;
use super::framing::BodyFraming;
use super::*;
use bytes::BytesMut;

/// Everything a request stream decodes to, as text: `H <method> <target>`, `D <bytes>`,
/// `E` / `E <trailer count>`, or the error; fed `step` bytes at a time.
fn requests(input: &[u8], step: usize, limits: Limits) -> Vec<String> {
    let mut d = RequestDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        match d.decode(&mut buf) {
            Ok(Some(Message::Head(h))) => out.push(format!(
                "H {} {}",
                h.method(),
                String::from_utf8_lossy(h.target())
            )),
            Ok(Some(Message::Data(b))) => {
                // Coalesce consecutive data steps, so the feeding step does not show.
                match out.last_mut() {
                    Some(last) if last.starts_with("D ") => {
                        last.push_str(&String::from_utf8_lossy(&b))
                    }
                    _ => out.push(format!("D {}", String::from_utf8_lossy(&b))),
                }
            }
            Ok(Some(Message::End(None))) => out.push("E".into()),
            Ok(Some(Message::End(Some(t)))) => out.push(format!("E {}", t.len())),
            Ok(None) if fed < input.len() => {
                let n = step.min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            Ok(None) => {
                if let Err(e) = d.decode_eof(&buf) {
                    out.push(format!("! {}", e.status));
                }
                return out;
            }
            Err(e) => {
                out.push(format!("! {} {}", e.status, e.reason));
                return out;
            }
        }
    }
}

fn decode_all(input: &[u8]) -> Vec<String> {
    let whole = requests(input, input.len().max(1), Limits::default());
    // Byte at a time, or in pieces of any size, must give the same messages (a head is read
    // at once when it arrived whole, and only once its end is in when it did not).
    for step in 1..input.len().min(80) {
        assert_eq!(
            whole,
            requests(input, step, Limits::default()),
            "{:?} in pieces of {step}",
            String::from_utf8_lossy(input)
        );
    }
    whole
}

fn status_of(input: &[u8]) -> u16 {
    let out = decode_all(input);
    let last = out.last().unwrap();
    assert!(last.starts_with("! "), "accepted: {out:?}");
    last[2..5].parse().unwrap()
}

#[test]
fn pipelined_requests_come_out_in_order_with_their_bodies() {
    let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
        POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        3\r\nabc\r\n2;name=value\r\nde\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n\
        \r\nGET http://example.com:8080/d?q=1 HTTP/1.0\r\n\r\n";
    assert_eq!(
        decode_all(input),
        [
            "H GET /a",
            "E",
            "H POST /b",
            "D hello",
            "E",
            "H POST /c",
            "D abcde",
            "E 2",
            "H GET http://example.com:8080/d?q=1",
            "E"
        ]
    );
}

#[test]
fn heads_are_read_without_copying_and_answer_keep_alive_and_expect() {
    let mut d = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::from(
        &b"PUT /up HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\nExpect: 100-continue\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n"[..],
    );
    let Some(Message::Head(h)) = d.decode(&mut buf).unwrap() else {
        panic!("no head")
    };
    assert_eq!(h.version, Version::Http11);
    assert!(!h.keep_alive());
    assert!(h.expects_continue());
    assert_eq!(h.headers.get_all("X-A").collect::<Vec<_>>(), [b"1", b"2"]);
    assert_eq!(h.headers.get("host"), Some(&b"a"[..]));
    assert!(d.decode(&mut buf).unwrap().is_some()); // End
    assert!(d.is_idle());

    let mut buf = BytesMut::from(&b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"[..]);
    let Some(Message::Head(h)) = d.decode(&mut buf).unwrap() else {
        panic!("no head")
    };
    assert!(h.keep_alive() && !h.expects_continue());
    assert_eq!(h.headers.get("Connection"), Some(&b"keep-alive"[..]));
    // The names looked up on every message are noted while parsing: present in any case, or
    // absent; other names are scanned for.
    let mut d = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::from(
        &b"POST / HTTP/1.1\r\nhost: a\r\nCONTENT-LENGTH: 2\r\nTe: trailers\r\nUpgradeX: no\r\n\r\nok"[..],
    );
    let Some(Message::Head(h)) = d.decode(&mut buf).unwrap() else {
        panic!("no head")
    };
    assert_eq!(h.headers.get("content-length"), Some(&b"2"[..]));
    assert_eq!(h.headers.get("TE"), Some(&b"trailers"[..]));
    assert_eq!(h.headers.get("upgrade"), None);
    assert_eq!(h.headers.get("expect"), None);
    assert_eq!(h.headers.get("UPGRADEX"), Some(&b"no"[..]));
    assert!(matches!(d.decode(&mut buf).unwrap(), Some(Message::Data(b)) if b == "ok"));
}

/// The request-smuggling cases: each is refused with the status Envoy 1.40 answers it with
/// (checked against Envoy routing to an upstream that reads the body), and nothing after it is
/// decoded. Where sluice is stricter than Envoy the case says so: Envoy accepts a bare CR and
/// obs-fold in a value, a doubled space in the request line, `1 ` (space before CRLF) as a
/// chunk size and a chunk longer than its size; sluice refuses them (RFC 9112 lets a server
/// refuse each; accepting what the server behind may read differently is what smuggling needs).
#[test]
fn ambiguous_framing_is_refused() {
    let cases: &[(&[u8], u16)] = &[
        // CL.TE and TE.CL
        (
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
            400,
        ),
        // conflicting, repeated and malformed Content-Length
        (
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
            400,
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: 4, 5\r\n\r\nabcde", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\nabcd", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 0x4\r\n\r\nabcd", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            400,
        ),
        // transfer codings sluice does not implement, doubled chunked, TE in HTTP/1.0
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            501,
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        // whitespace before the colon, bad bytes in names and values
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nX(y): 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
        // stricter than Envoy: a bare CR in a value, obsolete line folding
        (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400),
        // bad chunk sizes and chunk framing
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n 1\r\na\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n",
            400,
        ),
        // stricter than Envoy: a space after the size, a chunk longer than its size
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\na\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\n0\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n",
            400,
        ),
        // a malformed request line (the doubled space: stricter than Envoy), another version
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1 x\r\n\r\n", 400),
        (b"GET /a b HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 426),
    ];
    for (input, want) in cases {
        let got = status_of(input);
        assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn a_head_over_the_limits_gets_431_even_when_it_never_ends() {
    let limits = Limits {
        max_head_bytes: 1024,
        max_headers: 4,
    };
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000));
    assert!(requests(big.as_bytes(), 7, limits)
        .last()
        .unwrap()
        .starts_with("! 431"));
    // A head that never ends is refused once it passes the limit, not held forever.
    let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(5000));
    assert!(requests(endless.as_bytes(), 100, limits)
        .last()
        .unwrap()
        .starts_with("! 431"));
    let many = "GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n";
    assert!(requests(many.as_bytes(), 3, limits)
        .last()
        .unwrap()
        .starts_with("! 431"));
    let four = "GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n";
    assert_eq!(requests(four.as_bytes(), 3, limits), ["H GET /", "E"]);
    // Trailers are held to the same bounds.
    let trailers = format!(
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: {}\r\n\r\n",
        "t".repeat(2000)
    );
    assert!(requests(trailers.as_bytes(), 50, limits)
        .last()
        .unwrap()
        .starts_with("! 431"));
}

#[test]
fn a_close_in_the_middle_of_a_message_is_an_error_and_between_messages_is_not() {
    assert_eq!(decode_all(b"GET / HTTP/1.1\r\n\r\n"), ["H GET /", "E"]);
    assert_eq!(
        decode_all(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc"),
        ["H POST /", "D abc", "! 400"]
    );
    assert_eq!(decode_all(b"GET / HTTP/1.1\r\nHost"), ["! 400"]);
}

#[test]
fn after_an_error_the_decoder_stays_failed() {
    let mut d = RequestDecoder::new(Limits::default());
    let mut buf =
        BytesMut::from(&b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\nGET / HTTP/1.1\r\n\r\n"[..]);
    assert_eq!(d.decode(&mut buf).unwrap_err().status, 400);
    assert_eq!(d.decode(&mut buf).unwrap_err().status, 400);
}

fn responses(input: &[u8], to_head: bool) -> Vec<String> {
    let mut d = ResponseDecoder::new(Limits::default());
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        match d.decode(&mut buf, to_head) {
            Ok(Some(Message::Head(h))) => out.push(format!("H {}", h.status)),
            Ok(Some(Message::Data(b))) => out.push(format!("D {}", String::from_utf8_lossy(&b))),
            Ok(Some(Message::End(t))) => out.push(format!("E{}", t.map_or(0, |t| t.len()))),
            Ok(None) => {
                match d.decode_eof(&buf) {
                    Ok(Some(Message::End(_))) => out.push("E0 at close".into()),
                    Ok(_) => {}
                    Err(e) => out.push(format!("! {}", e.status)),
                }
                return out;
            }
            Err(e) => {
                out.push(format!("! {}", e.status));
                return out;
            }
        }
    }
}

#[test]
fn response_framing_follows_status_method_and_headers() {
    assert_eq!(
        responses(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            false
        ),
        ["H 100", "E0", "H 200", "D ok", "E0"]
    );
    assert_eq!(
        responses(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", true),
        ["H 200", "E0", "H 204", "E0"]
    );
    assert_eq!(
        responses(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n", false),
        ["H 200", "D ok", "E1"]
    );
    assert_eq!(
        responses(b"HTTP/1.0 200 OK\r\n\r\nuntil close", false),
        ["H 200", "D until close", "E0 at close"]
    );
    assert_eq!(
        responses(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi",
            false
        ),
        ["H 101", "D \u{fffd}\u{2}hi", "E0 at close"]
    );
    assert_eq!(
        responses(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", false),
        ["H 200", "D ab", "! 400"]
    );
}

#[test]
fn encoded_messages_decode_to_what_was_encoded() {
    let mut out = BytesMut::new();
    let (name, value) = encode::framing_header(BodyFraming::Chunked).unwrap();
    encode::request_head(
        "POST",
        b"/x?y=1",
        [(&b"host"[..], &b"h"[..]), (name, value.as_bytes())],
        &mut out,
    );
    encode::chunk(b"hello ", &mut out);
    encode::chunk(b"", &mut out);
    encode::chunk(b"world", &mut out);
    encode::last_chunk([(&b"x-t"[..], &b"1"[..])], &mut out);
    assert_eq!(decode_all(&out), ["H POST /x?y=1", "D hello world", "E 1"]);
    let mut out = BytesMut::new();
    encode::response_head(
        404,
        b"Not Found",
        [(&b"content-length"[..], &b"0"[..])],
        &mut out,
    );
    assert_eq!(responses(&out, false), ["H 404", "E0"]);
}

#[test]
fn numbers_are_written_without_formatting() {
    let mut buf = [0u8; 20];
    for n in [0u64, 7, 10, 65_536, u64::MAX] {
        assert_eq!(encode::decimal(n, &mut buf), n.to_string().as_bytes());
    }
    for len in [1usize, 15, 16, 255, 4096, 100_000] {
        let mut out = BytesMut::new();
        encode::chunk(&vec![b'x'; len], &mut out);
        assert!(out.starts_with(format!("{len:x}\r\n").as_bytes()), "{len}");
        assert_eq!(out.len(), format!("{len:x}").len() + 2 + len + 2);
    }
}
