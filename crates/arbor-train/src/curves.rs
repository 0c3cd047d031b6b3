//! Training curves: one CSV row per optimizer step (empty cells where a column has no value at
//! that step, such as evaluation columns), drawn as one SVG panel per column.
use std::io::Write;
use std::path::Path;

use plotters::prelude::*;

pub struct Curves {
    pub columns: Vec<String>,
    /// (step, value per column).
    pub rows: Vec<(usize, Vec<Option<f64>>)>,
}

impl Curves {
    pub fn new(columns: &[&str]) -> Self {
        Self {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, step: usize, values: &[(&str, f64)]) {
        let mut row = vec![None; self.columns.len()];
        for (name, v) in values {
            if let Some(i) = self.columns.iter().position(|c| c == name) {
                row[i] = Some(*v);
            }
        }
        match self.rows.last_mut() {
            Some((s, r)) if *s == step => r.iter_mut().zip(row).for_each(|(a, b)| *a = b.or(*a)),
            _ => self.rows.push((step, row)),
        }
    }

    /// Reads a CSV this type wrote, keeping steps `< upto` (resume continues from there).
    pub fn read(path: &Path, upto: usize) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut lines = text.lines();
        let header = lines
            .next()
            .ok_or_else(|| format!("{}: empty", path.display()))?;
        let columns: Vec<String> = header.split(',').skip(1).map(str::to_string).collect();
        let mut rows = Vec::new();
        for (i, l) in lines.enumerate() {
            let mut cells = l.split(',');
            let step: usize = cells
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("{}:{}: step", path.display(), i + 2))?;
            if step >= upto {
                break;
            }
            rows.push((step, cells.map(|c| c.parse().ok()).collect()));
        }
        Ok(Self { columns, rows })
    }

    /// Replaces the file whole (written beside it, then renamed): a kill mid-write leaves the
    /// previous curves, never an empty or torn file that a resume could not read.
    pub fn write_csv(&self, path: &Path) -> std::io::Result<()> {
        let mut f = Vec::new();
        writeln!(f, "step,{}", self.columns.join(","))?;
        for (step, row) in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|v| v.map(|x| format!("{x}")).unwrap_or_default())
                .collect();
            writeln!(f, "{step},{}", cells.join(","))?;
        }
        arbor_core::write_atomic(path, f)
    }

    /// One small line chart per column with at least one value, in a grid.
    pub fn write_svg(&self, path: &Path, title: &str) -> Result<(), String> {
        let live: Vec<usize> = (0..self.columns.len())
            .filter(|&c| self.rows.iter().any(|r| r.1[c].is_some_and(f64::is_finite)))
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        let cols = 3usize;
        let rows = live.len().div_ceil(cols);
        let root =
            SVGBackend::new(path, (360 * cols as u32, 240 * rows as u32 + 30)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let root = root.titled(title, ("sans-serif", 18)).map_err(|x| e(&x))?;
        for (panel, &c) in root.split_evenly((rows, cols)).iter().zip(&live) {
            let pts: Vec<(f64, f64)> = self
                .rows
                .iter()
                .filter_map(|(s, r)| r[c].filter(|v| v.is_finite()).map(|v| (*s as f64, v)))
                .collect();
            let (x0, x1) = pts
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                    (a.min(p.0), b.max(p.0))
                });
            let (y0, y1) = pts
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                    (a.min(p.1), b.max(p.1))
                });
            let pad = ((y1 - y0) * 0.05).max(1e-9);
            let mut chart = ChartBuilder::on(panel)
                .caption(&self.columns[c], ("sans-serif", 14))
                .margin(8)
                .x_label_area_size(24)
                .y_label_area_size(48)
                .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_labels(5)
                .y_labels(5)
                .draw()
                .map_err(|x| e(&x))?;
            chart
                .draw_series(LineSeries::new(pts, &BLUE))
                .map_err(|x| e(&x))?;
        }
        root.present().map_err(|x| e(&x))
    }
}
