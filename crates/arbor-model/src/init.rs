//! `arbor model init`: a randomly initialised Llama with a byte-level (or learned BPE, or
//! another model's) tokenizer, written as a Hugging Face checkpoint — a tiny model to train from
//! scratch, or a published model's shape for speed and memory measurements.
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
    /// Take another model's tokenizer instead: a GGUF file or a checkpoint directory.
    pub tokenizer: Option<PathBuf>,
}

/// A published model's shape (layers, width, heads, KV heads, FFN width), for random models of
/// that size: memory and speed measurements need the size, not the weights.
pub fn shape(name: &str) -> Option<[usize; 5]> {
    Some(match name {
        "smollm2-135m" => [30, 576, 9, 3, 1536],
        "smollm2-360m" => [32, 960, 15, 5, 2560],
        "smollm2-1.7b" => [24, 2048, 32, 32, 8192],
        _ => return None,
    })
}

/// The names [`shape`] knows.
pub const SHAPES: [&str; 3] = ["smollm2-135m", "smollm2-360m", "smollm2-1.7b"];

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
            tokenizer: None,
        }
    }
}

fn tokenizer_of(p: &Path) -> Result<TextTokenizer, ModelError> {
    let bad = |e: &dyn std::fmt::Display| ModelError::Invalid(format!("{}: {e}", p.display()));
    if p.is_dir() {
        return TextTokenizer::from_hf_dir(p).map_err(|e| bad(&e));
    }
    let g = crate::gguf::Gguf::open(p).map_err(|e| bad(&e))?;
    TextTokenizer::from_gguf(&g).map_err(|e| bad(&e))
}

/// Writes the tiny model as a checkpoint directory at `out`.
pub fn init_tiny(spec: &TinySpec, out: &Path) -> Result<(), ModelError> {
    let tok = match (&spec.tokenizer, &spec.corpus) {
        (Some(p), _) => tokenizer_of(p)?,
        (None, Some(p)) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| ModelError::Invalid(format!("{}: {e}", p.display())))?;
            let docs: Vec<String> = text.lines().map(str::to_string).collect();
            TextTokenizer::train_bpe(&docs, spec.vocab_size)?
        }
        (None, None) => TextTokenizer::byte_level()?,
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
    cfg.validate()
        .map_err(|m| ModelError::Invalid(format!("--layers/--d-model/--heads/--kv-heads: {m}")))?;
    let device = burn::tensor::Device::flex();
    let mut init = RandomInit(rand::rngs::StdRng::seed_from_u64(spec.seed));
    let llama = match Llama::load(&cfg, &mut init, &device) {
        Ok(l) => l,
        Err(e) => match e {},
    };
    EmbeddedModel::from_parts(cfg, tok, llama, device, "tiny".into()).save_hf(out)
}
