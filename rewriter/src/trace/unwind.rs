//! Walking a few frames up from an allocator's entry with the images' CFI (gimli
//! over .eh_frame). At a function's entry the return address is at [rsp] and no
//! register is saved yet, so the first step needs no CFI; each later step applies the
//! caller's FDE row at its return address.

use super::images::{self, ImageFile, Mapped};
use super::sys;
use gimli::{BaseAddresses, CfaRule, EhFrame, LittleEndian, RegisterRule, UnwindContext, UnwindSection};

/// One frame: a caller, by its function's entry.
pub struct Frame {
    /// The stack pointer once this frame's function returns (its CFA); u64::MAX
    /// when its CFI is unknown.
    pub cfa: u64,
    /// Link-time entry of the function containing `pc` (from its FDE), and its image.
    pub entry: Option<(u64, usize)>,
}

fn fdes(file: &ImageFile) -> &Vec<images::Fde> {
    file.fdes.get_or_init(|| {
        let eh = EhFrame::new(&file.eh_frame, LittleEndian);
        let bases = BaseAddresses::default().set_eh_frame(file.eh_frame_addr);
        let mut v = Vec::new();
        let mut entries = eh.entries(&bases);
        let mut ctx = UnwindContext::new();
        while let Ok(Some(e)) = entries.next() {
            if let gimli::CieOrFde::Fde(partial) = e {
                if let Ok(fde) = partial.parse(EhFrame::cie_from_offset) {
                    let start = fde.initial_address();
                    let entry = fde.unwind_info_for_address(&eh, &bases, &mut ctx, start).is_ok_and(|row| at_entry(row));
                    v.push(images::Fde { start, end: start + fde.len(), offset: fde.offset(), entry });
                }
            }
        }
        v.sort_by_key(|f| (f.start, f.end));
        v
    })
}

/// Whether a row is that of a function's first instruction: the return address at
/// [rsp], nothing pushed yet. A `.cold` fragment (or any other piece of a function with
/// an FDE of its own) is jumped to with its function's frame in place: its first row
/// says so (`rsp+112` in python3.11's `Py_Main.cold`), and [rsp] there is a local.
fn at_entry(row: &gimli::UnwindTableRow<usize>) -> bool {
    let cfa = matches!(row.cfa(), CfaRule::RegisterAndOffset { register, offset: 8 } if *register == gimli::X86_64::RSP);
    let ra = matches!(row.register(gimli::X86_64::RA), RegisterRule::Offset(-8) | RegisterRule::Undefined);
    cfa && ra
}

/// The FDE covering link-time address `addr`: (function start, offset of the FDE).
pub fn fde_for(file: &ImageFile, addr: u64) -> Option<(u64, usize)> {
    let v = fdes(file);
    let i = v.partition_point(|f| f.start <= addr);
    let f = v.get(i.checked_sub(1)?)?;
    (addr < f.end).then_some((f.start, f.offset))
}

/// Whether link-time address `addr`, taken for a function's entry, is one by the unwind
/// table: false only when an FDE starts there with a frame already set up (see
/// `at_entry`). An address no FDE starts at (no table, or a symbol inside one) is
/// taken on its word: the analysis or a call said it is an entry.
pub fn is_entry(file: &ImageFile, addr: u64) -> bool {
    let v = fdes(file);
    let i = v.partition_point(|f| f.start < addr);
    v.get(i).filter(|f| f.start == addr).is_none_or(|f| f.entry)
}

/// Registers being unwound: DWARF numbering 0..16 (rax rdx rcx rbx rsi rdi rbp rsp r8–r15).
struct Regs([Option<u64>; 17]);

/// Up to `depth` frames above a function entry at which the thread stands (`rsp`
/// points to the return address).
pub fn frames(stack: &sys::Stack, maps: &[Mapped], r: &sys::Regs, depth: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut regs = Regs([None; 17]);
    for (i, v) in [r.rax, r.rdx, r.rcx, r.rbx, r.rsi, r.rdi, r.rbp, r.rsp].into_iter().enumerate() {
        regs.0[i] = Some(v);
    }
    for (i, v) in [r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15].into_iter().enumerate() {
        regs.0[8 + i] = Some(v);
    }
    let Some(mut pc) = stack.u64(r.rsp) else { return out };
    regs.0[7] = Some(r.rsp + 8);
    let mut ctx = UnwindContext::new();
    while out.len() < depth && pc != 0 {
        let Some(m) = images::find(maps, pc) else { break };
        let link = pc.wrapping_sub(m.bias);
        // A return address may sit just past a noreturn call's function: look up pc-1.
        let fde = fde_for(&m.file, link - 1);
        out.push(Frame { cfa: u64::MAX, entry: fde.map(|(start, _)| (start, m.file.id)) });
        let Some((_, off)) = fde else { break };
        match step(stack, &m.file, off, link - 1, &mut regs, &mut ctx) {
            Some(ra) => {
                pc = ra;
                if let (Some(f), Some(sp)) = (out.last_mut(), regs.0[7]) {
                    f.cfa = sp;
                }
            }
            None => break,
        }
    }
    out
}

fn step(stack: &sys::Stack, file: &ImageFile, off: usize, link_pc: u64, regs: &mut Regs, ctx: &mut UnwindContext<usize>) -> Option<u64> {
    let eh = EhFrame::new(&file.eh_frame, LittleEndian);
    let bases = BaseAddresses::default().set_eh_frame(file.eh_frame_addr);
    let fde = eh.fde_from_offset(&bases, gimli::EhFrameOffset(off), EhFrame::cie_from_offset).ok()?;
    let row = fde.unwind_info_for_address(&eh, &bases, ctx, link_pc).ok()?;
    let cfa = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => regs.0.get(register.0 as usize).copied().flatten()?.wrapping_add(*offset as u64),
        CfaRule::Expression(_) => return None,
    };
    let mut next = Regs(regs.0);
    for (reg, rule) in row.registers() {
        let i = reg.0 as usize;
        let v = match rule {
            RegisterRule::Offset(o) => stack.u64(cfa.wrapping_add(*o as u64)),
            RegisterRule::SameValue => continue,
            RegisterRule::Undefined => None,
            _ => None,
        };
        if i < 17 {
            next.0[i] = v;
        }
    }
    // x86-64: the return address column is 16.
    let ra = next.0[16].or_else(|| stack.u64(cfa.wrapping_sub(8)))?;
    next.0[7] = Some(cfa);
    *regs = next;
    Some(ra)
}
