//! `arbor compare`: finished loops side by side. Each loop evaluated its policies on held-out
//! tasks (`iter-<t>/eval-results.json`); loops run with the same `eval_tasks` and `eval_seed`
//! share those tasks, so each pair of loops is compared iteration by iteration on the same tasks
//! (the paired difference, its interval and McNemar's z), which separates methods that
//! unpaired intervals cannot.
use std::path::{Path, PathBuf};

use arbor_tree::eval::{paired, Paired, Report};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Loop directories (`arbor loop --out`), two or more; each later one is paired with each
    /// earlier one.
    #[arg(required = true, num_args = 2..)]
    loops: Vec<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// One loop's policy at one iteration: its held-out accuracy.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub n: usize,
    pub accuracy: f64,
    pub ci95: (f64, f64),
}

/// Loop `b` against loop `a` at one iteration (b's accuracy minus a's, on their shared tasks).
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub paired: Paired,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub iteration: usize,
    /// Per loop, in the order given; `None` where that loop has not evaluated this iteration.
    pub loops: Vec<Option<Cell>>,
    pub pairs: Vec<Option<Pair>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The loops' names: their directories' last components, or whole paths when two clash.
    pub names: Vec<String>,
    pub rows: Vec<Row>,
}

/// Reads every evaluated iteration of each loop in `dirs` and pairs the loops. Errors name the
/// directory or file; loops whose held-out tasks share no id are refused, since nothing could
/// be paired.
pub fn compare(dirs: &[PathBuf]) -> Result<Comparison, String> {
    let mut evals: Vec<Vec<Option<Report>>> = Vec::new();
    for d in dirs {
        if !d.join("loop.json").is_file() {
            return Err(format!("{}: not a loop directory (no loop.json)", d.display()));
        }
        evals.push(loop_evals(d)?);
    }
    let last = evals.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows = Vec::new();
    for t in 0..last {
        let at = |i: usize| evals[i].get(t).and_then(Option::as_ref);
        let loops = (0..dirs.len())
            .map(|i| at(i).map(|r| Cell { n: r.n, accuracy: r.accuracy, ci95: r.ci95 }))
            .collect();
        let mut pairs = Vec::new();
        for (a, b) in pair_indices(dirs.len()) {
            let p = match (at(a), at(b)) {
                (Some(ra), Some(rb)) => {
                    let paired = paired(ra, rb);
                    if paired.n == 0 {
                        return Err(format!(
                            "{} and {} share no held-out task at iteration {t}: run both with the same eval_tasks and eval_seed",
                            dirs[a].display(),
                            dirs[b].display()
                        ));
                    }
                    Some(Pair { a, b, paired })
                }
                _ => None,
            };
            pairs.push(p);
        }
        rows.push(Row { iteration: t, loops, pairs });
    }
    Ok(Comparison { names: names(dirs), rows })
}

/// `(a, b)` for every pair of loops, a before b: (0,1), (0,2), …, (1,2), …
fn pair_indices(n: usize) -> Vec<(usize, usize)> {
    (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).collect()
}

/// Each iteration's greedy held-out results, up to the last iteration directory; `None` for an
/// iteration whose evaluation has not finished.
fn loop_evals(dir: &Path) -> Result<Vec<Option<Report>>, String> {
    let mut out = Vec::new();
    for t in 0.. {
        let it = dir.join(format!("iter-{t}"));
        if !it.is_dir() {
            break;
        }
        // `eval.json`, the stage's marker, is written after its results.
        let done = it.join("eval.json").is_file();
        out.push(if done { Some(crate::stages::greedy_results(&it)?) } else { None });
    }
    // Trailing iterations without an evaluation add only empty cells.
    while matches!(out.last(), Some(None)) {
        out.pop();
    }
    Ok(out)
}

fn names(dirs: &[PathBuf]) -> Vec<String> {
    let short: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().map_or_else(|| d.display().to_string(), |n| n.to_string_lossy().into_owned()))
        .collect();
    let clash = (1..short.len()).any(|i| short[..i].contains(&short[i]));
    if clash {
        dirs.iter().map(|d| d.display().to_string()).collect()
    } else {
        short
    }
}

impl Comparison {
    /// One row per iteration: each loop's accuracy with its Wilson interval, then each pair's
    /// paired difference in points with its interval, wins / losses and z.
    pub fn table(&self) -> String {
        use crate::report::{gain, interval};
        let pairs = pair_indices(self.names.len()).into_iter();
        let head: Vec<String> = std::iter::once("iteration".to_string())
            .chain(self.names.iter().cloned())
            .chain(pairs.map(|(a, b)| format!("{} − {}", self.names[b], self.names[a])))
            .collect();
        let rows = self
            .rows
            .iter()
            .map(|r| {
                let mut cells = vec![r.iteration.to_string()];
                cells.extend(r.loops.iter().map(|c| {
                    c.as_ref().map_or("-".into(), |c| format!("{:.1}% {}", 100.0 * c.accuracy, interval(c.ci95)))
                }));
                cells.extend(r.pairs.iter().map(|p| {
                    p.as_ref().map_or("-".into(), |p| {
                        let q = &p.paired;
                        format!("{} {}/{} z {:.1}", gain(q), q.wins, q.losses, q.z)
                    })
                }));
                cells
            })
            .collect();
        crate::report::aligned(&head.iter().map(String::as_str).collect::<Vec<_>>(), rows)
    }
}

/// `arbor compare`: the table (or JSON) on stdout.
pub fn run(a: CompareArgs) -> Result<(), String> {
    let c = compare(&a.loops)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c).map_err(|e| e.to_string())?);
    } else {
        print!("{}", c.table());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_tree::eval::TaskResult;

    /// Writes iteration `t` of the loop in `dir`: results for tasks `ids` (correct where `ok`),
    /// with the stage's marker when `done`.
    fn eval(dir: &Path, t: usize, ids: &[&str], ok: &[bool], done: bool) {
        let it = dir.join(format!("iter-{t}"));
        std::fs::create_dir_all(&it).unwrap();
        std::fs::write(dir.join("loop.json"), "{}").unwrap();
        let results = ids
            .iter()
            .zip(ok)
            .map(|(id, &correct)| TaskResult { task_id: id.to_string(), correct, steps: vec![], value: None, error: None })
            .collect();
        std::fs::write(it.join("eval-results.json"), serde_json::to_string(&Report::of(results)).unwrap()).unwrap();
        if done {
            std::fs::write(it.join("eval.json"), "{}").unwrap();
        }
    }

    /// The pairs go by task id, not position (b lists its tasks in reverse), and b − a has b's
    /// sign; an unfinished evaluation is an empty cell, not a row of zeros. Caught by pairing
    /// by position (wins 2, losses 1 here), by swapping a and b (losses, not wins), and by
    /// reading `eval-results.json` without its marker (a third row).
    #[test]
    fn loops_pair_by_task_id_at_each_evaluated_iteration() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("rs"), tmp.path().join("dpo"));
        let ids = ["t0", "t1", "t2", "t3"];
        let rev = ["t3", "t2", "t1", "t0"];
        eval(&a, 0, &ids, &[true, false, false, false], true);
        eval(&b, 0, &ids, &[true, false, false, false], true);
        eval(&a, 1, &ids, &[true, true, false, false], true);
        eval(&b, 1, &rev, &[false, true, true, true], true);
        eval(&b, 2, &ids, &[true, true, true, true], false);
        let c = compare(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(c.names, ["rs", "dpo"]);
        assert_eq!(c.rows.len(), 2);
        let p = &c.rows[1].pairs[0].as_ref().unwrap().paired;
        assert_eq!((p.n, p.wins, p.losses), (4, 1, 0));
        assert!((p.difference - 0.25).abs() < 1e-12);
        assert_eq!(c.rows[0].pairs[0].as_ref().unwrap().paired.wins, 0);
        assert!(c.table().contains("dpo − rs"));
    }

    /// Loops on different held-out tasks, and a directory that is no loop, are refused with the
    /// path. Caught by pairing whatever is there (n = 0 gives a difference of 0).
    #[test]
    fn loops_without_shared_tasks_or_a_loop_directory_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        eval(&a, 0, &["x"], &[true], true);
        eval(&b, 0, &["y"], &[true], true);
        let e = compare(&[a.clone(), b.clone()]).unwrap_err();
        assert!(e.contains("share no held-out task") && e.contains(&*a.display().to_string()), "{e}");
        let e = compare(&[a, tmp.path().to_path_buf()]).unwrap_err();
        assert!(e.contains("not a loop directory"), "{e}");
    }
}
