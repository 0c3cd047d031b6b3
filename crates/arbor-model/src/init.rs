//! `arbor model init`: a randomly initialised Llama with a byte-level (or learned BPE)
//! tokenizer, written as a Hugging Face checkpoint — a tiny model to train from scratch.
use std::path::{Path, PathBuf};

use rand::SeedableRng;

use crate::llama::{Llama, LlamaConfig, RandomInit};
use crate::tokenizer::TextTokenizer;
use crate::{EmbeddedModel, ModelError};

/// The shape of the tiny model and where its tokenizer comes from.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub layers: usize,
    pub d_model: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub d_ff: usize,
    pub context: usize,
    pub seed: u64,
    /// Learn a byte-level BPE of `vocab_size` from this text file (one document a line)
    /// instead of one token per byte.
    pub corpus: Option<PathBuf>,
    pub vocab_size: usize,
}

impl TinySpec {
    /// The smallest useful model (one layer, width 16, byte-level tokens): for tests.
    pub fn minimal(seed: u64) -> Self {
        Self {
            layers: 1,
            d_model: 16,
            heads: 2,
            kv_heads: 1,
            d_ff: 32,
            context: 256,
            seed,
            corpus: None,
            vocab_size: 0,
        }
    }
}

/// Writes the tiny model as a checkpoint directory at `out`.
pub fn init_tiny(spec: &TinySpec, out: &Path) -> Result<(), ModelError> {
    let tok = match &spec.corpus {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| ModelError::Invalid(format!("{}: {e}", p.display())))?;
            let docs: Vec<String> = text.lines().map(str::to_string).collect();
            TextTokenizer::train_bpe(&docs, spec.vocab_size)?
        }
        None => TextTokenizer::byte_level()?,
    };
    let cfg = LlamaConfig {
        n_layers: spec.layers,
        d_model: spec.d_model,
        d_ff: spec.d_ff,
        n_heads: spec.heads,
        n_kv_heads: spec.kv_heads,
        vocab: tok.vocab_size,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        context: spec.context,
    };
    cfg.validate().map_err(|m| {
        ModelError::Invalid(format!("--layers/--d-model/--heads/--kv-heads: {m}"))
    })?;
    let device = burn::tensor::Device::flex();
    let mut init = RandomInit(rand::rngs::StdRng::seed_from_u64(spec.seed));
    let llama = match Llama::load(&cfg, &mut init, &device) {
        Ok(l) => l,
        Err(e) => match e {},
    };
    EmbeddedModel::from_parts(cfg, tok, llama, device, "tiny".into())
        .save_hf(out)
}
