//! Step-level beam search: keep `beam` partial solutions; expand each with `width` next steps;
//! keep the `beam` best non-terminal children by value (then prior); stop when none is left or
//! at the depth limit (children there are terminal).
use arbor_envs::Task;

use super::searcher::Searcher;
use crate::{SearchError, Tree};

pub async fn run(s: &Searcher, task: &Task) -> Result<Tree, SearchError> {
    let mut tree = s.new_tree(task);
    let mut beams = vec![tree.root];
    while !beams.is_empty() {
        let mut pool = s.expand_layer(&mut tree, task, &beams).await?;
        pool.retain(|&c| !tree.graph[c].terminal);
        let key = |c: &crate::NodeId| {
            let n = &tree.graph[*c];
            (n.eval.value_estimate.unwrap_or(0.0), n.prior)
        };
        pool.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            kb.0.total_cmp(&ka.0).then(kb.1.total_cmp(&ka.1))
        });
        pool.truncate(s.config.beam);
        beams = pool;
    }
    Ok(tree)
}
