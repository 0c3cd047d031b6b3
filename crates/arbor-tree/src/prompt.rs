//! The self-evaluation prompt (prompts/tree/self_eval.j2), rendered with minijinja. (The step
//! prompt is `arbor_envs::prompt`, shared with training.)
use minijinja::{context, Environment};
use std::sync::OnceLock;

/// The self-evaluation prompt; the next token is "Yes" or "No".
pub fn self_eval_prompt(question: &str, steps: &[String]) -> String {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_template(
            "self_eval",
            include_str!("../../../prompts/tree/self_eval.j2"),
        )
        .expect("prompts/tree/self_eval.j2 parses");
        env
    })
    .get_template("self_eval")
    .and_then(|t| t.render(context! { question => question, steps => steps }))
    .expect("the self-evaluation template renders with a question and steps")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_eval_prompt_lists_the_steps() {
        assert!(self_eval_prompt("Q", &["a".into()]).contains("a\n"));
    }
}
