//! A guard in front of the h2 crate against control-frame floods, which h2 absorbs without
//! closing the connection: a client sending SETTINGS or PING frames (each of which sluice must
//! acknowledge), PRIORITY frames, or empty DATA frames by the thousand. Envoy closes such a
//! connection (max_outbound_control_frames, max_inbound_priority_frames_per_stream,
//! max_consecutive_inbound_frames_with_empty_payload); so does this guard: it follows the
//! frame headers in the bytes the connection reads, and fails the read — h2 then ends the
//! connection and the server counts it — once more than [`MAX_PER_SECOND`] such frames arrive
//! within one second.

use crate::io::ByteStream;
use std::io;
use std::pin::Pin;
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

/// Where the scan is in the incoming byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Bytes of the client's connection preface still to skip.
    Preface(usize),
    /// Collecting a 9-byte frame header: how many bytes of it are in `header`.
    Header(usize),
    /// Skipping a frame's payload: bytes left.
    Payload(usize),
}

pub struct FrameGuard<S> {
    inner: S,
    scan: Scan,
    header: [u8; 9],
    window_start: Option<Instant>,
    in_window: u32,
}

impl<S> FrameGuard<S> {
    /// `preface`: whether the client's 24-byte preface is still to come through this stream.
    pub fn new(inner: S, preface: bool) -> FrameGuard<S> {
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
        }
    }

    /// Follows `bytes`; `Err` once the flood limit is passed.
    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.scan {
                Scan::Preface(left) => {
                    let n = left.min(bytes.len());
                    bytes = &bytes[n..];
                    self.scan = if left == n {
                        Scan::Header(0)
                    } else {
                        Scan::Preface(left - n)
                    };
                }
                Scan::Payload(left) => {
                    let n = left.min(bytes.len());
                    bytes = &bytes[n..];
                    self.scan = if left == n {
                        Scan::Header(0)
                    } else {
                        Scan::Payload(left - n)
                    };
                }
                Scan::Header(have) => {
                    let n = (9 - have).min(bytes.len());
                    self.header[have..have + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
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
                    self.scan = if len == 0 {
                        Scan::Header(0)
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
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => Poll::Ready(this.observe(&buf.filled()[before..])),
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
pub fn guard(io: Box<dyn ByteStream>) -> FrameGuard<Box<dyn ByteStream>> {
    FrameGuard::new(io, true)
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
        let mut g = FrameGuard::new((), true);
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(0x1, 0x4, &[0x82; 40])); // HEADERS, not counted
        stream.extend(frame(SETTINGS, ACK, &[])); // an ACK, not counted
        for _ in 0..MAX_PER_SECOND {
            stream.extend(frame(PING, 0, &[0; 8]));
        }
        // Fed in awkward pieces, the count is exact: the limit itself is allowed...
        for piece in stream.chunks(7) {
            g.observe(piece).unwrap();
        }
        assert_eq!(g.in_window, MAX_PER_SECOND);
        // ...one more is not.
        assert!(g.observe(&frame(SETTINGS, 0, &[])).is_err());
    }
}
