//! `arbor synth --dry-run`: what a config costs before anything runs — the model calls each
//! item makes per role and the tokens they carry, from the prompts rendered for the actual
//! input. Two bounds: every item accepted in its first round, and every item using all its
//! rounds with every tool round and JSON repair spent.
use std::fmt;

use minijinja::context;

use crate::config::{Pairing, RewardKind, RoleConfig, SynthConfig, ToolUse};
use crate::input::Item;
use crate::prompts::{render, PromptPair};

/// Completion tokens assumed for a role without `max_tokens` (the client's estimate too).
const UNSET_MAX_TOKENS: u32 = 256;

/// One role's share, per item on average.
#[derive(Debug, Clone, PartialEq)]
pub struct RolePlan {
    pub role: &'static str,
    /// Calls when the first round is accepted, and at most.
    pub calls_first: f64,
    pub calls_most: f64,
    /// Prompt tokens of one call (≈ characters / 4) and completion tokens at most per call.
    pub prompt_tokens: f64,
    pub completion_tokens: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub items: usize,
    pub rounds: u32,
    pub candidates: u32,
    pub roles: Vec<RolePlan>,
}

fn max_tokens(r: &RoleConfig) -> f64 {
    f64::from(r.max_tokens.unwrap_or(UNSET_MAX_TOKENS))
}

fn tokens(text: &str) -> f64 {
    (text.len() as f64 / 4.0).ceil()
}

/// The calls and tokens of a job of `items` under `cfg` (its role defaults applied).
pub fn plan(cfg: &SynthConfig, items: &[Item]) -> Plan {
    let prompts = PromptPair::initial();
    let n = items.len().max(1) as f64;
    let c = cfg.candidates as usize;
    // A candidate as long as the target may write: the judge and reward see it in full.
    let candidate = "x".repeat(4 * max_tokens(&cfg.target) as usize);
    let shown: Vec<&String> = std::iter::repeat_n(&candidate, c).collect();
    let tools: Vec<String> = if cfg.tool_use == ToolUse::None { Vec::new() } else { cfg.judge_tools.clone() };
    let mean = |f: &dyn Fn(&Item) -> String| items.iter().map(|i| tokens(&f(i))).sum::<f64>() / n;
    let target_prompt = mean(&|i| {
        let system = render("target", context! { instructions => prompts.target.text });
        i.messages.iter().fold(system, |s, m| s + &m.content)
    });
    // The checks' findings: one line per candidate, about as long as two wrong steps make it.
    let finding = "12 worked steps recomputed, 2 wrong: 1234 * 56 = 69104 (is 69104); final answer 1234 does not match the reference";
    let checks: Vec<&str> = if cfg.judge_checks.is_empty() { Vec::new() } else { vec![finding; c] };
    let judge_prompt = mean(&|i| {
        render("judge", context! { instructions => prompts.judge.text, prompt => i.prompt_text(), reference => i.reference, candidates => shown, checks => checks, tools => tools })
    });
    let reward_prompt = mean(&|i| {
        render("reward", context! { prompt => i.prompt_text(), reference => i.reference, chosen => candidate, rejected => candidate })
    });
    let rounds = f64::from(cfg.rounds.max(1));
    let repairs = 1.0 + f64::from(cfg.json_repairs);
    // Every member of a jury judges each candidate set.
    let orders = if cfg.both_orders { 2.0 } else { 1.0 } * (1 + cfg.judges.len()) as f64;
    let tool_rounds = if tools.is_empty() { 0.0 } else { cfg.max_tool_rounds as f64 };
    let pairs = match cfg.pairing {
        Pairing::BestWorst | Pairing::List => 1.0,
        Pairing::Margin => (c * c.saturating_sub(1) / 2) as f64,
    };
    let gate = !cfg.no_gate;
    let mut roles = vec![
        RolePlan {
            role: "target",
            calls_first: 1.0,
            calls_most: rounds,
            prompt_tokens: target_prompt,
            completion_tokens: f64::from(cfg.candidates) * max_tokens(&cfg.target),
        },
        RolePlan {
            role: "judge",
            calls_first: orders,
            calls_most: rounds * orders * (1.0 + tool_rounds) * repairs,
            prompt_tokens: judge_prompt,
            completion_tokens: max_tokens(&cfg.judge),
        },
    ];
    if gate {
        roles.push(RolePlan {
            role: "reward",
            calls_first: 1.0,
            calls_most: rounds * pairs * if cfg.reward_kind == RewardKind::Endpoint { 1.0 } else { repairs },
            prompt_tokens: reward_prompt,
            completion_tokens: max_tokens(&cfg.reward),
        });
        roles.push(RolePlan {
            role: "optimizer",
            calls_first: 0.0,
            calls_most: (rounds - 1.0) * repairs,
            // It sees both prompts, the pair and the verdicts: about a judge call's worth.
            prompt_tokens: judge_prompt,
            completion_tokens: max_tokens(&cfg.optimizer),
        });
    }
    Plan { items: items.len(), rounds: cfg.rounds, candidates: cfg.candidates, roles }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} items, up to {} rounds each; per item (tokens ≈ characters / 4, candidates at their max_tokens):", self.items, self.rounds)?;
        writeln!(f, "{:>10} {:>14} {:>12} {:>15} {:>18}", "role", "calls (first)", "calls (most)", "prompt tok/call", "completion tok/call")?;
        let (mut first, mut most) = ((0.0, 0.0), (0.0, 0.0));
        for r in &self.roles {
            writeln!(f, "{:>10} {:>14} {:>12} {:>15.0} {:>18.0}", r.role, r.calls_first, r.calls_most, r.prompt_tokens, r.completion_tokens)?;
            first.0 += r.calls_first;
            first.1 += r.calls_first * (r.prompt_tokens + r.completion_tokens);
            most.0 += r.calls_most;
            most.1 += r.calls_most * (r.prompt_tokens + r.completion_tokens);
        }
        let n = self.items as f64;
        writeln!(f, "job: {:.0} calls and ≤ {:.2}M tokens if every item is accepted in its first round; at most {:.0} calls and {:.2}M tokens", first.0 * n, first.1 * n / 1e6, most.0 * n, most.1 * n / 1e6)?;
        write!(f, "(a server that ignores `n` turns each target call into {} calls)", self.candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(text: &str) -> Item {
        Item { index: 0, id: "a".into(), messages: vec![arbor_core::Message::user(text)], reference: None, metadata: Default::default() }
    }

    /// The counts follow the config: both orders double the judge, tools and repairs raise
    /// only the upper bound, no gate drops reward and optimizer, margin pairing asks the reward
    /// once per pair. Caught by a plan that ignores any of those keys.
    #[test]
    fn calls_follow_the_config() {
        let items = [item("What is 2 + 2?"), item(&"long ".repeat(400))];
        let mut cfg = SynthConfig { candidates: 4, rounds: 3, ..Default::default() };
        cfg.target.max_tokens = Some(100);
        cfg.tool_use = ToolUse::None;
        let p = plan(&cfg, &items);
        let get = |p: &Plan, r: &str| p.roles.iter().find(|x| x.role == r).cloned();
        let judge = get(&p, "judge").unwrap();
        assert_eq!(judge.calls_first, if cfg.both_orders { 2.0 } else { 1.0 });
        assert_eq!(judge.calls_most, 3.0 * judge.calls_first * f64::from(1 + cfg.json_repairs));
        // The judge sees 4 candidates of up to 100 tokens, and the mean item prompt.
        assert!(judge.prompt_tokens > 400.0 + 250.0, "{judge:?}");
        assert_eq!(get(&p, "target").unwrap().completion_tokens, 400.0);
        assert_eq!(get(&p, "optimizer").unwrap().calls_most, 2.0 * f64::from(1 + cfg.json_repairs));
        cfg.pairing = Pairing::Margin;
        assert_eq!(get(&plan(&cfg, &items), "reward").unwrap().calls_first, 1.0);
        assert_eq!(get(&plan(&cfg, &items), "reward").unwrap().calls_most, 3.0 * 6.0 * f64::from(1 + cfg.json_repairs));
        cfg.tool_use = ToolUse::Native;
        cfg.max_tool_rounds = 2;
        assert_eq!(get(&plan(&cfg, &items), "judge").unwrap().calls_most, 3.0 * judge.calls_first * 3.0 * f64::from(1 + cfg.json_repairs));
        cfg.no_gate = true;
        let p = plan(&cfg, &items);
        assert!(get(&p, "reward").is_none() && get(&p, "optimizer").is_none());
        assert!(p.to_string().contains("2 items, up to 3 rounds"), "{p}");
    }
}
