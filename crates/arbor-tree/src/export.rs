//! Training data from trees. Every format is a list of JSON rows (written as JSONL or Parquet by
//! `arbor_core::table`); schemas with one example each are in docs/formats.md.
//!
//! Terms: a *leaf* is a terminal node (the environment ended the path, or the depth limit cut
//! it); it is *correct* when the verifier accepted it. A response is the leaf's steps joined by
//! newlines.
use std::str::FromStr;

use arbor_core::content_hash;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{NodeId, Tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Dpo,
    StepDpo,
    Tpo,
    Oreo,
    Prm,
    Sft,
    Kto,
    Treelog,
}

impl Format {
    pub const ALL: [Format; 8] = [
        Format::Dpo,
        Format::StepDpo,
        Format::Tpo,
        Format::Oreo,
        Format::Prm,
        Format::Sft,
        Format::Kto,
        Format::Treelog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Dpo => "dpo",
            Format::StepDpo => "step-dpo",
            Format::Tpo => "tpo",
            Format::Oreo => "oreo",
            Format::Prm => "prm",
            Format::Sft => "sft",
            Format::Kto => "kto",
            Format::Treelog => "treelog",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown export format `{s}` (one of: {})",
                    Format::ALL.map(|f| f.name()).join(", ")
                )
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportOptions {
    /// step-dpo: the least Q difference between the chosen and rejected sibling.
    pub margin: f64,
    /// dpo: the most pairs taken from one tree.
    pub max_pairs_per_tree: usize,
    /// prm: a step is labelled good when its Monte Carlo estimate Q exceeds this.
    pub prm_threshold: f64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            margin: 0.1,
            max_pairs_per_tree: 4,
            prm_threshold: 0.0,
        }
    }
}

fn user(prompt: &str) -> Value {
    json!([{"role": "user", "content": prompt}])
}

fn assistant(text: &str) -> Value {
    json!([{"role": "assistant", "content": text}])
}

fn row_id(tree: &Tree, kind: &str, nodes: &[NodeId]) -> String {
    let ids: Vec<usize> = nodes.iter().map(|n| n.index()).collect();
    content_hash(&(kind, &tree.id, ids))[..16].to_string()
}

/// Terminal nodes in id order.
pub fn leaves(tree: &Tree) -> Vec<NodeId> {
    let mut l: Vec<NodeId> = tree
        .graph
        .node_indices()
        .filter(|&n| tree.graph[n].terminal && n != tree.root)
        .collect();
    l.sort();
    l
}

fn correct(tree: &Tree, n: NodeId) -> bool {
    tree.graph[n].eval.verified == Some(true)
}

fn response(tree: &Tree, n: NodeId) -> String {
    tree.steps(n).join("\n")
}

/// Leaf score for ranking: the verifier first, then Q.
fn leaf_score(tree: &Tree, n: NodeId) -> f64 {
    let node = &tree.graph[n];
    node.reward.unwrap_or(0.0) + node.q() * 1e-3
}

/// Rows of one format for a set of trees.
pub fn export(trees: &[Tree], format: Format, opts: &ExportOptions) -> Vec<Value> {
    let mut rows = Vec::new();
    for t in trees {
        match format {
            Format::Dpo => dpo(t, opts, &mut rows),
            Format::StepDpo => step_dpo(t, opts, &mut rows),
            Format::Tpo => tpo(t, &mut rows),
            Format::Oreo => oreo(t, &mut rows),
            Format::Prm => prm(t, opts, &mut rows),
            Format::Sft => sft(t, &mut rows),
            Format::Kto => kto(t, &mut rows),
            Format::Treelog => rows.push(treelog(t)),
        }
    }
    rows
}

/// Correct leaves (best Q first) paired with incorrect leaves (worst Q first), round robin.
fn dpo(t: &Tree, opts: &ExportOptions, rows: &mut Vec<Value>) {
    let (mut good, mut bad): (Vec<NodeId>, Vec<NodeId>) =
        leaves(t).into_iter().partition(|&n| correct(t, n));
    good.sort_by(|a, b| t.graph[*b].q().total_cmp(&t.graph[*a].q()));
    bad.sort_by(|a, b| t.graph[*a].q().total_cmp(&t.graph[*b].q()));
    let k = good.len().min(bad.len()).min(opts.max_pairs_per_tree);
    for i in 0..k {
        let (w, l) = (good[i], bad[i]);
        rows.push(json!({
            "id": row_id(t, "dpo", &[w, l]),
            "prompt": user(&t.prompt),
            "chosen": assistant(&response(t, w)),
            "rejected": assistant(&response(t, l)),
            "tree_id": t.id,
            "chosen_node": w.index(),
            "rejected_node": l.index(),
        }));
    }
}

/// Sibling steps under a shared prefix whose Q differ by at least the margin: for every visited
/// pair, the higher-Q step is chosen.
fn step_dpo(t: &Tree, opts: &ExportOptions, rows: &mut Vec<Value>) {
    let mut parents: Vec<NodeId> = t.graph.node_indices().collect();
    parents.sort();
    for p in parents {
        let kids: Vec<NodeId> = t
            .children(p)
            .into_iter()
            .filter(|&c| t.graph[c].visits > 0)
            .collect();
        for (i, &a) in kids.iter().enumerate() {
            for &b in &kids[i + 1..] {
                let (qa, qb) = (t.graph[a].q(), t.graph[b].q());
                if (qa - qb).abs() < opts.margin || (qa - qb).abs() == 0.0 {
                    continue;
                }
                let (w, l) = if qa > qb { (a, b) } else { (b, a) };
                let prefix = t.steps(p);
                let mut prompt = t.prompt.clone();
                for s in &prefix {
                    prompt.push('\n');
                    prompt.push_str(s);
                }
                rows.push(json!({
                    "id": row_id(t, "step-dpo", &[w, l]),
                    "prompt": prompt,
                    "chosen": t.graph[w].step,
                    "rejected": t.graph[l].step,
                    "question": t.prompt,
                    "prefix": prefix,
                    "step_index": prefix.len(),
                    "chosen_q": t.graph[w].q(),
                    "rejected_q": t.graph[l].q(),
                    "tree_id": t.id,
                }));
            }
        }
    }
}

/// One row per tree: its leaves ranked by score, best first.
fn tpo(t: &Tree, rows: &mut Vec<Value>) {
    let mut ls = leaves(t);
    if ls.len() < 2 {
        return;
    }
    ls.sort_by(|a, b| leaf_score(t, *b).total_cmp(&leaf_score(t, *a)));
    rows.push(json!({
        "id": row_id(t, "tpo", &ls),
        "prompt": t.prompt,
        "responses": ls.iter().map(|&n| response(t, n)).collect::<Vec<_>>(),
        "steps": ls.iter().map(|&n| t.steps(n)).collect::<Vec<_>>(),
        "scores": ls.iter().map(|&n| leaf_score(t, n)).collect::<Vec<_>>(),
        "correct": ls.iter().map(|&n| correct(t, n)).collect::<Vec<_>>(),
        "tree_id": t.id,
    }));
}

/// Every root-to-leaf trajectory with its 0/1 terminal reward.
fn oreo(t: &Tree, rows: &mut Vec<Value>) {
    for n in leaves(t) {
        rows.push(json!({
            "id": row_id(t, "oreo", &[n]),
            "prompt": t.prompt,
            "steps": t.steps(n),
            "reward": if correct(t, n) { 1.0 } else { 0.0 },
            "tree_id": t.id,
            "leaf": n.index(),
        }));
    }
}

/// TRL stepwise supervision: each step labelled by its Monte Carlo estimate.
fn prm(t: &Tree, opts: &ExportOptions, rows: &mut Vec<Value>) {
    for n in leaves(t) {
        let path: Vec<NodeId> = t.path(n).into_iter().skip(1).collect();
        rows.push(json!({
            "id": row_id(t, "prm", &[n]),
            "prompt": t.prompt,
            "completions": path.iter().map(|&p| t.graph[p].step.clone()).collect::<Vec<_>>(),
            "labels": path.iter().map(|&p| t.graph[p].q() > opts.prm_threshold).collect::<Vec<_>>(),
            "tree_id": t.id,
        }));
    }
}

/// The best correct path of each tree, as a conversation.
fn sft(t: &Tree, rows: &mut Vec<Value>) {
    let best = leaves(t)
        .into_iter()
        .filter(|&n| correct(t, n))
        .max_by(|a, b| t.graph[*a].q().total_cmp(&t.graph[*b].q()).then(b.cmp(a)));
    if let Some(n) = best {
        rows.push(json!({
            "id": row_id(t, "sft", &[n]),
            "messages": [{"role": "user", "content": t.prompt}, {"role": "assistant", "content": response(t, n)}],
            "tree_id": t.id,
        }));
    }
}

/// TRL's unpaired preference format: every leaf, desirable when correct.
fn kto(t: &Tree, rows: &mut Vec<Value>) {
    for n in leaves(t) {
        rows.push(json!({
            "id": row_id(t, "kto", &[n]),
            "prompt": user(&t.prompt),
            "completion": assistant(&response(t, n)),
            "label": correct(t, n),
            "tree_id": t.id,
        }));
    }
}

/// llm-reasoners' `TreeLog` JSON (one snapshot, the final tree): nodes and edges keyed by id,
/// edge data carrying Q, and each node's `selected_edge` the out-edge with the highest Q.
pub fn treelog(t: &Tree) -> Value {
    let mut ids: Vec<NodeId> = t.graph.node_indices().collect();
    ids.sort();
    let mut nodes = serde_json::Map::new();
    let mut edges = serde_json::Map::new();
    let mut edge_of = std::collections::HashMap::new();
    for &n in &ids {
        if let Some(p) = t.parent(n) {
            let eid = edges.len();
            edge_of.insert(n, eid);
            let node = &t.graph[n];
            edges.insert(
                eid.to_string(),
                json!({"id": eid, "source": p.index(), "target": n.index(),
                       "data": {"Q": node.q(), "N": node.visits, "reward": node.reward, "prior": node.prior}}),
            );
        }
    }
    for &n in &ids {
        let node = &t.graph[n];
        let selected = t
            .children(n)
            .into_iter()
            .max_by(|a, b| t.graph[*a].q().total_cmp(&t.graph[*b].q()).then(b.cmp(a)))
            .and_then(|c| edge_of.get(&c).copied());
        nodes.insert(
            n.index().to_string(),
            json!({"id": n.index(), "data": {"step": node.step, "depth": node.depth, "terminal": node.terminal, "verified": node.eval.verified},
                   "selected_edge": selected}),
        );
    }
    json!({"tree_id": t.id, "prompt": t.prompt, "logs": [{"nodes": nodes, "edges": edges}]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Evaluation;

    /// root ─ a (Q .8) ─ a1 (correct)
    ///      │          └ a2 (wrong)
    ///      └ b (Q 0) ─ b1 (wrong)
    fn sample() -> (Tree, [NodeId; 5]) {
        let mut t = Tree::new("t1", "What is 2+2?", Some("4".into()));
        let a = t.add_child(t.root, "2+2 = 4", 0.6).unwrap();
        let b = t.add_child(t.root, "2+2 = 5", 0.4).unwrap();
        let a1 = t.add_child(a, "The answer is 4", 1.0).unwrap();
        let a2 = t.add_child(a, "The answer is 3", 1.0).unwrap();
        let b1 = t.add_child(b, "The answer is 5", 1.0).unwrap();
        for (n, ok) in [(a1, true), (a2, false), (b1, false)] {
            let node = t.node_mut(n).unwrap();
            node.terminal = true;
            node.reward = Some(if ok { 1.0 } else { 0.0 });
            node.eval = Evaluation {
                verified: Some(ok),
                ..Default::default()
            };
        }
        for (n, v) in [
            (a1, 1.0),
            (a1, 1.0),
            (a1, 1.0),
            (a1, 1.0),
            (a2, 0.0),
            (b1, 0.0),
        ] {
            t.backup(n, v).unwrap();
        }
        (t, [a, b, a1, a2, b1])
    }

    #[test]
    fn dpo_pairs_correct_with_incorrect_leaves() {
        let (t, [_, _, a1, _, _]) = sample();
        let rows = export(&[t], Format::Dpo, &ExportOptions::default());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["chosen"][0]["content"], "2+2 = 4\nThe answer is 4");
        assert_eq!(rows[0]["chosen_node"], a1.index());
        // the worst incorrect leaf by Q: both are 0, the first in id order (a2)
        assert_eq!(
            rows[0]["rejected"][0]["content"],
            "2+2 = 4\nThe answer is 3"
        );
        assert_eq!(rows[0]["prompt"][0]["role"], "user");
    }

    #[test]
    fn step_dpo_respects_the_margin_and_names_the_divergence_step() {
        let (t, _) = sample();
        let rows = export(
            &[t.clone()],
            Format::StepDpo,
            &ExportOptions {
                margin: 0.5,
                ..Default::default()
            },
        );
        // root: a (Q 0.8) vs b (Q 0); a: a1 (1) vs a2 (0)
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["chosen"], "2+2 = 4");
        assert_eq!(rows[0]["step_index"], 0);
        assert_eq!(rows[1]["step_index"], 1);
        assert_eq!(rows[1]["prompt"], "What is 2+2?\n2+2 = 4");
        assert!(
            export(
                &[t],
                Format::StepDpo,
                &ExportOptions {
                    margin: 0.9,
                    ..Default::default()
                }
            )
            .len()
                == 1
        );
    }

    #[test]
    fn tpo_ranks_leaves_and_prm_labels_steps_by_q() {
        let (t, _) = sample();
        let tpo = export(&[t.clone()], Format::Tpo, &ExportOptions::default());
        assert_eq!(tpo[0]["responses"][0], "2+2 = 4\nThe answer is 4");
        assert_eq!(tpo[0]["correct"], json!([true, false, false]));
        let prm = export(&[t.clone()], Format::Prm, &ExportOptions::default());
        assert_eq!(prm.len(), 3);
        assert_eq!(prm[0]["labels"], json!([true, true]));
        assert_eq!(prm[1]["labels"], json!([true, false]));
        assert_eq!(prm[2]["labels"], json!([false, false]));
        let oreo = export(&[t.clone()], Format::Oreo, &ExportOptions::default());
        assert_eq!(
            oreo.iter()
                .map(|r| r["reward"].as_f64().unwrap())
                .collect::<Vec<_>>(),
            vec![1.0, 0.0, 0.0]
        );
        assert_eq!(
            export(&[t.clone()], Format::Sft, &ExportOptions::default())[0]["messages"][1]
                ["content"],
            "2+2 = 4\nThe answer is 4"
        );
        assert_eq!(
            export(&[t], Format::Kto, &ExportOptions::default())
                .iter()
                .filter(|r| r["label"] == true)
                .count(),
            1
        );
    }

    /// The content of every oreo, sft and kto row, not only its columns: each trajectory's steps
    /// with its own leaf's reward, the best correct path by Q when two are correct, each KTO
    /// completion labelled by its own leaf.
    #[test]
    fn oreo_sft_and_kto_rows_carry_their_own_leaf() {
        let (mut t, [_, b, a1, a2, b1]) = sample();
        // A second correct leaf, under b, of Q 0.5 (one success, one failure backed up).
        let b2 = t.add_child(b, "The answer is 4", 1.0).unwrap();
        let node = t.node_mut(b2).unwrap();
        node.terminal = true;
        node.eval = Evaluation {
            verified: Some(true),
            ..Default::default()
        };
        t.backup(b2, 1.0).unwrap();
        t.backup(b2, 0.0).unwrap();
        let opts = ExportOptions::default();
        let by_leaf = |rows: &[Value], key: &str| -> std::collections::BTreeMap<usize, Value> {
            rows.iter()
                .map(|r| (r[key].as_u64().unwrap() as usize, r.clone()))
                .collect()
        };
        let oreo = by_leaf(&export(&[t.clone()], Format::Oreo, &opts), "leaf");
        assert_eq!(oreo.len(), 4);
        for (leaf, steps, reward) in [
            (a1, vec!["2+2 = 4", "The answer is 4"], 1.0),
            (a2, vec!["2+2 = 4", "The answer is 3"], 0.0),
            (b1, vec!["2+2 = 5", "The answer is 5"], 0.0),
            (b2, vec!["2+2 = 5", "The answer is 4"], 1.0),
        ] {
            let r = &oreo[&leaf.index()];
            assert_eq!(r["steps"], json!(steps), "{r}");
            assert_eq!(r["reward"], reward, "{r}");
            assert_eq!(r["prompt"], "What is 2+2?");
        }
        let sft = export(&[t.clone()], Format::Sft, &opts);
        assert_eq!(sft.len(), 1, "one row per tree");
        assert_eq!(
            sft[0]["messages"],
            json!([{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "2+2 = 4\nThe answer is 4"}]),
            "the correct leaf of higher Q (a1 over b2)"
        );
        let kto = export(&[t], Format::Kto, &opts);
        let labels: std::collections::BTreeMap<String, bool> = kto
            .iter()
            .map(|r| {
                (
                    r["completion"][0]["content"].as_str().unwrap().to_string(),
                    r["label"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            labels,
            [
                ("2+2 = 4\nThe answer is 4", true),
                ("2+2 = 4\nThe answer is 3", false),
                ("2+2 = 5\nThe answer is 5", false),
                ("2+2 = 5\nThe answer is 4", true),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
        );
    }

    #[test]
    fn treelog_selects_the_highest_q_edge() {
        let (t, [a, ..]) = sample();
        let log = treelog(&t);
        let snap = &log["logs"][0];
        assert_eq!(snap["nodes"].as_object().unwrap().len(), 6);
        assert_eq!(snap["edges"].as_object().unwrap().len(), 5);
        let sel = snap["nodes"]["0"]["selected_edge"].as_u64().unwrap();
        assert_eq!(snap["edges"][sel.to_string()]["target"], a.index());
    }
}
