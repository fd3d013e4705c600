//! File and PEM helpers: private files are created with mode 0600 and never
//! overwritten; public files are replaced atomically.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::PkiError;

/// PEM label of certificates.
pub const PEM_CERT: &str = "CERTIFICATE";
/// PEM label of PKCS#8 private keys.
pub const PEM_KEY: &str = "PRIVATE KEY";
/// PEM label of CRLs.
pub const PEM_CRL: &str = "X509 CRL";
/// PEM label of PKCS#10 requests.
pub const PEM_CSR: &str = "CERTIFICATE REQUEST";

/// Encodes DER as PEM with `label` (64-column lines, LF).
pub fn to_pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Accepts PEM (first block with `label`) or raw DER; returns the DER.
pub fn pem_or_der(bytes: &[u8], label: &str) -> Result<Vec<u8>, String> {
    if bytes.starts_with(b"-----BEGIN") || bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let blocks = pem::parse_many(bytes).map_err(|e| format!("bad PEM: {e}"))?;
        let found: Vec<String> = blocks.iter().map(|b| b.tag().to_owned()).collect();
        blocks
            .into_iter()
            .find(|b| b.tag() == label)
            .map(pem::Pem::into_contents)
            .ok_or_else(|| format!("no PEM block \"{label}\" (found {found:?})"))
    } else if bytes.first() == Some(&0x30) {
        Ok(bytes.to_vec())
    } else {
        Err(format!("neither PEM \"{label}\" nor DER"))
    }
}

/// Reads a file.
pub fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    fs::read(path).map_err(|e| PkiError::io(path, e))
}

/// Reads a PEM or DER file holding a `label` object.
pub fn read_pem_or_der(path: &Path, label: &str) -> Result<Vec<u8>, PkiError> {
    pem_or_der(&read(path)?, label).map_err(|r| PkiError::corrupt(path, r))
}

/// Refuses a private key file that group or others may access.
pub fn check_private_mode(path: &Path) -> Result<(), PkiError> {
    let meta = fs::metadata(path).map_err(|e| PkiError::io(path, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PkiError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Creates `path` with mode 0600 and writes `data`; fails if it exists.
pub fn write_private_new(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::AlreadyExists(path.to_owned())
            } else {
                PkiError::io(path, e)
            }
        })?;
    // The umask cannot widen 0600, but make sure of it anyway.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .and_then(|()| f.write_all(data))
        .and_then(|()| f.sync_all())
        .map_err(|e| PkiError::io(path, e))
}

/// Replaces `path` atomically (temporary file + rename) with `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = tmp_path(path);
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(PkiError::io(path, e));
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_and_der() {
        let pem = to_pem(PEM_CERT, &[0x30, 0x00]);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(pem_or_der(pem.as_bytes(), PEM_CERT).unwrap(), [0x30, 0x00]);
        assert!(pem_or_der(pem.as_bytes(), PEM_CRL)
            .unwrap_err()
            .contains("found"));
        assert_eq!(pem_or_der(&[0x30, 0x00], PEM_CRL).unwrap(), [0x30, 0x00]);
        assert!(pem_or_der(b"hello", PEM_CRL).is_err());
    }

    #[test]
    fn private_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_private_new(&p, b"x").unwrap();
        check_private_mode(&p).unwrap();
        assert!(matches!(
            write_private_new(&p, b"y"),
            Err(PkiError::AlreadyExists(_))
        ));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_private_mode(&p).unwrap_err();
        assert!(matches!(e, PkiError::KeyPermissions { mode: 0o644, .. }));
        assert!(e.to_string().contains("chmod 600"));
        let q = dir.path().join("pub");
        write_atomic(&q, b"1", 0o644).unwrap();
        write_atomic(&q, b"2", 0o644).unwrap();
        assert_eq!(fs::read(&q).unwrap(), b"2");
    }
}
