//! Runs Python snippets in a sandbox.
//!
//! Containment, each layer for one threat:
//! - bubblewrap (`bwrap`): fresh user, PID, network, IPC, UTS and mount namespaces. The network
//!   namespace holds only a down loopback, so nothing (127.0.0.1 included) can be reached. The
//!   mount namespace shows only `/usr` (read-only), a private `/tmp`, `/proc`, a minimal `/dev`
//!   and the scratch directory: nothing else on the host exists inside.
//! - A distinct unprivileged uid per concurrent run (when arbor runs as root), so the process
//!   limit counts only this run's processes and host files are not the sandbox's to read.
//! - rlimits: CPU seconds, address space, processes, file size, no core dumps.
//! - A wall-clock timeout that kills the whole sandbox (bwrap's PID namespace dies with it).
//! - Output read up to a limit, the rest drained and dropped.
//!
//! Where the kernel will not create the namespaces, the runner refuses to run.
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Resource limits of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub wall_secs: f64,
    pub cpu_secs: u64,
    pub memory_bytes: u64,
    pub max_processes: u64,
    /// Bytes kept of stdout and of stderr each.
    pub output_bytes: usize,
    /// Largest file the snippet may write.
    pub file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall_secs: 10.0,
            cpu_secs: 5,
            memory_bytes: 512 << 20,
            max_processes: 16,
            output_bytes: 64 << 10,
            file_bytes: 16 << 20,
        }
    }
}

/// Which limit stopped a run, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitHit {
    WallTime,
    CpuTime,
    Memory,
    Processes,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutput {
    /// The exit code; 128 + n when killed by signal n.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub limit: Option<LimitHit>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub elapsed_ms: u64,
    /// The host uid the run used (None when arbor is not root and runs it as itself).
    pub uid: Option<u32>,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0 && self.limit.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the Python sandbox cannot run here: {0}")]
    Unavailable(String),
    #[error("sandbox I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs Python snippets under [`Limits`].
#[derive(Debug, Clone)]
pub struct PythonRunner {
    limits: Limits,
    bwrap: PathBuf,
    python: PathBuf,
}

/// Sandbox uids, one per concurrent run, far above any real account.
const UID_BASE: u32 = 1_900_000;
/// How many: runs beyond this many at once wait for a free uid (never run as root).
/// `ARBOR_SANDBOX_UIDS` lowers it (read once; for tests of the wait).
fn uid_slots() -> u32 {
    std::env::var("ARBOR_SANDBOX_UIDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=4096).contains(n))
        .unwrap_or(4096)
}

/// The free uids, first in first out (a uid is reused only after every other slot has been),
/// and a permit per free uid.
struct UidPool {
    free: Mutex<VecDeque<u32>>,
    permits: Arc<tokio::sync::Semaphore>,
}

static UIDS: OnceLock<UidPool> = OnceLock::new();

/// A uid of the pool while the run lasts, or none when arbor is not root (the run then stays
/// arbor's own uid, which the kernel's process limit does bind).
struct UidLease(Option<(u32, tokio::sync::OwnedSemaphorePermit)>);

impl UidLease {
    async fn take() -> Self {
        if !is_root() {
            return Self(None);
        }
        let pool = UIDS.get_or_init(|| {
            let n = uid_slots();
            UidPool {
                free: Mutex::new((0..n).map(|i| UID_BASE + i).collect()),
                permits: Arc::new(tokio::sync::Semaphore::new(n as usize)),
            }
        });
        // Wait for a free uid: as root without one, the code would run with no process limit.
        let permit = pool
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the uid semaphore is never closed");
        let uid = pool
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .expect("a permit stands for a free uid");
        Self(Some((uid, permit)))
    }

    fn uid(&self) -> Option<u32> {
        self.0.as_ref().map(|(uid, _)| *uid)
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        if let (Some((uid, permit)), Some(pool)) = (self.0.take(), UIDS.get()) {
            pool.free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(uid);
            drop(permit);
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn find_in_path(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    fallbacks
        .iter()
        .map(PathBuf::from)
        .chain(from_path)
        .find(|p| p.is_file())
}

impl PythonRunner {
    /// Finds bwrap and a python3 under /usr, and checks once per process that the namespaces can
    /// be created; refuses otherwise, saying what to install.
    pub fn new(limits: Limits) -> Result<Self, SandboxError> {
        let bwrap = find_in_path("bwrap", &["/usr/bin/bwrap"]).ok_or_else(|| {
            SandboxError::Unavailable(
                "`bwrap` not found: install bubblewrap (apt-get install bubblewrap)".into(),
            )
        })?;
        let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                SandboxError::Unavailable(
                    "no python3 under /usr: install python3 (apt-get install python3)".into(),
                )
            })?;
        static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
        PROBE
            .get_or_init(|| {
                let out = std::process::Command::new(&bwrap)
                    .args(base_args())
                    .arg("/usr/bin/true")
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", bwrap.display()))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "bwrap cannot create namespaces ({}); refusing to run code without network isolation",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            })
            .clone()
            .map_err(SandboxError::Unavailable)?;
        Ok(Self {
            limits,
            bwrap,
            python,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Runs `code` as `main.py` in a fresh scratch directory (deleted afterwards), with
    /// `files` written beside it and `stdin` fed to it.
    pub async fn run(
        &self,
        code: &str,
        files: &[(&str, &str)],
        stdin: &str,
    ) -> Result<RunOutput, SandboxError> {
        let lease = UidLease::take().await;
        let scratch = tempfile::Builder::new()
            .prefix("arbor-sandbox-")
            .tempdir()?;
        std::fs::write(scratch.path().join("main.py"), code)?;
        for (name, content) in files {
            let name = Path::new(name)
                .file_name()
                .ok_or_else(|| std::io::Error::other("bad file name"))?;
            std::fs::write(scratch.path().join(name), content)?;
        }
        if let Some(uid) = lease.uid() {
            chown_tree(scratch.path(), uid)?;
        }

        let mut cmd = tokio::process::Command::new(&self.bwrap);
        cmd.args(base_args())
            .arg("--bind")
            .arg(scratch.path())
            .args([
                "/sandbox",
                "--chdir",
                "/sandbox",
                "--clearenv",
                "--setenv",
                "PATH",
                "/usr/bin:/bin",
            ])
            .args([
                "--setenv",
                "HOME",
                "/sandbox",
                "--setenv",
                "PYTHONIOENCODING",
                "utf-8",
            ])
            .arg(&self.python)
            .args(["-I", "-B", "main.py"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let limits = self.limits.clone();
        let uid = lease.uid();
        let nproc = if uid.is_some() {
            limits.max_processes
        } else {
            limits.max_processes + own_process_count()
        };
        // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
        // functions (setrlimit, setgroups, setgid, setuid) on values computed beforehand.
        unsafe {
            cmd.pre_exec(move || {
                let set = |res, soft: u64, hard: u64| {
                    let l = libc::rlimit {
                        rlim_cur: soft as libc::rlim_t,
                        rlim_max: hard as libc::rlim_t,
                    };
                    if libc::setrlimit(res, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                };
                // Soft below hard: SIGXCPU first, so a CPU-limit kill is recognisable.
                set(libc::RLIMIT_CPU, limits.cpu_secs, limits.cpu_secs + 1)?;
                set(libc::RLIMIT_AS, limits.memory_bytes, limits.memory_bytes)?;
                set(libc::RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes)?;
                set(libc::RLIMIT_CORE, 0, 0)?;
                if let Some(uid) = uid {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(uid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // After the uid switch, so the count is of the sandbox uid's processes.
                set(libc::RLIMIT_NPROC, nproc, nproc)?;
                Ok(())
            });
        }

        let start = Instant::now();
        let mut child = cmd.spawn()?;
        let mut child_in = child.stdin.take().expect("piped");
        let input = stdin.as_bytes().to_vec();
        let feed = tokio::spawn(async move {
            let _ = child_in.write_all(&input).await;
        });
        let out = tokio::spawn(read_capped(
            child.stdout.take().expect("piped"),
            limits.output_bytes,
        ));
        let err = tokio::spawn(read_capped(
            child.stderr.take().expect("piped"),
            limits.output_bytes,
        ));
        let wall = Duration::from_secs_f64(self.limits.wall_secs);
        let (status, timed_out) = match tokio::time::timeout(wall, child.wait()).await {
            Ok(s) => (s?, false),
            Err(_) => {
                if let Some(pid) = child.id() {
                    // SAFETY: kill on our own child's process group.
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                }
                (child.wait().await?, true)
            }
        };
        feed.abort();
        let (stdout, stdout_truncated) = out.await.map_err(std::io::Error::other)??;
        let (stderr, stderr_truncated) = err.await.map_err(std::io::Error::other)??;
        let exit_code = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        let signal = (exit_code > 128 && exit_code < 128 + 65).then_some(exit_code - 128);
        let elapsed = start.elapsed();
        // CPU time never exceeds wall time: a SIGKILL sooner than the CPU limit came from
        // elsewhere (the OOM killer, another process) and is reported as the signal alone.
        let cpu_kill = signal == Some(libc::SIGXCPU)
            || (signal == Some(libc::SIGKILL)
                && elapsed.as_secs_f64() >= self.limits.cpu_secs as f64);
        let limit = if timed_out {
            Some(LimitHit::WallTime)
        } else if cpu_kill {
            Some(LimitHit::CpuTime)
        } else if exit_code == 1 && uncaught_memory_error(&stderr) {
            Some(LimitHit::Memory)
        } else if stderr.contains("Resource temporarily unavailable")
            || stderr.contains("BlockingIOError")
        {
            Some(LimitHit::Processes)
        } else {
            None
        };
        drop(scratch);
        Ok(RunOutput {
            exit_code,
            signal,
            limit,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            elapsed_ms: elapsed.as_millis() as u64,
            uid,
        })
    }
}

/// bwrap's arguments up to the scratch bind: namespaces and the visible filesystem.
fn base_args() -> Vec<String> {
    let mut a: Vec<String> = [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    .map(String::from)
    .to_vec();
    // Merged-/usr systems have /lib, /lib64, /bin as links into /usr; others need binds.
    for dir in ["/lib", "/lib64", "/bin"] {
        match std::fs::read_link(dir) {
            Ok(target) => a.extend(["--symlink".into(), target.display().to_string(), dir.into()]),
            Err(_) if Path::new(dir).is_dir() => {
                a.extend(["--ro-bind".into(), dir.into(), dir.into()])
            }
            Err(_) => {}
        }
    }
    a.extend(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"].map(String::from));
    a
}

/// Whether Python died of an uncaught MemoryError: its traceback ends with that exception
/// (not merely "MemoryError" printed by the code).
fn uncaught_memory_error(stderr: &str) -> bool {
    stderr.contains("Traceback (most recent call last):")
        && stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l == "MemoryError" || l.starts_with("MemoryError: "))
}

fn chown_tree(dir: &Path, uid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(dir, Some(uid), Some(uid))?;
    for e in std::fs::read_dir(dir)? {
        std::os::unix::fs::chown(e?.path(), Some(uid), Some(uid))?;
    }
    Ok(())
}

/// Processes of this user, for the process limit when arbor cannot switch uid.
fn own_process_count() -> u64 {
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .filter(|e| {
                    e.metadata()
                        .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == me)
                })
                .count() as u64
        })
        .unwrap_or(0)
}

/// Reads everything, keeps the first `cap` bytes (cut at a char boundary).
async fn read_capped(mut r: impl AsyncRead + Unpin, cap: usize) -> std::io::Result<(String, bool)> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        truncated |= n > room;
    }
    let mut s = String::from_utf8_lossy(&kept).into_owned();
    if truncated {
        while !s.is_char_boundary(s.len()) {
            s.pop();
        }
    }
    Ok((s, truncated))
}
