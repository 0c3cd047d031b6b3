//! Whether a device trains as the CPU does: the losses and every weight's gradient of a DPO, an
//! OREO (policy and critic) and a TPO batch on a small random Llama, computed on flex and on the
//! device from the same weights and tokens. GPU backends reduce in other orders than the CPU, so
//! they agree to rounding, not bit for bit; a wrong kernel differs by orders of magnitude more.
use std::time::Instant;

use arbor_model::host::to_f32;
use arbor_model::llama::{param_id, weight_shapes, Llama, LlamaConfig, RandomInit, WeightSource};
use arbor_model::tokenizer::TextTokenizer;
use arbor_model::{DeviceKind, Precision};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;

use crate::config::{Algo, TrainConfig};
use crate::data::Example;
use crate::probe::Probe;
use crate::start::StartModel;
use crate::value::{head_param, ValueModel};
use crate::TrainError;

/// One loss on both devices.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LossCheck {
    /// `dpo`, `oreo`, `oreo critic`, `tpo`.
    pub loss: String,
    pub cpu: f64,
    pub device: f64,
    /// The largest gradient entry on the CPU, over every weight.
    pub grad_max: f64,
    /// The largest |device − CPU| over every gradient entry.
    pub grad_diff: f64,
    pub weights: usize,
    /// Seconds for the device's forward and backward (the first call includes kernel compilation).
    pub device_s: f64,
}

impl LossCheck {
    /// Loss within `tol` and every gradient entry within `tol` of the largest one.
    pub fn agrees(&self, tol: f64) -> bool {
        (self.cpu - self.device).abs() <= tol && self.grad_diff <= tol * self.grad_max.max(1.0)
    }
}

/// Weights ×`1` from N(0, 0.02²) give a near-uniform model whose gradients are tiny; larger
/// weights give the losses curvature, so a wrong kernel shows.
struct Scaled(RandomInit, f32);

impl WeightSource for Scaled {
    type Error = std::convert::Infallible;
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, Self::Error> {
        let w = self.0.weight(name, shape)?;
        Ok(if name.ends_with("norm.weight") {
            w
        } else {
            w.into_iter().map(|x| x * self.1).collect()
        })
    }
    fn has_output(&mut self) -> bool {
        false
    }
}

/// The tiny Llama (2 layers, width 64) on byte-level tokens that the checks (and unit tests) use.
pub(crate) fn config(tok: &TextTokenizer) -> LlamaConfig {
    LlamaConfig {
        n_layers: 2,
        d_model: 64,
        d_ff: 128,
        n_heads: 4,
        n_kv_heads: 2,
        vocab: tok.vocab_size,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        context: 512,
    }
}

fn model(cfg: &LlamaConfig, seed: u64, device: &Device) -> Llama {
    let mut src = Scaled(RandomInit(rand::rngs::StdRng::seed_from_u64(seed)), 10.0);
    match Llama::load(cfg, &mut src, device) {
        Ok(m) => m,
        Err(e) => match e {},
    }
}

fn steps(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

pub(crate) fn examples(algo: Algo) -> Vec<Example> {
    let q = "Ava has 3 cards. She buys 2 more. How many cards does she have?";
    let right = steps(&["3 + 2 = 5", "The answer is 5"]);
    match algo {
        Algo::Dpo | Algo::Sft => vec![
            Example::Pair {
                question: q.into(),
                prefix: vec![],
                chosen: right.clone(),
                rejected: steps(&["3 + 2 = 6", "The answer is 6"]),
            },
            Example::Pair {
                question: q.into(),
                prefix: steps(&["3 + 2 = 5"]),
                chosen: steps(&["The answer is 5"]),
                rejected: steps(&["The answer is 4"]),
            },
        ],
        Algo::Oreo => vec![
            Example::Trajectory {
                question: q.into(),
                steps: right,
                reward: 1.0,
            },
            Example::Trajectory {
                question: q.into(),
                steps: steps(&["3 * 2 = 6", "The answer is 6"]),
                reward: 0.0,
            },
        ],
        Algo::Tpo => vec![Example::List {
            question: q.into(),
            responses: vec![
                right,
                steps(&["3 + 2 = 5", "The answer is 6"]),
                steps(&["3 - 2 = 1"]),
            ],
            scores: vec![1.0, 0.4, 0.0],
        }],
    }
}

/// Every weight's gradient, flattened in the order of `weight_shapes`.
fn gradients(cfg: &LlamaConfig, grads: &GradientsParams, head: bool) -> Vec<f32> {
    let mut out = Vec::new();
    for (name, shape) in weight_shapes(cfg, false) {
        let g = if shape.len() == 1 {
            grads.get::<1>(param_id(&name)).map(to_f32)
        } else {
            grads.get::<2>(param_id(&name)).map(to_f32)
        };
        // A weight the loss does not reach (none in these batches) counts as zeros on both sides.
        out.extend(g.unwrap_or_else(|| vec![0.0; shape.iter().product()]));
    }
    if head {
        if let Some(g) = grads.get::<2>(param_id("value_head.weight")) {
            out.extend(to_f32(g));
        }
    }
    out
}

/// The losses and gradients of one algorithm's batch on `device`: (name, loss, gradients).
fn losses_on(
    algo: Algo,
    device: &Device,
    precision: Precision,
) -> Result<Vec<(String, f64, Vec<f32>, f64)>, TrainError> {
    let tok = TextTokenizer::byte_level().map_err(|e| TrainError::Config(e.to_string()))?;
    let cfg = config(&tok);
    let mut tc = TrainConfig {
        algo,
        precompute_reference: false,
        precision,
        ..TrainConfig::default()
    };
    if algo == Algo::Oreo {
        tc.alpha = Some(0.2);
    }
    // The policy starts away from the reference so that the log-ratios are not zero.
    let start = StartModel {
        cfg: cfg.clone(),
        tokenizer: tok,
        model: model(&cfg, 1, device),
        device: device.clone(),
        source: "device check".into(),
        critic: None,
        reference: Some(model(&cfg, 2, device)),
    };
    let mut probe = Probe::new(&tc, &start, examples(algo))?;
    let ad = device.clone().autodiff();
    let head: Vec<f32> = (0..cfg.d_model).map(|i| 0.3 - 0.01 * i as f32).collect();
    let value = || {
        ValueModel {
            trunk: model(&cfg, 3, device),
            head: head_param(Tensor::from_data(
                TensorData::new(head.clone(), [cfg.d_model, 1]),
                device,
            )),
        }
        .fork(&ad)
        .train()
        .with_precision(precision)
    };
    let mut out = Vec::new();
    let t = Instant::now();
    let policy = start.model.clone().fork(&ad).train().with_precision(precision);
    let v = (algo == Algo::Oreo).then(value);
    let (pl, _) = probe.losses(&policy, v.as_ref());
    let loss = pl.clone().into_scalar::<f32>() as f64;
    let g = GradientsParams::from_grads(pl.backward(), &policy);
    out.push((
        algo.name().to_string(),
        loss,
        gradients(&cfg, &g, false),
        t.elapsed().as_secs_f64(),
    ));
    if algo == Algo::Oreo {
        let t = Instant::now();
        let v = value();
        let policy = start.model.clone().fork(&ad).train().with_precision(precision);
        let (_, vl) = probe.losses(&policy, Some(&v));
        let vl = vl.ok_or_else(|| TrainError::Config("OREO gave no critic loss".into()))?;
        let loss = vl.clone().into_scalar::<f32>() as f64;
        let g = GradientsParams::from_grads(vl.backward(), &v);
        out.push((
            "oreo critic".into(),
            loss,
            gradients(&cfg, &g, true),
            t.elapsed().as_secs_f64(),
        ));
    }
    Ok(out)
}

/// DPO, OREO (policy and critic) and TPO on the CPU in f32 and on `device` with its matrix
/// products in `precision`.
pub fn compare(device: DeviceKind, precision: Precision) -> Result<Vec<LossCheck>, TrainError> {
    let mut out = Vec::new();
    for algo in [Algo::Dpo, Algo::Oreo, Algo::Tpo] {
        let cpu = losses_on(algo, &DeviceKind::Cpu.device(), Precision::F32)?;
        let dev = losses_on(algo, &device.device(), precision)?;
        for ((name, lc, gc, _), (_, ld, gd, secs)) in cpu.into_iter().zip(dev) {
            let grad_max = gc.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64));
            let grad_diff = gc
                .iter()
                .zip(&gd)
                .fold(0.0f64, |m, (&a, &b)| m.max((a - b).abs() as f64));
            out.push(LossCheck {
                loss: name,
                cpu: lc,
                device: ld,
                grad_max,
                grad_diff: if gc.len() == gd.len() {
                    grad_diff
                } else {
                    f64::INFINITY
                },
                weights: gc.len(),
                device_s: secs,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The CPU against itself agrees exactly; a gradient that is all zeros would make the check
    // vacuous, so the largest entry must be visible.
    #[test]
    fn cpu_agrees_with_itself_and_gradients_are_not_vacuous() {
        let rows = compare(DeviceKind::Cpu, Precision::F32).unwrap();
        assert_eq!(rows.len(), 4);
        for r in &rows {
            assert!(r.agrees(1e-6), "{r:?}");
            assert_eq!(r.grad_diff, 0.0, "{r:?}");
            assert!(r.grad_max > 1e-3, "{r:?}");
            assert!(r.cpu.is_finite() && r.cpu != 0.0, "{r:?}");
        }
    }

    /// Mixed precision on the CPU: every loss and gradient near f32's, and not equal to it (the
    /// products did run in the low type). Measured: bf16 losses within 3.2e-3 and gradients
    /// within 2.8e-2 of the largest entry; f16 within 1.1e-3 and 3.4e-3 (3 more mantissa bits).
    #[test]
    fn low_precision_stays_near_f32_and_is_not_f32() {
        for (p, tol) in [(Precision::Bf16, 4e-2), (Precision::F16, 4e-3)] {
            let rows = compare(DeviceKind::Cpu, p).unwrap();
            for r in &rows {
                eprintln!("{p:?} {}: loss Δ {:.2e}, grad Δ {:.2e} of {:.2e}", r.loss, (r.cpu - r.device).abs(), r.grad_diff, r.grad_max);
                assert!(r.agrees(tol), "{p:?}: {r:?}");
                assert!(r.grad_diff > 1e-6 * r.grad_max, "{p:?} computed as f32: {r:?}");
            }
        }
    }

    #[test]
    fn a_perturbed_gradient_fails_the_check() {
        let r = LossCheck {
            loss: "dpo".into(),
            cpu: 0.7,
            device: 0.7,
            grad_max: 0.5,
            grad_diff: 1e-3,
            weights: 10,
            device_s: 0.0,
        };
        assert!(!r.agrees(1e-4));
        assert!(LossCheck {
            grad_diff: 5e-5,
            ..r.clone()
        }
        .agrees(1e-4));
        assert!(!LossCheck {
            device: 0.71,
            grad_diff: 0.0,
            ..r
        }
        .agrees(1e-4));
    }
}
