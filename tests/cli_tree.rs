//! `arbor search`, `arbor export` and `arbor view` end to end: trees from the embedded model and
//! from the synthetic policy, every export format loaded by HF `datasets` and checked against
//! docs/formats.md, and the viewer driven in headless Chromium.
mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::arbor;
use serde_json::{json, Value};

const FORMATS: [&str; 8] = [
    "dpo", "step-dpo", "tpo", "oreo", "prm", "sft", "kto", "treelog",
];

fn synthetic_trees(dir: &Path, algo: &str, n: usize) -> PathBuf {
    let out = dir.join(format!("trees-{algo}"));
    let (ok, _, err) = arbor(&[
        "search",
        "--policy",
        "synthetic",
        "--evaluator",
        "terminal",
        "--algo",
        algo,
        "--trees",
        &n.to_string(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    out
}

/// The example row of each export format in docs/formats.md.
fn documented_examples() -> Vec<(String, Value)> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/formats.md")).unwrap();
    let section = doc
        .split("## Tree exports")
        .nth(1)
        .expect("docs/formats.md has a Tree exports section");
    let section = section.split("\n## ").next().unwrap();
    let mut out = Vec::new();
    for part in section.split("\n### `").skip(1) {
        let name = part.split('`').next().unwrap().to_string();
        let json_block = part
            .split("```json\n")
            .nth(1)
            .and_then(|b| b.split("\n```").next())
            .unwrap_or_else(|| panic!("{name}: no example"));
        let example = serde_json::from_str(json_block)
            .unwrap_or_else(|e| panic!("{name}: example is not JSON: {e}"));
        out.push((name, example));
    }
    out
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn every_export_format_matches_the_docs_and_loads_in_hf_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let trees = synthetic_trees(dir.path(), "mcts", 12);
    let examples = documented_examples();
    assert_eq!(
        examples.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        FORMATS,
        "docs list every format in order"
    );
    let mut files = Vec::new();
    for (name, example) in &examples {
        for ext in ["jsonl", "parquet"] {
            let out = dir.path().join(format!("{name}.{ext}"));
            let (ok, _, err) = arbor(&[
                "export",
                "--trees",
                trees.to_str().unwrap(),
                "--format",
                name,
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(ok, "{name}: {err}");
            files.push(json!({"name": name, "path": out, "kind": if ext == "jsonl" { "json" } else { "parquet" }}));
        }
        let rows: Vec<Value> = std::fs::read_to_string(dir.path().join(format!("{name}.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!rows.is_empty(), "{name}: no rows");
        for r in &rows {
            assert_eq!(
                keys(r),
                keys(example),
                "{name}: columns differ from docs/formats.md"
            );
            for k in ["prompt", "chosen", "rejected", "completion", "messages"] {
                if let Some(Value::Array(msgs)) = r.get(k) {
                    for m in msgs {
                        assert_eq!(keys(m), keys(&example[k][0]), "{name}.{k}: message fields");
                    }
                }
            }
        }
    }
    // Load each file with HF datasets and pandas; report rows and columns.
    let script = r#"
import json, sys, datasets, pandas
datasets.disable_progress_bars()
out = []
for f in json.load(open(sys.argv[1])):
    ds = datasets.load_dataset(f["kind"], data_files=f["path"], split="train")
    frame = pandas.read_json(f["path"], lines=True) if f["kind"] == "json" else pandas.read_parquet(f["path"])
    out.append({"name": f["name"], "kind": f["kind"], "rows": ds.num_rows, "columns": sorted(ds.column_names), "pandas_rows": len(frame)})
print(json.dumps(out))
"#;
    let list = dir.path().join("files.json");
    std::fs::write(&list, serde_json::to_string(&files).unwrap()).unwrap();
    let out = Command::new(common::venv_python())
        .args(["-c", script, list.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(loaded.len(), FORMATS.len() * 2);
    for l in &loaded {
        let name = l["name"].as_str().unwrap();
        let expected_rows = std::fs::read_to_string(dir.path().join(format!("{name}.jsonl")))
            .unwrap()
            .lines()
            .count();
        assert_eq!(l["rows"], expected_rows, "{l}");
        assert_eq!(l["pandas_rows"], expected_rows, "{l}");
        let example = &examples.iter().find(|e| e.0 == name).unwrap().1;
        let cols: BTreeSet<String> = l["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(cols, keys(example), "{l}");
    }
}

#[test]
fn every_algorithm_writes_loadable_trees_and_bad_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for algo in ["mcts", "tot-bfs", "tot-dfs", "beam"] {
        let trees = synthetic_trees(dir.path(), algo, 3);
        let text = std::fs::read_to_string(trees.join("trees.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 3, "{algo}");
        // Corrupt the second tree: the others still export, the error names file, line, tree.
        let lines: Vec<&str> = text.lines().collect();
        let broken_id = serde_json::from_str::<Value>(lines[1]).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let broken = format!(
            "{}\n{}\n{}\n",
            lines[0],
            &lines[1][..lines[1].len() / 2],
            lines[2]
        );
        let file = dir.path().join(format!("{algo}-broken.jsonl"));
        std::fs::write(&file, broken).unwrap();
        let out = dir.path().join(format!("{algo}.jsonl"));
        let (ok, _, err) = arbor(&[
            "export",
            "--trees",
            file.to_str().unwrap(),
            "--format",
            "oreo",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        assert!(
            err.contains(&format!("{}:2: tree {broken_id}", file.display())),
            "{err}"
        );
        // The rows are exactly those of the intact file less the broken tree's.
        let whole = dir.path().join(format!("{algo}-whole.jsonl"));
        let (ok, _, err) = arbor(&[
            "export",
            "--trees",
            trees.to_str().unwrap(),
            "--format",
            "oreo",
            "--out",
            whole.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        let expected: Vec<String> = std::fs::read_to_string(&whole)
            .unwrap()
            .lines()
            .filter(|l| !l.contains(&format!("\"tree_id\":\"{broken_id}\"")))
            .map(String::from)
            .collect();
        let got: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(got, expected, "{algo}");
    }
    let (ok, _, err) = arbor(&[
        "search",
        "--policy",
        "synthetic",
        "--algo",
        "nope",
        "--out",
        "x",
    ]);
    assert!(!ok && err.contains("unknown algorithm `nope`"), "{err}");
}

#[test]
fn search_with_the_embedded_model_writes_trees_that_export() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("embedded");
    let (ok, _, err) = arbor(&[
        "search",
        "--algo",
        "mcts",
        "--trees",
        "2",
        "--iterations",
        "3",
        "--width",
        "2",
        "--max-depth",
        "2",
        "--evaluator",
        "self-eval",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(out.join("trees.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 2);
    for line in text.lines() {
        let t: Value = serde_json::from_str(line).unwrap();
        let nodes = t["nodes"].as_array().unwrap();
        assert!(
            nodes.len() >= 3,
            "root and at least one expansion of two: {line}"
        );
        for n in &nodes[1..] {
            assert_eq!(n["provenance"]["model"], "embedded");
            assert!(!n["step"].as_str().unwrap().is_empty());
            if !n["terminal"].as_bool().unwrap() {
                let v = n["eval"]["value_estimate"].as_f64().unwrap();
                assert!(
                    (0.0..=1.0).contains(&v),
                    "self-evaluation is a probability: {v}"
                );
            } else {
                assert!(n["eval"]["verified"].is_boolean());
            }
        }
    }
    let oreo = dir.path().join("oreo.parquet");
    let (ok, _, err) = arbor(&[
        "export",
        "--trees",
        out.to_str().unwrap(),
        "--format",
        "oreo",
        "--out",
        oreo.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
}

// ---- the viewer in headless Chromium, driven over the DevTools protocol ----

struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> PathBuf {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(c).output() {
            if out.status.success() {
                return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            }
        }
    }
    panic!("headless Chromium is missing: install Debian's `chromium` package (apt-get install chromium), as .ci/run does");
}

/// A GET to Chromium's DevTools HTTP endpoint (it keeps connections open, so the body is read
/// by its Content-Length).
fn http_get(port: u16, path: &str) -> String {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    write!(w, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

struct Page {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    next: u64,
}

impl Page {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(tungstenite::Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .unwrap();
        loop {
            let msg = self.ws.read().unwrap();
            if let Ok(text) = msg.to_text() {
                let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }
}

fn open_page(url: &str) -> (Browser, Page) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let browser = Browser {
        child,
        _profile: profile,
    };
    let mut port = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("DevTools listening on ws://127.0.0.1:") {
            port = rest.split('/').next().and_then(|p| p.parse::<u16>().ok());
            break;
        }
    }
    let port = port.expect("Chromium printed its DevTools address");
    let deadline = Instant::now() + Duration::from_secs(20);
    let ws_url = loop {
        let list: Value =
            serde_json::from_str(&http_get(port, "/json/list")).unwrap_or(Value::Null);
        if let Some(p) = list.as_array().and_then(|a| {
            a.iter().find(|t| {
                t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with("file:"))
            })
        }) {
            break p["webSocketDebuggerUrl"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no page target: {list}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (ws, _) = tungstenite::connect(ws_url).unwrap();
    (browser, Page { ws, next: 0 })
}

#[test]
fn the_viewer_works_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let trees = synthetic_trees(dir.path(), "tot-bfs", 3);
    let html = dir.path().join("trees.html");
    let (ok, _, err) = arbor(&[
        "view",
        "--trees",
        trees.to_str().unwrap(),
        "--out",
        html.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let page_text = std::fs::read_to_string(&html).unwrap();
    for banned in ["http://", "https://", "src=", "href="] {
        assert!(
            !page_text.contains(banned),
            "the page must not reach the network: found {banned}"
        );
    }
    let saved: Vec<Value> = std::fs::read_to_string(trees.join("trees.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let (_browser, mut page) = open_page(&format!("file://{}", html.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while page.eval("document.querySelectorAll('#tree li').length") == 0 {
        assert!(Instant::now() < deadline, "the tree never rendered");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        page.eval("document.querySelectorAll('#picker option').length"),
        saved.len()
    );
    let first_nodes = saved[0]["nodes"].as_array().unwrap();
    assert_eq!(
        page.eval("document.querySelectorAll('#tree li').length"),
        first_nodes.len()
    );

    // Depth-1 nodes start collapsed: their children are hidden until the toggle is clicked.
    let before = page.eval("(() => { const li = document.querySelector('#tree li.collapsed'); return [li.dataset.node, getComputedStyle(li.querySelector(':scope > ul')).display]; })()");
    assert_eq!(before[1], "none");
    let node_id: u64 = before[0].as_str().unwrap().parse().unwrap();
    let after = page.eval(&format!(
        "(() => {{ const li = document.querySelector('#tree li[data-node=\"{node_id}\"]'); li.querySelector('.toggle').click(); const ul = li.querySelector(':scope > ul'); return [li.classList.contains('collapsed'), getComputedStyle(ul).display, ul.querySelector('.step').textContent, ul.querySelector('.stats').textContent]; }})()"
    ));
    assert_eq!(after[0], false);
    assert_eq!(after[1], "block");
    let first_child = first_nodes.iter().find(|n| n["parent"] == node_id).unwrap();
    assert_eq!(after[2], first_child["step"]);
    assert!(
        after[3]
            .as_str()
            .unwrap()
            .starts_with(&format!("N={} ", first_child["visits"])),
        "{after}"
    );
    // Verified leaves carry the green border class.
    let ok_rows = page
        .eval("document.querySelectorAll('#tree .row.ok').length")
        .as_u64()
        .unwrap();
    let correct = first_nodes
        .iter()
        .filter(|n| n["eval"]["verified"] == true)
        .count() as u64;
    assert_eq!(ok_rows, correct);
    // Pick another tree.
    let summary = page.eval("(() => { const p = document.getElementById('picker'); p.value = '2'; p.dispatchEvent(new Event('change')); return document.getElementById('summary').textContent; })()");
    assert!(
        summary.as_str().unwrap().starts_with(&format!(
            "{} nodes",
            saved[2]["nodes"].as_array().unwrap().len()
        )),
        "{summary}"
    );

    let shot = page.call("Page.captureScreenshot", json!({"format": "png"}));
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
        "screenshot of {} bytes",
        png.len()
    );
    let shot_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("viewer.png");
    std::fs::write(&shot_path, png).unwrap();
}

#[test]
fn dot_output_lists_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let trees = synthetic_trees(dir.path(), "beam", 2);
    let dot = dir.path().join("t.dot");
    let (ok, _, err) = arbor(&[
        "view",
        "--trees",
        trees.to_str().unwrap(),
        "--out",
        dot.to_str().unwrap(),
        "--format",
        "dot",
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(dot).unwrap();
    let nodes: usize = std::fs::read_to_string(trees.join("trees.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["nodes"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(
        text.matches(" -> ").count(),
        nodes - 2,
        "one edge per non-root node"
    );
    assert!(text.starts_with("digraph arbor {"));
}

#[test]
fn an_interrupted_search_resumes_keeping_the_trees_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let full = synthetic_trees(dir.path(), "mcts", 8);
    let lines = |p: &Path| -> Vec<String> {
        let mut l: Vec<String> = std::fs::read_to_string(p.join("trees.jsonl"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        l.sort();
        l
    };
    let all = lines(&full);
    assert_eq!(all.len(), 8);
    // A search killed after three trees, in the middle of writing the fourth.
    let cut = dir.path().join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    let text = std::fs::read_to_string(full.join("trees.jsonl")).unwrap();
    let kept: Vec<&str> = text.lines().take(3).collect();
    let torn = &text.lines().nth(3).unwrap()[..40];
    std::fs::write(cut.join("trees.jsonl"), format!("{}\n{torn}", kept.join("\n"))).unwrap();
    let (ok, _, err) = arbor(&[
        "search", "--policy", "synthetic", "--evaluator", "terminal", "--algo", "mcts",
        "--trees", "8", "--out", cut.to_str().unwrap(), "--resume",
    ]);
    assert!(ok, "{err}");
    // Only the five missing trees were searched, and the result is the uninterrupted one.
    assert!(err.contains("5 trees (0 failed, 3 kept from before)"), "{err}");
    assert_eq!(lines(&cut), all);
}

/// SIGTERM (as Ctrl-C) during `arbor search`: the trees in flight finish, no new one starts,
/// exit 130 names --resume, and the resumed search ends with the trees of an uninterrupted one.
/// Caught if the signal kills the search outright (no message, 143), or it keeps starting
/// trees (every tree written before it exits).
#[test]
fn sigterm_stops_the_search_and_resume_completes_it() {
    let mut mock = Command::new(env!("CARGO_BIN_EXE_arbor"))
        .args(["mock-server", "--port", "0", "--latency-ms", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(mock.stdout.take().unwrap()).read_line(&mut url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| -> Vec<String> {
        ["search", "--policy", "llm", "--base-url", url.trim(), "--model", "m", "--evaluator", "terminal",
         "--algo", "mcts", "--iterations", "4", "--width", "2", "--trees", "30", "--seed", "3",
         "--concurrency", "2", "--out", out.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let whole = dir.path().join("whole");
    let (ok, _, err) = arbor(&args(&whole).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");

    let out = dir.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_arbor"))
        .args(args(&out))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let trees = out.join("trees.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&trees).map_or(0, |t| t.lines().count()) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no tree after 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    common::terminate(child.id());
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let written = std::fs::read_to_string(&trees).unwrap().lines().count();
    assert!(written < 30, "the search kept starting trees: {written}");

    let mut resumed = args(&out);
    resumed.push("--resume".into());
    let (ok, _, err) = arbor(&resumed.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    let sorted = |p: &Path| {
        let mut l: Vec<String> = std::fs::read_to_string(p.join("trees.jsonl")).unwrap().lines().map(String::from).collect();
        l.sort();
        l
    };
    assert_eq!(sorted(&out), sorted(&whole), "the resumed search differs from an uninterrupted one");
    let _ = mock.kill();
    let _ = mock.wait();
}
