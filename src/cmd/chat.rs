use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arbor_core::Message;
use arbor_llm::{CachedModel, LanguageModel, LlmRequest, ResponseCache, SamplingParams};
use arbor_openai::{EndpointConfig, OpenAiClient};

#[derive(clap::Args)]
pub struct ChatArgs {
    /// Endpoint config (TOML); the flags below override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    target: crate::cmd::model::ModelArgs,
    /// Number of choices.
    #[arg(long, default_value_t = 1)]
    n: u32,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    top_k: Option<u32>,
    #[arg(long)]
    max_tokens: Option<u32>,
    #[arg(long)]
    seed: Option<u64>,
    /// Stop sequence (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Return per-token logprobs with this many alternatives (0: the chosen token only).
    #[arg(long)]
    logprobs: Option<u32>,
    /// A system message before the prompt.
    #[arg(long)]
    system: Option<String>,
    /// Send PROMPT as raw text to /v1/completions instead of as a chat message.
    #[arg(long)]
    raw: bool,
    /// Cache answers in this directory; a repeated question is answered from it.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Print the full structured result as JSON.
    #[arg(long)]
    json: bool,
    prompt: String,
}

impl ChatArgs {
    fn uses_server(&self) -> bool {
        self.config.is_some() || self.target.base_url.is_some()
    }

    fn endpoint(&self) -> anyhow::Result<EndpointConfig> {
        let mut cfg = match &self.config {
            Some(path) => EndpointConfig::from_file(path)?,
            None => {
                let url = self
                    .target
                    .base_url
                    .clone()
                    .context("--base-url is required without --config")?;
                let model = self
                    .target
                    .model
                    .clone()
                    .context("--model is required without --config")?;
                EndpointConfig::new(url, model)
            }
        };
        if let Some(u) = &self.target.base_url {
            cfg.base_url = u.clone();
        }
        if let Some(m) = &self.target.model {
            cfg.model = m.clone();
        }
        cfg.validate("command line")?;
        Ok(cfg)
    }

    fn request(&self, model: &str) -> LlmRequest {
        let params = SamplingParams {
            n: self.n,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            seed: self.seed,
            logprobs: self.logprobs.is_some(),
            top_logprobs: self.logprobs.unwrap_or(0),
            json_schema: None,
        };
        let req = if self.raw {
            LlmRequest::text(model, &self.prompt)
        } else {
            let mut messages = Vec::new();
            if let Some(s) = &self.system {
                messages.push(Message::system(s));
            }
            messages.push(Message::user(&self.prompt));
            LlmRequest::chat(model, messages)
        };
        req.with_params(params)
    }
}

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let (req, client): (LlmRequest, Arc<dyn LanguageModel>) = if args.uses_server() {
        let cfg = args.endpoint()?;
        (args.request(&cfg.model), Arc::new(OpenAiClient::new(cfg)?))
    } else {
        let gguf = args.target.gguf.clone();
        let backend = tokio::task::spawn_blocking(move || {
            arbor_model::EmbeddedBackend::load_default(gguf.as_deref())
        })
        .await??;
        (args.request("embedded"), Arc::new(backend))
    };
    let model: Arc<dyn LanguageModel> = match &args.cache {
        Some(dir) => Arc::new(CachedModel::new(
            client,
            Arc::new(ResponseCache::open(dir)?),
        )),
        None => client,
    };
    let result = model.generate(&req).await;
    let report = || {
        if let Some(s) = model.stats() {
            eprintln!("{s}");
        }
    };
    let c = match result {
        Ok(c) => c,
        Err(e) => {
            report();
            return Err(e.into());
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else if c.choices.len() == 1 {
        println!("{}", c.text());
    } else {
        for ch in &c.choices {
            println!(
                "--- choice {} ({:?})\n{}",
                ch.index, ch.finish_reason, ch.text
            );
        }
    }
    report();
    Ok(())
}
