//! The job's output files, written from the journal's records in input order (so a resumed job
//! writes exactly what an uninterrupted one would): pairs.jsonl, pairs.parquet,
//! provenance.jsonl, dead_letter.jsonl, gated_out.jsonl and the dataset card README.md.
use std::fmt::Write as _;
use std::path::Path;

use arbor_core::table::{write_jsonl, write_parquet, TableError};
use serde_json::{json, Value};

use crate::config::SynthConfig;
use crate::journal::{ItemRecord, Status};

/// Counts for the summary line and the card.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub items: usize,
    pub accepted: usize,
    pub gated_out: usize,
    pub dead: usize,
    /// Items not played because their prompt repeats an earlier item's.
    pub duplicates: usize,
    /// Dead letters from a bug in arbor (a panic caught while playing the item).
    pub internal: usize,
    pub pairs: usize,
    pub rankings_agree: usize,
    pub judged: usize,
}

pub fn counts(records: &[ItemRecord]) -> Counts {
    let mut c = Counts {
        items: records.len(),
        ..Default::default()
    };
    for r in records {
        match r.status {
            Status::Accepted => c.accepted += 1,
            Status::GatedOut => c.gated_out += 1,
            Status::Dead => c.dead += 1,
            Status::Duplicate => c.duplicates += 1,
        }
        if r.cause.as_deref().is_some_and(|m| m.starts_with(crate::engine::INTERNAL_ERROR)) {
            c.internal += 1;
        }
        c.pairs += r.rows.len();
        if let Some(a) = r.rankings_agree {
            c.judged += 1;
            c.rankings_agree += usize::from(a);
        }
    }
    c
}

/// Models by role, for the card.
#[derive(Clone)]
pub struct ModelNames {
    pub target: String,
    pub judge: String,
    pub reward: String,
    pub optimizer: String,
}

pub fn write_all(
    dir: &Path,
    records: &[ItemRecord],
    cfg: &SynthConfig,
    models: &ModelNames,
    total_inputs: usize,
    accounts: &[crate::accounting::RoleAccount],
) -> Result<Counts, TableError> {
    let rows: Vec<Value> = records
        .iter()
        .flat_map(|r| r.rows.iter().cloned())
        .collect();
    let provenance: Vec<Value> = records
        .iter()
        .filter(|r| r.status == Status::Accepted)
        .flat_map(|r| r.provenance.iter().cloned())
        .collect();
    let letter = |r: &ItemRecord| json!({"index": r.index, "item_id": r.id, "line": r.line, "rounds": r.rounds, "cause": r.cause, "item": r.input, "history": r.provenance.first().and_then(|p| p.get("history")).cloned()});
    let dead: Vec<Value> = records
        .iter()
        .filter(|r| r.status == Status::Dead)
        .map(letter)
        .collect();
    let gated: Vec<Value> = records
        .iter()
        .filter(|r| r.status == Status::GatedOut)
        .map(letter)
        .collect();
    let duplicates: Vec<Value> = records
        .iter()
        .filter(|r| r.status == Status::Duplicate)
        .map(|r| json!({"index": r.index, "item_id": r.id, "duplicate_of": r.provenance.first().map(|p| p["duplicate_of"].clone()), "kind": r.provenance.first().map(|p| p["kind"].clone()), "item": r.input}))
        .collect();
    // Each file replaced whole (written beside it, then renamed): a kill during a snapshot
    // leaves the previous one, never a torn file.
    let atomically = |name: &str, write: &dyn Fn(&Path) -> Result<(), TableError>| {
        let (path, tmp) = (dir.join(name), dir.join(format!(".{name}.tmp")));
        write(&tmp)?;
        if arbor_core::crash::due("output") {
            let half = std::fs::metadata(&tmp).map_or(0, |m| m.len() / 2);
            let _ = std::fs::OpenOptions::new().write(true).open(&tmp).and_then(|f| f.set_len(half));
            arbor_core::crash::now("an output write");
        }
        std::fs::rename(&tmp, &path).map_err(|source| TableError::Io { path, source })
    };
    atomically("pairs.jsonl", &|p| write_jsonl(p, &rows))?;
    atomically("pairs.parquet", &|p| write_parquet(p, &rows))?;
    atomically("provenance.jsonl", &|p| write_jsonl(p, &provenance))?;
    atomically("dead_letter.jsonl", &|p| write_jsonl(p, &dead))?;
    atomically("gated_out.jsonl", &|p| write_jsonl(p, &gated))?;
    atomically("duplicates.jsonl", &|p| write_jsonl(p, &duplicates))?;
    let c = counts(records);
    let mut card = dataset_card(records, cfg, models, &c, total_inputs);
    card += &format!("\n## Calls, tokens and cost by role\n\n{}", crate::accounting::table(accounts));
    atomically("README.md", &|p| {
        std::fs::write(p, &card).map_err(|source| TableError::Io {
            path: p.to_path_buf(),
            source,
        })
    })?;
    Ok(c)
}

fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> String {
    if values.is_empty() {
        return "(none)\n".into();
    }
    let mut counts = vec![0usize; bins];
    for v in values {
        let b = (((v - lo) / (hi - lo)) * bins as f64)
            .floor()
            .clamp(0.0, (bins - 1) as f64) as usize;
        counts[b] += 1;
    }
    let max = *counts.iter().max().unwrap_or(&1).max(&1);
    let mut s = String::from("```\n");
    for (i, n) in counts.iter().enumerate() {
        let from = lo + (hi - lo) * i as f64 / bins as f64;
        let to = lo + (hi - lo) * (i + 1) as f64 / bins as f64;
        let _ = writeln!(
            s,
            "{from:>5.1}–{to:<5.1} {:<40} {n}",
            "#".repeat(n * 40 / max)
        );
    }
    s.push_str("```\n");
    s
}

/// The card's YAML front matter, as the Hugging Face Hub and `datasets` read it: with `configs`
/// naming each file, `datasets.load_dataset(DIR)` loads the pairs (the default config) and
/// `load_dataset(DIR, "provenance")` the rest, without arguments to guess. A file without rows
/// gets no config (an empty JSONL file does not load). All configs are the JSONL files:
/// `datasets` reads every config of a directory with one builder, and `pairs.parquet` beside
/// JSONL configs is read as JSON otherwise.
fn front_matter(c: &Counts) -> String {
    let size = match c.pairs {
        0..1_000 => "n<1K",
        1_000..10_000 => "1K<n<10K",
        10_000..100_000 => "10K<n<100K",
        100_000..1_000_000 => "100K<n<1M",
        _ => "1M<n<10M",
    };
    let mut s = format!("---\nformat: arbor.pairs/1\nlicense: other\ntask_categories:\n- text-generation\ntags:\n- dpo\n- preference\n- synthetic\n- arbor\nsize_categories:\n- {size}\nconfigs:\n");
    let configs = [
        ("default", "pairs.jsonl", c.pairs),
        ("provenance", "provenance.jsonl", c.pairs),
        ("dead_letters", "dead_letter.jsonl", c.dead),
        ("gated_out", "gated_out.jsonl", c.gated_out),
        ("duplicates", "duplicates.jsonl", c.duplicates),
    ];
    for (name, path, rows) in configs {
        if rows > 0 {
            s += &format!("- config_name: {name}\n  data_files:\n  - split: train\n    path: {path}\n");
        }
    }
    s + "---\n\n"
}

fn dataset_card(
    records: &[ItemRecord],
    cfg: &SynthConfig,
    m: &ModelNames,
    c: &Counts,
    total: usize,
) -> String {
    let judge: Vec<f64> = records
        .iter()
        .flat_map(|r| r.judge_scores.iter().copied())
        .collect();
    let margins: Vec<f64> = records
        .iter()
        .filter(|r| r.judge_scores.len() >= 2)
        .map(|r| {
            let max = r.judge_scores.iter().cloned().fold(f64::MIN, f64::max);
            let min = r.judge_scores.iter().cloned().fold(f64::MAX, f64::min);
            max - min
        })
        .collect();
    let reward: Vec<f64> = records
        .iter()
        .flat_map(|r| r.reward_scores.iter().copied())
        .collect();
    let mut prompts: Vec<(String, String, String, String)> = Vec::new();
    for r in records.iter().filter(|r| r.status == Status::Accepted) {
        for w in &r.wins {
            let key = (
                w.target.id.clone(),
                w.target.text.clone(),
                w.judge.id.clone(),
                w.judge.text.clone(),
            );
            if !prompts.contains(&key) {
                prompts.push(key);
            }
        }
    }
    let rate = if c.items == 0 {
        0.0
    } else {
        100.0 * c.accepted as f64 / c.items as f64
    };
    let mut s = String::new();
    s += &front_matter(c);
    let _ = writeln!(s, "# Preference pairs made by `arbor synth` (Anyprefer)\n");
    let _ = writeln!(s, "Files: `pairs.jsonl` / `pairs.parquet` (TRL preference format, {}), `provenance.jsonl` (one row per pair, keyed by `pair_id`), `dead_letter.jsonl`, `gated_out.jsonl`. `datasets.load_dataset(DIR)` loads the pairs; `load_dataset(DIR, \"provenance\")` (or `dead_letters`, `gated_out`) the others. License: that of the input prompts and the models' terms (`license: other`).\n", serde_json::to_value(cfg.format).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default());
    let _ = writeln!(s, "## Models\n\n| role | model |\n| --- | --- |\n| target | {} |\n| judge | {} |\n| reward | {} |\n| optimizer | {} |\n", m.target, m.judge, if cfg.no_gate { "(gate off)" } else { &m.reward }, if cfg.no_gate { "(gate off)" } else { &m.optimizer });
    let _ = writeln!(s, "## Counts\n\n| | |\n| --- | --- |\n| input rows | {total} |\n| items finished | {} |\n| accepted items | {} ({rate:.1}%) |\n| pairs | {} |\n| gated out | {} |\n| dead letters | {} |\n| duplicate prompts removed | {} |\n| judge orders agree | {} of {} |\n", c.items, c.accepted, c.pairs, c.gated_out, c.dead, c.duplicates, c.rankings_agree, c.judged);
    let agreement: Vec<f64> = records.iter().flat_map(|r| r.provenance.iter().filter_map(|p| p["jury_agreement"].as_f64())).collect();
    if !agreement.is_empty() {
        let unanimous = agreement.iter().filter(|a| **a >= 1.0).count();
        let _ = writeln!(s, "## Jury\n\n{} judges ({}), aggregated by {:?}; on the {} accepted pairs the share of judges ranking chosen above rejected averaged {:.2}, unanimous on {unanimous}.\n",
            1 + cfg.judges.len(), std::iter::once(m.judge.as_str()).chain(cfg.judges.iter().filter_map(|j| j.model.as_deref())).collect::<Vec<_>>().join(", "),
            cfg.jury_aggregate, agreement.len(), agreement.iter().sum::<f64>() / agreement.len() as f64);
    }
    let _ = writeln!(
        s,
        "## Judge scores (all candidates, last round)\n\n{}",
        histogram(&judge, 1.0, 10.0001, 9)
    );
    let _ = writeln!(
        s,
        "## Judge score margin (best − worst)\n\n{}",
        histogram(&margins, 0.0, 9.0001, 9)
    );
    let _ = writeln!(
        s,
        "## Reward scores (pairs that reached the gate)\n\n{}",
        histogram(&reward, 1.0, 10.0001, 9)
    );
    let _ = writeln!(s, "## Prompts that earned accepted pairs\n");
    for (tid, t, jid, j) in prompts.iter().take(20) {
        let _ = writeln!(s, "- target `{tid}`: {t}\n  judge `{jid}`: {j}");
    }
    let _ = writeln!(
        s,
        "\n## Config\n\n```toml\n{}```",
        toml::to_string(cfg).unwrap_or_default()
    );
    s
}
