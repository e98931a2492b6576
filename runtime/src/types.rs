//! Allocated types per site, for reports and `allocsite_get_type`: the
//! `.allocsite.types` section (`VADDR_HEX TYPE` lines, written by `allocsite cc`
//! and `allocsite rewrite --types`) of the object holding the site, read once per
//! object on first use (`allocsite_get_type` itself is in api.rs). Uses ordinary
//! allocation; callers hold the runtime guard.
use core::ffi::CStr;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::Mutex;

struct Tables {
    /// Object path → its (vaddr, type) rows, sorted.
    objects: HashMap<String, Vec<(u64, &'static CStr)>>,
    /// Type names, interned: `allocsite_get_type` hands out pointers that stay valid.
    names: HashMap<String, &'static CStr>,
}

static TABLES: Mutex<Option<Tables>> = Mutex::new(None);

fn load(path: &str, names: &mut HashMap<String, &'static CStr>) -> Vec<(u64, &'static CStr)> {
    let Ok(data) = std::fs::read(path) else { return Vec::new() };
    let Some(elf) = crate::elf::Elf::parse(&data) else { return Vec::new() };
    let Some(text) = elf.data(&data, ".allocsite.types") else { return Vec::new() };
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(text).lines() {
        let Some((a, t)) = line.split_once(' ') else { continue };
        let Ok(a) = u64::from_str_radix(a, 16) else { continue };
        let name = match names.get(t) {
            Some(&n) => n,
            None => {
                let Ok(c) = CString::new(t) else { continue };
                let n: &'static CStr = Box::leak(c.into_boxed_c_str());
                names.insert(t.to_string(), n);
                n
            }
        };
        rows.push((a, name));
    }
    rows.sort_unstable_by_key(|r| r.0);
    rows
}

/// The type allocated at the site `vaddr` of the object file at `path`.
pub fn type_at(path: &str, vaddr: u64) -> Option<&'static CStr> {
    if path.is_empty() {
        return None;
    }
    let mut g = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    let t = g.get_or_insert_with(|| Tables { objects: HashMap::new(), names: HashMap::new() });
    if !t.objects.contains_key(path) {
        let rows = load(path, &mut t.names);
        t.objects.insert(path.to_string(), rows);
    }
    let rows = t.objects.get(path)?;
    let i = rows.binary_search_by_key(&vaddr, |r| r.0).ok()?;
    Some(rows[i].1)
}
