//! Viewing trees: one self-contained HTML page (no network: data, script and style inline) and
//! Graphviz DOT.
use serde_json::{json, Value};

use crate::{NodeId, Tree};

const PAGE: &str = include_str!("viewer.html");
const SLOT: &str = "/*ARBOR_DATA*/";

/// The compact form the page reads: per node `[id, parent, step, N, Q, reward, terminal, verified]`.
fn page_data(trees: &[Tree]) -> Value {
    Value::Array(
        trees
            .iter()
            .map(|t| {
                let mut ids: Vec<NodeId> = t.graph.node_indices().collect();
                ids.sort();
                let nodes: Vec<Value> = ids
                    .into_iter()
                    .map(|n| {
                        let x = &t.graph[n];
                        json!([
                            n.index(),
                            t.parent(n).map(|p| p.index()),
                            x.step,
                            x.visits,
                            x.q(),
                            x.reward,
                            x.terminal,
                            x.eval.verified
                        ])
                    })
                    .collect();
                json!({"id": t.id, "prompt": t.prompt, "reference": t.reference, "nodes": nodes})
            })
            .collect(),
    )
}

/// The HTML page for `trees`.
pub fn html(trees: &[Tree]) -> String {
    // Inside <script>, "</" could end the element early; "<\/" is the same JSON string.
    let data = page_data(trees).to_string().replace("</", "<\\/");
    PAGE.replacen(SLOT, &data, 1)
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Graphviz DOT: one cluster per tree, nodes labelled with their step, N and Q, coloured by
/// verdict.
pub fn dot(trees: &[Tree]) -> String {
    let mut out =
        String::from("digraph arbor {\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n");
    for (ti, t) in trees.iter().enumerate() {
        out.push_str(&format!(
            "  subgraph cluster_{ti} {{\n    label=\"{}\";\n",
            dot_escape(&t.id)
        ));
        let mut ids: Vec<NodeId> = t.graph.node_indices().collect();
        ids.sort();
        for n in ids {
            let x = &t.graph[n];
            let step: String = if n == t.root {
                "(root)".into()
            } else {
                x.step.chars().take(80).collect()
            };
            let colour = match x.eval.verified {
                Some(true) => ", color=\"#1a8f3a\", penwidth=2",
                Some(false) => ", color=\"#c62828\", penwidth=2",
                None => "",
            };
            out.push_str(&format!(
                "    t{ti}n{} [label=\"{}\\nN={} Q={:.3}\"{colour}];\n",
                n.index(),
                dot_escape(&step),
                x.visits,
                x.q()
            ));
            if let Some(p) = t.parent(n) {
                out.push_str(&format!(
                    "    t{ti}n{} -> t{ti}n{};\n",
                    p.index(),
                    n.index()
                ));
            }
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_embeds_data_safely_and_dot_lists_every_edge() {
        let mut t = Tree::new("t</script>", "q", None);
        let a = t.add_child(t.root, "say \"hi\"\n</script>", 1.0).unwrap();
        t.backup(a, 1.0).unwrap();
        let page = html(&[t.clone()]);
        assert_eq!(
            page.matches("</script>").count(),
            2,
            "only the page's own script tags close"
        );
        assert!(!page.contains(SLOT));
        assert!(page.contains("t<\\/script>"));
        let d = dot(&[t]);
        assert!(d.contains("t0n0 -> t0n1;"));
        assert!(d.contains("say \\\"hi\\\"\\n"));
    }
}
