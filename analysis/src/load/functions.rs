//! Function discovery: `.symtab`, then `.dynsym`, then `.eh_frame` FDEs (stripped
//! binaries), so every function the binary can name or unwind is known.

use super::{Binary, FileKind};
use object::{Object, ObjectSection, ObjectSymbol, SectionIndex, SymbolKind};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone)]
pub struct Func {
    /// Preferred name: a global symbol, else a local one, else `sub_<addr>`.
    pub name: String,
    pub addr: u64,
    /// Code size in bytes (symbol size, FDE range, or distance to the next function).
    pub size: u64,
    /// Other names at the same address, and the base name of a compiler clone.
    pub aliases: Vec<String>,
    /// Address as the file states it (section offset in a `.o`).
    pub file_addr: u64,
}

/// `f.constprop.0` → `f`; `f.isra.0.cold` → `f`. None if `name` is not a clone.
pub fn clone_base(name: &str) -> Option<&str> {
    const MARKERS: [&str; 6] = [".constprop.", ".isra.", ".part.", ".cold", ".lto_priv.", ".localalias"];
    let cut = MARKERS.iter().filter_map(|m| name.find(m)).min()?;
    (cut > 0).then(|| &name[..cut])
}

struct Candidate {
    names: Vec<(String, bool)>, // (name, global)
    size: u64,
    file_addr: u64,
}

pub(super) fn collect(file: &object::File, bin: &mut Binary, base: &HashMap<usize, u64>) -> Result<(), String> {
    let mut found: BTreeMap<u64, Candidate> = BTreeMap::new();
    let rel = bin.kind == FileKind::Relocatable;
    let addr_of = |section: Option<SectionIndex>, value: u64| -> Option<u64> {
        if rel {
            Some(base.get(&section?.0)? + value)
        } else {
            Some(value)
        }
    };
    let add = |found: &mut BTreeMap<u64, Candidate>, name: &str, global: bool, addr: u64, size: u64, file_addr: u64| {
        let c = found.entry(addr).or_insert(Candidate { names: Vec::new(), size: 0, file_addr });
        if !name.is_empty() && !c.names.iter().any(|(n, _)| n == name) {
            c.names.push((name.to_string(), global));
        }
        c.size = c.size.max(size);
    };
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || !sym.is_definition() {
            continue;
        }
        bin.has_symtab = true;
        let Ok(name) = sym.name() else { continue };
        let Some(addr) = addr_of(sym.section_index(), sym.address()) else { continue };
        if bin.is_code(addr) {
            add(&mut found, name, sym.is_global(), addr, sym.size(), sym.address());
        }
    }
    for sym in file.dynamic_symbols() {
        if sym.kind() != SymbolKind::Text || !sym.is_definition() {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if bin.is_code(sym.address()) {
            add(&mut found, name, true, sym.address(), sym.size(), sym.address());
        }
    }
    if !rel {
        for (start, len) in fde_ranges(file) {
            if bin.is_code(start) {
                add(&mut found, "", false, start, len, start);
            }
        }
        let entry = file.entry();
        if entry != 0 && bin.is_code(entry) {
            add(&mut found, "", false, entry, 0, entry);
        }
    }
    // PLT stubs (`.plt.sec` has FDEs) are imports, not functions of the program.
    let plt: Vec<(u64, u64)> = file
        .sections()
        .filter(|s| matches!(s.name().unwrap_or(""), ".plt" | ".plt.sec" | ".plt.got" | ".iplt"))
        .map(|s| (s.address(), s.address().saturating_add(s.size())))
        .collect();
    if !rel {
        found.retain(|a, _| !plt.iter().any(|&(lo, hi)| *a >= lo && *a < hi));
    }
    let starts: Vec<u64> = found.keys().copied().collect();
    for (i, (addr, c)) in found.into_iter().enumerate() {
        let next = starts.get(i + 1).copied();
        let size = match (c.size, next) {
            (0, Some(n)) => n - addr,
            (0, None) => region_end(bin, addr) - addr,
            (s, _) => s,
        };
        let mut names = c.names;
        // Globals first, then shorter names: `xmalloc` over `xmalloc.localalias`.
        names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.len().cmp(&b.0.len())).then(a.0.cmp(&b.0)));
        let mut it = names.into_iter().map(|(n, _)| n);
        let name = it.next().unwrap_or_else(|| format!("sub_{addr:x}"));
        let mut aliases: Vec<String> = it.collect();
        // A `.cold` fragment is part of its function, not another name for it.
        if let Some(b) = clone_base(&name).filter(|_| !name.contains(".cold")) {
            if !aliases.iter().any(|a| a == b) {
                aliases.push(b.to_string());
            }
        }
        bin.by_addr.insert(addr, bin.funcs.len());
        bin.funcs.push(Func { name, addr, size, aliases, file_addr: c.file_addr });
    }
    Ok(())
}

fn region_end(bin: &Binary, addr: u64) -> u64 {
    let r = bin.region_of(addr).expect("function start lies in a region");
    r.addr.saturating_add(r.data.len() as u64)
}

/// Start and length of every FDE in `.eh_frame`; malformed entries end the walk.
fn fde_ranges(file: &object::File) -> Vec<(u64, u64)> {
    use gimli::{BaseAddresses, CieOrFde, EhFrame, LittleEndian, UnwindSection};
    let mut out = Vec::new();
    let Some(sec) = file.section_by_name(".eh_frame") else { return out };
    let Ok(data) = sec.data() else { return out };
    let mut bases = BaseAddresses::default().set_eh_frame(sec.address());
    if let Some(t) = file.section_by_name(".text") {
        bases = bases.set_text(t.address());
    }
    if let Some(h) = file.section_by_name(".eh_frame_hdr") {
        bases = bases.set_eh_frame_hdr(h.address());
    }
    if let Some(g) = file.section_by_name(".got") {
        bases = bases.set_got(g.address());
    }
    let eh = EhFrame::new(data, LittleEndian);
    let mut entries = eh.entries(&bases);
    while let Ok(Some(entry)) = entries.next() {
        if let CieOrFde::Fde(partial) = entry {
            if let Ok(fde) = partial.parse(EhFrame::cie_from_offset) {
                if fde.len() > 0 {
                    out.push((fde.initial_address(), fde.len()));
                }
            }
        }
        if out.len() > 1_000_000 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::clone_base;

    #[test]
    fn clone_names() {
        assert_eq!(clone_base("xmalloc.constprop.0"), Some("xmalloc"));
        assert_eq!(clone_base("f.isra.0.cold"), Some("f"));
        assert_eq!(clone_base("f.part.3"), Some("f"));
        assert_eq!(clone_base("xmalloc"), None);
        assert_eq!(clone_base(".cold"), None);
    }
}
