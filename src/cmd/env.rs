use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Subcommand)]
pub enum EnvCommand {
    /// The environments, what they are, and the judge tools each offers.
    List,
    /// Print K tasks as JSONL (usable as `arbor synth` input).
    Sample(SampleArgs),
    /// Play one task interactively: type actions, read observations.
    Play(PlayArgs),
}

#[derive(clap::Args)]
pub struct SampleArgs {
    #[arg(long)]
    env: String,
    #[arg(long, default_value_t = 10)]
    n: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The environment's config (TOML); see environments/<env>/.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct PlayArgs {
    #[arg(long, default_value = "household")]
    env: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    config: Option<PathBuf>,
}

pub async fn run(cmd: EnvCommand) -> anyhow::Result<()> {
    match cmd {
        EnvCommand::List => {
            for name in arbor_envs::names() {
                let env = arbor_envs::by_name(name, None)?;
                let tools = env.judge_tools();
                let tools = if tools.is_empty() {
                    "none".to_string()
                } else {
                    tools.join(", ")
                };
                println!("{name:<10} {} (judge tools: {tools})", env.description());
            }
            Ok(())
        }
        EnvCommand::Sample(a) => {
            let env = arbor_envs::by_name(&a.env, a.config.as_deref())?;
            let tasks = env.sample(a.n, a.seed)?;
            let mut out = std::io::stdout().lock();
            for t in tasks {
                writeln!(out, "{}", serde_json::to_string(&t)?)?;
            }
            Ok(())
        }
        EnvCommand::Play(a) => play(a).await,
    }
}

async fn play(a: PlayArgs) -> anyhow::Result<()> {
    let env = arbor_envs::by_name(&a.env, a.config.as_deref())?;
    let task = env
        .sample(1, a.seed)?
        .into_iter()
        .next()
        .context("the environment made no task")?;
    let mut ep = env.start(&task)?;
    println!("{}", ep.observation());
    if let Some(n) = task.meta("shortest_plan_length") {
        println!("(the shortest solution takes {n} steps; type `help` for commands)");
    }
    let stdin = std::io::stdin();
    let mut steps = 0;
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        steps += 1;
        let s = ep.step(line.trim()).await;
        println!("{}", s.observation);
        if s.done {
            break;
        }
    }
    let v = ep.verify().await;
    println!(
        "{} after {steps} actions: {}",
        if v.correct { "Solved" } else { "Not solved" },
        v.detail
    );
    Ok(())
}
