//! Child selection rules for tree search.
//!
//! - UCT (Kocsis & Szepesvári 2006): Q(s,a) + c · sqrt(ln N(s) / N(s,a)); unvisited children first.
//! - PUCT (Silver et al. 2017, as used by MCTS-DPO, Xie et al. 2024): Q(s,a) + c · P(s,a) ·
//!   sqrt(N(s)) / (1 + N(s,a)). The exploration constant defaults to 1.0 as in MCTS-DPO.
use crate::store::{NodeId, Tree};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    Uct { c: f64 },
    Puct { c: f64 },
}

impl Default for Rule {
    fn default() -> Self {
        Rule::Puct { c: 1.0 }
    }
}

/// The score of a child with visits `n`, mean value `q` and prior `p` under a parent with
/// `parent_visits` visits.
pub fn score(rule: Rule, q: f64, p: f64, n: u32, parent_visits: u32) -> f64 {
    match rule {
        Rule::Uct { c } => {
            if n == 0 {
                f64::INFINITY
            } else {
                q + c * ((f64::from(parent_visits.max(1))).ln() / f64::from(n)).sqrt()
            }
        }
        Rule::Puct { c } => q + c * p * f64::from(parent_visits).sqrt() / (1.0 + f64::from(n)),
    }
}

/// The child of `node` with the best score (the first in insertion order on ties).
pub fn best_child(tree: &Tree, node: NodeId, rule: Rule) -> Option<NodeId> {
    let parent = tree.node(node).ok()?.visits;
    let mut best: Option<(NodeId, f64)> = None;
    for c in tree.children(node) {
        let n = tree.node(c).ok()?;
        let s = score(rule, n.q(), n.prior, n.visits, parent);
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((c, s));
        }
    }
    best.map(|b| b.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_match_hand_computed_values() {
        // UCT: 0.5 + 1.4 · sqrt(ln 10 / 3) = 0.5 + 1.4 · 0.87609 = 1.72652
        let u = score(Rule::Uct { c: 1.4 }, 0.5, 0.0, 3, 10);
        assert!((u - (0.5 + 1.4 * (10f64.ln() / 3.0).sqrt())).abs() < 1e-12);
        assert!((u - 1.726_522).abs() < 1e-5, "{u}");
        assert_eq!(score(Rule::Uct { c: 1.0 }, 0.0, 0.0, 0, 5), f64::INFINITY);
        // PUCT: 0.2 + 1.0 · 0.3 · sqrt(16) / (1 + 3) = 0.2 + 0.3 = 0.5
        assert!((score(Rule::Puct { c: 1.0 }, 0.2, 0.3, 3, 16) - 0.5).abs() < 1e-12);
        // Unvisited child under an unvisited parent: exploration term 0, Q 0.
        assert_eq!(score(Rule::Puct { c: 1.0 }, 0.0, 0.9, 0, 0), 0.0);
    }

    #[test]
    fn best_child_prefers_exploration_then_value() {
        let mut t = Tree::new("t", "p", None);
        let a = t.add_child(t.root, "a", 0.2).unwrap();
        let b = t.add_child(t.root, "b", 0.8).unwrap();
        t.backup(a, 1.0).unwrap();
        // UCT: b is unvisited, so b.
        assert_eq!(best_child(&t, t.root, Rule::Uct { c: 1.0 }), Some(b));
        // PUCT with parent N = 1: a = 1 + 0.2·1/2 = 1.1; b = 0 + 0.8·1/1 = 0.8 → a.
        assert_eq!(best_child(&t, t.root, Rule::Puct { c: 1.0 }), Some(a));
        // With a large c, b's prior wins: a = 1 + 5·0.2/2 = 1.5; b = 5·0.8 = 4.
        assert_eq!(best_child(&t, t.root, Rule::Puct { c: 5.0 }), Some(b));
    }
}
