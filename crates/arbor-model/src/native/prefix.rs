//! Prefix caching: the keys and values of sequences read before, kept so that a new prompt
//! starting the same way (the expansions of one search tree, a shared system prompt, the next
//! turn of a conversation) copies them instead of recomputing them. A position's keys and values
//! depend only on the tokens up to it, so a stored sequence serves any prompt that shares its
//! first tokens, cut to the shared length.
use super::forward::SeqCache;

/// Default budget, in stored positions (SmolLM2-135M: 46 KB each, so about 94 MB).
pub const DEFAULT_BUDGET: usize = 2048;

/// The budget a new model starts with: `ARBOR_PREFIX_CACHE` (positions; 0 turns the cache off)
/// or the default.
pub fn budget_from_env() -> usize {
    std::env::var("ARBOR_PREFIX_CACHE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_BUDGET)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PrefixStats {
    /// Prompts that started from a stored prefix.
    pub hits: u64,
    pub lookups: u64,
    /// Positions copied instead of computed.
    pub reused: u64,
}

pub struct PrefixStore {
    /// (tokens, their cache, last use).
    entries: Vec<(Vec<u32>, SeqCache, u64)>,
    positions: usize,
    budget: usize,
    clock: u64,
    pub stats: PrefixStats,
}

impl PrefixStore {
    pub fn new(budget: usize) -> Self {
        Self {
            entries: Vec::new(),
            positions: 0,
            budget,
            clock: 0,
            stats: PrefixStats::default(),
        }
    }

    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
        self.evict();
    }

    /// A cache holding the longest stored prefix of `prompt`, leaving at least its last token
    /// to be read (which gives the logits of what follows); `None` when nothing is shared.
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<SeqCache> {
        self.stats.lookups += 1;
        let limit = prompt.len().saturating_sub(1);
        let (i, shared) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (tokens, ..))| (i, common_prefix(tokens, prompt).min(limit)))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))?;
        if shared == 0 {
            return None;
        }
        self.clock += 1;
        let entry = &mut self.entries[i];
        entry.2 = self.clock;
        self.stats.hits += 1;
        self.stats.reused += shared as u64;
        Some(entry.1.prefix(shared))
    }

    /// Keeps `cache`, which holds `tokens`, for later prompts.
    pub fn insert(&mut self, tokens: &[u32], cache: SeqCache) {
        debug_assert_eq!(cache.len, tokens.len());
        if tokens.is_empty() || tokens.len() > self.budget {
            return;
        }
        // Already covered by a longer entry: nothing to add.
        if self.entries.iter().any(|(t, ..)| t.starts_with(tokens)) {
            return;
        }
        // Entries this one extends are superseded.
        let before = self.entries.len();
        self.entries.retain(|(t, ..)| !tokens.starts_with(t));
        if self.entries.len() != before {
            self.positions = self.entries.iter().map(|(t, ..)| t.len()).sum();
        }
        self.clock += 1;
        self.positions += tokens.len();
        self.entries.push((tokens.to_vec(), cache, self.clock));
        self.evict();
    }

    /// Drops the least recently used entries until the store is within its budget.
    fn evict(&mut self) {
        while self.positions > self.budget {
            let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].2) else {
                break;
            };
            let (tokens, ..) = self.entries.swap_remove(oldest);
            self.positions -= tokens.len();
        }
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::LlamaConfig;

    fn cfg() -> LlamaConfig {
        LlamaConfig {
            n_layers: 1,
            d_model: 4,
            d_ff: 8,
            n_heads: 1,
            n_kv_heads: 1,
            vocab: 10,
            rope_base: 10_000.0,
            rms_eps: 1e-5,
            context: 64,
        }
    }

    fn cache(len: usize) -> SeqCache {
        SeqCache::filled(&cfg(), len)
    }

    #[test]
    fn the_longest_shared_prefix_is_found_cut_and_budgeted() {
        let mut s = PrefixStore::new(10);
        s.insert(&[1, 2, 3, 4], cache(4));
        s.insert(&[1, 2, 9], cache(3));
        // Shares 3 with the first entry, 2 with the second.
        assert_eq!(s.lookup(&[1, 2, 3, 7, 8]).map(|c| c.len), Some(3));
        // The whole prompt is stored: one token is left to read.
        assert_eq!(s.lookup(&[1, 2, 3, 4]).map(|c| c.len), Some(3));
        assert!(s.lookup(&[5, 1, 2]).is_none());
        assert_eq!((s.stats.hits, s.stats.lookups, s.stats.reused), (2, 3, 6));
        // An extension supersedes its prefix; a prefix of an entry adds nothing.
        s.insert(&[1, 2, 3, 4, 5], cache(5));
        s.insert(&[1, 2], cache(2));
        assert_eq!(s.positions, 8);
        // Over budget: the least recently used entry ([1, 2, 9]) goes.
        s.insert(&[7, 7, 7], cache(3));
        assert_eq!(s.positions, 8);
        assert!(s.lookup(&[1, 2, 9, 9]).is_some_and(|c| c.len == 2));
    }
}
