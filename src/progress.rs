//! Progress bars that share stderr with log lines (every log line is written while the bars
//! are suspended, so neither tears the other; bars hide themselves when stderr is not a
//! terminal), a ticker that refreshes a bar from live counters, and Ctrl-C as a stop flag.
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::signal::unix::{signal, Signal, SignalKind};

pub fn multi() -> &'static MultiProgress {
    static M: OnceLock<MultiProgress> = OnceLock::new();
    M.get_or_init(MultiProgress::new)
}

/// A stderr writer for tracing that clears the bars while it writes.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        multi().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A bar of `total` items with a free-form message (counters, rates) after the count.
pub fn bar(total: u64) -> ProgressBar {
    let style =
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise}, eta {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    multi().add(ProgressBar::new(total).with_style(style))
}

/// A bar refreshed five times a second by `message(bar, seconds since start)`.
pub struct Ticker {
    pub bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

pub fn ticker<F>(total: u64, mut message: F) -> Ticker
where
    F: FnMut(&ProgressBar, f64) -> String + Send + 'static,
{
    let bar = bar(total);
    let b = bar.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move {
        loop {
            let m = message(&b, started.elapsed().as_secs_f64().max(1e-3));
            b.set_message(m);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Ticker { bar, task }
}

/// A bar following `progress` (its units done of its total), labelled `label`.
pub fn follow(progress: Arc<arbor_core::Progress>, label: String) -> Ticker {
    ticker(0, move |bar, _| {
        let (done, total) = progress.get();
        bar.set_length(total);
        bar.set_position(done);
        format!("{label}{}", progress.unit())
    })
}

impl Ticker {
    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// A flag set by the first Ctrl-C or SIGTERM (the job finishes what is in flight); a second
/// one exits at once.
pub fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    tokio::spawn(async move {
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        if signalled(&mut term).await {
            eprintln!("interrupted: finishing the work in flight (Ctrl-C again to abort)");
            s.store(true, Ordering::Relaxed);
            if signalled(&mut term).await {
                // As kill -9 would: process::exit ran LibTorch's destructors under live threads.
                eprintln!("aborted: what had finished is kept; run the same command with --resume to go on");
                unsafe { libc::_exit(130) } // SAFETY: ends the process; nothing after it runs.
            }
        }
    });
    stop
}

async fn signalled(term: &mut Signal) -> bool {
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.is_ok(),
        r = term.recv() => r.is_some(),
    }
}
