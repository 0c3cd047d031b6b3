//! Prompt templates (prompts/synth/*.j2), prompt versions, and the pool of versions that earned
//! accepted pairs.
use std::collections::BTreeMap;
use std::sync::OnceLock;

use minijinja::Environment;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in [
            ("target", include_str!("../../../prompts/synth/target.j2")),
            ("judge", include_str!("../../../prompts/synth/judge.j2")),
            ("reward", include_str!("../../../prompts/synth/reward.j2")),
            ("repair", include_str!("../../../prompts/synth/repair.j2")),
            (
                "optimizer",
                include_str!("../../../prompts/synth/optimizer.j2"),
            ),
        ] {
            env.add_template(name, text)
                .expect("prompts/synth templates parse");
        }
        env
    })
}

/// Renders `prompts/synth/NAME.j2` with `ctx`.
pub fn render(name: &str, ctx: minijinja::Value) -> String {
    templates()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .expect("prompts/synth templates render")
}

#[derive(Deserialize)]
struct Defaults {
    target: String,
    judge: String,
}

/// One version of the target's or the judge's instructions; `id` is its content hash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PromptVersion {
    pub id: String,
    pub text: String,
}

impl PromptVersion {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            id: arbor_core::content_hash(&("arbor.prompt/1", &text))[..12].to_string(),
            text,
        }
    }
}

/// The target and judge prompts an item plays with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PromptPair {
    pub target: PromptVersion,
    pub judge: PromptVersion,
}

impl PromptPair {
    /// Version 0, from prompts/synth/defaults.toml.
    pub fn initial() -> Self {
        let d: Defaults = toml::from_str(include_str!("../../../prompts/synth/defaults.toml"))
            .expect("prompts/synth/defaults.toml parses");
        Self {
            target: PromptVersion::new(d.target),
            judge: PromptVersion::new(d.judge),
        }
    }
}

/// The pool's choice from the (prompt pair, accepted pairs) counts of the epochs an item may
/// read: the pair with the most accepted pairs; among equals the smallest pair; none at all:
/// version 0. One rule for the local run and the queue's workers, so both pick the same.
pub fn best_pair<'a>(counts: impl IntoIterator<Item = (&'a PromptPair, usize)>) -> PromptPair {
    let mut total: BTreeMap<&PromptPair, usize> = BTreeMap::new();
    for (p, n) in counts {
        *total.entry(p).or_default() += n;
    }
    // `rev` before max_by_key: max_by_key keeps the last of equals, so the smallest pair wins.
    total
        .into_iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(p, _)| p.clone())
        .unwrap_or_else(PromptPair::initial)
}

/// The last epoch an item of epoch `e` reads the pool from (none for epochs 0 and 1).
pub fn lagged_epoch(e: usize) -> Option<usize> {
    e.checked_sub(2)
}

/// Prompt pairs that earned accepted pairs, reused by later items. For exact resume the choice
/// must not depend on timing, so the pool is read with a lag: an item of epoch e (index /
/// epoch size) starts from the pairs earned by epochs 0..=e-2, once those epochs are complete,
/// and takes the pair with the most accepted pairs (ties: smallest ids).
pub struct PromptPool {
    epoch: usize,
    state: Mutex<PoolState>,
    changed: watch::Sender<u64>,
}

struct PoolState {
    /// Items of each epoch not yet finished.
    remaining: Vec<usize>,
    /// Accepted-pair counts by prompt pair, per epoch.
    wins: Vec<BTreeMap<PromptPair, usize>>,
}

impl PromptPool {
    pub fn new(total_items: usize, epoch: usize) -> Self {
        let epochs = total_items.div_ceil(epoch).max(1);
        let mut remaining = vec![epoch; epochs];
        if let Some(last) = remaining.last_mut() {
            *last = total_items - epoch * (epochs - 1);
        }
        Self {
            epoch,
            state: Mutex::new(PoolState {
                remaining,
                wins: vec![BTreeMap::new(); epochs],
            }),
            changed: watch::channel(0).0,
        }
    }

    fn ready(&self, e: usize) -> Option<PromptPair> {
        let st = self.state.lock();
        if st.remaining[..=e].iter().any(|&r| r > 0) {
            return None;
        }
        Some(best_pair(st.wins[..=e].iter().flatten().map(|(p, n)| (p, *n))))
    }

    /// The prompts item `index` starts from (waits for its epoch's lagged snapshot).
    pub async fn start(&self, index: usize) -> PromptPair {
        let Some(last) = lagged_epoch(index / self.epoch) else {
            return PromptPair::initial();
        };
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(p) = self.ready(last) {
                return p;
            }
            if rx.changed().await.is_err() {
                return PromptPair::initial();
            }
        }
    }

    /// Item `index` is finished; `wins` are the prompt pairs of its accepted pairs.
    pub fn finish(&self, index: usize, wins: &[PromptPair]) {
        let e = index / self.epoch;
        {
            let mut st = self.state.lock();
            if let Some(r) = st.remaining.get_mut(e) {
                *r = r.saturating_sub(1);
            }
            if let Some(w) = st.wins.get_mut(e) {
                for p in wins {
                    *w.entry(p.clone()).or_default() += 1;
                }
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lagged_epochs_pick_the_most_successful_prompts() {
        let pool = PromptPool::new(6, 2);
        let better = PromptPair {
            target: PromptVersion::new("t1"),
            judge: PromptVersion::new("j1"),
        };
        assert_eq!(
            pool.start(3).await,
            PromptPair::initial(),
            "epoch 1 reads no pool"
        );
        pool.finish(0, &[better.clone()]);
        // Epoch 2 waits until epoch 0 is complete.
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), pool.start(4)).await;
        assert!(waiting.is_err());
        pool.finish(1, &[PromptPair::initial()]);
        pool.finish(2, &[better.clone(), better.clone()]); // epoch 1: not visible to epoch 2
        assert_eq!(
            pool.start(4).await.target.id,
            std::cmp::min(&better, &PromptPair::initial()).target.id,
            "a tie goes to the smaller pair"
        );
    }
}
