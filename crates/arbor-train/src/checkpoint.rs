//! Checkpoints of a run (`OUT/checkpoint/`): the policy and critic as checkpoints, both
//! optimizers' state and `state.json` (step, start model, config). A new checkpoint is written
//! beside the old one and swapped in; [`restore`] refuses a checkpoint of another start or config.
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
    let state = json!({"step": step, "source": start.source, "config": t.cfg});
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
    let ck = dir(out);
    if !ck.join("state.json").is_file() {
        return Ok(0);
    }
    let e = err(&ck);
    let text = std::fs::read_to_string(ck.join("state.json")).map_err(|x| e(&x))?;
    let state: serde_json::Value = serde_json::from_str(&text)
        .map_err(|x| TrainError::Io(format!("{}: {x}", ck.display())))?;
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
        let (v, _) =
            ValueModel::load(&ck.join("value"), &plain).map_err(|x| TrainError::Io(x.to_string()))?;
        t.value = Some(v.fork(&ad).train());
        let opt = std::mem::replace(&mut t.opt_value, crate::optim::adamw(t.cfg.weight_decay));
        t.opt_value = opt.load(ck.join("optim-value.bpk")).map_err(|x| e(&x))?;
    }
    Ok(state["step"].as_u64().unwrap_or(0) as usize)
}
