//! The sending side of a connection: producers append whole frames to a buffer, one writer task
//! drains it. Many frames written between two wake-ups leave in one write(2).
//!
//! The outbox is bounded by the connection's buffer limit (`per_connection_buffer_limit_bytes`):
//! it counts every byte appended and not yet written, including the chunk the writer is in the
//! middle of. Appends are never refused (a frame that was accepted must get its answer), so a
//! producer looks at [`Outbox::over_limit`] and stops feeding it: the downstream reader stops
//! reading its connection until the outbox has drained to half its limit (the low watermark, as
//! Envoy's watermark buffers have), and TCP flow control pushes back on the sender.

use super::signal::Signal;
use crate::io::WriteSide;
use crate::protocol::xprotocol::Codec;
use bytes::BytesMut;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::time::Instant;

pub struct Outbox {
    buf: RefCell<BytesMut>,
    /// The buffer last written, reused for the next swap so that a busy connection appends into
    /// memory it already has (a fresh buffer per burst would be regrown, and copied, each time).
    spare: RefCell<BytesMut>,
    /// Frames in `buf`.
    queued_frames: Cell<u32>,
    /// The frames and bytes of the chunk being written.
    writing_frames: Cell<u32>,
    writing_bytes: Cell<usize>,
    /// Unwritten bytes above which producers should stop.
    limit: usize,
    wake: Signal,
    /// Signalled after every chunk written: for the one reader of this connection that waits on
    /// its own outbox.
    pub written: Signal,
    /// For readers of other connections waiting for this one to drain (downstreams sending to a
    /// backed-up upstream). Notified only when one is waiting, so the mutex inside `Notify` is
    /// off the common path.
    room: Notify,
    room_wanted: Cell<bool>,
    closed: Cell<bool>,
    /// The writer has failed or finished: appends are dropped.
    dead: Cell<bool>,
    /// When the writer last finished a chunk: a connection whose peer reads nothing shows no
    /// progress here.
    last_write: Cell<Option<Instant>>,
}

impl Outbox {
    /// An outbox that asks producers to stop above `limit` unwritten bytes.
    pub fn new(limit: usize) -> Rc<Outbox> {
        Rc::new(Outbox {
            buf: RefCell::new(BytesMut::new()),
            spare: RefCell::new(BytesMut::new()),
            queued_frames: Cell::new(0),
            writing_frames: Cell::new(0),
            writing_bytes: Cell::new(0),
            limit: limit.max(1),
            wake: Signal::default(),
            written: Signal::default(),
            room: Notify::new(),
            room_wanted: Cell::new(false),
            closed: Cell::new(false),
            dead: Cell::new(false),
            last_write: Cell::new(None),
        })
    }

    /// Appends one frame with `fill`; `false` (and nothing appended) when the connection is gone.
    pub fn push_with(&self, fill: impl FnOnce(&mut BytesMut)) -> bool {
        if self.dead.get() || self.closed.get() {
            return false;
        }
        let mut b = self.buf.borrow_mut();
        let was_empty = b.is_empty();
        fill(&mut b);
        self.queued_frames.set(self.queued_frames.get() + 1);
        if was_empty {
            self.wake.notify();
        }
        true
    }

    /// Appends a copy of `frame` carrying request id `id` (the one copy a forwarded frame
    /// gets in user space; the id is rewritten in the copy, with any checksum).
    pub fn push_frame(&self, codec: &dyn Codec, frame: &[u8], id: u64) -> bool {
        self.push_with(|b| {
            let start = b.len();
            b.extend_from_slice(frame);
            codec.set_request_id(&mut b[start..], id);
        })
    }

    /// No more frames: the writer sends what is queued, then shuts the connection down.
    pub fn close(&self) {
        self.closed.set(true);
        self.wake.notify();
    }

    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// Lets go of write buffers that grew past 64 KiB in a burst, when nothing waits in them: for
    /// a connection that has gone quiet (its owner's idle clock says when), so it holds no
    /// burst-sized buffer. A chunk being written is the writer's and is kept.
    pub fn release_idle_buffers(&self) {
        let mut b = self.buf.borrow_mut();
        if b.is_empty() && b.capacity() > SPARE_KEEP {
            *b = BytesMut::new();
        }
        let mut s = self.spare.borrow_mut();
        if s.capacity() > SPARE_KEEP {
            *s = BytesMut::new();
        }
    }

    /// Bytes of memory the write buffers hold (not counting a chunk being written).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.borrow().capacity() + self.spare.borrow().capacity()
    }

    /// When a chunk was last written whole (`None`: never).
    pub fn last_write(&self) -> Option<Instant> {
        self.last_write.get()
    }

    /// Bytes appended and not yet written.
    pub fn unwritten_bytes(&self) -> usize {
        self.buf.borrow().len() + self.writing_bytes.get()
    }

    /// Frames appended and not yet written (a reply counts against the in-flight bound until it
    /// has left).
    pub fn unwritten_frames(&self) -> u32 {
        self.queued_frames.get() + self.writing_frames.get()
    }

    /// Producers should stop: more than the limit is waiting to be written.
    pub fn over_limit(&self) -> bool {
        !self.dead.get() && self.unwritten_bytes() > self.limit
    }

    /// Still above the low watermark (half the limit), where a paused producer resumes.
    pub fn above_low_watermark(&self) -> bool {
        !self.dead.get() && self.unwritten_bytes() > self.limit / 2
    }

    /// Completes once the outbox has drained to its low watermark (or its writer is gone).
    pub async fn drained(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.room_wanted.set(true);
            if !self.above_low_watermark() {
                return;
            }
            notified.await;
        }
    }

    fn after_write(&self) {
        self.written.notify();
        if self.room_wanted.get() && !self.above_low_watermark() {
            self.room_wanted.set(false);
            self.room.notify_waiters();
        }
    }
}

/// Waits for a closed outbox's writer to send what is queued, for at most `grace`: a peer that
/// reads nothing would otherwise hold the connection and its buffers for good. `false` when the
/// writer had to be stopped.
pub async fn finish_writer(
    writer: tokio::task::JoinHandle<std::io::Result<()>>,
    grace: std::time::Duration,
) -> bool {
    let abort = writer.abort_handle();
    let finished = tokio::time::timeout(grace, writer).await.is_ok();
    if !finished {
        abort.abort();
    }
    finished
}

/// Drains `outbox` into `wr` until it is closed and empty, or a write fails.
pub async fn write_loop(outbox: Rc<Outbox>, mut wr: WriteSide) -> std::io::Result<()> {
    let result = loop {
        let chunk = {
            let mut b = outbox.buf.borrow_mut();
            if b.is_empty() {
                None
            } else {
                // Swap in the spare buffer so producers keep appending while this one is written.
                let mut spare = outbox.spare.take();
                spare.clear();
                outbox.writing_frames.set(outbox.queued_frames.replace(0));
                outbox.writing_bytes.set(b.len());
                Some(std::mem::replace(&mut *b, spare))
            }
        };
        match chunk {
            Some(c) => {
                if let Err(e) = wr.write_all(&c).await {
                    break Err(e);
                }
                outbox.writing_frames.set(0);
                outbox.writing_bytes.set(0);
                outbox.last_write.set(Some(Instant::now()));
                // The written buffer becomes the spare.
                *outbox.spare.borrow_mut() = c;
                outbox.after_write();
            }
            None if outbox.closed.get() => {
                let _ = wr.shutdown().await;
                break Ok(());
            }
            None => outbox.wake.notified().await,
        }
    };
    outbox.dead.set(true);
    outbox.buf.borrow_mut().clear();
    outbox.queued_frames.set(0);
    outbox.writing_frames.set(0);
    outbox.writing_bytes.set(0);
    // Wake whoever waits on this connection: it will not drain any further.
    outbox.written.notify();
    outbox.room.notify_waiters();
    result
}

/// The largest write buffer a quiet connection keeps for reuse.
const SPARE_KEEP: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Connection;
    use tokio::io::AsyncReadExt;

    #[test]
    fn counts_unwritten_frames_and_bytes_until_the_writer_has_written_them() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap();
            let (mut peer, _) = l.accept().await.unwrap();
            let (_rd, wr) = Connection::Kernel(c).split();
            let ob = Outbox::new(1000);
            for _ in 0..3 {
                ob.push_with(|b| b.extend_from_slice(&[7u8; 400]));
            }
            assert_eq!(ob.unwritten_frames(), 3);
            assert_eq!(ob.unwritten_bytes(), 1200);
            assert!(ob.over_limit() && ob.above_low_watermark());
            let writer = tokio::task::spawn_local(write_loop(ob.clone(), wr));
            let mut got = vec![0u8; 1200];
            peer.read_exact(&mut got).await.unwrap();
            ob.drained().await;
            assert_eq!(ob.unwritten_frames(), 0);
            assert!(!ob.over_limit());
            // A burst grows the buffers; a quiet connection lets them go.
            ob.push_with(|b| b.extend_from_slice(&vec![1u8; 300 * 1024]));
            let mut got = vec![0u8; 300 * 1024];
            peer.read_exact(&mut got).await.unwrap();
            ob.drained().await;
            while ob.unwritten_frames() > 0 {
                ob.written.notified().await;
            }
            assert!(ob.capacity() > 256 * 1024, "{}", ob.capacity());
            ob.release_idle_buffers();
            assert!(ob.capacity() <= 64 * 1024, "{}", ob.capacity());
            ob.close();
            writer.await.unwrap().unwrap();
        });
    }
}
