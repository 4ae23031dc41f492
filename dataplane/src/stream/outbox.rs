//! The sending side of a connection: producers append whole frames to a buffer, one writer task
//! drains it. Many frames written between two wake-ups leave in one write(2).

use super::signal::Signal;
use crate::io::WriteSide;
use crate::protocol::xprotocol::Codec;
use bytes::BytesMut;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tokio::io::AsyncWriteExt;

#[derive(Default)]
pub struct Outbox {
    buf: RefCell<BytesMut>,
    wake: Signal,
    closed: Cell<bool>,
    /// The writer has failed or finished: appends are dropped.
    dead: Cell<bool>,
}

impl Outbox {
    pub fn new() -> Rc<Outbox> {
        Rc::new(Outbox::default())
    }

    /// Appends with `fill`; `false` (and nothing appended) when the connection is gone.
    pub fn push_with(&self, fill: impl FnOnce(&mut BytesMut)) -> bool {
        if self.dead.get() || self.closed.get() {
            return false;
        }
        let mut b = self.buf.borrow_mut();
        let was_empty = b.is_empty();
        fill(&mut b);
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
}

/// Drains `outbox` into `wr` until it is closed and empty, or a write fails.
pub async fn write_loop(outbox: Rc<Outbox>, mut wr: WriteSide) -> std::io::Result<()> {
    let mut spare = BytesMut::new();
    let result = loop {
        let chunk = {
            let mut b = outbox.buf.borrow_mut();
            if b.is_empty() {
                None
            } else {
                // Swap in the spare buffer so producers keep appending while this one is written.
                spare.clear();
                Some(std::mem::replace(&mut *b, std::mem::take(&mut spare)))
            }
        };
        match chunk {
            Some(c) => {
                if let Err(e) = wr.write_all(&c).await {
                    break Err(e);
                }
                spare = c;
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
    result
}
