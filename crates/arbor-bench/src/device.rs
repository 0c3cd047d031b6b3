//! `arbor bench device`: whether a GPU backend trains as the CPU does — the losses and every
//! gradient of a DPO, an OREO and a TPO batch on a small random Llama, on flex and on the device
//! — and how long the device took. Fails when any loss or gradient is off by more than the
//! tolerance, so a script can gate on it.
use arbor_model::{DeviceKind, Precision};
use arbor_train::device_check::compare;
use serde_json::json;

#[derive(clap::Args)]
pub struct DeviceBenchArgs {
    /// cpu, or libtorch / wgpu / cuda in builds with that feature.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// Largest accepted |device − CPU| of a loss, and of a gradient entry relative to the
    /// largest entry (absolute below 1).
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f64,
    /// The device side's matrix products: f32, or bf16 / f16 (mixed precision; the CPU side
    /// stays f32, so give a tolerance to match, e.g. 2e-2 for bf16).
    #[arg(long, default_value = "f32")]
    precision: Precision,
}

pub fn run(a: DeviceBenchArgs) -> anyhow::Result<()> {
    let rows = compare(a.device, a.precision)?;
    let bad: Vec<&str> = rows
        .iter()
        .filter(|r| !r.agrees(a.tolerance))
        .map(|r| r.loss.as_str())
        .collect();
    println!(
        "{}",
        json!({"device": a.device.name(), "precision": a.precision, "tolerance": a.tolerance, "agrees": bad.is_empty(), "losses": rows})
    );
    anyhow::ensure!(
        bad.is_empty(),
        "{} differs from the CPU beyond {} in: {}",
        a.device.name(),
        a.tolerance,
        bad.join(", ")
    );
    Ok(())
}
