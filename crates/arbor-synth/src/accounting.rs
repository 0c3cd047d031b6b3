//! What each role of a job asked of its model and what that cost: requests, failures, cache
//! hits, retries, tokens, call time (counted at the role's own `MeteredModel`), priced from
//! `[prices]` in synth.toml per million input and output tokens of the role's model.
use std::fmt::Write as _;
use std::sync::Arc;

use arbor_llm::{MeteredModel, RoleUsage};
use serde::{Deserialize, Serialize};

/// A model's price, in the user's currency per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

/// One role's account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleAccount {
    pub role: &'static str,
    pub model: String,
    pub usage: RoleUsage,
    /// None when `[prices]` has no entry for the model.
    pub cost: Option<f64>,
}

/// The meters of a job's roles, read at any moment.
#[derive(Clone, Default)]
pub struct Meters(pub Vec<(&'static str, String, Arc<MeteredModel>)>);

impl Meters {
    pub fn accounts(&self, prices: &std::collections::BTreeMap<String, Price>) -> Vec<RoleAccount> {
        self.0
            .iter()
            .map(|(role, model, m)| priced(role, model.clone(), m.usage(), prices))
            .collect()
    }
}

/// A role's account from its usage, priced from `[prices]` when the model has an entry.
pub fn priced(
    role: &'static str,
    model: String,
    usage: RoleUsage,
    prices: &std::collections::BTreeMap<String, Price>,
) -> RoleAccount {
    let cost = prices
        .get(&model)
        .map(|p| (usage.prompt_tokens as f64 * p.input + usage.completion_tokens as f64 * p.output) / 1e6);
    RoleAccount { role, model, usage, cost }
}

/// The roles a job meters, in the order accounts are listed.
pub const ROLES: [&str; 5] = ["target", "judge", "jury", "reward", "optimizer"];

/// A role's line for the terminal.
pub fn line(a: &RoleAccount) -> String {
    let u = &a.usage;
    format!(
        "{} ({}): {} requests ({} failed, {} cached, {} retries), tokens {} prompt + {} completion, {:.1} call-s{}",
        a.role, a.model, u.requests, u.failed, u.cache_hits, u.retries, u.prompt_tokens, u.completion_tokens, u.call_seconds,
        a.cost.map_or(String::new(), |c| format!(", cost {c:.4}"))
    )
}

/// The card's table, with the total cost when every role is priced.
pub fn table(accounts: &[RoleAccount]) -> String {
    let mut s = String::from("| role | model | requests | failed | cached | retries | prompt tokens | completion tokens | call-seconds | cost |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for a in accounts {
        let u = &a.usage;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            a.role, a.model, u.requests, u.failed, u.cache_hits, u.retries, u.prompt_tokens, u.completion_tokens, u.call_seconds,
            a.cost.map_or("-".into(), |c| format!("{c:.4}"))
        );
    }
    if !accounts.is_empty() && accounts.iter().all(|a| a.cost.is_some()) {
        let total: f64 = accounts.iter().filter_map(|a| a.cost).sum();
        let _ = writeln!(s, "\nTotal cost: {total:.4} (prices per million tokens from synth.toml `[prices]`).");
    }
    s
}
