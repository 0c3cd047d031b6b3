//! BM25 retrieval over a local corpus: a directory of text files (one passage per paragraph) or
//! JSONL files (one passage per line: `{"id"?, "text"}`).
use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

/// One retrievable passage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Passage {
    pub id: String,
    pub text: String,
}

/// A search hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub id: String,
    pub score: f64,
    pub text: String,
}

/// An in-memory BM25 index (Robertson & Zaragoza 2009; k1 = 1.2, b = 0.75, Lucene's
/// non-negative idf).
#[derive(Debug, Default)]
pub struct Bm25Index {
    passages: Vec<Passage>,
    /// term → (passage index, term frequency)
    postings: HashMap<String, Vec<(u32, u32)>>,
    lengths: Vec<u32>,
    avg_len: f64,
}

const K1: f64 = 1.2;
const B: f64 = 0.75;

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Line {
        path: String,
        line: usize,
        msg: String,
    },
}

/// Lower-cased alphanumeric runs.
pub fn tokenize(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

impl Bm25Index {
    pub fn new(passages: Vec<Passage>) -> Self {
        let mut postings: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
        let mut lengths = Vec::with_capacity(passages.len());
        for (i, p) in passages.iter().enumerate() {
            let mut tf: HashMap<String, u32> = HashMap::new();
            let mut len = 0;
            for t in tokenize(&p.text) {
                *tf.entry(t).or_default() += 1;
                len += 1;
            }
            lengths.push(len);
            for (t, f) in tf {
                postings.entry(t).or_default().push((i as u32, f));
            }
        }
        let avg_len = if lengths.is_empty() {
            0.0
        } else {
            lengths.iter().map(|&l| f64::from(l)).sum::<f64>() / lengths.len() as f64
        };
        Self {
            passages,
            postings,
            lengths,
            avg_len,
        }
    }

    /// Loads every `.txt`, `.md` and `.jsonl` file under `dir` (sorted, so ids are stable).
    pub fn from_dir(dir: &Path) -> Result<Self, CorpusError> {
        let io = |p: &Path, e| CorpusError::Io {
            path: p.display().to_string(),
            source: e,
        };
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
                let p = e.map_err(|e| io(&d, e))?.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files.sort();
        let mut passages = Vec::new();
        for f in files {
            let rel = f.strip_prefix(dir).unwrap_or(&f).display().to_string();
            let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(ext, "txt" | "md" | "jsonl") {
                continue;
            }
            let text = std::fs::read_to_string(&f).map_err(|e| io(&f, e))?;
            if ext == "jsonl" {
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let bad = |msg: String| CorpusError::Line {
                        path: f.display().to_string(),
                        line: n + 1,
                        msg,
                    };
                    let v: serde_json::Value = serde_json::from_str(line)
                        .map_err(|e| bad(format!("invalid JSON: {e}")))?;
                    let body = ["text", "content", "passage"]
                        .iter()
                        .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
                        .ok_or_else(|| bad("field `text` missing or not a string".into()))?;
                    let id = match v.get("id") {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(other) if !other.is_null() => other.to_string(),
                        _ => format!("{rel}:{}", n + 1),
                    };
                    passages.push(Passage {
                        id,
                        text: body.to_string(),
                    });
                }
            } else {
                for (k, para) in text
                    .split("\n\n")
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .enumerate()
                {
                    passages.push(Passage {
                        id: format!("{rel}#{}", k + 1),
                        text: para.to_string(),
                    });
                }
            }
        }
        Ok(Self::new(passages))
    }

    pub fn len(&self) -> usize {
        self.passages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.passages.is_empty()
    }

    /// The `k` best passages for `query`, best first; ties broken by corpus order.
    pub fn search(&self, query: &str, k: usize) -> Vec<Hit> {
        let n = self.passages.len() as f64;
        let mut scores: HashMap<u32, f64> = HashMap::new();
        let mut terms: Vec<String> = tokenize(query).collect();
        terms.sort();
        terms.dedup();
        for t in &terms {
            let Some(list) = self.postings.get(t) else {
                continue;
            };
            let df = list.len() as f64;
            let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
            for &(doc, tf) in list {
                let tf = f64::from(tf);
                let norm =
                    1.0 - B + B * f64::from(self.lengths[doc as usize]) / self.avg_len.max(1e-9);
                *scores.entry(doc).or_default() += idf * tf * (K1 + 1.0) / (tf + K1 * norm);
            }
        }
        let mut ranked: Vec<(u32, f64)> = scores.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
            .into_iter()
            .take(k)
            .map(|(i, score)| {
                let p = &self.passages[i as usize];
                Hit {
                    id: p.id.clone(),
                    score,
                    text: p.text.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hits_are_bounded_sorted_and_contain_a_query_term(
            docs in proptest::collection::vec("[a-e ]{0,30}", 0..20),
            query in "[a-f ]{0,12}",
            k in 0usize..8,
        ) {
            let idx = Bm25Index::new(docs.iter().enumerate().map(|(i, d)| p(&i.to_string(), d)).collect());
            let hits = idx.search(&query, k);
            prop_assert!(hits.len() <= k);
            for w in hits.windows(2) {
                prop_assert!(w[0].score >= w[1].score);
            }
            let q: Vec<String> = tokenize(&query).collect();
            for h in &hits {
                prop_assert!(h.score > 0.0);
                prop_assert!(tokenize(&h.text).any(|t| q.contains(&t)));
            }
        }
    }

    fn p(id: &str, text: &str) -> Passage {
        Passage {
            id: id.into(),
            text: text.into(),
        }
    }

    #[test]
    fn scores_match_hand_computation() {
        let idx = Bm25Index::new(vec![
            p("a", "cat sat"),
            p("b", "dog sat on the mat"),
            p("c", "cat cat dog"),
        ]);
        let hits = idx.search("cat", 3);
        assert_eq!(
            hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            ["c", "a"]
        );
        // avgdl = (2 + 5 + 3) / 3; idf(cat) = ln((3 - 2 + 0.5) / (2 + 0.5) + 1) = ln(1.6)
        let idf = 1.6f64.ln();
        let avg = 10.0 / 3.0;
        let score = |tf: f64, len: f64| idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / avg));
        assert!((hits[0].score - score(2.0, 3.0)).abs() < 1e-12);
        assert!((hits[1].score - score(1.0, 2.0)).abs() < 1e-12);
        assert!(idx.search("unicorn", 3).is_empty());
    }

    #[test]
    fn loads_text_and_jsonl_and_names_bad_lines() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("notes.txt"),
            "Paris is the capital of France.\n\nBerlin is in Germany.",
        )
        .unwrap();
        std::fs::write(d.path().join("facts.jsonl"), "{\"id\": \"f1\", \"text\": \"Water boils at 100 C.\"}\n{\"text\": \"Ice melts at 0 C.\"}\n").unwrap();
        let idx = Bm25Index::from_dir(d.path()).unwrap();
        assert_eq!(idx.len(), 4);
        assert_eq!(idx.search("capital of France", 1)[0].id, "notes.txt#1");
        assert_eq!(idx.search("ice melts", 1)[0].id, "facts.jsonl:2");
        std::fs::write(
            d.path().join("bad.jsonl"),
            "{\"text\": \"ok\"}\n{\"txt\": 1}\n",
        )
        .unwrap();
        let e = Bm25Index::from_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.ends_with("bad.jsonl:2: field `text` missing or not a string"),
            "{e}"
        );
    }
}
