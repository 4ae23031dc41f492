//! A latency histogram with 1 µs buckets up to 1 s (anything slower lands in the last bucket).

pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
}

const MAX_US: usize = 1_000_000;

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            buckets: vec![0; MAX_US + 1],
            count: 0,
        }
    }

    pub fn record(&mut self, micros: u64) {
        self.buckets[(micros as usize).min(MAX_US)] += 1;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest latency at or under which `q` of the samples fall.
    pub fn quantile(&self, q: f64) -> u64 {
        let want = ((self.count as f64) * q).ceil() as u64;
        let mut seen = 0;
        for (us, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return us as u64;
            }
        }
        MAX_US as u64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles() {
        let mut h = super::Histogram::new();
        for us in 1..=100 {
            h.record(us);
        }
        assert_eq!(h.quantile(0.5), 50);
        assert_eq!(h.quantile(0.99), 99);
        assert_eq!(h.count(), 100);
    }
}
