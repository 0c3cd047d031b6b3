//! environments/code/solutions.jsonl keeps its promise, checked in the sandbox (bubblewrap):
//! every `correct` answer passes all of its task's tests and every `wrong` one loads and fails
//! at least one, so `arbor bench judge --sets code` labels its pairs truly.
use arbor_checks::sandbox::{Limits, PythonRunner};
use arbor_checks::unit_tests::{extract_code, run_unit_tests};
use serde_json::Value;

fn jsonl(name: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../environments/code").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn every_correct_solution_passes_and_every_wrong_one_fails() {
    let runner = PythonRunner::new(Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let (tasks, solutions) = (jsonl("tasks.jsonl"), jsonl("solutions.jsonl"));
    assert_eq!(tasks.len(), solutions.len(), "one pair per task");
    for (task, sol) in tasks.iter().zip(&solutions) {
        assert_eq!(task["id"], sol["id"], "solutions follow the tasks' order");
        let tests: Vec<String> = serde_json::from_value(task["tests"].clone()).unwrap();
        for (key, should_pass) in [("correct", true), ("wrong", false)] {
            let code = extract_code(sol[key].as_str().unwrap());
            let rep = run_unit_tests(&runner, &code, &tests).await.unwrap();
            assert!(rep.load_error.is_none(), "{} {key}: {:?}", task["id"], rep.load_error);
            assert_eq!(rep.all_passed(), should_pass, "{} {key}: {} of {} pass", task["id"], rep.passed, rep.total);
        }
    }
}
