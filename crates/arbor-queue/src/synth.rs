//! Synthesis jobs on the queue: submitted as a local run reads them, each item played by the
//! local run's per-item engine from the prompts the pool gives its epoch, exported as a local
//! run writes its files.
use std::path::Path;
use std::sync::Arc;

use arbor_llm::{ModelOpener, RoleUsage};
use arbor_synth::accounting::{priced, RoleAccount, ROLES};
use arbor_synth::engine::{ItemPlayer, Progress};
use arbor_synth::input::Item;
use arbor_synth::journal::{ItemRecord, Status};
use arbor_synth::output::{write_all, Counts, ModelNames};
use arbor_synth::prompts::{best_pair, lagged_epoch, PromptPair};
use arbor_synth::SynthConfig;
use serde_json::json;

use crate::queue::{Claim, Done, JobInfo, NewItem, NewJob, Runner, WorkQueue};
use crate::QueueError;

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Accepted => "accepted",
        Status::GatedOut => "gated_out",
        Status::Dead => "dead",
        Status::Duplicate => "duplicate",
    }
}

fn done(r: &ItemRecord) -> Done {
    Done {
        record: serde_json::to_string(r).expect("records serialize"),
        status: status_name(r.status).into(),
        pairs: r.rows.len() as i32,
        wins: Some(serde_json::to_string(&r.wins).expect("prompt pairs serialize")),
    }
}

/// The job of `input` and `cfg`, checked as a local run checks them (malformed rows and
/// duplicates go in as final records), and the fingerprint `--resume` finds it by.
pub fn job(input: &Path, cfg: SynthConfig, max_attempts: i32) -> Result<NewJob, QueueError> {
    let (cfg, items) = arbor_synth::job::prepare(input, cfg)?;
    let sha = arbor_core::file_sha256(input)
        .map_err(|e| QueueError::Job(format!("{}: {e}", input.display())))?;
    // Without the gate no prompt ever changes, so no item waits for the pool.
    let epoch_of = |i: usize| if cfg.no_gate { 0 } else { i / cfg.pool_epoch };
    let rows = arbor_synth::job::unplayed(items, &cfg)
        .into_iter()
        .map(|row| match row {
            Ok(item) => NewItem {
                index: item.index,
                epoch: epoch_of(item.index),
                item: Some(serde_json::to_string(&item).expect("items serialize")),
                done: None,
            },
            Err(rec) => NewItem {
                index: rec.index,
                epoch: epoch_of(rec.index),
                item: None,
                done: Some(done(&rec)),
            },
        })
        .collect();
    Ok(NewJob {
        kind: "synth".into(),
        config: serde_json::to_string(&cfg).expect("configs serialize"),
        fingerprint: cfg.fingerprint(),
        input: input.display().to_string(),
        input_sha256: sha,
        max_attempts,
        rows,
    })
}

fn config_of(info: &JobInfo) -> Result<SynthConfig, QueueError> {
    serde_json::from_str(&info.config)
        .map_err(|e| QueueError::Job(format!("job {}: its config does not read ({e})", info.id)))
}

/// Writes the job's files into `out` from the records in the database, exactly as a local run
/// of the same input and config writes them (a job still running: the items finished so far).
pub async fn export(queue: &dyn WorkQueue, info: &JobInfo, out: &Path) -> Result<Counts, QueueError> {
    let cfg = config_of(info)?;
    let records = queue
        .records(info.id)
        .await?
        .into_iter()
        .map(|(_, r)| serde_json::from_str::<ItemRecord>(&r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| QueueError::Job(format!("job {}: a stored record does not read ({e})", info.id)))?;
    let io = |e: std::io::Error| QueueError::Job(format!("{}: {e}", out.display()));
    std::fs::create_dir_all(out).map_err(io)?;
    let name = |r: &arbor_synth::config::RoleConfig| r.model.clone().unwrap_or_else(|| "embedded".into());
    let names = ModelNames {
        target: name(&cfg.target),
        judge: name(&cfg.judge),
        reward: name(&cfg.reward),
        optimizer: name(&cfg.optimizer),
    };
    let counts = write_all(out, &records, &cfg, &names, info.total, &accounts(queue, info, &cfg).await?)
        .map_err(|e| QueueError::Job(e.to_string()))?;
    let file = json!({"format": "arbor.synth-job/1", "config": info.fingerprint, "input_rows": info.total,
                      "input_sha256": info.input_sha256, "input": info.input, "queue_job": info.id});
    arbor_core::write_atomic(&out.join("job.json"), serde_json::to_string_pretty(&file).expect("JSON values serialize"))
        .map_err(io)?;
    Ok(counts)
}

/// The job's accounts by role and model, summed over the workers that played it.
async fn accounts(queue: &dyn WorkQueue, info: &JobInfo, cfg: &SynthConfig) -> Result<Vec<RoleAccount>, QueueError> {
    let mut sums: Vec<(&'static str, String, RoleUsage)> = Vec::new();
    for (role, model, usage) in queue.usage(info.id).await? {
        let Some(role) = ROLES.iter().copied().find(|r| *r == role) else {
            continue;
        };
        match sums.iter_mut().find(|s| s.0 == role && s.1 == model) {
            Some(s) => s.2.add(&usage),
            None => sums.push((role, model, usage)),
        }
    }
    sums.sort_by_key(|s| ROLES.iter().position(|r| *r == s.0));
    Ok(sums.into_iter().map(|(role, model, usage)| priced(role, model, usage, &cfg.prices)).collect())
}

/// A synthesis job's roles, opened on its first claim.
pub struct SynthRunner {
    cfg: SynthConfig,
    player: ItemPlayer,
    meters: arbor_synth::accounting::Meters,
    /// The pool's choice by last epoch read: fixed once those epochs are done, so each is read
    /// from the database once per worker, not once per item.
    pool: parking_lot::Mutex<std::collections::HashMap<usize, PromptPair>>,
}

pub async fn runner(info: &JobInfo, opener: &dyn ModelOpener) -> Result<SynthRunner, QueueError> {
    let cfg = config_of(info)?;
    let roles = arbor_synth::job::open_roles(&cfg, opener, None).await?;
    Ok(SynthRunner {
        player: ItemPlayer::new(cfg.clone(), roles.players, Arc::new(Progress::default())),
        meters: roles.meters,
        cfg,
        pool: Default::default(),
    })
}

/// The record of an item that cannot be played: claimed too often, or unreadable.
fn dead_letter(c: &Claim, cause: String) -> ItemRecord {
    let item: Option<serde_json::Value> = serde_json::from_str(&c.item).ok();
    let id = item.as_ref().and_then(|i| i["id"].as_str()).unwrap_or_default().to_string();
    let mut rec = ItemRecord::dead(c.index, id, 0, cause);
    rec.input = item;
    rec
}

impl SynthRunner {
    /// The prompts the claimed item starts from: the pool of the epochs it may read, by the
    /// local run's rule.
    async fn prompts(&self, queue: &dyn WorkQueue, c: &Claim) -> Result<PromptPair, QueueError> {
        let last = match lagged_epoch(c.epoch) {
            Some(last) if !self.cfg.no_gate => last,
            _ => return Ok(PromptPair::initial()),
        };
        if let Some(p) = self.pool.lock().get(&last) {
            return Ok(p.clone());
        }
        let wins = queue
            .wins(c.job, last)
            .await?
            .iter()
            .map(|w| serde_json::from_str::<Vec<PromptPair>>(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueueError::Job(format!("job {}: stored prompt pairs do not read ({e})", c.job)))?;
        let best = best_pair(wins.iter().flatten().map(|p| (p, 1)));
        self.pool.lock().insert(last, best.clone());
        Ok(best)
    }
}

#[async_trait::async_trait]
impl Runner for SynthRunner {
    async fn play(&self, queue: &dyn WorkQueue, c: &Claim) -> Result<Done, QueueError> {
        let record = match serde_json::from_str::<Item>(&c.item) {
            Err(e) => dead_letter(c, format!("the stored item does not read ({e})")),
            Ok(item) => self.player.play(item, self.prompts(queue, c).await?).await,
        };
        Ok(done(&record))
    }

    fn given_up(&self, c: &Claim, cause: String) -> Done {
        done(&dead_letter(c, cause))
    }

    fn usage(&self) -> Vec<(String, String, RoleUsage)> {
        // Jury members on one model are one row.
        let mut rows: Vec<(String, String, RoleUsage)> = Vec::new();
        for (role, model, m) in &self.meters.0 {
            match rows.iter_mut().find(|r| r.0 == *role && r.1 == *model) {
                Some(r) => r.2.add(&m.usage()),
                None => rows.push((role.to_string(), model.clone(), m.usage())),
            }
        }
        rows
    }
}

/// The job's counts for a status line.
pub fn counts_text(by: &dyn Fn(&str) -> u64, pairs: u64) -> String {
    format!(
        "{} accepted ({pairs} pairs), {} gated out, {} dead letters, {} duplicates",
        by("accepted"),
        by("gated_out"),
        by("dead"),
        by("duplicate")
    )
}

