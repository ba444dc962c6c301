//! Reading PEM files and writing files atomically with the right permissions.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::CertError;

/// Permissions of private key files (owner only).
pub(crate) const KEY_MODE: u32 = 0o600;
/// Permissions of certificate files (readable by everyone).
pub(crate) const CERT_MODE: u32 = 0o644;

/// Creates `dir` (and its parents) if needed.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|e| CertError::io(dir, e))
}

/// Reads a whole text file.
pub(crate) fn read_text(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|e| CertError::io(path, e))
}

/// Whether `path` exists (errors other than "not found" count as existing, so that the caller's
/// read reports them).
pub(crate) fn exists(path: &Path) -> bool {
    !matches!(fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Parses every `CERTIFICATE` block of `pem` (read from `path`); at least one is required.
pub(crate) fn parse_certs(
    path: &Path,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::bad_pem(path, format!("cannot decode certificates: {e}")))?;
    if certs.is_empty() {
        return Err(CertError::bad_pem(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Parses the first private key block (PKCS#8, PKCS#1 or SEC1) of `pem` (read from `path`).
pub(crate) fn parse_private_key(
    path: &Path,
    pem: &str,
) -> Result<PrivateKeyDer<'static>, CertError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| CertError::bad_pem(path, format!("cannot decode private key: {e}")))?
        .ok_or_else(|| CertError::bad_pem(path, "no PRIVATE KEY block found"))
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, created with
/// `mode` on unix, flushed to disk, then renamed over `path`.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let tmp = temp_path(path);
    // A leftover from a crash might carry other permissions: start afresh.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(CertError::io(&tmp, e)),
        _ => {}
    }
    let mut file = open_new(&tmp, mode).map_err(|e| CertError::io(&tmp, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| CertError::io(&tmp, e))?;
    drop(file);
    set_mode(&tmp, mode).map_err(|e| CertError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| CertError::io(path, e))
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

#[cfg(unix)]
fn open_new(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

#[cfg(not(unix))]
fn open_new(path: &Path, _mode: u32) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Sets the exact permissions (the process umask may have narrowed those given at creation).
#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}
