//! Connecting to PostgreSQL from a `postgres://` URL: the password from the URL, `PGPASSWORD`
//! or a password file (`PGPASSFILE`, else `~/.pgpass`), TLS by rustls when the URL's
//! `sslmode` asks for it (`prefer`, the default, falls back to plain text when the server has
//! no TLS). A URL is only ever shown through [`redact`]: no password reaches a log or an error.
use std::path::PathBuf;
use std::str::FromStr;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::Client;

use crate::QueueError;

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(an unreadable database URL)".into(),
    }
}

/// The URL's config with the password filled in from the environment when the URL has none.
fn config(url: &str) -> Result<tokio_postgres::Config, QueueError> {
    // tokio-postgres names the part it could not read; no part of the URL goes into the error.
    let mut cfg = tokio_postgres::Config::from_str(url).map_err(|e| {
        QueueError::Connect(format!("{}: not a PostgreSQL URL ({e})", redact(url)))
    })?;
    if cfg.get_password().is_none() {
        if let Some(pw) = std::env::var_os("PGPASSWORD") {
            cfg.password(pw.into_encoded_bytes());
        } else if let Some(pw) = passfile_password(&cfg) {
            cfg.password(pw);
        }
    }
    Ok(cfg)
}

/// The password for this host, port, database and user from a libpq password file
/// (`host:port:database:user:password`, `*` matching anything, `\` escaping `:` and `\`).
fn passfile_password(cfg: &tokio_postgres::Config) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = cfg.get_user().unwrap_or_default().to_string();
    let db = cfg.get_dbname().unwrap_or(&user).to_string();
    let want = [host, port, db, user];
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let fields = split_passfile_line(line);
            let [h, p, d, u, pw] = fields.as_slice() else {
                return None;
            };
            let ok = [h, p, d, u]
                .iter()
                .zip(&want)
                .all(|(f, w)| f.as_str() == "*" || f == &w);
            ok.then(|| pw.clone())
        })
}

fn split_passfile_line(line: &str) -> Vec<String> {
    let (mut fields, mut cur, mut escaped) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match (escaped, c) {
            (true, c) => {
                cur.push(c);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, ':') if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
            (false, c) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// The TLS connector: the Mozilla roots, plus the PEM certificates in `PGSSLROOTCERT` (a
/// private CA, or a test server's own certificate).
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, QueueError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = std::env::var_os("PGSSLROOTCERT") {
        let pem = std::fs::read(&path).map_err(|e| {
            QueueError::Connect(format!("PGSSLROOTCERT {}: {e}", PathBuf::from(&path).display()))
        })?;
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let cert: rustls::pki_types::CertificateDer = cert.map_err(|e| {
                QueueError::Connect(format!("PGSSLROOTCERT {}: {e}", PathBuf::from(&path).display()))
            })?;
            roots.add(cert).map_err(|e| QueueError::Connect(format!("PGSSLROOTCERT: {e}")))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| QueueError::Connect(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(cfg))
}

/// A client on `url`; its connection runs on a task of its own until the client is dropped.
pub async fn connect(url: &str) -> Result<Client, QueueError> {
    let cfg = config(url)?;
    let shown = redact(url);
    let fail = |e: tokio_postgres::Error| QueueError::Connect(format!("{shown}: {}", crate::db_text(&e)));
    let client = if cfg.get_ssl_mode() == SslMode::Disable {
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.map_err(fail)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!("database connection: {}", crate::db_text(&e));
            }
        });
        client
    } else {
        let (client, conn) = cfg.connect(tls()?).await.map_err(fail)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!("database connection: {}", crate::db_text(&e));
            }
        });
        client
    };
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_url_has_no_password() {
        let shown = redact("postgres://arbor:hunter2@127.0.0.1:5432/q");
        assert!(!shown.contains("hunter2") && shown.contains("arbor:***@127.0.0.1"), "{shown}");
        assert!(!redact("postgres://a:hunter2@[::1").contains("hunter2"));
    }

    #[test]
    fn passfile_lines_match_with_wildcards_and_escapes() {
        assert_eq!(split_passfile_line(r"h:5432:*:u:pa\:ss\\w"), ["h", "5432", "*", "u", r"pa:ss\w"]);
        assert_eq!(split_passfile_line("h:1:d:u:a:b"), ["h", "1", "d", "u", "a:b"]);
    }
}
