//! Listening sockets: one per worker per listener address, all bound with SO_REUSEPORT so the
//! kernel spreads incoming connections over the workers with no shared accept queue.

use super::Connection;
use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// A bind failure in words a user can act on.
#[derive(Debug)]
pub struct BindError {
    pub address: SocketAddr,
    pub source: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addr = self.address;
        match self.source.raw_os_error() {
            Some(libc::EADDRINUSE) => write!(f, "cannot listen on {addr}: the address is already in use by another socket"),
            Some(libc::EACCES) => write!(
                f,
                "cannot listen on {addr}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            ),
            Some(libc::EADDRNOTAVAIL) => {
                write!(f, "cannot listen on {addr}: no interface of this host has that address")
            }
            _ => write!(f, "cannot listen on {addr}: {}", self.source),
        }
    }
}

impl std::error::Error for BindError {}

fn socket_for(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR lets a restarted sluice bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// Binds `count` SO_REUSEPORT listening sockets on `addr`, one per worker.
///
/// SO_REUSEPORT alone would let sluice silently share a port with any other SO_REUSEPORT socket
/// of the same user (another proxy, a stale sluice). So the address is first probed with a plain
/// bind, which fails if anyone holds it. Port 0 resolves to one ephemeral port shared by all.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
) -> Result<Vec<TcpListener>, BindError> {
    let err = |source| BindError {
        address: addr,
        source,
    };
    let probe = socket_for(addr).map_err(err)?;
    probe.bind(&addr.into()).map_err(err)?;
    let bound = probe.local_addr().map_err(err)?.as_socket().unwrap_or(addr);
    drop(probe);
    let err = |source| BindError {
        address: bound,
        source,
    };
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let s = socket_for(bound).map_err(err)?;
        s.set_reuse_port(true).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        s.bind(&bound.into()).map_err(err)?;
        s.listen(backlog.min(i32::MAX as u32) as i32).map_err(err)?;
        out.push(s.into());
    }
    Ok(out)
}

/// A worker's listening endpoint on either transport.
pub enum Acceptor {
    Kernel(tokio::net::TcpListener),
    Stack(sluice_tcpstack::socket::TcpListener),
}

impl Acceptor {
    pub async fn accept(&self) -> io::Result<(Connection, SocketAddr)> {
        match self {
            Acceptor::Kernel(l) => {
                let (s, peer) = l.accept().await?;
                // Nagle off downstream too: the proxy adds no latency to small writes.
                let _ = s.set_nodelay(true);
                Ok((Connection::Kernel(s), peer))
            }
            Acceptor::Stack(l) => {
                let (s, peer) = l.accept().await?;
                Ok((Connection::Stream(Box::new(s)), peer))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_in_use_is_reported_even_against_reuseport_holders() {
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = plain.local_addr().unwrap();
        let e = bind_reuseport(addr, 2, 16).unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        drop(plain);

        let ours = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2, 16).unwrap();
        let port = ours[0].local_addr().unwrap().port();
        assert_eq!(ours[1].local_addr().unwrap().port(), port);
        let again = bind_reuseport(ours[0].local_addr().unwrap(), 1, 16).unwrap_err();
        assert_eq!(again.source.raw_os_error(), Some(libc::EADDRINUSE));
    }
}
