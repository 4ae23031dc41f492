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

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => write!(f, "connect timed out"),
            ConnectError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Connects to `addr` within `timeout`. Nagle is off: a proxy must not add delay to small writes.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Connection, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(s)) => s,
    };
    stream.set_nodelay(true).map_err(ConnectError::Io)?;
    Ok(Connection::Kernel(stream))
}
