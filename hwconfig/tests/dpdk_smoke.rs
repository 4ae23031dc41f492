//! DPDK for real (feature `dpdk`), on a virtual device with ordinary memory: EAL up, a mempool,
//! a net_ring port (its TX ring is its RX ring) started; a frame sent comes back byte for byte.
//! Bad settings are errors with DPDK's reason, not aborts. One test: the EAL comes up once per
//! process.
#![cfg(feature = "dpdk")]

use sluice_hwconfig::dpdk::{Eal, Mempool, Port, PortSetup, Queued, RxBurst, TxBurst};

fn setup<'a>(device: &'a str, queues: u16, mtu: u16, pools: &'a [&'a Mempool]) -> PortSetup<'a> {
    PortSetup {
        device,
        rx_queues: queues,
        tx_queues: queues,
        rx_descriptors: 256,
        tx_descriptors: 256,
        mtu,
        rss_key: &[0x6d, 0x5a],
        rx_pools: pools,
    }
}

#[test]
fn net_ring_loops_a_frame_back_and_bad_settings_are_errors() {
    let args: Vec<String> =
        "sluice -l 0 --no-huge -m 256 --no-shconf --no-pci --vdev net_ring0 --log-level=error"
            .split(' ')
            .map(str::to_string)
            .collect();
    let eal = Eal::init(&args).expect("EAL init");
    assert!(Eal::init(&args)
        .err()
        .unwrap()
        .contains("already initialised"));
    assert_eq!(eal.ports_available(), 1);
    let pool = Mempool::create(&eal, "smoke", 1023, 32, 2176).unwrap();
    let pools = [&pool];
    let e = Port::start(&eal, &setup("net_nosuch0", 1, 1500, &pools))
        .err()
        .unwrap();
    assert!(
        e.contains("port net_nosuch0: DPDK has no such device"),
        "{e}"
    );
    let e = Port::start(&eal, &setup("net_ring0", 1, 9000, &pools))
        .err()
        .unwrap();
    assert!(
        e.starts_with("port net_ring0: configure 1 RX / 1 TX queues, mtu 9000:"),
        "{e}"
    );
    let e = Port::start(&eal, &setup("net_ring0", 1024, 1500, &pools))
        .err()
        .unwrap();
    assert!(
        e.contains("rx_queues 1024 / tx_queues 1024: the device has at most"),
        "{e}"
    );
    let port = Port::start(&eal, &setup("net_ring0", 1, 1500, &pools)).unwrap();
    // A ring hashes nothing: the steering is the programmed key and a round-robin table.
    assert!(!port.rss_hardware && !port.reta_queried);
    assert_eq!(port.steering.reta.len(), 128);
    // One frame out and back, byte for byte.
    let frame: Vec<u8> = (0..300u16).map(|i| (i * 7) as u8).collect();
    let mut tx = TxBurst::default();
    let mut rx = RxBurst::default();
    let q = tx
        .push(&port, 0, &pool, frame.len(), &mut |b| {
            b.copy_from_slice(&frame)
        })
        .unwrap();
    assert_eq!(q, Queued::Yes);
    assert_eq!(tx.flush(&port, 0), 1);
    let mut got = Vec::new();
    for _ in 0..1000 {
        rx.refill(&port, 0);
        while let Some((ptr, len)) = rx.next_frame() {
            // SAFETY: valid until the next refill.
            got.push(unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec());
        }
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got, vec![frame]);
    let e = tx.push(&port, 0, &pool, 5000, &mut |_| {}).unwrap_err();
    assert!(e.contains("does not fit an mbuf"), "{e}");

    // Bursts: frames written into mbufs, sent together, read back in place.
    for i in 0..40u8 {
        let q = tx
            .push(&port, 0, &pool, 64 + i as usize, &mut |b| b.fill(i))
            .unwrap();
        assert_eq!(q, Queued::Yes);
    }
    while tx.pending() > 0 {
        tx.flush(&port, 0);
    }
    let mut seen = Vec::new();
    while seen.len() < 40 {
        rx.refill(&port, 0);
        while let Some((ptr, len)) = rx.next_frame() {
            // SAFETY: valid until the next refill.
            let f = unsafe { std::slice::from_raw_parts(ptr, len) };
            seen.push((f.len(), f[0]));
        }
    }
    let want: Vec<(usize, u8)> = (0..40u8).map(|i| (64 + i as usize, i)).collect();
    assert_eq!(seen, want);
}
