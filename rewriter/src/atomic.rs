//! Outputs are written to a temporary file beside the target and renamed into
//! place, so a failed or interrupted run never leaves a partial file.
//!
//! Only a regular file is replaced that way. An output that is a device, a FIFO or a
//! socket (`-o /dev/null`, `-o /dev/stdout`, a named pipe) is written in place: a rename
//! over it would replace the node itself with a regular file (for root, `/dev/null` for
//! every process on the machine). An output that is a symbolic link is written, atomically,
//! where it points, and stays a link.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `data` to `path` atomically; `mode` sets Unix permissions (e.g. copied from the input).
pub fn write_atomic(path: &Path, data: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let target = match fs::metadata(path) {
        Ok(m) if !m.is_file() && !m.is_dir() => return write_in_place(path, data),
        Ok(_) if fs::symlink_metadata(path).is_ok_and(|l| l.file_type().is_symlink()) => fs::canonicalize(path)?,
        _ => PathBuf::from(path),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))?;
    }
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

/// A device, FIFO or socket: opened for writing and written, nothing renamed.
fn write_in_place(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("allocsite-atomic-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    // (a FIFO stands for every node that is not a regular file: a test writing to
    // /dev/null would, were the fix undone, replace the machine's /dev/null)
    #[test]
    fn a_fifo_is_written_not_replaced() {
        let d = scratch("fifo");
        let p = d.join("pipe");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let q = p.clone();
        let reader = std::thread::spawn(move || fs::read(&q).unwrap());
        write_atomic(&p, b"through the pipe", None).unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(fs::metadata(&p).unwrap().file_type().is_fifo());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_symlink_stays_a_link_to_the_new_contents() {
        let d = scratch("link");
        fs::write(d.join("real"), b"old").unwrap();
        std::os::unix::fs::symlink("real", d.join("link")).unwrap();
        write_atomic(&d.join("link"), b"new", Some(0o644)).unwrap();
        assert!(fs::symlink_metadata(d.join("link")).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(d.join("real")).unwrap(), b"new");
        // a new file and a regular one are replaced whole
        write_atomic(&d.join("fresh"), b"a", None).unwrap();
        write_atomic(&d.join("fresh"), b"b", None).unwrap();
        assert_eq!(fs::read(d.join("fresh")).unwrap(), b"b");
        fs::remove_dir_all(&d).unwrap();
    }
}
