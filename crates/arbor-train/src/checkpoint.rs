//! Checkpoints of a run (`OUT/checkpoint/`): the policy and critic as checkpoints, both
//! optimizers' state and `state.json` (step, start model, config), written last, so a directory
//! with `state.json` is complete. A new checkpoint is written to `checkpoint.tmp` and swapped in
//! through `checkpoint.old`; a kill at any point leaves at least one complete directory, and
//! [`restore`] takes the newest complete one (refusing one of another start or config).
use std::path::{Path, PathBuf};

use burn::module::Module;
use serde_json::json;

use crate::start::StartModel;
use crate::trainer::Trainer;
use crate::value::ValueModel;
use crate::TrainError;

pub fn dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn err(path: &Path) -> impl Fn(&dyn std::fmt::Debug) -> TrainError + '_ {
    move |x| TrainError::Io(format!("{}: {x:?}", path.display()))
}

/// Writes the trainer's state after `step` steps.
pub fn save(out: &Path, t: &Trainer, start: &StartModel, step: usize) -> Result<(), TrainError> {
    let ck = dir(out);
    let tmp = out.join("checkpoint.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|x| err(&tmp)(&x))?;
    let e = err(&tmp);
    arbor_model::hf::save(
        &tmp.join("policy"),
        &start.cfg,
        &t.policy().valid(),
        &start.tokenizer,
    )
    .map_err(|x| e(&x))?;
    t.opt_policy
        .save(tmp.join("optim-policy.bpk"))
        .map_err(|x| e(&x))?;
    if let Some(v) = &t.value {
        v.valid()
            .save(&tmp.join("value"), &start.cfg, &start.tokenizer)
            .map_err(|x| e(&x))?;
        t.opt_value
            .save(tmp.join("optim-value.bpk"))
            .map_err(|x| e(&x))?;
    }
    let state = json!({"step": step, "source": start.source, "config": t.cfg, "loss_scaler": t.scaler});
    std::fs::write(tmp.join("state.json"), state.to_string()).map_err(|x| e(&x))?;
    // Swap in the new checkpoint: the old one stays until the new one is complete.
    let old = out.join("checkpoint.old");
    let _ = std::fs::remove_dir_all(&old);
    if ck.exists() {
        std::fs::rename(&ck, &old).map_err(|x| err(&ck)(&x))?;
    }
    std::fs::rename(&tmp, &ck).map_err(|x| err(&ck)(&x))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Restores the trainer from `OUT/checkpoint` when there is one; returns the step it was
/// saved after (0 without a checkpoint).
pub fn restore(out: &Path, t: &mut Trainer, start: &StartModel) -> Result<usize, TrainError> {
    let mut complete = Vec::new();
    for name in ["checkpoint", "checkpoint.old", "checkpoint.tmp"] {
        let ck = out.join(name);
        let Ok(text) = std::fs::read_to_string(ck.join("state.json")) else {
            continue;
        };
        let state: serde_json::Value = serde_json::from_str(&text)
            .map_err(|x| TrainError::Io(format!("{}: {x}", ck.join("state.json").display())))?;
        complete.push((state["step"].as_u64().unwrap_or(0), ck, state));
    }
    // The newest; on a tie the first named (the swapped-in one).
    let Some((_, ck, state)) = complete
        .into_iter()
        .rev()
        .max_by_key(|(step, _, _)| *step)
    else {
        return Ok(0);
    };
    let e = err(&ck);
    if state["source"] != json!(start.source)
        || state["config"] != serde_json::to_value(&t.cfg).expect("configs serialize")
    {
        return Err(TrainError::Config(format!(
            "{}: the checkpoint was made with another start model or config; use a new --out",
            ck.display()
        )));
    }
    let (plain, ad) = (t.cx.plain.clone(), t.cx.device.clone());
    let c = arbor_model::hf::load(&ck.join("policy"), &plain)
        .map_err(|x| TrainError::Io(x.to_string()))?;
    t.set_policy(c.model.fork(&ad).train());
    let opt = std::mem::replace(&mut t.opt_policy, crate::optim::adamw(t.cfg.weight_decay));
    t.opt_policy = opt.load(ck.join("optim-policy.bpk")).map_err(|x| e(&x))?;
    if t.value.is_some() {
        let (v, _) = ValueModel::load(&ck.join("value"), &plain)
            .map_err(|x| TrainError::Io(x.to_string()))?;
        t.set_value(v.fork(&ad).train());
        let opt = std::mem::replace(&mut t.opt_value, crate::optim::adamw(t.cfg.weight_decay));
        t.opt_value = opt.load(ck.join("optim-value.bpk")).map_err(|x| e(&x))?;
    }
    // (Checkpoints from before mixed precision have none: the f32 default.)
    if let Ok(s) = serde_json::from_value(state["loss_scaler"].clone()) {
        t.scaler = s;
    }
    Ok(state["step"].as_u64().unwrap_or(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_model::init::{init_tiny, TinySpec};
    use arbor_model::DeviceKind;

    use crate::config::{Algo, TrainConfig};

    fn tiny(dir: &Path) -> StartModel {
        let spec = TinySpec::minimal(2);
        init_tiny(&spec, dir).unwrap();
        StartModel::load(&dir.display().to_string(), DeviceKind::Cpu).unwrap()
    }

    #[test]
    fn a_kill_anywhere_in_the_swap_leaves_the_newest_checkpoint_to_resume_from() {
        let dir = tempfile::tempdir().unwrap();
        let start = tiny(&dir.path().join("start"));
        let cfg = TrainConfig {
            algo: Algo::Oreo,
            ..TrainConfig::default()
        };
        let out = dir.path().join("out");
        let t = Trainer::new(&cfg, &start);
        save(&out, &t, &start, 3).unwrap();
        save(&out, &t, &start, 6).unwrap();
        let restored = |out: &Path| restore(out, &mut Trainer::new(&cfg, &start), &start).unwrap();
        assert_eq!(restored(&out), 6);
        // Killed between the two renames: only `checkpoint.old` is left.
        std::fs::rename(out.join("checkpoint"), out.join("checkpoint.old")).unwrap();
        assert_eq!(restored(&out), 6);
        // Killed after removing the old one, before the new one was renamed into place.
        std::fs::rename(out.join("checkpoint.old"), out.join("checkpoint.tmp")).unwrap();
        assert_eq!(restored(&out), 6);
        // A half-written new checkpoint (no state.json yet) beside a complete old one.
        std::fs::rename(out.join("checkpoint.tmp"), out.join("checkpoint")).unwrap();
        std::fs::create_dir_all(out.join("checkpoint.tmp/policy")).unwrap();
        assert_eq!(restored(&out), 6);
        // Another config is refused, not silently restarted.
        let other = TrainConfig {
            lr: 1e-3,
            ..cfg.clone()
        };
        assert!(restore(&out, &mut Trainer::new(&other, &start), &start).is_err());
    }
}
