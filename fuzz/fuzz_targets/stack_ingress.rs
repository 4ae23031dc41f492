//! The userspace stack's ingress path: any bytes as a sequence of Ethernet frames, into a stack
//! with a listener, an accepted connection and an outgoing one. Nothing may panic, and frames
//! for no connection must never create state except through a listener.
//!
//! Input: byte 0 selects whether checksums are verified (bit 0: mutated frames rarely keep a
//! valid checksum, so most runs skip it to reach TCP) and whether a kernel fallback takes what
//! the stack does not serve (bit 1; bit 2 narrows its rules to TCP port 22 and ICMP); then
//! frames as [u16 big-endian length][bytes].
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_tcpstack::fallback::{KernelPath, Protocol, Rule, Rules};
use sluice_tcpstack::sim::QueueDevice;
use sluice_tcpstack::{Instant, PacketDevice, Stack, StackConfig, TcpTuning};
use std::task::Waker;

struct Device(QueueDevice, bool);

impl PacketDevice for Device {
    fn caps(&self) -> sluice_tcpstack::DeviceCaps {
        let mut c = self.0.caps();
        c.rx_checksum_verified = self.1;
        c
    }
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        self.0.recv(now, buf)
    }
    fn send(
        &mut self,
        now: Instant,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> std::io::Result<()> {
        self.0.sent.clear();
        self.0.send(now, len, fill)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let config = StackConfig {
        mac: [2, 0, 0, 0, 0, 2],
        addresses: vec![
            ("10.0.0.2".parse().unwrap(), 24),
            ("fd00::2".parse().unwrap(), 64),
        ],
        gateways: vec![],
        seed: 2,
        tcp: TcpTuning {
            rx_buffer: 8192,
            tx_buffer: 8192,
            max_half_open: 8,
            accept_backlog: 8,
            ..TcpTuning::default()
        },
        max_flows: 64,
    };
    let mut stack = Stack::new(
        &config,
        Device(QueueDevice::new(1500), mode & 1 == 1),
        Instant::from_millis(0),
    )
    .unwrap();
    if mode & 2 != 0 {
        let rules = if mode & 4 != 0 {
            Rules(vec![
                Rule {
                    protocol: Protocol::Tcp,
                    ports: vec![22..=22],
                },
                Rule {
                    protocol: Protocol::Icmp,
                    ports: vec![],
                },
            ])
        } else {
            Rules::everything()
        };
        stack.set_kernel_path(KernelPath::new(Box::new(QueueDevice::new(1500)), rules));
    }
    let listener = stack.listen("0.0.0.0:7".parse().unwrap()).unwrap();
    let _out = stack.connect("10.0.0.1:5000".parse().unwrap()).unwrap();
    let mut t = 0;
    let mut accepted = Vec::new();
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        t += 3;
        stack.receive_frame(Instant::from_millis(t), frame);
        while let Some((f, _)) = stack.accept(listener, Waker::noop()) {
            accepted.push(f);
        }
        for f in &accepted {
            stack.with_socket(*f, |s| {
                let mut buf = [0u8; 512];
                if let Ok(n) = s.recv_slice(&mut buf) {
                    let _ = s.send_slice(&buf[..n]);
                }
            });
        }
        stack.advance(Instant::from_millis(t));
        assert!(stack.flow_count() <= 64);
    }
    // Let every timer run out: retransmissions, TIME-WAIT, keep-alives.
    for s in 1..=30 {
        stack.advance(Instant::from_millis(t + s * 10_000));
    }
});
