//! Call-frame information: read the input's `.eh_frame` (FDE ranges and rows for the
//! displaced pad instructions), write FDEs for the new code (`.eh_frame` format for
//! libgcc through the new `.eh_frame_hdr`, `.debug_frame` format for gdb) and build
//! the new `.eh_frame_hdr` that lists every FDE of the object.

use super::elf::{bytes, InputElf};
use gimli::write::{Address, CallFrameInstruction, CommonInformationEntry, FrameDescriptionEntry, FrameTable};
use gimli::{EndianSlice, LittleEndian, UnwindSection};

type R<'a> = EndianSlice<'a, LittleEndian>;

/// The CFA and saved-register rules at one point (only the rule kinds gcc emits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub cfa_reg: u16,
    pub cfa_off: i64,
    /// Registers saved at CFA + offset, sorted by register number (RA excluded).
    pub saved: Vec<(u16, i64)>,
}

impl Row {
    pub fn entry() -> Self {
        Row { cfa_reg: gimli::X86_64::RSP.0, cfa_off: 8, saved: Vec::new() }
    }
}

/// One FDE of the input.
pub struct OldFde<'a> {
    pub start: u64,
    pub len: u64,
    /// Address of the FDE record itself (for `.eh_frame_hdr`).
    pub record: u64,
    fde: gimli::FrameDescriptionEntry<R<'a>>,
}

/// The input's `.eh_frame`, indexed by initial location.
pub struct EhFrameIndex<'a> {
    section: gimli::EhFrame<R<'a>>,
    bases: gimli::BaseAddresses,
    /// Sorted by `start`.
    pub fdes: Vec<OldFde<'a>>,
    /// Address of the section (`eh_frame_ptr` of the new header).
    pub addr: u64,
}

impl<'a> EhFrameIndex<'a> {
    pub fn read(elf: &InputElf<'a>) -> Result<Self, String> {
        let (data, addr) = match elf.section(".eh_frame") {
            Some((_, s)) => (elf.section_data(s), s.sh_addr),
            None => (&[][..], 0),
        };
        let section = gimli::EhFrame::new(data, LittleEndian);
        let mut bases = gimli::BaseAddresses::default().set_eh_frame(addr);
        if let Some((_, s)) = elf.section(".eh_frame_hdr") {
            bases = bases.set_eh_frame_hdr(s.sh_addr);
        }
        if let Some((_, s)) = elf.section(".text") {
            bases = bases.set_text(s.sh_addr);
        }
        let mut fdes = Vec::new();
        let mut entries = section.entries(&bases);
        loop {
            match entries.next() {
                Ok(None) => break,
                Ok(Some(gimli::CieOrFde::Cie(_))) => {}
                Ok(Some(gimli::CieOrFde::Fde(partial))) => {
                    let fde = partial
                        .parse(gimli::EhFrame::cie_from_offset)
                        .map_err(|e| format!("bad .eh_frame FDE: {e}"))?;
                    let record = addr + fde.offset() as u64;
                    fdes.push(OldFde { start: fde.initial_address(), len: fde.len(), record, fde });
                }
                Err(e) => return Err(format!("bad .eh_frame: {e}")),
            }
        }
        fdes.sort_by_key(|f| f.start);
        Ok(EhFrameIndex { section, bases, fdes, addr })
    }

    /// The FDE covering address `a`.
    pub fn covering(&self, a: u64) -> Option<&OldFde<'a>> {
        let i = self.fdes.partition_point(|f| f.start <= a);
        let f = self.fdes.get(i.checked_sub(1)?)?;
        (a < f.start + f.len).then_some(f)
    }

    /// The unwind rows of an FDE: `(start, end, row)`; `None` for a CFA rule we do not model.
    pub fn rows(&self, fde: &OldFde<'a>) -> Result<Vec<(u64, u64, Option<Row>)>, String> {
        let mut ctx = Box::new(gimli::UnwindContext::new());
        let mut table = fde
            .fde
            .rows(&self.section, &self.bases, &mut ctx)
            .map_err(|e| format!("bad CFI at {:#x}: {e}", fde.start))?;
        let mut out = Vec::new();
        while let Some(row) = table.next_row().map_err(|e| format!("bad CFI at {:#x}: {e}", fde.start))? {
            let r = match row.cfa() {
                gimli::CfaRule::RegisterAndOffset { register, offset } => {
                    let mut saved = Vec::new();
                    let mut ok = true;
                    for (reg, rule) in row.registers() {
                        match rule {
                            gimli::RegisterRule::Offset(o) => {
                                if *reg != gimli::X86_64::RA || *o != -8 {
                                    saved.push((reg.0, *o));
                                }
                            }
                            gimli::RegisterRule::SameValue | gimli::RegisterRule::Undefined => {}
                            _ => ok = false,
                        }
                    }
                    saved.sort();
                    ok.then_some(Row { cfa_reg: register.0, cfa_off: *offset, saved })
                }
                _ => None,
            };
            out.push((row.start_address(), row.end_address(), r));
        }
        Ok(out)
    }
}

/// Unwind rows of one new code range: `(offset, row)` sorted by offset, first at 0.
pub struct NewFde {
    pub start: u64,
    pub len: u32,
    pub rows: Vec<(u32, Row)>,
}

fn cie(encoding: gimli::Encoding, eh: bool) -> CommonInformationEntry {
    let mut cie = CommonInformationEntry::new(encoding, 1, -8, gimli::X86_64::RA);
    if eh {
        cie.fde_address_encoding = gimli::DW_EH_PE_pcrel | gimli::DW_EH_PE_sdata4;
    }
    cie.add_instruction(CallFrameInstruction::Cfa(gimli::X86_64::RSP, 8));
    cie.add_instruction(CallFrameInstruction::Offset(gimli::X86_64::RA, -8));
    cie
}

fn fde_instructions(f: &NewFde, base: u64) -> FrameDescriptionEntry {
    let mut fde = FrameDescriptionEntry::new(Address::Constant(base), f.len);
    let mut prev = Row::entry();
    for (off, row) in &f.rows {
        if *row == prev {
            continue;
        }
        if row.cfa_reg != prev.cfa_reg {
            fde.add_instruction(*off, CallFrameInstruction::Cfa(gimli::Register(row.cfa_reg), row.cfa_off as i32));
        } else if row.cfa_off != prev.cfa_off {
            fde.add_instruction(*off, CallFrameInstruction::CfaOffset(row.cfa_off as i32));
        }
        for (reg, o) in &row.saved {
            if !prev.saved.contains(&(*reg, *o)) {
                fde.add_instruction(*off, CallFrameInstruction::Offset(gimli::Register(*reg), *o as i32));
            }
        }
        for (reg, _) in &prev.saved {
            if !row.saved.iter().any(|(r, _)| r == reg) {
                fde.add_instruction(*off, CallFrameInstruction::Restore(gimli::Register(*reg)));
            }
        }
        prev = row.clone();
    }
    fde
}

/// `.eh_frame`-format bytes (own CIE, pcrel|sdata4 addresses, zero terminator) placed at
/// `section_addr`, and the address of each FDE record in the same order as `fdes`.
pub fn eh_frame(fdes: &[NewFde], section_addr: u64) -> Result<(Vec<u8>, Vec<u64>), String> {
    let encoding = gimli::Encoding { format: gimli::Format::Dwarf32, version: 1, address_size: 8 };
    let mut table = FrameTable::default();
    let cie_id = table.add_cie(cie(encoding, true));
    for f in fdes {
        // pcrel: gimli subtracts the offset inside the section, so pass section-relative addresses.
        table.add_fde(cie_id, fde_instructions(f, f.start.wrapping_sub(section_addr)));
    }
    let mut w = gimli::write::EhFrame(gimli::write::EndianVec::new(LittleEndian));
    table.write_eh_frame(&mut w).map_err(|e| format!("writing FDEs: {e}"))?;
    let mut out = w.0.into_vec();
    out.extend_from_slice(&[0, 0, 0, 0]);
    // Read back where each FDE record landed.
    let sec = gimli::EhFrame::new(&out, LittleEndian);
    let bases = gimli::BaseAddresses::default().set_eh_frame(section_addr);
    let mut entries = sec.entries(&bases);
    let mut records = Vec::new();
    while let Some(e) = entries.next().map_err(|e| format!("re-reading FDEs: {e}"))? {
        if let gimli::CieOrFde::Fde(p) = e {
            let fde = p.parse(gimli::EhFrame::cie_from_offset).map_err(|e| format!("re-reading FDEs: {e}"))?;
            records.push((fde.initial_address(), section_addr + fde.offset() as u64));
        }
    }
    if records.len() != fdes.len() || records.iter().zip(fdes).any(|(r, f)| r.0 != f.start) {
        return Err("internal error: written FDEs do not read back".into());
    }
    Ok((out, records.into_iter().map(|r| r.1).collect()))
}

/// `.debug_frame` bytes for the new code (absolute addresses), for gdb.
pub fn debug_frame(fdes: &[NewFde]) -> Result<Vec<u8>, String> {
    let encoding = gimli::Encoding { format: gimli::Format::Dwarf32, version: 1, address_size: 8 };
    let mut table = FrameTable::default();
    let cie_id = table.add_cie(cie(encoding, false));
    for f in fdes {
        table.add_fde(cie_id, fde_instructions(f, f.start));
    }
    let mut w = gimli::write::DebugFrame(gimli::write::EndianVec::new(LittleEndian));
    table.write_debug_frame(&mut w).map_err(|e| format!("writing .debug_frame: {e}"))?;
    Ok(w.0.into_vec())
}

/// A new `.eh_frame_hdr` at `hdr_addr` listing `(initial location, FDE record address)`.
pub fn eh_frame_hdr(hdr_addr: u64, eh_frame_addr: u64, mut table: Vec<(u64, u64)>) -> Result<Vec<u8>, String> {
    table.sort();
    table.dedup_by_key(|e| e.0);
    let rel = |a: u64, base: u64| -> Result<u32, String> {
        let d = a.wrapping_sub(base) as i64;
        i32::try_from(d).map(|v| v as u32).map_err(|_| format!("address {a:#x} too far from .eh_frame_hdr"))
    };
    let mut out = vec![1u8, 0x1b, 0x03, 0x3b];
    bytes::put_u32(&mut out, rel(eh_frame_addr, hdr_addr + 4)?);
    bytes::put_u32(&mut out, table.len() as u32);
    for (loc, rec) in table {
        bytes::put_u32(&mut out, rel(loc, hdr_addr)?);
        bytes::put_u32(&mut out, rel(rec, hdr_addr)?);
    }
    Ok(out)
}
