//! `arbor train` as a library call: read the export, split off the evaluation set, run the
//! steps (warm-up + cosine schedule, periodic evaluation and checkpoints, exact resume), and
//! write the final policy (and critic), the curves and `train.json`.
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arbor_core::Progress;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;

use crate::checkpoint;
use crate::config::TrainConfig;
use crate::curves::Curves;
use crate::data::read_examples;
use crate::start::StartModel;
use crate::trainer::Trainer;
use crate::TrainError;

/// Options of one call besides the config.
pub struct RunOptions {
    pub resume: bool,
    /// A progress bar on stderr.
    pub progress: bool,
    /// Finished steps of the run, for a display elsewhere (the loop's).
    pub counter: Option<Arc<Progress>>,
    /// Set (by Ctrl-C / SIGTERM) to end the run after the current step with a checkpoint.
    pub stop: Option<Arc<AtomicBool>>,
}

pub struct Summary {
    pub steps: usize,
    /// The run was stopped (`RunOptions::stop`) after `steps` of its `total_steps`, with a
    /// checkpoint; `--resume` continues it.
    pub stopped: bool,
    pub total_steps: usize,
    /// The step a resumed run started at (its checkpoint's), 0 for a fresh run.
    pub resumed_from: usize,
    pub examples: usize,
    pub skipped_rows: Vec<String>,
    pub train_tokens: usize,
    pub seconds: f64,
    pub last: Vec<(String, f64)>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io(format!("{}: {e}", path.display()))
}

/// Trains `start` on `data` into `out`; returns what happened. The final policy is written to
/// `out` as a Hugging Face checkpoint (the OREO critic to `out/value`).
pub fn train(
    cfg: &TrainConfig,
    data: &Path,
    start: StartModel,
    out: &Path,
    opts: RunOptions,
) -> Result<Summary, TrainError> {
    cfg.validate().map_err(TrainError::Config)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let (mut examples, bad) = read_examples(data).map_err(TrainError::Data)?;
    // A canonical order first: searches write trees as they finish, and the run must depend
    // only on the data and the seed, not on the order of the file's rows.
    examples.sort_by_cached_key(|e| format!("{e:?}"));
    for b in &bad {
        tracing::warn!("skipped {}", b.message);
    }
    let mut t = Trainer::new(cfg, &start);
    t.set_examples(examples)?;
    let too_long = t.data.too_long;
    if too_long > 0 {
        tracing::warn!(
            "skipped {too_long} examples longer than max_len = {}",
            cfg.max_len
        );
    }
    if t.data.examples.is_empty() {
        return Err(TrainError::Data(format!(
            "{}: no usable {} examples",
            data.display(),
            cfg.algo.name()
        )));
    }
    // A fixed shuffle splits off the evaluation set.
    let mut all: Vec<usize> = (0..t.data.examples.len()).collect();
    all.shuffle(&mut rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0xe7a1));
    let n_eval = if all.len() >= 20 {
        ((all.len() as f64 * cfg.eval_fraction).round() as usize).max(1)
    } else {
        0
    };
    let eval_set: Vec<usize> = all.drain(..n_eval).collect();
    let train_set = all;
    let n = train_set.len();
    let micro_total = (n * cfg.epochs).div_ceil(cfg.batch_size);
    // The learning-rate schedule spans the steps that will run (`max_steps` cuts the epochs).
    let epoch_steps = micro_total.div_ceil(cfg.grad_accum).max(1);
    let total_steps = cfg
        .max_steps
        .map_or(epoch_steps, |m| m.clamp(1, epoch_steps));

    let columns = t.columns();
    let mut curves = Curves::new(&columns.iter().map(String::as_str).collect::<Vec<_>>());
    let curves_path = out.join("curves.csv");
    let mut first_step = 0;
    if opts.resume {
        first_step = checkpoint::restore(out, &mut t, &start)?;
        if first_step > 0 {
            curves = Curves::read(&curves_path, first_step).map_err(TrainError::Io)?;
            tracing::info!("resuming at step {first_step} of {total_steps}");
        }
    }

    // Micro-batch m takes training positions [m·B, (m+1)·B) of the concatenated epoch orders.
    let order = |epoch: usize| {
        let mut o: Vec<usize> = (0..n).collect();
        o.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            cfg.seed.wrapping_add(epoch as u64),
        ));
        o
    };
    let micro = |m: usize| -> Vec<usize> {
        (m * cfg.batch_size..((m + 1) * cfg.batch_size).min(n * cfg.epochs))
            .map(|p| train_set[order(p / n)[p % n]])
            .collect()
    };

    let bar = if opts.progress {
        indicatif::ProgressBar::new(total_steps as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg}")
            .expect("template"),
    );
    bar.set_position(first_step as u64);
    if let Some(c) = &opts.counter {
        c.start(first_step as u64, total_steps as u64, "steps");
    }
    let started = Instant::now();
    let mut tokens_total = 0usize;
    let mut last = Vec::new();
    let mut steps_run = total_steps;
    for step in first_step..total_steps {
        let t0 = Instant::now();
        let lr = cfg.lr_at(cfg.lr, step, total_steps);
        let lr_v = cfg.lr_at(cfg.value_lr, step, total_steps);
        let batches: Vec<Vec<usize>> = (step * cfg.grad_accum
            ..((step + 1) * cfg.grad_accum).min(micro_total))
            .map(micro)
            .collect();
        let step_tokens: usize = batches.iter().map(|b| t.action_tokens(b)).sum();
        let mut row = t.step(&batches, lr, lr_v);
        tokens_total += step_tokens;
        row.push(("lr".into(), lr));
        row.push((
            "tokens_per_s".into(),
            step_tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        ));
        let done = step + 1;
        if !eval_set.is_empty() && (done % cfg.eval_every == 0 || done == total_steps) {
            row.extend(t.evaluate(&eval_set));
        }
        curves.push(
            step,
            &row.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
        );
        let get = |names: &[&str]| row.iter().find(|r| names.contains(&r.0.as_str())).map(|r| r.1);
        let shown = get(&["loss", "nll", "policy_loss"]).unwrap_or(f64::NAN);
        bar.set_message(format!(
            "loss {shown:.4} · {:.0} tok/s",
            get(&["tokens_per_s"]).unwrap_or(0.0)
        ));
        bar.inc(1);
        if let Some(c) = &opts.counter {
            c.inc();
        }
        let stopping = done < total_steps
            && opts.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed));
        if (done % cfg.save_every == 0 && done < total_steps) || stopping {
            // The curves first: a kill between the two resumes from the older checkpoint,
            // whose steps the newer curves cover (a resume keeps the rows before it).
            curves.write_csv(&curves_path).map_err(io(out))?;
            checkpoint::save(out, &t, &start, done)?;
        }
        last = row;
        if stopping {
            steps_run = done;
            break;
        }
    }
    bar.finish_and_clear();
    let mut summary = Summary {
        steps: steps_run,
        stopped: steps_run < total_steps,
        total_steps,
        resumed_from: first_step,
        examples: n,
        skipped_rows: bad.into_iter().map(|b| b.message).collect(),
        train_tokens: tokens_total,
        seconds: started.elapsed().as_secs_f64(),
        last,
    };
    // Stopped: the checkpoint of the last step is the output until `--resume` finishes.
    if summary.stopped {
        return Ok(summary);
    }
    curves.write_csv(&curves_path).map_err(io(out))?;
    curves
        .write_svg(
            &out.join("curves.svg"),
            &format!("arbor train --algo {}", cfg.algo.name()),
        )
        .map_err(TrainError::Io)?;
    use burn::module::Module;
    arbor_model::hf::save(out, &start.cfg, &t.policy().valid(), &start.tokenizer)
        .map_err(|e| TrainError::Io(e.to_string()))?;
    if let Some(v) = &t.value {
        v.valid()
            .save(&out.join("value"), &start.cfg, &start.tokenizer)
            .map_err(|e| TrainError::Io(e.to_string()))?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    let report = json!({
        "algo": cfg.algo.name(), "steps": summary.steps, "train_examples": n, "eval_examples": eval_set.len(),
        "skipped_rows": summary.skipped_rows, "too_long": too_long, "train_tokens": tokens_total,
        "seconds": summary.seconds, "last": summary.last.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "config": cfg, "start": start.source,
    });
    std::fs::write(
        out.join("train.json"),
        serde_json::to_string_pretty(&report).expect("json"),
    )
    .map_err(io(out))?;
    Ok(summary)
}
