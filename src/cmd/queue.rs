//! `--queue` of `synth` and `search`, and `arbor worker`: the CLI's side of arbor-queue.
use std::sync::atomic::Ordering::Relaxed;
use std::{path::Path, sync::Arc};

use arbor_model::{DeviceKind, Models};
use arbor_queue::job::{QueueRun, Submission};
use arbor_tree::evaluate::ValueFunction;

/// The OREO critic in `dir`, on the CPU.
pub fn load_critic(dir: &Path) -> Result<Arc<dyn ValueFunction>, String> {
    Ok(Arc::new(arbor_train::LearnedValue::load(dir, DeviceKind::Cpu)?))
}

/// Submits `what`, works on it here, waits with a progress bar and exports into `r.out`
/// (`arbor synth --queue`, `arbor search --queue`).
pub async fn run(r: QueueRun, what: Submission, openers: arbor_queue::Openers<'_>) -> anyhow::Result<()> {
    let out = r.out.clone();
    let watch = Arc::new(arbor_queue::job::Watch::default());
    let w = watch.clone();
    let ticker = crate::progress::ticker(0, move |bar, _| {
        bar.set_length(w.total.load(Relaxed));
        bar.set_position(w.done.load(Relaxed));
        w.line.lock().clone()
    });
    let stop = crate::progress::stop_on_ctrl_c();
    let s = arbor_queue::job::run(r, what, openers, stop, watch).await;
    ticker.finish();
    let s = s?;
    eprint!("{}", s.report(&out));
    if !s.finished {
        std::process::exit(130);
    }
    Ok(())
}

/// `arbor worker`: roles and policies without a URL open the embedded model.
pub async fn worker(a: arbor_queue::cli::WorkerArgs) -> anyhow::Result<()> {
    let models = Models::new(a.gguf.clone());
    let critic = load_critic;
    let openers = arbor_queue::Openers { models: &models, critic: Some(&critic) };
    arbor_queue::cli::worker(a, openers, crate::progress::stop_on_ctrl_c()).await
}
