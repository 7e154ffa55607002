//! Sampling from a fixed discrete law in O(1) per draw.

use rand::Rng;

/// Walker/Vose alias table: O(1) sampling from a fixed discrete law.
#[derive(Debug)]
pub(super) struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    pub(super) fn new(weights: &[f64]) -> Alias {
        let n = weights.len();
        let sum: f64 = weights.iter().sum();
        let mut prob: Vec<f64> = weights.iter().map(|w| w * n as f64 / sum).collect();
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let mut small: Vec<u32> = Vec::new();
        let mut large: Vec<u32> = Vec::new();
        for (i, &p) in prob.iter().enumerate() {
            if p < 1.0 {
                small.push(i as u32);
            } else {
                large.push(i as u32);
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            alias[s as usize] = l;
            prob[l as usize] += prob[s as usize] - 1.0;
            if prob[l as usize] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Left-overs are 1 up to rounding.
        for i in small.into_iter().chain(large) {
            prob[i as usize] = 1.0;
        }
        Alias { prob, alias }
    }

    pub(super) fn sample(&self, rng: &mut impl Rng) -> usize {
        let n = self.prob.len();
        let u = rng.gen::<f64>() * n as f64;
        let i = (u as usize).min(n - 1);
        if u - (i as f64) < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}
