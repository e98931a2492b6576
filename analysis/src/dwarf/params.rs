//! DWARF as evidence and naming: the parameters (name, type) of each function
//! with code, keyed by entry address. Parameter types are weak evidence (sizes
//! are passed as `int`, `unsigned`, in the 4th position…), so they only label the
//! roles the data flow found and give descriptor letters to the other arguments.
//! A missing or malformed `.debug_info` yields no entries, never an error.

use super::{attr_string, Loaded, R};
use gimli::{AttributeValue, UnitOffset};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub ty: String,
    /// The type's DIE in unit `FnParams::unit`.
    pub ty_ref: Option<UnitOffset>,
    /// liballocs letter: `p` pointer, `i` signed integer, `z` unsigned/size.
    pub letter: char,
}

#[derive(Debug, Clone, Default)]
pub struct FnParams {
    pub args: Vec<Param>,
    /// The function returns nothing (no DW_AT_type on the subprogram or its
    /// specification / abstract origin).
    pub void: bool,
    /// The declared return type is a scalar that is not a pointer (`int`, `size_t`).
    pub returns_scalar: bool,
    /// Index of the unit holding the DIEs (into `Loaded::units`).
    pub unit: usize,
    /// A pointer return: the pointed-to type's name and byte size (when complete).
    pub returns_to: Option<(String, Option<u64>)>,
}

impl FnParams {
    pub fn letters(&self) -> Vec<char> {
        self.args.iter().map(|a| a.letter).collect()
    }
}

pub struct Params {
    by_addr: HashMap<u64, FnParams>,
}

impl Params {
    pub fn get(&self, addr: u64) -> Option<&FnParams> {
        self.by_addr.get(&addr)
    }

    pub fn read(dw: &Loaded) -> Params {
        let mut out = Params { by_addr: HashMap::new() };
        for (i, unit) in dw.units.iter().enumerate() {
            let _ = read_unit(&dw.dwarf, unit, i, &mut out.by_addr);
        }
        out
    }
}

fn read_unit(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, ui: usize, out: &mut HashMap<u64, FnParams>) -> gimli::Result<()> {
    let mut tree = unit.entries_tree(None)?;
    let root = tree.root()?;
    let mut children = root.children();
    while let Some(node) = children.next()? {
        let e = node.entry();
        if e.tag() != gimli::DW_TAG_subprogram {
            continue;
        }
        let low = match e.attr_value(gimli::DW_AT_low_pc)? {
            Some(AttributeValue::Addr(a)) => a,
            Some(AttributeValue::DebugAddrIndex(i)) => dwarf.address(unit, i)?,
            _ => continue,
        };
        let mut params = FnParams { void: returns_void(unit, e), unit: ui, ..FnParams::default() };
        if let Some(t) = return_type(unit, e) {
            let (name, letter) = describe(dwarf, unit, t, 0);
            params.returns_scalar = letter != 'p' && !name.starts_with("struct") && !name.starts_with("union");
            params.returns_to = pointee(dwarf, unit, t);
        }
        let mut kids = node.children();
        while let Some(k) = kids.next()? {
            let ke = k.entry();
            if ke.tag() != gimli::DW_TAG_formal_parameter {
                continue;
            }
            let (name, ty) = param_name_type(dwarf, unit, ke)?;
            let (ty_name, letter) = match ty {
                Some(off) => describe(dwarf, unit, off, 0),
                None => ("?".to_string(), 'p'),
            };
            params.args.push(Param { name: name.unwrap_or_else(|| "?".into()), ty: ty_name, ty_ref: ty, letter });
        }
        out.entry(low).or_insert(params);
    }
    Ok(())
}

fn return_type(unit: &gimli::Unit<R>, e: &gimli::DebuggingInformationEntry<R>) -> Option<UnitOffset> {
    let mut e = e.clone();
    for _ in 0..4 {
        if let Ok(Some(AttributeValue::UnitRef(t))) = e.attr_value(gimli::DW_AT_type) {
            return Some(t);
        }
        e = [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification].iter().find_map(|&at| match e.attr_value(at) {
            Ok(Some(AttributeValue::UnitRef(o))) => unit.entry(o).ok(),
            _ => None,
        })?;
    }
    None
}

fn returns_void(unit: &gimli::Unit<R>, e: &gimli::DebuggingInformationEntry<R>) -> bool {
    let mut e = e.clone();
    for _ in 0..4 {
        if matches!(e.attr_value(gimli::DW_AT_type), Ok(Some(_))) {
            return false;
        }
        let next = [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification]
            .iter()
            .find_map(|&at| match e.attr_value(at) {
                Ok(Some(AttributeValue::UnitRef(o))) => unit.entry(o).ok(),
                _ => None,
            });
        match next {
            Some(n) => e = n,
            // A reference into another unit: do not guess.
            None if e.attr_value(gimli::DW_AT_abstract_origin).ok().flatten().is_some() => return false,
            None => return true,
        }
    }
    false
}

/// For a pointer type: the pointee's name and byte size (through typedefs and
/// qualifiers; `void` and incomplete types have no size).
fn pointee(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, off: UnitOffset) -> Option<(String, Option<u64>)> {
    let e = unit.entry(off).ok()?;
    if e.tag() != gimli::DW_TAG_pointer_type {
        return None;
    }
    let Ok(Some(AttributeValue::UnitRef(mut t))) = e.attr_value(gimli::DW_AT_type) else {
        return Some(("void".into(), None));
    };
    let name = describe(dwarf, unit, t, 0).0;
    for _ in 0..16 {
        let d = unit.entry(t).ok()?;
        if let Ok(Some(v)) = d.attr_value(gimli::DW_AT_byte_size) {
            // `char *` is a string, not one char: only aggregates say what a block holds.
            let aggregate = d.tag() != gimli::DW_TAG_base_type && d.tag() != gimli::DW_TAG_pointer_type;
            return Some((name, v.udata_value().filter(|_| aggregate)));
        }
        match d.attr_value(gimli::DW_AT_type) {
            Ok(Some(AttributeValue::UnitRef(n))) => t = n,
            _ => break,
        }
    }
    Some((name, None))
}

/// Name and type of a parameter, following DW_AT_abstract_origin (clones, inlines).
fn param_name_type(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    e: &gimli::DebuggingInformationEntry<R>,
) -> gimli::Result<(Option<String>, Option<UnitOffset>)> {
    let mut name = attr_string(dwarf, unit, e, gimli::DW_AT_name);
    let mut ty = match e.attr_value(gimli::DW_AT_type)? {
        Some(AttributeValue::UnitRef(o)) => Some(o),
        _ => None,
    };
    if let Some(AttributeValue::UnitRef(o)) = e.attr_value(gimli::DW_AT_abstract_origin)? {
        let origin = unit.entry(o)?;
        if name.is_none() {
            name = attr_string(dwarf, unit, &origin, gimli::DW_AT_name);
        }
        if ty.is_none() {
            if let Some(AttributeValue::UnitRef(t)) = origin.attr_value(gimli::DW_AT_type)? {
                ty = Some(t);
            }
        }
    }
    Ok((name, ty))
}

/// A readable type name and its liballocs letter.
fn describe(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, off: UnitOffset, depth: u32) -> (String, char) {
    if depth > 16 {
        return ("?".into(), 'p');
    }
    let Ok(e) = unit.entry(off) else { return ("?".into(), 'p') };
    let name = attr_string(dwarf, unit, &e, gimli::DW_AT_name);
    let inner = match e.attr_value(gimli::DW_AT_type) {
        Ok(Some(AttributeValue::UnitRef(t))) => Some(t),
        _ => None,
    };
    match e.tag() {
        gimli::DW_TAG_pointer_type | gimli::DW_TAG_reference_type | gimli::DW_TAG_rvalue_reference_type => {
            let pointee = inner.map(|t| describe(dwarf, unit, t, depth + 1).0).unwrap_or_else(|| "void".into());
            (format!("{pointee} *"), 'p')
        }
        gimli::DW_TAG_typedef => {
            let letter = inner.map(|t| describe(dwarf, unit, t, depth + 1).1).unwrap_or('p');
            (name.unwrap_or_else(|| "?".into()), letter)
        }
        gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type | gimli::DW_TAG_restrict_type => match inner {
            Some(t) => describe(dwarf, unit, t, depth + 1),
            None => ("void".into(), 'p'),
        },
        gimli::DW_TAG_base_type => {
            let enc = match e.attr_value(gimli::DW_AT_encoding) {
                Ok(Some(AttributeValue::Encoding(enc))) => enc,
                _ => gimli::DW_ATE_signed,
            };
            let letter = if enc == gimli::DW_ATE_unsigned || enc == gimli::DW_ATE_unsigned_char || enc == gimli::DW_ATE_boolean {
                'z'
            } else {
                'i'
            };
            (name.unwrap_or_else(|| "?".into()), letter)
        }
        gimli::DW_TAG_enumeration_type => (name.map(|n| format!("enum {n}")).unwrap_or_else(|| "enum".into()), 'i'),
        gimli::DW_TAG_structure_type => (name.map(|n| format!("struct {n}")).unwrap_or_else(|| "struct".into()), 'p'),
        _ => (name.unwrap_or_else(|| "?".into()), 'p'),
    }
}
