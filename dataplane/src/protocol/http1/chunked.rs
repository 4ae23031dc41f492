//! The chunked transfer coding (RFC 9112 §7.1), decoded strictly: a chunk size is 1 to 16 hex
//! digits, lines end in CRLF (a bare LF is refused: parsers that accept it and parsers that
//! do not would disagree on where the body ends), extensions are skipped within a bound, and
//! the trailer block is held to the same limits as a head.

use super::head::{find_head_end, HeaderBlock};
use super::{Http1Error, Limits};
use bytes::{Buf, Bytes, BytesMut};

/// The longest chunk extension sluice skips over.
const MAX_EXTENSION: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size { value: u64, digits: u8 },
    Extension { value: u64, len: usize },
    SizeLf { value: u64 },
    Data { remaining: u64 },
    DataCr,
    DataLf,
    Trailers { scanned: usize },
    Done,
}

/// What the decoder found next.
#[derive(Debug)]
pub enum Chunk {
    /// Body bytes, as they arrived (no copy).
    Data(Bytes),
    /// The last chunk, with the trailers if any were sent.
    End(Option<HeaderBlock>),
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
        }
    }
}

fn bad(reason: &str) -> Http1Error {
    Http1Error::bad_request(reason)
}

impl ChunkedDecoder {
    /// Consumes from `buf` what it can; `Ok(None)` means more bytes are needed.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Chunk>, Http1Error> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Data { remaining } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (remaining.min(buf.len() as u64)) as usize;
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok(Some(Chunk::Data(buf.split_to(n).freeze())));
                }
                State::Trailers { scanned } => {
                    if buf.len() >= 2 && &buf[..2] == b"\r\n" {
                        buf.advance(2);
                        self.state = State::Done;
                        return Ok(Some(Chunk::End(None)));
                    }
                    match find_head_end(buf, scanned) {
                        Some(end) => {
                            if end > limits.max_head_bytes {
                                return Err(too_large_trailers(limits));
                            }
                            let raw = buf.split_to(end).freeze();
                            let trailers = HeaderBlock::parse_trailers(raw, limits)?;
                            self.state = State::Done;
                            return Ok(Some(Chunk::End(Some(trailers))));
                        }
                        None if buf.len() > limits.max_head_bytes => {
                            return Err(too_large_trailers(limits))
                        }
                        None => {
                            self.state = State::Trailers { scanned: buf.len() };
                            return Ok(None);
                        }
                    }
                }
                _ => {}
            }
            // The byte-at-a-time states: size line, extension, the CRLF after data.
            let Some(&b) = buf.first() else {
                return Ok(None);
            };
            buf.advance(1);
            self.state = match (self.state, b) {
                (State::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                    if digits == 16 {
                        return Err(bad("chunk size too large"));
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    State::Size {
                        value: value << 4 | d,
                        digits: digits + 1,
                    }
                }
                (State::Size { digits: 0, .. }, _) => return Err(bad("invalid chunk size")),
                (State::Size { value, .. }, b';') => State::Extension { value, len: 0 },
                (State::Size { value, .. }, b'\r') => State::SizeLf { value },
                (State::Size { .. }, _) => return Err(bad("invalid chunk size")),
                (State::Extension { value, .. }, b'\r') => State::SizeLf { value },
                (State::Extension { value, len }, _) => {
                    if len >= MAX_EXTENSION {
                        return Err(bad("chunk extension too long"));
                    }
                    if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(bad("invalid byte in a chunk extension"));
                    }
                    State::Extension {
                        value,
                        len: len + 1,
                    }
                }
                (State::SizeLf { value: 0 }, b'\n') => State::Trailers { scanned: 0 },
                (State::SizeLf { value }, b'\n') => State::Data { remaining: value },
                (State::SizeLf { .. }, _) => return Err(bad("chunk size line not ended by CRLF")),
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size {
                    value: 0,
                    digits: 0,
                },
                (State::DataCr | State::DataLf, _) => {
                    return Err(bad("chunk data not followed by CRLF"))
                }
                (s, _) => s,
            };
        }
    }
}

fn too_large_trailers(limits: &Limits) -> Http1Error {
    Http1Error {
        status: 431,
        reason: format!("trailers over {} bytes", limits.max_head_bytes),
    }
}
