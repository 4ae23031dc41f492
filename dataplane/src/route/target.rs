//! Where a route sends: one target, or several with weights (Envoy's `weighted_clusters`),
//! picked per request in proportion to the weights, without allocating.

use crate::proxy::lb::Rng;

/// A route's targets (clusters, or what a proxy keeps per cluster) with their weights.
#[derive(Debug)]
pub struct Targets<T> {
    items: Vec<T>,
    /// Running sums of the weights; empty when there is one target.
    cumulative: Vec<u64>,
}

impl<T> Targets<T> {
    pub fn one(item: T) -> Targets<T> {
        Targets {
            items: vec![item],
            cumulative: Vec::new(),
        }
    }

    /// Several targets; a weight of 0 is never picked. At least one weight must be above 0
    /// (the config readers check it), else the first target is always picked.
    pub fn weighted(list: Vec<(T, u32)>) -> Targets<T> {
        let mut sum = 0u64;
        let mut cumulative = Vec::with_capacity(list.len());
        let mut items = Vec::with_capacity(list.len());
        for (item, w) in list {
            sum += u64::from(w);
            cumulative.push(sum);
            items.push(item);
        }
        if items.len() == 1 {
            cumulative.clear();
        }
        Targets { items, cumulative }
    }

    /// The index of the target for one request.
    pub fn pick(&self, rng: &mut Rng) -> usize {
        let Some(&total) = self.cumulative.last() else {
            return 0;
        };
        if total == 0 {
            return 0;
        }
        let r = rng.below(total);
        self.cumulative.partition_point(|&c| c <= r)
    }

    pub fn get(&self, i: usize) -> &T {
        &self.items[i]
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_the_weights_and_skip_zero() {
        let t = Targets::weighted(vec![("a", 1), ("zero", 0), ("b", 3)]);
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 3];
        for _ in 0..40_000 {
            seen[t.pick(&mut rng)] += 1;
        }
        assert_eq!(seen[1], 0);
        let ratio = f64::from(seen[2]) / f64::from(seen[0]);
        assert!((2.8..3.2).contains(&ratio), "{seen:?}");
        assert_eq!(Targets::one("x").pick(&mut rng), 0);
        assert_eq!(Targets::weighted(vec![("only", 5)]).pick(&mut rng), 0);
        let zeros_around = Targets::weighted(vec![("z", 0), ("w", 4), ("z", 0)]);
        for _ in 0..100 {
            assert_eq!(zeros_around.pick(&mut rng), 1);
        }
    }
}
