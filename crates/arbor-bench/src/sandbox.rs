//! `arbor bench sandbox`: Python sandbox start-up latency against bare `python3 -c pass`.
use std::time::Instant;

#[derive(clap::Args)]
pub struct SandboxBenchArgs {
    #[arg(long, default_value_t = 50)]
    runs: usize,
}

pub async fn run(a: SandboxBenchArgs) -> anyhow::Result<()> {
    use arbor_checks::sandbox::{Limits, PythonRunner};
    let runner = PythonRunner::new(Limits::default())?;
    let mut sandboxed = Vec::with_capacity(a.runs);
    let mut bare = Vec::with_capacity(a.runs);
    for _ in 0..a.runs {
        let t = Instant::now();
        let out = runner.run("pass", &[], "").await?;
        anyhow::ensure!(out.success(), "sandboxed `pass` failed: {}", out.stderr);
        sandboxed.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let s = tokio::process::Command::new("/usr/bin/python3")
            .args(["-I", "-B", "-c", "pass"])
            .status()
            .await?;
        anyhow::ensure!(s.success(), "bare python3 failed");
        bare.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (pick(0.5), pick(0.9), v.iter().sum::<f64>() / v.len() as f64)
    };
    let (s50, s90, smean) = stats(&mut sandboxed);
    let (b50, b90, bmean) = stats(&mut bare);
    println!("runs                      {}", a.runs);
    println!("sandboxed python  (ms)    p50 {s50:.1}  p90 {s90:.1}  mean {smean:.1}");
    println!("bare python3 -c pass (ms) p50 {b50:.1}  p90 {b90:.1}  mean {bmean:.1}");
    println!("sandbox overhead (p50)    {:.1} ms", s50 - b50);
    Ok(())
}
