//! The OREO critic: a copy of the policy LM's trunk with a bias-free linear head initialised to
//! zero, read at every state position.
use std::path::Path;

use arbor_model::hf;
use arbor_model::llama::{KvCache, Llama, LlamaConfig};
use arbor_model::tokenizer::TextTokenizer;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

#[derive(Module, Debug)]
pub struct ValueModel {
    pub trunk: Llama,
    /// `[d, 1]`.
    pub head: Param<Tensor<2>>,
}

/// The head's file inside a value checkpoint directory (the trunk is an ordinary HF checkpoint).
pub const HEAD_FILE: &str = "value_head.safetensors";

/// The head's parameter, with a stable id so optimizer state survives a checkpoint.
pub fn head_param(w: Tensor<2>) -> Param<Tensor<2>> {
    let mut p = Param::from_tensor(w);
    p.id = arbor_model::llama::param_id("value_head.weight");
    p
}

impl ValueModel {
    pub fn new(trunk: Llama, cfg: &LlamaConfig, device: &Device) -> Self {
        Self {
            trunk,
            head: head_param(Tensor::zeros([cfg.d_model, 1], device)),
        }
    }

    /// The critic with its trunk's matrix products in `precision`.
    pub fn with_precision(self, precision: arbor_model::Precision) -> Self {
        Self {
            trunk: self.trunk.with_precision(precision),
            head: self.head,
        }
    }

    /// V at every position of left-padded `tokens`, `[B, T]`.
    pub fn values(
        &self,
        cfg: &LlamaConfig,
        tokens: &[Vec<u32>],
        pads: &[usize],
        device: &Device,
    ) -> Tensor<2> {
        let h = self.trunk.hidden(cfg, tokens, pads, device);
        let [b, t, d] = h.dims();
        h.reshape([b * t, d])
            .matmul(self.head.val())
            .reshape([b, t])
    }

    /// V at every position of `tokens` `[B, T]` on top of `cache` (a shared prefix's keys and
    /// values, extended in place); rows may be right-padded, as later positions are not seen.
    pub fn values_cached(
        &self,
        cfg: &LlamaConfig,
        tokens: &[Vec<u32>],
        cache: &mut KvCache,
        device: &Device,
    ) -> Tensor<2> {
        let pads = vec![0; tokens.len()];
        let h = self.trunk.hidden_cached(cfg, tokens, &pads, cache, device);
        let [b, t, d] = h.dims();
        h.reshape([b * t, d])
            .matmul(self.head.val())
            .reshape([b, t])
    }

    pub fn save(
        &self,
        dir: &Path,
        cfg: &LlamaConfig,
        tok: &TextTokenizer,
    ) -> Result<(), hf::CheckpointError> {
        hf::save(dir, cfg, &self.trunk, tok)?;
        let w = self.head.val();
        let d = w.dims()[0];
        let v = arbor_model::host::to_f32(w);
        hf::write_safetensors(
            &dir.join(HEAD_FILE),
            &[("value_head.weight".into(), vec![1, d], v)],
        )
    }

    pub fn load(dir: &Path, device: &Device) -> Result<(Self, LlamaConfig), hf::CheckpointError> {
        let c = hf::load(dir, device)?;
        let path = dir.join(HEAD_FILE);
        let mut t = hf::read_safetensors(&path)?;
        let bad = || hf::CheckpointError::File {
            path: path.display().to_string(),
            msg: format!("`value_head.weight` [1, {}] is missing", c.cfg.d_model),
        };
        let (shape, w) = t.remove("value_head.weight").ok_or_else(bad)?;
        if shape != [1, c.cfg.d_model] {
            return Err(bad());
        }
        let head = head_param(Tensor::<2>::from_data(
            TensorData::new(w, [c.cfg.d_model, 1]),
            device,
        ));
        Ok((
            Self {
                trunk: c.model,
                head,
            },
            c.cfg,
        ))
    }
}
