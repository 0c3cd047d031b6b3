//! arbor's benchmarks (`arbor bench …`): each measures one part against its named anchor in the
//! same run and prints the figures that docs/benchmarks.md records. A module per benchmark,
//! with its arguments (clap, flattened into the CLI); [`kit`] and [`resources`] are what they
//! share (server children, process measurements).

pub mod critic;
pub mod device;
pub mod household;
pub mod judge;
pub mod kit;
pub mod llm;
pub mod model;
pub mod resources;
pub mod sandbox;
pub mod synth;
pub mod train;
pub mod tree;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Client throughput against an OpenAI-compatible server (by default a fresh
    /// `arbor mock-server` child process, so its CPU is not counted as the client's).
    Llm(llm::LlmBenchArgs),
    /// Household environment steps per second (solution replays and random commands).
    Household(household::HouseholdBenchArgs),
    /// Python sandbox start-up latency, against bare `python3 -c pass`.
    Sandbox(sandbox::SandboxBenchArgs),
    /// The embedded model (`arbor serve`) against llama.cpp's server (xllamacpp) on the same
    /// GGUF, one after the other, with the same client and requests: prompt tokens/s, decode
    /// tokens/s for one stream and for N concurrent streams, server peak RSS.
    Model(model::ModelBenchArgs),
    /// Tree search bookkeeping with an instant policy, export throughput, memory per node.
    Tree(tree::TreeBenchArgs),
    /// arbor synth against distilabel 1.5.3 on the same mock at 200 ms latency.
    Synth(synth::SynthBenchArgs),
    /// How often synth's judge picks the correct of two GSM8K solutions, per judge setup (one
    /// order, both orders, tools, reference, a jury): accuracy, ties, position consistency.
    Judge(judge::JudgeBenchArgs),
    /// One DPO or OREO training step on SmolLM2-135M: arbor (burn, CPU) against PyTorch on the
    /// same checkpoint, batch and loss: tokens/s and peak memory.
    Train(train::TrainBenchArgs),
    /// A GPU backend against the CPU: the losses and gradients of a DPO, an OREO and a TPO
    /// batch on a small random Llama; fails beyond the tolerance.
    Device(device::DeviceBenchArgs),
    /// An OREO critic scoring the states value-guided search asks about: each question's
    /// prompt kept (KV cache) against every state computed in full, in the same run.
    Critic(critic::CriticBenchArgs),
}


/// Runs one benchmark. Children are started from this process's executable (the arbor CLI).
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Llm(a) => llm::run(a).await,
        BenchCommand::Household(a) => household::run(a),
        BenchCommand::Sandbox(a) => sandbox::run(a).await,
        BenchCommand::Model(a) => model::run(a).await,
        BenchCommand::Tree(a) => tree::run(a).await,
        BenchCommand::Synth(a) => synth::run(a).await,
        BenchCommand::Judge(a) => judge::run(a).await,
        BenchCommand::Train(a) => tokio::task::block_in_place(|| train::run(a)),
        BenchCommand::Device(a) => tokio::task::block_in_place(|| device::run(a)),
        BenchCommand::Critic(a) => critic::run(a).await,
    }
}
