//! A guard in front of the h2 crate against control-frame floods, which h2 absorbs without
//! closing the connection: a client sending SETTINGS or PING frames (each of which sluice must
//! acknowledge), PRIORITY frames, or empty DATA frames by the thousand. Envoy closes such a
//! connection (max_outbound_control_frames, max_inbound_priority_frames_per_stream,
//! max_consecutive_inbound_frames_with_empty_payload); so does this guard: it follows the
//! frame headers in the bytes the connection reads, and fails the read — h2 then ends the
//! connection and the server counts it — once more than [`MAX_PER_SECOND`] such frames arrive
//! within one second.
//!
//! It also paces a draining connection's GOAWAYs as Envoy's `drain_timeout` does. h2's
//! graceful shutdown sends GOAWAY (last stream 2^31-1) and a PING, and the final GOAWAY (last
//! stream actually taken) as soon as the client acknowledges that PING: one round trip of grace
//! for streams racing the shutdown. Envoy gives them `drain_timeout` (5 s by default) and sends
//! its final GOAWAY then, whether or not the client answers anything. So the guard hides the
//! client's acknowledgement from h2 (its last payload byte is changed: h2 takes it for a PING
//! it never sent and ignores it) and, once the server [`DrainPacing::release`]s it, hands h2
//! an acknowledgement of its own at the next frame boundary.

use crate::io::ByteStream;
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Control frames a well-behaved client sends in a second are a handful; 1,000 is far above.
pub const MAX_PER_SECOND: u32 = 1_000;

const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const PRIORITY: u8 = 0x2;
const DATA: u8 = 0x0;
const ACK: u8 = 0x1;

/// The payload of the PING h2 sends with its first GOAWAY (h2's `Ping::SHUTDOWN`, which it does
/// not export); the drain test (tests/tests/http_drain.rs) fails if h2 ever changes it.
const SHUTDOWN_PING: [u8; 8] = [0x0b, 0x7b, 0xa2, 0xf0, 0x8b, 0x9b, 0xfe, 0x54];

/// PING with ACK on stream 0, acknowledging [`SHUTDOWN_PING`].
const SHUTDOWN_PONG: [u8; 17] = {
    let mut f = [0, 0, 8, PING, ACK, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut i = 0;
    while i < 8 {
        f[9 + i] = SHUTDOWN_PING[i];
        i += 1;
    }
    f
};

/// When a draining connection may send its final GOAWAY: shared by the server, which knows
/// the drain_timeout, and the connection's guard, which holds the client's PING
/// acknowledgement back from h2 until then.
#[derive(Default)]
pub struct DrainPacing {
    released: Cell<bool>,
}

impl DrainPacing {
    /// drain_timeout has passed: h2 gets the PING acknowledgement that makes it send the final
    /// GOAWAY (and then close once the streams it took are done). Called from the task that
    /// drives the connection, which reads from the guard the next time it polls it.
    pub fn release(&self) {
        self.released.set(true);
    }
}

/// Where the scan is in the incoming byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Bytes of the client's connection preface still to skip.
    Preface(usize),
    /// Collecting a 9-byte frame header: how many bytes of it are in `header`.
    Header(usize),
    /// Skipping a frame's payload: bytes left.
    Payload(usize),
    /// In a PING acknowledgement's 8-byte payload: how many bytes of it are in `pong`.
    Pong(usize),
}

pub struct FrameGuard<S> {
    inner: S,
    scan: Scan,
    header: [u8; 9],
    window_start: Option<Instant>,
    in_window: u32,
    pacing: Rc<DrainPacing>,
    pong: [u8; 8],
    /// Bytes of h2's own PING acknowledgement already handed to h2 (see [`DrainPacing`]).
    pong_given: usize,
}

impl<S> FrameGuard<S> {
    /// `preface`: whether the client's 24-byte preface is still to come through this stream.
    pub fn new(inner: S, preface: bool, pacing: Rc<DrainPacing>) -> FrameGuard<S> {
        FrameGuard {
            inner,
            scan: if preface {
                Scan::Preface(24)
            } else {
                Scan::Header(0)
            },
            header: [0; 9],
            window_start: None,
            in_window: 0,
            pacing,
            pong: [0; 8],
            pong_given: 0,
        }
    }

    /// Follows `bytes`; `Err` once the flood limit is passed. A client's acknowledgement of h2's
    /// shutdown PING is altered in place (see [`DrainPacing`]).
    pub fn observe(&mut self, mut bytes: &mut [u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.scan {
                Scan::Pong(have) => {
                    let n = (8 - have).min(bytes.len());
                    self.pong[have..have + n].copy_from_slice(&bytes[..n]);
                    if have + n == 8 && self.pong == SHUTDOWN_PING {
                        // h2 parses a frame once all of it is in: this byte is not seen yet.
                        bytes[n - 1] ^= 0xff;
                    }
                    bytes = &mut bytes[n..];
                    self.scan = if have + n == 8 {
                        Scan::Header(0)
                    } else {
                        Scan::Pong(have + n)
                    };
                }
                Scan::Preface(left) => {
                    let n = left.min(bytes.len());
                    bytes = &mut bytes[n..];
                    self.scan = if left == n {
                        Scan::Header(0)
                    } else {
                        Scan::Preface(left - n)
                    };
                }
                Scan::Payload(left) => {
                    let n = left.min(bytes.len());
                    bytes = &mut bytes[n..];
                    self.scan = if left == n {
                        Scan::Header(0)
                    } else {
                        Scan::Payload(left - n)
                    };
                }
                Scan::Header(have) => {
                    let n = (9 - have).min(bytes.len());
                    self.header[have..have + n].copy_from_slice(&bytes[..n]);
                    bytes = &mut bytes[n..];
                    if have + n < 9 {
                        self.scan = Scan::Header(have + n);
                        continue;
                    }
                    let h = self.header;
                    let len =
                        (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                    let (kind, flags) = (h[3], h[4]);
                    let counted = match kind {
                        SETTINGS | PING => flags & ACK == 0,
                        PRIORITY => true,
                        // An empty DATA frame without END_STREAM carries nothing at all.
                        DATA => len == 0 && flags & ACK == 0,
                        _ => false,
                    };
                    if counted {
                        self.count()?;
                    }
                    let stream_zero = h[5..9] == [0; 4];
                    self.scan = if len == 0 {
                        Scan::Header(0)
                    } else if kind == PING && flags & ACK != 0 && len == 8 && stream_zero {
                        Scan::Pong(0)
                    } else {
                        Scan::Payload(len)
                    };
                }
            }
        }
        Ok(())
    }

    fn count(&mut self) -> io::Result<()> {
        let now = Instant::now();
        match self.window_start {
            Some(t) if now.duration_since(t).as_secs() < 1 => self.in_window += 1,
            _ => {
                self.window_start = Some(now);
                self.in_window = 1;
            }
        }
        if self.in_window > MAX_PER_SECOND {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("HTTP/2 control-frame flood: more than {MAX_PER_SECOND} SETTINGS, PING, PRIORITY or empty DATA frames in a second"),
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pacing.released.get() && this.pong_given < SHUTDOWN_PONG.len() {
            if this.scan == Scan::Header(0) {
                // Between frames: h2's acknowledgement goes in here.
                let n = (SHUTDOWN_PONG.len() - this.pong_given).min(buf.remaining());
                buf.put_slice(&SHUTDOWN_PONG[this.pong_given..this.pong_given + n]);
                this.pong_given += n;
                return Poll::Ready(Ok(()));
            }
            // In a frame: read no further than its end, so that the next read is between them.
            let left = match this.scan {
                Scan::Preface(n) | Scan::Payload(n) => n,
                Scan::Header(have) => 9 - have,
                Scan::Pong(have) => 8 - have,
            };
            let mut part = buf.take(left);
            let r = Pin::new(&mut this.inner).poll_read(cx, &mut part);
            let got = part.filled().len();
            if let Poll::Ready(Ok(())) = r {
                // SAFETY: `part` wrote (initialised) these bytes of `buf`'s unfilled part.
                unsafe { buf.assume_init(got) };
                buf.advance(got);
                let start = buf.filled().len() - got;
                return Poll::Ready(this.observe(&mut buf.filled_mut()[start..]));
            }
            return r;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => Poll::Ready(this.observe(&mut buf.filled_mut()[before..])),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Wraps a downstream HTTP/2 connection whose preface has not been read yet.
pub fn guard(io: Box<dyn ByteStream>, pacing: Rc<DrainPacing>) -> FrameGuard<Box<dyn ByteStream>> {
    FrameGuard::new(io, true, pacing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut f = vec![
            (n >> 16) as u8,
            (n >> 8) as u8,
            n as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn counts_control_frames_across_reads_and_trips_past_the_limit() {
        let mut g = FrameGuard::new((), true, Rc::default());
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(0x1, 0x4, &[0x82; 40])); // HEADERS, not counted
        stream.extend(frame(SETTINGS, ACK, &[])); // an ACK, not counted
        for _ in 0..MAX_PER_SECOND {
            stream.extend(frame(PING, 0, &[0; 8]));
        }
        // Fed in awkward pieces, the count is exact: the limit itself is allowed...
        for piece in stream.chunks(7) {
            g.observe(&mut piece.to_vec()).unwrap();
        }
        assert_eq!(g.in_window, MAX_PER_SECOND);
        // ...one more is not.
        assert!(g.observe(&mut frame(SETTINGS, 0, &[])).is_err());
    }

    #[test]
    fn hides_the_acknowledgement_of_the_shutdown_ping_however_it_is_cut() {
        let mut stream = frame(SETTINGS, ACK, &[]);
        stream.extend(frame(PING, ACK, &[7; 8])); // some other PING's: left alone
        stream.extend(SHUTDOWN_PONG);
        let at = stream.len() - 1;
        for cut in 1..stream.len() {
            let mut g = FrameGuard::new((), false, Rc::default());
            let mut seen = stream.clone();
            let (a, b) = seen.split_at_mut(cut);
            g.observe(a).unwrap();
            g.observe(b).unwrap();
            assert_eq!(seen[..at], stream[..at], "cut at {cut}");
            assert_ne!(seen[at], stream[at], "cut at {cut}");
            assert_eq!(g.scan, Scan::Header(0));
        }
    }
}
