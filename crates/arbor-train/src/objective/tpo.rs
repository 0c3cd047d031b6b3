//! TPO (Liao et al. 2024): listwise preference over ranked responses with LiPO-λ weights and
//! adaptive step weights from the responses' step representations.
use arbor_model::host::to_f32;
use burn::tensor::{Tensor, TensorData};

use super::core::{scalar, Context, LossInput, LossOut, Objective, Sequences};
use crate::config::Algo;
use crate::data::Example;
use crate::forward::{token_pass, Level, Units};
use crate::losses::{adaptive_step_weights, tpo};

pub struct Tpo;

impl Objective for Tpo {
    fn algo(&self) -> Algo {
        Algo::Tpo
    }
    fn metrics(&self) -> &'static [&'static str] {
        &["loss", "margin_best_worst", "best_nll"]
    }
    fn eval_metrics(&self) -> &'static [&'static str] {
        &["loss"]
    }
    fn sequences(&self, ex: Example) -> Result<Option<Sequences>, Example> {
        match ex {
            Example::List {
                question,
                responses,
                scores,
            } => Ok(Some(Sequences {
                scores,
                ..Sequences::of(
                    responses
                        .into_iter()
                        .map(|r| (question.clone(), vec![], r))
                        .collect(),
                )
            })),
            other => Err(other),
        }
    }
    fn loss(&self, cx: &mut Context, x: &LossInput<'_>) -> LossOut {
        let (policy, batch, ex) = (x.policy, x.batch, x.ex);
        let device = cx.device.clone();
        let mask = batch.action_mask(&device);
        let pass = token_pass(policy, &cx.lcfg, batch, &device, None);
        // Optional NLL of each list's best response (Iterative RPO's term; not in the TPO
        // paper): the weight is `[dpo] nll_weight`.
        let nll_weight = cx.cfg.dpo.nll_weight;
        let best_nll = (nll_weight > 0.0).then(|| {
            let mut sel = vec![0f32; batch.rows()];
            let mut row = 0;
            for e in ex {
                sel[row] = 1.0;
                row += e.seqs.len();
            }
            let sel = Tensor::<2>::from_data(TensorData::new(sel, [batch.rows(), 1]), &device);
            let m = mask.clone() * sel;
            (pass.logprobs.clone() * m.clone()).sum().neg() / m.sum().clamp_min(1.0)
        });
        let (ref_lp, _) = cx.reference(batch, x.ids, false);
        let units = Units::new(batch, Level::Step, &device);
        let k = units.mask.dims()[1];
        let step_rho = units.sum((pass.logprobs - ref_lp) * mask);
        let mut weights = to_f32(units.mask.clone());
        if cx.cfg.tpo_adaptive {
            let means = units.mean_hidden(pass.hidden.detach());
            let d = means.dims()[2];
            let m = to_f32(means);
            let mut row = 0;
            for e in ex {
                let steps: Vec<Vec<Vec<f32>>> = (0..e.seqs.len())
                    .map(|r| {
                        let n_steps = batch.seqs[row + r].step_ends.len().min(k);
                        (0..n_steps)
                            .map(|s| m[((row + r) * k + s) * d..((row + r) * k + s + 1) * d].to_vec())
                            .collect()
                    })
                    .collect();
                for (r, ws) in adaptive_step_weights(&steps).into_iter().enumerate() {
                    for (s, w) in ws.into_iter().enumerate() {
                        weights[(row + r) * k + s] *= w;
                    }
                }
                row += e.seqs.len();
            }
        }
        // Lists of different lengths: pad each to the longest with zero rows.
        let n_max = ex.iter().map(|e| e.seqs.len()).max().unwrap_or(0);
        let mut lists = Vec::new();
        let mut wl = Vec::new();
        let mut row = 0;
        for e in ex {
            let n = e.seqs.len();
            let part = step_rho.clone().narrow(0, row, n);
            let mut w = weights[row * k..(row + n) * k].to_vec();
            w.extend(std::iter::repeat_n(0.0, (n_max - n) * k));
            let part = if n < n_max {
                Tensor::cat(vec![part, Tensor::zeros([n_max - n, k], &device)], 0)
            } else {
                part
            };
            lists.push(part);
            wl.extend(w);
            row += n;
        }
        let rho3 = Tensor::stack::<3>(lists, 0);
        let w3 = Tensor::<3>::from_data(TensorData::new(wl, [ex.len(), n_max, k]), &device);
        let scores: Vec<Vec<Option<f64>>> = ex
            .iter()
            .map(|e| (0..n_max).map(|i| e.scores.get(i).copied()).collect())
            .collect();
        let (loss, s) = tpo(rho3, w3, &scores, cx.cfg.beta(), cx.cfg.tpo_lambda, &device);
        let sv = to_f32(s);
        let margins: Vec<f64> = ex
            .iter()
            .enumerate()
            .map(|(b, e)| (sv[b * n_max] - sv[b * n_max + e.seqs.len() - 1]) as f64)
            .collect();
        let top_margin = margins.iter().sum::<f64>() / margins.len().max(1) as f64;
        let mut metrics = vec![("margin_best_worst", top_margin)];
        let loss = match best_nll {
            Some(nll) => {
                metrics.push(("best_nll", scalar(nll.clone())));
                loss + nll.mul_scalar(nll_weight)
            }
            None => loss,
        };
        metrics.insert(0, ("loss", scalar(loss.clone())));
        LossOut {
            metrics,
            policy: loss,
            value: None,
        }
    }
}
