//! `file:line` from DWARF line tables (gimli), built lazily per object at report time.
use crate::elf::Elf;
use gimli::{EndianSlice, LittleEndian};

pub struct Lines {
    files: Vec<String>,
    /// (start, end, file index, line), sorted by start.
    ranges: Vec<(u64, u64, u32, u32)>,
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
        let mut units = dwarf.units();
        while let Ok(Some(h)) = units.next() {
            let Ok(unit) = dwarf.unit(h) else { continue };
            let Some(prog) = unit.line_program.clone() else { continue };
            let mut rows = prog.rows();
            let mut prev: Option<(u64, u64, u32)> = None; // addr, file, line
            while let Ok(Some((hdr, row))) = rows.next_row() {
                if let Some((a, f, l)) = prev {
                    if row.address() > a {
                        let key = (unit.header.offset().as_debug_info_offset().map(|o| o.0).unwrap_or(0), f);
                        let id = *file_ids.entry(key).or_insert_with(|| {
                            let name = hdr
                                .file(f)
                                .and_then(|fe| dwarf.attr_string(&unit, fe.path_name()).ok())
                                .map(|s| s.to_string_lossy().into_owned())
                                .unwrap_or_else(|| "?".into());
                            let base = name.rsplit('/').next().unwrap_or(&name).to_string();
                            files.push(base);
                            files.len() as u32 - 1
                        });
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
        Some(Lines { files, ranges })
    }

    pub fn find(&self, a: u64) -> Option<String> {
        let i = self.ranges.partition_point(|r| r.0 <= a);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        if a < r.1 && r.3 != 0 {
            Some(format!("{}:{}", self.files[r.2 as usize], r.3))
        } else {
            None
        }
    }
}
