//! The moves of the Anyprefer game for one item: the target samples candidates, the judge scores
//! them with tools (in two orders against position bias), pairs are formed, the reward gate
//! scores them, and on rejection the optimizer rewrites both prompts. The engine's actors call
//! these; they hold no state between calls.
use std::sync::Arc;

use arbor_core::{content_hash, Message};
use arbor_llm::{FinishReason, LanguageModel, LlmRequest, Prompt, SamplingParams};
use arbor_tools::agent::{run_with_tools, ToolMode};
use arbor_tools::tool::{ToolOutcome, ToolRegistry};

use crate::checks::CandidateChecks;
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{Pairing, RewardKind, RoleConfig, SynthConfig, ToolUse};
use crate::input::Item;
use crate::prompts::{render, PromptPair, PromptVersion};

/// A model and the name requests use for it.
#[derive(Clone)]
pub struct RoleModel {
    pub model: Arc<dyn LanguageModel>,
    pub name: String,
    pub config: RoleConfig,
}

impl RoleModel {
    fn params(&self, n: u32, seed: u64) -> SamplingParams {
        SamplingParams {
            n,
            temperature: self.config.temperature,
            max_tokens: self.config.max_tokens,
            seed: Some(seed),
            ..Default::default()
        }
    }

    /// Asks the role for one JSON object and reads it with `read`: `req` (built by
    /// [`Self::json_request`], which constrains the answer to the schema where the server can)
    /// goes out, through the tool loop when `tools` is given. An answer that holds no JSON
    /// object, or one `read` rejects, is shown back to the model with the error
    /// (prompts/synth/repair.j2) up to `repairs` times before the move fails: a constrained
    /// sampler can still be cut at `max_tokens`, and an unconstrained one can break the schema.
    async fn ask_json<T>(
        &self,
        role: &'static str,
        mut req: LlmRequest,
        tools: Option<(&ToolRegistry, ToolMode, usize)>,
        repairs: u32,
        read: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<(T, Vec<ToolOutcome>), MoveError> {
        let mut all_calls = Vec::new();
        for attempt in 0..=repairs {
            let (text, calls, cut) = match tools {
                None => {
                    let c = self.model.generate(&req).await.map_err(model_err(role))?;
                    let cut = c
                        .choices
                        .first()
                        .is_some_and(|ch| ch.finish_reason == FinishReason::Length);
                    (c.text().to_string(), Vec::new(), cut)
                }
                Some((registry, mode, rounds)) => {
                    let run = run_with_tools(&self.model, &req, registry, mode, rounds)
                        .await
                        .map_err(model_err(role))?;
                    (run.text, run.calls, run.cut)
                }
            };
            all_calls.extend(calls);
            let read = first_json_object(&text)
                .ok_or_else(|| format!("no JSON object in {:?}", clip(&text)))
                .and_then(|v| read(&v));
            let error = match read {
                Ok(v) => return Ok((v, all_calls)),
                Err(e) if cut => format!("{e} (the answer was cut at the token limit)"),
                Err(e) => e,
            };
            let Prompt::Chat(messages) = &mut req.prompt else {
                return Err(MoveError::Parse { role, msg: error });
            };
            if attempt == repairs {
                let msg = if repairs == 0 {
                    error
                } else {
                    format!("{error}; still unreadable after {repairs} repairs")
                };
                return Err(MoveError::Parse { role, msg });
            }
            messages.push(Message::assistant(clip_to(&text, 400)));
            messages.push(Message::user(render(
                "repair",
                context! { error => error, cut => cut },
            )));
            // A fresh draw: the same seed tends to repeat the same mistake.
            req.params.seed = req.params.seed.map(|s| s.wrapping_add(u64::from(attempt) + 1));
        }
        unreachable!("the last attempt returns")
    }

    /// A chat request of one user message under `schema`.
    fn json_request(&self, user: String, seed: u64, schema: &Value) -> LlmRequest {
        let mut params = self.params(1, seed);
        params.json_schema = Some(schema.clone());
        LlmRequest::chat(&self.name, vec![Message::user(user)]).with_params(params)
    }
}

pub struct Players {
    pub target: RoleModel,
    pub judge: RoleModel,
    /// Jury members beside `judge` (`[[judges]]`); empty: one judge.
    pub jury: Vec<RoleModel>,
    pub reward: RoleModel,
    pub optimizer: RoleModel,
    pub tools: ToolRegistry,
}

/// Why a move failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MoveError {
    #[error("{role}: model call failed: {msg}")]
    Model { role: &'static str, msg: String },
    #[error("{role}: unreadable answer: {msg}")]
    Parse { role: &'static str, msg: String },
}

fn model_err(role: &'static str) -> impl Fn(arbor_llm::LlmError) -> MoveError {
    move |e| MoveError::Model {
        role,
        msg: e.to_string(),
    }
}

/// A seed for one call: the job seed mixed with the item, round and role, so reruns and resumes
/// send identical requests (and hit the response cache).
pub fn seed(cfg: &SynthConfig, item: &Item, round: u32, role: &str) -> u64 {
    let h = content_hash(&(cfg.seed, &item.id, round, role));
    u64::from_str_radix(&h[..16], 16).unwrap_or(0) >> 1
}

/// The judge's verdict on the candidates (scores in the candidates' own order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub scores: Vec<f64>,
    /// Scores from the forward and the reversed presentation.
    pub orders: Vec<Vec<f64>>,
    /// Both presentations rank the candidates the same way.
    pub rankings_agree: bool,
    pub rationale: String,
    pub tool_calls: Vec<ToolOutcome>,
    /// What `judge_checks` found in each candidate (the scores above already carry their cost).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::checks::CandidateChecks>,
    /// With a jury: each member's own judgement (the fields above then combine them).
    #[serde(default)]
    pub jury: Vec<Vote>,
}

/// One jury member's judgement, as provenance shows it (`jury.rs` combines them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub model: String,
    pub scores: Vec<f64>,
    pub orders: Vec<Vec<f64>>,
    pub rankings_agree: bool,
    pub rationale: String,
}

/// The reward gate's verdict on a pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardVerdict {
    pub score: f64,
    pub critique: String,
}

/// The first JSON object in `text` (models wrap JSON in prose or code fences).
pub fn first_json_object(text: &str) -> Option<Value> {
    let mut start = text.find('{');
    while let Some(s) = start {
        let mut de = serde_json::Deserializer::from_str(&text[s..]).into_iter::<Value>();
        if let Some(Ok(v @ Value::Object(_))) = de.next() {
            return Some(v);
        }
        start = text[s + 1..].find('{').map(|i| s + 1 + i);
    }
    None
}

/// A number, or a string holding one (small models quote their numbers).
fn number(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|x| x.trim().parse().ok()))
}

fn text_field(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// `scores` (exactly `n` numbers) and `rationale` of a judge's answer.
fn scores_of(v: &Value, n: usize) -> Result<(Vec<f64>, String), String> {
    let shown = || clip(&v.to_string());
    let scores: Vec<f64> = v
        .get("scores")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("no `scores` list in {:?}", shown()))?
        .iter()
        .map(number)
        .collect::<Option<_>>()
        .ok_or_else(|| format!("`scores` holds a non-number in {:?}", shown()))?;
    if scores.len() != n {
        return Err(format!("{} scores for {n} candidates", scores.len()));
    }
    Ok((scores, text_field(v, "rationale")))
}

fn clip(s: &str) -> String {
    clip_to(s, 160)
}

fn clip_to(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// Candidate indices ranked best first (ties: lower index first).
pub fn ranking(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx
}

/// (chosen, rejected) candidate indices by the configured pairing; empty when the scores do not
/// separate any candidates. For `List`, one entry: the best against the worst (the list itself
/// is the ranking).
pub fn pairs(scores: &[f64], pairing: Pairing, margin: f64) -> Vec<(usize, usize)> {
    let r = ranking(scores);
    let (best, worst) = (r[0], r[r.len() - 1]);
    if scores[best] <= scores[worst] {
        return Vec::new();
    }
    match pairing {
        Pairing::BestWorst | Pairing::List => vec![(best, worst)],
        Pairing::Margin => {
            let mut out = Vec::new();
            for (i, &a) in r.iter().enumerate() {
                for &b in &r[i + 1..] {
                    if scores[a] - scores[b] >= margin.max(f64::MIN_POSITIVE) {
                        out.push((a, b));
                    }
                }
            }
            out
        }
    }
}

impl Players {
    /// The target's C candidates.
    pub async fn sample(
        &self,
        cfg: &SynthConfig,
        item: &Item,
        prompts: &PromptPair,
        round: u32,
    ) -> Result<Vec<String>, MoveError> {
        let mut messages = vec![Message::system(render(
            "target",
            context! { instructions => prompts.target.text },
        ))];
        messages.extend(item.messages.iter().cloned());
        let req = LlmRequest::chat(&self.target.name, messages).with_params(
            self.target
                .params(cfg.candidates, seed(cfg, item, round, "target")),
        );
        let c = self
            .target
            .model
            .generate(&req)
            .await
            .map_err(model_err("target"))?;
        let texts: Vec<String> = c.choices.into_iter().map(|c| c.text).collect();
        if texts.len() != cfg.candidates as usize {
            return Err(MoveError::Parse {
                role: "target",
                msg: format!("{} candidates for n = {}", texts.len(), cfg.candidates),
            });
        }
        Ok(texts)
    }

    #[allow(clippy::too_many_arguments)]
    async fn judge_once(
        &self,
        member: &RoleModel,
        cfg: &SynthConfig,
        item: &Item,
        judge: &PromptVersion,
        shown: &[&String],
        checks: &[&CandidateChecks],
        round: u32,
        order: &str,
    ) -> Result<(Vec<f64>, String, Vec<ToolOutcome>), MoveError> {
        let tools: Vec<String> = if cfg.tool_use == ToolUse::None {
            Vec::new()
        } else {
            cfg.judge_tools.clone()
        };
        let user = render(
            "judge",
            context! { instructions => judge.text, prompt => item.prompt_text(), reference => item.reference, candidates => shown, checks => checks.iter().map(|c| c.summary.as_str()).collect::<Vec<_>>(), tools => tools },
        );
        let schema = crate::schemas::judge(shown.len(), member.config.max_tokens);
        let req = member.json_request(user, seed(cfg, item, round, order), &schema);
        let mode = if cfg.tool_use == ToolUse::Text {
            ToolMode::Text
        } else {
            ToolMode::Native
        };
        let with_tools = (!tools.is_empty()).then_some((&self.tools, mode, cfg.max_tool_rounds));
        let ((mut scores, rationale), calls) = member
            .ask_json("judge", req, with_tools, cfg.json_repairs, |v| {
                scores_of(v, shown.len())
            })
            .await?;
        crate::checks::penalize(&mut scores, checks, cfg.check_penalty);
        Ok((scores, rationale, calls))
    }

    /// Scores the candidates with jury member `k` (0: `[judge]`); with `both_orders`, once
    /// forward and once reversed (at the same time) and averaged. `checks`: what the judge
    /// checks found in each candidate (empty: none ran).
    #[allow(clippy::too_many_arguments)]
    pub async fn judge(
        &self,
        k: usize,
        cfg: &SynthConfig,
        item: &Item,
        prompts: &PromptPair,
        cands: &[String],
        checks: &[CandidateChecks],
        round: u32,
    ) -> Result<Judgement, MoveError> {
        let member = if k == 0 { &self.judge } else { &self.jury[k - 1] };
        // Member 0 keeps the single judge's seeds, so adding a jury leaves its calls cached.
        let (fwd, rev) = if k == 0 { ("judge".to_string(), "judge-reversed".to_string()) } else { (format!("judge#{k}"), format!("judge-reversed#{k}")) };
        let forward: Vec<&String> = cands.iter().collect();
        let checks_fwd: Vec<&CandidateChecks> = checks.iter().collect();
        if !cfg.both_orders {
            let (scores, rationale, calls) = self
                .judge_once(member, cfg, item, &prompts.judge, &forward, &checks_fwd, round, &fwd)
                .await?;
            return Ok(Judgement {
                orders: vec![scores.clone()],
                scores,
                rankings_agree: true,
                rationale,
                tool_calls: calls,
                checks: Vec::new(),
                jury: Vec::new(),
            });
        }
        let reversed: Vec<&String> = cands.iter().rev().collect();
        let checks_rev: Vec<&CandidateChecks> = checks.iter().rev().collect();
        let (a, b) = tokio::join!(
            self.judge_once(member, cfg, item, &prompts.judge, &forward, &checks_fwd, round, &fwd),
            self.judge_once(member, cfg, item, &prompts.judge, &reversed, &checks_rev, round, &rev)
        );
        let (sa, ra, ca) = a?;
        let (mut sb, rb, cb) = b?;
        sb.reverse();
        let scores: Vec<f64> = sa.iter().zip(&sb).map(|(x, y)| (x + y) / 2.0).collect();
        let agree = ranking(&sa) == ranking(&sb);
        let rationale = if rb.is_empty() || rb == ra {
            ra
        } else {
            format!("{ra}\n\n[reversed order] {rb}")
        };
        Ok(Judgement {
            scores,
            orders: vec![sa, sb],
            rankings_agree: agree,
            rationale,
            tool_calls: ca.into_iter().chain(cb).collect(),
            checks: Vec::new(),
            jury: Vec::new(),
        })
    }

    /// The reward gate: how good the pair is as training data. A judge-kind reward answers
    /// prompts/synth/reward.j2; an endpoint-kind reward gets the pair as a JSON body.
    pub async fn reward(
        &self,
        cfg: &SynthConfig,
        item: &Item,
        chosen: &str,
        rejected: &str,
        round: u32,
    ) -> Result<RewardVerdict, MoveError> {
        let r = &self.reward;
        let schema = crate::schemas::reward(r.config.max_tokens);
        let read = |v: &Value| {
            let score = v
                .get("score")
                .and_then(number)
                .ok_or_else(|| format!("no numeric `score` in {v}"))?;
            Ok(RewardVerdict {
                score,
                critique: text_field(v, "critique"),
            })
        };
        let req = if cfg.reward_kind == RewardKind::Endpoint {
            let body = json!({"prompt": item.prompt_text(), "chosen": chosen, "rejected": rejected, "reference": item.reference});
            LlmRequest::text(&r.name, body.to_string())
        } else {
            let user = render(
                "reward",
                context! { prompt => item.prompt_text(), reference => item.reference, chosen => chosen, rejected => rejected },
            );
            r.json_request(user, seed(cfg, item, round, "reward"), &schema)
        };
        Ok(r.ask_json("reward", req, None, cfg.json_repairs, read).await?.0)
    }

    /// Rewrites both prompts from a failed pair (textual feedback).
    #[allow(clippy::too_many_arguments)]
    pub async fn optimize(
        &self,
        cfg: &SynthConfig,
        item: &Item,
        prompts: &PromptPair,
        chosen: &str,
        rejected: &str,
        judgement: &Judgement,
        verdict: &RewardVerdict,
        round: u32,
    ) -> Result<PromptPair, MoveError> {
        let user = render(
            "optimizer",
            context! { target_prompt => prompts.target.text, judge_prompt => prompts.judge.text, task => item.prompt_text(),
            chosen => chosen, rejected => rejected, rationale => judgement.rationale,
            reward_score => verdict.score, critique => verdict.critique },
        );
        let o = &self.optimizer;
        let schema = crate::schemas::optimizer(o.config.max_tokens);
        let req = o.json_request(user, seed(cfg, item, round, "optimizer"), &schema);
        let (v, _) = o
            .ask_json("optimizer", req, None, cfg.json_repairs, |v| Ok(v.clone()))
            .await?;
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        // A prompt the optimizer left out or emptied stays as it was.
        Ok(PromptPair {
            target: field("target_prompt")
                .map(PromptVersion::new)
                .unwrap_or_else(|| prompts.target.clone()),
            judge: field("judge_prompt")
                .map(PromptVersion::new)
                .unwrap_or_else(|| prompts.judge.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A judge's answer as `ask_json` and `judge_once` read it.
    fn parse_scores(text: &str, n: usize) -> Result<(Vec<f64>, String), String> {
        let v = first_json_object(text).ok_or("no JSON object")?;
        scores_of(&v, n)
    }

    #[test]
    fn scores_parse_from_prose_and_pairs_follow_the_ranking() {
        let (s, r) = parse_scores(
            "Sure! ```json\n{\"scores\": [3, \"9\", 5], \"rationale\": \"b is right\"}\n```",
            3,
        )
        .unwrap();
        assert_eq!((s.clone(), r.as_str()), (vec![3.0, 9.0, 5.0], "b is right"));
        assert!(parse_scores("{\"scores\": [1]}", 2)
            .unwrap_err()
            .contains("1 scores for 2"));
        assert!(parse_scores("the answer is seven", 2).is_err());
        assert_eq!(pairs(&s, Pairing::BestWorst, 1.0), vec![(1, 0)]);
        assert_eq!(
            pairs(&s, Pairing::Margin, 2.0),
            vec![(1, 2), (1, 0), (2, 0)]
        );
        assert_eq!(pairs(&s, Pairing::Margin, 5.0), vec![(1, 0)]);
        assert!(pairs(&[4.0, 4.0], Pairing::BestWorst, 0.0).is_empty());
        assert_eq!(ranking(&[2.0, 5.0, 5.0]), vec![1, 2, 0]);
    }
}
