//! DPDK for real (feature `dpdk`), on a virtual device with ordinary memory: EAL up, a mempool,
//! a net_ring port (its TX ring is its RX ring) started; a frame sent comes back byte for byte.
//! Bad settings are errors with DPDK's reason, not aborts. One test: the EAL comes up once per
//! process.
#![cfg(feature = "dpdk")]

use sluice_hwconfig::dpdk::{Eal, Mempool, Port};

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
    let e = Port::start(&eal, "net_nosuch0", 1, 1, 256, 256, &pool)
        .err()
        .unwrap();
    assert!(
        e.contains("port net_nosuch0: DPDK has no such device"),
        "{e}"
    );
    let port = Port::start(&eal, "net_ring0", 1, 1, 256, 256, &pool).unwrap();
    let frame: Vec<u8> = (0..300u16).map(|i| (i * 7) as u8).collect();
    assert!(port.send(0, &pool, &frame).unwrap());
    let mut got = Vec::new();
    for _ in 0..1000 {
        if port.receive(0, 32, |f| got.push(f.to_vec())) > 0 {
            break;
        }
    }
    assert_eq!(got, vec![frame]);
    let e = port.send(0, &pool, &vec![0u8; 5000]).unwrap_err();
    assert!(e.contains("does not fit an mbuf"), "{e}");
}
