//! A synthesis job in a directory, as a library call: [`Job::open`] reads the input, applies
//! strict mode and pins the job (`job.json`: what `--resume` must match); [`Job::run`] opens the
//! role models, plays every item and writes the dataset files.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbor_llm::{CachedModel, LanguageModel, MeteredModel, ModelOpener, ModelSpec, ResponseCache};
use serde_json::json;

use crate::accounting::{Meters, RoleAccount};
use crate::config::{RewardKind, RoleConfig, SynthConfig};
use crate::progress::Progress;
use crate::game::{Players, RoleModel};
use crate::input::{read_items, BadRow, Item};
use crate::journal::{ItemRecord, Status};
use crate::output::{write_all, Counts, ModelNames};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Model(#[from] arbor_llm::LlmError),
    #[error("{0}")]
    Io(String),
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Summary {
    pub counts: Counts,
    pub total_rows: usize,
    /// Pairs counted by the progress (a resumed job's earlier items included).
    pub pairs_counted: u64,
    /// Items found finished in the journal and skipped (a resumed job).
    pub resumed: u64,
    pub seconds: f64,
    /// A stop request ended admission: the job must be resumed to finish.
    pub interrupted: bool,
    /// Each endpoint's requests, tokens, errors and in-flight limit.
    pub endpoints: Vec<arbor_llm::StatsSnapshot>,
    /// Each role's calls, tokens and cost (this run's: a resumed job's cached calls count as
    /// cache hits).
    pub roles: Vec<RoleAccount>,
}

impl Summary {
    /// What the job did, for the terminal: the counts, what a resume kept, and why the job is
    /// not done (stopped early, or items lost to a bug in arbor).
    pub fn report(&self, out: &Path) -> String {
        let c = &self.counts;
        let mut s = format!(
            "{} of {} items: {} accepted ({} pairs), {} gated out, {} dead letters, {} duplicates; {:.1}s, {:.1} pairs/s -> {}\n",
            c.items, self.total_rows, c.accepted, c.pairs, c.gated_out, c.dead, c.duplicates, self.seconds,
            self.pairs_counted as f64 / self.seconds, out.display()
        );
        for a in &self.roles {
            s += &format!("  {}\n", crate::accounting::line(a));
        }
        for e in &self.endpoints {
            s += &format!("  {e}\n");
        }
        if self.resumed > 0 {
            s += &format!("{} items were finished before and kept from the journal\n", self.resumed);
        }
        if self.interrupted {
            s += "stopped early: run the same command with --resume to finish\n";
        } else if c.internal > 0 {
            s += &format!("error: {} items hit an internal error (a bug in arbor, please report it); their inputs and causes are in dead_letter.jsonl\n", c.internal);
        }
        s
    }

    /// The exit status when the job is not cleanly done: 130 stopped early (resume it), 70
    /// items lost to a bug (every other item is written; the status must not call it clean).
    pub fn exit_code(&self) -> Option<i32> {
        if self.interrupted {
            Some(130)
        } else if self.counts.internal > 0 {
            Some(70)
        } else {
            None
        }
    }
}

pub struct Job {
    cfg: SynthConfig,
    out: PathBuf,
    resume: bool,
    items: Vec<Result<Item, BadRow>>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |e| JobError::Io(format!("{}: {e}", path.display()))
}

impl Job {
    /// Prepares the job in `out`: role defaults and validation of `cfg`, the input rows (with
    /// `strict`, the first malformed row is an error), and the job file, which a resumed job
    /// must match (config, row count and the input's sha256). Without `resume`, a directory
    /// that already holds a job is refused.
    pub fn open(input: &Path, out: &Path, cfg: SynthConfig, resume: bool) -> Result<Self, JobError> {
        let (cfg, items) = prepare(input, cfg)?;
        std::fs::create_dir_all(out).map_err(io(out))?;
        let job_path = out.join("job.json");
        let journal = out.join("journal.jsonl");
        if !resume && std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0) {
            return Err(JobError::Config(format!(
                "{} holds a synth job ({}); run the same command with --resume to continue it, or choose a new --out",
                out.display(),
                journal.display()
            )));
        }
        let sha = arbor_core::file_sha256(input).map_err(io(input))?;
        let job = json!({"format": "arbor.synth-job/1", "config": cfg.fingerprint(), "input_rows": items.len(),
                         "input_sha256": sha, "input": input.display().to_string()});
        if resume && job_path.exists() {
            let text = std::fs::read_to_string(&job_path).map_err(io(&job_path))?;
            let old: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| JobError::Io(format!("{}: {e}", job_path.display())))?;
            // (Jobs written before `input_sha256` existed are checked on the rest.)
            for k in ["config", "input_rows", "input_sha256"] {
                if old[k] != job[k] && !(k == "input_sha256" && old[k].is_null()) {
                    return Err(JobError::Config(format!("{}: field `{k}` differs from this run ({} vs {}): resume with the same input and settings, or start a new --out", job_path.display(), old[k], job[k])));
                }
            }
        } else {
            let text = serde_json::to_string_pretty(&job).expect("JSON values serialize");
            std::fs::write(&job_path, text).map_err(io(&job_path))?;
        }
        Ok(Self {
            cfg,
            out: out.to_path_buf(),
            resume,
            items,
        })
    }

    pub fn total_rows(&self) -> usize {
        self.items.len()
    }

    /// The malformed input rows (they become dead letters).
    pub fn malformed(&self) -> impl Iterator<Item = &BadRow> {
        self.items.iter().filter_map(|i| i.as_ref().err())
    }

    /// Opens the four roles through `opener` (every call answered from the job's response log
    /// when it was made before), plays every item not yet journaled and writes the dataset
    /// files. Setting `stop` ends admission; the items in flight finish.
    pub async fn run(
        self,
        opener: &dyn ModelOpener,
        stop: Arc<AtomicBool>,
        progress: Arc<Progress>,
    ) -> Result<Summary, JobError> {
        let cfg = self.cfg;
        let log = self.out.join("calls.log");
        let cache =
            Arc::new(ResponseCache::open_log(&log).map_err(|e| JobError::Io(e.to_string()))?);
        let Roles {
            players,
            meters,
            names,
        } = open_roles(&cfg, opener, Some(cache)).await?;
        progress.watch(
            [&players.target, &players.judge, &players.reward, &players.optimizer]
                .into_iter()
                .chain(&players.jury)
                .map(|r| r.model.clone())
                .collect(),
        );
        let started = Instant::now();
        let total_rows = self.items.len();
        let snapshot = (cfg.snapshot_secs > 0.0).then(|| {
            let (dir, cfg, names, meters) = (self.out.clone(), cfg.clone(), names.clone(), meters.clone());
            crate::engine::Snapshot {
                every: Duration::from_secs_f64(cfg.snapshot_secs),
                write: Box::new(move |records: &[crate::journal::ItemRecord]| {
                    write_all(&dir, records, &cfg, &names, total_rows, &meters.accounts(&cfg.prices))
                        .map(drop)
                        .map_err(|e| e.to_string())
                }),
            }
        });
        let rows = unplayed(self.items, &cfg);
        let (records, interrupted) = crate::engine::run(
            cfg.clone(),
            players,
            rows,
            &self.out.join("journal.jsonl"),
            self.resume,
            stop,
            progress.clone(),
            snapshot,
        )
        .await
        .map_err(JobError::Io)?;
        let seconds = started.elapsed().as_secs_f64();
        let accounts = meters.accounts(&cfg.prices);
        let counts = write_all(&self.out, &records, &cfg, &names, total_rows, &accounts)
            .map_err(|e| JobError::Io(e.to_string()))?;
        record_usage(&self.out.join("job.json"), &accounts)?;
        Ok(Summary {
            counts,
            total_rows,
            pairs_counted: progress.pairs.load(Ordering::Relaxed),
            resumed: progress.resumed.load(Ordering::Relaxed),
            seconds,
            interrupted,
            endpoints: progress.endpoints(),
            roles: accounts,
        })
    }
}

/// `cfg` with its role defaults, checked, and the input's rows (with `strict`, the first
/// malformed row is an error): what a job starts from, in a directory or on a queue.
pub fn prepare(input: &Path, cfg: SynthConfig) -> Result<(SynthConfig, Vec<Result<Item, BadRow>>), JobError> {
    let cfg = cfg.with_role_defaults();
    cfg.validate().map_err(JobError::Config)?;
    let items = read_items(input).map_err(|e| JobError::Input(e.to_string()))?;
    if cfg.strict {
        if let Some(bad) = items.iter().find_map(|i| i.as_ref().err()) {
            return Err(JobError::Input(format!("{} (--strict)", bad.cause)));
        }
    }
    Ok((cfg, items))
}

/// A job's role models, opened.
pub struct Roles {
    pub players: Players,
    /// Each role's meter (calls, tokens, cost).
    pub meters: Meters,
    pub names: ModelNames,
}

/// Opens the roles of `cfg` (role defaults applied) through `opener`, each metered and, with
/// `cache`, answered from it when the same call was made before.
pub async fn open_roles(
    cfg: &SynthConfig,
    opener: &dyn ModelOpener,
    cache: Option<Arc<ResponseCache>>,
) -> Result<Roles, JobError> {
    // Room for every item's calls in flight at once (two judge orders, reward pairs).
    let in_flight = cfg.max_in_flight * 2 + 8;
    let role = |r: &RoleConfig, json_service: bool| {
        let cache = cache.clone();
        let spec = ModelSpec {
            url: r.url.as_ref().map(|u| u.to_string()),
            model: r.model.clone(),
            max_in_flight: Some(in_flight),
            timeout_secs: r.timeout_secs,
        };
        let r = r.clone();
        async move {
            let (model, name) = if json_service {
                json_service_model(&spec)?
            } else {
                opener.open(&spec).await?
            };
            let model = match cache {
                Some(cache) => Arc::new(CachedModel::new(model, cache)) as Arc<dyn LanguageModel>,
                None => model,
            };
            // Metered outside the cache, so a cache hit counts as one (not as a call).
            let meter = Arc::new(MeteredModel::new(model));
            let role = RoleModel {
                model: meter.clone(),
                name,
                config: r,
            };
            Ok::<_, JobError>((role, meter))
        }
    };
    let endpoint_reward = cfg.reward_kind == RewardKind::Endpoint && !cfg.no_gate;
    let ((target, m_t), (judge, m_j)) = (role(&cfg.target, false).await?, role(&cfg.judge, false).await?);
    let ((reward, m_r), (optimizer, m_o)) = (role(&cfg.reward, endpoint_reward).await?, role(&cfg.optimizer, false).await?);
    let mut roles = vec![("target", target.name.clone(), m_t), ("judge", judge.name.clone(), m_j)];
    let mut jury = Vec::new();
    for member in &cfg.judges {
        let (r, m) = role(member, false).await?;
        roles.push(("jury", r.name.clone(), m));
        jury.push(r);
    }
    if !cfg.no_gate {
        roles.extend([("reward", reward.name.clone(), m_r), ("optimizer", optimizer.name.clone(), m_o)]);
    }
    let names = ModelNames {
        target: target.name.clone(),
        judge: judge.name.clone(),
        reward: reward.name.clone(),
        optimizer: optimizer.name.clone(),
    };
    let players = Players {
        target,
        judge,
        jury,
        reward,
        optimizer,
        tools: crate::checks::registry(cfg, Duration::from_secs(10)).map_err(JobError::Config)?,
    };
    Ok(Roles {
        players,
        meters: Meters(roles),
        names,
    })
}

/// Adds the roles' accounts to `job.json` (its resume keys untouched), replacing the file whole.
fn record_usage(path: &Path, accounts: &[RoleAccount]) -> Result<(), JobError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut job: serde_json::Value = serde_json::from_str(&text).map_err(|e| JobError::Io(format!("{}: {e}", path.display())))?;
    job["usage"] = serde_json::to_value(accounts).expect("accounts serialize");
    arbor_core::write_atomic(path, serde_json::to_string_pretty(&job).expect("JSON values serialize")).map_err(io(path))
}

/// The rows that need no playing, as their records: malformed rows (dead letters with their
/// line) and items whose prompt repeats an earlier one's (`dedup`; the first is played).
pub fn unplayed(items: Vec<Result<Item, BadRow>>, cfg: &SynthConfig) -> Vec<Result<Item, ItemRecord>> {
    let repeats = match cfg.dedup.threshold(cfg.dedup_threshold) {
        Some(t) => {
            let texts: Vec<String> = items.iter().map(|i| i.as_ref().map_or(String::new(), Item::prompt_text)).collect();
            let ok: Vec<usize> = (0..items.len()).filter(|&i| items[i].is_ok()).collect();
            let found = crate::dedup::find(&ok.iter().map(|&i| texts[i].as_str()).collect::<Vec<_>>(), t);
            let mut out = vec![None; items.len()];
            for (k, d) in found.into_iter().enumerate() {
                out[ok[k]] = d.map(|d| match d {
                    crate::dedup::Duplicate::Exact(j) => (ok[j], "exact"),
                    crate::dedup::Duplicate::Near(j) => (ok[j], "near"),
                });
            }
            out
        }
        None => vec![None; items.len()],
    };
    let ids: Vec<Option<String>> = items.iter().map(|i| i.as_ref().ok().map(|i| i.id.clone())).collect();
    items
        .into_iter()
        .zip(repeats)
        .map(|(row, repeat)| match (row, repeat) {
            (Err(bad), _) => {
                let mut rec = ItemRecord::dead(bad.index, format!("row-{}", bad.line), 0, bad.cause);
                rec.line = Some(bad.line);
                Err(rec)
            }
            (Ok(item), Some((first, kind))) => {
                let first_id = ids[first].clone().unwrap_or_default();
                let mut rec = ItemRecord::new(item.index, item.id.clone(), Status::Duplicate, 0);
                rec.cause = Some(format!("its prompt repeats item `{first_id}`'s ({kind})"));
                rec.provenance = vec![json!({"item_id": item.id, "duplicate_of": {"index": first, "item_id": first_id}, "kind": kind})];
                rec.input = serde_json::to_value(&item).ok();
                Err(rec)
            }
            (Ok(item), None) => Ok(item),
        })
        .collect()
}

/// A numeric reward endpoint (POST `{prompt, chosen, rejected, reference}` → `{score,
/// critique?}`) as a model, with a server's limits, retries and breaker.
fn json_service_model(spec: &ModelSpec) -> Result<arbor_llm::OpenedModel, JobError> {
    let url = spec
        .url
        .as_deref()
        .ok_or_else(|| JobError::Config("reward_kind = \"endpoint\" needs reward.url".into()))?;
    let url = url
        .parse()
        .map_err(|e| JobError::Config(format!("reward.url `{url}`: {e}")))?;
    let name = spec.model.clone().unwrap_or_else(|| "reward".into());
    let mut cfg = arbor_openai::EndpointConfig::new(url, &name);
    if let Some(t) = spec.timeout_secs {
        cfg.timeout_secs = t;
    }
    let client =
        arbor_openai::OpenAiClient::json_post(cfg).map_err(|e| JobError::Config(e.to_string()))?;
    Ok((Arc::new(client), name))
}
