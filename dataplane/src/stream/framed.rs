//! Cuts a byte stream into whole frames with a codec, without copying: frames are split off the
//! front of the read buffer, which then keeps reading into its remaining capacity.
//!
//! The buffer is sized by what arrives: a read is offered `chunk` bytes of room, which starts
//! small, doubles each time a read fills it (a busy multiplexed connection soon reads hundreds
//! of frames at once) and halves when reads come in well under it. A connection that is quiet
//! with nothing buffered can hand its allocation back ([`FrameReader::release_if_empty`]), so
//! thousands of idle or stalled connections cost little.

use crate::io::ReadSide;
use crate::protocol::xprotocol::{Codec, CodecError, FrameHead};
use bytes::{Buf, BytesMut};
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// The room the first read of a connection gets.
const CHUNK_MIN: usize = 2 * 1024;
/// The most room a read gets; frames that need more get what they need.
const CHUNK_MAX: usize = 256 * 1024;

pub struct FrameReader {
    buf: BytesMut,
    codec: Arc<dyn Codec>,
    max_frame: usize,
    chunk: usize,
}

impl FrameReader {
    /// `buf` may hold bytes already read (protocol detection looked at them).
    pub fn new(codec: Arc<dyn Codec>, max_frame: usize, buf: BytesMut) -> FrameReader {
        FrameReader {
            buf,
            codec,
            max_frame,
            chunk: CHUNK_MIN,
        }
    }

    /// The head of the next whole frame already buffered, if any. Its bytes are
    /// [`FrameReader::frame`] until [`FrameReader::consume`] moves past them: frames are used in
    /// place, never split off into buffers of their own.
    pub fn next_frame(&self) -> Result<Option<FrameHead>, CodecError> {
        self.codec.decode(&self.buf, self.max_frame)
    }

    /// The first `len` buffered bytes (the frame `next_frame` found).
    pub fn frame(&self, len: usize) -> &[u8] {
        &self.buf[..len]
    }

    pub fn consume(&mut self, len: usize) {
        self.buf.advance(len);
    }

    /// Reads more bytes; `Ok(false)` at end of stream. Cancel-safe: a read that is dropped
    /// before it completes has taken nothing.
    pub async fn fill(&mut self, rd: &mut ReadSide) -> std::io::Result<bool> {
        // BytesMut grows by doubling, so a large frame costs amortised linear copying.
        self.buf.reserve(self.chunk);
        let room = self.buf.capacity() - self.buf.len();
        let n = rd.read_buf(&mut self.buf).await?;
        if n >= room && self.chunk < CHUNK_MAX {
            self.chunk *= 2;
        } else if n < self.chunk / 4 && self.chunk > CHUNK_MIN {
            self.chunk /= 2;
        }
        Ok(n > 0)
    }

    /// Bytes received but not yet a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Hands the buffer's memory back when it holds nothing (a quiet connection); the next read
    /// starts small again.
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
            self.chunk = CHUNK_MIN;
        }
    }
}
