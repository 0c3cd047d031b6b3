//! `synth.toml`: every `arbor synth` flag is also a key here.
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where one role's model lives. No URL: the embedded model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleConfig {
    pub url: Option<url::Url>,
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// Per-request timeout, seconds (the client's default when unset).
    pub timeout_secs: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Pairing {
    /// The best candidate against the worst.
    #[default]
    BestWorst,
    /// Every pair whose judge scores differ by at least `margin`.
    Margin,
    /// The whole ranked list (listwise training).
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// `prompt`, `chosen`, `rejected` as message lists.
    #[default]
    Conversational,
    /// The same as plain strings.
    Standard,
}

/// How a jury's judgements combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum JuryAggregate {
    /// The mean of the members' scores.
    #[default]
    Mean,
    /// The candidate most members score best (the mean breaking ties).
    Majority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DedupMode {
    Off,
    Exact,
    #[default]
    Near,
}

impl DedupMode {
    /// The threshold `dedup::find` takes: none for exact-only.
    pub fn threshold(self, t: f64) -> Option<Option<f64>> {
        match self {
            Self::Off => None,
            Self::Exact => Some(None),
            Self::Near => Some(Some(t)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ToolUse {
    /// OpenAI tool calls.
    #[default]
    Native,
    /// `<tool_call>` blocks in text.
    Text,
    /// No tools: the judge scores directly.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RewardKind {
    /// A language model with prompts/synth/reward.j2 (JSON `{score, critique}`).
    #[default]
    Judge,
    /// An HTTP endpoint: POST `{prompt, chosen, rejected}` → `{score, critique?}`.
    Endpoint,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    pub target: RoleConfig,
    pub judge: RoleConfig,
    /// More judges beside `[judge]`, as a jury (`[[judges]]`): other endpoints, models or
    /// temperatures. Each scores every candidate set; `jury_aggregate` combines them.
    pub judges: Vec<RoleConfig>,
    pub jury_aggregate: JuryAggregate,
    /// The least share of the jury that must rank a pair's chosen answer above its rejected
    /// one for the pair to stand (0: any pair the combined scores make).
    pub jury_min_agreement: f64,
    pub reward: RoleConfig,
    pub optimizer: RoleConfig,
    pub reward_kind: RewardKind,
    /// Candidates sampled per round (C).
    pub candidates: u32,
    /// Rounds per item before it is gated out (T).
    pub rounds: u32,
    /// Reward score (1–10) at or above which a pair is accepted.
    pub threshold: f64,
    pub pairing: Pairing,
    /// Least judge-score difference for `pairing = "margin"`.
    pub margin: f64,
    /// Items in the engine at once.
    pub max_in_flight: usize,
    /// Accept every pair with distinct scores: no reward, no feedback.
    pub no_gate: bool,
    pub format: OutputFormat,
    /// Stop at the first malformed input row instead of dead-lettering it.
    pub strict: bool,
    /// The judge's tools (arbor-tools names) and how they travel.
    pub judge_tools: Vec<String>,
    pub tool_use: ToolUse,
    pub max_tool_rounds: usize,
    /// Checks arbor runs on every candidate before judging (`checks.rs`): "arithmetic" (every
    /// worked step recomputed), "answer" (the final answer against the item's reference),
    /// "tests" (the candidate's code run against the item's `tests` in the sandbox). The judge
    /// sees what they found; each failed check costs `check_penalty` points.
    pub judge_checks: Vec<String>,
    pub check_penalty: f64,
    /// Judge twice, in forward and reversed candidate order (position-bias check).
    pub both_orders: bool,
    /// Seed of every sampled call (mixed with the item id, round and role).
    pub seed: u64,
    /// Items per prompt-pool epoch: an item starts from the pool as it stood two epochs
    /// earlier, so the prompts each item sees do not depend on timing (exact resume). Items of
    /// epoch e wait for epoch e-2 to finish, so keep it at least `max_in_flight / 2`.
    pub pool_epoch: usize,
    /// Times an unreadable JSON answer (judge, reward, optimizer) is shown back to the model
    /// with the error before the item becomes a dead letter.
    pub json_repairs: u32,
    /// Remove repeated input prompts before the job (to `duplicates.jsonl`) and repeated
    /// candidates before judging: `exact` (after normalizing case, punctuation, spacing),
    /// `near` (also MinHash-estimated Jaccard of word 3-shingles ≥ `dedup_threshold`), `off`.
    pub dedup: DedupMode,
    pub dedup_threshold: f64,
    /// Prices per model name (as the roles name their models), per million input and output
    /// tokens: `[prices.gpt-4o-mini]` `input = 0.15` `output = 0.6`. Roles without one are
    /// counted but not priced.
    pub prices: std::collections::BTreeMap<String, crate::accounting::Price>,
    /// Seconds between snapshots of the output files while the job runs (0: only at the end),
    /// so a killed job leaves the pairs of its finished items.
    pub snapshot_secs: f64,
    /// Seconds an item may take from its start (0: no limit). Past it, the item's calls are
    /// dropped and it becomes a dead letter saying so, instead of holding the job open.
    pub item_deadline_secs: f64,
}

/// The check names `judge_checks` accepts (`checks.rs` runs them).
pub const CHECKS: [&str; 3] = ["arithmetic", "answer", "tests"];

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            target: RoleConfig {
                temperature: Some(0.9),
                max_tokens: Some(512),
                ..Default::default()
            },
            judge: RoleConfig {
                temperature: Some(0.0),
                max_tokens: Some(512),
                ..Default::default()
            },
            reward: RoleConfig {
                temperature: Some(0.0),
                // Upper bounds, sized so the schemas' texts fit at a token per character.
                max_tokens: Some(512),
                ..Default::default()
            },
            optimizer: RoleConfig {
                temperature: Some(0.7),
                max_tokens: Some(2560),
                ..Default::default()
            },
            reward_kind: RewardKind::Judge,
            candidates: 4,
            rounds: 3,
            threshold: 7.0,
            pairing: Pairing::BestWorst,
            margin: 1.0,
            max_in_flight: 64,
            no_gate: false,
            format: OutputFormat::Conversational,
            strict: false,
            judges: Vec::new(),
            jury_aggregate: JuryAggregate::Mean,
            jury_min_agreement: 0.0,
            judge_tools: vec!["calculator".into(), "verify_answer".into()],
            tool_use: ToolUse::Native,
            max_tool_rounds: 4,
            judge_checks: vec!["arithmetic".into(), "answer".into()],
            check_penalty: 10.0,
            both_orders: true,
            seed: 0,
            pool_epoch: 256,
            json_repairs: 2,
            dedup: DedupMode::Near,
            dedup_threshold: 0.8,
            prices: Default::default(),
            snapshot_secs: 30.0,
            item_deadline_secs: 0.0,
        }
    }
}

impl SynthConfig {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.candidates < 2 {
            return Err("candidates must be at least 2".into());
        }
        if self.rounds == 0 || self.max_in_flight == 0 || self.pool_epoch == 0 {
            return Err("rounds, max_in_flight and pool_epoch must be at least 1".into());
        }
        if let Some((m, _)) = self.prices.iter().find(|(_, p)| {
            !(p.input >= 0.0 && p.output >= 0.0 && p.input.is_finite() && p.output.is_finite())
        }) {
            return Err(format!("prices.{m}: input and output must be prices >= 0"));
        }
        if !(0.0..=1.0).contains(&self.jury_min_agreement) {
            return Err("jury_min_agreement must be a share of the jury in [0, 1]".into());
        }
        if !(self.dedup_threshold > 0.0 && self.dedup_threshold <= 1.0) {
            return Err("dedup_threshold must be a Jaccard similarity in (0, 1]".into());
        }
        if !(self.snapshot_secs.is_finite() && self.snapshot_secs >= 0.0) {
            return Err("snapshot_secs must be a number of seconds >= 0".into());
        }
        if !(self.item_deadline_secs.is_finite() && self.item_deadline_secs >= 0.0) {
            return Err("item_deadline_secs must be a number of seconds >= 0".into());
        }
        if !(self.threshold.is_finite() && self.margin.is_finite() && self.margin >= 0.0) {
            return Err("threshold and margin must be finite numbers (margin >= 0)".into());
        }
        if let Some(k) = self.judge_checks.iter().find(|k| !CHECKS.contains(&k.as_str())) {
            return Err(format!("judge_checks: unknown check `{k}` (known: {})", CHECKS.join(", ")));
        }
        if !(self.check_penalty.is_finite() && self.check_penalty >= 0.0) {
            return Err("check_penalty must be a number of points >= 0".into());
        }
        if self.reward_kind == RewardKind::Endpoint && self.reward.url.is_none() && !self.no_gate {
            return Err("reward_kind = \"endpoint\" needs reward.url".into());
        }
        Ok(())
    }

    /// Unset reward and optimizer roles follow the judge.
    pub fn with_role_defaults(mut self) -> Self {
        for r in [&mut self.reward, &mut self.optimizer] {
            if r.url.is_none() && r.model.is_none() {
                r.url = self.judge.url.clone();
                r.model = self.judge.model.clone();
            }
        }
        self
    }

    /// What must match for `--resume` to continue a job: everything that shapes the output.
    /// (Concurrency and strictness do not change the pairs, so they may differ on resume.)
    pub fn fingerprint(&self) -> String {
        let mut c = self.clone();
        c.max_in_flight = 0;
        c.strict = false;
        c.snapshot_secs = 0.0;
        c.prices.clear();
        for r in [&mut c.target, &mut c.judge, &mut c.reward, &mut c.optimizer] {
            r.timeout_secs = None;
        }
        arbor_core::content_hash(&("arbor.synth-config/1", c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_names_the_field() {
        let e = toml::from_str::<SynthConfig>("candidate = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("candidate"), "{e}");
        let c: SynthConfig = toml::from_str(
            "candidates = 3\n[target]\nmodel = \"m\"\nurl = \"http://127.0.0.1:1/v1\"",
        )
        .unwrap();
        assert_eq!(c.candidates, 3);
        assert_eq!(c.target.model.as_deref(), Some("m"));
        assert_eq!(c.rounds, 3);
    }
}
