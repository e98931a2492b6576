//! Line tables for debuggers (issue 5, DESIGN §7): the launch pad's `jmp` replaced the
//! first instructions of every hooked function, and those instructions now run from
//! `f.allocsite_pad` in `.allocsite.text`. Without help a debugger
//! - plants `break f` inside the `jmp` when a line-table row points into the
//!   overwritten bytes, corrupting it;
//! - stops `break f`/`step` at the entry (the `jmp`) instead of after the prologue:
//!   gdb finds the end of a gcc prologue by decoding `push %rbp; mov %rsp,%rbp` at the
//!   entry, which is gone;
//! - shows no source line for the relocated instructions.
//!
//! So, for every compilation unit with a row in a hooked function's pad or a
//! frame-pointer prologue to stand in for, the line program is re-encoded (with
//! `gimli::write`, file table index for index, so `DW_AT_decl_file` stays true):
//! - rows strictly inside the overwritten bytes move to their end (the row in effect
//!   there keeps describing the first byte still executed in place);
//! - a function that began with `push %rbp; mov %rsp,%rbp` gets `prologue_end` on the
//!   row where gdb stopped in the original (gdb ≥ 13 honours the flag for `break`), and
//!   loses the rows at its entry when an earlier row of the same sequence exists, so
//!   the entry reads as the middle of a line and gdb's `step` runs on to the next row —
//!   again the original's stop. A PC exactly at such an entry (the `jmp`) then shows the
//!   preceding row's line.
//!
//! Each such unit also gets a small twin unit: the same name, directory and file
//! tables, `DW_AT_ranges` over its functions' relocated pads and a line program mapping
//! every relocated instruction to the row of its original address. gdb only consults a
//! unit's rows for addresses inside the unit's ranges, hence a unit rather than a bare
//! sequence.
//!
//! Output: new `.debug_info` (old units byte for byte, `DW_AT_stmt_list` of the
//! re-encoded ones patched, twins appended), `.debug_abbrev`, `.debug_line` and the range
//! list section, each the input's bytes with the new pieces appended, so no existing
//! offset moves. Units this cannot handle are left alone with a note.

mod steppers;
mod subprogram;

use super::elf::InputElf;
pub use steppers::Stepper;
use subprogram::{pad_subprogram, subprograms};
use gimli::constants as dw;
use gimli::write::{self, Address, DirectoryId, FileId, LineProgram, LineString};
use gimli::{EndianSlice, LittleEndian, SectionId};
use std::collections::HashMap;

type R<'a> = EndianSlice<'a, LittleEndian>;

/// One hooked function whose entry holds a launch pad.
#[derive(Clone, Debug)]
pub struct PadLines {
    pub name: String,
    /// Function entry (the `endbr64`, when present, stays there).
    pub entry: u64,
    /// Overwritten bytes `[start, end)`: the `jmp` at `start`, `int3` after it.
    pub start: u64,
    pub end: u64,
    /// End of the function's code (symbol size), bounds gdb's prologue search.
    pub fn_end: u64,
    /// Length of `[endbr64] push %rbp; mov %rsp,%rbp` at the entry, 0 when it is not there.
    pub frame_setup: u64,
    /// `(new address, original address)` of each relocated instruction, in order; the
    /// jmp back, when there is one, with the address it resumes at.
    pub instrs: Vec<(u64, u64)>,
    /// The relocated pad `[pad_addr, pad_end)`.
    pub pad_addr: u64,
    pub pad_end: u64,
}

/// Length of the frame setup gdb's amd64 prologue analyzer recognises at `code`.
pub fn frame_setup_len(code: &[u8]) -> u64 {
    let (skip, rest) = if code.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) { (4, &code[4..]) } else { (0, code) };
    let movs: [&[u8]; 2] = [&[0x48, 0x89, 0xe5], &[0x48, 0x8b, 0xec]];
    if rest.first() == Some(&0x55) && movs.iter().any(|m| rest[1..].starts_with(m)) {
        skip + 4
    } else {
        0
    }
}

/// Replacement contents for debug sections (name, bytes), plus notes for the user.
#[derive(Default)]
pub struct Lines {
    pub sections: Vec<(&'static str, Vec<u8>)>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
struct Row {
    addr: u64,
    file: u64,
    line: u64,
    column: u64,
    discriminator: u64,
    is_stmt: bool,
    basic_block: bool,
    prologue_end: bool,
    epilogue_begin: bool,
    isa: u64,
}

struct Seq {
    rows: Vec<Row>,
    end: u64,
}

const DEBUG_SECTIONS: [(SectionId, &str); 11] = [
    (SectionId::DebugAbbrev, ".debug_abbrev"),
    (SectionId::DebugAddr, ".debug_addr"),
    (SectionId::DebugInfo, ".debug_info"),
    (SectionId::DebugLine, ".debug_line"),
    (SectionId::DebugLineStr, ".debug_line_str"),
    (SectionId::DebugStr, ".debug_str"),
    (SectionId::DebugStrOffsets, ".debug_str_offsets"),
    (SectionId::DebugRanges, ".debug_ranges"),
    (SectionId::DebugRngLists, ".debug_rnglists"),
    (SectionId::DebugLoc, ".debug_loc"),
    (SectionId::DebugLocLists, ".debug_loclists"),
];

/// An `EndianVec` that resolves `Reference::Symbol(i)` to `targets[i]`: `.debug_info`
/// offsets of existing DIEs (types, origins) that new DIEs refer to with `DW_FORM_ref_addr`.
#[derive(Clone)]
struct RefWriter {
    inner: write::EndianVec<LittleEndian>,
    targets: std::rc::Rc<std::cell::RefCell<Vec<u64>>>,
}

impl write::Writer for RefWriter {
    type Endian = LittleEndian;
    fn endian(&self) -> LittleEndian {
        LittleEndian
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn write(&mut self, bytes: &[u8]) -> write::Result<()> {
        self.inner.write(bytes)
    }
    fn write_at(&mut self, offset: usize, bytes: &[u8]) -> write::Result<()> {
        self.inner.write_at(offset, bytes)
    }
    fn write_reference(&mut self, symbol: usize, size: u8) -> write::Result<()> {
        let v = self.targets.borrow().get(symbol).copied().ok_or(write::Error::InvalidReference)?;
        self.write_udata(v, size)
    }
}

fn section_bytes<'a>(elf: &InputElf<'a>, name: &str) -> &'a [u8] {
    elf.section(name).map_or(&[][..], |(_, s)| elf.section_data(s))
}

/// Rewrite the line information for `pads`, and add the unit of the trampolines gdb
/// steps through (`steppers`). Never fails: what cannot be done is a note.
pub fn rewrite(elf: &InputElf, pads: &[PadLines], steppers: &[Stepper]) -> Lines {
    let mut out = Lines::default();
    if (pads.is_empty() && steppers.is_empty()) || elf.section(".debug_info").is_none() || elf.section(".debug_line").is_none() {
        return out;
    }
    if let Some(s) = elf.shdrs.iter().find(|s| s.name.starts_with(".debug_") && s.sh_flags & object::elf::SHF_COMPRESSED as u64 != 0) {
        out.notes.push(format!("line tables not updated: {} is compressed", s.name));
        return out;
    }
    match build(elf, pads, steppers, &mut out.notes) {
        Ok(sections) => out.sections = sections,
        Err(e) => out.notes.push(format!("line tables not updated: {e}")),
    }
    out
}

fn build(elf: &InputElf, pads: &[PadLines], steppers: &[Stepper], notes: &mut Vec<String>) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let load = |id: SectionId| -> Result<R, ()> {
        let name = DEBUG_SECTIONS.iter().find(|(i, _)| *i == id).map_or("", |(_, n)| *n);
        Ok(EndianSlice::new(if name.is_empty() { &[] } else { section_bytes(elf, name) }, LittleEndian))
    };
    let dwarf = gimli::Dwarf::load(load).map_err(|_: ()| "cannot load DWARF".to_string())?;
    let targets = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut sections = write::Sections::new(RefWriter { inner: write::EndianVec::new(LittleEndian), targets: targets.clone() });
    // New pieces are appended to the input's bytes, so every offset gimli writes is final.
    let w = |v: &[u8]| {
        let mut inner = write::EndianVec::new(LittleEndian);
        let _ = write::Writer::write(&mut inner, v);
        RefWriter { inner, targets: targets.clone() }
    };
    // Twins are DWARF 4 units (see `twin_unit`): of the range and location sections only
    // `.debug_ranges` and `.debug_loc` grow, small or absent in a DWARF 5 build, so the
    // large `.debug_rnglists`/`.debug_loclists` are neither copied nor replaced.
    // `.debug_line` is spliced below.
    sections.debug_info = write::DebugInfo(w(section_bytes(elf, ".debug_info")));
    sections.debug_abbrev = write::DebugAbbrev(w(section_bytes(elf, ".debug_abbrev")));
    sections.debug_ranges = write::DebugRanges(w(section_bytes(elf, ".debug_ranges")));
    sections.debug_loc = write::DebugLoc(w(section_bytes(elf, ".debug_loc")));
    // Re-encoded programs replace the old ones in place (tools that walk .debug_line
    // program by program must not find the stale rows), so every unit's stmt_list moves.
    let mut replaced: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut stmt_lists: Vec<(usize, u8, usize)> = Vec::new();
    let mut twins: Vec<write::DwarfUnit> = Vec::new();

    let mut units = dwarf.units();
    loop {
        let header = match units.next() {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => return Err(format!("a unit header does not parse ({e})")),
        };
        let at = header.offset().as_debug_info_offset().map_or(0, |o| o.0);
        let unit = dwarf.unit(header).map_err(|e| format!("unit at {at:#x} does not parse ({e})"))?;
        if let Some(lp) = &unit.line_program {
            let pos = stmt_list_pos(&unit, at).ok_or_else(|| format!("unit at {at:#x}: DW_AT_stmt_list is not a plain section offset"))?;
            stmt_lists.push((pos.0, pos.1, lp.header().offset().0));
        }
        let mine: Vec<&PadLines> = match unit_pads(&dwarf, &unit, pads) {
            Ok(m) => m,
            Err(e) => {
                notes.push(format!("line tables: unit at {at:#x}: {e}; left alone"));
                continue;
            }
        };
        if mine.is_empty() || unit.line_program.is_none() {
            continue;
        }
        match fix_unit(&dwarf, &unit, at, &mine, &targets, notes) {
            Ok(Some(fixed)) => {
                if let Some(program) = fixed.program {
                    let mut w = write::DebugLine(write::EndianVec::new(LittleEndian));
                    program
                        .write(&mut w, program.encoding(), &write::DebugLineStrOffsets::none(), &write::DebugStrOffsets::none())
                        .map_err(|e| format!("cannot encode a line program: {e}"))?;
                    let off = unit.line_program.as_ref().map_or(0, |l| l.header().offset().0);
                    replaced.insert(off, w.0.into_vec());
                }
                twins.extend(fixed.twin);
            }
            Ok(None) => {}
            Err(e) => notes.push(format!("line tables: unit at {at:#x}: {e}; left alone")),
        }
    }
    twins.extend(steppers::unit(steppers));
    if replaced.is_empty() && twins.is_empty() {
        return Ok(Vec::new());
    }
    let (line, moved) = splice_programs(section_bytes(elf, ".debug_line"), &replaced)?;
    sections.debug_line = write::DebugLine(w(&line));
    for t in &mut twins {
        t.write(&mut sections).map_err(|e| format!("cannot encode a unit: {e}"))?;
    }
    let mut info = sections.debug_info.0.inner.into_vec();
    for (pos, size, old) in stmt_lists {
        let val = *moved.get(&old).ok_or("a DW_AT_stmt_list points into the middle of a line program")? as u64;
        match size {
            4 => info[pos..pos + 4].copy_from_slice(&u32::try_from(val).map_err(|_| ".debug_line beyond 4 GB")?.to_le_bytes()),
            _ => info[pos..pos + 8].copy_from_slice(&val.to_le_bytes()),
        }
    }
    // Sections only appended to are replaced when something was appended.
    let mut result = vec![(".debug_info", info)];
    for (name, bytes) in [
        (".debug_abbrev", sections.debug_abbrev.0.inner.into_vec()),
        (".debug_line", sections.debug_line.0.inner.into_vec()),
        (".debug_ranges", sections.debug_ranges.0.inner.into_vec()),
        (".debug_loc", sections.debug_loc.0.inner.into_vec()),
    ] {
        if bytes.len() != section_bytes(elf, name).len() {
            result.push((name, bytes));
        }
    }
    Ok(result)
}

/// `.debug_line` with the programs at the keys of `replaced` swapped for new bytes;
/// returns it and the new offset of every old program start.
fn splice_programs(old: &[u8], replaced: &HashMap<usize, Vec<u8>>) -> Result<(Vec<u8>, HashMap<usize, usize>), String> {
    let mut out = Vec::with_capacity(old.len() + replaced.values().map(Vec::len).sum::<usize>());
    let mut moved = HashMap::new();
    let mut at = 0;
    while at < old.len() {
        let word = |o: usize, n: usize| old.get(o..o + n).ok_or("truncated line program header");
        let len32 = u32::from_le_bytes(word(at, 4)?.try_into().unwrap_or_default());
        let (hdr, len) = if len32 == 0xffff_ffff { (12, u64::from_le_bytes(word(at + 4, 8)?.try_into().unwrap_or_default())) } else { (4, len32 as u64) };
        let end = at.checked_add(hdr).and_then(|e| e.checked_add(usize::try_from(len).ok()?)).filter(|&e| e <= old.len()).ok_or("a line program runs past .debug_line")?;
        moved.insert(at, out.len());
        match replaced.get(&at) {
            Some(b) => out.extend_from_slice(b),
            None => out.extend_from_slice(&old[at..end]),
        }
        at = end;
    }
    if replaced.keys().any(|k| !moved.contains_key(k)) {
        return Err("a line program does not start where its unit says".into());
    }
    Ok((out, moved))
}

/// The pads whose function lies in `unit`'s address ranges.
fn unit_pads<'p>(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, pads: &'p [PadLines]) -> gimli::Result<Vec<&'p PadLines>> {
    let mut ranges = Vec::new();
    let mut it = dwarf.unit_ranges(unit)?;
    while let Some(r) = it.next()? {
        ranges.push(r);
    }
    Ok(pads.iter().filter(|p| ranges.iter().any(|r| p.entry >= r.begin && p.entry < r.end)).collect())
}

struct Fixed {
    /// The re-encoded program, when a row changed.
    program: Option<LineProgram>,
    twin: Option<write::DwarfUnit>,
}

pub(super) type Targets = std::rc::Rc<std::cell::RefCell<Vec<u64>>>;

fn fix_unit(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, at: usize, pads: &[&PadLines], targets: &Targets, notes: &mut Vec<String>) -> Result<Option<Fixed>, String> {
    let Some(program) = unit.line_program.clone() else { return Ok(None) };
    let header = program.header().clone();
    let mut seqs = read_rows(program)?;
    // The pad's rows come from the original table, before any row moves.
    let pad_rows: Vec<(&PadLines, Vec<Row>)> = pads.iter().map(|p| (*p, pad_sequence(p, &seqs))).collect();
    let mut changed = false;
    for s in &mut seqs {
        changed |= fix_sequence(s, pads);
    }
    let files = FileTable::read(dwarf, unit, &header)?;
    let program = if changed {
        let (mut p, ids) = files.program()?;
        emit(&mut p, &files, &ids, &seqs)?;
        Some(p)
    } else {
        None
    };
    let pad_seqs: Vec<(&PadLines, Seq)> = pad_rows
        .into_iter()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(p, rows)| (p, Seq { rows, end: p.pad_end }))
        .collect();
    let twin = if pad_seqs.is_empty() { None } else { Some(twin_unit(dwarf, unit, at, &files, &pad_seqs, targets, notes)?) };
    if program.is_none() && twin.is_none() {
        return Ok(None);
    }
    Ok(Some(Fixed { program, twin }))
}

fn read_rows(program: gimli::IncompleteLineProgram<R>) -> Result<Vec<Seq>, String> {
    let mut seqs = Vec::new();
    let mut cur: Vec<Row> = Vec::new();
    let mut rows = program.rows();
    while let Some((_, r)) = rows.next_row().map_err(|e| format!("line program: {e}"))? {
        if r.end_sequence() {
            if !cur.is_empty() {
                seqs.push(Seq { rows: std::mem::take(&mut cur), end: r.address() });
            }
            continue;
        }
        if cur.last().is_some_and(|l| l.addr > r.address()) {
            return Err("line rows go backwards within a sequence".into());
        }
        cur.push(Row {
            addr: r.address(),
            file: r.file_index(),
            line: r.line().map_or(0, |l| l.get()),
            column: match r.column() {
                gimli::ColumnType::LeftEdge => 0,
                gimli::ColumnType::Column(c) => c.get(),
            },
            discriminator: r.discriminator(),
            is_stmt: r.is_stmt(),
            basic_block: r.basic_block(),
            prologue_end: r.prologue_end(),
            epilogue_begin: r.epilogue_begin(),
            isa: r.isa(),
        });
    }
    Ok(seqs)
}

/// Rows for the relocated pad: each instruction gets the rows of its original address
/// (all rows there), or the row in effect at it.
fn pad_sequence(p: &PadLines, seqs: &[Seq]) -> Vec<Row> {
    let mut out = Vec::new();
    for &(new, orig) in &p.instrs {
        let Some(s) = seqs.iter().find(|s| s.rows.first().is_some_and(|r| r.addr <= orig) && orig < s.end) else { continue };
        let k = s.rows.partition_point(|r| r.addr < orig);
        let exact: Vec<&Row> = s.rows[k..].iter().take_while(|r| r.addr == orig).collect();
        let rows: Vec<&Row> = if exact.is_empty() {
            // Mid-row: repeat the row only where the line changes.
            let r = k.checked_sub(1).and_then(|j| s.rows.get(j));
            r.filter(|r| !out.last().is_some_and(|l: &Row| (l.file, l.line, l.column) == (r.file, r.line, r.column))).into_iter().collect()
        } else {
            exact
        };
        // The jmp back (mapped to where it resumes) is no place for `break FILE:LINE`:
        // the original's row there keeps that role.
        let stmt = orig < p.end;
        out.extend(rows.into_iter().map(|r| Row { addr: new, prologue_end: false, is_stmt: r.is_stmt && stmt, ..r.clone() }));
    }
    out
}

/// Apply every pad of `pads` (sorted by entry, inside the sequence) in one pass: each
/// touches only the rows in `[entry, end)`, found by binary search, so a unit with a
/// million rows and hundreds of pads costs one copy.
fn fix_sequence(s: &mut Seq, pads: &[&PadLines]) -> bool {
    let rows = &s.rows;
    let Some(first) = rows.first().map(|r| r.addr) else { return false };
    let mut mine: Vec<&PadLines> = pads.iter().copied().filter(|p| p.entry >= first && p.entry < s.end).collect();
    if mine.is_empty() {
        return false;
    }
    mine.sort_by_key(|p| p.entry);
    let mut out: Vec<Row> = Vec::with_capacity(rows.len() + mine.len());
    let mut marks = Vec::new();
    let mut changed = false;
    let mut i = 0;
    for p in mine {
        let a = rows.partition_point(|r| r.addr < p.entry).max(i);
        let b = rows.partition_point(|r| r.addr < p.end).max(a);
        out.extend_from_slice(&rows[i..a]);
        let mut win: Vec<Row> = rows[a..b].to_vec();
        let at_end = rows.get(b).is_some_and(|r| r.addr == p.end);
        let inside = |x: u64| x > p.start && x < p.end;
        if let Some(last) = win.iter().map(|r| r.addr).filter(|&x| inside(x)).max() {
            let moved: Vec<Row> = win.iter().filter(|r| r.addr == last).map(|r| Row { addr: p.end, ..r.clone() }).collect();
            win.retain(|r| !inside(r.addr));
            if p.end < s.end && !at_end {
                win.extend(moved);
            }
            changed = true;
        }
        if p.frame_setup > 0 {
            // Where gdb's `break f` stopped in the original: after the frame setup, at a
            // row starting there, else at the next row (gdb's "mid-line" rule).
            let after = p.entry + p.frame_setup;
            let k = rows.partition_point(|r| r.addr < after);
            if let Some(stop) = rows.get(k).map(|r| r.addr).filter(|&x| x < p.fn_end) {
                marks.push(stop.max(p.end));
            }
            // Make the entry the middle of a row: drop the entry's rows when an earlier
            // row of the sequence covers it, else start them one byte early (that byte
            // belongs to another unit or to padding, so gdb never asks this unit about it).
            if a > 0 {
                win.retain(|r| r.addr > p.start);
            } else if p.entry > 0 {
                for r in win.iter_mut().filter(|r| r.addr <= p.start) {
                    r.addr = p.entry - 1;
                }
            }
            changed = true;
        }
        out.extend(win);
        i = b;
    }
    out.extend_from_slice(&rows[i..]);
    for m in marks {
        let k = out.partition_point(|r| r.addr < m);
        if let Some(r) = out.get_mut(k).filter(|r| r.addr == m) {
            r.prologue_end = true;
        }
    }
    if changed {
        s.rows = out;
    }
    changed
}

/// Byte position and size of the unit's `DW_AT_stmt_list` value in `.debug_info`.
fn stmt_list_pos(unit: &gimli::Unit<R>, at: usize) -> Option<(usize, u8)> {
    let mut raw = unit.entries_raw(None).ok()?;
    let abbrev = raw.read_abbreviation().ok()??;
    for spec in abbrev.attributes() {
        let pos = raw.next_offset().0;
        let attr = raw.read_attribute(*spec).ok()?;
        if attr.name() == dw::DW_AT_stmt_list {
            let size = match spec.form() {
                dw::DW_FORM_sec_offset => unit.encoding().format.word_size(),
                dw::DW_FORM_data4 => 4,
                dw::DW_FORM_data8 => 8,
                _ => return None,
            };
            return Some((at + pos, size));
        }
    }
    None
}

/// A unit's directory and file tables as plain strings, index for index.
struct FileTable {
    encoding: gimli::Encoding,
    dirs: Vec<Vec<u8>>,
    /// (name, directory index, timestamp, size, md5)
    files: Vec<(Vec<u8>, u64, u64, u64, [u8; 16])>,
    md5: bool,
}

impl FileTable {
    fn read(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, h: &gimli::LineProgramHeader<R>) -> Result<Self, String> {
        let string = |v| dwarf.attr_string(unit, v).map(|s: R| s.slice().to_vec()).map_err(|e| format!("line header string: {e}"));
        let enc = h.encoding();
        let mut dirs = Vec::new();
        if enc.version < 5 {
            dirs.push(unit.comp_dir.map(|d| d.slice().to_vec()).unwrap_or_default());
        }
        for d in h.include_directories() {
            dirs.push(string(d.clone())?);
        }
        let mut files = Vec::new();
        for f in h.file_names() {
            files.push((string(f.path_name())?, f.directory_index(), f.timestamp(), f.size(), *f.md5()));
        }
        if files.iter().any(|f| f.1 as usize >= dirs.len()) {
            return Err("a file names a directory the header lacks".into());
        }
        if enc.version >= 5 && (files.is_empty() || dirs.is_empty()) {
            return Err("DWARF 5 line header without file 0 or directory 0".into());
        }
        Ok(FileTable { encoding: enc, dirs, files, md5: h.file_has_md5() })
    }

    /// A program with this table, every index preserved (gimli merges equal entries, so
    /// a repeated one — gcc repeats the primary file as file 1 — is spelled as an
    /// absolute path, which names the same file).
    fn program(&self) -> Result<(LineProgram, Vec<FileId>), String> {
        let enc = self.encoding;
        if !(2..=5).contains(&enc.version) || enc.address_size != 8 {
            return Err(format!("line program version {} / address size {} not handled", enc.version, enc.address_size));
        }
        let v5 = enc.version >= 5;
        let ok = |s: &[u8], may_be_empty: bool| !s.contains(&0) && (may_be_empty || !s.is_empty());
        let comp_dir = self.dirs.first().cloned().unwrap_or_default();
        if !ok(&comp_dir, true) {
            return Err("bad directory name".into());
        }
        // gcc repeats the primary file as file 1, which rows and DW_AT_decl_file use;
        // file 0 is then the one spelled absolutely, so displayed names stay as they were.
        // File 0 must sit in directory 0 for the writer; elsewhere it is spelled absolutely too.
        let file0_abs = v5 && (self.files[0].1 != 0 || self.files[1..].iter().any(|f| f.0 == self.files[0].0 && f.1 == 0));
        let comp_file = match (v5, file0_abs) {
            (true, true) => self.absolute(&self.files[0].0, self.files[0].1 as usize),
            (true, false) => self.files[0].0.clone(),
            _ => b"-".to_vec(),
        };
        if !ok(&comp_file, !v5) {
            return Err("bad file name".into());
        }
        let info = |f: &(Vec<u8>, u64, u64, u64, [u8; 16])| write::FileInfo { timestamp: f.2, size: f.3, md5: f.4, source: None };
        let mut p = LineProgram::new(enc, gimli::LineEncoding::default(), LineString::String(comp_dir.clone()), LineString::String(comp_file.clone()), if v5 { Some(info(&self.files[0])) } else { None });
        p.file_has_md5 = self.md5 && v5;
        p.file_has_timestamp = !v5;
        p.file_has_size = !v5;
        let mut dir_ids: Vec<DirectoryId> = vec![p.default_directory()];
        let mut seen_dirs: HashMap<Vec<u8>, DirectoryId> = HashMap::from([(comp_dir.clone(), p.default_directory())]);
        for d in self.dirs.iter().skip(1) {
            if !ok(d, v5) {
                return Err("bad directory name".into());
            }
            // An equal directory merges; files refer to it through the same id anyway.
            let id = *seen_dirs.entry(d.clone()).or_insert_with(|| p.add_directory(LineString::String(d.clone())));
            dir_ids.push(id);
        }
        let mut seen: std::collections::HashSet<(Vec<u8>, DirectoryId)> = std::collections::HashSet::new();
        let mut ids = Vec::new();
        if v5 {
            seen.insert((comp_file.clone(), dir_ids[0]));
            // File 0 exists already: adding it again returns its id, info untouched.
            ids.push(p.add_file(LineString::String(comp_file.clone()), dir_ids[0], None));
        }
        for f in self.files.iter().skip(usize::from(v5)) {
            if !ok(&f.0, false) {
                return Err("bad file name".into());
            }
            let dir = dir_ids[f.1 as usize];
            let mut key = (f.0.clone(), dir);
            if seen.contains(&key) {
                key = (self.absolute(&f.0, f.1 as usize), dir);
                if seen.contains(&key) || !key.0.starts_with(b"/") {
                    return Err("the file table repeats an entry that cannot be told apart".into());
                }
            }
            seen.insert(key.clone());
            ids.push(p.add_file(LineString::String(key.0), key.1, Some(info(f))));
        }
        Ok((p, ids))
    }

    fn absolute(&self, name: &[u8], dir: usize) -> Vec<u8> {
        if name.starts_with(b"/") {
            return name.to_vec();
        }
        let mut d = self.dirs[dir].clone();
        if !d.starts_with(b"/") && dir != 0 {
            let mut c = self.dirs[0].clone();
            c.push(b'/');
            c.extend_from_slice(&d);
            d = c;
        }
        d.push(b'/');
        d.extend_from_slice(name);
        d
    }

    /// Table index of a row's file register (DWARF 5 counts from 0, earlier from 1).
    fn index(&self, file: u64) -> Option<usize> {
        let i = if self.encoding.version >= 5 { file } else { file.checked_sub(1)? };
        (i < self.files.len() as u64).then_some(i as usize)
    }
}

/// Emit `seqs` into `p`.
fn emit(p: &mut LineProgram, files: &FileTable, ids: &[FileId], seqs: &[Seq]) -> Result<(), String> {
    for s in seqs {
        let Some(base) = s.rows.first().map(|r| r.addr) else { continue };
        if s.end < s.rows.last().map_or(base, |r| r.addr) {
            return Err("a sequence ends before its last row".into());
        }
        p.begin_sequence(Some(Address::Constant(base)));
        let mut prev = base;
        for r in &s.rows {
            if r.addr < prev {
                return Err("line rows go backwards within a sequence".into());
            }
            prev = r.addr;
            let file = files.index(r.file).and_then(|i| ids.get(i).copied()).ok_or("a row names a file the header lacks")?;
            let row = p.row();
            row.address_offset = r.addr - base;
            row.op_index = 0;
            row.file = file;
            row.line = r.line;
            row.column = r.column;
            row.discriminator = r.discriminator;
            row.is_statement = r.is_stmt;
            row.basic_block = r.basic_block;
            row.prologue_end = r.prologue_end;
            row.epilogue_begin = r.epilogue_begin;
            row.isa = r.isa;
            p.generate_row();
        }
        p.end_sequence(s.end - base);
    }
    Ok(())
}

/// A unit covering the relocated pads of `unit`'s functions, with `unit`'s name,
/// producer, language and file table, and line rows for the pads.
fn twin_unit(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    at: usize,
    files: &FileTable,
    pads: &[(&PadLines, Seq)],
    targets: &Targets,
    notes: &mut Vec<String>,
) -> Result<write::DwarfUnit, String> {
    // A DWARF 5 unit's twin is written as DWARF 4 (the file table shifted to 1-based
    // numbers, every entry kept): its range and location lists then go to
    // `.debug_ranges`/`.debug_loc` instead of appending to, and so copying, the large
    // `.debug_rnglists`/`.debug_loclists`.
    let v4 = files.encoding.version >= 5;
    let files4;
    let (files, shift) = if v4 {
        files4 = FileTable { encoding: gimli::Encoding { version: 4, ..files.encoding }, dirs: files.dirs.clone(), files: files.files.clone(), md5: false };
        (&files4, 1)
    } else {
        (files, 0)
    };
    let (mut program, ids) = files.program()?;
    let seqs: Vec<Seq> = pads
        .iter()
        .map(|(_, s)| Seq { rows: s.rows.iter().map(|r| Row { file: r.file + shift, ..r.clone() }).collect(), end: s.end })
        .collect();
    emit(&mut program, files, &ids, &seqs)?;
    let mut du = write::DwarfUnit::new(files.encoding);
    du.unit.line_program = program;
    let ranges = write::RangeList(
        pads.iter().map(|(p, _)| write::Range::StartLength { begin: Address::Constant(p.pad_addr), length: p.pad_end - p.pad_addr }).collect(),
    );
    let ranges = du.unit.ranges.add(ranges);
    let mut attrs: Vec<(gimli::DwAt, write::AttributeValue)> = Vec::new();
    let mut entries = unit.entries();
    if let Ok(Some((_, root))) = entries.next_dfs() {
        for name in [dw::DW_AT_name, dw::DW_AT_comp_dir, dw::DW_AT_producer] {
            if let Ok(Some(v)) = root.attr_value(name) {
                if let Ok(s) = dwarf.attr_string(unit, v) {
                    attrs.push((name, write::AttributeValue::String(s.slice().to_vec())));
                }
            }
        }
        if let Ok(Some(gimli::AttributeValue::Language(l))) = root.attr_value(dw::DW_AT_language) {
            attrs.push((dw::DW_AT_language, write::AttributeValue::Language(l)));
        }
    }
    let root = du.unit.root();
    let root = du.unit.get_mut(root);
    for (n, v) in attrs {
        root.set(n, v);
    }
    root.set(dw::DW_AT_low_pc, write::AttributeValue::Address(Address::Constant(0)));
    root.set(dw::DW_AT_ranges, write::AttributeValue::RangeListRef(ranges));
    let found = subprograms(dwarf, unit, pads);
    for (p, _) in pads {
        match found.iter().find(|(e, _)| *e == p.entry) {
            Some((_, off)) => {
                if let Err(e) = pad_subprogram(dwarf, unit, at, *off, p, &mut du, targets) {
                    notes.push(format!("{}: relocated pad has lines but no arguments in gdb ({e})", p.name));
                }
            }
            None => notes.push(format!("{}: no DW_TAG_subprogram at {:#x}; relocated pad has lines but no arguments in gdb", p.name, p.entry)),
        }
    }
    Ok(du)
}
