//! Function addresses stored in data: static initializers such as
//! `static const struct ops default_ops = { .alloc = default_alloc }`. Found through
//! relocations (PIE, shared objects, `.o`) and by scanning data for exact function
//! entry addresses (non-PIE executables carry no relocations for them).

use super::{Binary, FileKind};
use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, RelocationFlags, RelocationTarget, SectionKind, SymbolKind};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One stored function address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnStore {
    /// Address of the slot holding the function address (0 for stores whose
    /// destination is not a fixed address).
    pub slot: u64,
    /// The function stored.
    pub func: u64,
    /// Offset of the slot inside its containing object (a struct member offset),
    /// when the containing data object is known.
    pub member: Option<u64>,
}

pub(super) fn collect_data(file: &object::File, bin: &mut Binary, base: &HashMap<usize, u64>) {
    let objects = data_objects(file, bin.kind, base);
    // Slots the loader or the start-up code reads, never the program's own calls.
    let skipped: Vec<(u64, u64)> = file
        .sections()
        .filter(|s| {
            matches!(
                s.name().unwrap_or(""),
                ".init_array" | ".fini_array" | ".preinit_array" | ".got" | ".got.plt" | ".dynamic" | ".ctors" | ".dtors"
            )
        })
        .map(|s| {
            let b = if bin.kind == FileKind::Relocatable { base.get(&s.index().0).copied().unwrap_or(0) } else { s.address() };
            (b, b.saturating_add(s.size()))
        })
        .collect();
    let mut seen = HashSet::new();
    let mut push = |bin: &mut Binary, slot: u64, func: u64| {
        if skipped.iter().any(|&(lo, hi)| slot >= lo && slot < hi) {
            return;
        }
        if bin.by_addr.contains_key(&func) && seen.insert((slot, func)) {
            let member = containing(&objects, slot).map(|start| slot - start);
            bin.fn_stores.push(FnStore { slot, func, member });
        }
    };
    if bin.kind == FileKind::Relocatable {
        if let Some(symtab) = file.symbol_table() {
            for sec in file.sections() {
                if sec.kind() == SectionKind::Text {
                    continue;
                }
                let Some(&sbase) = base.get(&sec.index().0) else { continue };
                for (offset, rel) in sec.relocations() {
                    if rel.flags() != (RelocationFlags::Elf { r_type: 1 }) {
                        continue;
                    }
                    let RelocationTarget::Symbol(idx) = rel.target() else { continue };
                    let Ok(sym) = symtab.symbol_by_index(idx) else { continue };
                    let Some(si) = sym.section_index() else { continue };
                    let Some(&tb) = base.get(&si.0) else { continue };
                    let func = (tb + sym.address()).wrapping_add(rel.addend() as u64);
                    push(bin, sbase + offset, func);
                }
            }
        }
    } else {
        if let Some(relocs) = file.dynamic_relocations() {
            for (offset, rel) in relocs {
                // R_X86_64_RELATIVE (8) and R_X86_64_64 against a local definition.
                let func = match (rel.flags(), rel.target()) {
                    (RelocationFlags::Elf { r_type: 8 }, _) => rel.addend() as u64,
                    (RelocationFlags::Elf { r_type: 1 }, RelocationTarget::Symbol(idx)) => {
                        match file.dynamic_symbol_table().and_then(|t| t.symbol_by_index(idx).ok()) {
                            Some(s) if s.is_definition() => s.address().wrapping_add(rel.addend() as u64),
                            _ => continue,
                        }
                    }
                    _ => continue,
                };
                push(bin, offset, func);
            }
        }
        for sec in file.sections() {
            if !matches!(sec.kind(), SectionKind::Data | SectionKind::ReadOnlyData | SectionKind::ReadOnlyDataWithRel) {
                continue;
            }
            let Ok(data) = sec.data() else { continue };
            let addr = sec.address();
            let start = (addr.checked_next_multiple_of(8).unwrap_or(addr).wrapping_sub(addr)) as usize;
            let mut off = start;
            while off + 8 <= data.len() {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[off..off + 8]);
                let v = u64::from_le_bytes(b);
                if v != 0 && bin.by_addr.contains_key(&v) {
                    push(bin, addr.wrapping_add(off as u64), v);
                }
                off += 8;
            }
        }
    }
    guess_members(&mut bin.fn_stores);
    let mut taken: Vec<u64> = bin.fn_stores.iter().map(|s| s.func).collect();
    taken.sort_unstable();
    taken.dedup();
    bin.address_taken = taken;
}

/// Without symbols for the data objects (stripped binaries), take each run of
/// adjacent function-pointer slots as one table: the member offset is the
/// distance from the run's first slot. Ops tables usually lead with their
/// function pointers, so this recovers `{alloc, free}` pairs.
fn guess_members(stores: &mut [FnStore]) {
    let mut order: Vec<usize> = (0..stores.len()).filter(|&i| stores[i].member.is_none()).collect();
    order.sort_by_key(|&i| stores[i].slot);
    let mut run_start = 0u64;
    let mut prev: Option<u64> = None;
    for i in order {
        let slot = stores[i].slot;
        match prev {
            Some(p) if slot == p || slot == p + 8 => {}
            _ => run_start = slot,
        }
        prev = Some(slot);
        stores[i].member = Some(slot - run_start);
    }
}

/// Start addresses of data objects (OBJECT symbols with a size), by address.
fn data_objects(file: &object::File, kind: FileKind, base: &HashMap<usize, u64>) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    let Some(symtab) = file.symbol_table().or_else(|| file.dynamic_symbol_table()) else { return out };
    for sym in symtab.symbols() {
        if sym.kind() != SymbolKind::Data || sym.size() == 0 || !sym.is_definition() {
            continue;
        }
        let addr = if kind == FileKind::Relocatable {
            match sym.section_index().and_then(|s| base.get(&s.0)) {
                Some(b) => b + sym.address(),
                None => continue,
            }
        } else {
            sym.address()
        };
        let e = out.entry(addr).or_insert(0u64);
        *e = (*e).max(sym.size());
    }
    out
}

fn containing(objects: &BTreeMap<u64, u64>, slot: u64) -> Option<u64> {
    let (&start, &size) = objects.range(..=slot).next_back()?;
    (slot < start.saturating_add(size)).then_some(start)
}
