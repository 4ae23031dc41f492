//! Outgoing connections.

use super::Connection;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    Io(io::Error),
}

impl ConnectError {
    /// The failure is this process's or host's (out of descriptors, buffers or local ports), not
    /// the upstream's: it says nothing about the host and must not make it back off.
    pub fn is_local(&self) -> bool {
        match self {
            ConnectError::Timeout => false,
            ConnectError::Io(e) => matches!(
                e.raw_os_error(),
                Some(
                    libc::EMFILE
                        | libc::ENFILE
                        | libc::ENOBUFS
                        | libc::ENOMEM
                        | libc::EADDRNOTAVAIL
                )
            ),
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => write!(f, "connect timed out"),
            ConnectError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Connects to `addr` within `timeout`, through this worker's userspace stack if it has one,
/// else through the kernel. Nagle is off either way: a proxy must not delay small writes.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Connection, ConnectError> {
    if let Some(stack) = super::userspace::current() {
        let connecting = sluice_tcpstack::socket::TcpStream::connect(&stack, addr);
        return match tokio::time::timeout(timeout, connecting).await {
            Err(_) => Err(ConnectError::Timeout),
            Ok(Err(e)) => Err(ConnectError::Io(e)),
            Ok(Ok(s)) => Ok(Connection::Stream(Box::new(s))),
        };
    }
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(s)) => s,
    };
    stream.set_nodelay(true).map_err(ConnectError::Io)?;
    Ok(Connection::Kernel(stream))
}
