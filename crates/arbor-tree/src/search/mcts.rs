//! Monte Carlo tree search over steps (MCTS-DPO style): select by PUCT or UCT down to a leaf,
//! expand it with `width` proposed steps, score each child (verifier at terminals, the evaluator
//! elsewhere) and back the values up as visit-weighted means.
//!
//! `parallel` simulations of one tree run at once: each selection adds a virtual loss (a visit
//! with value 0) along its path so the next selection in the same wave prefers other branches;
//! the losses are taken back before the real values are backed up.
use arbor_envs::Task;

use super::searcher::{node_value, Searcher};
use crate::select::{best_child, Rule};
use crate::{NodeId, SearchError, Tree};

/// Descends from the root by the selection rule to a node that is terminal or not yet expanded.
pub fn select_leaf(tree: &Tree, rule: Rule) -> NodeId {
    let mut node = tree.root;
    loop {
        let n = &tree.graph[node];
        if n.terminal {
            return node;
        }
        match best_child(tree, node, rule) {
            Some(c) => node = c,
            None => return node,
        }
    }
}

fn add_visits(tree: &mut Tree, leaf: NodeId, delta: i64) {
    for n in tree.path(leaf) {
        let node = &mut tree.graph[n];
        node.visits = (i64::from(node.visits) + delta).max(0) as u32;
    }
}

/// One wave: pick up to `k` distinct leaves under virtual loss.
pub fn select_wave(tree: &mut Tree, rule: Rule, k: usize) -> Vec<NodeId> {
    let mut picked = Vec::with_capacity(k);
    let mut losses = Vec::with_capacity(k);
    for _ in 0..k {
        let leaf = select_leaf(tree, rule);
        add_visits(tree, leaf, 1);
        losses.push(leaf);
        if !picked.contains(&leaf) {
            picked.push(leaf);
        }
    }
    for leaf in losses {
        add_visits(tree, leaf, -1);
    }
    picked
}

pub async fn run(s: &Searcher, task: &Task) -> Result<Tree, SearchError> {
    let mut tree = s.new_tree(task);
    let rule = s.config.rule();
    let mut done = 0;
    while done < s.config.iterations && tree.len() < s.config.max_nodes {
        let wave = s.config.parallel.min(s.config.iterations - done);
        let leaves = select_wave(&mut tree, rule, wave);
        let expansions = futures::future::try_join_all(leaves.iter().map(|&leaf| {
            let tree = &tree;
            async move {
                if tree.graph[leaf].terminal {
                    Ok(None)
                } else {
                    s.expand(tree, task, leaf).await.map(Some)
                }
            }
        }))
        .await?;
        for (&leaf, exp) in leaves.iter().zip(expansions) {
            match exp {
                // Reaching a terminal again backs its reward up once more.
                None => tree.backup(leaf, node_value(&tree, leaf))?,
                Some(children) if children.is_empty() => {
                    // The policy had nothing to add: a dead end worth nothing.
                    let n = tree.node_mut(leaf)?;
                    n.terminal = true;
                    n.reward = Some(0.0);
                    n.eval.verified = Some(false);
                    tree.backup(leaf, 0.0)?;
                }
                Some(children) => {
                    s.attach(&mut tree, leaf, children)?;
                }
            }
        }
        // A simulation is one distinct leaf expanded or revisited; a wave that collapsed onto
        // fewer leaves (as the first always does) leaves its budget to the next waves.
        done += leaves.len();
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_loss_spreads_a_wave_over_siblings_and_is_taken_back() {
        let mut t = Tree::new("t", "q", None);
        let a = t.add_child(t.root, "a", 0.5).unwrap();
        let b = t.add_child(t.root, "b", 0.5).unwrap();
        t.backup(a, 0.6).unwrap();
        t.backup(b, 0.5).unwrap();
        let rule = Rule::Uct { c: 0.1 };
        // Without virtual loss the same leaf (a, higher Q) would be picked twice.
        assert_eq!(select_leaf(&t, rule), a);
        let wave = select_wave(&mut t, rule, 2);
        assert_eq!(wave, vec![a, b]);
        assert_eq!(
            (
                t.node(t.root).unwrap().visits,
                t.node(a).unwrap().visits,
                t.node(b).unwrap().visits
            ),
            (2, 1, 1)
        );
    }
}
