//! The output layer's per-token log-probability and KL to the reference, with their gradients
//! with respect to the logits in closed form.
//!
//! Autodiff through log-softmax, gather, exp and the KL's product makes about ten passes over
//! the `[N, V]` logits forward and as many backward (V = 49,152: the step's largest tensors).
//! Both quantities have simple gradients: ∂ log p_t/∂x = onehot(t) − p and
//! ∂ KL(p‖r)/∂x = p ⊙ (log p − log r − KL). On the CPU the values and these gradients come
//! from one fused pass per row (one `exp` per entry, rows in parallel), and the graph gets
//! `s = Σ_v c_v x_v` with `c` constant, whose gradient is `c`; the value the loss reads is the
//! exact one, `y + (s − s.detach())`. Other devices keep burn's ops (no host round trip).
use arbor_model::host::to_f32;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

/// Positions as an index tensor (for `select` and `gather`).
pub(crate) fn index_tensor(v: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = v.iter().map(|&i| i as i64).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// Whether `device` is a CPU backend (flex, or LibTorch's CPU; plain or autodiff), where the
/// fused pass runs.
fn on_cpu(device: &Device) -> bool {
    #[allow(unused_mut)]
    let mut cpus = vec![Device::flex()];
    #[cfg(feature = "libtorch")]
    cpus.push(arbor_model::DeviceKind::LibTorch.device());
    cpus.into_iter().any(|d| d == *device || d.autodiff() == *device)
}

fn vector(v: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// The frozen reference at the action positions: log π_ref(target) `[N]`, and the full
/// log-distributions `[N, V]` when the KL needs them.
pub fn reference_head(
    logits: Tensor<2>,
    targets: &[usize],
    keep_dist: bool,
) -> (Tensor<1>, Option<Tensor<2>>) {
    let device = logits.device();
    if !on_cpu(&device) {
        let (dist, picked) = log_dist(logits, targets);
        return (picked, keep_dist.then_some(dist));
    }
    let [n, v] = logits.dims();
    let mut x = to_f32(logits);
    let picked: Vec<f32> = x
        .par_chunks_mut(v)
        .zip(targets.par_iter())
        .map(|(row, &t)| {
            let lse = log_sum_exp(row);
            if keep_dist {
                row.iter_mut().for_each(|xi| *xi -= lse);
                row[t]
            } else {
                row[t] - lse
            }
        })
        .collect();
    let dist = keep_dist.then(|| Tensor::from_data(TensorData::new(x, [n, v]), &device));
    (vector(picked, &device), dist)
}

/// The trained policy at the action positions: log π(target) `[N]`, and KL(π‖π_ref) `[N]` when
/// the reference's log-distributions are given; both differentiable with respect to `logits`.
pub fn policy_head(
    logits: Tensor<2>,
    targets: &[usize],
    reference: Option<Tensor<2>>,
) -> (Tensor<1>, Option<Tensor<1>>) {
    let device = logits.device();
    if !on_cpu(&device) {
        return unfused_policy_head(logits, targets, reference);
    }
    let [n, v] = logits.dims();
    let values = to_f32(logits.clone().detach());
    let fused = Fused::compute(values, v, targets, reference.map(to_f32).as_deref());
    let with_gradient = |exact: Vec<f32>, grad: Vec<f32>| {
        let c = Tensor::<2>::from_data(TensorData::new(grad, [n, v]), &device);
        let s = (logits.clone() * c).sum_dim(1).squeeze_dim::<1>(1);
        vector(exact, &device) + (s.clone() - s.detach())
    };
    let logp = with_gradient(fused.logp, fused.dlogp);
    let kl = fused.kl.map(|(kl, dkl)| with_gradient(kl, dkl));
    (logp, kl)
}

/// log Σ exp over one row, stable (the max taken out first).
fn log_sum_exp(row: &[f32]) -> f32 {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let s: f64 = row.iter().map(|&xi| (xi - m).exp() as f64).sum();
    m + s.ln() as f32
}

/// Per row: the values and their gradients with respect to the logits.
struct Fused {
    logp: Vec<f32>,
    /// onehot(t) − p, `[N·V]`.
    dlogp: Vec<f32>,
    /// KL(p‖r) and p ⊙ (log p − log r − KL), with a reference.
    kl: Option<(Vec<f32>, Vec<f32>)>,
}

impl Fused {
    /// `x` (the logits, `[N·V]`) becomes `dlogp`.
    fn compute(mut x: Vec<f32>, v: usize, targets: &[usize], reference: Option<&[f32]>) -> Self {
        let Some(r) = reference else {
            let logp = x
                .par_chunks_mut(v)
                .zip(targets.par_iter())
                .map(|(row, &t)| {
                    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let xt = row[t];
                    let mut s = 0f64;
                    for xi in row.iter_mut() {
                        *xi = (*xi - m).exp();
                        s += *xi as f64;
                    }
                    let inv = (1.0 / s) as f32;
                    row.iter_mut().for_each(|e| *e *= -inv);
                    row[t] += 1.0;
                    xt - m - s.ln() as f32
                })
                .collect();
            return Self {
                logp,
                dlogp: x,
                kl: None,
            };
        };
        let mut g = vec![0f32; x.len()];
        let (logp, kl): (Vec<f32>, Vec<f32>) = x
            .par_chunks_mut(v)
            .zip(g.par_chunks_mut(v))
            .zip(r.par_chunks(v))
            .zip(targets.par_iter())
            .map(|(((row, g), r), &t)| {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                // g holds x − m, row exp(x − m), until both are rewritten below.
                let mut s = 0f64;
                for (xi, gi) in row.iter_mut().zip(g.iter_mut()) {
                    *gi = *xi - m;
                    *xi = gi.exp();
                    s += *xi as f64;
                }
                let (inv, ln_s) = ((1.0 / s) as f32, s.ln() as f32);
                let logp = g[t] - ln_s;
                let mut kl = 0f64;
                for ((xi, gi), ri) in row.iter_mut().zip(g.iter_mut()).zip(r) {
                    let p = *xi * inv;
                    let d = *gi - ln_s - ri;
                    kl += (p * d) as f64;
                    *xi = p;
                    *gi = d;
                }
                let kl = kl as f32;
                for (xi, gi) in row.iter_mut().zip(g.iter_mut()) {
                    *gi = *xi * (*gi - kl);
                    *xi = -*xi;
                }
                row[t] += 1.0;
                (logp, kl)
            })
            .unzip();
        Self {
            logp,
            dlogp: x,
            kl: Some((kl, g)),
        }
    }
}

/// log-softmax `[N, V]` and its entries at the targets `[N]`, with burn's ops.
fn log_dist(logits: Tensor<2>, targets: &[usize]) -> (Tensor<2>, Tensor<1>) {
    let device = logits.device();
    let dist = log_softmax(logits, 1);
    let picked = dist
        .clone()
        .gather(1, index_tensor(targets, &device).unsqueeze_dim::<2>(1))
        .squeeze_dim::<1>(1);
    (dist, picked)
}

/// [`policy_head`] with burn's ops and autodiff, the path other devices take.
pub fn unfused_policy_head(
    logits: Tensor<2>,
    targets: &[usize],
    reference: Option<Tensor<2>>,
) -> (Tensor<1>, Option<Tensor<1>>) {
    let (dist, picked) = log_dist(logits, targets);
    let kl = reference.map(|r| {
        (dist.clone().exp() * (dist - r))
            .sum_dim(1)
            .squeeze_dim::<1>(1)
    });
    (picked, kl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, v: usize, scale: f32, seed: u64, device: &Device) -> Tensor<2> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let x: Vec<f32> = (0..n * v).map(|_| rng.gen_range(-scale..scale)).collect();
        Tensor::from_data(TensorData::new(x, [n, v]), device)
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < tol, "{what}: largest difference {worst}");
    }

    /// The fused pass gives the values and the gradients (through a loss that weighs each
    /// position's log-prob and KL differently) that autodiff through burn's ops gives; a wrong
    /// sign, a missing one-hot or a KL term left out of the gradient each fail here.
    #[test]
    fn the_fused_pass_matches_autodiff_through_burns_ops() {
        let device = Device::flex().autodiff();
        let (n, v) = (6, 257);
        let targets = [0, 5, 256, 17, 17, 100];
        let reference = log_softmax(random(n, v, 4.0, 2, &Device::flex()), 1);
        let weights = random(2, n, 1.0, 3, &device);
        let (w_lp, w_kl) = (weights.clone().narrow(0, 0, 1), weights.narrow(0, 1, 1));
        let loss = |lp: Tensor<1>, kl: Tensor<1>| {
            (lp.unsqueeze::<2>() * w_lp.clone()).sum() + (kl.unsqueeze::<2>() * w_kl.clone()).sum()
        };
        let run = |fused: bool| {
            let x = random(n, v, 6.0, 1, &device).require_grad();
            let (lp, kl) = if fused {
                policy_head(x.clone(), &targets, Some(reference.clone()))
            } else {
                unfused_policy_head(x.clone(), &targets, Some(reference.clone()))
            };
            let kl = kl.unwrap();
            let grads = loss(lp.clone(), kl.clone()).backward();
            let g = x.grad(&grads).unwrap();
            (to_f32(lp), to_f32(kl), to_f32(g))
        };
        let (lp, kl, g) = run(true);
        let (lp0, kl0, g0) = run(false);
        close(&lp, &lp0, 1e-5, "log-probs");
        close(&kl, &kl0, 1e-5, "KL");
        close(&g, &g0, 1e-6, "gradient");
        assert!(kl0.iter().all(|&k| k > 0.01), "the distributions differ");

        // Without a reference: the log-prob's gradient alone.
        let x = random(n, v, 6.0, 1, &device).require_grad();
        let (lp, kl) = policy_head(x.clone(), &targets, None);
        assert!(kl.is_none());
        let g = x.grad(&(lp * w_lp.clone().squeeze_dim::<1>(0)).sum().backward());
        let x0 = random(n, v, 6.0, 1, &device).require_grad();
        let (lp0, _) = unfused_policy_head(x0.clone(), &targets, None);
        let g0 = x0.grad(&(lp0 * w_lp.squeeze_dim::<1>(0)).sum().backward());
        close(
            &to_f32(g.unwrap()),
            &to_f32(g0.unwrap()),
            1e-6,
            "log-prob gradient",
        );
    }

    /// The reference's fused log-probs and log-distributions are burn's log-softmax.
    #[test]
    fn the_reference_head_is_the_log_softmax() {
        let device = Device::flex();
        let targets = [3, 0, 99];
        let x = random(3, 100, 8.0, 4, &device);
        let want = to_f32(log_softmax(x.clone(), 1));
        let (lp, dist) = reference_head(x.clone(), &targets, true);
        close(&to_f32(dist.unwrap()), &want, 1e-5, "distribution");
        let picked: Vec<f32> = targets
            .iter()
            .enumerate()
            .map(|(i, &t)| want[i * 100 + t])
            .collect();
        close(&to_f32(lp), &picked, 1e-5, "log-probs");
        let (lp, none) = reference_head(x, &targets, false);
        assert!(none.is_none());
        close(
            &to_f32(lp),
            &picked,
            1e-5,
            "log-probs without the distribution",
        );
    }
}
