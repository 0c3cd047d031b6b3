//! Near-duplicate detection on a crafted set with known answers: GSM8K test questions, and for
//! every third one a copy with a small edit (case and punctuation, a word inserted, deleted or
//! replaced, a sentence appended). Precision and recall of the pairs found at the default
//! threshold must be ≥ 0.95 (issue 16's bar). Caught by a detector that misses edited copies
//! (recall) or joins distinct questions of the same template (precision).
use arbor_synth::config::SynthConfig;
use arbor_synth::dedup::{find, Duplicate};

fn questions() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/gsm8k/test.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["question"].as_str().unwrap().to_string())
        .collect()
}

fn edit(q: &str, k: usize) -> String {
    let mut w: Vec<&str> = q.split(' ').collect();
    let at = (k * 7919) % w.len();
    match k % 5 {
        0 => q.to_uppercase().replace(['.', ',', '?'], " "),
        1 => {
            w.insert(at, "really");
            w.join(" ")
        }
        2 => {
            w.remove(at);
            w.join(" ")
        }
        3 => {
            w[at] = "something";
            w.join(" ")
        }
        _ => format!("{q} Show your work."),
    }
}

#[test]
fn precision_and_recall_on_edited_gsm8k_questions() {
    let originals = questions();
    let mut texts = originals.clone();
    let mut truth = Vec::new(); // (copy index, original index)
    for (k, i) in (0..originals.len()).step_by(3).enumerate() {
        truth.push((texts.len(), i));
        texts.push(edit(&originals[i], k));
    }
    let threshold = SynthConfig::default().dedup_threshold;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let found = find(&refs, Some(threshold));
    // A found pair: a text and the first of its group. A true pair counts when the copy's group
    // starts at its original (or the original itself was found a copy of the same first text).
    let group = |i: usize| match found[i] {
        Some(Duplicate::Exact(r) | Duplicate::Near(r)) => r,
        None => i,
    };
    let flagged: Vec<usize> = (0..texts.len()).filter(|&i| found[i].is_some()).collect();
    let hits = truth.iter().filter(|&&(copy, orig)| group(copy) == group(orig)).count();
    let false_flags = flagged.iter().filter(|&&i| !truth.iter().any(|&(copy, orig)| copy == i && group(i) == group(orig)) && i < originals.len()).count()
        + flagged.iter().filter(|&&i| i >= originals.len() && !truth.iter().any(|&(copy, orig)| copy == i && group(i) == group(orig))).count();
    let recall = hits as f64 / truth.len() as f64;
    let precision = (flagged.len() - false_flags) as f64 / flagged.len().max(1) as f64;
    eprintln!("{} questions + {} edited copies at threshold {threshold}: recall {recall:.3}, precision {precision:.3} ({} flagged, {false_flags} wrongly)", originals.len(), truth.len(), flagged.len());
    assert!(recall >= 0.95 && precision >= 0.95, "recall {recall:.3}, precision {precision:.3}");
}

/// 100,000 prompts: the GSM8K test questions with their numbers redrawn (distinct problems of
/// the same templates, the hard case for near-duplicate detection), every tenth one an edited
/// copy of an earlier prompt. Written to `DEDUP_PROMPTS` (for the datasketch side of
/// benches/dedup.sh) and timed; a benchmark, not a test:
/// `cargo test --release -p arbor-synth --test dedup throughput -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn throughput_on_100k_prompts() {
    let qs = questions();
    let mut prompts: Vec<String> = Vec::with_capacity(100_000);
    for i in 0..100_000usize {
        if i % 10 == 9 {
            let earlier = prompts[(i * 7) % i].clone();
            prompts.push(edit(&earlier, i));
            continue;
        }
        let mut k = i as u64;
        let q: String = qs[i % qs.len()]
            .split(' ')
            .map(|w| {
                if w.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((k >> 40) % 97 + 2).to_string()
                } else {
                    w.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        prompts.push(q);
    }
    if let Ok(path) = std::env::var("DEDUP_PROMPTS") {
        let rows: String = prompts.iter().map(|p| serde_json::json!({"prompt": p}).to_string() + "\n").collect();
        std::fs::write(path, rows).unwrap();
    }
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let t = std::time::Instant::now();
    let found = find(&refs, Some(0.8));
    let secs = t.elapsed().as_secs_f64();
    let exact = found.iter().filter(|d| matches!(d, Some(Duplicate::Exact(_)))).count();
    let near = found.iter().filter(|d| matches!(d, Some(Duplicate::Near(_)))).count();
    println!("arbor: {} prompts in {secs:.2}s ({:.0} prompts/s): {exact} exact and {near} near duplicates at 0.8", refs.len(), refs.len() as f64 / secs);
}
