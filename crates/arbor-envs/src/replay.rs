//! The world model of search: a path of steps replayed in a fresh episode. Search algorithms,
//! evaluators (rollouts) and test-time decoding all ask it whether a path has ended and, if so,
//! what the environment's verifier says.
use crate::{EnvError, Environment, Task};

/// Where a path ends up in the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub terminal: bool,
    /// The verifier's score for terminal paths (0 otherwise).
    pub reward: f64,
    pub verified: Option<bool>,
}

/// Replays `steps` in a fresh episode of `task` and reports whether the path has ended and, if
/// so, the verifier's verdict.
pub async fn replay(
    env: &dyn Environment,
    task: &Task,
    steps: &[String],
) -> Result<Outcome, EnvError> {
    let mut episode = env.start(task)?;
    for s in steps {
        if episode.done() {
            break;
        }
        episode.step(s).await;
    }
    if episode.done() {
        let v = episode.verify().await;
        Ok(Outcome {
            terminal: true,
            reward: v.score,
            verified: Some(v.correct),
        })
    } else {
        Ok(Outcome {
            terminal: false,
            reward: 0.0,
            verified: None,
        })
    }
}
