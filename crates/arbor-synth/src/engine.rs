//! The runtime: an admission loop and four stage actors (target, judge, reward, optimizer)
//! joined by bounded channels, and a sink actor that journals finished items. Tool calls run in
//! the judge's tool loop, bounded by the tool registry's timeouts.
//!
//! Backpressure: an item holds an in-flight permit from admission until it is finished, and
//! every channel holds `max_in_flight` messages, so no send waits on a full channel while items
//! circulate (optimizer → target closes a cycle; bounded admission keeps it deadlock-free), and
//! admission waits when the engine is full. A slow item occupies only its own permit.
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::config::{OutputFormat, Pairing, SynthConfig};
use crate::game::{pairs, ranking, Judgement, MoveError, Players, RewardVerdict};
use crate::input::{BadRow, Item};
use crate::journal::{ItemRecord, Journal, Status};
use crate::prompts::{PromptPair, PromptPool};

/// Live counts for the progress bar and the summary.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub accepted: AtomicU64,
    pub gated_out: AtomicU64,
    pub dead: AtomicU64,
    pub pairs: AtomicU64,
    /// Rounds run again (after a rejection or a failure).
    pub retries: AtomicU64,
    /// Items already finished when a resumed job started.
    pub resumed: AtomicU64,
}

/// An item on its way through the stages.
struct Work {
    item: Arc<Item>,
    round: u32,
    prompts: PromptPair,
    candidates: Vec<String>,
    judgement: Option<Judgement>,
    /// The gate's verdict on the rejected pair (or the judge's reason), for the optimizer.
    feedback: Option<RewardVerdict>,
    /// What went wrong in earlier rounds, for provenance and dead letters.
    history: Vec<Value>,
    _permit: OwnedSemaphorePermit,
}

#[derive(Clone)]
struct Stages {
    target: mpsc::Sender<Work>,
    judge: mpsc::Sender<Work>,
    reward: mpsc::Sender<Work>,
    optimizer: mpsc::Sender<Work>,
    sink: mpsc::Sender<ItemRecord>,
}

struct Shared {
    cfg: SynthConfig,
    players: Players,
    progress: Arc<Progress>,
}

/// Runs the job over `items` (every input row, in order), journaling into `journal_path`.
/// Items already in the journal (with `resume`) are skipped. Returns every record, journaled
/// ones included, in input order, and whether the run was interrupted.
pub async fn run(
    cfg: SynthConfig,
    players: Players,
    items: Vec<Result<Item, BadRow>>,
    journal_path: &Path,
    resume: bool,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> Result<(Vec<ItemRecord>, bool), String> {
    let (mut journal, old) = Journal::open(journal_path, resume)
        .map_err(|e| format!("{}: {e}", journal_path.display()))?;
    let pool = Arc::new(PromptPool::new(items.len(), cfg.pool_epoch));
    let mut done = vec![false; items.len()];
    for r in &old {
        if r.index < items.len() && !std::mem::replace(&mut done[r.index], true) {
            pool.finish(r.index, &r.wins);
            count(&progress, r);
            progress.resumed.fetch_add(1, Ordering::Relaxed);
        }
    }
    progress.total.store(items.len() as u64, Ordering::Relaxed);

    let cap = cfg.max_in_flight;
    let (target_tx, target_rx) = mpsc::channel(cap);
    let (judge_tx, judge_rx) = mpsc::channel(cap);
    let (reward_tx, reward_rx) = mpsc::channel(cap);
    let (optimizer_tx, optimizer_rx) = mpsc::channel(cap);
    let (sink_tx, mut sink_rx) = mpsc::channel::<ItemRecord>(cap);
    let stages = Stages {
        target: target_tx,
        judge: judge_tx,
        reward: reward_tx,
        optimizer: optimizer_tx,
        sink: sink_tx,
    };
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        players,
        progress: progress.clone(),
    });

    let mut actors = tokio::task::JoinSet::new();
    actors.spawn(stage(
        target_rx,
        shared.clone(),
        stages.clone(),
        target_move,
    ));
    actors.spawn(stage(judge_rx, shared.clone(), stages.clone(), judge_move));
    actors.spawn(stage(
        reward_rx,
        shared.clone(),
        stages.clone(),
        reward_move,
    ));
    actors.spawn(stage(
        optimizer_rx,
        shared.clone(),
        stages.clone(),
        optimizer_move,
    ));

    // The sink: journal (one fsync per batch of whatever is queued), then count.
    let sink_pool = pool.clone();
    let sink_progress = progress.clone();
    let sink = tokio::spawn(async move {
        let mut records = old;
        let mut batch = Vec::new();
        while let Some(first) = sink_rx.recv().await {
            batch.push(first);
            while let Ok(more) = sink_rx.try_recv() {
                batch.push(more);
            }
            // The fsync runs off the async workers.
            let (j, b, written) = tokio::task::spawn_blocking(move || {
                let r = journal.append(&batch);
                (journal, batch, r)
            })
            .await
            .map_err(|e| format!("journal: {e}"))?;
            journal = j;
            batch = b;
            if let Err(e) = written {
                return Err(format!("journal: {e}"));
            }
            for r in batch.drain(..) {
                sink_pool.finish(r.index, &r.wins);
                count(&sink_progress, &r);
                records.push(r);
            }
        }
        Ok(records)
    });

    // Admission, in input order.
    let permits = Arc::new(Semaphore::new(cap));
    let mut interrupted = false;
    let mut strict_error = None;
    for (row, is_done) in items.into_iter().zip(done) {
        if is_done {
            continue;
        }
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        match row {
            Err(bad) => {
                if cfg.strict {
                    strict_error = Some(bad.cause);
                    break;
                }
                let rec = dead_record(
                    bad.index,
                    format!("row-{}", bad.line),
                    0,
                    bad.cause,
                    Some(bad.line),
                    None,
                );
                if stages.sink.send(rec).await.is_err() {
                    break;
                }
            }
            Ok(item) => {
                // Without the gate there is no feedback, so no prompt ever changes.
                let prompts = if cfg.no_gate {
                    PromptPair::initial()
                } else {
                    pool.start(item.index).await
                };
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let w = Work {
                    item: Arc::new(item),
                    round: 0,
                    prompts,
                    candidates: Vec::new(),
                    judgement: None,
                    feedback: None,
                    history: Vec::new(),
                    _permit: permit,
                };
                if stages.target.send(w).await.is_err() {
                    break;
                }
            }
        }
    }
    // Every permit back: nothing is in flight.
    let _all = permits.acquire_many(cap as u32).await;
    actors.abort_all();
    drop(stages);
    let mut records = sink.await.map_err(|e| format!("sink: {e}"))??;
    if let Some(e) = strict_error {
        return Err(format!("{e} (--strict)"));
    }
    records.sort_by_key(|r| r.index);
    records.dedup_by_key(|r| r.index);
    Ok((records, interrupted))
}

fn count(p: &Progress, r: &ItemRecord) {
    p.done.fetch_add(1, Ordering::Relaxed);
    let c = match r.status {
        Status::Accepted => &p.accepted,
        Status::GatedOut => &p.gated_out,
        Status::Dead => &p.dead,
    };
    c.fetch_add(1, Ordering::Relaxed);
    p.pairs.fetch_add(r.rows.len() as u64, Ordering::Relaxed);
}

type Move = fn(Arc<Shared>, Stages, Work) -> futures::future::BoxFuture<'static, ()>;

/// A stage actor: takes work off its channel and runs each move as its own task, so a slow
/// item never holds up the others.
async fn stage(mut rx: mpsc::Receiver<Work>, shared: Arc<Shared>, stages: Stages, mv: Move) {
    while let Some(w) = rx.recv().await {
        tokio::spawn(mv(shared.clone(), stages.clone(), w));
    }
}

fn dead_record(
    index: usize,
    id: String,
    rounds: u32,
    cause: String,
    line: Option<usize>,
    input: Option<Value>,
) -> ItemRecord {
    ItemRecord {
        index,
        id,
        status: Status::Dead,
        rounds,
        cause: Some(cause),
        line,
        rows: vec![],
        provenance: vec![],
        wins: vec![],
        judge_scores: vec![],
        reward_scores: vec![],
        rankings_agree: None,
        input,
    }
}

/// A round failed: run the next one with the same prompts, or give the item up.
async fn failed(sh: &Shared, st: &Stages, mut w: Work, err: MoveError) {
    tracing::debug!(item = %w.item.id, round = w.round, "{err}");
    w.history
        .push(json!({"round": w.round, "error": err.to_string()}));
    if w.round + 1 < sh.cfg.rounds {
        w.round += 1;
        sh.progress.retries.fetch_add(1, Ordering::Relaxed);
        let _ = st.target.send(w).await;
    } else {
        let input = serde_json::to_value(&*w.item).ok();
        let mut rec = dead_record(
            w.item.index,
            w.item.id.clone(),
            w.round + 1,
            err.to_string(),
            None,
            input,
        );
        rec.provenance = vec![json!({"item_id": w.item.id, "history": w.history})];
        let _ = st.sink.send(rec).await;
    }
}

/// The gate (or the judge) turned the round down: optimize and retry, or gate the item out.
async fn rejected(
    sh: &Shared,
    st: &Stages,
    mut w: Work,
    reason: &str,
    verdicts: Vec<RewardVerdict>,
) {
    let j = w.judgement.as_ref();
    w.history.push(json!({"round": w.round, "rejected": reason, "scores": j.map(|j| j.scores.clone()), "reward": verdicts,
                          "prompts": {"target": w.prompts.target.id, "judge": w.prompts.judge.id}}));
    w.feedback = Some(verdicts.first().cloned().unwrap_or(RewardVerdict {
        score: 0.0,
        critique: reason.to_string(),
    }));
    if w.round + 1 < sh.cfg.rounds && !sh.cfg.no_gate {
        sh.progress.retries.fetch_add(1, Ordering::Relaxed);
        let _ = st.optimizer.send(w).await;
        return;
    }
    if w.round + 1 < sh.cfg.rounds {
        // No gate means no feedback: the next round samples again with the same prompts.
        w.round += 1;
        sh.progress.retries.fetch_add(1, Ordering::Relaxed);
        let _ = st.target.send(w).await;
        return;
    }
    let j = w.judgement.as_ref();
    let rec = ItemRecord {
        index: w.item.index,
        id: w.item.id.clone(),
        status: Status::GatedOut,
        rounds: w.round + 1,
        cause: Some("no pair passed the reward gate".into()),
        line: None,
        rows: vec![],
        provenance: vec![json!({"item_id": w.item.id, "history": w.history})],
        wins: vec![],
        judge_scores: j.map(|j| j.scores.clone()).unwrap_or_default(),
        reward_scores: verdicts.iter().map(|v| v.score).collect(),
        rankings_agree: j.map(|j| j.rankings_agree),
        input: None,
    };
    let _ = st.sink.send(rec).await;
}

fn target_move(
    sh: Arc<Shared>,
    st: Stages,
    mut w: Work,
) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(async move {
        match sh
            .players
            .sample(&sh.cfg, &w.item, &w.prompts, w.round)
            .await
        {
            Ok(c) => {
                w.candidates = c;
                let _ = st.judge.send(w).await;
            }
            Err(e) => failed(&sh, &st, w, e).await,
        }
    })
}

fn judge_move(sh: Arc<Shared>, st: Stages, mut w: Work) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(async move {
        match sh
            .players
            .judge(&sh.cfg, &w.item, &w.prompts, &w.candidates, w.round)
            .await
        {
            Ok(j) => {
                let ps = pairs(&j.scores, sh.cfg.pairing, sh.cfg.margin);
                w.judgement = Some(j);
                if ps.is_empty() {
                    rejected(
                        &sh,
                        &st,
                        w,
                        "the judge's scores did not separate the candidates",
                        Vec::new(),
                    )
                    .await;
                } else if sh.cfg.no_gate {
                    let rec = accepted(&sh, &w, &ps.iter().map(|&p| (p, None)).collect::<Vec<_>>());
                    let _ = st.sink.send(rec).await;
                } else {
                    let _ = st.reward.send(w).await;
                }
            }
            Err(e) => failed(&sh, &st, w, e).await,
        }
    })
}

fn reward_move(sh: Arc<Shared>, st: Stages, w: Work) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(async move {
        let j = w
            .judgement
            .clone()
            .expect("the judge ran before the reward");
        let ps = pairs(&j.scores, sh.cfg.pairing, sh.cfg.margin);
        let verdicts = futures::future::join_all(ps.iter().map(|&(c, r)| {
            sh.players.reward(
                &sh.cfg,
                &w.item,
                &w.candidates[c],
                &w.candidates[r],
                w.round,
            )
        }))
        .await;
        let verdicts: Result<Vec<RewardVerdict>, MoveError> = verdicts.into_iter().collect();
        match verdicts {
            Err(e) => failed(&sh, &st, w, e).await,
            Ok(vs) => {
                let passed: Vec<((usize, usize), Option<RewardVerdict>)> = ps
                    .iter()
                    .zip(&vs)
                    .filter(|(_, v)| v.score >= sh.cfg.threshold)
                    .map(|(&p, v)| (p, Some(v.clone())))
                    .collect();
                if passed.is_empty() {
                    rejected(&sh, &st, w, "reward below threshold", vs).await;
                } else {
                    let rec = accepted(&sh, &w, &passed);
                    let _ = st.sink.send(rec).await;
                }
            }
        }
    })
}

fn optimizer_move(
    sh: Arc<Shared>,
    st: Stages,
    mut w: Work,
) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(async move {
        let j = w
            .judgement
            .clone()
            .expect("the judge ran before the optimizer");
        let r = ranking(&j.scores);
        let (best, worst) = (&w.candidates[r[0]], &w.candidates[r[r.len() - 1]]);
        let verdict = w.feedback.clone().expect("a rejected round left feedback");
        match sh
            .players
            .optimize(
                &sh.cfg, &w.item, &w.prompts, best, worst, &j, &verdict, w.round,
            )
            .await
        {
            Ok(p) => {
                w.prompts = p;
                w.round += 1;
                let _ = st.target.send(w).await;
            }
            Err(e) => failed(&sh, &st, w, e).await,
        }
    })
}

/// The accepted item's rows (TRL preference format) and provenance.
fn accepted(
    sh: &Shared,
    w: &Work,
    passed: &[((usize, usize), Option<RewardVerdict>)],
) -> ItemRecord {
    let cfg = &sh.cfg;
    let j = w.judgement.as_ref().expect("accepted items were judged");
    let item = &w.item;
    let prompt = match cfg.format {
        OutputFormat::Conversational => serde_json::to_value(&item.messages).unwrap_or(Value::Null),
        OutputFormat::Standard => Value::String(item.prompt_text()),
    };
    let answer = |text: &str| match cfg.format {
        OutputFormat::Conversational => json!([{"role": "assistant", "content": text}]),
        OutputFormat::Standard => Value::String(text.to_string()),
    };
    let mut rows = Vec::new();
    let mut provenance = Vec::new();
    for ((c, r), verdict) in passed {
        let (chosen, rejected) = (&w.candidates[*c], &w.candidates[*r]);
        let id = arbor_core::content_hash(&("arbor.pair/1", &item.id, chosen, rejected))[..16]
            .to_string();
        let mut row = json!({"id": id, "prompt": prompt, "chosen": answer(chosen), "rejected": answer(rejected)});
        if cfg.pairing == Pairing::List {
            let order = ranking(&j.scores);
            row["responses"] = json!(order
                .iter()
                .map(|&i| answer(&w.candidates[i]))
                .collect::<Vec<_>>());
            row["scores"] = json!(order.iter().map(|&i| j.scores[i]).collect::<Vec<_>>());
        }
        rows.push(row);
        let p = &sh.players;
        provenance.push(json!({
            "pair_id": id,
            "item_id": item.id,
            "round": w.round,
            "candidates": w.candidates,
            "scores": j.scores,
            "score_orders": j.orders,
            "rankings_agree": j.rankings_agree,
            "chosen_index": c,
            "rejected_index": r,
            "tool_calls": j.tool_calls,
            "rationale": j.rationale,
            "reward": verdict,
            "prompts": {"target": w.prompts.target, "judge": w.prompts.judge},
            "models": {"target": p.target.name, "judge": p.judge.name, "reward": if cfg.no_gate { Value::Null } else { json!(p.reward.name) }, "optimizer": p.optimizer.name},
            "history": w.history,
        }));
    }
    ItemRecord {
        index: item.index,
        id: item.id.clone(),
        status: Status::Accepted,
        rounds: w.round + 1,
        cause: None,
        line: None,
        wins: vec![w.prompts.clone(); rows.len()],
        rows,
        provenance,
        judge_scores: j.scores.clone(),
        reward_scores: passed
            .iter()
            .filter_map(|(_, v)| v.as_ref().map(|v| v.score))
            .collect(),
        rankings_agree: Some(j.rankings_agree),
        input: None,
    }
}
