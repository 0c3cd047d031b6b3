//! `arbor loop`: flags onto `loop.toml` keys, then `arbor_loop::run`.
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use arbor_core::config::{load_toml, Overrides};
use arbor_core::Progress;
use arbor_loop::{LoopConfig, LoopError, Observer};
use arbor_model::DeviceKind;
use arbor_train::Algo;

use crate::cmd::parse_enum;

#[derive(clap::Args)]
pub struct LoopArgs {
    /// The environment whose tasks are searched and evaluated (math, household, code).
    #[arg(long)]
    env: Option<String>,
    /// π_0: `embedded`, a GGUF file, or a checkpoint directory.
    #[arg(long, default_value = "embedded")]
    model: String,
    #[arg(long)]
    iterations: Option<usize>,
    /// sft (rejection sampling), dpo, oreo or tpo.
    #[arg(long, value_parser = parse_enum::<Algo>)]
    algo: Option<Algo>,
    #[arg(long)]
    out: PathBuf,
    /// loop.toml (docs/formats.md); the flags override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the loop in --out at the stage where it stopped.
    #[arg(long)]
    resume: bool,
    /// Where training runs: cpu, or libtorch / wgpu / cuda in builds with that feature.
    #[arg(long)]
    device: Option<DeviceKind>,
}

/// One line per stage, with the time since the loop started, and a bar of the running stage
/// (hidden when stderr is not a terminal; logs are written around it).
struct Print {
    started: Instant,
    progress: OnceLock<Arc<Progress>>,
    bar: Mutex<Option<crate::progress::Ticker>>,
}

impl Print {
    fn finish(&self) {
        if let Some(t) = self.bar.lock().expect("bar lock").take() {
            t.finish();
        }
    }
}

impl Observer for Print {
    fn stage(&self, iteration: usize, stage: &str, reused: bool) {
        self.finish();
        let how = if reused { "done earlier" } else { "running" };
        let s = self.started.elapsed().as_secs();
        crate::progress::multi().suspend(|| {
            eprintln!(
                "[{:02}:{:02}:{:02}] iteration {iteration}: {stage} ({how})",
                s / 3600,
                s / 60 % 60,
                s % 60
            )
        });
        if let Some(p) = self.progress.get().filter(|_| !reused) {
            let bar = crate::progress::follow(p.clone(), format!("iteration {iteration}: {stage}, "));
            *self.bar.lock().expect("bar lock") = Some(bar);
        }
    }

    fn watch(&self, progress: Arc<Progress>) {
        let _ = self.progress.set(progress);
    }
}

pub async fn run(a: LoopArgs) -> anyhow::Result<()> {
    let mut o = Overrides::default();
    o.set("env", a.env.as_ref())
        .set("iterations", a.iterations)
        .set("train.algo", a.algo)
        .set("device", a.device);
    let cfg: LoopConfig = load_toml(a.config.as_deref(), &o).map_err(anyhow::Error::msg)?;
    let given = (a.model != "embedded").then(|| PathBuf::from(&a.model));
    let start = arbor_model::fetch::resolve_model(given.as_deref())?;
    let stop = crate::progress::stop_on_ctrl_c();
    let print = Print {
        started: Instant::now(),
        progress: OnceLock::new(),
        bar: Mutex::new(None),
    };
    let result = arbor_loop::run(&cfg, &start, &a.out, a.resume, &stop, &print).await;
    print.finish();
    match result {
        Ok(report) => {
            print!("{}", report.table());
            eprintln!("report: {}", a.out.join("report.json").display());
            Ok(())
        }
        Err(e @ LoopError::Interrupted { .. }) => {
            eprintln!("{e}: run the same command with --resume to continue");
            std::process::exit(130);
        }
        Err(e) => {
            if stop.load(Ordering::Relaxed) {
                eprintln!("stopped: run the same command with --resume to continue");
            }
            Err(e.into())
        }
    }
}
