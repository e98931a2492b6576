//! Type keys for function-pointer slots in global data. A slot at an address
//! inside a global variable is named by the innermost struct containing it and
//! the offset inside that struct: `sqlite3Config.m.xMalloc` and
//! `defaultMethods.xMalloc` both become (sqlite3_mem_methods, +0), so a call
//! through the first reaches what was stored in the second.

use super::{attr_string, Loaded, R};
use gimli::{AttributeValue, UnitOffset};

/// (struct name, struct size, member offset).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotKey {
    pub ty: String,
    pub size: u64,
    pub off: u64,
}

struct Var {
    addr: u64,
    size: u64,
    unit: usize,
    ty: UnitOffset,
}

pub struct Types<'a> {
    dw: &'a Loaded<'a>,
    vars: Vec<Var>,
}

const DW_OP_ADDR: u8 = 0x03;
const MAX_DEPTH: u32 = 24;

impl<'a> Types<'a> {
    pub fn read(dw: &'a Loaded<'a>) -> Types<'a> {
        let mut vars = Vec::new();
        for (ui, unit) in dw.units.iter().enumerate() {
            let mut cursor = unit.entries();
            while let Ok(Some((_, e))) = cursor.next_dfs() {
                if e.tag() != gimli::DW_TAG_variable {
                    continue;
                }
                let Some(addr) = location_addr(e) else { continue };
                let ty = match e.attr_value(gimli::DW_AT_type) {
                    Ok(Some(AttributeValue::UnitRef(t))) => Some(t),
                    _ => match e.attr_value(gimli::DW_AT_specification) {
                        Ok(Some(AttributeValue::UnitRef(d))) => unit.entry(d).ok().and_then(|decl| match decl.attr_value(gimli::DW_AT_type) {
                            Ok(Some(AttributeValue::UnitRef(t))) => Some(t),
                            _ => None,
                        }),
                        _ => None,
                    },
                };
                let Some(ty) = ty else { continue };
                let size = byte_size(unit, ty, 0).unwrap_or(0);
                if size > 0 {
                    vars.push(Var { addr, size, unit: ui, ty });
                }
            }
        }
        vars.sort_by_key(|v| v.addr);
        Types { dw, vars }
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The key of the pointer-sized slot at `addr`, if it lies in a struct member.
    pub fn key_at(&self, addr: u64) -> Option<SlotKey> {
        let i = self.vars.partition_point(|v| v.addr <= addr).checked_sub(1)?;
        let v = &self.vars[i];
        if addr >= v.addr + v.size {
            return None;
        }
        let unit = &self.dw.units[v.unit];
        let mut ty = v.ty;
        let mut off = addr - v.addr;
        let mut key = None;
        let mut alias: Option<String> = None;
        for _ in 0..MAX_DEPTH {
            let e = unit.entry(ty).ok()?;
            let inner = match e.attr_value(gimli::DW_AT_type) {
                Ok(Some(AttributeValue::UnitRef(t))) => Some(t),
                _ => None,
            };
            match e.tag() {
                gimli::DW_TAG_typedef => {
                    alias = attr_string(&self.dw.dwarf, unit, &e, gimli::DW_AT_name);
                    ty = inner?;
                }
                gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type => ty = inner?,
                gimli::DW_TAG_array_type => {
                    let elem = inner?;
                    let es = byte_size(unit, elem, 0)?;
                    if es == 0 {
                        return key;
                    }
                    off %= es;
                    ty = elem;
                    alias = None;
                }
                gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type | gimli::DW_TAG_class_type => {
                    let name = attr_string(&self.dw.dwarf, unit, &e, gimli::DW_AT_name).or(alias.take());
                    let size = udata(&e, gimli::DW_AT_byte_size).unwrap_or(0);
                    if let Some(n) = name {
                        key = Some(SlotKey { ty: n, size, off });
                    }
                    let (member_ty, member_off) = member_at(unit, ty, off)?;
                    off -= member_off;
                    ty = member_ty;
                }
                _ => return key,
            }
        }
        key
    }
}

/// The member of struct `ty` whose bytes contain `off`: (its type, its offset).
fn member_at(unit: &gimli::Unit<R>, ty: UnitOffset, off: u64) -> Option<(UnitOffset, u64)> {
    let mut tree = unit.entries_tree(Some(ty)).ok()?;
    let root = tree.root().ok()?;
    let mut kids = root.children();
    while let Ok(Some(k)) = kids.next() {
        let e = k.entry();
        if e.tag() != gimli::DW_TAG_member {
            continue;
        }
        let Ok(Some(AttributeValue::UnitRef(mt))) = e.attr_value(gimli::DW_AT_type) else { continue };
        let loc = udata(e, gimli::DW_AT_data_member_location).unwrap_or(0);
        let size = byte_size(unit, mt, 0).unwrap_or(0);
        if off >= loc && off < loc + size.max(1) {
            return Some((mt, loc));
        }
    }
    None
}

fn udata(e: &gimli::DebuggingInformationEntry<R>, at: gimli::DwAt) -> Option<u64> {
    e.attr_value(at).ok()?.and_then(|v| v.udata_value())
}

fn byte_size(unit: &gimli::Unit<R>, ty: UnitOffset, depth: u32) -> Option<u64> {
    if depth > MAX_DEPTH {
        return None;
    }
    let e = unit.entry(ty).ok()?;
    if let Some(s) = udata(&e, gimli::DW_AT_byte_size) {
        return Some(s);
    }
    let inner = match e.attr_value(gimli::DW_AT_type) {
        Ok(Some(AttributeValue::UnitRef(t))) => Some(t),
        _ => None,
    };
    match e.tag() {
        gimli::DW_TAG_typedef | gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type => byte_size(unit, inner?, depth + 1),
        gimli::DW_TAG_array_type => {
            let elem = byte_size(unit, inner?, depth + 1)?;
            let mut count = 1u64;
            let mut tree = unit.entries_tree(Some(ty)).ok()?;
            let root = tree.root().ok()?;
            let mut kids = root.children();
            while let Ok(Some(k)) = kids.next() {
                let ke = k.entry();
                if ke.tag() == gimli::DW_TAG_subrange_type {
                    let n = udata(ke, gimli::DW_AT_count)
                        .or_else(|| udata(ke, gimli::DW_AT_upper_bound).map(|u| u + 1))
                        .unwrap_or(0);
                    count = count.saturating_mul(n);
                }
            }
            Some(elem.saturating_mul(count))
        }
        gimli::DW_TAG_pointer_type => Some(8),
        _ => None,
    }
}

fn location_addr(e: &gimli::DebuggingInformationEntry<R>) -> Option<u64> {
    let Ok(Some(AttributeValue::Exprloc(expr))) = e.attr_value(gimli::DW_AT_location) else { return None };
    let b = expr.0.slice();
    if b.len() == 9 && b[0] == DW_OP_ADDR {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[1..9]);
        return Some(u64::from_le_bytes(a));
    }
    None
}
