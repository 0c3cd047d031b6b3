//! Generation with the embedded model: batched, left-padded prefill; n samples per prompt
//! sharing the prompt's KV cache; temperature / top-k / top-p sampling with a seed; stop strings
//! and ids; per-token log-probs with top-k alternatives; teacher-forced scoring.
use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::constrain::{Grammar, JsonConstraint, TokenTrie};
use crate::engine::{Engine, Net};
use crate::gguf::{Gguf, GgufError};
use crate::llama::{Llama, LlamaConfig};
use crate::native::{prefix_budget, NativeLlama, PrefixStats, PrefixStore};
use crate::sampling::{log_softmax, top_k};
use crate::tokenizer::{TextTokenizer, TokenizerError};
use std::sync::OnceLock;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("{0}")]
    Invalid(String),
}

fn yes() -> bool {
    true
}

/// Sampling settings for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// 0 is greedy.
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub seed: u64,
    pub stop: Vec<String>,
    pub stop_ids: Vec<u32>,
    /// Samples for this prompt; sample i uses seed + i.
    pub n: usize,
    /// Alternatives reported per position.
    pub top_logprobs: usize,
    /// Whether each generated id's log-prob is reported (`Generated::logprobs`). Off, a greedy
    /// row skips the softmax over the vocabulary (a sampled row's draw needs it anyway).
    #[serde(default = "yes")]
    pub logprobs: bool,
    /// Structured output: every answer follows this JSON Schema (a token mask per step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<serde_json::Value>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
            stop: Vec::new(),
            stop_ids: Vec::new(),
            n: 1,
            top_logprobs: 0,
            logprobs: true,
            json_schema: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Stop,
    Length,
}

/// One sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    /// Generated ids, the stop token excluded.
    pub ids: Vec<u32>,
    pub text: String,
    /// Natural-log probability of each generated id under the model (temperature 1); empty
    /// when the options did not ask for them.
    pub logprobs: Vec<f32>,
    /// Per position, the most likely ids and their log-probs.
    pub top: Vec<Vec<(u32, f32)>>,
    pub finish: Finish,
}

/// A token just generated, as [`EmbeddedModel::generate_batch_with`] reports it.
pub struct NewToken<'a> {
    /// Which prompt, and which of its samples.
    pub prompt: usize,
    pub sample: usize,
    pub id: u32,
    /// `None` when the options asked for no log-probs.
    pub logprob: Option<f32>,
    pub top: &'a [(u32, f32)],
}

/// Teacher-forced log-probs of a continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub logprobs: Vec<f32>,
    pub top: Vec<Vec<(u32, f32)>>,
}

/// The model, its tokenizer and the device it runs on.
///
/// Two forms of the network, each built when first needed: the f32 burn network (training,
/// scoring, generation on GPU devices) and the native one (generation on the CPU from the
/// file's quantized blocks). Loading builds the one the default engine uses, so a bad file is
/// an error at load; the other is then built from the same, already checked, tensors.
pub struct EmbeddedModel {
    pub cfg: LlamaConfig,
    pub tokenizer: TextTokenizer,
    model: OnceLock<Llama>,
    native: OnceLock<NativeLlama>,
    /// The file both are read from (memory-mapped; absent for checkpoints and models in memory).
    gguf: Option<Gguf>,
    engine: Engine,
    device: Device,
    pub name: String,
    /// The vocabulary as a byte trie, built at the first constrained request.
    trie: OnceLock<Arc<TokenTrie>>,
    /// Caches of sequences read before, for prompts that start the same way (native engine).
    prefixes: Mutex<PrefixStore>,
    /// Compiled schemas (by their canonical JSON) with their mask caches.
    constraints: Mutex<HashMap<String, Arc<JsonConstraint>>>,
}

impl EmbeddedModel {
    /// Loads a GGUF file or a Hugging Face checkpoint directory (`config.json`,
    /// `model.safetensors`, tokenizer files), such as `arbor train` writes.
    pub fn load(path: &Path, device: Device) -> Result<Self, ModelError> {
        if path.is_dir() {
            let c =
                crate::hf::load(path, &device).map_err(|e| ModelError::Invalid(e.to_string()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "checkpoint".into());
            return Ok(Self::from_parts(c.cfg, c.tokenizer, c.model, device, name));
        }
        let g = Gguf::open(path)?;
        let cfg = LlamaConfig::from_gguf(&g)?;
        let tokenizer = TextTokenizer::from_gguf(&g)?;
        let name = g
            .metadata
            .get("general.name")
            .and_then(|v| v.as_str())
            .unwrap_or("embedded")
            .to_string();
        let engine = default_engine(&device);
        let m = Self {
            cfg,
            tokenizer,
            model: OnceLock::new(),
            native: OnceLock::new(),
            gguf: None,
            engine,
            device,
            name,
            trie: OnceLock::new(),
            prefixes: Mutex::new(PrefixStore::new(prefix_budget())),
            constraints: Mutex::new(HashMap::new()),
        };
        match engine {
            Engine::Native => drop(m.native.set(NativeLlama::from_gguf(&g, &m.cfg)?)),
            Engine::Burn => drop(m.model.set(Llama::from_gguf(&g, &m.cfg, &m.device)?)),
        }
        Ok(Self { gguf: Some(g), ..m })
    }

    pub fn from_parts(
        cfg: LlamaConfig,
        tokenizer: TextTokenizer,
        model: Llama,
        device: Device,
        name: String,
    ) -> Self {
        Self {
            cfg,
            tokenizer,
            model: OnceLock::from(model),
            native: OnceLock::new(),
            gguf: None,
            engine: default_engine(&device),
            device,
            name,
            trie: OnceLock::new(),
            prefixes: Mutex::new(PrefixStore::new(prefix_budget())),
            constraints: Mutex::new(HashMap::new()),
        }
    }

    /// Generates with `engine` from now on.
    pub fn with_engine(self, engine: Engine) -> Self {
        Self { engine, ..self }
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The prefix cache (native engine).
    pub(crate) fn prefixes(&self) -> std::sync::MutexGuard<'_, PrefixStore> {
        self.prefixes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How often prompts started from a stored prefix, and how many positions that saved.
    pub fn prefix_stats(&self) -> PrefixStats {
        self.prefixes().stats
    }

    /// Positions the prefix cache may hold (0 turns it off).
    pub fn set_prefix_budget(&self, positions: usize) {
        self.prefixes().set_budget(positions)
    }

    /// The network that generates.
    pub(crate) fn net(&self) -> Net<'_> {
        match self.engine {
            Engine::Native => Net::Native(self.native()),
            Engine::Burn => Net::Burn(self.llama(), &self.cfg, &self.device),
        }
    }

    /// The native (quantized, CPU) network.
    pub fn native(&self) -> &NativeLlama {
        self.native.get_or_init(|| match &self.gguf {
            Some(g) => NativeLlama::from_gguf(g, &self.cfg)
                .expect("the file's tensors were checked when the burn network read them"),
            None => NativeLlama::from_f32(&self.cfg, self.llama().weights())
                .expect("a network's own weights are complete"),
        })
    }

    /// `schema` compiled against this model's vocabulary (once per schema); an unsupported
    /// schema is an error naming the place in it.
    pub fn constraint(
        &self,
        schema: &serde_json::Value,
    ) -> Result<Arc<JsonConstraint>, ModelError> {
        let key = schema.to_string();
        if let Some(c) = self.constraints.lock().expect("constraints").get(&key) {
            return Ok(c.clone());
        }
        let grammar = Grammar::compile(schema).map_err(ModelError::Invalid)?;
        let trie = self
            .trie
            .get_or_init(|| Arc::new(TokenTrie::new(self.tokenizer.token_bytes())))
            .clone();
        let c = Arc::new(JsonConstraint::new(grammar, trie, self.tokenizer.eos));
        self.constraints
            .lock()
            .expect("constraints")
            .insert(key, c.clone());
        Ok(c)
    }

    /// The f32 network (for training: fork it onto an autodiff device).
    pub fn llama(&self) -> &Llama {
        self.model.get_or_init(|| {
            let g = self
                .gguf
                .as_ref()
                .expect("a model without a file was built with its network");
            Llama::from_gguf(g, &self.cfg, &self.device)
                .expect("the file's tensors were checked when the native network read them")
        })
    }

    /// Writes the model as a Hugging Face checkpoint directory.
    pub fn save_hf(&self, dir: &Path) -> Result<(), ModelError> {
        crate::hf::save(dir, &self.cfg, self.llama(), &self.tokenizer)
            .map_err(|e| ModelError::Invalid(e.to_string()))
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Log-softmax over the vocabulary at every position of `ids` (position i predicts i+1), from
    /// the network that generates, so scores and decoding agree.
    pub fn position_logprobs(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>, ModelError> {
        if ids.is_empty() {
            return Err(ModelError::Invalid("no tokens".into()));
        }
        Ok(self
            .net()
            .all_positions(ids)
            .iter()
            .map(|r| log_softmax(r))
            .collect())
    }

    /// Teacher-forced log-probs of `continuation` after `prompt`.
    pub fn score(
        &self,
        prompt: &[u32],
        continuation: &[u32],
        top_logprobs: usize,
    ) -> Result<Scored, ModelError> {
        if prompt.is_empty() {
            return Err(ModelError::Invalid(
                "scoring needs a non-empty prompt".into(),
            ));
        }
        let all: Vec<u32> = prompt.iter().chain(continuation).copied().collect();
        let lps = self.position_logprobs(&all)?;
        let mut out = Scored {
            logprobs: Vec::new(),
            top: Vec::new(),
        };
        for (i, &tok) in continuation.iter().enumerate() {
            let row = &lps[prompt.len() - 1 + i];
            out.logprobs.push(row[tok as usize]);
            out.top.push(top_k(row, top_logprobs));
        }
        Ok(out)
    }

    /// The tokens that end a constrained answer from `cursor`, when they take all but one of the
    /// `left` tokens (so the end of sequence still fits); empty while there is room to go on.
    pub(crate) fn closing_tokens(
        &self,
        c: &JsonConstraint,
        cursor: &crate::constrain::Cursor,
        left: usize,
    ) -> std::collections::VecDeque<u32> {
        let Some(text) = c.closing(cursor).and_then(|b| String::from_utf8(b).ok()) else {
            return Default::default();
        };
        match self.tokenizer.encode(&text, false) {
            Ok(ids) if !ids.is_empty() && ids.len() + 1 >= left => ids.into(),
            _ => Default::default(),
        }
    }
}

/// Native kernels on the CPU; burn's f32 network on other devices, or wherever
/// `ARBOR_ENGINE=burn` asks for the reference path.
fn default_engine(device: &Device) -> Engine {
    let burn = std::env::var("ARBOR_ENGINE").is_ok_and(|v| v == "burn");
    if *device == Device::flex() && !burn {
        Engine::Native
    } else {
        Engine::Burn
    }
}
