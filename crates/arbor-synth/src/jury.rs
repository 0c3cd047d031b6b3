//! A jury of judges (`[[judges]]` beside `[judge]`): every member scores the same candidates
//! (each in both orders when configured), and their judgements combine into one — the mean of
//! their scores, or a majority of their first choices — with each member's vote kept for
//! provenance. A pair stands when at least `jury_min_agreement` of the members rank its chosen
//! answer above its rejected one (a panel of small judges from different families agreed
//! with humans better than one large judge in PoLL, Verga et al. 2024).
use crate::config::{JuryAggregate, SynthConfig};
use crate::game::{ranking, Judgement, MoveError, Players, Vote};
use crate::input::Item;
use crate::prompts::PromptPair;

/// Every member's judgement of `cands`, combined (a lone judge's judgement as it is).
/// The judge checks run once, before any member scores, and every member sees their findings.
pub async fn judge(p: &Players, cfg: &SynthConfig, item: &Item, prompts: &PromptPair, cands: &[String], round: u32) -> Result<Judgement, MoveError> {
    let (checks, check_calls) = crate::checks::run(&p.tools, cfg, item, cands).await;
    let mut j = if p.jury.is_empty() {
        p.judge(0, cfg, item, prompts, cands, &checks, round).await?
    } else {
        let all = futures::future::join_all((0..=p.jury.len()).map(|k| p.judge(k, cfg, item, prompts, cands, &checks, round))).await;
        let judgements = all.into_iter().collect::<Result<Vec<_>, _>>()?;
        let names = std::iter::once(&p.judge).chain(&p.jury).map(|m| m.name.clone());
        combine(cfg.jury_aggregate, names.zip(judgements).collect())
    };
    j.checks = checks;
    j.tool_calls.splice(0..0, check_calls);
    Ok(j)
}

/// The members' judgements as one: scores by `aggregate` (mean: the mean score; majority: the
/// members whose best-scored candidate it is, the mean score breaking ties), orders agreeing
/// when every member's did, rationales and tool calls of all.
pub fn combine(aggregate: JuryAggregate, members: Vec<(String, Judgement)>) -> Judgement {
    let n = members[0].1.scores.len();
    let k = members.len() as f64;
    let mean: Vec<f64> = (0..n).map(|i| members.iter().map(|(_, j)| j.scores[i]).sum::<f64>() / k).collect();
    let scores = match aggregate {
        JuryAggregate::Mean => mean,
        JuryAggregate::Majority => {
            let mut votes = vec![0.0; n];
            for (_, j) in &members {
                votes[ranking(&j.scores)[0]] += 1.0;
            }
            // A vote outweighs any mean score (scores are at most 10).
            votes.iter().zip(&mean).map(|(v, m)| v * 100.0 + m).collect()
        }
    };
    Judgement {
        scores,
        orders: members.iter().flat_map(|(_, j)| j.orders.clone()).collect(),
        rankings_agree: members.iter().all(|(_, j)| j.rankings_agree),
        rationale: members.iter().map(|(m, j)| format!("[{m}] {}", j.rationale)).collect::<Vec<_>>().join("\n\n"),
        tool_calls: members.iter().flat_map(|(_, j)| j.tool_calls.clone()).collect(),
        checks: Vec::new(),
        jury: members
            .into_iter()
            .map(|(model, j)| Vote { model, scores: j.scores, orders: j.orders, rankings_agree: j.rankings_agree, rationale: j.rationale })
            .collect(),
    }
}

/// The share of the jury that scores `chosen` above `rejected` (1 for a lone judge's pair).
pub fn agreement(j: &Judgement, chosen: usize, rejected: usize) -> f64 {
    if j.jury.is_empty() {
        return 1.0;
    }
    j.jury.iter().filter(|v| v.scores[chosen] > v.scores[rejected]).count() as f64 / j.jury.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(scores: &[f64]) -> Judgement {
        Judgement { scores: scores.to_vec(), orders: vec![scores.to_vec()], rankings_agree: true, rationale: "r".into(), tool_calls: vec![], checks: vec![], jury: vec![] }
    }

    #[test]
    fn mean_majority_and_agreement() {
        let members = || vec![("a".to_string(), j(&[9.0, 2.0, 5.0])), ("b".to_string(), j(&[3.0, 8.0, 4.0])), ("c".to_string(), j(&[7.0, 6.0, 1.0]))];
        let m = combine(JuryAggregate::Mean, members());
        assert_eq!(m.scores, vec![19.0 / 3.0, 16.0 / 3.0, 10.0 / 3.0]);
        assert_eq!(m.jury.len(), 3);
        assert!((agreement(&m, 0, 2) - 2.0 / 3.0).abs() < 1e-12, "b ranks 2 above 0");
        // Two first choices for candidate 0, one for 1; candidate 2 none.
        let v = combine(JuryAggregate::Majority, members());
        assert_eq!(ranking(&v.scores), vec![0, 1, 2]);
        assert!(v.scores[0] > 200.0 && v.scores[1] > 100.0 && v.scores[2] < 100.0);
        assert_eq!(agreement(&j(&[1.0, 2.0]), 1, 0), 1.0);
    }
}
