//! `train.toml`: every key optional; `arbor train` flags set the keys of the same name.
use arbor_model::Precision;
use serde::{Deserialize, Serialize};

use crate::forward::Level;
use crate::losses::{DpoOptions, LambdaWeights};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algo {
    /// Supervised fine-tuning (rejection sampling when the data are correct samples).
    Sft,
    Dpo,
    Oreo,
    Tpo,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Sft => "sft",
            Algo::Dpo => "dpo",
            Algo::Oreo => "oreo",
            Algo::Tpo => "tpo",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub algo: Algo,
    pub epochs: usize,
    /// Stop after this many optimizer steps; the warm-up and cosine span the steps that run.
    pub max_steps: Option<usize>,
    /// Examples per micro-batch (a DPO pair, an OREO trajectory, a TPO list count as one).
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub lr: f64,
    /// The OREO critic's learning rate.
    pub value_lr: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    /// Global gradient-norm clip.
    pub clip: f64,
    /// β of DPO/TPO/OREO; unset: 0.1 (DPO, TPO), 0.03 (OREO).
    pub beta: Option<f64>,
    /// OREO's KL weight α; unset: 0.01 (token), 0.1 (step), 0.3 (response).
    pub alpha: Option<f64>,
    pub oreo_level: Level,
    pub dpo: DpoOptions,
    pub tpo_lambda: LambdaWeights,
    pub tpo_adaptive: bool,
    /// Compute reference log-probs once per sequence and reuse them (DPO, TPO).
    pub precompute_reference: bool,
    /// Share of examples held out for periodic evaluation.
    pub eval_fraction: f64,
    pub eval_every: usize,
    pub save_every: usize,
    /// Longer sequences (prompt + response tokens) are skipped and counted.
    pub max_len: usize,
    pub seed: u64,
    /// The type of the matrix products (mixed precision; weights, norms and losses stay f32).
    pub precision: Precision,
    /// f16's starting loss scale (dynamic: halved on overflow, doubled after 2,000 clean steps).
    pub loss_scale: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            algo: Algo::Dpo,
            epochs: 1,
            max_steps: None,
            batch_size: 4,
            grad_accum: 1,
            lr: 1e-5,
            value_lr: 1e-5,
            weight_decay: 0.0,
            warmup_ratio: 0.03,
            clip: 1.0,
            beta: None,
            alpha: None,
            oreo_level: Level::Token,
            dpo: DpoOptions::default(),
            tpo_lambda: LambdaWeights::Lipo,
            tpo_adaptive: true,
            precompute_reference: true,
            eval_fraction: 0.05,
            eval_every: 50,
            save_every: 50,
            max_len: 1024,
            seed: 0,
            precision: Precision::F32,
            loss_scale: 65536.0,
        }
    }
}

impl TrainConfig {
    pub fn beta(&self) -> f64 {
        self.beta.unwrap_or(match self.algo {
            Algo::Oreo => 0.03,
            _ => self.dpo.beta,
        })
    }

    pub fn alpha(&self) -> f64 {
        self.alpha.unwrap_or(match self.oreo_level {
            Level::Token => 0.01,
            Level::Step => 0.1,
            Level::Response => 0.3,
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        let bad = |m: &str| Err(m.to_string());
        if self.batch_size == 0 || self.grad_accum == 0 || self.epochs == 0 {
            return bad("batch_size, grad_accum and epochs must be at least 1");
        }
        if !(self.lr > 0.0 && self.value_lr > 0.0)
            || !(0.0..1.0).contains(&self.warmup_ratio)
            || !(0.0..1.0).contains(&self.eval_fraction)
        {
            return bad(
                "lr and value_lr must be positive; warmup_ratio and eval_fraction in [0, 1)",
            );
        }
        if self.beta() <= 0.0
            || self.alpha() < 0.0
            || !(0.0..0.5).contains(&self.dpo.label_smoothing)
        {
            return bad(
                "beta must be positive, alpha non-negative, dpo.label_smoothing in [0, 0.5)",
            );
        }
        if !(self.loss_scale >= 1.0 && self.loss_scale.is_finite()) {
            return bad("loss_scale must be a finite number of at least 1");
        }
        if self.eval_every == 0 || self.save_every == 0 || self.max_len < 2 {
            return bad("eval_every and save_every must be at least 1, max_len at least 2");
        }
        Ok(())
    }

    /// Learning rate at optimizer step `step` of `total`: linear warm-up over `warmup_ratio`
    /// of the steps, then cosine decay to zero.
    pub fn lr_at(&self, base: f64, step: usize, total: usize) -> f64 {
        let warm = ((self.warmup_ratio * total as f64).ceil() as usize).max(1);
        if step < warm {
            return base * (step + 1) as f64 / warm as f64;
        }
        let span = total.saturating_sub(warm).max(1) as f64;
        base * 0.5 * (1.0 + (std::f64::consts::PI * (step - warm) as f64 / span).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_by_cosine() {
        let c = TrainConfig {
            warmup_ratio: 0.1,
            ..Default::default()
        };
        assert!((c.lr_at(1.0, 0, 100) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(1.0, 9, 100) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(1.0, 10, 100) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(1.0, 55, 100) - 0.5).abs() < 1e-12);
        assert!(c.lr_at(1.0, 99, 100) < 0.001);
        assert_eq!(
            TrainConfig {
                algo: Algo::Oreo,
                ..Default::default()
            }
            .beta(),
            0.03
        );
        assert_eq!(
            TrainConfig {
                oreo_level: Level::Response,
                ..Default::default()
            }
            .alpha(),
            0.3
        );
    }
}
