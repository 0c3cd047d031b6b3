//! The job config files (synth.toml, train.toml, loop.toml, search.toml), damaged as users and
//! editors damage them: a value of the wrong type or an absurd size, a stray byte, a file cut
//! short. Reading and validating never panics, and a refusal names the file and the line.
use std::path::Path;

use arbor_core::config::{load_toml, Overrides};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};

/// Values put in place of a key's value: other types, out-of-range numbers, non-finite floats.
const VALUES: [&str; 12] = [
    "\"x\"", "-1", "0", "1e308", "true", "[]", "{}", "18446744073709551615", "nan", "-inf",
    "0.0000001", "[1, \"a\"]",
];

/// One damaged case: `edit` chooses between replacing the value of the `line`-th `key = value`
/// line and corrupting a byte / cutting the file.
fn damaged<T>(validate: fn(T) -> Result<(), String>, edit: bool, line: usize, value: usize, pos: usize, byte: u8, cut: usize) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let full = toml::to_string(&T::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.toml");
    let mut changed_line = None;
    let bytes = if edit {
        let lines: Vec<&str> = full.lines().collect();
        let values: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
        let i = values[line % values.len()];
        changed_line = Some(i + 1);
        let key = lines[i].split(" = ").next().unwrap();
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        out[i] = format!("{key} = {}", VALUES[value]);
        out.join("\n").into_bytes()
    } else {
        let mut b = full.into_bytes();
        let p = pos % b.len();
        b[p] = byte;
        b.truncate(b.len() - cut.min(b.len()));
        b
    };
    std::fs::write(&path, &bytes).unwrap();
    let non_finite = edit && VALUES[value].contains(['n', 'i']) && !VALUES[value].contains('"');
    match load_toml::<T>(Some(&path), &Overrides::default()) {
        Ok(_) if non_finite => prop_assert!(false, "{} was accepted", VALUES[value]),
        Ok(cfg) => {
            // Whatever was read is checked without a panic (an error is a fine answer).
            let _ = validate(cfg);
        }
        Err(e) => {
            let shown = path.display().to_string();
            prop_assert!(e.contains(&shown), "the error should name the file: {e}");
            if let Some(n) = changed_line {
                prop_assert!(e.contains(&format!("{shown}:{n}:")), "the error should name line {n}: {e}");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn synth_toml(edit: bool, line: usize, value in 0..VALUES.len(), pos: usize, byte: u8, cut in 0usize..40) {
        damaged::<arbor_synth::SynthConfig>(|c| c.with_role_defaults().validate(), edit, line, value, pos, byte, cut)?;
    }

    #[test]
    fn train_toml(edit: bool, line: usize, value in 0..VALUES.len(), pos: usize, byte: u8, cut in 0usize..40) {
        damaged::<arbor_train::TrainConfig>(|c| c.validate(), edit, line, value, pos, byte, cut)?;
    }

    #[test]
    fn loop_toml(edit: bool, line: usize, value in 0..VALUES.len(), pos: usize, byte: u8, cut in 0usize..40) {
        damaged::<arbor_loop::LoopConfig>(|c| c.validate(), edit, line, value, pos, byte, cut)?;
    }

    #[test]
    fn search_toml(edit: bool, line: usize, value in 0..VALUES.len(), pos: usize, byte: u8, cut in 0usize..40) {
        damaged::<arbor_tree::job::SearchFile>(|f| { f.search.validate()?; f.learned_value_dir().map(drop).map_err(|e| e.to_string()) }, edit, line, value, pos, byte, cut)?;
    }
}

/// The undamaged files (every key written out) are read back and valid: the fuzzing starts
/// from a good file, so each refusal above is the damage's.
#[test]
fn the_full_default_files_are_valid() {
    fn round_trip<T: Serialize + DeserializeOwned + Default>(validate: fn(T) -> Result<(), String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(&path, toml::to_string(&T::default()).unwrap()).unwrap();
        validate(load_toml::<T>(Some(Path::new(&path)), &Overrides::default()).unwrap()).unwrap();
    }
    round_trip::<arbor_synth::SynthConfig>(|c| c.with_role_defaults().validate());
    round_trip::<arbor_train::TrainConfig>(|c| c.validate());
    round_trip::<arbor_loop::LoopConfig>(|c| c.validate());
    round_trip::<arbor_tree::job::SearchFile>(|f| f.search.validate());
}
