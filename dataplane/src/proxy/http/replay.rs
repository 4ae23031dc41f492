//! A request body kept for retries, as Envoy's router keeps one: while it streams to the first
//! attempt its frames are also held (up to the connection's buffer limit, 1 MiB by default),
//! so that a retry can send them again and go on with the rest as it arrives. A body larger
//! than the limit streams on unheld, and the request can no longer be retried.
//!
//! Only one attempt runs at a time, but an abandoned attempt's body writer may still be
//! pulling when the next starts: each reader has the generation it was made in, and a reader
//! from an older generation gets a reset instead of more frames. The source is pulled under
//! an async lock, so two readers never poll it at once.

use super::message::{Body, BodyError, Frame};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// How a request's body is sent again.
pub enum Replay {
    /// Nothing or bytes at hand: sent as they are.
    Whole(bytes::Bytes),
    /// A streamed body, held as it goes.
    Held(Rc<Tee>),
}

pub struct Tee {
    /// The body as it arrives; `None` once it ended or failed.
    source: tokio::sync::Mutex<Option<Body>>,
    frames: RefCell<Vec<Frame>>,
    bytes: Cell<usize>,
    limit: usize,
    /// Past the limit: frames are no longer held and the body cannot be sent again.
    overflowed: Cell<bool>,
    ended: Cell<bool>,
    failed: Cell<Option<BodyError>>,
    generation: Cell<u64>,
}

/// One attempt's view of a held body.
pub struct Reader {
    tee: Rc<Tee>,
    generation: u64,
    pos: usize,
}

impl Replay {
    /// The body for the first attempt, and how to send it again; a streamed body is held only
    /// when `retries` says a retry can happen (holding costs up to `limit` bytes).
    pub fn start(body: Body, retries: bool, limit: usize) -> (Body, Option<Replay>) {
        match body {
            Body::Empty => (Body::Empty, Some(Replay::Whole(bytes::Bytes::new()))),
            Body::Full(b) => (Body::Full(b.clone()), Some(Replay::Whole(b))),
            b if b.is_end() => (Body::Empty, Some(Replay::Whole(bytes::Bytes::new()))),
            b if !retries => (b, None),
            b => {
                let tee = Rc::new(Tee {
                    source: tokio::sync::Mutex::new(Some(b)),
                    frames: RefCell::default(),
                    bytes: Cell::new(0),
                    limit,
                    overflowed: Cell::new(false),
                    ended: Cell::new(false),
                    failed: Cell::new(None),
                    generation: Cell::new(0),
                });
                let first = Body::Replay(Reader {
                    tee: tee.clone(),
                    generation: 0,
                    pos: 0,
                });
                (first, Some(Replay::Held(tee)))
            }
        }
    }

    /// Whether another attempt can be sent the whole body.
    pub fn can_replay(&self) -> bool {
        match self {
            Replay::Whole(_) => true,
            Replay::Held(t) => !t.overflowed.get() && t.failed.get().is_none(),
        }
    }

    /// The body for the next attempt; earlier attempts' readers stop.
    pub fn again(&self) -> Body {
        match self {
            Replay::Whole(b) if b.is_empty() => Body::Empty,
            Replay::Whole(b) => Body::Full(b.clone()),
            Replay::Held(t) => {
                t.generation.set(t.generation.get() + 1);
                Body::Replay(Reader {
                    tee: t.clone(),
                    generation: t.generation.get(),
                    pos: 0,
                })
            }
        }
    }
}

fn frame_len(f: &Frame) -> usize {
    match f {
        Frame::Data(d) => d.len(),
        Frame::Trailers(t) => t.iter().map(|(k, v)| k.as_str().len() + v.len()).sum(),
    }
}

impl Reader {
    pub async fn next(&mut self) -> Option<Result<Frame, BodyError>> {
        let tee = self.tee.clone();
        loop {
            if self.generation != tee.generation.get() {
                return Some(Err(BodyError::Reset));
            }
            if let Some(f) = tee.frames.borrow().get(self.pos) {
                self.pos += 1;
                return Some(Ok(f.clone()));
            }
            if tee.ended.get() {
                return None;
            }
            if let Some(e) = tee.failed.get() {
                return Some(Err(e));
            }
            let mut source = tee.source.lock().await;
            if self.generation != tee.generation.get()
                || self.pos < tee.frames.borrow().len()
                || tee.ended.get()
                || tee.failed.get().is_some()
            {
                continue; // someone else pulled while this one waited for the lock
            }
            let Some(body) = source.as_mut() else {
                tee.ended.set(true);
                continue;
            };
            // Boxed: a body's `next` is what called this one (a future cannot hold itself).
            let pulled: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> =
                Box::pin(body.next());
            match pulled.await {
                Some(Ok(frame)) => {
                    if !tee.overflowed.get() {
                        let bytes = tee.bytes.get() + frame_len(&frame);
                        if bytes > tee.limit {
                            // Too big to hold: stream the rest, and free what was held.
                            tee.overflowed.set(true);
                            tee.frames.borrow_mut().clear();
                        } else {
                            tee.bytes.set(bytes);
                            tee.frames.borrow_mut().push(frame.clone());
                            self.pos += 1;
                        }
                    }
                    return Some(Ok(frame));
                }
                None => {
                    tee.ended.set(true);
                    *source = None;
                    return None;
                }
                Some(Err(e)) => {
                    tee.failed.set(Some(e));
                    *source = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &'static str) -> Frame {
        Frame::Data(bytes::Bytes::from_static(s.as_bytes()))
    }

    async fn collect(mut b: Body) -> Result<String, BodyError> {
        let mut out = String::new();
        while let Some(f) = b.next().await {
            match f? {
                Frame::Data(d) => out.push_str(std::str::from_utf8(&d).unwrap()),
                Frame::Trailers(_) => out.push_str("|trailers"),
            }
        }
        Ok(out)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_retry_gets_what_was_held_then_the_rest() {
        let (tx, body) = Body::channel();
        let (mut first, replay) = Replay::start(body, true, 1024);
        let replay = replay.unwrap();
        tx.send(Ok(data("ab"))).await.unwrap();
        let Some(Ok(Frame::Data(d))) = first.next().await else {
            panic!()
        };
        assert_eq!(&d[..], b"ab");
        // The first attempt fails here; the retry starts over and gets the rest too.
        let second = replay.again();
        assert!(matches!(first.next().await, Some(Err(BodyError::Reset))));
        tx.send(Ok(data("cd"))).await.unwrap();
        drop(tx);
        assert_eq!(collect(second).await, Ok("abcd".into()));
        assert!(replay.can_replay());
        assert_eq!(collect(replay.again()).await, Ok("abcd".into()));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_over_the_limit_streams_but_cannot_be_sent_again() {
        let (tx, body) = Body::channel();
        let (first, replay) = Replay::start(body, true, 3);
        let replay = replay.unwrap();
        tx.send(Ok(data("ab"))).await.unwrap();
        tx.send(Ok(data("cd"))).await.unwrap();
        drop(tx);
        assert_eq!(collect(first).await, Ok("abcd".into()));
        assert!(!replay.can_replay());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_retry_policy_no_holding() {
        let (_tx, body) = Body::channel();
        let (b, replay) = Replay::start(body, false, 1024);
        assert!(matches!(b, Body::Channel(_)) && replay.is_none());
        let (b, replay) = Replay::start(Body::Full("x".into()), false, 1024);
        assert!(matches!(b, Body::Full(_)) && replay.is_some_and(|r| r.can_replay()));
    }
}
