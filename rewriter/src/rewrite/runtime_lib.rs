//! The runtime library placed next to OUT: `--runtime PATH`, else `$ALLOCSITE_RT`,
//! else `liballocsite_rt.so` next to the running `allocsite` executable.

use super::dynamic::{IMPORTS, RUNTIME_SONAME};
use object::{Object, ObjectSymbol};
use std::path::{Path, PathBuf};

pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let (path, how) = if let Some(p) = explicit {
        (p.to_path_buf(), "--runtime")
    } else if let Some(p) = std::env::var_os("ALLOCSITE_RT").filter(|v| !v.is_empty()) {
        (PathBuf::from(p), "ALLOCSITE_RT")
    } else {
        let exe = std::env::current_exe().map_err(|e| format!("cannot locate the allocsite executable: {e}"))?;
        (exe.with_file_name(RUNTIME_SONAME), "next to the allocsite executable")
    };
    let data = std::fs::read(&path).map_err(|e| {
        format!("runtime library {} ({how}) cannot be read: {e}; pass --runtime PATH or set ALLOCSITE_RT", path.display())
    })?;
    let obj = object::File::parse(&*data).map_err(|e| format!("runtime library {}: not an ELF file: {e}", path.display()))?;
    for (h, ..) in IMPORTS {
        if !obj.dynamic_symbols().any(|s| !s.is_undefined() && s.name() == Ok(h)) {
            return Err(format!("runtime library {} does not export {h} (hook ABI v5)", path.display()));
        }
    }
    Ok(path)
}

/// Copy the runtime next to OUT (atomically), unless it is already there.
pub fn install_next_to(runtime: &Path, output: &Path) -> Result<(), String> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dest = dir.join(RUNTIME_SONAME);
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(runtime), std::fs::canonicalize(&dest)) {
        if a == b {
            return Ok(());
        }
    }
    let data = std::fs::read(runtime).map_err(|e| format!("{}: cannot read: {e}", runtime.display()))?;
    if std::fs::read(&dest).is_ok_and(|d| d == data) {
        return Ok(());
    }
    crate::atomic::write_atomic(&dest, &data, Some(0o755)).map_err(|e| format!("{}: cannot write: {e}", dest.display()))
}
