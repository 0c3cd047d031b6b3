//! `DIR/report.json`: per iteration, the data made, the training summary, the held-out
//! accuracy with its Wilson interval and the wall time of each stage; and the table printed at
//! the end.
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IterationReport {
    pub iteration: usize,
    /// The policy evaluated (and searched with by the next iteration).
    pub model: String,
    pub trees: Option<usize>,
    /// Nodes across the iteration's trees (the search's size).
    #[serde(default)]
    pub nodes: Option<usize>,
    pub failed_searches: Option<usize>,
    /// Terminal nodes the verifier accepted, across the iteration's trees.
    pub correct_leaves: Option<usize>,
    /// Training rows exported (pairs, trajectories, lists).
    pub rows: Option<usize>,
    pub train_steps: Option<usize>,
    pub train_examples: Option<usize>,
    /// Why the policy was carried over untrained, when it was.
    pub train_skipped: Option<String>,
    pub eval_n: usize,
    pub eval_correct: usize,
    pub accuracy: f64,
    pub ci95: (f64, f64),
    /// With a critic (`eval.json` has the intervals): accuracy of value-guided beam search of
    /// width K, of best-of-K by value, of the majority vote of K (the same K samples' kind,
    /// selected without the critic) and of one sample, and the critic's AUC on the greedy paths.
    pub value_beam_accuracy: Option<f64>,
    pub best_of_k_accuracy: Option<f64>,
    #[serde(default)]
    pub majority_of_k_accuracy: Option<f64>,
    pub sample_accuracy: Option<f64>,
    pub critic_auc: Option<f64>,
    /// The held-out tasks those figures are on (the first `critic_tasks`).
    #[serde(default)]
    pub critic_n: Option<usize>,
    /// The held-out gain over the previous iteration's policy, paired on the same tasks.
    pub vs_previous: Option<arbor_tree::eval::Paired>,
    /// Wall seconds of each stage that ran in this process (a resumed stage keeps its old
    /// figure).
    pub seconds: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopReport {
    pub format: String,
    pub algo: String,
    pub env: String,
    pub iterations: Vec<IterationReport>,
}

impl LoopReport {
    /// The table's header and one row of cells per iteration.
    fn rows(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let head = vec![
            "iteration", "trees", "nodes", "correct leaves", "rows", "steps", "accuracy", "95% CI",
            "gain (paired 95% CI)",
            "critic tasks", "value beam", "best-of-K", "majority of K", "sample", "critic AUC",
        ];
        let opt = |x: Option<usize>| x.map_or("-".to_string(), |v| v.to_string());
        let pct = |x: f64| format!("{:.1}%", 100.0 * x);
        let rows = self
            .iterations
            .iter()
            .map(|r| {
                vec![
                    r.iteration.to_string(),
                    opt(r.trees),
                    opt(r.nodes),
                    opt(r.correct_leaves),
                    opt(r.rows),
                    opt(r.train_steps),
                    pct(r.accuracy),
                    interval(r.ci95),
                    r.vs_previous.as_ref().map_or("-".to_string(), gain),
                    opt(r.critic_n),
                    r.value_beam_accuracy.map_or("-".to_string(), pct),
                    r.best_of_k_accuracy.map_or("-".to_string(), pct),
                    r.majority_of_k_accuracy.map_or("-".to_string(), pct),
                    r.sample_accuracy.map_or("-".to_string(), pct),
                    r.critic_auc.map_or("-".to_string(), |a| format!("{a:.3}")),
                ]
            })
            .collect();
        (head, rows)
    }

    /// The per-iteration table, in aligned columns.
    pub fn table(&self) -> String {
        let (head, rows) = self.rows();
        aligned(&head, rows)
    }

    /// `report.html`: one self-contained page (no outside requests): accuracy by iteration
    /// with its interval (plotters SVG, inline), the table, each iteration's training curves
    /// (`iter-<t>/model/curves.svg`, inline) and the config.
    pub fn html(&self, out: &Path, config: &str) -> String {
        let esc = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut s = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>arbor loop</title>\n<style>body{font-family:sans-serif;margin:2em;max-width:1100px} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px 8px;text-align:right} pre{background:#f6f6f6;padding:1em}</style></head><body>\n");
        let _ = writeln!(
            s,
            "<h1>arbor loop: {} on {}</h1>\n<h2>Held-out accuracy (95% Wilson interval)</h2>\n{}",
            esc(&self.algo),
            esc(&self.env),
            self.accuracy_svg()
        );
        let (head, rows) = self.rows();
        s.push_str("<h2>Iterations</h2>\n<table id=\"iterations\"><tr>");
        for h in head {
            let _ = write!(s, "<th>{h}</th>");
        }
        s.push_str("</tr>\n");
        for cells in rows {
            s.push_str("<tr>");
            for c in cells {
                let _ = write!(s, "<td>{}</td>", esc(&c));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
        for r in self.iterations.iter().filter(|r| r.iteration > 0) {
            let curves = out.join(format!("iter-{}/model/curves.svg", r.iteration));
            if let Ok(svg) = std::fs::read_to_string(&curves) {
                let svg = svg.trim_start_matches(|c| c != '<');
                let svg = svg.strip_prefix("<?xml").map_or(svg, |x| &x[x.find('>').map_or(0, |i| i + 1)..]);
                let _ = writeln!(s, "<h2>Training, iteration {}</h2>\n{svg}", r.iteration);
            } else if let Some(why) = &r.train_skipped {
                let _ = writeln!(s, "<h2>Training, iteration {}</h2>\n<p>{}</p>", r.iteration, esc(why));
            }
        }
        let _ = writeln!(s, "<h2>Config</h2>\n<pre>{}</pre>\n</body></html>", esc(config));
        s
    }

    /// Accuracy (%) by iteration with its interval as vertical bars.
    fn accuracy_svg(&self) -> String {
        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, (640, 320)).into_drawing_area();
            let _ = root.fill(&WHITE);
            let n = self.iterations.len().max(2) as f64;
            let top = self
                .iterations
                .iter()
                .map(|r| 100.0 * r.ci95.1)
                .fold(10.0, f64::max);
            let chart = ChartBuilder::on(&root)
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d(-0.5..n - 0.5, 0.0..top * 1.05);
            if let Ok(mut chart) = chart {
                let _ = chart
                    .configure_mesh()
                    .x_desc("iteration")
                    .y_desc("accuracy %")
                    .x_labels(self.iterations.len().max(2))
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .draw();
                let pts: Vec<(f64, f64)> = self
                    .iterations
                    .iter()
                    .map(|r| (r.iteration as f64, 100.0 * r.accuracy))
                    .collect();
                let _ = chart.draw_series(LineSeries::new(pts.clone(), BLUE.stroke_width(2)));
                let _ = chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, BLUE.filled())));
                let _ = chart.draw_series(self.iterations.iter().map(|r| {
                    let x = r.iteration as f64;
                    PathElement::new(vec![(x, 100.0 * r.ci95.0), (x, 100.0 * r.ci95.1)], BLUE)
                }));
            }
            let _ = root.present();
        }
        buf
    }
}

/// A 95% interval of a proportion, in points.
pub(crate) fn interval(ci95: (f64, f64)) -> String {
    format!("[{:.1}, {:.1}]", 100.0 * ci95.0, 100.0 * ci95.1)
}

/// A paired difference and its 95% interval, in signed points.
pub(crate) fn gain(p: &arbor_tree::eval::Paired) -> String {
    format!("{:+.1} [{:+.1}, {:+.1}]", 100.0 * p.difference, 100.0 * p.ci95.0, 100.0 * p.ci95.1)
}

/// `head` and `rows` as right-aligned columns, two spaces apart.
pub(crate) fn aligned(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let width: Vec<usize> = (0..head.len())
        .map(|c| rows.iter().map(|r| r[c].len()).chain([head[c].len()]).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for cells in std::iter::once(head.iter().map(|h| h.to_string()).collect()).chain(rows) {
        let line: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        let _ = writeln!(s, "{}", line.join("  "));
    }
    s
}
