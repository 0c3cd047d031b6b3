//! A real llama.cpp server as a child process: `serve_xllamacpp.py` (../shared/tools) with the
//! prebuilt xllamacpp wheel. Killed on drop, and by the kernel when arbor dies without dropping it.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LlamaCppServer {
    child: Child,
    /// `http://127.0.0.1:PORT/v1`
    pub base_url: String,
}

impl Drop for LlamaCppServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server dies with the process that started it: its Drop kills it, but an abort or kill -9
/// of arbor runs no Drop, and a loop's llama.cpp servers (2 threads each) were left serving
/// and loading the machine. Linux delivers the signal when the spawning thread ends; servers
/// start from the runtime's worker threads, which live as long as the process.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
        // functions (prctl, getppid, _exit).
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // The parent may have died before the prctl.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
}

impl LlamaCppServer {
    /// Starts the server on a free port with `parallel` slots and waits (up to two minutes) for
    /// its health check. Errors say what to install.
    pub async fn start(
        python: &Path,
        script: &Path,
        gguf: &Path,
        parallel: u32,
    ) -> Result<Self, String> {
        let has = Command::new(python)
            .args(["-c", "import xllamacpp"])
            .status()
            .is_ok_and(|s| s.success());
        if !has {
            return Err(format!(
                "xllamacpp is missing: run `{} -m pip install xllamacpp` (or `bash .ci/run`)",
                python.display()
            ));
        }
        if !gguf.exists() {
            return Err(format!(
                "{} is missing: run `arbor model fetch` (or `bash .ci/run`)",
                gguf.display()
            ));
        }
        if !script.exists() {
            return Err(format!(
                "{} is missing: ../shared must sit beside the repository",
                script.display()
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut cmd = Command::new(python);
        die_with_parent(&mut cmd);
        let child = cmd
            .arg(script)
            .arg("--model")
            .arg(gguf)
            .args([
                "--port",
                &port.to_string(),
                "--parallel",
                &parallel.to_string(),
                "--threads",
                "2",
                "--ctx-per-slot",
                "2048",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", script.display()))?;
        let server = LlamaCppServer {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
        };
        let health = format!("http://127.0.0.1:{port}/health");
        let t = Instant::now();
        while !crate::mock::fetch_health(&health).await.unwrap_or(false) {
            if t.elapsed() > Duration::from_secs(120) {
                return Err("the llama.cpp server did not become healthy in 120 s".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(server)
    }
}
