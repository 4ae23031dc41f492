//! How long a message body is (RFC 9112 §6.3), decided strictly for requests: every case where
//! two parsers could disagree is refused, as Envoy does — Content-Length together with
//! Transfer-Encoding, a transfer coding other than a single `chunked`, Transfer-Encoding in
//! HTTP/1.0, more than one Content-Length, or one that is not plain digits.

use super::head::{HeaderBlock, Version};
use super::Http1Error;

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// The request's body framing.
pub fn request_framing(headers: &HeaderBlock, version: Version) -> Result<BodyFraming, Http1Error> {
    let te = transfer_codings(headers);
    let cl = content_length(headers)?;
    if let Some(codings) = te {
        if version == Version::Http10 {
            return Err(Http1Error::bad_request(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if cl.is_some() {
            return Err(Http1Error::bad_request(
                "both Content-Length and Transfer-Encoding are set",
            ));
        }
        return match codings.as_slice() {
            [only] if only.eq_ignore_ascii_case(b"chunked") => Ok(BodyFraming::Chunked),
            _ => Err(Http1Error {
                status: 501,
                reason: format!(
                    "unsupported transfer encoding \"{}\"",
                    String::from_utf8_lossy(&codings.join(&b", "[..]))
                ),
            }),
        };
    }
    Ok(match cl {
        Some(0) | None => BodyFraming::None,
        Some(n) => BodyFraming::Length(n),
    })
}

/// The response's body framing; `status` and whether the request was HEAD decide first.
pub fn response_framing(
    headers: &HeaderBlock,
    status: u16,
    request_was_head: bool,
) -> Result<BodyFraming, Http1Error> {
    if request_was_head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(BodyFraming::None);
    }
    if let Some(codings) = transfer_codings(headers) {
        // A final coding other than chunked means "until close" (RFC 9112 §6.3 item 4).
        return Ok(match codings.last() {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => BodyFraming::Chunked,
            _ => BodyFraming::UntilClose,
        });
    }
    Ok(match content_length(headers)? {
        Some(0) => BodyFraming::None,
        Some(n) => BodyFraming::Length(n),
        None => BodyFraming::UntilClose,
    })
}

/// Every transfer coding listed, over all Transfer-Encoding fields; `None` without the field.
fn transfer_codings(headers: &HeaderBlock) -> Option<Vec<&[u8]>> {
    let mut any = false;
    let mut out = Vec::new();
    for v in headers.get_all("transfer-encoding") {
        any = true;
        out.extend(
            v.split(|b| *b == b',')
                .map(|c| c.trim_ascii())
                .filter(|c| !c.is_empty()),
        );
    }
    any.then_some(out)
}

/// The Content-Length, if any: one value of plain decimal digits (a second field or a list is
/// refused, as Envoy refuses it).
fn content_length(headers: &HeaderBlock) -> Result<Option<u64>, Http1Error> {
    let mut found: Option<u64> = None;
    for v in headers.get_all("content-length") {
        for part in v.split(|b| *b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(Http1Error::bad_request(format!(
                    "invalid Content-Length \"{}\"",
                    String::from_utf8_lossy(v)
                )));
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Http1Error::bad_request("Content-Length out of range"))?;
            // Envoy refuses a second Content-Length even when it repeats the first.
            if let Some(m) = found {
                return Err(Http1Error::bad_request(format!(
                    "more than one Content-Length ({m} and {n})"
                )));
            }
            found = Some(n);
        }
    }
    Ok(found)
}
