//! Walking DWARF types, shared by the function-pointer slot keys (`types.rs`)
//! and the site table's type inference (`sites/debug.rs`): through typedefs and
//! qualifiers, byte sizes, and the members of a struct or union.

use super::R;
use gimli::{AttributeValue, UnitOffset};

/// Bound on type chains (typedef of const of typedef …) and nesting.
pub(crate) const MAX_DEPTH: u32 = 24;

/// A member of a struct or union: its DIE, its type and its byte offset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    /// The member's own DIE (its name).
    pub entry: UnitOffset,
    pub ty: UnitOffset,
    pub offset: u64,
}

pub(crate) fn udata(e: &gimli::DebuggingInformationEntry<R>, at: gimli::DwAt) -> Option<u64> {
    e.attr_value(at).ok()?.and_then(|v| v.udata_value())
}

fn type_of(e: &gimli::DebuggingInformationEntry<R>) -> Option<UnitOffset> {
    match e.attr_value(gimli::DW_AT_type) {
        Ok(Some(AttributeValue::UnitRef(t))) => Some(t),
        _ => None,
    }
}

/// Through qualifiers (const, volatile, restrict, _Atomic) and, with
/// `typedefs`, typedefs: the type and its tag. None for `const void`.
pub(crate) fn strip(unit: &gimli::Unit<R>, mut ty: UnitOffset, typedefs: bool) -> Option<(UnitOffset, gimli::DwTag)> {
    for _ in 0..MAX_DEPTH {
        let e = unit.entry(ty).ok()?;
        let tag = e.tag();
        let qual = matches!(tag, gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type | gimli::DW_TAG_restrict_type | gimli::DW_TAG_atomic_type)
            || (typedefs && tag == gimli::DW_TAG_typedef);
        if !qual {
            return Some((ty, tag));
        }
        ty = type_of(&e)?;
    }
    None
}

/// The byte size of a type: its `DW_AT_byte_size`, else through typedefs and
/// qualifiers, element size × count for arrays (gcc gives arrays no size of
/// their own), 8 for pointers.
pub(crate) fn byte_size(unit: &gimli::Unit<R>, ty: UnitOffset) -> Option<u64> {
    byte_size_at(unit, ty, 0)
}

fn byte_size_at(unit: &gimli::Unit<R>, ty: UnitOffset, depth: u32) -> Option<u64> {
    if depth > MAX_DEPTH {
        return None;
    }
    let e = unit.entry(ty).ok()?;
    if let Some(s) = udata(&e, gimli::DW_AT_byte_size) {
        return Some(s);
    }
    match e.tag() {
        gimli::DW_TAG_array_type => {
            let elem = byte_size_at(unit, type_of(&e)?, depth + 1)?;
            let mut count = 1u64;
            let mut tree = unit.entries_tree(Some(ty)).ok()?;
            let root = tree.root().ok()?;
            let mut kids = root.children();
            while let Ok(Some(k)) = kids.next() {
                let ke = k.entry();
                if ke.tag() == gimli::DW_TAG_subrange_type {
                    let n = udata(ke, gimli::DW_AT_count).or_else(|| udata(ke, gimli::DW_AT_upper_bound).map(|u| u + 1)).unwrap_or(0);
                    count = count.saturating_mul(n);
                }
            }
            Some(elem.saturating_mul(count))
        }
        gimli::DW_TAG_pointer_type | gimli::DW_TAG_reference_type | gimli::DW_TAG_rvalue_reference_type => Some(8),
        _ => byte_size_at(unit, type_of(&e)?, depth + 1),
    }
}

/// The members of struct or union `record`, in declaration order.
pub(crate) fn members(unit: &gimli::Unit<R>, record: UnitOffset) -> Vec<Member> {
    let mut out = Vec::new();
    let Ok(mut tree) = unit.entries_tree(Some(record)) else { return out };
    let Ok(root) = tree.root() else { return out };
    let mut kids = root.children();
    while let Ok(Some(k)) = kids.next() {
        let e = k.entry();
        if e.tag() != gimli::DW_TAG_member {
            continue;
        }
        let Some(ty) = type_of(e) else { continue };
        out.push(Member { entry: e.offset(), ty, offset: udata(e, gimli::DW_AT_data_member_location).unwrap_or(0) });
    }
    out
}

/// Member `m`'s bytes contain offset `off` (a member of unknown size: its first byte).
pub(crate) fn contains(unit: &gimli::Unit<R>, m: &Member, off: u64) -> bool {
    let size = byte_size(unit, m.ty).unwrap_or(0);
    off >= m.offset && off < m.offset.saturating_add(size.max(1))
}
