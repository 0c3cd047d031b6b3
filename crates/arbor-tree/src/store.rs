//! The tree store: nodes with step text, visit counts and values, evaluator outputs and
//! provenance, in a petgraph `StableGraph` (node ids stay valid when nodes are removed); saved
//! as JSONL, one tree per line, versioned `arbor.tree/1`.
use std::io::{BufRead, Write};
use std::path::Path;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::Direction;
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "arbor.tree/1";

/// A node's stable id within its tree.
pub type NodeId = NodeIndex<u32>;

/// What evaluators said about a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// The environment's terminal verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_rationale: Option<String>,
    /// A learned or Monte Carlo value estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_estimate: Option<f64>,
}

/// Which model made a step and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// One reasoning step. The state it stands for is the prompt plus the steps on its path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// The step text ("" at the root).
    pub step: String,
    pub depth: u32,
    /// Visit count N.
    pub visits: u32,
    /// Sum of backed-up values W; Q = W / N.
    pub value_sum: f64,
    /// Policy prior P (PUCT).
    pub prior: f64,
    /// Immediate reward of reaching this node, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<f64>,
    pub terminal: bool,
    #[serde(default)]
    pub eval: Evaluation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

impl Node {
    pub fn new(step: impl Into<String>, depth: u32, prior: f64) -> Self {
        Self {
            step: step.into(),
            depth,
            visits: 0,
            value_sum: 0.0,
            prior,
            reward: None,
            terminal: false,
            eval: Evaluation::default(),
            provenance: None,
        }
    }

    /// The visit-weighted mean value Q (0 before any visit).
    pub fn q(&self) -> f64 {
        if self.visits == 0 {
            0.0
        } else {
            self.value_sum / f64::from(self.visits)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: tree {tree}: {msg}")]
    Line {
        path: String,
        line: usize,
        tree: String,
        msg: String,
    },
    #[error("node {0:?} is not in the tree")]
    NoNode(NodeId),
}

/// One search tree: a prompt, its reference answer if known, and the step graph.
#[derive(Debug, Clone)]
pub struct Tree {
    pub id: String,
    pub prompt: String,
    pub reference: Option<String>,
    /// The environment the task came from, when known.
    pub env: Option<String>,
    pub graph: StableDiGraph<Node, (), u32>,
    pub root: NodeId,
}

/// The saved form: nodes in id order, each with its parent.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedTree {
    format: String,
    id: String,
    prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env: Option<String>,
    nodes: Vec<SavedNode>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedNode {
    id: u32,
    parent: Option<u32>,
    #[serde(flatten)]
    node: Node,
}

impl Tree {
    pub fn new(
        id: impl Into<String>,
        prompt: impl Into<String>,
        reference: Option<String>,
    ) -> Self {
        let mut graph = StableDiGraph::default();
        let root = graph.add_node(Node::new("", 0, 1.0));
        Self {
            id: id.into(),
            prompt: prompt.into(),
            reference,
            env: None,
            graph,
            root,
        }
    }

    pub fn node(&self, id: NodeId) -> Result<&Node, TreeError> {
        self.graph.node_weight(id).ok_or(TreeError::NoNode(id))
    }

    pub fn node_mut(&mut self, id: NodeId) -> Result<&mut Node, TreeError> {
        self.graph.node_weight_mut(id).ok_or(TreeError::NoNode(id))
    }

    /// Adds a child step under `parent`.
    pub fn add_child(
        &mut self,
        parent: NodeId,
        step: impl Into<String>,
        prior: f64,
    ) -> Result<NodeId, TreeError> {
        let depth = self.node(parent)?.depth + 1;
        let child = self.graph.add_node(Node::new(step, depth, prior));
        self.graph.add_edge(parent, child, ());
        Ok(child)
    }

    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        self.graph
            .neighbors_directed(id, Direction::Incoming)
            .next()
    }

    /// Children in insertion order.
    pub fn children(&self, id: NodeId) -> Vec<NodeId> {
        let mut c: Vec<NodeId> = self
            .graph
            .neighbors_directed(id, Direction::Outgoing)
            .collect();
        c.sort();
        c
    }

    /// Nodes from the root down to `id`.
    pub fn path(&self, id: NodeId) -> Vec<NodeId> {
        let mut p = vec![id];
        let mut cur = id;
        while let Some(up) = self.parent(cur) {
            p.push(up);
            cur = up;
        }
        p.reverse();
        p
    }

    /// The step texts from the root's first child down to `id`.
    pub fn steps(&self, id: NodeId) -> Vec<String> {
        self.path(id)
            .into_iter()
            .skip(1)
            .filter_map(|n| self.graph.node_weight(n).map(|x| x.step.clone()))
            .collect()
    }

    /// Adds one visit with `value` to every node from `leaf` up to the root (MCTS backup:
    /// Q becomes the visit-weighted mean of the values backed up through the node).
    pub fn backup(&mut self, leaf: NodeId, value: f64) -> Result<(), TreeError> {
        for n in self.path(leaf) {
            let node = self.node_mut(n)?;
            node.visits += 1;
            node.value_sum += value;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    fn to_saved(&self) -> SavedTree {
        let mut ids: Vec<NodeId> = self.graph.node_indices().collect();
        ids.sort();
        SavedTree {
            format: FORMAT.into(),
            id: self.id.clone(),
            prompt: self.prompt.clone(),
            reference: self.reference.clone(),
            env: self.env.clone(),
            nodes: ids
                .into_iter()
                .map(|n| SavedNode {
                    id: n.index() as u32,
                    parent: self.parent(n).map(|p| p.index() as u32),
                    node: self.graph[n].clone(),
                })
                .collect(),
        }
    }

    fn from_saved(s: SavedTree) -> Result<Self, String> {
        if s.format != FORMAT {
            return Err(format!("format `{}` is not {FORMAT}", s.format));
        }
        let mut graph: StableDiGraph<Node, (), u32> = StableDiGraph::default();
        // Recreate ids exactly: fill gaps with placeholders, then remove them.
        let max = s.nodes.iter().map(|n| n.id).max().ok_or("no nodes")?;
        if max as usize > s.nodes.len() * 4 + 1024 {
            return Err(format!(
                "node id {max} is far beyond the {} nodes listed",
                s.nodes.len()
            ));
        }
        let mut present = vec![false; max as usize + 1];
        for _ in 0..=max {
            graph.add_node(Node::new("", 0, 0.0));
        }
        for n in &s.nodes {
            if std::mem::replace(&mut present[n.id as usize], true) {
                return Err(format!("node {} listed twice", n.id));
            }
            graph[NodeIndex::new(n.id as usize)] = n.node.clone();
        }
        let mut root = None;
        for n in &s.nodes {
            match n.parent {
                Some(p) if (p as usize) < present.len() && present[p as usize] && p != n.id => {
                    graph.add_edge(
                        NodeIndex::new(p as usize),
                        NodeIndex::new(n.id as usize),
                        (),
                    );
                }
                Some(p) => {
                    return Err(format!(
                        "node {}: parent {p} is not a node of this tree",
                        n.id
                    ))
                }
                None if root.is_none() => root = Some(NodeIndex::new(n.id as usize)),
                None => return Err(format!("node {}: a second root", n.id)),
            }
        }
        for (i, p) in present.iter().enumerate() {
            if !p {
                graph.remove_node(NodeIndex::new(i));
            }
        }
        let root = root.ok_or("no root (a node without parent)")?;
        let tree = Self {
            id: s.id,
            prompt: s.prompt,
            reference: s.reference,
            env: s.env,
            graph,
            root,
        };
        // Every node must hang below the root (no cycles, no detached parts).
        let mut dfs = petgraph::visit::Dfs::new(&tree.graph, root);
        let mut reachable = 0;
        while dfs.next(&tree.graph).is_some() {
            reachable += 1;
        }
        if reachable != tree.graph.node_count() {
            return Err("some nodes are not below the root (cycle or detached part)".into());
        }
        Ok(tree)
    }

    /// One JSON line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(&self.to_saved()).expect("trees serialize")
    }
}

/// Trees that loaded, and the lines that did not (with why).
#[derive(Debug, Default)]
pub struct LoadReport {
    pub trees: Vec<Tree>,
    pub errors: Vec<TreeError>,
}

pub fn save_jsonl(path: &Path, trees: &[Tree]) -> Result<(), TreeError> {
    let io = |e| TreeError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for t in trees {
        writeln!(f, "{}", t.to_json_line()).map_err(io)?;
    }
    f.flush().map_err(io)
}

/// Whether a file's first non-empty line is an `arbor.tree/1` record.
fn is_tree_file(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let first = std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .find(|l| !l.trim().is_empty());
    first.is_some_and(|l| l.starts_with(&format!("{{\"format\":\"{FORMAT}\"")))
}

/// Loads trees from a JSONL file, or from every tree file (`*.jsonl` starting with an
/// `arbor.tree/1` record) of a directory, in name order; exports beside them are passed over.
pub fn load_path(path: &Path) -> Result<LoadReport, TreeError> {
    if !path.is_dir() {
        return load_jsonl(path);
    }
    let io = |e| TreeError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl") && is_tree_file(p))
        .collect();
    files.sort();
    let mut report = LoadReport::default();
    for f in files {
        let r = load_jsonl(&f)?;
        report.trees.extend(r.trees);
        report.errors.extend(r.errors);
    }
    Ok(report)
}

/// Loads every tree it can; a corrupt or truncated line becomes an error naming the file, line
/// and tree, and the other trees still load.
pub fn load_jsonl(path: &Path) -> Result<LoadReport, TreeError> {
    let io = |e| TreeError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let f = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut report = LoadReport::default();
    for (i, line) in f.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let tree_id = || {
            serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("id").and_then(|x| x.as_str()).map(str::to_string))
                .or_else(|| {
                    line.split("\"id\":\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "?".into())
        };
        let bad = |msg: String| TreeError::Line {
            path: path.display().to_string(),
            line: i + 1,
            tree: tree_id(),
            msg,
        };
        match serde_json::from_str::<SavedTree>(&line) {
            Ok(s) => match Tree::from_saved(s) {
                Ok(t) => report.trees.push(t),
                Err(msg) => report.errors.push(bad(msg)),
            },
            Err(e) => report.errors.push(bad(e.to_string())),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same(a: &Tree, b: &Tree) -> bool {
        a.to_json_line() == b.to_json_line() && a.root == b.root
    }

    #[test]
    fn backup_makes_q_the_visit_weighted_mean() {
        let mut t = Tree::new("t", "p", None);
        let a = t.add_child(t.root, "a", 0.5).unwrap();
        let b = t.add_child(a, "b", 1.0).unwrap();
        t.backup(b, 1.0).unwrap();
        t.backup(a, 0.0).unwrap();
        t.backup(b, 1.0).unwrap();
        assert_eq!(t.node(b).unwrap().visits, 2);
        assert_eq!(t.node(a).unwrap().visits, 3);
        assert!((t.node(a).unwrap().q() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(t.node(t.root).unwrap().visits, 3);
        assert_eq!(t.steps(b), vec!["a", "b"]);
        assert_eq!(t.node(b).unwrap().depth, 2);
    }

    #[test]
    fn corrupt_lines_are_reported_and_the_rest_load() {
        let dir = std::env::temp_dir().join(format!("arbor-trees-{}", std::process::id()));
        let mut t1 = Tree::new("good-1", "p", Some("4".into()));
        let c = t1.add_child(t1.root, "2+2=4", 0.9).unwrap();
        t1.node_mut(c).unwrap().terminal = true;
        let t2 = Tree::new("good-2", "q", None);
        save_jsonl(&dir, &[t1.clone(), t2]).unwrap();
        let mut text = std::fs::read_to_string(&dir).unwrap();
        let line = t1.to_json_line();
        text.insert_str(0, &format!("{}\n", &line[..line.len() / 2]));
        std::fs::write(&dir, text).unwrap();
        let r = load_jsonl(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(r.trees.len(), 2);
        assert!(same(&r.trees[0], &t1));
        assert_eq!(r.errors.len(), 1);
        let e = r.errors[0].to_string();
        assert!(e.contains(":1: tree good-1:"), "{e}");
    }

    proptest! {
        #[test]
        fn save_load_round_trips(parents in proptest::collection::vec(0usize..1000, 0..60), removals in proptest::collection::vec(0usize..1000, 0..5), values in proptest::collection::vec(-1.0f64..1.0, 1..20)) {
            let mut t = Tree::new("rt", "prompt \"quoted\" ✓", Some("42".into()));
            let mut ids = vec![t.root];
            for (i, p) in parents.iter().enumerate() {
                let parent = ids[p % ids.len()];
                let c = t.add_child(parent, format!("step {i}\n"), (i as f64) / 100.0).unwrap();
                ids.push(c);
            }
            for (k, v) in values.iter().enumerate() {
                t.backup(ids[k * 7 % ids.len()], *v).unwrap();
            }
            // Remove some leaves: ids must survive the gaps.
            for r in removals {
                let n = ids[r % ids.len()];
                if n != t.root && t.children(n).is_empty() {
                    t.graph.remove_node(n);
                    ids.retain(|&x| x != n);
                }
            }
            let line = t.to_json_line();
            let back = Tree::from_saved(serde_json::from_str(&line).unwrap()).unwrap();
            prop_assert!(same(&t, &back));
            for &n in &ids {
                prop_assert_eq!(t.node(n).unwrap(), back.node(n).unwrap());
                prop_assert_eq!(t.parent(n), back.parent(n));
            }
        }

        #[test]
        fn backup_keeps_parent_visits_at_least_the_sum_of_children(leaves in proptest::collection::vec(0usize..30, 1..100)) {
            let mut t = Tree::new("b", "p", None);
            let mut ids = vec![t.root];
            for i in 0..30usize {
                let c = t.add_child(ids[i / 3], "s", 0.1).unwrap();
                ids.push(c);
            }
            for l in leaves {
                t.backup(ids[l], 1.0).unwrap();
            }
            for &n in &ids {
                let kids: u32 = t.children(n).iter().map(|&c| t.node(c).unwrap().visits).sum();
                prop_assert!(t.node(n).unwrap().visits >= kids);
            }
        }

        #[test]
        fn arbitrary_lines_never_panic(s in "\\PC{0,200}") {
            if let Ok(saved) = serde_json::from_str::<SavedTree>(&s) {
                let _ = Tree::from_saved(saved);
            }
        }
    }
}
