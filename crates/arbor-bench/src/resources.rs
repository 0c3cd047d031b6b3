//! This process's own resource use, for benchmark reports.

/// User + system CPU seconds this process has used so far (children not included).
pub fn cpu_seconds() -> f64 {
    let u = rusage();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Peak resident set size of this process, in bytes.
pub fn peak_rss_bytes() -> u64 {
    // Linux reports ru_maxrss in KiB.
    rusage().ru_maxrss as u64 * 1024
}

fn rusage() -> libc::rusage {
    // SAFETY: getrusage writes a whole rusage into the zeroed struct we own.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    }
}

/// Resident set size of this process now, in bytes (Linux `/proc/self/statm`).
pub fn current_rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|x| x.parse::<u64>().ok())
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// What a finished child process used.
pub struct ChildUsage {
    pub status: std::process::ExitStatus,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub peak_rss_bytes: u64,
}

/// Runs `cmd` to completion and reports its wall time, CPU seconds (user + system, its own
/// children included when they were waited for) and peak RSS, from `wait4`.
pub fn run_measured(cmd: &mut std::process::Command) -> std::io::Result<ChildUsage> {
    use std::os::unix::process::ExitStatusExt;
    let t = std::time::Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: wait4 fills the zeroed rusage we own for the child we spawned (and reaps it, so the
    // `Child` handle is not waited on again).
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::wait4(pid, &mut status, 0, &mut ru) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        ru
    };
    let wall_s = t.elapsed().as_secs_f64();
    std::mem::forget(child);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(ChildUsage {
        status: std::process::ExitStatus::from_raw(status),
        wall_s,
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
        peak_rss_bytes: ru.ru_maxrss as u64 * 1024,
    })
}

/// Peak GPU memory in use while something runs, sampled from `nvidia-smi` every 100 ms (the
/// whole device's figure, so one measured process at a time).
pub struct GpuMemory {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Option<f64>>,
}

fn gpu_used_mib() -> Option<f64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

impl GpuMemory {
    /// Starts sampling; `None` where there is no `nvidia-smi`.
    pub fn start() -> Option<Self> {
        let base = gpu_used_mib()?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = base;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(m) = gpu_used_mib() {
                    peak = peak.max(m);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Some(peak - base)
        });
        Some(Self { stop, thread })
    }

    /// The peak above what was in use at the start, in MiB.
    pub fn finish(self) -> Option<f64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}
