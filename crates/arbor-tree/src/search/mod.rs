//! Search over reasoning steps: the shared machinery (configuration, environment replay, node
//! expansion, counters) and the algorithms in [`mcts`], [`tot`] and [`beam`].
//!
//! The split follows llm-reasoners: the world is an arbor-envs [`Environment`], the step
//! proposer is a [`StepPolicy`], the state scorer an [`Evaluator`], and the algorithms here know
//! nothing of HTTP or burn.
pub mod beam;
mod config;
pub mod decode;
pub mod mcts;
mod searcher;
pub mod tot;

use std::sync::atomic::Ordering;

use arbor_envs::Task;
use futures::stream::{self, StreamExt};

pub use config::{Algo, RuleName, SearchConfig};
pub use searcher::{node_value, Counters, Expansion, Searcher};

use crate::{SearchError, Tree};

impl Searcher {
    /// Builds one tree for `task` with the configured algorithm.
    pub async fn search(&self, task: &Task) -> Result<Tree, SearchError> {
        let tree = match self.config.algo {
            Algo::Mcts => mcts::run(self, task).await?,
            Algo::TotBfs => tot::bfs(self, task).await?,
            Algo::TotDfs => tot::dfs(self, task).await?,
            Algo::Beam => beam::run(self, task).await?,
        };
        self.counters.trees_done.fetch_add(1, Ordering::Relaxed);
        Ok(tree)
    }

    /// Searches many tasks, `concurrency` trees at once, so their model calls go out together;
    /// each finished tree (or its error) is handed to `done` as it completes.
    pub async fn search_many<F>(&self, tasks: &[Task], concurrency: usize, mut done: F)
    where
        F: FnMut(&Task, Result<Tree, SearchError>),
    {
        // Checked as each task is taken: a stop lets the trees in flight finish.
        let mut results = stream::iter(
            tasks
                .iter()
                .take_while(|_| !self.stop.load(std::sync::atomic::Ordering::Relaxed))
                .map(|t| async move { (t, self.search(t).await) }),
        )
        .buffer_unordered(concurrency.max(1));
        while let Some((task, result)) = results.next().await {
            done(task, result);
        }
    }
}
