//! `arbor bench household`: household environment steps per second.
use std::time::Instant;

#[derive(clap::Args)]
pub struct HouseholdBenchArgs {
    /// Games to generate and play.
    #[arg(long, default_value_t = 2000)]
    games: u64,
    /// Random commands played in each game after its solution.
    #[arg(long, default_value_t = 200)]
    random_steps: usize,
}

pub fn run(a: HouseholdBenchArgs) -> anyhow::Result<()> {
    use arbor_envs::household::{generate, solve, HouseholdConfig};
    use rand::{Rng, SeedableRng};
    let cfg = HouseholdConfig::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    // Generation and solving are set up outside the timed loop; the loop times `apply` alone.
    let games: Vec<_> = (0..a.games)
        .map(|s| {
            let w = generate(&cfg, s);
            let plan = solve(&w).expect("generated games are solvable");
            let names: Vec<String> = w
                .receptacles
                .iter()
                .map(|r| r.name.clone())
                .chain(w.objects.iter().map(|o| o.name.clone()))
                .collect();
            let random: Vec<String> = (0..a.random_steps)
                .map(|_| {
                    let n = &names[rng.gen_range(0..names.len())];
                    match rng.gen_range(0..6) {
                        0 => format!("go to {n}"),
                        1 => format!("open {n}"),
                        2 => format!("take {n}"),
                        3 => "look".to_string(),
                        4 => "inventory".to_string(),
                        _ => format!("put {n} in/on {}", names[rng.gen_range(0..names.len())]),
                    }
                })
                .collect();
            (w, plan, random)
        })
        .collect();
    let t0 = Instant::now();
    let mut steps = 0u64;
    let mut solved = 0u64;
    for (w, plan, random) in &games {
        let mut g = w.clone();
        for cmd in plan {
            std::hint::black_box(g.apply(cmd));
        }
        solved += u64::from(g.goal_met());
        for cmd in random {
            std::hint::black_box(g.apply(cmd));
        }
        steps += (plan.len() + random.len()) as u64;
    }
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "games           {} ({} solved by their plans)",
        games.len(),
        solved
    );
    println!("steps           {steps} in {wall:.3} s");
    println!(
        "throughput      {:.0} steps/s (one thread)",
        steps as f64 / wall
    );
    Ok(())
}
