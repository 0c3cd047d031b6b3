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

/// Draws the next id from `lp` (log-probs at temperature 1) under the options.
pub(crate) fn sample(lp: &[f32], o: Draw, rng: &mut StdRng) -> u32 {
    if o.temperature <= 0.0 {
        return lp
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 {
                    (i, x)
                } else {
                    best
                }
            })
            .0 as u32;
    }
    // Masked tokens (structured output) have -inf and are never drawn. Only top-k and top-p
    // need candidates in order, and then only the head of it: a full sort of the vocabulary
    // per token would cost more than the decode step.
    let mut cand: Vec<(u32, f32)> = lp
        .iter()
        .enumerate()
        .filter(|(_, x)| x.is_finite())
        .map(|(i, &x)| (i as u32, x / o.temperature))
        .collect();
    let desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if let Some(k) = o.top_k.filter(|&k| k > 0 && k < cand.len()) {
        cand.select_nth_unstable_by(k - 1, desc);
        cand.truncate(k);
    }
    let max = cand.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.1));
    let weight = |c: &(u32, f32)| ((c.1 - max) as f64).exp();
    if let Some(p) = o.top_p.filter(|&p| p > 0.0 && p < 1.0) {
        let total: f64 = cand.iter().map(weight).sum();
        // The nucleus usually lies in the first few hundred; sort more only when it does not.
        let mut head = 256.min(cand.len());
        loop {
            if head < cand.len() {
                cand.select_nth_unstable_by(head - 1, desc);
            }
            cand[..head].sort_by(desc);
            let mut acc = 0.0;
            let keep = cand[..head].iter().position(|c| {
                acc += weight(c) / total;
                acc >= p as f64
            });
            if let Some(i) = keep {
                cand.truncate(i + 1);
                break;
            }
            if head == cand.len() {
                break;
            }
            head = (head * 8).min(cand.len());
        }
    }
    let weights: Vec<f64> = cand.iter().map(weight).collect();
    let total: f64 = weights.iter().sum();
    let u: f64 = rng.gen::<f64>() * total;
    let mut acc = 0.0;
    for (c, w) in cand.iter().zip(&weights) {
        acc += w;
        if u < acc {
            return c.0;
        }
    }
    cand.last().expect("a row has a finite log-prob").0
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
