//! HTTP/1.1 (and 1.0), sans-IO: heads parsed by `httparse` without copying (a head is one
//! `Bytes` and ranges into it), bodies handed on as the slices that arrived, framing decided as
//! strictly as Envoy and pingora decide it, so that sluice and the server behind it can never
//! disagree on where a request ends (request smuggling).
//!
//! - [`decoder::RequestDecoder`] / [`decoder::ResponseDecoder`]: bytes in, [`Message`]s out;
//!   pipelined requests come out one after another.
//! - [`framing`]: Content-Length / Transfer-Encoding rules (RFC 9112 §6), per direction.
//! - [`chunked`]: the chunked transfer coding, trailers included.
//! - [`encode`]: heads and chunked bodies back into bytes.
//!
//! A decoding error carries the status to answer with (400, 431, 501) and what was wrong; the
//! connection is closed after it, since its framing can no longer be trusted.

pub mod chunked;
pub mod decoder;
pub mod encode;
pub mod framing;
pub mod head;

#[cfg(test)]
mod tests;

pub use decoder::{Message, RequestDecoder, ResponseDecoder};
pub use head::{token_is, HeaderBlock, RequestHead, ResponseHead, Version};

/// Bounds on what one peer may make sluice hold (Envoy's `max_request_headers_kb` and
/// `common_http_protocol_options.max_headers_count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A head (request or status line plus headers), or a trailer block, in bytes.
    pub max_head_bytes: usize,
    /// Header fields in a head or trailer block.
    pub max_headers: usize,
}

impl Default for Limits {
    /// Envoy's defaults: 60 KiB of headers, 100 of them.
    fn default() -> Limits {
        Limits {
            max_head_bytes: 60 * 1024,
            max_headers: 100,
        }
    }
}

/// Why bytes are not HTTP/1 sluice will forward, and the status to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http1Error {
    /// 400 (malformed or ambiguous), 431 (head too large), 501 (unsupported coding).
    pub status: u16,
    pub reason: String,
}

impl Http1Error {
    pub fn bad_request(reason: impl Into<String>) -> Http1Error {
        Http1Error {
            status: 400,
            reason: reason.into(),
        }
    }

    fn too_large(reason: impl Into<String>) -> Http1Error {
        Http1Error {
            status: 431,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Http1Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

impl std::error::Error for Http1Error {}
