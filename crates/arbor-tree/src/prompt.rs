//! The tree prompts (prompts/tree/*.j2), rendered with minijinja.
use minijinja::{context, Environment};
use std::sync::OnceLock;

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_template("step", include_str!("../../../prompts/tree/step.j2"))
            .expect("prompts/tree/step.j2 parses");
        env.add_template(
            "self_eval",
            include_str!("../../../prompts/tree/self_eval.j2"),
        )
        .expect("prompts/tree/self_eval.j2 parses");
        env
    })
}

fn render(name: &str, question: &str, steps: &[String]) -> String {
    templates()
        .get_template(name)
        .and_then(|t| t.render(context! { question => question, steps => steps }))
        .expect("tree templates render with a question and steps")
}

/// The step policy's prompt: the question and the steps so far, ready to be continued by a line.
pub fn step_prompt(question: &str, steps: &[String]) -> String {
    render("step", question, steps)
}

/// The self-evaluation prompt; the next token is "Yes" or "No".
pub fn self_eval_prompt(question: &str, steps: &[String]) -> String {
    render("self_eval", question, steps)
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
        assert!(self_eval_prompt("Q", &["a".into()]).contains("a\n"));
    }
}
