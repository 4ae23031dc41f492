//! Heads and chunked bodies back into bytes. Callers pass header fields that came from a parsed
//! message or from config (both already valid field bytes); framing fields are the caller's to
//! choose, with [`framing_header`].

use super::framing::BodyFraming;
use bytes::BufMut;

/// `METHOD target HTTP/1.1` and the fields, up to and including the empty line.
pub fn request_head<'a>(
    method: &str,
    target: &[u8],
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    out: &mut impl BufMut,
) {
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(target);
    out.put_slice(b" HTTP/1.1\r\n");
    put_fields(fields, out);
}

/// `HTTP/1.1 status reason` and the fields, up to and including the empty line.
pub fn response_head<'a>(
    status: u16,
    reason: &[u8],
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    out: &mut impl BufMut,
) {
    out.put_slice(b"HTTP/1.1 ");
    // Three digits, written without formatting (a status is 100 to 999 on the wire).
    let s = status.clamp(100, 999);
    out.put_slice(&[
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
    out.put_u8(b' ');
    out.put_slice(reason);
    out.put_slice(b"\r\n");
    put_fields(fields, out);
}

fn put_fields<'a>(fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>, out: &mut impl BufMut) {
    for (name, value) in fields {
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

/// `n` in decimal, written into `buf` without formatting or allocating (for content-length).
pub fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    digits(n, 10, buf)
}

/// `n`'s digits in `radix` (up to 16, lower-case), right-aligned in `buf`.
fn digits(mut n: u64, radix: u64, buf: &mut [u8; 20]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = DIGITS[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The field that announces `framing`, if it needs one (`None` and `UntilClose` do not).
pub fn framing_header(framing: BodyFraming) -> Option<(&'static [u8], String)> {
    match framing {
        BodyFraming::Length(n) => Some((b"content-length", n.to_string())),
        BodyFraming::Chunked => Some((b"transfer-encoding", "chunked".to_string())),
        BodyFraming::None | BodyFraming::UntilClose => None,
    }
}

/// One chunk of a chunked body; an empty `data` writes nothing (it would end the body).
pub fn chunk(data: &[u8], out: &mut impl BufMut) {
    if data.is_empty() {
        return;
    }
    let mut buf = [0u8; 20];
    out.put_slice(digits(data.len() as u64, 16, &mut buf));
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// The last chunk, with trailers if any.
pub fn last_chunk<'a>(
    trailers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    out: &mut impl BufMut,
) {
    out.put_slice(b"0\r\n");
    put_fields(trailers, out);
}

/// The reason phrase sluice writes for `status` (any phrase is valid on the wire; these are
/// the RFC's for the statuses sluice answers with itself).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}
