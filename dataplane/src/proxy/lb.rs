//! Load balancers over one worker's view of a cluster's hosts. State is per worker (no locks):
//! each worker balances its own connections, as Envoy's workers do.

use crate::config::LbPolicy;

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
    /// Smooth weighted round robin: every host appears in proportion to its weight, interleaved
    /// rather than in bursts.
    WeightedRoundRobin {
        current: Vec<i64>,
    },
    Random,
    /// Power of two choices: the less loaded (active / weight) of two random hosts.
    LeastRequest,
}

impl Balancer {
    pub fn new<H: Candidate>(policy: LbPolicy, hosts: &[H]) -> Balancer {
        let weighted = hosts.windows(2).any(|w| w[0].weight() != w[1].weight());
        match policy {
            LbPolicy::RoundRobin if weighted => Balancer::WeightedRoundRobin {
                current: vec![0; hosts.len()],
            },
            LbPolicy::RoundRobin => Balancer::RoundRobin { next: 0 },
            LbPolicy::Random => Balancer::Random,
            LbPolicy::LeastRequest => Balancer::LeastRequest,
        }
    }

    /// Picks a host index, skipping those `excluded` says no to (already tried for this
    /// connection). `None` when every host is excluded or there are none.
    pub fn pick<H: Candidate>(
        &mut self,
        hosts: &[H],
        rng: &mut Rng,
        excluded: &dyn Fn(usize) -> bool,
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
            Balancer::WeightedRoundRobin { current } => {
                if current.len() != n {
                    current.resize(n, 0);
                }
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for i in 0..n {
                    let w = i64::from(hosts[i].weight());
                    current[i] += w;
                    total += w;
                    if !excluded(i) && best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                let b = best?;
                current[b] -= total;
                Some(b)
            }
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
        }
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

/// Picks among weighted choices (weighted_clusters); zero-weight entries are never picked.
pub fn pick_weighted(weights: &[u32], rng: &mut Rng) -> Option<usize> {
    struct W(u32);
    impl Candidate for W {
        fn weight(&self) -> u32 {
            self.0
        }
        fn active(&self) -> u64 {
            0
        }
    }
    let ws: Vec<W> = weights.iter().map(|&w| W(w)).collect();
    weighted_random(&ws, rng, &|_| false)
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

    fn counts(policy: LbPolicy, hosts: &[H], picks: usize) -> Vec<usize> {
        let mut lb = Balancer::new(policy, hosts);
        let mut rng = Rng::new(7);
        let mut c = vec![0; hosts.len()];
        for _ in 0..picks {
            c[lb.pick(hosts, &mut rng, &|_| false).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_cycles() {
        let hosts = [H(1, 0), H(1, 0), H(1, 0)];
        let mut lb = Balancer::new(LbPolicy::RoundRobin, &hosts);
        let mut rng = Rng::new(1);
        let seq: Vec<_> = (0..6)
            .map(|_| lb.pick(&hosts, &mut rng, &|_| false).unwrap())
            .collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_round_robin_is_exact_and_smooth() {
        let hosts = [H(5, 0), H(1, 0), H(1, 0)];
        let mut lb = Balancer::new(LbPolicy::RoundRobin, &hosts);
        let mut rng = Rng::new(1);
        let seq: Vec<_> = (0..7)
            .map(|_| lb.pick(&hosts, &mut rng, &|_| false).unwrap())
            .collect();
        // nginx's smooth WRR sequence for 5:1:1.
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
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
            let mut lb = Balancer::new(policy, &hosts);
            let mut rng = Rng::new(3);
            for _ in 0..50 {
                assert_eq!(lb.pick(&hosts, &mut rng, &|i| i != 1), Some(1));
            }
            assert_eq!(lb.pick(&hosts, &mut rng, &|_| true), None);
        }
        let weighted = [H(3, 0), H(1, 0)];
        let mut lb = Balancer::new(LbPolicy::RoundRobin, &weighted);
        let mut rng = Rng::new(3);
        for _ in 0..10 {
            assert_eq!(lb.pick(&weighted, &mut rng, &|i| i == 0), Some(1));
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
        let mut lb = Balancer::new(LbPolicy::RoundRobin, &hosts);
        assert_eq!(lb.pick(&hosts, &mut Rng::new(1), &|_| false), None);
    }

    #[test]
    fn weighted_choice_skips_zero_weights() {
        let mut rng = Rng::new(9);
        for _ in 0..100 {
            assert_eq!(pick_weighted(&[0, 4, 0], &mut rng), Some(1));
        }
        assert_eq!(pick_weighted(&[0, 0], &mut rng), None);
    }
}
