//! Summaries of the shared libraries a link uses: the library's own `.allocsite`
//! when it was built through the wrapper, else its analysis, cached by build-id
//! under `$XDG_CACHE_HOME/allocsite` (or `~/.cache/allocsite`). The C library
//! itself is not analyzed: its allocating functions are built into the analysis.

use allocsite_analysis::{self as analysis, Classification};
use object::Object;
use std::path::{Path, PathBuf};

fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("allocsite"))
}

/// The C library, the C++ runtime and their companions: the analysis's built-in
/// table covers them (the same list `analysis::deps` skips).
fn builtin(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    [
        "libc.so", "libm.so", "libstdc++.so", "libgcc_s.so", "ld-linux", "libpthread.so", "libdl.so", "librt.so", "libresolv.so",
        "libutil.so", "libmvec.so", "libc++.so",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The summary of one shared library, or None for files that are not ELF (linker
/// scripts such as `libc.so`) and for the C library.
pub fn summary(path: &Path) -> Result<Option<Classification>, String> {
    if builtin(path) {
        return Ok(None);
    }
    let data = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let Ok(file) = object::File::parse(&*data) else { return Ok(None) };
    if let Some(c) = super::embed::read(&data) {
        return c.map(Some).map_err(|e| format!("{}: .allocsite: {e}", path.display()));
    }
    let id = file.build_id().ok().flatten().map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>());
    let cached = id.as_ref().and_then(|id| Some(cache_dir()?.join(format!("{id}-{}.json", env!("CARGO_PKG_VERSION")))));
    if let Some(p) = &cached {
        if let Ok(text) = std::fs::read_to_string(p) {
            if let Ok(c) = Classification::from_json(&text) {
                return Ok(Some(c));
            }
        }
    }
    let mut cls = analysis::analyze_bytes(&data, &analysis::Options::default()).map_err(|e| format!("{}: {e}", path.display()))?;
    cls.binary = path.display().to_string();
    if let Some(p) = &cached {
        // A cache that cannot be written only costs time.
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = crate::atomic::write_atomic(p, cls.to_json().as_bytes(), None);
    }
    Ok(Some(cls))
}

