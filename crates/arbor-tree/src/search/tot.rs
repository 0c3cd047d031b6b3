//! Tree-of-Thought search (Yao et al. 2023): BFS keeps the `breadth` best states of each depth;
//! DFS walks best-first into children whose value reaches `threshold`, within `max_nodes`.
use arbor_envs::Task;

use super::searcher::Searcher;
use crate::{NodeId, SearchError, Tree};

/// Non-terminal children of `ids`, best value first (ties keep insertion order).
fn ranked_open(tree: &Tree, ids: &[NodeId]) -> Vec<(NodeId, f64)> {
    let mut open: Vec<(NodeId, f64)> = ids
        .iter()
        .filter(|&&c| !tree.graph[c].terminal)
        .map(|&c| (c, tree.graph[c].eval.value_estimate.unwrap_or(0.0)))
        .collect();
    open.sort_by(|a, b| b.1.total_cmp(&a.1));
    open
}

pub async fn bfs(s: &Searcher, task: &Task) -> Result<Tree, SearchError> {
    let mut tree = s.new_tree(task);
    let mut frontier = vec![tree.root];
    while !frontier.is_empty() {
        let children = s.expand_layer(&mut tree, task, &frontier).await?;
        frontier = ranked_open(&tree, &children)
            .into_iter()
            .take(s.config.breadth)
            .map(|x| x.0)
            .collect();
    }
    Ok(tree)
}

pub async fn dfs(s: &Searcher, task: &Task) -> Result<Tree, SearchError> {
    let mut tree = s.new_tree(task);
    let mut stack = vec![tree.root];
    while let Some(node) = stack.pop() {
        if tree.len() >= s.config.max_nodes {
            break;
        }
        let exp = s.expand(&tree, task, node).await?;
        let children = s.attach(&mut tree, node, exp)?;
        if children
            .iter()
            .any(|&c| tree.graph[c].eval.verified == Some(true))
        {
            break; // solved
        }
        let open = ranked_open(&tree, &children);
        // Push worst first so the best child is explored next.
        for (c, v) in open.into_iter().rev() {
            if v >= s.config.threshold {
                stack.push(c);
            }
        }
    }
    Ok(tree)
}
