//! `arbor`: the command-line front of the arbor engine.
mod cmd;
mod progress;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "arbor",
    version,
    about = "Agentic RL and preference-data synthesis engine"
)]
struct Cli {
    /// Log line format on stderr; the level comes from RUST_LOG (default: warn).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Ask an OpenAI-compatible endpoint one question (a quick check of a server).
    Chat(cmd::chat::ChatArgs),
    /// Serve a deterministic OpenAI-compatible mock with fault injection on 127.0.0.1.
    MockServer(arbor_serve::mock::cli::MockArgs),
    /// The embedded model: `arbor model fetch` downloads and verifies it.
    #[command(subcommand)]
    Model(cmd::model::ModelCommand),
    /// Print the token ids of TEXT as a JSON array.
    Tokenize(cmd::model::TokenizeArgs),
    /// Generate with the embedded model (or another GGUF).
    Generate(cmd::model::GenerateArgs),
    /// Serve the embedded model over an OpenAI-compatible HTTP API on 127.0.0.1.
    Serve(cmd::model::ServeArgs),
    /// Environments: list them, sample tasks as JSONL, play one in the terminal.
    #[command(subcommand)]
    Env(cmd::env::EnvCommand),
    /// Synthesize preference pairs (Anyprefer: target, judge with tools, reward gate, feedback).
    Synth(cmd::synth::SynthArgs),
    /// Build reasoning trees by search (MCTS, Tree-of-Thought, beam) on an environment.
    Search(cmd::tree::SearchArgs),
    /// Turn trees into training data (JSONL or Parquet).
    Export(cmd::tree::ExportArgs),
    /// Write trees as one self-contained HTML page (or Graphviz DOT).
    View(cmd::tree::ViewArgs),
    /// Train a policy offline from exported data (DPO, OREO, TPO, SFT) in burn.
    Train(cmd::train::TrainArgs),
    /// Play synthesis items of a PostgreSQL queue's jobs (`arbor synth --queue`), on any machine.
    Worker(arbor_queue::cli::WorkerArgs),
    /// Jobs on a PostgreSQL queue: status, export, cancel, migrate.
    #[command(subcommand)]
    Job(arbor_queue::cli::JobCommand),
    /// Search with the current policy, export, train, evaluate, and again: π_0 → π_1 → …
    Loop(cmd::iterate::LoopArgs),
    /// Compare finished loops on their shared held-out tasks: accuracy per iteration, paired.
    Compare(arbor_loop::compare::CompareArgs),
    /// Accuracy of a model on an environment's tasks (greedy, best-of-n or value-guided beam).
    Eval(cmd::train::EvalArgs),
    /// Measure arbor's own speed; figures go to docs/benchmarks.md.
    #[command(subcommand)]
    Bench(arbor_bench::BenchCommand),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| progress::LogWriter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `arbor … | head` closes stdout early; `println!` then panics with a backtrace. Exit quietly
/// instead with the status a shell gives a process killed by SIGPIPE (128 + 13); work already
/// recorded (journals, checkpoints) stays, as after Ctrl-C.
fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload_as_str().unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn main() -> std::process::ExitCode {
    exit_quietly_on_closed_stdout();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Chat(a) => cmd::chat::run(a).await,
            Command::MockServer(a) => arbor_serve::mock::cli::run(a).await.map_err(anyhow::Error::msg),
            Command::Env(e) => cmd::env::run(e).await,
            Command::Model(m) => cmd::model::run(m).await,
            Command::Tokenize(a) => cmd::model::tokenize(a),
            Command::Generate(a) => cmd::model::generate(a).await,
            Command::Serve(a) => cmd::model::serve(a).await,
            Command::Bench(b) => arbor_bench::run(b).await,
            Command::Synth(a) => cmd::synth::run(a).await,
            Command::Search(a) => cmd::tree::search(a).await,
            Command::Export(a) => cmd::tree::export(a),
            Command::View(a) => cmd::tree::view(a),
            Command::Train(a) => tokio::task::block_in_place(|| cmd::train::train(a)),
            Command::Eval(a) => cmd::train::eval(a).await,
            Command::Loop(a) => cmd::iterate::run(a).await,
            Command::Compare(a) => arbor_loop::compare::run(a).map_err(anyhow::Error::msg),
            Command::Worker(a) => cmd::queue::worker(a).await,
            Command::Job(c) => arbor_queue::cli::job(c).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
