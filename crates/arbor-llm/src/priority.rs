//! Which work a model call serves first when calls wait for an endpoint: a number carried by
//! the task that makes the call (lower goes first). A synthesis job gives each item its index,
//! so the server's capacity finishes the oldest items first and pairs stream out in input order
//! instead of every admitted item advancing in lockstep.

tokio::task_local! {
    static PRIORITY: u64;
}

/// Runs `f` with calls made inside it waiting at priority `p` (lower is served first).
pub async fn with_priority<F: std::future::Future>(p: u64, f: F) -> F::Output {
    PRIORITY.scope(p, f).await
}

/// The priority of the calling task: its `with_priority` number, or last when it has none.
pub fn current() -> u64 {
    PRIORITY.try_with(|p| *p).unwrap_or(u64::MAX)
}
