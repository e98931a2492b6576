//! Dependencies' allocation functions: a shared library's summary (its own
//! `analyze --format json` output, given with `--with`) turns calls of its exported
//! wrappers into calls of imported allocation functions. Without `--with`, the
//! `DT_NEEDED` libraries the loader would find through `DT_RUNPATH`/`DT_RPATH`
//! (`$ORIGIN` expanded) are analyzed on the fly, except the C library, the C++
//! runtime and anything in the system's library directories (their allocators are
//! the built-in table). Nothing is cached.

use crate::classification::{AllocFn, Classification, Kind, Role};
use crate::seeds::Spec;
use object::{Object, ObjectSection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A dependency's summary and where it came from (for evidence).
#[derive(Debug, Clone)]
pub struct Summary {
    pub origin: String,
    pub cls: Classification,
}

impl Summary {
    /// Read a summary file; the error is one line naming the file.
    pub fn read(path: &Path) -> Result<Summary, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read summary: {e}", path.display()))?;
        let cls = Classification::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Summary { origin: path.display().to_string(), cls })
    }
}

/// Name (and alias) → spec of every allocation function and constructor the
/// summaries define, with the summary each came from; the first summary naming a
/// function wins.
pub(crate) fn specs(sums: &[Summary]) -> HashMap<String, (Spec, String)> {
    let mut out = HashMap::new();
    for s in sums {
        for f in s.cls.functions.iter().filter(|f| !f.external) {
            let spec = spec_of(f);
            // A free function with no pointer role says nothing usable.
            if f.kind == Kind::Free && spec.ptr.is_none() {
                continue;
            }
            for n in std::iter::once(&f.name).chain(f.aliases.iter()) {
                out.entry(n.clone()).or_insert((spec, s.origin.clone()));
            }
        }
    }
    out
}

/// The spec a classified function stands for when others call it.
pub(crate) fn spec_of(f: &AllocFn) -> Spec {
    Spec {
        kind: Some(f.kind),
        size: f.arg(Role::Size),
        count: f.arg(Role::Count),
        ptr: f.arg(Role::Ptr),
        out: f.arg(Role::Out),
        src: None,
        when_null: None,
        nargs: f.nargs.unwrap_or(0),
    }
}

const DT_NEEDED: i64 = 1;
const DT_RPATH: i64 = 15;
const DT_RUNPATH: i64 = 29;

/// The `DT_NEEDED` libraries found through the file's own search path that are
/// neither the C library / C++ runtime nor in a system library directory.
pub(crate) fn runpath_libraries(data: &[u8], path: Option<&Path>) -> Vec<PathBuf> {
    let Ok(file) = object::File::parse(data) else { return Vec::new() };
    let (Some(dynamic), Some(dynstr)) = (file.section_by_name(".dynamic"), file.section_by_name(".dynstr")) else {
        return Vec::new();
    };
    let (Ok(dyn_data), Ok(strs)) = (dynamic.data(), dynstr.data()) else { return Vec::new() };
    let string = |off: u64| -> Option<String> {
        let rest = strs.get(usize::try_from(off).ok()?..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
    };
    let (mut needed, mut rpath, mut runpath) = (Vec::new(), None, None);
    for e in dyn_data.chunks_exact(16) {
        let tag = i64::from_le_bytes(e[..8].try_into().unwrap_or([0; 8]));
        let val = u64::from_le_bytes(e[8..].try_into().unwrap_or([0; 8]));
        match tag {
            0 => break,
            DT_NEEDED => needed.extend(string(val)),
            DT_RPATH => rpath = string(val),
            DT_RUNPATH => runpath = string(val),
            _ => {}
        }
    }
    // The loader ignores DT_RPATH when DT_RUNPATH is present.
    let Some(search) = runpath.or(rpath) else { return Vec::new() };
    let origin = path.and_then(|p| std::fs::canonicalize(p).ok()).and_then(|p| p.parent().map(Path::to_path_buf));
    let dirs: Vec<PathBuf> = search
        .split(':')
        .filter(|d| !d.is_empty())
        .filter_map(|d| {
            if d.contains("$ORIGIN") || d.contains("${ORIGIN}") {
                let o = origin.as_ref()?.to_string_lossy().into_owned();
                Some(PathBuf::from(d.replace("${ORIGIN}", &o).replace("$ORIGIN", &o)))
            } else {
                Some(PathBuf::from(d))
            }
        })
        .filter(|d| !system_dir(d))
        .collect();
    needed
        .iter()
        .filter(|n| !n.contains('/') && !runtime_library(n))
        .filter_map(|n| dirs.iter().map(|d| d.join(n)).find(|p| p.is_file()))
        .collect()
}

/// The C library, the C++ runtime and their companions: the built-in table covers them.
fn runtime_library(name: &str) -> bool {
    const RUNTIME: [&str; 12] = [
        "libc.so", "libm.so", "libstdc++.so", "libgcc_s.so", "ld-linux", "libpthread.so", "libdl.so", "librt.so",
        "libresolv.so", "libutil.so", "libmvec.so", "libc++.so",
    ];
    RUNTIME.iter().any(|r| name.starts_with(r))
}

fn system_dir(d: &Path) -> bool {
    ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib"].iter().any(|s| d.starts_with(s))
}
