//! Outgoing connections.

use super::Connection;
use sluice_tcpstack::socket::SharedStack;
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

/// The network a worker's connections use: the kernel's, or the worker's own userspace stack.
/// Decided once when the worker starts and handed down, never looked up per connect.
#[derive(Clone)]
pub enum Network {
    Kernel,
    Stack(SharedStack),
    /// In-process pipes, for unit tests of the layers above under paused time.
    #[cfg(test)]
    Memory(std::rc::Rc<memory::MemoryNetwork>),
}

/// How one cluster's upstream connections are made on one worker: on the worker's network,
/// within the cluster's connect timeout. The transport socket (TLS with its ALPN) joins here,
/// so every upstream user (tcp_proxy, the RPC pools, health checks) gets it at once.
#[derive(Clone)]
pub struct Connector {
    network: Network,
    timeout: Duration,
}

impl Connector {
    pub fn new(network: Network, timeout: Duration) -> Connector {
        Connector { network, timeout }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Connects to `addr` within the timeout. Nagle is off either way: a proxy must not delay
    /// small writes.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Connection, ConnectError> {
        match &self.network {
            Network::Stack(stack) => {
                let connecting = sluice_tcpstack::socket::TcpStream::connect(stack, addr);
                match tokio::time::timeout(self.timeout, connecting).await {
                    Err(_) => Err(ConnectError::Timeout),
                    Ok(Err(e)) => Err(ConnectError::Io(e)),
                    Ok(Ok(s)) => Ok(Connection::Stream(Box::new(s))),
                }
            }
            #[cfg(test)]
            Network::Memory(net) => {
                match tokio::time::timeout(self.timeout, net.connect(addr)).await {
                    Err(_) => Err(ConnectError::Timeout),
                    Ok(r) => r.map_err(ConnectError::Io),
                }
            }
            Network::Kernel => {
                let stream =
                    match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
                        Err(_) => return Err(ConnectError::Timeout),
                        Ok(Err(e)) => return Err(ConnectError::Io(e)),
                        Ok(Ok(s)) => s,
                    };
                stream.set_nodelay(true).map_err(ConnectError::Io)?;
                Ok(Connection::Kernel(stream))
            }
        }
    }
}

#[cfg(test)]
pub mod memory {
    //! A network of in-process pipes: "listening" addresses hand each connect's far end to the
    //! test, an address nobody listens on refuses, and one marked black-holed never answers.
    use super::Connection;
    use std::cell::RefCell;
    use std::collections::{HashMap, HashSet};
    use std::io;
    use std::net::SocketAddr;
    use tokio::io::DuplexStream;
    use tokio::sync::mpsc;

    #[derive(Default)]
    pub struct MemoryNetwork {
        listeners: RefCell<HashMap<SocketAddr, mpsc::UnboundedSender<DuplexStream>>>,
        blackholed: RefCell<HashSet<SocketAddr>>,
    }

    impl MemoryNetwork {
        /// Accepts connections to `addr` from the returned receiver.
        pub fn listen(&self, addr: SocketAddr) -> mpsc::UnboundedReceiver<DuplexStream> {
            let (tx, rx) = mpsc::unbounded_channel();
            self.listeners.borrow_mut().insert(addr, tx);
            rx
        }

        /// Connects to `addr` never complete (until the connect timeout).
        pub fn blackhole(&self, addr: SocketAddr) {
            self.blackholed.borrow_mut().insert(addr);
        }

        pub async fn connect(&self, addr: SocketAddr) -> io::Result<Connection> {
            if self.blackholed.borrow().contains(&addr) {
                return std::future::pending().await;
            }
            let listeners = self.listeners.borrow();
            let tx = listeners
                .get(&addr)
                .ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            let (near, far) = tokio::io::duplex(256 * 1024);
            tx.send(far)
                .map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            Ok(Connection::Stream(Box::new(near)))
        }
    }
}
