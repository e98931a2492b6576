//! The debugging-information entries of a twin unit: for each relocated pad, the
//! original function's subprogram DIE is found, and a `f.allocsite_pad` subprogram
//! carrying the original's parameter types and locations is written, so gdb shows a
//! frame in the pad with its arguments.

use super::{PadLines, Seq, Targets, R};
use gimli::constants as dw;
use gimli::write::{self, Address};
use gimli::{EndianSlice, LittleEndian};

/// `(entry, DIE offset)` of the subprograms of `unit` that start at a pad's entry.
/// Function definitions are children of the unit (C) or of its namespaces (C++), so
/// those are walked, skipping every other subtree through sibling links (a large C
/// unit has hundreds of thousands of DIEs). Outside C, when that misses a pad, the whole
/// tree is searched. (A pad without a subprogram is common: a folded alias of
/// identical code has a symbol but no DIE.)
pub(super) fn subprograms(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, pads: &[(&PadLines, Seq)]) -> Vec<(u64, gimli::UnitOffset)> {
    let mut want: Vec<u64> = pads.iter().map(|(p, _)| p.entry).collect();
    want.sort_unstable();
    want.dedup();
    let mut out = Vec::new();
    let mut c = false;
    if let Ok(mut tree) = unit.entries_tree(None) {
        if let Ok(root) = tree.root() {
            c = matches!(
                root.entry().attr_value(dw::DW_AT_language),
                Ok(Some(gimli::AttributeValue::Language(dw::DW_LANG_C | dw::DW_LANG_C89 | dw::DW_LANG_C99 | dw::DW_LANG_C11 | dw::DW_LANG_C17)))
            );
            let _ = top_subprograms(dwarf, unit, root, &want, &mut out, 0);
        }
    }
    if !c && out.len() < want.len() {
        out.clear();
        let mut entries = unit.entries();
        while let Ok(Some((_, e))) = entries.next_dfs() {
            if let Some(low) = subprogram_entry(dwarf, unit, e).filter(|l| want.binary_search(l).is_ok()) {
                out.push((low, e.offset()));
            }
        }
    }
    out
}

fn top_subprograms(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    node: gimli::EntriesTreeNode<R>,
    want: &[u64],
    out: &mut Vec<(u64, gimli::UnitOffset)>,
    depth: usize,
) -> gimli::Result<()> {
    let mut children = node.children();
    while let Some(child) = children.next()? {
        let e = child.entry();
        if e.tag() == dw::DW_TAG_namespace && depth < 16 {
            top_subprograms(dwarf, unit, child, want, out, depth + 1)?;
        } else if let Some(low) = subprogram_entry(dwarf, unit, e).filter(|l| want.binary_search(l).is_ok()) {
            out.push((low, e.offset()));
        }
    }
    Ok(())
}

/// The entry address of a subprogram DIE with code.
fn subprogram_entry(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, e: &gimli::DebuggingInformationEntry<R>) -> Option<u64> {
    if e.tag() != dw::DW_TAG_subprogram {
        return None;
    }
    let low = match e.attr_value(dw::DW_AT_low_pc) {
        Ok(Some(v)) => dwarf.attr_address(unit, v).ok().flatten(),
        _ => None,
    };
    low.or_else(|| {
        let mut r = dwarf.die_ranges(unit, e).ok()?;
        r.next().ok().flatten().map(|r| r.begin)
    })
}

/// An attribute of the DIE at `off`, or of its `DW_AT_abstract_origin` (clones,
/// out-of-line copies keep names and types there).
fn attr_or_origin<'a>(unit: &'a gimli::Unit<R<'a>>, off: gimli::UnitOffset, name: gimli::DwAt) -> Option<gimli::AttributeValue<R<'a>>> {
    let e = unit.entry(off).ok()?;
    if let Ok(Some(v)) = e.attr_value(name) {
        return Some(v);
    }
    match e.attr_value(dw::DW_AT_abstract_origin) {
        Ok(Some(gimli::AttributeValue::UnitRef(o))) if o != off => unit.entry(o).ok()?.attr_value(name).ok().flatten(),
        _ => None,
    }
}

/// A `DW_FORM_ref_addr` to the DIE a same-unit reference names.
fn ref_to(unit_at: usize, v: gimli::AttributeValue<R>, targets: &Targets) -> Option<write::AttributeValue> {
    let gimli::AttributeValue::UnitRef(o) = v else { return None };
    let mut t = targets.borrow_mut();
    t.push((unit_at + o.0) as u64);
    Some(write::AttributeValue::DebugInfoRef(write::Reference::Symbol(t.len() - 1)))
}

/// A subprogram DIE for the relocated pad (named like its symbol, so `break f` does not
/// also stop there), with the parameters' types and, per relocated instruction, the
/// location the original gives at the instruction's original address: gdb then shows
/// the frame's arguments like the original's.
pub(super) fn pad_subprogram(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    at: usize,
    off: gimli::UnitOffset,
    p: &PadLines,
    du: &mut write::DwarfUnit,
    targets: &Targets,
) -> Result<(), String> {
    let root = du.unit.root();
    let sp = du.unit.add(root, dw::DW_TAG_subprogram);
    {
        let e = du.unit.get_mut(sp);
        e.set(dw::DW_AT_name, write::AttributeValue::String(format!("{}.allocsite_pad", p.name).into_bytes()));
        e.set(dw::DW_AT_low_pc, write::AttributeValue::Address(Address::Constant(p.pad_addr)));
        e.set(dw::DW_AT_high_pc, write::AttributeValue::Udata(p.pad_end - p.pad_addr));
        e.set(dw::DW_AT_artificial, write::AttributeValue::Flag(true));
        if let Some(gimli::AttributeValue::Exprloc(x)) = attr_or_origin(unit, off, dw::DW_AT_frame_base) {
            if portable(&x, unit.encoding()) {
                e.set(dw::DW_AT_frame_base, write::AttributeValue::Exprloc(write::Expression::raw(x.0.slice().to_vec())));
            }
        }
        if let Some(t) = attr_or_origin(unit, off, dw::DW_AT_type).and_then(|v| ref_to(at, v, targets)) {
            e.set(dw::DW_AT_type, t);
        }
    }
    let mut tree = unit.entries_tree(Some(off)).map_err(|e| e.to_string())?;
    let node = tree.root().map_err(|e| e.to_string())?;
    let mut children = node.children();
    while let Some(child) = children.next().map_err(|e| e.to_string())? {
        let c = child.entry();
        if c.tag() != dw::DW_TAG_formal_parameter {
            continue;
        }
        let co = c.offset();
        let param = du.unit.add(sp, dw::DW_TAG_formal_parameter);
        if let Some(n) = attr_or_origin(unit, co, dw::DW_AT_name).and_then(|v| dwarf.attr_string(unit, v).ok()) {
            du.unit.get_mut(param).set(dw::DW_AT_name, write::AttributeValue::String(n.slice().to_vec()));
        }
        if let Some(t) = attr_or_origin(unit, co, dw::DW_AT_type).and_then(|v| ref_to(at, v, targets)) {
            du.unit.get_mut(param).set(dw::DW_AT_type, t);
        }
        let locs = param_locations(dwarf, unit, c, p);
        if !locs.is_empty() {
            let id = du.unit.locations.add(write::LocationList(locs));
            du.unit.get_mut(param).set(dw::DW_AT_location, write::AttributeValue::LocationListRef(id));
        }
    }
    Ok(())
}

/// Per relocated instruction, the parameter's original location at the instruction's
/// original address (the pad runs with the original's registers and stack).
fn param_locations(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, c: &gimli::DebuggingInformationEntry<R>, p: &PadLines) -> Vec<write::Location> {
    let enc = unit.encoding();
    let at_orig: Box<dyn Fn(u64) -> Option<Vec<u8>>> = match c.attr_value(dw::DW_AT_location) {
        Ok(Some(gimli::AttributeValue::Exprloc(x))) => {
            let b = x.0.slice().to_vec();
            Box::new(move |_| Some(b.clone()))
        }
        Ok(Some(v)) => {
            let mut list = Vec::new();
            if let Ok(Some(mut it)) = dwarf.attr_locations(unit, v) {
                while let Ok(Some(l)) = it.next() {
                    list.push((l.range.begin, l.range.end, l.data.0.slice().to_vec()));
                }
            }
            Box::new(move |a| list.iter().find(|(b, e, _)| a >= *b && a < *e).map(|l| l.2.clone()))
        }
        _ => return Vec::new(),
    };
    let mut out: Vec<(u64, u64, Vec<u8>)> = Vec::new();
    for (k, &(new, orig)) in p.instrs.iter().enumerate() {
        let end = p.instrs.get(k + 1).map_or(p.pad_end, |n| n.0);
        let Some(x) = at_orig(orig) else { continue };
        if !portable(&gimli::Expression(EndianSlice::new(&x, LittleEndian)), enc) {
            continue;
        }
        match out.last_mut() {
            Some(l) if l.1 == new && l.2 == x => l.1 = end,
            _ => out.push((new, end, x)),
        }
    }
    out.into_iter()
        .map(|(b, e, x)| write::Location::StartLength { begin: Address::Constant(b), length: e - b, data: write::Expression::raw(x) })
        .collect()
}

/// The expression means the same in another unit: no operand names a DIE of this unit
/// (typed stack operations, calls, parameter references).
fn portable(x: &gimli::Expression<R>, enc: gimli::Encoding) -> bool {
    use gimli::Operation as Op;
    let mut ops = x.clone().operations(enc);
    loop {
        match ops.next() {
            Ok(None) => return true,
            Err(_) => return false,
            Ok(Some(op)) => match op {
                Op::TypedLiteral { .. } | Op::Convert { .. } | Op::Reinterpret { .. } | Op::Call { .. } | Op::ParameterRef { .. } => return false,
                Op::RegisterOffset { base_type, .. } | Op::Deref { base_type, .. } if base_type.0 != 0 => return false,
                Op::EntryValue { expression } => {
                    if !portable(&gimli::Expression(expression), enc) {
                        return false;
                    }
                }
                _ => {}
            },
        }
    }
}
