//! Sampling from one row of logits: log-softmax, the top-k alternatives, and a draw under
//! temperature / top-k / top-p with a seeded generator.
use rand::rngs::StdRng;
use rand::Rng;

/// How one token is drawn: temperature (0 is greedy), then top-k, then top-p.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Draw {
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
}

/// log-softmax of one row of logits.
pub(crate) fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max
        + logits
            .iter()
            .map(|&x| ((x - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
    logits.iter().map(|&x| x - lse).collect()
}

pub(crate) fn top_k(lp: &[f32], k: usize) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut idx: Vec<u32> = (0..lp.len() as u32).collect();
    let k = k.min(idx.len());
    idx.select_nth_unstable_by(k - 1, |&a, &b| lp[b as usize].total_cmp(&lp[a as usize]));
    let mut top: Vec<(u32, f32)> = idx[..k].iter().map(|&i| (i, lp[i as usize])).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    top
}

/// The first index of the largest value (0 when every value is −∞).
pub(crate) fn argmax(x: &[f32]) -> u32 {
    x.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
        .0 as u32
}

/// Draws the next id from `lp` (log-probs at temperature 1) under the options.
pub(crate) fn sample(lp: &[f32], o: Draw, rng: &mut StdRng) -> u32 {
    if o.temperature <= 0.0 {
        return argmax(lp);
    }
    // Masked tokens (structured output) have -inf and are never drawn. The draw walks the
    // candidates from the most likely down (ties by id), as a full sort would, but sorts only as
    // far as the walk goes: the head of a few hundred holds nearly all the mass, and sorting the
    // whole vocabulary per token would cost more than the decode step.
    let mut cand = candidates(lp, o.temperature);
    let mut order = Ordered::new(&mut cand);
    if let Some(k) = o.top_k.filter(|&k| k > 0) {
        order.truncate(k);
    }
    let max = order.cand.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.1));
    let weight = |c: &(u32, f32)| ((c.1 - max) as f64).exp();
    let mut total: f64 = order.cand.iter().map(weight).sum();
    if let Some(p) = o.top_p.filter(|&p| p > 0.0 && p < 1.0) {
        // The smallest head whose mass reaches p.
        let (mut acc, mut i) = (0.0, 0);
        let keep = loop {
            let Some(c) = order.get(i) else { break i };
            acc += weight(&c) / total;
            i += 1;
            if acc >= p as f64 {
                break i;
            }
        };
        order.truncate(keep);
        total = order.cand.iter().map(weight).sum();
    }
    let u: f64 = rng.gen();
    let (mut acc, mut i) = (0.0, 0);
    let mut last = None;
    while let Some(c) = order.get(i) {
        acc += weight(&c) / total;
        if u < acc {
            return c.0;
        }
        last = Some(c.0);
        i += 1;
    }
    last.expect("a row has a finite log-prob")
}

/// The tokens that can be drawn (finite log-prob), with their log-probs over `temperature`.
fn candidates(lp: &[f32], temperature: f32) -> Vec<(u32, f32)> {
    lp.iter()
        .enumerate()
        .filter(|(_, x)| x.is_finite())
        .map(|(i, &x)| (i as u32, x / temperature))
        .collect()
}

/// Candidates in descending order (value, then id), sorted lazily: `get(i)` sorts only as far as
/// the head must reach to answer.
struct Ordered<'a> {
    cand: &'a mut Vec<(u32, f32)>,
    sorted: usize,
}

fn desc(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

impl<'a> Ordered<'a> {
    fn new(cand: &'a mut Vec<(u32, f32)>) -> Self {
        Self { cand, sorted: 0 }
    }

    /// The i-th most likely candidate.
    fn get(&mut self, i: usize) -> Option<(u32, f32)> {
        if i >= self.cand.len() {
            return None;
        }
        if i >= self.sorted {
            // Grow the sorted head: the next stretch is the smallest of the rest, in order.
            let want = (self.sorted.max(32) * 8).max(i + 1).min(self.cand.len());
            let rest = &mut self.cand[self.sorted..];
            let n = want - self.sorted;
            if n < rest.len() {
                rest.select_nth_unstable_by(n - 1, desc);
            }
            rest[..n].sort_by(desc);
            self.sorted = want;
        }
        Some(self.cand[i])
    }

    /// Keeps the `k` most likely.
    fn truncate(&mut self, k: usize) {
        if k < self.cand.len() {
            let _ = self.get(k - 1);
            self.cand.truncate(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sampling_respects_greedy_top_k_and_seed() {
        let lp = log_softmax(&[0.0, 3.0, 1.0, 2.5]);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(sample(&lp, Draw::default(), &mut rng), 1);
        let k1 = Draw {
            temperature: 1.0,
            top_k: Some(1),
            ..Default::default()
        };
        for _ in 0..20 {
            assert_eq!(sample(&lp, k1, &mut rng), 1);
        }
        let k2 = Draw {
            temperature: 1.0,
            top_k: Some(2),
            ..Default::default()
        };
        let draws: Vec<u32> = (0..200).map(|_| sample(&lp, k2, &mut rng)).collect();
        assert!(draws.iter().all(|&d| d == 1 || d == 3) && draws.contains(&3));
        let tiny_p = Draw {
            temperature: 1.0,
            top_p: Some(0.01),
            ..Default::default()
        };
        assert_eq!(sample(&lp, tiny_p, &mut rng), 1);
        let a: Vec<u32> = {
            let mut r = StdRng::seed_from_u64(9);
            (0..50).map(|_| sample(&lp, k2, &mut r)).collect()
        };
        let b: Vec<u32> = {
            let mut r = StdRng::seed_from_u64(9);
            (0..50).map(|_| sample(&lp, k2, &mut r)).collect()
        };
        assert_eq!(a, b);
    }

    /// The draw as a full sort gives it (the sampler before the partial sorts).
    fn sorted_draw(lp: &[f32], o: Draw, rng: &mut StdRng) -> u32 {
        let mut cand = candidates(lp, o.temperature);
        cand.sort_by(desc);
        if let Some(k) = o.top_k.filter(|&k| k > 0) {
            cand.truncate(k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f64> = cand.iter().map(|c| ((c.1 - max) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if let Some(p) = o.top_p.filter(|&p| p > 0.0 && p < 1.0) {
            let mut acc = 0.0;
            let keep = probs.iter().position(|&q| {
                acc += q;
                acc >= p as f64
            });
            probs.truncate(keep.map_or(probs.len(), |i| i + 1));
            let t: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|q| *q /= t);
        }
        let u: f64 = rng.gen();
        let mut acc = 0.0;
        for (i, q) in probs.iter().enumerate() {
            acc += q;
            if u < acc {
                return cand[i].0;
            }
        }
        cand[probs.len() - 1].0
    }

    /// Seeded runs keep drawing what they drew before the sampler stopped sorting everything.
    #[test]
    fn partial_sorting_draws_what_a_full_sort_draws() {
        let mut gen = StdRng::seed_from_u64(17);
        let mut differ = 0;
        for case in 0..300 {
            let n = [50, 3000, 49_152][case % 3];
            let spread = [0.5f32, 3.0, 12.0][case % 5 % 3];
            let mut logits: Vec<f32> = (0..n).map(|_| gen.gen_range(-spread..spread)).collect();
            if case % 7 == 0 {
                logits
                    .iter_mut()
                    .step_by(3)
                    .for_each(|x| *x = f32::NEG_INFINITY);
            }
            let lp = log_softmax(&logits);
            let o = Draw {
                temperature: [1.0, 0.7, 1.3][case % 3],
                top_k: [None, Some(40), Some(5000)][case % 4 % 3],
                top_p: [None, Some(0.9), Some(0.3)][case % 5 % 3],
            };
            let seed = gen.gen();
            let a = sample(&lp, o, &mut StdRng::seed_from_u64(seed));
            let b = sorted_draw(&lp, o, &mut StdRng::seed_from_u64(seed));
            differ += usize::from(a != b);
        }
        assert_eq!(differ, 0, "draws that differ from the full sort's");
    }

    #[test]
    fn a_wide_nucleus_keeps_exactly_its_tokens() {
        // 1,000 equal tokens: top-p 0.5 keeps the first 500 (ties break by id), which is past
        // the first partial sort's head of 256.
        let lp = log_softmax(&[0.0; 1000]);
        let half = Draw {
            temperature: 1.0,
            top_p: Some(0.5),
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        let draws: Vec<u32> = (0..2000).map(|_| sample(&lp, half, &mut rng)).collect();
        assert!(draws.iter().all(|&d| d < 500));
        assert!(
            draws.iter().any(|&d| d >= 256),
            "the nucleus reaches past the first head"
        );
    }

    #[test]
    fn log_softmax_and_top_k() {
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f64 = lp.iter().map(|&x| (x as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(
            top_k(&lp, 2).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![2, 1]
        );
    }
}
