//! Load balancers over one worker's view of a cluster's hosts. State is per worker (no locks):
//! each worker balances its own connections, as Envoy's workers do.

use crate::config::LbPolicy;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a balancer needs to know of a host.
pub trait Candidate {
    fn weight(&self) -> u32;
    /// Requests (for L4: connections) this worker has open to the host.
    fn active(&self) -> u64;
}

/// xorshift64*: a fast per-worker generator; balancing needs spread, not secrecy.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn from_entropy() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let local = 0u8;
        Rng::new(t ^ ((&local as *const u8 as u64).rotate_left(32)))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

pub enum Balancer {
    /// Plain round robin when all weights are equal.
    RoundRobin {
        next: usize,
    },
    /// Weighted round robin by earliest-deadline-first scheduling (as Envoy does): each host
    /// is due again 1/weight after its last pick; the earliest deadline wins, ties by order.
    WeightedRoundRobin(Edf),
    Random,
    /// Power of two choices: the less loaded (active / weight) of two random hosts.
    LeastRequest,
    /// Consistent hashing on a ring; without a hash key, random.
    RingHash(HashRing),
    /// Maglev consistent hashing; without a hash key, random.
    Maglev(MaglevTable),
}

impl Balancer {
    /// A balancer over `hosts`; `keys` name the hosts stably (their addresses) for the
    /// consistent-hash policies.
    pub fn new<H: Candidate>(policy: LbPolicy, hosts: &[H], keys: &[String]) -> Balancer {
        let weighted = hosts.windows(2).any(|w| w[0].weight() != w[1].weight());
        let weights: Vec<u32> = hosts.iter().map(|h| h.weight().max(1)).collect();
        match policy {
            LbPolicy::RoundRobin if weighted => Balancer::WeightedRoundRobin(Edf::new(&weights)),
            LbPolicy::RoundRobin => Balancer::RoundRobin { next: 0 },
            LbPolicy::Random => Balancer::Random,
            LbPolicy::LeastRequest => Balancer::LeastRequest,
            LbPolicy::RingHash {
                min_ring_size,
                max_ring_size,
            } => Balancer::RingHash(HashRing::new(keys, &weights, min_ring_size, max_ring_size)),
            LbPolicy::Maglev { table_size } => {
                Balancer::Maglev(MaglevTable::new(keys, &weights, table_size))
            }
        }
    }

    /// Picks a host index, skipping those `excluded` says no to (already tried for this
    /// request). `hash` is the request's hash key, used by the consistent-hash policies.
    /// `None` when every host is excluded or there are none.
    pub fn pick<H: Candidate>(
        &mut self,
        hosts: &[H],
        rng: &mut Rng,
        excluded: &dyn Fn(usize) -> bool,
        hash: Option<u64>,
    ) -> Option<usize> {
        let n = hosts.len();
        let eligible = (0..n).filter(|&i| !excluded(i)).count();
        if eligible == 0 {
            return None;
        }
        match self {
            Balancer::RoundRobin { next } => {
                for _ in 0..n {
                    let i = *next % n;
                    *next = (i + 1) % n;
                    if !excluded(i) {
                        return Some(i);
                    }
                }
                None
            }
            Balancer::WeightedRoundRobin(edf) => edf.pick(excluded),
            Balancer::Random => weighted_random(hosts, rng, excluded),
            Balancer::LeastRequest => {
                let a = nth_eligible(rng.below(eligible as u64) as usize, n, excluded)?;
                if eligible == 1 {
                    return Some(a);
                }
                let mut b = nth_eligible(rng.below(eligible as u64 - 1) as usize, n, &|i| {
                    excluded(i) || i == a
                })?;
                // Compare active/weight without division: a_active * b_weight vs b_active * a_weight.
                let load = |i: usize, other: usize| {
                    u128::from(hosts[i].active()) * u128::from(hosts[other].weight().max(1))
                };
                if load(a, b) <= load(b, a) {
                    b = a;
                }
                Some(b)
            }
            Balancer::RingHash(ring) => match hash {
                Some(h) => ring.pick(h, excluded),
                None => weighted_random(hosts, rng, excluded),
            },
            Balancer::Maglev(table) => match hash.and_then(|h| table.pick(h)) {
                Some(i) if !excluded(i) => Some(i),
                // The table's host was tried already (or no key): any other, at random.
                _ => weighted_random(hosts, rng, excluded),
            },
        }
    }
}

/// Earliest-deadline-first weighted round robin.
pub struct Edf {
    /// (deadline, order, host) in a min-heap.
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    weights: Vec<u32>,
    order: u64,
}

/// Deadlines are in fixed point so ties compare exactly: one unit of weight is 2^32 ticks.
const EDF_SCALE: u64 = 1 << 32;

impl Edf {
    pub fn new(weights: &[u32]) -> Edf {
        let mut heap = BinaryHeap::with_capacity(weights.len());
        for (i, &w) in weights.iter().enumerate() {
            heap.push(Reverse((EDF_SCALE / u64::from(w.max(1)), i as u64, i)));
        }
        Edf {
            heap,
            weights: weights.to_vec(),
            order: weights.len() as u64,
        }
    }

    fn pick(&mut self, excluded: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut skipped = Vec::new();
        let mut found = None;
        while let Some(Reverse((deadline, order, i))) = self.heap.pop() {
            if excluded(i) {
                skipped.push(Reverse((deadline, order, i)));
                continue;
            }
            let step = EDF_SCALE / u64::from(self.weights[i].max(1));
            self.heap.push(Reverse((deadline + step, self.order, i)));
            self.order += 1;
            found = Some(i);
            break;
        }
        // Hosts passed over keep their place in the schedule.
        self.heap.extend(skipped);
        found
    }
}

/// A 64-bit hash with good spread for short keys: FNV-1a, then a final avalanche (the
/// MurmurHash3 finaliser) so that keys differing in one byte land far apart.
pub fn hash64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Ketama-style ring: each host owns points in proportion to its weight; a key goes to the
/// first point at or after its hash.
pub struct HashRing {
    points: Vec<(u64, usize)>,
}

impl HashRing {
    pub fn new(keys: &[String], weights: &[u32], min_size: u64, max_size: u64) -> HashRing {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return HashRing { points: Vec::new() };
        }
        // Scale so the lightest host still gets a point and the ring is within [min, max].
        let lightest = weights.iter().copied().min().unwrap_or(1).max(1);
        let per_unit = (min_size as f64 / total as f64).max(1.0 / f64::from(lightest));
        let size = ((total as f64 * per_unit).ceil() as u64).clamp(1, max_size.max(1));
        let scale = size as f64 / total as f64;
        let mut points = Vec::with_capacity(size as usize);
        for (i, key) in keys.iter().enumerate() {
            let count = ((f64::from(weights[i]) * scale).round() as u64).max(1);
            for replica in 0..count {
                points.push((hash64(format!("{key}_{replica}").as_bytes()), i));
            }
        }
        points.sort_unstable();
        HashRing { points }
    }

    fn pick(&self, hash: u64, excluded: &dyn Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|&(p, _)| p < hash);
        let n = self.points.len();
        (0..n)
            .map(|k| self.points[(start + k) % n].1)
            .find(|&i| !excluded(i))
    }
}

/// Maglev lookup table (Eisenbud et al., NSDI 2016), weighted: in each round a host claims
/// its next preferred slot only once its accumulated share reaches a whole slot.
pub struct MaglevTable {
    table: Vec<usize>,
}

impl MaglevTable {
    pub fn new(keys: &[String], weights: &[u32], size: u64) -> MaglevTable {
        let n = keys.len();
        if n == 0 {
            return MaglevTable { table: Vec::new() };
        }
        let m = size as usize;
        let max_w = f64::from(weights.iter().copied().max().unwrap_or(1).max(1));
        let prefs: Vec<(u64, u64)> = keys
            .iter()
            .map(|k| {
                let offset = hash64(k.as_bytes()) % size;
                let skip = hash64(format!("{k}#skip").as_bytes()) % (size - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; n];
        let mut credit = vec![0f64; n];
        let mut table = vec![usize::MAX; m];
        let mut filled = 0;
        while filled < m {
            for i in 0..n {
                credit[i] += f64::from(weights[i].max(1)) / max_w;
                if credit[i] < 1.0 {
                    continue;
                }
                credit[i] -= 1.0;
                let (offset, skip) = prefs[i];
                loop {
                    let slot = ((offset + next[i] * skip) % size) as usize;
                    next[i] += 1;
                    if table[slot] == usize::MAX {
                        table[slot] = i;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break;
                }
            }
        }
        MaglevTable { table }
    }

    fn pick(&self, hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.table.len() as u64) as usize])
    }
}

fn nth_eligible(k: usize, n: usize, excluded: &dyn Fn(usize) -> bool) -> Option<usize> {
    (0..n).filter(|&i| !excluded(i)).nth(k)
}

fn weighted_random<H: Candidate>(
    hosts: &[H],
    rng: &mut Rng,
    excluded: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    let total: u64 = (0..hosts.len())
        .filter(|&i| !excluded(i))
        .map(|i| u64::from(hosts[i].weight()))
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total);
    for (i, h) in hosts.iter().enumerate() {
        if excluded(i) {
            continue;
        }
        let w = u64::from(h.weight());
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

impl<T: Candidate> Candidate for std::rc::Rc<T> {
    fn weight(&self) -> u32 {
        (**self).weight()
    }
    fn active(&self) -> u64 {
        (**self).active()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct H(u32, u64);
    impl Candidate for H {
        fn weight(&self) -> u32 {
            self.0
        }
        fn active(&self) -> u64 {
            self.1
        }
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    fn lb(policy: LbPolicy, hosts: &[H]) -> Balancer {
        Balancer::new(policy, hosts, &keys(hosts.len()))
    }

    fn counts(policy: LbPolicy, hosts: &[H], picks: usize) -> Vec<usize> {
        let mut lb = lb(policy, hosts);
        let mut rng = Rng::new(7);
        let mut c = vec![0; hosts.len()];
        for _ in 0..picks {
            c[lb.pick(hosts, &mut rng, &|_| false, None).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_cycles() {
        let hosts = [H(1, 0), H(1, 0), H(1, 0)];
        let mut lb = lb(LbPolicy::RoundRobin, &hosts);
        let mut rng = Rng::new(1);
        let seq: Vec<_> = (0..6)
            .map(|_| lb.pick(&hosts, &mut rng, &|_| false, None).unwrap())
            .collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_round_robin_is_edf_and_exact() {
        let hosts = [H(5, 0), H(1, 0), H(1, 0)];
        let mut lb = lb(LbPolicy::RoundRobin, &hosts);
        let mut rng = Rng::new(1);
        let seq: Vec<_> = (0..7)
            .map(|_| lb.pick(&hosts, &mut rng, &|_| false, None).unwrap())
            .collect();
        // EDF: host 0 is due every 1/5, hosts 1 and 2 every 1.
        assert_eq!(seq, [0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(counts(LbPolicy::RoundRobin, &hosts, 700), [500, 100, 100]);
    }

    #[test]
    fn exclusion_moves_on_to_the_next_host() {
        let hosts = [H(1, 0), H(1, 0), H(1, 0)];
        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::LeastRequest,
        ] {
            let mut lb = lb(policy, &hosts);
            let mut rng = Rng::new(3);
            for _ in 0..50 {
                assert_eq!(lb.pick(&hosts, &mut rng, &|i| i != 1, None), Some(1));
            }
            assert_eq!(lb.pick(&hosts, &mut rng, &|_| true, None), None);
        }
        let weighted = [H(3, 0), H(1, 0)];
        let mut lb = lb(LbPolicy::RoundRobin, &weighted);
        let mut rng = Rng::new(3);
        for _ in 0..10 {
            assert_eq!(lb.pick(&weighted, &mut rng, &|i| i == 0, None), Some(1));
        }
    }

    #[test]
    fn random_follows_weights() {
        let c = counts(LbPolicy::Random, &[H(3, 0), H(1, 0)], 40_000);
        let share = c[0] as f64 / 40_000.0;
        assert!((0.72..0.78).contains(&share), "{c:?}");
    }

    #[test]
    fn least_request_prefers_idle_hosts() {
        let hosts = [H(1, 100), H(1, 0), H(1, 100), H(1, 100)];
        let c = counts(LbPolicy::LeastRequest, &hosts, 10_000);
        // Host 1 wins every draw it takes part in: about half of all draws (2 of 4 sampled).
        assert!(c[1] > 4_500, "{c:?}");
        let one = [H(1, 5)];
        assert_eq!(counts(LbPolicy::LeastRequest, &one, 10), [10]);
    }

    #[test]
    fn empty_cluster_picks_nothing() {
        let hosts: [H; 0] = [];
        let mut lb = lb(LbPolicy::RoundRobin, &hosts);
        assert_eq!(lb.pick(&hosts, &mut Rng::new(1), &|_| false, None), None);
    }
}

#[cfg(test)]
mod hashing_tests {
    use super::*;

    struct W(u32);
    impl Candidate for W {
        fn weight(&self) -> u32 {
            self.0
        }
        fn active(&self) -> u64 {
            0
        }
    }

    fn hosts(weights: &[u32]) -> (Vec<W>, Vec<String>) {
        (
            weights.iter().map(|&w| W(w)).collect(),
            (0..weights.len())
                .map(|i| format!("10.0.0.{i}:80"))
                .collect(),
        )
    }

    fn share(policy: LbPolicy, weights: &[u32]) -> Vec<f64> {
        let (h, k) = hosts(weights);
        let mut lb = Balancer::new(policy, &h, &k);
        let mut rng = Rng::new(5);
        let mut c = vec![0usize; h.len()];
        let n = 50_000u64;
        for key in 0..n {
            let hash = hash64(format!("user-{key}").as_bytes());
            c[lb.pick(&h, &mut rng, &|_| false, Some(hash)).unwrap()] += 1;
        }
        c.iter().map(|&x| x as f64 / n as f64).collect()
    }

    const RING: LbPolicy = LbPolicy::RingHash {
        min_ring_size: 1024,
        max_ring_size: 8 << 20,
    };
    const MAGLEV: LbPolicy = LbPolicy::Maglev { table_size: 65537 };

    #[test]
    fn the_same_key_always_goes_to_the_same_host() {
        for policy in [RING, MAGLEV] {
            let (h, k) = hosts(&[1, 1, 1, 1]);
            let mut lb = Balancer::new(policy, &h, &k);
            let mut rng = Rng::new(1);
            let hash = hash64(b"order-42");
            let first = lb.pick(&h, &mut rng, &|_| false, Some(hash)).unwrap();
            for _ in 0..100 {
                assert_eq!(lb.pick(&h, &mut rng, &|_| false, Some(hash)), Some(first));
            }
            // Excluding that host moves the key elsewhere, never to an excluded host.
            let other = lb.pick(&h, &mut rng, &|i| i == first, Some(hash)).unwrap();
            assert_ne!(other, first);
        }
    }

    #[test]
    fn keys_spread_by_weight() {
        for policy in [RING, MAGLEV] {
            let s = share(policy, &[1, 1, 2]);
            assert!((0.19..0.31).contains(&s[0]), "{policy:?} {s:?}");
            assert!((0.19..0.31).contains(&s[1]), "{policy:?} {s:?}");
            assert!((0.42..0.58).contains(&s[2]), "{policy:?} {s:?}");
        }
    }

    #[test]
    fn removing_a_host_moves_few_other_keys_on_the_ring() {
        let (h4, k4) = hosts(&[1, 1, 1, 1]);
        let (h3, k3) = (h4[..3].to_vec_w(), k4[..3].to_vec());
        let mut a = Balancer::new(RING, &h4, &k4);
        let mut b = Balancer::new(RING, &h3, &k3);
        let mut rng = Rng::new(1);
        let (mut moved, mut others) = (0, 0);
        for key in 0..10_000 {
            let hash = hash64(format!("k{key}").as_bytes());
            let before = a.pick(&h4, &mut rng, &|_| false, Some(hash)).unwrap();
            let after = b.pick(&h3, &mut rng, &|_| false, Some(hash)).unwrap();
            if before != 3 {
                others += 1;
                moved += usize::from(before != after);
            }
        }
        // The ring keeps at least min_ring_size points, so the survivors gain points and take a
        // few keys from each other; most keys of surviving hosts stay (a modulo hash would move
        // about two thirds of them).
        assert!(moved * 5 < others, "{moved} of {others} moved");
    }

    trait ToVecW {
        fn to_vec_w(&self) -> Vec<W>;
    }
    impl ToVecW for [W] {
        fn to_vec_w(&self) -> Vec<W> {
            self.iter().map(|w| W(w.0)).collect()
        }
    }

    #[test]
    fn edf_skips_excluded_hosts_without_losing_their_turn() {
        let mut edf = Edf::new(&[2, 1]);
        assert_eq!(edf.pick(&|i| i == 0), Some(1));
        assert_eq!(edf.pick(&|_| false), Some(0));
        assert_eq!(edf.pick(&|_| true), None);
    }
}
