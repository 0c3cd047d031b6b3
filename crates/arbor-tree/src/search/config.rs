//! `[search]` of search.toml: the algorithm and every knob of every algorithm.
use serde::{Deserialize, Serialize};

use crate::select::Rule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Algo {
    #[default]
    Mcts,
    TotBfs,
    TotDfs,
    Beam,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuleName {
    #[default]
    Puct,
    Uct,
}

/// Every knob of every algorithm (one TOML table; keys not used by the chosen algorithm are
/// ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    pub algo: Algo,
    /// Steps below the root after which a path is cut off and verified as it stands.
    pub max_depth: u32,
    /// Children proposed per expansion (MCTS expansion width, ToT k, beam expansions per beam).
    pub width: usize,
    /// MCTS: selection rule and exploration constant (1.0 as in MCTS-DPO).
    pub rule: RuleName,
    pub c: f64,
    /// MCTS: simulations per tree.
    pub iterations: usize,
    /// MCTS: simulations of one tree in flight at once (virtual loss keeps them apart).
    pub parallel: usize,
    /// ToT-BFS: states kept per depth (b).
    pub breadth: usize,
    /// ToT-DFS: children below this value are pruned.
    pub threshold: f64,
    /// Node budget: MCTS and ToT-DFS stop once the tree has this many nodes.
    pub max_nodes: usize,
    /// Beam search: beam width B.
    pub beam: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            algo: Algo::Mcts,
            max_depth: 8,
            width: 3,
            rule: RuleName::Puct,
            c: 1.0,
            iterations: 16,
            parallel: 4,
            breadth: 2,
            threshold: 0.5,
            max_nodes: 256,
            beam: 3,
        }
    }
}

impl SearchConfig {
    pub fn rule(&self) -> Rule {
        match self.rule {
            RuleName::Puct => Rule::Puct { c: self.c },
            RuleName::Uct => Rule::Uct { c: self.c },
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_depth", self.max_depth as usize),
            ("width", self.width),
            ("iterations", self.iterations),
            ("parallel", self.parallel),
            ("breadth", self.breadth),
            ("max_nodes", self.max_nodes),
            ("beam", self.beam),
        ];
        for (k, v) in positive {
            if v == 0 {
                return Err(format!("search.{k} must be at least 1"));
            }
        }
        if !(self.c.is_finite() && self.c >= 0.0) {
            return Err("search.c must be a finite number >= 0".into());
        }
        Ok(())
    }
}

