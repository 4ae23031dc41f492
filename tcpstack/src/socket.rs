//! The application side of the stack: listeners and byte streams with tokio's `AsyncRead` /
//! `AsyncWrite`, so the dataplane's protocol, stream and proxy layers run on the userspace stack
//! exactly as they run on kernel sockets. Everything here is single-threaded: a stack belongs to
//! one worker, and its streams are only used on that worker's thread.

use crate::device::PacketDevice;
use crate::stack::{FlowRef, ListenerId, Stack, StackError};
use smoltcp::socket::tcp::{self, RecvError, SendError};
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stack shared by its driver task and the connections on it.
pub type SharedStack = Rc<RefCell<Stack<Box<dyn PacketDevice>>>>;

fn to_io(e: StackError) -> io::Error {
    let kind = match e {
        StackError::AddressInUse(_) => io::ErrorKind::AddrInUse,
        StackError::Unaddressable(_) => io::ErrorKind::AddrNotAvailable,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection no longer exists")
}

pub struct TcpListener {
    stack: SharedStack,
    id: ListenerId,
    local: SocketAddr,
}

impl TcpListener {
    pub fn bind(stack: &SharedStack, addr: SocketAddr) -> io::Result<TcpListener> {
        let id = stack.borrow_mut().listen(addr).map_err(to_io)?;
        Ok(TcpListener {
            stack: stack.clone(),
            id,
            local: addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (flow, peer) =
            poll_fn(
                |cx| match self.stack.borrow_mut().accept(self.id, cx.waker()) {
                    Some(x) => Poll::Ready(x),
                    None => Poll::Pending,
                },
            )
            .await;
        Ok((
            TcpStream {
                stack: self.stack.clone(),
                flow,
            },
            peer,
        ))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        if let Ok(mut s) = self.stack.try_borrow_mut() {
            s.unlisten(self.id);
        }
    }
}

pub struct TcpStream {
    stack: SharedStack,
    flow: FlowRef,
}

impl TcpStream {
    /// Opens a connection and waits for the handshake to finish (or fail).
    pub async fn connect(stack: &SharedStack, addr: SocketAddr) -> io::Result<TcpStream> {
        let flow = stack.borrow_mut().connect(addr).map_err(to_io)?;
        let stream = TcpStream {
            stack: stack.clone(),
            flow,
        };
        poll_fn(|cx| stream.poll_established(cx, addr)).await?;
        Ok(stream)
    }

    fn poll_established(&self, cx: &mut Context<'_>, addr: SocketAddr) -> Poll<io::Result<()>> {
        let state = self.stack.borrow_mut().inspect(self.flow, |s| {
            let state = s.state();
            if matches!(state, tcp::State::SynSent | tcp::State::SynReceived) {
                s.register_send_waker(cx.waker());
            }
            state
        });
        match state {
            None | Some(tcp::State::Closed) | Some(tcp::State::TimeWait) => {
                let stats = self.stack.borrow().stats();
                stats.connect_failed.inc();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("connect to {addr}: refused or unreachable"),
                )))
            }
            Some(tcp::State::SynSent | tcp::State::SynReceived) => Poll::Pending,
            Some(_) => Poll::Ready(Ok(())),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stack
            .borrow()
            .endpoints(self.flow)
            .map(|e| e.0)
            .ok_or_else(gone)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stack
            .borrow()
            .endpoints(self.flow)
            .map(|e| e.1)
            .ok_or_else(gone)
    }

    /// Resets the connection (RST) instead of closing it.
    pub fn abort(&self) {
        self.stack
            .borrow_mut()
            .with_socket(self.flow, |s| s.abort());
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut stack = self.stack.borrow_mut();
        let result = stack.inspect(self.flow, |s| {
            match s.recv_slice(buf.initialize_unfilled()) {
                Ok(0) => {
                    s.register_recv_waker(cx.waker());
                    Poll::Pending
                }
                Ok(n) => Poll::Ready(Ok(n)),
                Err(RecvError::Finished) => Poll::Ready(Ok(0)),
                Err(RecvError::InvalidState) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "connection reset",
                ))),
            }
        });
        match result {
            None => Poll::Ready(Err(gone())),
            Some(Poll::Ready(Ok(n))) => {
                if n > 0 {
                    buf.advance(n);
                    // Reading opened the window; the stack decides whether the peer must hear.
                    stack.mark_dirty_ref(self.flow);
                }
                Poll::Ready(Ok(()))
            }
            Some(other) => other.map(|r| r.map(|_| ())),
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut stack = self.stack.borrow_mut();
        let result = stack.inspect(self.flow, |s| match s.send_slice(data) {
            Ok(0) if !data.is_empty() => {
                s.register_send_waker(cx.waker());
                Poll::Pending
            }
            Ok(n) => Poll::Ready(Ok(n)),
            Err(SendError::InvalidState) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "connection closed for sending",
            ))),
        });
        match result {
            None => Poll::Ready(Err(gone())),
            Some(Poll::Ready(Ok(n))) => {
                stack.mark_dirty_ref(self.flow);
                Poll::Ready(Ok(n))
            }
            Some(other) => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Half-close: sends FIN; reading goes on until the peer closes too.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stack
            .borrow_mut()
            .with_socket(self.flow, |s| s.close());
        Poll::Ready(Ok(()))
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if let Ok(mut s) = self.stack.try_borrow_mut() {
            s.release(self.flow);
        }
    }
}
