//! What the critic V(s) of an OREO policy is worth, measured on the held-out tasks: its AUC at
//! telling states on correct paths from states on wrong ones, and search guided by it against
//! sampling with the same number of policy samples.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arbor_core::Progress;
use arbor_envs::{Environment, Task};
use arbor_tree::eval::{evaluate, evaluate_shared_chains, paired, Report};
use arbor_tree::evaluate::ValueFunction;
use arbor_tree::policy::StepPolicy;
use arbor_tree::search::decode::{DecodeParams, Strategy};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Area under the ROC curve of `scores` for `labels` (Mann–Whitney, ties counted half);
/// `None` without both classes.
pub fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let mut v: Vec<(f64, bool)> = scored.iter().filter(|s| s.0.is_finite()).copied().collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pos = v.iter().filter(|s| s.1).count();
    let neg = v.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    // Sum of the positives' ranks, tied groups sharing their mean rank.
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < v.len() {
        let j = (i..v.len()).find(|&j| v[j].0 != v[i].0).unwrap_or(v.len());
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * v[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

/// The AUC of V over every state that precedes an action on the paths of `report` (labelled by
/// whether the path solved its task).
pub async fn state_auc(
    tasks: &[Task],
    report: &Report,
    value: &dyn ValueFunction,
) -> Result<Option<f64>, String> {
    let mut scored = Vec::new();
    for (task, r) in tasks.iter().zip(&report.results) {
        let states: Vec<(Vec<String>, bool)> = (0..r.steps.len())
            .map(|i| (r.steps[..i].to_vec(), false))
            .collect();
        if states.is_empty() {
            continue;
        }
        let vs = value
            .values(&task.prompt, &states)
            .await
            .map_err(|e| e.to_string())?;
        scored.extend(vs.into_iter().map(|v| (v, r.correct)));
    }
    Ok(auc(&scored))
}

fn summary(r: &Report) -> Value {
    json!({"correct": r.correct, "accuracy": r.accuracy, "ci95": [r.ci95.0, r.ci95.1]})
}

/// What an interrupted comparison finished, kept in `critic-results.json`: the AUC and each
/// strategy's per-task results, for the same task count.
#[derive(Default, Serialize, Deserialize)]
struct Finished {
    n: usize,
    critic_auc: Option<Option<f64>>,
    reports: BTreeMap<String, Report>,
}

/// The critic's AUC on the greedy paths, then value-guided beam (width K), best-of-K by value,
/// the majority vote of K samples and one sample (the last three from the same K chains of
/// each task, one sample being the first), all at the sampler's temperature, each paired
/// with greedy (and the two critic-guided ones with the majority vote: the same K samples per
/// step or per task, selected without the critic). `tasks` and `greedy` cover the same tasks.
/// Each finished measurement is written to `results` at once; a rerun after an interruption
/// measures only the rest.
#[allow(clippy::too_many_arguments)]
pub async fn measure(
    env: Arc<dyn Environment>,
    tasks: &[Task],
    greedy: &Report,
    sampler: Arc<dyn StepPolicy>,
    value: Arc<dyn ValueFunction>,
    k: usize,
    max_depth: usize,
    concurrency: usize,
    progress: &Progress,
    results: &Path,
) -> Result<Value, String> {
    let save = |f: &Finished| {
        arbor_core::write_atomic(
            results,
            serde_json::to_string(f).expect("reports serialize"),
        )
        .map_err(|e| format!("{}: {e}", results.display()))
    };
    let mut done = std::fs::read_to_string(results)
        .ok()
        .and_then(|s| serde_json::from_str::<Finished>(&s).ok())
        .filter(|f| f.n == tasks.len())
        .unwrap_or(Finished {
            n: tasks.len(),
            ..Finished::default()
        });
    if done.critic_auc.is_none() {
        done.critic_auc = Some(state_auc(tasks, greedy, value.as_ref()).await?);
        save(&done)?;
    }
    let mut out = json!({"n": tasks.len(), "critic_auc": done.critic_auc.flatten(), "width": k,
                         "greedy": summary(greedy)});
    if !done.reports.contains_key("value_beam") {
        let params = DecodeParams {
            strategy: Strategy::ValueBeam,
            width: k,
            max_depth,
        };
        let r = evaluate(
            env.clone(),
            tasks,
            sampler.clone(),
            Some(value.clone()),
            &params,
            concurrency,
            progress,
        )
        .await;
        done.reports.insert("value_beam".into(), r);
        save(&done)?;
    }
    // The three pick from the same K chains of each task, drawn once: the difference between
    // best-of-K and the vote is the rule alone, not the draws (a rerun draws all three again).
    let shared = [
        ("best_of_k", Strategy::BestOfN),
        ("majority_of_k", Strategy::Majority),
        ("sample", Strategy::Sample),
    ];
    if shared.iter().any(|s| !done.reports.contains_key(s.0)) {
        let strategies: Vec<Strategy> = shared.iter().map(|s| s.1).collect();
        let reports = evaluate_shared_chains(
            env.clone(),
            tasks,
            sampler.clone(),
            Some(value.clone()),
            &strategies,
            k,
            max_depth,
            concurrency,
            progress,
        )
        .await;
        for ((key, _), r) in shared.iter().zip(reports) {
            done.reports.insert(key.to_string(), r);
        }
        save(&done)?;
    }
    for key in ["value_beam", "best_of_k", "majority_of_k", "sample"] {
        let r = &done.reports[key];
        out[key] = summary(r);
        out[key]["vs_greedy"] = json!(paired(greedy, r));
    }
    for key in ["value_beam", "best_of_k"] {
        out[key]["vs_majority"] = json!(paired(&done.reports["majority_of_k"], &done.reports[key]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::auc;

    #[test]
    fn auc_is_the_rank_statistic() {
        let perfect = [(0.1, false), (0.2, false), (0.8, true), (0.9, true)];
        assert_eq!(auc(&perfect), Some(1.0));
        let reversed = [(0.1, true), (0.2, true), (0.8, false), (0.9, false)];
        assert_eq!(auc(&reversed), Some(0.0));
        // One tie between classes counts half: pairs (p, n) = 4, wins 3.5.
        let tied = [(0.1, false), (0.5, false), (0.5, true), (0.9, true)];
        assert_eq!(auc(&tied), Some(0.875));
        assert_eq!(auc(&[(0.3, true)]), None);
    }
}
