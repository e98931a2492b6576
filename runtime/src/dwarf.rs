//! `file:line` from DWARF (gimli), built lazily per object at report time: the line
//! table's line, except inside code inlined into a function, where the site's line is
//! the line of that function that calls the inlined one (a site is a call made by the
//! function its symbol names: `main+0x77 (leakdup.c:30)`, not the inlined helper's
//! `leakdup.c:19`; valgrind and heaptrack list that line as the caller's frame).
use crate::elf::Elf;
use gimli::{EndianSlice, LittleEndian};

pub struct Lines {
    files: Vec<String>,
    /// (start, end, file index, line), sorted by start.
    ranges: Vec<(u64, u64, u32, u32)>,
    /// Code inlined into a function (outermost inlined subroutines only): (start, end,
    /// file index, line of the call), sorted by start.
    inlined: Vec<(u64, u64, u32, u32)>,
}

impl Lines {
    pub fn load(d: &[u8], elf: &Elf) -> Option<Lines> {
        elf.data(d, ".debug_line")?;
        let load = |id: gimli::SectionId| -> Result<EndianSlice<'_, LittleEndian>, gimli::Error> {
            Ok(EndianSlice::new(elf.data(d, id.name()).unwrap_or(&[]), LittleEndian))
        };
        let dwarf = gimli::Dwarf::load(load).ok()?;
        let mut files: Vec<String> = Vec::new();
        let mut file_ids = std::collections::HashMap::new();
        let mut ranges = Vec::new();
        let mut inlined = Vec::new();
        let mut units = dwarf.units();
        while let Ok(Some(h)) = units.next() {
            let Ok(unit) = dwarf.unit(h) else { continue };
            let Some(prog) = unit.line_program.clone() else { continue };
            let unit_key = unit.header.offset().as_debug_info_offset().map(|o| o.0).unwrap_or(0);
            let mut file_id = |f: u64, hdr: &gimli::LineProgramHeader<EndianSlice<'_, LittleEndian>>| -> u32 {
                *file_ids.entry((unit_key, f)).or_insert_with(|| {
                    let name = hdr
                        .file(f)
                        .and_then(|fe| dwarf.attr_string(&unit, fe.path_name()).ok())
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "?".into());
                    let base = name.rsplit('/').next().unwrap_or(&name).to_string();
                    files.push(base);
                    files.len() as u32 - 1
                })
            };
            inlined_calls(&dwarf, &unit, prog.header(), &mut file_id, &mut inlined);
            let mut rows = prog.rows();
            let mut prev: Option<(u64, u64, u32)> = None; // addr, file, line
            while let Ok(Some((hdr, row))) = rows.next_row() {
                if let Some((a, f, l)) = prev {
                    if row.address() > a {
                        let id = file_id(f, hdr);
                        ranges.push((a, row.address(), id, l));
                    }
                }
                prev = if row.end_sequence() {
                    None
                } else {
                    Some((row.address(), row.file_index(), row.line().map(|l| l.get() as u32).unwrap_or(0)))
                };
            }
        }
        if ranges.is_empty() {
            return None;
        }
        ranges.sort_unstable_by_key(|r| r.0);
        inlined.sort_unstable_by_key(|r| r.0);
        Some(Lines { files, ranges, inlined })
    }

    /// `file:line` of the instruction at `a` in the function that holds it.
    pub fn find(&self, a: u64) -> Option<String> {
        if let Some(r) = covering(&self.inlined, a) {
            return Some(format!("{}:{}", self.files[r.2 as usize], r.3));
        }
        let r = covering(&self.ranges, a)?;
        Some(format!("{}:{}", self.files[r.2 as usize], r.3))
    }
}

/// The range holding `a` (ranges sorted by start and not overlapping), with a line.
fn covering(v: &[(u64, u64, u32, u32)], a: u64) -> Option<&(u64, u64, u32, u32)> {
    let i = v.partition_point(|r| r.0 <= a);
    let r = v.get(i.checked_sub(1)?)?;
    (a < r.1 && r.3 != 0).then_some(r)
}

/// The address ranges of the outermost inlined subroutines of `unit` (those not nested
/// in another inlined subroutine), each with the file and line of its call.
fn inlined_calls<'a>(
    dwarf: &gimli::Dwarf<EndianSlice<'a, LittleEndian>>,
    unit: &gimli::Unit<EndianSlice<'a, LittleEndian>>,
    hdr: &gimli::LineProgramHeader<EndianSlice<'a, LittleEndian>>,
    file_id: &mut dyn FnMut(u64, &gimli::LineProgramHeader<EndianSlice<'a, LittleEndian>>) -> u32,
    out: &mut Vec<(u64, u64, u32, u32)>,
) {
    let mut entries = unit.entries();
    let mut depth: isize = 0;
    // depth of the inlined subroutine whose subtree the walk is in
    let mut inside: Option<isize> = None;
    while let Ok(Some((delta, e))) = entries.next_dfs() {
        depth += delta;
        if inside.is_some_and(|d| depth <= d) {
            inside = None;
        }
        if e.tag() != gimli::DW_TAG_inlined_subroutine || inside.is_some() {
            continue;
        }
        inside = Some(depth);
        let value = |at: gimli::DwAt| match e.attr_value(at).ok().flatten() {
            // (gimli reads DW_AT_call_file as a file index)
            Some(gimli::AttributeValue::FileIndex(f)) => Some(f),
            Some(v) => v.udata_value(),
            None => None,
        };
        let (Some(file), Some(line)) = (value(gimli::DW_AT_call_file), value(gimli::DW_AT_call_line)) else { continue };
        if line == 0 {
            continue;
        }
        let id = file_id(file, hdr);
        if let Ok(mut rs) = dwarf.die_ranges(unit, e) {
            while let Ok(Some(r)) = rs.next() {
                if r.end > r.begin {
                    out.push((r.begin, r.end, id, line as u32));
                }
            }
        }
    }
}
