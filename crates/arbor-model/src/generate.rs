//! Generation with the embedded model: batched, left-padded prefill; n samples per prompt
//! sharing the prompt's KV cache; temperature / top-k / top-p sampling with a seed; stop strings
//! and ids; per-token log-probs with top-k alternatives; teacher-forced scoring.
use std::path::Path;

use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::constrain::{allows, Grammar, JsonConstraint, TokenTrie};
use crate::engine::{Engine, Net};
use crate::gguf::{Gguf, GgufError};
use crate::llama::{Llama, LlamaConfig};
use crate::native::NativeLlama;
use crate::sampling::{log_softmax, sample, top_k, Draw};
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

/// Constrained answers check, within this many tokens of `max_tokens`, whether closing the JSON
/// needs the rest of the budget, and if so write the closing instead of sampling.
const CLOSING_WINDOW: usize = 48;

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
    /// Natural-log probability of each generated id under the model (temperature 1).
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
    pub logprob: f32,
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

    /// The network that generates.
    fn net(&self) -> Net<'_> {
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
    fn closing_tokens(
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

    /// Generates for several prompts at once; returns, per prompt, its `n` samples.
    pub fn generate_batch(
        &self,
        prompts: &[Vec<u32>],
        opts: &[GenerateOptions],
    ) -> Result<Vec<Vec<Generated>>, ModelError> {
        self.generate_batch_with(prompts, opts, &mut |_| {})
    }

    /// [`Self::generate_batch`], telling `on_token` of every token as it is generated
    /// (streaming).
    pub fn generate_batch_with(
        &self,
        prompts: &[Vec<u32>],
        opts: &[GenerateOptions],
        on_token: &mut dyn FnMut(NewToken<'_>),
    ) -> Result<Vec<Vec<Generated>>, ModelError> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        if prompts.len() != opts.len() || prompts.iter().any(|p| p.is_empty()) {
            return Err(ModelError::Invalid(
                "each prompt needs options and at least one token".into(),
            ));
        }
        let longest = prompts.iter().map(Vec::len).max().expect("non-empty");
        let most_new = opts.iter().map(|o| o.max_tokens).max().unwrap_or(0);
        let capacity = longest + most_new;
        if capacity > self.cfg.context {
            return Err(ModelError::Invalid(format!(
                "prompt ({longest}) + max_tokens ({most_new}) exceeds the context ({})",
                self.cfg.context
            )));
        }
        // Prefill every prompt once.
        let net = self.net();
        let (prefill, first) = net.prefill(prompts, capacity);

        // One row per sample; samples of a prompt share its prefill.
        struct Row {
            prompt: usize,
            sample: usize,
            rng: StdRng,
            out: Generated,
            done: bool,
            grammar: Option<(Arc<JsonConstraint>, crate::constrain::Cursor)>,
            /// Tokens that close a constrained answer, written as `max_tokens` runs out.
            closing: std::collections::VecDeque<u32>,
        }
        let constraints = opts
            .iter()
            .map(|o| {
                o.json_schema
                    .as_ref()
                    .map(|s| self.constraint(s))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut row_prompt = Vec::new();
        let mut rows = Vec::new();
        for (p, o) in opts.iter().enumerate() {
            for s in 0..o.n.max(1) {
                row_prompt.push(p);
                rows.push(Row {
                    prompt: p,
                    sample: s,
                    rng: StdRng::seed_from_u64(o.seed.wrapping_add(s as u64)),
                    out: Generated {
                        ids: Vec::new(),
                        text: String::new(),
                        logprobs: Vec::new(),
                        top: Vec::new(),
                        finish: Finish::Length,
                    },
                    done: false,
                    grammar: constraints[p].as_ref().map(|c| (c.clone(), c.start())),
                    closing: Default::default(),
                });
            }
        }
        let mut cache = if row_prompt.iter().enumerate().all(|(i, &p)| i == p) {
            prefill
        } else {
            prefill.select_rows(&row_prompt, &self.device)
        };
        let mut logits: Vec<Vec<f32>> = row_prompt.iter().map(|&p| first[p].clone()).collect();
        // The rows still in the batch, in cache order (`logits[b]` is row `live[b]`'s).
        let mut live: Vec<usize> = (0..rows.len()).collect();

        for _step in 0..most_new {
            let mut next = Vec::with_capacity(live.len());
            for (b, &r) in live.iter().enumerate() {
                let row = &mut rows[r];
                let o = &opts[row.prompt];
                if row.done || row.out.ids.len() >= o.max_tokens {
                    row.done = true;
                    next.push(0);
                    continue;
                }
                if let Some((c, cursor)) = &row.grammar {
                    let left = o.max_tokens - row.out.ids.len();
                    if row.closing.is_empty() && left <= CLOSING_WINDOW {
                        row.closing = self.closing_tokens(c, cursor, left);
                    }
                }
                if let Some(tok) = row.closing.pop_front() {
                    // Forced: no mask, no draw (the log-prob is still the model's).
                    let lp = log_softmax(&logits[b]);
                    if let Some((c, cursor)) = &mut row.grammar {
                        c.advance(cursor, tok);
                    }
                    row.out.ids.push(tok);
                    row.out.logprobs.push(lp[tok as usize]);
                    row.out.top.push(top_k(&lp, o.top_logprobs));
                    on_token(NewToken {
                        prompt: row.prompt,
                        sample: row.sample,
                        id: tok,
                        logprob: lp[tok as usize],
                        top: row.out.top.last().map_or(&[], Vec::as_slice),
                    });
                    next.push(tok);
                    continue;
                }
                if let Some((c, cursor)) = &row.grammar {
                    let mask = c.allowed(cursor);
                    for (i, x) in logits[b].iter_mut().enumerate() {
                        if !allows(&mask, i as u32) {
                            *x = f32::NEG_INFINITY;
                        }
                    }
                    // A dead cursor (nothing allowed) can only end.
                    if logits[b].iter().all(|x| x.is_infinite()) {
                        logits[b][self.tokenizer.eos as usize] = 0.0;
                    }
                }
                let lp = log_softmax(&logits[b]);
                let draw = Draw {
                    temperature: o.temperature,
                    top_k: o.top_k,
                    top_p: o.top_p,
                };
                let tok = sample(&lp, draw, &mut row.rng);
                if let Some((c, cursor)) = &mut row.grammar {
                    if tok != self.tokenizer.eos {
                        c.advance(cursor, tok);
                    }
                }
                if tok == self.tokenizer.eos || o.stop_ids.contains(&tok) {
                    row.out.finish = Finish::Stop;
                    row.done = true;
                    next.push(0);
                    continue;
                }
                row.out.ids.push(tok);
                row.out.logprobs.push(lp[tok as usize]);
                row.out.top.push(top_k(&lp, o.top_logprobs));
                on_token(NewToken {
                    prompt: row.prompt,
                    sample: row.sample,
                    id: tok,
                    logprob: lp[tok as usize],
                    top: row.out.top.last().map_or(&[], Vec::as_slice),
                });
                if !o.stop.is_empty() {
                    let text = self.tokenizer.decode(&row.out.ids)?;
                    if o.stop.iter().any(|s| text.contains(s.as_str())) {
                        row.out.finish = Finish::Stop;
                        row.done = true;
                    }
                }
                if row.out.ids.len() >= o.max_tokens {
                    row.done = true;
                }
                next.push(tok);
            }
            // Finished rows leave the batch (their cache rows are dropped), so a batch runs at
            // the size of what is still generating, not of what it started with.
            let keep: Vec<usize> = (0..live.len()).filter(|&b| !rows[live[b]].done).collect();
            if keep.is_empty() {
                break;
            }
            if keep.len() < live.len() {
                cache = cache.select_rows(&keep, &self.device);
                next = keep.iter().map(|&b| next[b]).collect();
                live = keep.iter().map(|&b| live[b]).collect();
            }
            logits = net.decode(&mut cache, &next);
        }

        let mut result: Vec<Vec<Generated>> = vec![Vec::new(); prompts.len()];
        for mut row in rows {
            let o = &opts[row.prompt];
            let mut text = self.tokenizer.decode(&row.out.ids)?;
            if let Some(cut) = o.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                text.truncate(cut);
                row.out.finish = Finish::Stop;
            }
            row.out.text = text;
            result[row.prompt].push(row.out);
        }
        Ok(result)
    }
}

/// Native kernels on the CPU; burn's f32 network on other devices.
fn default_engine(device: &Device) -> Engine {
    if *device == Device::flex() {
        Engine::Native
    } else {
        Engine::Burn
    }
}
