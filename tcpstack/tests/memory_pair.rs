//! The stack against itself over the in-memory wire, through the async socket API.

mod common;
use common::*;
use sluice_tcpstack::socket::{TcpListener, TcpStream};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn echo_server(listener: TcpListener) {
    loop {
        let (mut s, _) = listener.accept().await.unwrap();
        tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    s.shutdown().await.unwrap();
                    return;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
    }
}

async fn round_trip(
    a: &sluice_tcpstack::socket::SharedStack,
    to: SocketAddr,
    data: &[u8],
) -> Vec<u8> {
    let s = TcpStream::connect(a, to).await.unwrap();
    let (mut r, mut w) = tokio::io::split(s);
    let reader = async move {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        back
    };
    let writer = async move {
        w.write_all(data).await.unwrap();
        w.shutdown().await.unwrap();
        w
    };
    let (back, _w) = tokio::join!(reader, writer);
    back
}

#[test]
fn echo_10_mib_over_ipv4_and_ipv6() {
    run(async {
        let (a, b) = spawn_pair(None);
        tokio::task::spawn_local(echo_server(
            TcpListener::bind(&b, "0.0.0.0:7".parse().unwrap()).unwrap(),
        ));
        let data = pattern(10 << 20);
        let back = round_trip(&a, "10.0.0.2:7".parse().unwrap(), &data).await;
        assert!(
            back == data,
            "echoed bytes differ (got {} bytes)",
            back.len()
        );
        let back = round_trip(&a, "[fd00::2]:7".parse().unwrap(), &data[..1 << 20]).await;
        assert!(back == data[..1 << 20], "IPv6 echo differs");
    });
}

#[test]
fn connect_to_a_closed_port_is_refused_and_counted() {
    run(async {
        let (a, b) = spawn_pair(None);
        let e = TcpStream::connect(&a, "10.0.0.2:9".parse().unwrap())
            .await
            .err()
            .expect("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        assert_eq!(b.borrow().stats().rx_unknown_flow.get(), 1);
        assert_eq!(a.borrow().stats().connect_failed.get(), 1);
    });
}

#[test]
fn many_pending_handshakes_on_one_listener_all_get_accepted() {
    run(async {
        let (a, b) = spawn_pair(None);
        let listener = TcpListener::bind(&b, "10.0.0.2:80".parse().unwrap()).unwrap();
        // 500 connects before anyone accepts: all must complete the handshake and wait.
        let mut clients = Vec::new();
        for _ in 0..500 {
            clients.push(tokio::task::spawn_local({
                let a = a.clone();
                async move {
                    TcpStream::connect(&a, "10.0.0.2:80".parse().unwrap())
                        .await
                        .unwrap()
                }
            }));
        }
        let mut streams = Vec::new();
        for c in clients {
            streams.push(c.await.unwrap());
        }
        for _ in 0..500 {
            listener.accept().await.unwrap();
        }
        assert_eq!(b.borrow().stats().flows_half_open.get(), 0);
        assert_eq!(b.borrow().flow_count(), 500);
    });
}
