//! The training objectives as tensor functions. Inputs are per-unit log-ratios
//! ρ = log π_θ(a|s) − log π_ref(a|s) (a unit is a token, a step or a whole response), masks, and
//! for OREO the critic's values and the policy's KL to the reference. Formulas and sources are in
//! docs/algorithms.md; each function's doc names the equation it computes.
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Tensor, TensorData};

/// Σ_t ρ_t over the masked units of each row, `[B]`; divided by the unit count when `normalize`.
pub fn sequence_logratio(rho: Tensor<2>, mask: Tensor<2>, normalize: bool) -> Tensor<1> {
    let sum = (rho * mask.clone()).sum_dim(1).squeeze_dim::<1>(1);
    if normalize {
        sum / mask.sum_dim(1).squeeze_dim::<1>(1).clamp_min(1.0)
    } else {
        sum
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoOptions {
    pub beta: f64,
    /// ε of conservative DPO: the preference label is flipped with probability ε.
    pub label_smoothing: f64,
    /// IPO's squared loss instead of the logistic one.
    pub ipo: bool,
    /// Average log-ratios over tokens instead of summing them.
    pub length_normalize: bool,
    /// Weight of the chosen response's per-token negative log-likelihood added to the loss
    /// (DPO+NLL of Iterative RPO, Pang et al. 2024; TRL's `rpo_alpha`). 0 is plain DPO.
    pub nll_weight: f64,
}

impl Default for DpoOptions {
    fn default() -> Self {
        Self {
            beta: 0.1,
            label_smoothing: 0.0,
            ipo: false,
            length_normalize: false,
            nll_weight: 0.0,
        }
    }
}

/// DPO (Rafailov et al. 2023, eq. 7): −(1−ε)·log σ(z) − ε·log σ(−z) with z = β(Σρ_w − Σρ_l);
/// IPO (Azar et al. 2023, eq. 17): (h − 1/(2β))² with h = Σρ_w − Σρ_l. Inputs are the
/// per-row sums from [`sequence_logratio`]; returns (mean loss `[1]`, per-row z `[B]`).
pub fn dpo(chosen: Tensor<1>, rejected: Tensor<1>, o: &DpoOptions) -> (Tensor<1>, Tensor<1>) {
    let h = chosen - rejected;
    let z = h.clone().mul_scalar(o.beta);
    let loss = if o.ipo {
        h.sub_scalar(1.0 / (2.0 * o.beta)).powi_scalar(2)
    } else {
        let pos = log_sigmoid(z.clone()).mul_scalar(-(1.0 - o.label_smoothing));
        let neg = log_sigmoid(z.clone().neg()).mul_scalar(-o.label_smoothing);
        pos + neg
    };
    (loss.mean(), z)
}

/// One batch of OREO units, all `[B, K]` except `reward` (`[B]`).
pub struct OreoInputs {
    /// ρ of each unit (a token, a step, or the whole response for the response-level variant).
    pub rho: Tensor<2>,
    /// V_φ(s_t): the critic at the state each unit starts from.
    pub values: Tensor<2>,
    /// KL(π_θ‖π_ref) at each unit's states (exact, over the full vocabulary; summed over a step's tokens).
    pub kl: Tensor<2>,
    pub mask: Tensor<2>,
    /// The sparse terminal reward R.
    pub reward: Tensor<1>,
}

/// Σ_{i≥t} ρ_i (`inclusive`) or Σ_{i>t} ρ_i of masked units, with no gradient.
fn suffix_sums(rho: &Tensor<2>, mask: &Tensor<2>, inclusive: bool) -> Tensor<2> {
    let r = (rho.clone() * mask.clone()).detach();
    let k = r.dims()[1];
    let total = r.clone().sum_dim(1).repeat_dim(1, k);
    // Σ_{i≥t} = total − Σ_{i<t} = total − (cumsum_t − ρ_t).
    let incl = total - r.clone().cumsum(1) + r.clone();
    if inclusive {
        incl
    } else {
        incl - r
    }
}

/// Mean over each row's masked units, then over rows.
fn masked_mean(x: Tensor<2>, mask: &Tensor<2>) -> Tensor<1> {
    let per_row = (x * mask.clone()).sum_dim(1) / mask.clone().sum_dim(1).clamp_min(1.0);
    per_row.mean()
}

/// OREO's value loss (Wang et al. 2024, eq. 11): mean_t (V_φ(s_t) − R + β Σ_{i≥t} sg(ρ_i))².
pub fn oreo_value_loss(x: &OreoInputs, beta: f64) -> Tensor<1> {
    let k = x.rho.dims()[1];
    let r = x.reward.clone().unsqueeze_dim::<2>(1).repeat_dim(1, k);
    let err = x.values.clone() - r + suffix_sums(&x.rho, &x.mask, true).mul_scalar(beta);
    masked_mean(err.powi_scalar(2), &x.mask)
}

/// OREO's policy loss (eq. 12 with the KL term of eq. 13):
/// mean_t (sg(V(s_t)) − R + β ρ_t + β sg(Σ_{i>t} ρ_i))² + α · mean_t KL_t.
/// Returns (total, squared Bellman term, KL term).
pub fn oreo_policy_loss(
    x: &OreoInputs,
    beta: f64,
    alpha: f64,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let k = x.rho.dims()[1];
    let r = x.reward.clone().unsqueeze_dim::<2>(1).repeat_dim(1, k);
    let err = x.values.clone().detach() - r
        + x.rho.clone().mul_scalar(beta)
        + suffix_sums(&x.rho, &x.mask, false).mul_scalar(beta);
    let bellman = masked_mean(err.powi_scalar(2), &x.mask);
    let kl = masked_mean(x.kl.clone(), &x.mask);
    (bellman.clone() + kl.clone().mul_scalar(alpha), bellman, kl)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LambdaWeights {
    /// LiPO-λ: |G_i − G_j| · |1/D(τ_i) − 1/D(τ_j)|.
    Lipo,
    /// Every ordered pair weighs 1 (the pairwise logistic list loss).
    Constant,
}

/// LiPO-λ weights of one list (Liu et al. 2024, eq. 9), `n × n`, zero where `scores[i] <= scores[j]`:
/// G = 2^ψ − 1 with ψ the scores min-max normalised to [0, 1]; D(τ) = ln(1 + τ) with τ the
/// 1-based rank of each response under the model's current rewards `s`.
pub fn lipo_lambda(scores: &[f64], s: &[f64], kind: LambdaWeights) -> Vec<Vec<f64>> {
    let n = scores.len();
    let (lo, hi) = scores
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let gain: Vec<f64> = scores
        .iter()
        .map(|&v| {
            if hi > lo {
                2f64.powf((v - lo) / (hi - lo)) - 1.0
            } else {
                0.0
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
    let mut rank = vec![0usize; n];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r + 1;
    }
    let disc = |i: usize| 1.0 / (1.0 + rank[i] as f64).ln();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| match (scores[i] > scores[j], kind) {
                    (false, _) => 0.0,
                    (true, LambdaWeights::Constant) => 1.0,
                    (true, LambdaWeights::Lipo) => {
                        (gain[i] - gain[j]).abs() * (disc(i) - disc(j)).abs()
                    }
                })
                .collect()
        })
        .collect()
}

/// TPO's list loss (Liao et al. 2024, eq. 6 with LiPO-λ): per list,
/// −Σ_{v_i > v_j} λ_ij log σ(s_i − s_j) where s_i = β Σ_k w_ik ρ_ik. `step_rho` and `weights`
/// are `[B, N, K]` (weights already zero on padding); `scores[b]` has N entries, `None` for
/// padding responses. Returns (mean over lists `[1]`, s `[B, N]`).
pub fn tpo(
    step_rho: Tensor<3>,
    weights: Tensor<3>,
    scores: &[Vec<Option<f64>>],
    beta: f64,
    kind: LambdaWeights,
    device: &Device,
) -> (Tensor<1>, Tensor<2>) {
    let [b, n, _] = step_rho.dims();
    let s = (step_rho * weights)
        .sum_dim(2)
        .squeeze_dim::<2>(2)
        .mul_scalar(beta); // [B, N]
    let s_now = arbor_model::host::to_f64(s.clone());
    let mut lambda = vec![0f32; b * n * n];
    for (row, sc) in scores.iter().enumerate() {
        let live: Vec<usize> = (0..n)
            .filter(|&i| sc.get(i).copied().flatten().is_some())
            .collect();
        let v: Vec<f64> = live.iter().map(|&i| sc[i].unwrap_or(0.0)).collect();
        let sv: Vec<f64> = live.iter().map(|&i| s_now[row * n + i]).collect();
        let l = lipo_lambda(&v, &sv, kind);
        for (a, &i) in live.iter().enumerate() {
            for (c, &j) in live.iter().enumerate() {
                lambda[row * n * n + i * n + j] = l[a][c] as f32;
            }
        }
    }
    let lambda = Tensor::<3>::from_data(TensorData::new(lambda, [b, n, n]), device);
    let diff = s.clone().unsqueeze_dim::<3>(2) - s.clone().unsqueeze_dim::<3>(1); // s_i − s_j
    let per_list = (log_sigmoid(diff).neg() * lambda)
        .sum_dims(&[1, 2])
        .reshape([b]);
    (per_list.mean(), s)
}

/// TPO's adaptive step weights (sg): a step of response i weighs 1 − max(0, cos(h̄_ik, h̄_1k)),
/// where h̄ is the mean hidden state of a step's tokens and response 1 is the top-ranked one;
/// the top response's step k takes the mean weight its match received from the others. A step
/// every response shares thus drops out of every margin; steps without a match weigh 1.
/// `step_means[i][k]` is h̄_ik; returns w[i][k].
pub fn adaptive_step_weights(step_means: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    let cos = |a: &[f32], b: &[f32]| -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
        if na == 0.0 || nb == 0.0 {
            0.0
        } else {
            dot / (na * nb)
        }
    };
    let Some(top) = step_means.first() else {
        return Vec::new();
    };
    let mut w: Vec<Vec<f32>> = step_means
        .iter()
        .enumerate()
        .map(|(i, steps)| {
            steps
                .iter()
                .enumerate()
                .map(|(k, h)| match top.get(k) {
                    Some(t) if i > 0 => 1.0 - cos(h, t).max(0.0),
                    _ => 1.0,
                })
                .collect()
        })
        .collect();
    for k in 0..top.len() {
        let others: Vec<f32> = w.iter().skip(1).filter_map(|r| r.get(k).copied()).collect();
        if !others.is_empty() {
            w[0][k] = others.iter().sum::<f32>() / others.len() as f32;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Device {
        Device::flex()
    }
    fn t1(v: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &dev())
    }
    fn t2(v: &[&[f32]]) -> Tensor<2> {
        let k = v[0].len();
        Tensor::from_data(TensorData::new(v.concat(), [v.len(), k]), &dev())
    }
    fn scalar(t: Tensor<1>) -> f64 {
        t.into_scalar::<f32>() as f64
    }
    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-5, "{a} != {b}");
    }
    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn dpo_matches_hand_computed_values() {
        // chosen Σρ = 0.5 + 0.25 = 0.75; rejected Σρ = −0.5 (second token masked).
        let rho = t2(&[&[0.5, 0.25], &[-0.5, 9.0]]);
        let mask = t2(&[&[1.0, 1.0], &[1.0, 0.0]]);
        let sums = sequence_logratio(rho, mask, false);
        let sums_v = arbor_model::host::to_f32(sums.clone());
        assert_eq!(sums_v, vec![0.75, -0.5]);
        let (c, r) = (sums.clone().narrow(0, 0, 1), sums.narrow(0, 1, 1));
        let o = DpoOptions {
            beta: 0.1,
            ..Default::default()
        };
        let (loss, z) = dpo(c.clone(), r.clone(), &o);
        close(scalar(z), 0.125);
        close(scalar(loss), -sig(0.125).ln());
        let o = DpoOptions {
            label_smoothing: 0.2,
            ..o
        };
        close(
            scalar(dpo(c.clone(), r.clone(), &o).0),
            -0.8 * sig(0.125).ln() - 0.2 * sig(-0.125).ln(),
        );
        let o = DpoOptions {
            ipo: true,
            beta: 0.5,
            label_smoothing: 0.0,
            ..o
        };
        close(scalar(dpo(c, r, &o).0), (1.25f64 - 1.0).powi(2));
        // Length normalisation divides by the unmasked count.
        let n = sequence_logratio(t2(&[&[1.0, 2.0, 3.0]]), t2(&[&[0.0, 1.0, 1.0]]), true);
        close(scalar(n), 2.5);
    }

    #[test]
    fn oreo_matches_hand_computed_values() {
        // One trajectory, two units, R = 1, β = 0.5, α = 0.1.
        let x = OreoInputs {
            rho: t2(&[&[0.2, -0.4]]),
            values: t2(&[&[0.3, 0.6]]),
            kl: t2(&[&[0.05, 0.15]]),
            mask: t2(&[&[1.0, 1.0]]),
            reward: t1(&[1.0]),
        };
        // Value: t0: 0.3 − 1 + 0.5·(−0.2) = −0.8; t1: 0.6 − 1 + 0.5·(−0.4) = −0.6.
        close(scalar(oreo_value_loss(&x, 0.5)), (0.64 + 0.36) / 2.0);
        // Policy: t0: 0.3 − 1 + 0.1 + 0.5·(−0.4) = −0.8; t1: 0.6 − 1 − 0.2 + 0 = −0.6; KL mean 0.1.
        let (total, bellman, kl) = oreo_policy_loss(&x, 0.5, 0.1);
        close(scalar(bellman), 0.5);
        close(scalar(kl), 0.1);
        close(scalar(total), 0.51);
    }

    #[test]
    fn oreo_losses_vanish_on_a_bellman_consistent_pair() {
        // V(s_t) = R − β Σ_{i≥t} ρ_i is the soft Bellman solution with a sparse terminal reward.
        let (beta, r) = (0.03f64, 1.0f64);
        let rho = [0.7f64, -1.3, 0.4, 2.0];
        let v: Vec<f32> = (0..4)
            .map(|t| (r - beta * rho[t..].iter().sum::<f64>()) as f32)
            .collect();
        let rho32: Vec<f32> = rho.iter().map(|&x| x as f32).collect();
        let x = OreoInputs {
            rho: t2(&[&rho32]),
            values: t2(&[&v]),
            kl: t2(&[&[0.3, 0.1, 0.2, 0.4]]),
            mask: t2(&[&[1.0; 4]]),
            reward: t1(&[1.0]),
        };
        assert!(scalar(oreo_value_loss(&x, beta)) < 1e-12);
        assert!(scalar(oreo_policy_loss(&x, beta, 0.0).0) < 1e-12);
        assert!(
            scalar(oreo_policy_loss(&x, beta, 0.01).0) > 1e-4,
            "the KL term counts when α > 0"
        );
    }

    #[test]
    fn tpo_with_two_responses_and_unit_lambda_is_dpo() {
        let beta = 0.1;
        // Steps of the chosen (first) and rejected responses; weights 1.
        let rho = Tensor::<3>::from_data(
            TensorData::new(vec![0.5f32, 0.25, -0.5, 0.0], [1, 2, 2]),
            &dev(),
        );
        let w = Tensor::<3>::ones([1, 2, 2], &dev());
        let (l, _) = tpo(
            rho,
            w,
            &[vec![Some(1.0), Some(0.0)]],
            beta,
            LambdaWeights::Constant,
            &dev(),
        );
        let (d, _) = dpo(
            t1(&[0.75]),
            t1(&[-0.5]),
            &DpoOptions {
                beta,
                ..Default::default()
            },
        );
        close(scalar(l), scalar(d));
    }

    #[test]
    fn lipo_lambda_follows_gains_and_model_ranks() {
        // Scores 1, 0.5, 0 → ψ = 1, 0.5, 0 → G = 1, √2 − 1, 0. The model ranks them 3, 1, 2.
        let l = lipo_lambda(&[1.0, 0.5, 0.0], &[-1.0, 2.0, 0.0], LambdaWeights::Lipo);
        let d = |r: f64| 1.0 / (1.0 + r).ln();
        let g = [1.0, 2f64.sqrt() - 1.0, 0.0];
        close(l[0][1], (g[0] - g[1]).abs() * (d(3.0) - d(1.0)).abs());
        close(l[1][2], (g[1] - g[2]).abs() * (d(1.0) - d(2.0)).abs());
        assert_eq!(l[1][0], 0.0, "only better-over-worse pairs count");
        assert_eq!(
            lipo_lambda(&[1.0, 1.0], &[0.0, 1.0], LambdaWeights::Lipo),
            vec![vec![0.0; 2]; 2]
        );
    }

    #[test]
    fn adaptive_weights_drop_shared_steps() {
        let same = vec![1.0, 0.0];
        let w = adaptive_step_weights(&[
            vec![same.clone(), vec![0.0, 1.0]],
            vec![same.clone(), vec![0.0, -1.0], vec![1.0, 1.0]],
        ]);
        assert_eq!(w[1][0], 0.0, "identical first steps");
        assert_eq!(w[1][1], 1.0, "opposite second steps");
        assert_eq!(w[1][2], 1.0, "no matching step in the top response");
        assert_eq!(
            w[0],
            vec![0.0, 1.0],
            "the top response's steps take their matches' weights"
        );
    }
}
