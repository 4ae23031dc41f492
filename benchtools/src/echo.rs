//! The echo server: as little work per request as a Bolt server can do, so the benchmark
//! measures the proxy.

use bytes::BytesMut;
use sluice::protocol::bolt::{encode_response, status, Bolt};
use sluice::protocol::xprotocol::{Codec, FrameKind, LocalReply};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let l = TcpListener::bind(listen).await?;
    println!("listening {}", l.local_addr()?);
    loop {
        let (s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::task::spawn_local(async move {
            if let Err(e) = connection(s).await {
                eprintln!("echo connection ended: {e}");
            }
        });
    }
}

async fn connection(mut s: TcpStream) -> std::io::Result<()> {
    let mut inbuf = BytesMut::with_capacity(256 * 1024);
    let mut out = BytesMut::with_capacity(256 * 1024);
    loop {
        if s.read_buf(&mut inbuf).await? == 0 {
            return Ok(());
        }
        loop {
            let head = match Bolt.decode(&inbuf, 16 << 20) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            };
            let frame = inbuf.split_to(head.len);
            match head.kind {
                FrameKind::Request => {
                    // Echo the content: everything after the fixed header, class and header map.
                    encode_response(&frame, status::SUCCESS, content(&frame), &mut out)
                }
                FrameKind::Heartbeat => {
                    Bolt.local_reply(&frame, LocalReply::HeartbeatAck, &mut out)
                }
                _ => {}
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if inbuf.capacity() - inbuf.len() < 64 * 1024 {
            inbuf.reserve(256 * 1024);
        }
    }
}

/// The content of a v1 request (the generator sends v1 without CRC).
fn content(frame: &[u8]) -> &[u8] {
    if frame.len() < 22 || frame[0] != 1 {
        return &[];
    }
    let class = u16::from_be_bytes([frame[14], frame[15]]) as usize;
    let header = u16::from_be_bytes([frame[16], frame[17]]) as usize;
    frame.get(22 + class + header..).unwrap_or(&[])
}
