//! Summaries of the shared libraries a link uses: the library's own `.allocsite`
//! when it was built through the wrapper, else its analysis, cached by build-id
//! under `$XDG_CACHE_HOME/allocsite` (or `~/.cache/allocsite`). The C library
//! itself is not analyzed: its allocating functions are built into the analysis.

use allocsite_analysis::{self as analysis, Classification, Kind};
use object::{Object, ObjectSymbol};
use std::path::{Path, PathBuf};

fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("allocsite"))
}

/// The C library and the dynamic loader: covered by the built-in table.
fn builtin(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    ["libc.so", "ld-linux", "libc_nonshared"].iter().any(|p| name.starts_with(p))
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

/// Names the ELF image imports (undefined dynamic symbols).
pub fn imported_names(data: &[u8]) -> Vec<String> {
    let Ok(file) = object::File::parse(data) else { return Vec::new() };
    let mut v: Vec<String> = file
        .dynamic_symbols()
        .filter(|s| s.is_undefined())
        .filter_map(|s| s.name().ok().map(|n| n.split('@').next().unwrap_or(n).to_string()))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The allocation functions of `deps` that the output imports, as descriptors the
/// analysis takes like user-named allocators, with the library each comes from.
pub fn descriptors(deps: &[(PathBuf, Classification)], imported: &[String]) -> Vec<(analysis::descriptor::Descriptor, analysis::AllocFn, PathBuf)> {
    let mut out = Vec::new();
    for (path, cls) in deps {
        for f in &cls.functions {
            if f.kind == Kind::Ctor || f.external || imported.binary_search(&f.name).is_err() {
                continue;
            }
            if out.iter().any(|(d, _, _): &(analysis::descriptor::Descriptor, _, _)| d.name == f.name) {
                continue;
            }
            let list_kind = if f.kind == Kind::Free { Kind::Free } else { Kind::Alloc };
            if let Ok(mut d) = analysis::descriptor::parse_list(&f.descriptor, list_kind) {
                if let Some(d) = d.pop() {
                    out.push((d, f.clone(), path.clone()));
                }
            }
        }
    }
    out
}
