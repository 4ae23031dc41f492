//! The load generator: `connections` connections, each keeping `pipeline` requests in flight.
//! A response frees its slot, and the slot's next request leaves with the same write as the
//! other requests freed by that read.

use super::histogram::Histogram;
use bytes::BytesMut;
use sluice::protocol::bolt::{Bolt, RequestSpec, PROTO_V1};
use sluice::protocol::xprotocol::Codec;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(clap::Args)]
pub struct Options {
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, default_value_t = 50)]
    connections: usize,
    #[arg(long, default_value_t = 20)]
    pipeline: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds at the start not counted (connections and pools warm up).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    #[arg(long, default_value = "com.alipay.sofa.bench.EchoService:1.0")]
    service: String,
}

#[derive(Default)]
struct Totals {
    ok: u64,
    failed: u64,
    /// Connections that ended before the run did (closed, reset or stalled).
    connection_errors: u64,
}

pub async fn run(o: Options) -> std::io::Result<()> {
    let payload: Vec<u8> = (0..o.payload).map(|i| (i * 31 % 251) as u8).collect();
    let mut template = BytesMut::new();
    RequestSpec {
        proto: PROTO_V1,
        ver1: 1,
        crc: false,
        oneway: false,
        request_id: 0,
        timeout_ms: 5000,
        class: b"com.alipay.sofa.rpc.core.request.SofaRequest",
        headers: &[("service", &o.service)],
        content: &payload,
    }
    .encode(&mut template);
    let template = Rc::new(template.to_vec());
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(o.warmup);
    let end = warm_end + Duration::from_secs_f64(o.seconds);
    let hist = Rc::new(RefCell::new(Histogram::new()));
    let totals = Rc::new(RefCell::new(Totals::default()));
    let mut tasks = Vec::new();
    for _ in 0..o.connections {
        let s = TcpStream::connect(o.target).await?;
        s.set_nodelay(true)?;
        let (t, h, tot) = (template.clone(), hist.clone(), totals.clone());
        let pipeline = o.pipeline;
        tasks.push(tokio::task::spawn_local(async move {
            if let Err(e) = connection(s, t, pipeline, warm_end, end, h, tot.clone()).await {
                eprintln!("load connection failed: {e}");
                tot.borrow_mut().connection_errors += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let h = hist.borrow();
    let t = totals.borrow();
    let secs = o.seconds;
    println!(
        "{}",
        serde_json::json!({
            "requests": h.count(),
            "failed": t.failed,
            "connection_errors": t.connection_errors,
            "ok": t.ok,
            "seconds": secs,
            "qps": h.count() as f64 / secs,
            "p50_us": h.quantile(0.50),
            "p99_us": h.quantile(0.99),
            "p999_us": h.quantile(0.999),
            "connections": o.connections,
            "pipeline": o.pipeline,
            "payload": o.payload,
        })
    );
    Ok(())
}

async fn connection(
    mut s: TcpStream,
    template: Rc<Vec<u8>>,
    pipeline: usize,
    warm_end: Instant,
    end: Instant,
    hist: Rc<RefCell<Histogram>>,
    totals: Rc<RefCell<Totals>>,
) -> std::io::Result<()> {
    let mut sent_at = vec![Instant::now(); pipeline];
    let mut out = BytesMut::with_capacity(template.len() * pipeline);
    let put = |out: &mut BytesMut, id: u32| {
        let at = out.len();
        out.extend_from_slice(&template);
        Bolt.set_request_id(&mut out[at..], u64::from(id));
    };
    for (slot, at) in sent_at.iter_mut().enumerate() {
        put(&mut out, slot as u32);
        *at = Instant::now();
    }
    s.write_all(&out).await?;
    out.clear();
    let mut inbuf = BytesMut::with_capacity(256 * 1024);
    let mut outstanding = pipeline;
    while outstanding > 0 {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read_buf(&mut inbuf)).await;
        match n {
            Ok(Ok(0)) | Err(_) => {
                return Err(std::io::Error::other("connection closed or stalled"))
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(_)) => {}
        }
        let now = Instant::now();
        let sending = now < end;
        loop {
            let head = match Bolt.decode(&inbuf, 16 << 20) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            };
            let _ = inbuf.split_to(head.len);
            let id = head.request_id as u32;
            let slot = id as usize % pipeline;
            if now >= warm_end && now < end {
                hist.borrow_mut()
                    .record(now.duration_since(sent_at[slot]).as_micros() as u64);
                let mut t = totals.borrow_mut();
                if head.status == 0 {
                    t.ok += 1;
                } else {
                    t.failed += 1;
                }
            }
            if sending {
                put(&mut out, id.wrapping_add(pipeline as u32));
                sent_at[slot] = now;
            } else {
                outstanding -= 1;
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
    Ok(())
}
