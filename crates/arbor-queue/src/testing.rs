//! A private PostgreSQL cluster for tests: `initdb` in a temporary directory, a server on a
//! free loopback port with password authentication, stopped and removed on drop. The server
//! refuses to run as root, so under root the cluster belongs to `nobody` and its programs run
//! through `setpriv`.
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    pub password: String,
}

/// The directory of `initdb` and `pg_ctl`: on the PATH, or Debian's versioned directory.
fn bin_dir() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file());
    if let Some(d) = on_path {
        return Ok(d);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL is not installed (no initdb; Debian: apt-get install postgresql)".to_string())?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| "PostgreSQL is not installed (no initdb)".into())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `nobody`'s uid and gid (65534 on Debian).
const NOBODY: u32 = 65534;

impl PgCluster {
    /// Starts a cluster; the error says what is missing.
    pub fn start() -> Result<Self, String> {
        Self::start_with(false, false)
    }

    /// With `tls`, the server also speaks TLS with a self-signed certificate for 127.0.0.1
    /// ([`PgCluster::certificate`], for `PGSSLROOTCERT`); with `durable`, commits reach the
    /// disk (fsync on, as in production: benchmarks), otherwise not (tests run faster).
    pub fn start_with(tls: bool, durable: bool) -> Result<Self, String> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("arbor-pg-")
            .tempdir_in(std::env::temp_dir())
            .map_err(|e| e.to_string())?;
        let password = format!("pw-{:016x}", arbor_core::fnv1a(format!("{:?}", std::time::SystemTime::now()).bytes()));
        std::fs::write(dir.path().join("pw"), &password).map_err(|e| e.to_string())?;
        if tls {
            let out = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
                .args(["-keyout", "server.key", "-out", "server.crt"])
                .current_dir(dir.path())
                .output()
                .map_err(|e| format!("openssl: {e}"))?;
            if !out.status.success() {
                return Err(format!("openssl: {}", String::from_utf8_lossy(&out.stderr)));
            }
            std::fs::set_permissions(dir.path().join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| e.to_string())?;
        }
        if is_root() {
            chown_tree(dir.path())?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let c = Self {
            dir,
            bin,
            port,
            password,
        };
        let data = c.data();
        c.run("initdb", &["-D", &data, "-U", "arbor", "--auth=scram-sha-256", "--pwfile", &c.path("pw"), "-E", "UTF8", "--no-sync", "--no-instructions"])?;
        let mut opts = format!("-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c max_connections=200");
        if !durable {
            opts += " -c fsync=off";
        }
        if tls {
            opts += &format!(" -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}", c.path("server.crt"), c.path("server.key"));
        }
        c.run("pg_ctl", &["-D", &data, "-l", &c.path("log"), "-w", "-t", "60", "-o", &opts, "start"])?;
        Ok(c)
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn data(&self) -> String {
        self.path("data")
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args([&format!("--reuid={NOBODY}"), &format!("--regid={NOBODY}"), "--clear-groups", "--"]);
            c.arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.path("log")).unwrap_or_default();
            return Err(format!("{program} failed: {}{}\n{log}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    }

    /// The URL with the password in it.
    pub fn url(&self) -> String {
        format!("postgres://arbor:{}@127.0.0.1:{}/postgres?sslmode=disable", self.password, self.port)
    }

    /// The URL without a password (for `PGPASSWORD` or a password file).
    pub fn url_without_password(&self) -> String {
        format!("postgres://arbor@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }

    /// The server's certificate (PEM), with [`PgCluster::start_with`] TLS.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// Stops and starts the server again (a database restart under running clients).
    pub fn restart(&self) -> Result<(), String> {
        // With the log file: the new server must not hold our output pipes open.
        self.run("pg_ctl", &["-D", &self.data(), "-l", &self.path("log"), "-m", "fast", "-w", "-t", "60", "restart"])
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn chown_tree(p: &Path) -> Result<(), String> {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).map_err(|e| format!("{}: {e}", p.display()))?;
    if p.is_dir() {
        for e in std::fs::read_dir(p).map_err(|e| e.to_string())? {
            chown_tree(&e.map_err(|e| e.to_string())?.path())?;
        }
    }
    Ok(())
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}
