//! Cuts a byte stream into whole frames with a codec, without copying: frames are split off the
//! front of the read buffer, which then keeps reading into its remaining capacity.

use crate::io::ReadSide;
use crate::protocol::xprotocol::{Codec, CodecError, FrameHead};
use bytes::{Buf, BytesMut};
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// The least free space a read is given; frames that need more get what they need. Large
/// enough that one read of a busy multiplexed upstream carries hundreds of responses.
const READ_CHUNK: usize = 256 * 1024;

pub struct FrameReader {
    buf: BytesMut,
    codec: Arc<dyn Codec>,
    max_frame: usize,
}

impl FrameReader {
    /// `buf` may hold bytes already read (protocol detection looked at them).
    pub fn new(codec: Arc<dyn Codec>, max_frame: usize, buf: BytesMut) -> FrameReader {
        FrameReader {
            buf,
            codec,
            max_frame,
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

    /// Reads more bytes; `Ok(false)` at end of stream.
    pub async fn fill(&mut self, rd: &mut ReadSide) -> std::io::Result<bool> {
        // BytesMut grows by doubling, so a large frame costs amortised linear copying.
        self.buf.reserve(READ_CHUNK);
        let n = rd.read_buf(&mut self.buf).await?;
        Ok(n > 0)
    }

    /// Bytes received but not yet a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
