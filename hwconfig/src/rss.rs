//! Receive-side scaling as a NIC computes it: the Toeplitz hash of a TCP flow's addresses and
//! ports under the port's key, and the redirection table (RETA) that turns the hash into a
//! queue. The dataplane uses it to pick source ports for its upstream connections whose
//! replies land on the connecting core's own queue; a test peer uses it to steer frames as a
//! NIC would.

use std::net::{IpAddr, SocketAddr};

/// The Toeplitz hash of `input` under `key` (which must be at least `input.len() + 4` bytes).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut result = 0u32;
    // The 32-bit window of the key that lines up with the current input bit.
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    for (i, byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                result ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - bit)) & 1);
        }
    }
    result
}

/// The hash a NIC computes for a TCP segment from `src` to `dst` (IPv4 or IPv6 TCP hash type).
pub fn tcp_flow_hash(key: &[u8], src: SocketAddr, dst: SocketAddr) -> u32 {
    let mut input = [0u8; 36];
    let mut n = 0;
    let mut put = |b: &[u8]| {
        input[n..n + b.len()].copy_from_slice(b);
        n += b.len();
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(&s.octets());
            put(&d.octets());
        }
        (s, d) => {
            put(&v6(s));
            put(&v6(d));
        }
    }
    put(&src.port().to_be_bytes());
    put(&dst.port().to_be_bytes());
    toeplitz(key, &input[..n])
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// A port's RSS as it is set: key and redirection table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssSteering {
    pub key: Vec<u8>,
    /// Entry `hash % len` is the queue; as the device reports it.
    pub reta: Vec<u16>,
}

impl RssSteering {
    /// The table a driver sets up by default: queues in turn.
    pub fn round_robin(key: Vec<u8>, entries: usize, queues: u16) -> RssSteering {
        RssSteering {
            key,
            reta: (0..entries)
                .map(|i| (i % queues.max(1) as usize) as u16)
                .collect(),
        }
    }

    /// The queue a segment from `src` to `dst` is received on.
    pub fn queue_of(&self, src: SocketAddr, dst: SocketAddr) -> u16 {
        let h = tcp_flow_hash(&self.key, src, dst);
        self.reta[h as usize % self.reta.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key and flows of Microsoft's RSS verification suite, which NIC vendors test against.
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    #[test]
    fn matches_the_published_verification_vectors() {
        let cases = [
            ("66.9.149.187:2794", "161.142.100.80:1766", 0x51cc_c178u32),
            ("199.92.111.2:14230", "65.69.140.83:4739", 0xc626_b0ea),
            ("24.19.198.95:12898", "12.22.207.184:38024", 0x5c2b_394a),
            ("38.27.205.30:48228", "209.142.163.6:2217", 0xafc7_327f),
            ("153.39.163.191:44251", "202.188.127.2:1303", 0x10e8_28a2),
            (
                "[3ffe:2501:200:1fff::7]:2794",
                "[3ffe:2501:200:3::1]:1766",
                0x4020_7d3d,
            ),
        ];
        for (src, dst, want) in cases {
            let got = tcp_flow_hash(&MS_KEY, src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!(got, want, "{src} -> {dst}");
        }
    }

    #[test]
    fn the_symmetric_key_hashes_both_directions_alike() {
        let key = crate::model::symmetric_key();
        let a: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let b: SocketAddr = "192.168.7.9:443".parse().unwrap();
        assert_eq!(tcp_flow_hash(&key, a, b), tcp_flow_hash(&key, b, a));
        let steer = RssSteering::round_robin(key, 128, 2);
        let queues: std::collections::HashSet<u16> = (40000..40064)
            .map(|p| steer.queue_of(SocketAddr::new(a.ip(), p), b))
            .collect();
        assert_eq!(queues.len(), 2, "source ports spread over both queues");
    }
}
