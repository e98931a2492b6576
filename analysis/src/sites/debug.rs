//! DWARF facts the site table needs: the line of an address (line programs), the
//! variables and parameters of the function around a pc with their locations
//! (location lists), and the shape of the type a pointer points to (name, size,
//! trailing array, members). Malformed or missing DWARF yields no facts.

use crate::dwarf::walk::{self, MAX_DEPTH};
use crate::dwarf::{attr_string, Loaded, R};
use super::size::Expr;
use gimli::{AttributeValue, UnitOffset};

/// Where a variable lives over an address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// In a register, by iced's general-purpose index (see `flow::interp::gpr`).
    Reg(usize),
    /// In memory at CFA + offset (`DW_OP_fbreg` with a CFA frame base).
    Cfa(i64),
}

#[derive(Debug, Clone)]
pub struct Var {
    pub name: String,
    pub unit: usize,
    pub ty: UnitOffset,
    /// (lo, hi, location): the location holds for pcs in lo..hi.
    pub locs: Vec<(u64, u64, Loc)>,
}

impl Var {
    pub fn at(&self, pc: u64) -> Option<Loc> {
        self.locs.iter().find(|(lo, hi, _)| (*lo..*hi).contains(&pc)).map(|l| l.2)
    }
}

/// A type a pointer points to.
#[derive(Debug, Clone)]
pub struct Pointee {
    /// As the program names it: a typedef name, a struct tag, `char`, `T *`.
    pub name: String,
    pub size: u64,
    /// The last member is an array (`char contents[1]`, `TValue uv[]`): (its
    /// offset, its element size). Such a struct is allocated with trailing bytes.
    pub trailing: Option<(u64, u64)>,
    /// The struct/union DIE, for member lookups.
    pub record: Option<(usize, UnitOffset)>,
}

struct Sub {
    lo: u64,
    hi: u64,
    unit: usize,
    off: UnitOffset,
}

pub struct Debug<'a> {
    dw: &'a Loaded<'a>,
    /// Return pc of a call → (argument register, the value DWARF says it holds):
    /// `DW_TAG_call_site_parameter`'s `DW_AT_call_value` (or the GNU forms).
    call_values: std::collections::HashMap<u64, Vec<(usize, Expr)>>,
    subs: Vec<Sub>,
    /// (address, file, line, end of sequence), sorted by address.
    rows: Vec<(u64, u32, u32, bool)>,
    files: Vec<String>,
}

impl<'a> Debug<'a> {
    pub fn read(dw: &'a Loaded<'a>) -> Debug<'a> {
        let mut d = Debug { dw, call_values: std::collections::HashMap::new(), subs: Vec::new(), rows: Vec::new(), files: Vec::new() };
        for (ui, unit) in dw.units.iter().enumerate() {
            let _ = d.read_subs(ui, unit);
            let _ = d.read_lines(unit);
        }
        d.subs.sort_by_key(|s| (s.lo, std::cmp::Reverse(s.hi)));
        d.rows.sort_by_key(|r| (r.0, !r.3));
        d
    }

    fn read_subs(&mut self, ui: usize, unit: &gimli::Unit<R<'a>>) -> gimli::Result<()> {
        let mut cursor = unit.entries();
        let mut call: Option<u64> = None;
        while let Some((_, e)) = cursor.next_dfs()? {
            match e.tag() {
                gimli::DW_TAG_call_site | gimli::DW_TAG_GNU_call_site => {
                    call = [gimli::DW_AT_call_return_pc, gimli::DW_AT_low_pc].iter().find_map(|&a| match e.attr_value(a).ok()? {
                        Some(AttributeValue::Addr(x)) => Some(x),
                        Some(AttributeValue::DebugAddrIndex(i)) => self.dw.dwarf.address(unit, i).ok(),
                        _ => None,
                    });
                    continue;
                }
                gimli::DW_TAG_call_site_parameter | gimli::DW_TAG_GNU_call_site_parameter => {
                    if let Some(pc) = call {
                        let reg = match e.attr_value(gimli::DW_AT_location)? {
                            Some(AttributeValue::Exprloc(x)) => simple_loc(x.0, unit.encoding()),
                            _ => None,
                        };
                        let value = [gimli::DW_AT_call_value, gimli::DW_AT_GNU_call_site_value].iter().find_map(|&a| match e.attr_value(a).ok()? {
                            Some(AttributeValue::Exprloc(x)) => value_expr(x.0, unit.encoding()),
                            _ => None,
                        });
                        if let (Some(Loc::Reg(r)), Some(v)) = (reg, value) {
                            self.call_values.entry(pc).or_default().push((r, v));
                        }
                    }
                    continue;
                }
                gimli::DW_TAG_subprogram => call = None,
                _ => {
                    call = None;
                    continue;
                }
            }
            let mut ranges = self.dw.dwarf.die_ranges(unit, e)?;
            while let Some(r) = ranges.next()? {
                if r.begin < r.end {
                    self.subs.push(Sub { lo: r.begin, hi: r.end, unit: ui, off: e.offset() });
                }
            }
        }
        Ok(())
    }

    fn read_lines(&mut self, unit: &gimli::Unit<R<'a>>) -> gimli::Result<()> {
        let Some(prog) = unit.line_program.clone() else { return Ok(()) };
        let mut rows = prog.rows();
        let mut file_ids: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
        while let Some((header, row)) = rows.next_row()? {
            let fid = match file_ids.get(&row.file_index()) {
                Some(&f) => f,
                None => {
                    let name = row
                        .file(header)
                        .and_then(|f| self.dw.dwarf.attr_string(unit, f.path_name()).ok())
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "?".into());
                    let base = name.rsplit('/').next().unwrap_or(&name).to_string();
                    self.files.push(base);
                    let id = (self.files.len() - 1) as u32;
                    file_ids.insert(row.file_index(), id);
                    id
                }
            };
            let line = row.line().map(|l| l.get() as u32).unwrap_or(0);
            self.rows.push((row.address(), fid, line, row.end_sequence()));
        }
        Ok(())
    }

    /// The value DWARF records for argument register `reg` (iced index) at the call
    /// returning to `ret`.
    pub fn call_value(&self, ret: u64, reg: usize) -> Option<Expr> {
        self.call_values.get(&ret)?.iter().find(|v| v.0 == reg).map(|v| v.1)
    }

    /// `file:line` of the instruction at `pc`.
    pub fn line(&self, pc: u64) -> Option<(String, u32)> {
        let i = self.rows.partition_point(|r| r.0 <= pc).checked_sub(1)?;
        let (_, f, line, end) = self.rows[i];
        (!end && line != 0).then(|| (self.files[f as usize].clone(), line))
    }

    /// The innermost subprogram DIE with code at `pc`.
    fn sub_at(&self, pc: u64) -> Option<&Sub> {
        let n = self.subs.partition_point(|s| s.lo <= pc);
        self.subs[..n].iter().rev().filter(|s| pc < s.hi).min_by_key(|s| s.hi - s.lo)
    }

    /// Every variable and parameter of the function at `pc`, including those of
    /// functions inlined into it, with their locations.
    pub fn vars_at(&self, pc: u64) -> Vec<Var> {
        let Some(sub) = self.sub_at(pc) else { return Vec::new() };
        let unit = &self.dw.units[sub.unit];
        let mut out = Vec::new();
        let Ok(mut tree) = unit.entries_tree(Some(sub.off)) else { return out };
        let Ok(root) = tree.root() else { return out };
        let _ = self.collect(sub.unit, unit, root, &mut out, 0);
        out
    }

    fn collect(&self, ui: usize, unit: &gimli::Unit<R<'a>>, node: gimli::EntriesTreeNode<R<'a>>, out: &mut Vec<Var>, depth: u32) -> gimli::Result<()> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        let mut kids = node.children();
        while let Some(k) = kids.next()? {
            let e = k.entry();
            match e.tag() {
                gimli::DW_TAG_variable | gimli::DW_TAG_formal_parameter => {
                    if let Some(v) = self.var(ui, unit, e) {
                        out.push(v);
                    }
                }
                gimli::DW_TAG_lexical_block | gimli::DW_TAG_inlined_subroutine => self.collect(ui, unit, k, out, depth + 1)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn var(&self, ui: usize, unit: &gimli::Unit<R<'a>>, e: &gimli::DebuggingInformationEntry<R<'a>>) -> Option<Var> {
        let origin = match e.attr_value(gimli::DW_AT_abstract_origin).ok()? {
            Some(AttributeValue::UnitRef(o)) => unit.entry(o).ok(),
            _ => None,
        };
        let from = |at: gimli::DwAt| e.attr_value(at).ok().flatten().or_else(|| origin.as_ref().and_then(|o| o.attr_value(at).ok().flatten()));
        let ty = match from(gimli::DW_AT_type)? {
            AttributeValue::UnitRef(t) => t,
            _ => return None,
        };
        let name = attr_string(&self.dw.dwarf, unit, e, gimli::DW_AT_name)
            .or_else(|| origin.as_ref().and_then(|o| attr_string(&self.dw.dwarf, unit, o, gimli::DW_AT_name)))
            .unwrap_or_default();
        let loc = e.attr_value(gimli::DW_AT_location).ok()??;
        let mut locs = Vec::new();
        match loc {
            AttributeValue::Exprloc(x) => {
                if let Some(l) = simple_loc(x.0, unit.encoding()) {
                    locs.push((0, u64::MAX, l));
                }
            }
            other => {
                let mut it = self.dw.dwarf.attr_locations(unit, other).ok()??;
                while let Ok(Some(entry)) = it.next() {
                    if let Some(l) = simple_loc(entry.data.0, unit.encoding()) {
                        locs.push((entry.range.begin, entry.range.end, l));
                    }
                }
            }
        }
        (!locs.is_empty()).then_some(Var { name, unit: ui, ty, locs })
    }

    /// The declared return type of the function at `pc`.
    pub fn return_type(&self, pc: u64) -> Option<(usize, UnitOffset)> {
        let sub = self.sub_at(pc)?;
        let unit = &self.dw.units[sub.unit];
        let mut e = unit.entry(sub.off).ok()?;
        for _ in 0..4 {
            if let Ok(Some(AttributeValue::UnitRef(t))) = e.attr_value(gimli::DW_AT_type) {
                return Some((sub.unit, t));
            }
            let next = [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification]
                .iter()
                .find_map(|&a| match e.attr_value(a) {
                    Ok(Some(AttributeValue::UnitRef(o))) => Some(o),
                    _ => None,
                })?;
            e = unit.entry(next).ok()?;
        }
        None
    }

    /// What a pointer type `ty` points to; None for non-pointers and `void *`.
    pub fn pointee(&self, ui: usize, ty: UnitOffset) -> Option<Pointee> {
        let unit = self.dw.units.get(ui)?;
        let (p, tag) = walk::strip(unit, ty, true)?;
        if tag != gimli::DW_TAG_pointer_type {
            return None;
        }
        let target = match unit.entry(p).ok()?.attr_value(gimli::DW_AT_type).ok()? {
            Some(AttributeValue::UnitRef(t)) => t,
            _ => return None, // void *
        };
        let name = self.type_name(unit, target, 0)?;
        let (base, btag) = walk::strip(unit, target, true)?;
        let size = walk::byte_size(unit, base)?;
        if size == 0 {
            return None;
        }
        let record = matches!(btag, gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type).then_some((ui, base));
        let trailing = if btag == gimli::DW_TAG_structure_type { self.trailing_array(unit, base) } else { None };
        Some(Pointee { name, size, trailing, record })
    }

    /// The type of the member at byte offset `off` of a struct/union, looking
    /// into nested structs (`dyd->actvar.arr`).
    pub fn member_at(&self, record: (usize, UnitOffset), off: u64) -> Option<(usize, UnitOffset, String)> {
        self.member_in(record.0, record.1, off, 0)
    }

    fn member_in(&self, ui: usize, rec: UnitOffset, off: u64, depth: u32) -> Option<(usize, UnitOffset, String)> {
        if depth > 8 {
            return None;
        }
        let unit = self.dw.units.get(ui)?;
        // Every member containing `off`: a union's overlap.
        for m in walk::members(unit, rec).iter().filter(|m| walk::contains(unit, m, off)) {
            let (t, at) = (m.ty, m.offset);
            let name = unit.entry(m.entry).ok().and_then(|e| attr_string(&self.dw.dwarf, unit, &e, gimli::DW_AT_name)).unwrap_or_default();
            let (base, tag) = walk::strip(unit, t, true)?;
            if off == at && tag == gimli::DW_TAG_pointer_type {
                return Some((ui, t, name));
            }
            if matches!(tag, gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type) {
                if let Some((u, t2, inner)) = self.member_in(ui, base, off - at, depth + 1) {
                    return Some((u, t2, format!("{name}.{inner}")));
                }
            }
        }
        None
    }

    fn trailing_array(&self, unit: &gimli::Unit<R<'a>>, record: UnitOffset) -> Option<(u64, u64)> {
        let last = *walk::members(unit, record).last()?;
        let (off, t) = (last.offset, last.ty);
        let (arr, tag) = walk::strip(unit, t, true)?;
        if tag != gimli::DW_TAG_array_type {
            return None;
        }
        let elem = match unit.entry(arr).ok()?.attr_value(gimli::DW_AT_type).ok()? {
            Some(AttributeValue::UnitRef(e)) => e,
            _ => return None,
        };
        let es = walk::byte_size(unit, elem)?;
        (es > 0).then_some((off, es))
    }

    fn type_name(&self, unit: &gimli::Unit<R<'a>>, ty: UnitOffset, depth: u32) -> Option<String> {
        if depth > MAX_DEPTH {
            return None;
        }
        let e = unit.entry(ty).ok()?;
        let inner = || match e.attr_value(gimli::DW_AT_type).ok().flatten() {
            Some(AttributeValue::UnitRef(t)) => self.type_name(unit, t, depth + 1),
            _ => Some("void".to_string()),
        };
        match e.tag() {
            gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type | gimli::DW_TAG_restrict_type | gimli::DW_TAG_atomic_type => inner(),
            gimli::DW_TAG_pointer_type => Some(format!("{} *", inner()?)),
            gimli::DW_TAG_array_type => Some(format!("{}[]", inner()?)),
            _ => Some(attr_string(&self.dw.dwarf, unit, &e, gimli::DW_AT_name).unwrap_or_else(|| "<anonymous>".into())),
        }
    }
}

/// A location expression of one operation: a register, or a frame-base offset.
/// gcc's frame base on x86-64 is `DW_OP_call_frame_cfa`.
fn simple_loc(expr: R, enc: gimli::Encoding) -> Option<Loc> {
    let mut ops = gimli::Expression(expr).operations(enc);
    let op = ops.next().ok()??;
    if ops.next().ok()?.is_some() {
        return None;
    }
    match op {
        gimli::Operation::Register { register } => dwarf_reg(register.0).map(Loc::Reg),
        gimli::Operation::FrameOffset { offset } => Some(Loc::Cfa(offset)),
        _ => None,
    }
}

/// DWARF x86-64 register number → iced general-purpose index.
fn dwarf_reg(r: u16) -> Option<usize> {
    Some(match r {
        0 => 0,
        1 => 2,
        2 => 1,
        3 => 3,
        4 => 6,
        5 => 7,
        6 => 5,
        7 => 4,
        8..=15 => r as usize,
        _ => return None,
    })
}

/// A `DW_AT_call_value` expression as a linear expression: constants, registers
/// (and entry values) as the unknown term, `+ - ×` and shifts by constants.
fn value_expr(expr: R, enc: gimli::Encoding) -> Option<Expr> {
    let term = |t: u32, off: i64| Expr::Lin { scale: 1, term: Some(t), off };
    let mut stack: Vec<Expr> = Vec::new();
    let mut ops = gimli::Expression(expr).operations(enc);
    while let Some(op) = ops.next().ok()? {
        use gimli::Operation as O;
        let v = match op {
            O::UnsignedConstant { value } => Expr::konst(value as i64),
            O::SignedConstant { value } => Expr::konst(value),
            O::Register { register } => term(1000 + register.0 as u32, 0),
            O::RegisterOffset { register, offset, .. } => term(1000 + register.0 as u32, offset),
            O::EntryValue { .. } => term(2000, 0),
            O::PlusConstant { value } => stack.pop()?.add(Expr::konst(value as i64)),
            O::Plus | O::Minus | O::Mul | O::Shl => {
                let b = stack.pop()?;
                let a = stack.pop()?;
                match op {
                    O::Plus => a.add(b),
                    O::Minus => a.add(b.mul(-1)),
                    O::Mul => a.times(b),
                    _ => match b.as_const() {
                        Some(k) if (0..63).contains(&k) => a.mul(1i64 << k),
                        _ => return None,
                    },
                }
            }
            _ => return None,
        };
        stack.push(v);
    }
    match stack.as_slice() {
        [v] if *v != Expr::Unknown => Some(*v),
        _ => None,
    }
}
