//! One item's game as an async state machine: each round the target samples, the judge scores,
//! and the gate decides; a rejected round feeds the optimizer, whose rewritten prompts start the
//! next round; a failed move retries the round with the same prompts. The item ends accepted,
//! gated out (rounds exhausted) or dead (failures exhausted), as exactly one record.
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::{OutputFormat, Pairing, SynthConfig};
use crate::game::{pairs, ranking, Judgement, MoveError, Players, RewardVerdict};
use crate::input::Item;
use crate::journal::{ItemRecord, Status};
use crate::progress::Progress;
use crate::prompts::PromptPair;

/// What every item's state machine reads.
pub(crate) struct Shared {
    pub cfg: SynthConfig,
    pub players: Players,
    pub progress: Arc<Progress>,
}

/// How a round ended.
enum Round {
    /// Pairs passed the gate (or the gate is off): (chosen, rejected) with the gate's verdict.
    Accepted {
        candidates: Vec<String>,
        judgement: Judgement,
        passed: Vec<((usize, usize), Option<RewardVerdict>)>,
    },
    /// The judge did not separate the candidates, or no pair reached the threshold.
    Rejected {
        candidates: Vec<String>,
        judgement: Judgement,
        reason: &'static str,
        verdicts: Vec<RewardVerdict>,
    },
    Failed(MoveError),
}

/// An item's state between rounds.
struct Game {
    item: Arc<Item>,
    round: u32,
    prompts: PromptPair,
    /// What went wrong in earlier rounds, for provenance and dead letters.
    history: Vec<Value>,
}

pub(crate) async fn play(sh: &Shared, item: Arc<Item>, prompts: PromptPair) -> ItemRecord {
    // Tests of the panic path (debug builds only): the item with this id panics.
    #[cfg(debug_assertions)]
    if std::env::var("ARBOR_TEST_PANIC_ITEM").is_ok_and(|id| id == item.id) {
        panic!("injected by ARBOR_TEST_PANIC_ITEM");
    }
    let cfg = &sh.cfg;
    let mut g = Game {
        item,
        round: 0,
        prompts,
        history: Vec::new(),
    };
    loop {
        let last_round = g.round + 1 >= cfg.rounds;
        let err = match round(sh, &g).await {
            Round::Accepted {
                candidates,
                judgement,
                passed,
            } => return accepted(sh, &g, &candidates, &judgement, &passed),
            Round::Failed(e) => e,
            Round::Rejected {
                candidates,
                judgement,
                reason,
                verdicts,
            } => {
                g.history.push(json!({"round": g.round, "rejected": reason, "scores": judgement.scores, "reward": verdicts,
                                      "prompts": {"target": g.prompts.target.id, "judge": g.prompts.judge.id}}));
                if last_round {
                    return gated_out(&g, &judgement, &verdicts);
                }
                sh.progress.retries.fetch_add(1, Ordering::Relaxed);
                if cfg.no_gate {
                    // No gate means no feedback: the next round samples again with the same prompts.
                    g.round += 1;
                    continue;
                }
                let feedback = verdicts.first().cloned().unwrap_or(RewardVerdict {
                    score: 0.0,
                    critique: reason.to_string(),
                });
                let r = ranking(&judgement.scores);
                let (best, worst) = (&candidates[r[0]], &candidates[r[r.len() - 1]]);
                let p = &sh.players;
                match p
                    .optimize(
                        cfg, &g.item, &g.prompts, best, worst, &judgement, &feedback, g.round,
                    )
                    .await
                {
                    Ok(prompts) => {
                        g.prompts = prompts;
                        g.round += 1;
                        continue;
                    }
                    Err(e) => e,
                }
            }
        };
        // A failed move: run the next round with the same prompts, or give the item up.
        tracing::debug!(item = %g.item.id, round = g.round, "{err}");
        g.history
            .push(json!({"round": g.round, "error": err.to_string()}));
        if last_round {
            let mut rec = ItemRecord::dead(g.item.index, g.item.id.clone(), g.round + 1, err.to_string());
            rec.input = serde_json::to_value(&*g.item).ok();
            rec.provenance = vec![json!({"item_id": g.item.id, "history": g.history})];
            return rec;
        }
        g.round += 1;
        sh.progress.retries.fetch_add(1, Ordering::Relaxed);
    }
}

/// One round: sample, judge, pair, and (with the gate) score the pairs.
async fn round(sh: &Shared, g: &Game) -> Round {
    let (cfg, p) = (&sh.cfg, &sh.players);
    let candidates = match p.sample(cfg, &g.item, &g.prompts, g.round).await {
        Ok(c) => c,
        Err(e) => return Round::Failed(e),
    };
    // Repeated candidates make pairs with nothing to learn from, and cost judge calls.
    let candidates = match cfg.dedup.threshold(cfg.dedup_threshold) {
        Some(t) => {
            let seen = crate::dedup::find(&candidates.iter().map(String::as_str).collect::<Vec<_>>(), t);
            candidates.into_iter().zip(seen).filter(|(_, d)| d.is_none()).map(|(c, _)| c).collect()
        }
        None => candidates,
    };
    if candidates.len() < 2 {
        let judgement = Judgement {
            scores: vec![0.0; candidates.len()],
            orders: Vec::new(),
            rankings_agree: true,
            rationale: "not judged".into(),
            tool_calls: Vec::new(),
            checks: Vec::new(),
            jury: Vec::new(),
        };
        return Round::Rejected {
            candidates,
            judgement,
            reason: "the candidates repeat each other",
            verdicts: Vec::new(),
        };
    }
    let judgement = match crate::jury::judge(p, cfg, &g.item, &g.prompts, &candidates, g.round).await {
        Ok(j) => j,
        Err(e) => return Round::Failed(e),
    };
    let ps = pairs(&judgement.scores, cfg.pairing, cfg.margin);
    if ps.is_empty() {
        return Round::Rejected {
            candidates,
            judgement,
            reason: "the judge's scores did not separate the candidates",
            verdicts: Vec::new(),
        };
    }
    let ps: Vec<_> = ps.into_iter().filter(|&(c, r)| crate::jury::agreement(&judgement, c, r) >= cfg.jury_min_agreement).collect();
    if ps.is_empty() {
        return Round::Rejected {
            candidates,
            judgement,
            reason: "too few of the jury ranked the pair the same way",
            verdicts: Vec::new(),
        };
    }
    if cfg.no_gate {
        let passed = ps.iter().map(|&p| (p, None)).collect();
        return Round::Accepted {
            candidates,
            judgement,
            passed,
        };
    }
    let verdicts = futures::future::join_all(ps.iter().map(|&(c, r)| {
        p.reward(cfg, &g.item, &candidates[c], &candidates[r], g.round)
    }))
    .await;
    let verdicts: Vec<RewardVerdict> = match verdicts.into_iter().collect() {
        Ok(v) => v,
        Err(e) => return Round::Failed(e),
    };
    let passed: Vec<_> = ps
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.score >= cfg.threshold)
        .map(|(&p, v)| (p, Some(v.clone())))
        .collect();
    if passed.is_empty() {
        Round::Rejected {
            candidates,
            judgement,
            reason: "reward below threshold",
            verdicts,
        }
    } else {
        Round::Accepted {
            candidates,
            judgement,
            passed,
        }
    }
}

fn gated_out(g: &Game, j: &Judgement, verdicts: &[RewardVerdict]) -> ItemRecord {
    let mut rec = ItemRecord::new(g.item.index, g.item.id.clone(), Status::GatedOut, g.round + 1);
    rec.cause = Some("no pair passed the reward gate".into());
    rec.provenance = vec![json!({"item_id": g.item.id, "history": g.history})];
    rec.judge_scores = j.scores.clone();
    rec.reward_scores = verdicts.iter().map(|v| v.score).collect();
    rec.rankings_agree = Some(j.rankings_agree);
    rec
}

/// The accepted item's rows (TRL preference format) and provenance.
fn accepted(
    sh: &Shared,
    g: &Game,
    candidates: &[String],
    j: &Judgement,
    passed: &[((usize, usize), Option<RewardVerdict>)],
) -> ItemRecord {
    let cfg = &sh.cfg;
    let item = &g.item;
    let prompt = match cfg.format {
        OutputFormat::Conversational => serde_json::to_value(&item.messages).unwrap_or(Value::Null),
        OutputFormat::Standard => Value::String(item.prompt_text()),
    };
    let answer = |text: &str| match cfg.format {
        OutputFormat::Conversational => json!([{"role": "assistant", "content": text}]),
        OutputFormat::Standard => Value::String(text.to_string()),
    };
    let mut rec = ItemRecord::new(item.index, item.id.clone(), Status::Accepted, g.round + 1);
    for ((c, r), verdict) in passed {
        let (chosen, rejected) = (&candidates[*c], &candidates[*r]);
        let id = arbor_core::content_hash(&("arbor.pair/1", &item.id, chosen, rejected))[..16]
            .to_string();
        let mut row = json!({"id": id, "prompt": prompt, "chosen": answer(chosen), "rejected": answer(rejected)});
        if cfg.pairing == Pairing::List {
            let order = ranking(&j.scores);
            row["responses"] = json!(order
                .iter()
                .map(|&i| answer(&candidates[i]))
                .collect::<Vec<_>>());
            row["scores"] = json!(order.iter().map(|&i| j.scores[i]).collect::<Vec<_>>());
        }
        rec.rows.push(row);
        let p = &sh.players;
        rec.provenance.push(json!({
            "pair_id": id,
            "item_id": item.id,
            "round": g.round,
            "candidates": candidates,
            "scores": j.scores,
            "score_orders": j.orders,
            "rankings_agree": j.rankings_agree,
            "chosen_index": c,
            "rejected_index": r,
            "tool_calls": j.tool_calls,
            "rationale": j.rationale,
            "jury": (!j.jury.is_empty()).then_some(&j.jury),
            "jury_agreement": (!j.jury.is_empty()).then(|| crate::jury::agreement(j, *c, *r)),
            "reward": verdict,
            "prompts": {"target": g.prompts.target, "judge": g.prompts.judge},
            "models": {"target": p.target.name, "judge": p.judge.name, "reward": if cfg.no_gate { Value::Null } else { json!(p.reward.name) }, "optimizer": p.optimizer.name},
            "history": g.history,
        }));
    }
    rec.wins = vec![g.prompts.clone(); rec.rows.len()];
    rec.judge_scores = j.scores.clone();
    rec.reward_scores = passed
        .iter()
        .filter_map(|(_, v)| v.as_ref().map(|v| v.score))
        .collect();
    rec.rankings_agree = Some(j.rankings_agree);
    rec
}
