//! Type keys for function-pointer slots in global data. A slot at an address
//! inside a global variable is named by the innermost struct containing it and
//! the offset inside that struct: `sqlite3Config.m.xMalloc` and
//! `defaultMethods.xMalloc` both become (sqlite3_mem_methods, +0), so a call
//! through the first reaches what was stored in the second.

use super::walk::{byte_size, members, strip, udata, MAX_DEPTH};
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
    /// Per struct (unit, DIE): its members with their byte sizes, parsed once.
    /// The walks look up members of the same few large structs again and again
    /// (SQLite's `sqlite3` has hundreds); parsing their DIEs each time was most
    /// of the pointer-candidate phase.
    members: std::cell::RefCell<std::collections::HashMap<(usize, UnitOffset), Vec<(super::walk::Member, u64)>>>,
}

const DW_OP_ADDR: u8 = 0x03;

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
                let size = byte_size(unit, ty).unwrap_or(0);
                if size > 0 {
                    vars.push(Var { addr, size, unit: ui, ty });
                }
            }
        }
        vars.sort_by_key(|v| v.addr);
        Types { dw, vars, members: Default::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The key of the pointer-sized slot at `addr`, if it lies in a struct member.
    pub fn key_at(&self, addr: u64) -> Option<SlotKey> {
        self.key_and_fntype_at(addr).0
    }

    /// The slot's key and, when the member's type is a function-pointer typedef
    /// (`lua_Alloc`, `alloc_func`), that typedef's name.
    pub fn key_and_fntype_at(&self, addr: u64) -> (Option<SlotKey>, Option<String>) {
        let Some(i) = self.vars.partition_point(|v| v.addr <= addr).checked_sub(1) else { return (None, None) };
        let v = &self.vars[i];
        if addr >= v.addr.saturating_add(v.size) {
            return (None, None);
        }
        self.walk(v.unit, v.ty, addr - v.addr)
    }

    /// Keys of member `off` of the struct reached through a parameter of type
    /// `param_ty` (a pointer), after an optional load of member `load` on the way.
    pub fn via_key(&self, unit: usize, param_ty: UnitOffset, load: Option<i32>, off: i32) -> (Option<SlotKey>, Option<String>) {
        let Some(u) = self.dw.units.get(unit) else { return (None, None) };
        let Some(mut st) = pointee_struct(u, param_ty) else { return (None, None) };
        if let Some(l) = load {
            let Some(super::walk::Member { ty: mt, offset: moff, .. }) = self.member_containing(unit, st, l as u64) else { return (None, None) };
            if moff != l as u64 {
                return (None, None);
            }
            let Some(inner) = pointee_struct(u, mt) else { return (None, None) };
            st = inner;
        }
        if off < 0 {
            return (None, None);
        }
        self.walk(unit, st, off as u64)
    }

    /// The typedef name of a parameter's type when it is a function pointer.
    pub fn fn_typedef(&self, unit: usize, ty: UnitOffset) -> Option<String> {
        let u = self.dw.units.get(unit)?;
        let e = u.entry(ty).ok()?;
        if e.tag() != gimli::DW_TAG_typedef {
            return None;
        }
        let name = attr_string(&self.dw.dwarf, u, &e, gimli::DW_AT_name)?;
        is_fn_pointer(u, ty).then_some(name)
    }

    /// The first member of `record` whose bytes contain offset `off`, from the
    /// cached member list of `record`.
    fn member_containing(&self, unit_idx: usize, record: UnitOffset, off: u64) -> Option<super::walk::Member> {
        let unit = self.dw.units.get(unit_idx)?;
        let mut cache = self.members.borrow_mut();
        let list = cache.entry((unit_idx, record)).or_insert_with(|| {
            members(unit, record).into_iter().map(|m| (m, byte_size(unit, m.ty).unwrap_or(0))).collect()
        });
        // The same test as `walk::contains`: a member of unknown size holds its first byte.
        list.iter().find(|(m, size)| off >= m.offset && off < m.offset.saturating_add((*size).max(1))).map(|(m, _)| *m)
    }

    fn walk(&self, unit_idx: usize, start: UnitOffset, start_off: u64) -> (Option<SlotKey>, Option<String>) {
        let unit = &self.dw.units[unit_idx];
        let mut ty = start;
        let mut off = start_off;
        let mut key = None;
        let mut alias: Option<String> = None;
        for _ in 0..MAX_DEPTH {
            let Ok(e) = unit.entry(ty) else { return (key, None) };
            let inner = match e.attr_value(gimli::DW_AT_type) {
                Ok(Some(AttributeValue::UnitRef(t))) => Some(t),
                _ => None,
            };
            match e.tag() {
                gimli::DW_TAG_typedef => {
                    alias = attr_string(&self.dw.dwarf, unit, &e, gimli::DW_AT_name);
                    let Some(t) = inner else { return (key, None) };
                    ty = t;
                }
                gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type => {
                    let Some(t) = inner else { return (key, None) };
                    ty = t;
                }
                gimli::DW_TAG_array_type => {
                    let Some(elem) = inner else { return (key, None) };
                    match byte_size(unit, elem) {
                        Some(es) if es > 0 => off %= es,
                        _ => return (key, None),
                    }
                    ty = elem;
                    alias = None;
                }
                gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type | gimli::DW_TAG_class_type => {
                    let name = attr_string(&self.dw.dwarf, unit, &e, gimli::DW_AT_name).or(alias.take());
                    let size = udata(&e, gimli::DW_AT_byte_size).unwrap_or(0);
                    if let Some(n) = name {
                        key = Some(SlotKey { ty: n, size, off });
                    }
                    let Some(m) = self.member_containing(unit_idx, ty, off) else { return (key, None) };
                    off -= m.offset;
                    ty = m.ty;
                }
                gimli::DW_TAG_pointer_type => {
                    let fnt = if off == 0 && inner.is_some_and(|t| unit.entry(t).is_ok_and(|x| x.tag() == gimli::DW_TAG_subroutine_type)) {
                        alias
                    } else {
                        None
                    };
                    return (key, fnt);
                }
                _ => return (key, None),
            }
        }
        (key, None)
    }
}

/// The struct a pointer type points to.
fn pointee_struct(unit: &gimli::Unit<R>, ty: UnitOffset) -> Option<UnitOffset> {
    let (p, tag) = strip(unit, ty, true)?;
    if tag != gimli::DW_TAG_pointer_type {
        return None;
    }
    let Ok(Some(AttributeValue::UnitRef(t))) = unit.entry(p).ok()?.attr_value(gimli::DW_AT_type) else { return None };
    let (s, tag) = strip(unit, t, true)?;
    matches!(tag, gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type | gimli::DW_TAG_class_type).then_some(s)
}

fn is_fn_pointer(unit: &gimli::Unit<R>, ty: UnitOffset) -> bool {
    let Some((p, tag)) = strip(unit, ty, true) else { return false };
    if tag != gimli::DW_TAG_pointer_type {
        return false;
    }
    match unit.entry(p).ok().and_then(|e| e.attr_value(gimli::DW_AT_type).ok().flatten()) {
        Some(AttributeValue::UnitRef(t)) => unit.entry(t).is_ok_and(|x| x.tag() == gimli::DW_TAG_subroutine_type),
        _ => false,
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
