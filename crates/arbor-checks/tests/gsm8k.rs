//! The verifier and calculator against GSM8K's test split (../shared/data/gsm8k/test.jsonl).
use std::path::PathBuf;

use arbor_checks::calculator::{evaluate, round_to};
use arbor_checks::number::parse_number;
use arbor_checks::verifier::{extract, verify, Method};

fn test_set() -> Vec<(String, String)> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/gsm8k/test.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (../shared must sit beside the repository)",
            path.display()
        )
    });
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["question"].as_str().unwrap().to_string(),
                v["answer"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The number after `####`, read independently of the verifier.
fn reference_number(solution: &str) -> String {
    solution
        .rsplit("####")
        .next()
        .unwrap()
        .trim()
        .replace(',', "")
}

#[test]
fn verifier_extracts_every_reference_answer() {
    let set = test_set();
    assert_eq!(set.len(), 1319);
    let mut matched = 0;
    for (i, (_, solution)) in set.iter().enumerate() {
        let e = extract(solution).unwrap_or_else(|| panic!("line {}: no answer extracted", i + 1));
        assert_eq!(e.method, Method::Hashes, "line {}", i + 1);
        let v = verify(solution, &reference_number(solution));
        assert!(v.correct, "line {}: {v:?}", i + 1);
        matched += 1;
        // And a wrong reference is rejected.
        let wrong = format!("{}1", reference_number(solution));
        assert!(!verify(solution, &wrong).correct, "line {}", i + 1);
    }
    eprintln!(
        "verifier: {matched} of {} reference answers extracted and matched",
        set.len()
    );
    assert_eq!(matched, 1319);
}

#[test]
fn calculator_agrees_with_the_annotations() {
    let re = regex::Regex::new(r"<<([^=<>]+)=([^<>]+)>>").unwrap();
    let (mut seen, mut parsed, mut exact, mut rounded) = (0, 0, 0, 0);
    let mut disagreements = Vec::new();
    for (_, solution) in test_set() {
        for c in re.captures_iter(&solution) {
            seen += 1;
            let (expr, result) = (&c[1], c[2].trim());
            let (Ok(got), Some(want)) = (evaluate(expr), parse_number(result)) else {
                continue;
            };
            parsed += 1;
            if got == want {
                exact += 1;
                continue;
            }
            // Worked solutions round: "10/3=3.33" agrees when rounded to the places written.
            let places = result.split_once('.').map(|(_, f)| f.len()).unwrap_or(0);
            if round_to(&got, places) == want {
                rounded += 1;
            } else {
                disagreements.push(format!(
                    "{expr}={result} (calculator: {})",
                    arbor_checks::calculator::render(&got)
                ));
            }
        }
    }
    eprintln!(
        "calculator: {seen} annotations, {parsed} parsed, {exact} agree exactly, {rounded} agree after rounding, {} disagree",
        disagreements.len()
    );
    for d in &disagreements {
        eprintln!("  {d}");
    }
    assert!(parsed * 100 >= seen * 95, "parsed only {parsed} of {seen}");
    assert!(
        disagreements.is_empty(),
        "{} disagreements",
        disagreements.len()
    );
}
