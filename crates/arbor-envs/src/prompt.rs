//! The step prompt (prompts/tree/step.j2): a task's question and the steps so far, ready to be
//! continued by one more line. The step policy samples from it and training scores the same
//! text, so it lives below both.
use minijinja::{context, Environment};
use std::sync::OnceLock;

/// The step policy's prompt: the question and the steps so far.
pub fn step_prompt(question: &str, steps: &[String]) -> String {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_template("step", include_str!("../../../prompts/tree/step.j2"))
            .expect("prompts/tree/step.j2 parses");
        env
    })
    .get_template("step")
    .and_then(|t| t.render(context! { question => question, steps => steps }))
    .expect("the step template renders with a question and steps")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_prompt_ends_with_the_partial_solution() {
        let p = step_prompt("What is 2+3?", &["2+3 = 5".into()]);
        assert!(p.contains("What is 2+3?"));
        assert!(p.ends_with("<|im_start|>assistant\n2+3 = 5\n"), "{p:?}");
        assert!(step_prompt("Q", &[]).ends_with("assistant\n"));
    }
}
