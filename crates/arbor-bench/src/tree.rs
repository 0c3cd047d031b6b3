//! `arbor bench tree`: search bookkeeping with an instant policy (nodes/s over many trees), export
//! throughput per format, and memory per node.
use std::sync::Arc;
use std::time::Instant;

use arbor_envs::Environment;
use arbor_tree::evaluate::TerminalOnly;
use arbor_tree::export::{export, ExportOptions, Format};
use arbor_tree::policy::SyntheticPolicy;
use arbor_tree::{Algo, SearchConfig, Searcher};

use crate::resources;

#[derive(clap::Args)]
pub struct TreeBenchArgs {
    #[arg(long, default_value_t = 1000)]
    trees: usize,
    /// Nodes per tree (MCTS expansions of `width` children until the tree has this many).
    #[arg(long, default_value_t = 200)]
    nodes: usize,
    #[arg(long, default_value_t = 4)]
    width: usize,
    /// Depth at which the instant policy answers (terminal leaves).
    #[arg(long, default_value_t = 5)]
    answer_depth: usize,
    /// Trees searched at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Where the export files go (removed afterwards).
    #[arg(long, default_value = "target/bench-tree")]
    dir: std::path::PathBuf,
}

pub async fn run(a: TreeBenchArgs) -> anyhow::Result<()> {
    let env = Arc::new(arbor_envs::math::MathEnv::new(Default::default())?);
    let tasks = env.sample(a.trees, 1)?;
    // Answers (terminal leaves, one right and width-1 wrong per state) at `answer_depth`, so
    // trees have leaves to export; MCTS runs until its node budget is reached (revisits of
    // terminals add no nodes).
    let policy = Arc::new(SyntheticPolicy::for_tasks(&tasks, a.answer_depth));
    let config = SearchConfig {
        algo: Algo::Mcts,
        width: a.width,
        iterations: a.nodes * 4,
        max_nodes: a.nodes,
        max_depth: a.answer_depth as u32,
        ..Default::default()
    };
    let searcher = Searcher::new(env, policy, Arc::new(TerminalOnly), config);

    let rss0 = resources::current_rss_bytes();
    let cpu0 = resources::cpu_seconds();
    let t0 = Instant::now();
    let mut trees = Vec::with_capacity(tasks.len());
    searcher
        .search_many(&tasks, a.concurrency, |_, r| trees.extend(r.ok()))
        .await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = resources::cpu_seconds() - cpu0;
    let nodes: usize = trees.iter().map(|t| t.len()).sum();
    let rss1 = resources::current_rss_bytes();
    println!(
        "search (mcts, instant policy): {} trees, {nodes} nodes in {wall:.3}s wall, {cpu:.3}s CPU",
        trees.len()
    );
    println!(
        "  {:.0} nodes/s wall, {:.0} nodes/s per CPU second",
        nodes as f64 / wall,
        nodes as f64 / cpu
    );
    println!(
        "  memory: {:.0} bytes/node resident ({:.1} MiB for the trees)",
        (rss1.saturating_sub(rss0)) as f64 / nodes as f64,
        (rss1.saturating_sub(rss0)) as f64 / 1048576.0
    );

    std::fs::create_dir_all(&a.dir)?;
    let t = Instant::now();
    let saved = a.dir.join("trees.jsonl");
    arbor_tree::store::save_jsonl(&saved, &trees)?;
    let save_s = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&saved)?.len();
    let t = Instant::now();
    let loaded = arbor_tree::store::load_jsonl(&saved)?;
    let load_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        loaded.trees.len() == trees.len() && loaded.errors.is_empty(),
        "the saved trees did not load back"
    );
    println!(
        "save: {:.0} nodes/s ({:.0} bytes/node on disk); load: {:.0} nodes/s",
        nodes as f64 / save_s,
        bytes as f64 / nodes as f64,
        nodes as f64 / load_s
    );

    println!("export (rows, seconds to rows / JSONL / Parquet, nodes/s end to end for Parquet):");
    for f in Format::ALL {
        let t = Instant::now();
        let rows = export(&trees, f, &ExportOptions::default());
        let rows_s = t.elapsed().as_secs_f64();
        let jsonl = a.dir.join(format!("{}.jsonl", f.name()));
        let t = Instant::now();
        arbor_core::table::write_rows(&jsonl, &rows)?;
        let jsonl_s = t.elapsed().as_secs_f64();
        let parquet = a.dir.join(format!("{}.parquet", f.name()));
        let t = Instant::now();
        arbor_core::table::write_rows(&parquet, &rows)?;
        let parquet_s = t.elapsed().as_secs_f64();
        println!(
            "  {:<9} {:>7} rows  {rows_s:.3}s / {jsonl_s:.3}s / {parquet_s:.3}s  {:.0} nodes/s",
            f.name(),
            rows.len(),
            nodes as f64 / (rows_s + parquet_s)
        );
    }
    println!(
        "peak RSS {:.1} MiB",
        resources::peak_rss_bytes() as f64 / 1048576.0
    );
    std::fs::remove_dir_all(&a.dir)?;
    Ok(())
}
