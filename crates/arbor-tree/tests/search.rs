//! The search algorithms on the math environment with the synthetic policy: tree shapes,
//! terminal verdicts from the environment's verifier, and statistics.
use std::sync::Arc;

use arbor_envs::math::{MathConfig, MathEnv};
use arbor_envs::{Environment, Task};
use arbor_tree::evaluate::{Rollout, TerminalOnly};
use arbor_tree::export::{leaves, Format};
use arbor_tree::policy::SyntheticPolicy;
use arbor_tree::{Algo, SearchConfig, Searcher, Tree};

fn setup(algo: Algo, cfg: impl FnOnce(&mut SearchConfig)) -> (Searcher, Vec<Task>) {
    let env = Arc::new(MathEnv::new(MathConfig::default()).unwrap());
    let tasks = env.sample(4, 11).unwrap();
    let policy = Arc::new(SyntheticPolicy::for_tasks(&tasks, 3));
    let mut config = SearchConfig {
        algo,
        ..Default::default()
    };
    cfg(&mut config);
    (
        Searcher::new(env, policy, Arc::new(TerminalOnly), config),
        tasks,
    )
}

fn check_invariants(t: &Tree) {
    for n in t.graph.node_indices() {
        let node = &t.graph[n];
        let kids = t.children(n);
        if node.terminal {
            assert!(kids.is_empty(), "terminal nodes have no children");
            assert!(
                node.eval.verified.is_some(),
                "terminals carry the verifier's verdict"
            );
        }
        let child_visits: u32 = kids.iter().map(|&c| t.graph[c].visits).sum();
        assert!(
            node.visits >= child_visits,
            "N(parent) >= sum of N(children)"
        );
    }
}

#[tokio::test]
async fn mcts_builds_trees_whose_first_answers_verify() {
    let (s, tasks) = setup(Algo::Mcts, |c| {
        c.iterations = 12;
        c.width = 2;
    });
    let t = s.search(&tasks[0]).await.unwrap();
    check_invariants(&t);
    let ls = leaves(&t);
    assert!(!ls.is_empty());
    // The synthetic policy's first proposal at depth 3 is the reference answer.
    for l in &ls {
        let node = t.node(*l).unwrap();
        let first =
            node.step == format!("The answer is {}", tasks[0].reference.as_deref().unwrap());
        assert_eq!(node.eval.verified, Some(first), "{}", node.step);
    }
    // Every attached node was backed up once through the root, terminal revisits once more.
    assert!(t.node(t.root).unwrap().visits as usize >= t.len() - 1);
    assert!(t.node(t.root).unwrap().q() > 0.0);
}

#[tokio::test]
async fn tot_bfs_keeps_breadth_states_per_depth() {
    let (s, tasks) = setup(Algo::TotBfs, |c| {
        c.width = 3;
        c.breadth = 2;
    });
    let t = s.search(&tasks[1]).await.unwrap();
    check_invariants(&t);
    // depth 1: 3 children; depth 2: 2 kept × 3; depth 3 (answers, terminal): 2 × 3
    assert_eq!(t.len(), 1 + 3 + 6 + 6);
    assert_eq!(
        leaves(&t)
            .iter()
            .filter(|&&l| t.node(l).unwrap().eval.verified == Some(true))
            .count(),
        2
    );
}

#[tokio::test]
async fn tot_dfs_stops_at_the_first_solution_and_beam_keeps_width() {
    let (s, tasks) = setup(Algo::TotDfs, |c| {
        c.width = 2;
        c.threshold = 0.0;
    });
    let t = s.search(&tasks[2]).await.unwrap();
    check_invariants(&t);
    // root → first child → its first child → answers (first correct): 3 expansions of 2
    assert_eq!(t.len(), 1 + 2 * 3);
    let (s, tasks) = setup(Algo::Beam, |c| {
        c.width = 2;
        c.beam = 3;
    });
    let t = s.search(&tasks[2]).await.unwrap();
    check_invariants(&t);
    // depth 1: 2; depth 2: 2 beams... (2 < 3 kept) × 2 = 4; depth 3: 3 beams × 2 terminal
    assert_eq!(t.len(), 1 + 2 + 4 + 6);
}

#[tokio::test]
async fn rollouts_value_states_by_verified_completions() {
    let env = Arc::new(MathEnv::new(MathConfig::default()).unwrap());
    let tasks = env.sample(1, 3).unwrap();
    let policy = Arc::new(SyntheticPolicy::for_tasks(&tasks, 3));
    let rollout = Arc::new(Rollout {
        policy: policy.clone(),
        n: 2,
        delimiter: "\n".into(),
    });
    let s = Searcher::new(
        env,
        policy,
        rollout,
        SearchConfig {
            algo: Algo::TotBfs,
            width: 2,
            breadth: 1,
            ..Default::default()
        },
    );
    let t = s.search(&tasks[0]).await.unwrap();
    // The synthetic completion always reaches the right answer, so every open state is worth 1.
    for n in t.graph.node_indices() {
        let node = t.node(n).unwrap();
        if !node.terminal && n != t.root {
            assert_eq!(node.eval.value_estimate, Some(1.0));
        }
    }
}

#[tokio::test]
async fn many_trees_run_concurrently_and_export() {
    let (s, tasks) = setup(Algo::Mcts, |c| c.iterations = 24);
    let mut trees = Vec::new();
    s.search_many(&tasks, 4, |_, r| trees.push(r.unwrap()))
        .await;
    assert_eq!(trees.len(), 4);
    assert_eq!(
        s.counters
            .trees_done
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
    assert_eq!(s.counters.best_value(), 1.0);
    for f in Format::ALL {
        let rows = arbor_tree::export::export(&trees, f, &Default::default());
        assert!(!rows.is_empty(), "{f:?} gave no rows");
    }
}

/// `run_to_dir` counts trees in its progress, kept trees of a resumed run included; a greedy
/// evaluation counts its tasks.
#[tokio::test]
async fn progress_counts_trees_and_evaluated_tasks() {
    let (s, tasks) = setup(Algo::Mcts, |c| c.iterations = 8);
    let dir = tempfile::tempdir().unwrap();
    let p = arbor_core::Progress::default();
    arbor_tree::job::run_to_dir(&s, &tasks[..2], 2, dir.path(), false, &p)
        .await
        .unwrap();
    assert_eq!(p.get(), (2, 2));
    // Resumed with all four: two kept, two searched.
    let p = arbor_core::Progress::default();
    let sum = arbor_tree::job::run_to_dir(&s, &tasks, 2, dir.path(), true, &p)
        .await
        .unwrap();
    assert_eq!((sum.kept, sum.ok), (2, 2));
    assert_eq!(p.get(), (4, 4));

    let env = Arc::new(MathEnv::new(MathConfig::default()).unwrap());
    let policy = Arc::new(SyntheticPolicy::for_tasks(&tasks, 3));
    let params = arbor_tree::search::decode::DecodeParams {
        strategy: arbor_tree::search::decode::Strategy::Greedy,
        width: 1,
        max_depth: 8,
    };
    let p = arbor_core::Progress::default();
    let r = arbor_tree::eval::evaluate(env, &tasks, policy, None, &params, 2, &p).await;
    assert_eq!((r.n, p.get()), (4, (4, 4)));
}
