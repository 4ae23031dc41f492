//! IO layer: bytes in and out of connections, listeners, and the one transport seam.
//!
//! Everything above this layer (stream, proxy) sees a [`Connection`]: an ordered, bidirectional
//! byte stream with half-close. Today a connection is a kernel TCP socket; the userspace TCP
//! stack (TAP, pcap, DPDK) plugs in as another [`ByteStream`] without any change above.

pub mod affinity;
pub mod connect;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod fallback;
pub mod fds;
pub mod listener;
pub mod local_address;
pub mod scratch;
pub mod splice;
pub mod userspace;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Any transport that carries an ordered byte stream: what a non-kernel stack must provide.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> ByteStream for T {}

/// A connection as the upper layers see it. The kernel variant is kept distinct so that the
/// stream layer can use splice(2) between two kernel sockets; any other transport goes through
/// the generic byte path.
pub enum Connection {
    Kernel(TcpStream),
    Stream(Box<dyn ByteStream>),
}

impl Connection {
    pub fn kernel(&self) -> Option<&TcpStream> {
        match self {
            Connection::Kernel(s) => Some(s),
            Connection::Stream(_) => None,
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Kernel(s) => Pin::new(s).poll_read(cx, buf),
            Connection::Stream(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Kernel(s) => Pin::new(s).poll_write(cx, buf),
            Connection::Stream(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Kernel(s) => Pin::new(s).poll_flush(cx),
            Connection::Stream(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Kernel(s) => Pin::new(s).poll_shutdown(cx),
            Connection::Stream(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The reading side of a split connection.
pub type ReadSide = Box<dyn AsyncRead + Unpin>;
/// The writing side of a split connection.
pub type WriteSide = Box<dyn AsyncWrite + Unpin>;

impl Connection {
    /// Splits into halves a reader task and a writer task can own. Kernel sockets split without
    /// a lock; other streams share one behind tokio's split.
    pub fn split(self) -> (ReadSide, WriteSide) {
        match self {
            Connection::Kernel(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Connection::Stream(s) => {
                let (r, w) = tokio::io::split(s);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

/// A stream that first replays bytes already read from it (protocol detection looked at them),
/// then continues with the stream itself.
pub struct Prefixed<S> {
    prefix: bytes::Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: bytes::Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            if this.prefix.is_empty() {
                // An empty slice still holds its whole buffer alive: let it go.
                this.prefix = bytes::Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
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
