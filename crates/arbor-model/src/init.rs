//! `arbor model init`: a randomly initialised Llama with a byte-level (or learned BPE, or
//! another model's) tokenizer, written as a Hugging Face checkpoint — a tiny model to train from
//! scratch, or a published model's shape for speed and memory measurements.
use std::path::{Path, PathBuf};

use rand::SeedableRng;

use crate::llama::{Llama, LlamaConfig, RandomInit};
use crate::tokenizer::TextTokenizer;
use crate::{EmbeddedModel, ModelError};

/// The shape of the tiny model and where its tokenizer comes from (`arbor model init`'s flags).
#[derive(Debug, Clone, clap::Args)]
pub struct TinySpec {
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    #[arg(long, default_value_t = 64)]
    pub d_model: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 2)]
    pub kv_heads: usize,
    #[arg(long, default_value_t = 192)]
    pub d_ff: usize,
    #[arg(long, default_value_t = 1024)]
    pub context: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Learn a byte-level BPE from this text file (e.g. rendered prompts and solutions, one
    /// document a line) instead of one token per byte.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Vocabulary size of the learned BPE.
    #[arg(long, default_value_t = 512)]
    pub vocab_size: usize,
    /// Another model's tokenizer instead (`embedded`, a GGUF file or a checkpoint directory).
    #[arg(long, conflicts_with = "corpus")]
    pub tokenizer: Option<String>,
    /// A published model's layers, width and heads (overrides those flags); with
    /// `--tokenizer embedded`, a random model of that size for speed and memory measurements.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(SHAPES))]
    pub shape: Option<String>,
}

/// A published model's shape (layers, width, heads, KV heads, FFN width), for random models of
/// that size: memory and speed measurements need the size, not the weights.
fn shape(name: &str) -> Option<[usize; 5]> {
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
            shape: None,
        }
    }
}

fn tokenizer_of(name: &str) -> Result<TextTokenizer, ModelError> {
    let given = (name != "embedded").then(|| Path::new(name));
    let p = &crate::fetch::resolve_model(given).map_err(|e| ModelError::Invalid(e.to_string()))?;
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
    let [layers, d_model, heads, kv_heads, d_ff] = match spec.shape.as_deref() {
        Some(s) => shape(s).ok_or_else(|| ModelError::Invalid(format!("unknown shape `{s}`")))?,
        None => [
            spec.layers,
            spec.d_model,
            spec.heads,
            spec.kv_heads,
            spec.d_ff,
        ],
    };
    let cfg = LlamaConfig {
        n_layers: layers,
        d_model,
        d_ff,
        n_heads: heads,
        n_kv_heads: kv_heads,
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
