//! The tokenizer and chat template, both built from GGUF metadata.
use minijinja::Environment;
use serde::Serialize;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::gguf::{Gguf, GgufError, Value};

/// llama.cpp's token type for control tokens (`<|im_start|>` and friends).
const CONTROL: u64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer: {0}")]
    Build(String),
    #[error("chat template: {0}")]
    Template(String),
}

/// The control tokens of the tokenizers arbor builds for tiny models (ChatML's markers).
const TINY_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// SmolLM's pre-tokenizer: digits one by one, then GPT-2 byte-level without a prefix space.
fn smollm_pre() -> PreTokenizerWrapper {
    Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])
    .into()
}

/// A byte-level BPE tokenizer with `controls` as special tokens, and the same tokenizer without
/// them (control markers read as plain text): `(special, plain)`.
fn bpe_pair(
    vocab: tokenizers::models::bpe::Vocab,
    merges: Vec<(String, String)>,
    pre: PreTokenizerWrapper,
    controls: &[String],
) -> Result<(Tokenizer, Tokenizer), TokenizerError> {
    let build = |with_special: bool| -> Result<Tokenizer, TokenizerError> {
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.clone(), merges.clone())
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        let mut t = Tokenizer::new(bpe);
        t.with_pre_tokenizer(Some(pre.clone()));
        t.with_decoder(Some(ByteLevelDecoder::default()));
        if with_special {
            let specials: Vec<AddedToken> = controls
                .iter()
                .map(|c| AddedToken::from(c.clone(), true))
                .collect();
            t.add_special_tokens(&specials);
        }
        Ok(t)
    };
    Ok((build(true)?, build(false)?))
}

/// A vocabulary in GGUF's terms ([`TextTokenizer::gguf_vocab`]).
pub struct GgufVocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
    pub chat_template: Option<String>,
}

/// Text ↔ token ids, exactly as llama.cpp tokenizes for this model.
#[derive(Clone)]
pub struct TextTokenizer {
    /// Control tokens are recognised in the text.
    special: Tokenizer,
    /// Control-token markers are plain text.
    plain: Tokenizer,
    pub bos: u32,
    pub eos: u32,
    pub vocab_size: usize,
    chat_template: Option<String>,
    tokens: Vec<String>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, GgufError> {
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            msg: "not an array of strings".into(),
        })
}

impl TextTokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Self, TokenizerError> {
        let model = g.meta_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::Build(format!(
                "tokenizer.ggml.model `{model}` is not supported (gpt2 BPE is)"
            )));
        }
        let pre = g.meta_str("tokenizer.ggml.pre").unwrap_or("default");
        let tokens = strings(g.meta("tokenizer.ggml.tokens")?, "tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> =
            strings(g.meta("tokenizer.ggml.merges")?, "tokenizer.ggml.merges")?
                .into_iter()
                .map(|m| {
                    m.split_once(' ')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .ok_or_else(|| TokenizerError::Build(format!("merge `{m}` has no space")))
                })
                .collect::<Result<_, _>>()?;
        let types: Vec<u64> = match g.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(1)).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let pre_tok = match pre {
            "smollm" => smollm_pre(),
            "gpt2" | "default" => ByteLevel::new(false, true, true).into(),
            other => {
                return Err(TokenizerError::Build(format!(
                    "pre-tokenizer `{other}` is not supported (smollm, gpt2 are)"
                )))
            }
        };
        let controls: Vec<String> = types
            .iter()
            .enumerate()
            .filter(|(_, &ty)| ty == CONTROL)
            .map(|(i, _)| tokens[i].clone())
            .collect();
        let (special, plain) = bpe_pair(vocab, merges, pre_tok, &controls)?;
        Ok(Self {
            special,
            plain,
            bos: g.meta_u64("tokenizer.ggml.bos_token_id")? as u32,
            eos: g.meta_u64("tokenizer.ggml.eos_token_id")? as u32,
            vocab_size: tokens.len(),
            chat_template: g
                .metadata
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            tokens,
        })
    }

    /// A byte-level tokenizer without merges (one token per byte, then `<|endoftext|>`,
    /// `<|im_start|>`, `<|im_end|>`) and a ChatML template: the vocabulary of tiny models trained
    /// from scratch, pre-tokenized like SmolLM.
    pub fn byte_level() -> Result<Self, TokenizerError> {
        let mut tokens: Vec<String> = {
            let mut a: Vec<char> = ByteLevel::alphabet().into_iter().collect();
            a.sort_unstable();
            a.into_iter().map(String::from).collect()
        };
        tokens.extend(TINY_SPECIALS.iter().map(|s| s.to_string()));
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let specials: Vec<String> = TINY_SPECIALS.iter().map(|s| s.to_string()).collect();
        let (special, plain) = bpe_pair(vocab, Vec::new(), smollm_pre(), &specials)?;
        let id = |s: &str| tokens.iter().position(|t| t == s).expect("special listed") as u32;
        Ok(Self {
            special,
            plain,
            bos: id("<|im_start|>"),
            eos: id("<|im_end|>"),
            vocab_size: tokens.len(),
            chat_template: Some(include_str!("../../../prompts/chat/chatml.j2").to_string()),
            tokens,
        })
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` (chat template, BOS/EOS) as
    /// `transformers` reads them.
    pub fn save_hf(&self, dir: &std::path::Path) -> Result<(), TokenizerError> {
        let io = |e: std::io::Error| TokenizerError::Build(e.to_string());
        self.special
            .save(dir.join("tokenizer.json"), false)
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        let cfg = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": self.tokens[self.bos as usize],
            "eos_token": self.tokens[self.eos as usize],
            "pad_token": self.tokens[self.eos as usize],
            "chat_template": self.chat_template,
            "add_bos_token": false,
            "clean_up_tokenization_spaces": false,
        });
        std::fs::write(
            dir.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&cfg).expect("json"),
        )
        .map_err(io)
    }

    /// Reads `tokenizer.json` and `tokenizer_config.json` from a checkpoint directory.
    pub fn from_hf_dir(dir: &std::path::Path) -> Result<Self, TokenizerError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            TokenizerError::Build(format!("{}: {e}", dir.join(what).display()))
        };
        let text = std::fs::read_to_string(dir.join("tokenizer.json"))
            .map_err(|e| bad("tokenizer.json", &e))?;
        let cfg: serde_json::Value =
            match std::fs::read_to_string(dir.join("tokenizer_config.json")) {
                Ok(t) => serde_json::from_str(&t).map_err(|e| bad("tokenizer_config.json", &e))?,
                Err(_) => serde_json::Value::Null,
            };
        // `from_json` says which of the two files an error is in.
        Self::from_json(&text, &cfg).map_err(|e| match e {
            TokenizerError::Build(m) => TokenizerError::Build(format!("{}/{m}", dir.display())),
            other => other,
        })
    }

    /// A tokenizer from `tokenizer.json` text and the `tokenizer_config.json` object.
    fn from_json(text: &str, cfg: &serde_json::Value) -> Result<Self, TokenizerError> {
        let build = |e: &dyn std::fmt::Display| TokenizerError::Build(e.to_string());
        let in_json = |e: &dyn std::fmt::Display| TokenizerError::Build(format!("tokenizer.json: {e}"));
        // The tokenizers crate panics on some malformed files (an unwrap in its decoder
        // reader): a damaged file must be an error that names it, not a crash.
        let parse = |t: &str| -> Result<Tokenizer, TokenizerError> {
            match std::panic::catch_unwind(|| t.parse::<Tokenizer>()) {
                Ok(r) => r.map_err(|e| in_json(&e)),
                Err(_) => Err(in_json(&"malformed (the tokenizers library could not read it)")),
            }
        };
        let special: Tokenizer = parse(text)?;
        // The same tokenizer with control markers as plain text: drop its added tokens.
        let mut v: serde_json::Value = serde_json::from_str(text).map_err(|e| in_json(&e))?;
        v["added_tokens"] = serde_json::Value::Array(Vec::new());
        let plain: Tokenizer = parse(&v.to_string())?;
        let vocab = special.get_vocab(true);
        let size = vocab.values().map(|&i| i as usize + 1).max().unwrap_or(0);
        // Ids index a table: a stray huge id must not allocate billions of entries.
        if size > 2 * vocab.len() + 1024 {
            return Err(in_json(&format!("token ids reach {size} for {} tokens: the vocabulary is not numbered densely", vocab.len())));
        }
        let mut tokens = vec![String::new(); size];
        for (t, i) in vocab {
            tokens[i as usize] = t;
        }
        // Special tokens are strings or {"content": …} objects in tokenizer_config.json.
        // A key that is present must be well-formed, even where its absence has a default.
        let id_of = |key: &str| -> Result<u32, TokenizerError> {
            let v = cfg
                .get(key)
                .ok_or_else(|| build(&format!("tokenizer_config.json: `{key}` is missing")))?;
            let s = v
                .as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))
                .ok_or_else(|| build(&format!("tokenizer_config.json: `{key}` is {v}, not a token string or {{\"content\": …}}")))?;
            special.token_to_id(s).ok_or_else(|| {
                build(&format!(
                    "tokenizer_config.json: `{key}` {s:?} is not in the vocabulary"
                ))
            })
        };
        let eos = id_of("eos_token")?;
        let bos = match cfg.get("bos_token") {
            None | Some(serde_json::Value::Null) => eos,
            Some(_) => id_of("bos_token")?,
        };
        let chat_template = match cfg.get("chat_template") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            Some(other) => {
                return Err(build(&format!(
                    "tokenizer_config.json: `chat_template` is {other}, not a string"
                )))
            }
        };
        Ok(Self {
            bos,
            eos,
            vocab_size: size,
            chat_template,
            special,
            plain,
            tokens,
        })
    }

    /// A byte-level BPE of `vocab_size` tokens learned from `texts` (SmolLM's pre-tokenizer,
    /// digits kept one by one, the same control tokens and ChatML template as
    /// [`TextTokenizer::byte_level`]): short sequences for tiny models trained on one task family.
    pub fn train_bpe(texts: &[String], vocab_size: usize) -> Result<Self, TokenizerError> {
        use tokenizers::models::bpe::BpeTrainerBuilder;
        use tokenizers::models::TrainerWrapper;
        let build = |e: &dyn std::fmt::Display| TokenizerError::Build(e.to_string());
        let specials = TINY_SPECIALS;
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(
                specials
                    .iter()
                    .map(|s| AddedToken::from(s.to_string(), true))
                    .collect(),
            )
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        let mut t = Tokenizer::new(BPE::default());
        t.with_pre_tokenizer(Some(smollm_pre()));
        t.with_decoder(Some(ByteLevelDecoder::default()));
        t.train(&mut trainer, texts.iter()).map_err(|e| build(&e))?;
        t.add_special_tokens(
            &specials
                .iter()
                .map(|s| AddedToken::from(s.to_string(), true))
                .collect::<Vec<_>>(),
        );
        let json = t.to_string(false).map_err(|e| build(&e))?;
        let cfg = serde_json::json!({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": include_str!("../../../prompts/chat/chatml.j2")});
        Self::from_json(&json, &cfg)
    }

    /// Token ids of `text`; with `parse_special`, `<|…|>` control markers become their tokens.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let t = if parse_special {
            &self.special
        } else {
            &self.plain
        };
        let enc = t
            .encode(text, false)
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, control tokens included as written.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.special
            .decode(ids, false)
            .map_err(|e| TokenizerError::Build(e.to_string()))
    }

    /// The raw vocabulary entry of one id (byte-level form), for logprob reports.
    pub fn token_text(&self, id: u32) -> String {
        self.decode(&[id])
            .unwrap_or_else(|_| self.tokens.get(id as usize).cloned().unwrap_or_default())
    }

    /// Each id's bytes as the model writes them (the byte-level form decoded); `None` for control
    /// tokens, which never appear inside generated text.
    pub fn token_bytes(&self) -> Vec<Option<Vec<u8>>> {
        let controls = self.special.get_added_tokens_decoder();
        let decode = gpt2_byte_decoder();
        self.tokens
            .iter()
            .enumerate()
            .map(|(id, t)| {
                if controls.contains_key(&(id as u32)) {
                    return None;
                }
                t.chars().map(|c| decode.get(&c).copied()).collect()
            })
            .collect()
    }

    /// The vocabulary as GGUF stores it: tokens by id, their types (control for the special
    /// tokens, normal otherwise), the BPE merges as "a b", the chat template.
    pub fn gguf_vocab(&self) -> Result<GgufVocab, TokenizerError> {
        let bad = |m: &str| TokenizerError::Build(format!("tokenizer for GGUF: {m}"));
        let v: serde_json::Value = serde_json::from_str(
            &self.special.to_string(false).map_err(|e| bad(&e.to_string()))?,
        )
        .map_err(|e| bad(&e.to_string()))?;
        // tokenizer.json writes a merge as ["a", "b"] (or "a b" in older files).
        let merges = v["model"]["merges"]
            .as_array()
            .ok_or_else(|| bad("no BPE merges"))?
            .iter()
            .map(|m| match m {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Array(p) => Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?)),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("a merge is neither \"a b\" nor [a, b]"))?;
        let mut types = vec![1i32; self.tokens.len()];
        for t in v["added_tokens"].as_array().into_iter().flatten() {
            if let (Some(id), Some(true)) = (t["id"].as_u64(), t["special"].as_bool()) {
                if let Some(ty) = types.get_mut(id as usize) {
                    *ty = CONTROL as i32;
                }
            }
        }
        Ok(GgufVocab {
            tokens: self.tokens.clone(),
            types,
            merges,
            chat_template: self.chat_template.clone(),
        })
    }

    /// Renders `messages` with the model's own chat template (`tokenizer.chat_template`).
    pub fn render_chat<M: Serialize>(
        &self,
        messages: &[M],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let src = self.chat_template.as_deref().ok_or_else(|| {
            TokenizerError::Template("the model has no tokenizer.chat_template".into())
        })?;
        let mut env = Environment::new();
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template("chat", src)
            .map_err(|e| TokenizerError::Template(e.to_string()))?;
        let tpl = env
            .get_template("chat")
            .map_err(|e| TokenizerError::Template(e.to_string()))?;
        tpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.tokens.get(self.bos as usize).cloned().unwrap_or_default(),
            eos_token => self.tokens.get(self.eos as usize).cloned().unwrap_or_default(),
        })
        .map_err(|e| TokenizerError::Template(e.to_string()))
    }
}

/// GPT-2's byte-level alphabet inverted: the printable character that stands for each byte.
fn gpt2_byte_decoder() -> std::collections::HashMap<char, u8> {
    let mut bytes: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = bytes.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    chars
        .into_iter()
        .zip(bytes)
        .filter_map(|(c, b)| Some((char::from_u32(c)?, b as u8)))
        .collect()
}
