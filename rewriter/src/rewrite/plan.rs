//! Per-function decisions: where the launch pad goes, what the trampoline must do
//! (stack arguments to copy, registers to save), or why the function is refused.

use super::cfi::{EhFrameIndex, Row};
use super::elf::InputElf;
use super::pad::{self, Pad};
use allocsite_analysis::{AllocFn, Classification};
use iced_x86::{Decoder, DecoderOptions, FlowControl, Mnemonic, OpKind, Register};
use object::elf;
use std::collections::HashMap;

/// A function that will be hooked.
pub struct Hook<'c> {
    pub f: &'c AllocFn,
    pub name: String,
    pub pad: Pad,
    /// 8-byte stack argument words to copy below the trampoline frame.
    pub stack_words: u32,
    /// The function's original unwind rows `(start, end, row)`; empty without an FDE.
    pub rows: Vec<(u64, u64, Option<Row>)>,
    /// Call-site mode (the entry cannot hold a launch pad): `(address, end)` of every
    /// direct `call`/`jmp rel32` to the function; the classified ones are retargeted to
    /// the trampoline (`callsites`), which calls the untouched original.
    pub call_sites: Vec<(u64, u64)>,
    /// Why the entry could not hold a launch pad (call-site mode only).
    pub why_not_pad: Option<String>,
    /// Call-site mode chosen although a pad was possible: every call of the function is
    /// a direct call the rewriter can see (caller-side instrumentation, issue 14).
    pub caller_side: bool,
    /// An import trampoline (hook ABI v3 flag IMPORT) whose callee is reached through
    /// this GOT slot (`call [rip+slot]`) instead of `pad.entry` (its PLT stub).
    pub got: Option<u64>,
    /// An imported function hooked at its call sites (`pad.entry` is its PLT stub or 0).
    pub import: bool,
}

impl Hook<'_> {
    pub fn patches_entry(&self) -> bool {
        self.why_not_pad.is_none()
    }
    /// A call-site-mode trampoline of a local function: calls reach it instead of the
    /// function, so gdb must step through it (`.plt.allocsite`, `dynamic::Stepper`).
    pub fn steps_through(&self) -> bool {
        !self.patches_entry() && !self.import
    }
}

pub enum Outcome<'c> {
    Hook(Hook<'c>),
    Refused { name: String, address: u64, reason: String },
}

/// Most 8-byte words of stack arguments a trampoline copies.
const MAX_STACK_WORDS: u32 = 32;

/// Plan every function of `cls` defined in the binary; constructors only with `ctors`
/// (`rewrite --ctors`: they count for the outermost site).
/// `caller_side` (the default; `rewrite --entry-hooks` turns it off; issue 14): a
/// function whose every way in is a direct `call/jmp rel32` from outside it (not
/// exported, its address never taken) keeps its entry and gets its classified call
/// sites retargeted to its trampoline (call-site mode); pass-through calls then cost
/// nothing and the function's own code runs unpatched. gdb's `step` goes through the
/// trampoline into the function as through a PLT stub (`mod.rs`, `STEP_SECTION`).
pub fn plan<'c>(elf: &InputElf, eh: &EhFrameIndex, cls: &'c Classification, ctors: bool, caller_side: bool) -> Vec<Outcome<'c>> {
    // Every place where other code may start: symbols and FDEs in executable code.
    let mut starts: Vec<u64> = elf
        .symbols
        .iter()
        .filter(|s| s.st_type != elf::STT_OBJECT && s.st_type != elf::STT_TLS && elf.is_executable_addr(s.value))
        .map(|s| s.value)
        .chain(eh.fdes.iter().map(|f| f.start))
        .chain(elf.shdrs.iter().filter(|s| s.sh_flags & elf::SHF_EXECINSTR as u64 != 0).map(|s| s.sh_addr + s.sh_size))
        .collect();
    starts.sort_unstable();
    starts.dedup();

    let mut out = Vec::new();
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut planned = Vec::new();
    for f in cls.functions.iter().filter(|f| !f.external && (ctors || f.kind.is_allocation())) {
        let entry = f.address.0;
        let name = if f.name.is_empty() { format!("sub_{entry:x}") } else { f.name.clone() };
        if let Some((_, other)) = seen.iter().find(|(a, _)| *a == entry) {
            out.push(Outcome::Refused { name, address: entry, reason: format!("same code as {other}, hooked once under that name") });
            continue;
        }
        seen.push((entry, name.clone()));
        match plan_one(elf, eh, &starts, f, entry) {
            Ok((pad, stack_words, rows, fn_end)) => planned.push((f, name, pad, stack_words, rows, fn_end)),
            Err(reason) => out.push(Outcome::Refused { name, address: entry, reason }),
        }
    }
    // One scan of the code and data for every planned function's ways in.
    let extents: Vec<(u64, u64)> = planned.iter().map(|p| (p.0.address.0, p.5)).collect();
    let mut ways = ways_in(elf, &extents);
    for (f, name, pad, stack_words, rows, _) in planned {
        let entry = f.address.0;
        let hook = Hook { f, name, pad: Pad::none(entry), stack_words, rows, call_sites: Vec::new(), why_not_pad: None, caller_side: false, got: None, import: false };
        let w = ways.remove(&entry).unwrap_or_else(|| WaysIn::blocked("not scanned".into()));
        out.push(match pad {
            Ok(_) if caller_side && w.blocked.is_none() && !w.from_inside && !w.sites.is_empty() => Outcome::Hook(Hook {
                call_sites: w.sites.clone(),
                why_not_pad: Some("every call of it is a direct call from outside it".into()),
                caller_side: true,
                ..hook
            }),
            Ok(pad) => Outcome::Hook(Hook { pad, ..hook }),
            Err(why) => call_site_mode(hook, &w, why),
        });
        ways.insert(entry, w);
    }
    refuse_inward_branches(elf, eh, &ways, &mut out);
    out
}

type Planned = (Result<Pad, String>, u32, Vec<(u64, u64, Option<Row>)>, u64);

fn plan_one(elf: &InputElf, eh: &EhFrameIndex, starts: &[u64], f: &AllocFn, entry: u64) -> Result<Planned, String> {
    if !elf.is_executable_addr(entry) {
        return Err(format!("{entry:#x} is not in executable code"));
    }
    let fde = eh.covering(entry).filter(|d| d.start == entry);
    let sym_size = elf.symbols.iter().find(|s| s.value == entry && s.size > 0 && s.st_type == elf::STT_FUNC).map(|s| s.size);
    let size = f
        .code_size
        .filter(|&n| n > 0)
        .or(sym_size)
        .or(fde.map(|d| d.len))
        .ok_or_else(|| "unknown code extent (no size, symbol or FDE)".to_string())?;
    let fn_end = entry.checked_add(size).filter(|_| size < 1 << 32).ok_or_else(|| format!("implausible code size {size}"))?;
    let next_start = starts.iter().copied().find(|&s| s > entry).unwrap_or(fn_end);
    let rows = match fde {
        Some(d) => eh.rows(d)?,
        None => Vec::new(),
    };
    let stack_words = stack_arg_words(elf, f, entry, fn_end, &rows)?;
    let pad = pad::decode(elf, entry, fn_end, next_start).and_then(|pad| {
        match starts.iter().find(|&&s| s > pad.start && s < pad.start + pad.len) {
            Some(s) => Err(format!(
                "{} starts at {s:#x}, inside the launch pad",
                elf.symbols.iter().find(|x| x.value == *s).map(|x| format!("symbol {}", x.name)).unwrap_or_else(|| "an FDE".into())
            )),
            None => Ok(pad),
        }
    });
    Ok((pad, stack_words, rows, fn_end))
}

/// Fall back to retargeting the direct calls of a function whose entry cannot hold a
/// launch pad; refused when anything else could reach it (address taken, rel8
/// branches, exported to other objects).
fn call_site_mode<'c>(hook: Hook<'c>, w: &WaysIn, why: String) -> Outcome<'c> {
    let entry = hook.pad.entry;
    let blocked = w.blocked.clone().or_else(|| w.sites.is_empty().then(|| "no direct calls to redirect".to_string()));
    match blocked {
        None => Outcome::Hook(Hook { call_sites: w.sites.clone(), why_not_pad: Some(why), ..hook }),
        Some(e) => Outcome::Refused { name: hook.name, address: entry, reason: format!("{why}; and its call sites cannot all be patched: {e}") },
    }
}

/// How a function can be reached: every direct `call rel32`/`jmp rel32` to its entry
/// from outside it, or why not all callers can be redirected (`blocked`).
pub struct WaysIn {
    pub sites: Vec<(u64, u64)>,
    pub blocked: Option<String>,
    /// A branch from inside the function to its own entry (recursion, a loop back to
    /// the entry): call-site mode would not see it as a call.
    pub from_inside: bool,
}

impl WaysIn {
    fn blocked(why: String) -> Self {
        WaysIn { sites: Vec::new(), blocked: Some(why), from_inside: false }
    }
}

/// `WaysIn` of each function `(entry, end)`, in one pass over the code and the data.
fn ways_in(elf: &InputElf, fns: &[(u64, u64)]) -> HashMap<u64, WaysIn> {
    let mut out: HashMap<u64, WaysIn> = fns.iter().map(|&(e, _)| (e, WaysIn { sites: Vec::new(), blocked: None, from_inside: false })).collect();
    let ends: HashMap<u64, u64> = fns.iter().copied().collect();
    let block = |out: &mut HashMap<u64, WaysIn>, e: u64, why: String| {
        if let Some(w) = out.get_mut(&e) {
            w.blocked.get_or_insert(why);
        }
    };
    if elf.dyn_val(elf::DT_SYMTAB).is_some() {
        if let Some((_, s)) = elf.section(".dynsym") {
            for e in elf.section_data(s).chunks_exact(24) {
                let shndx = super::elf::bytes::u16_at(e, 6);
                let bind = e[4] >> 4;
                if shndx != 0 && bind != elf::STB_LOCAL {
                    block(&mut out, super::elf::bytes::u64_at(e, 8), "it is exported, so other objects may call it".into());
                }
            }
        }
    }
    for s in elf.shdrs.iter().filter(|s| s.sh_flags & elf::SHF_EXECINSTR as u64 != 0 && s.sh_type == elf::SHT_PROGBITS) {
        let mut dec = Decoder::with_ip(64, elf.section_data(s), s.sh_addr, DecoderOptions::NONE);
        for i in &mut dec {
            if i.is_invalid() {
                continue;
            }
            if matches!(i.op0_kind(), OpKind::NearBranch64) {
                let t = i.near_branch_target();
                if let Some(&end) = ends.get(&t) {
                    if i.ip() >= t && i.ip() < end {
                        if let Some(w) = out.get_mut(&t) {
                            w.from_inside = true;
                        }
                    } else {
                        match i.code() {
                            iced_x86::Code::Call_rel32_64 | iced_x86::Code::Jmp_rel32_64 => {
                                if let Some(w) = out.get_mut(&t) {
                                    w.sites.push((i.ip(), i.next_ip()));
                                }
                            }
                            _ => block(&mut out, t, format!("`{}` at {:#x} reaches it with a branch that cannot be retargeted", pad::fmt(&i), i.ip())),
                        }
                    }
                }
            }
            if i.is_ip_rel_memory_operand() && ends.contains_key(&i.ip_rel_memory_address()) {
                block(&mut out, i.ip_rel_memory_address(), format!("its address is taken at {:#x}", i.ip()));
            }
            for k in 0..i.op_count() {
                if matches!(i.op_kind(k), OpKind::Immediate32 | OpKind::Immediate32to64 | OpKind::Immediate64) && ends.contains_key(&i.immediate(k)) {
                    block(&mut out, i.immediate(k), format!("its address is an immediate at {:#x}", i.ip()));
                }
            }
        }
    }
    for s in elf.shdrs.iter().filter(|s| s.sh_flags & elf::SHF_ALLOC as u64 != 0 && s.sh_flags & elf::SHF_EXECINSTR as u64 == 0) {
        let d = elf.section_data(s);
        if s.sh_type == elf::SHT_RELA {
            for r in d.chunks_exact(24) {
                let a = super::elf::bytes::u64_at(r, 16);
                if ends.contains_key(&a) {
                    block(&mut out, a, format!("a relocation in {} refers to it", s.name));
                }
            }
        } else if s.name != ".eh_frame" && s.name != ".eh_frame_hdr" && s.sh_type != elf::SHT_NOBITS {
            for k in (0..d.len().saturating_sub(7)).step_by(8) {
                let a = super::elf::bytes::u64_at(d, k);
                if ends.contains_key(&a) {
                    block(&mut out, a, format!("its address is stored in {} at {:#x}", s.name, s.sh_addr + k as u64));
                }
            }
        }
    }
    out
}

/// Extent of the function at `a` (symbol size, else FDE).
fn extent(elf: &InputElf, eh: &EhFrameIndex, a: u64) -> Option<u64> {
    elf.symbols
        .iter()
        .find(|s| s.value == a && s.size > 0 && s.st_type == elf::STT_FUNC)
        .map(|s| a + s.size)
        .or_else(|| eh.covering(a).filter(|f| f.start == a).map(|f| f.start + f.len))
}

fn row_at(rows: &[(u64, u64, Option<Row>)], a: u64) -> Option<&Row> {
    rows.iter().find(|(s, e, _)| a >= *s && a < *e).and_then(|r| r.2.as_ref())
}

fn dwarf_reg(r: Register) -> Option<u16> {
    match r {
        Register::RSP => Some(gimli::X86_64::RSP.0),
        Register::RBP => Some(gimli::X86_64::RBP.0),
        _ => None,
    }
}

/// How many 8-byte words of stack arguments the function reads: the larger of what the
/// classification's argument count implies and what the code reads above its return
/// address (memory operands based on the CFA register, located through the CFI).
fn stack_arg_words(elf: &InputElf, f: &AllocFn, entry: u64, fn_end: u64, rows: &[(u64, u64, Option<Row>)]) -> Result<u32, String> {
    let mut words = f.nargs.map_or(0, |n| (n as u32).saturating_sub(6));
    if rows.is_empty() {
        if f.nargs.is_none() {
            return Err("no unwind information to tell whether it takes stack arguments, and no argument count".into());
        }
        return Ok(words);
    }
    let code = elf.bytes_at(entry, fn_end - entry).ok_or("function code is not in the file")?;
    let mut dec = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut max_end: i64 = 0;
    for i in &mut dec {
        if i.is_invalid() {
            return Err(format!("cannot decode the instruction at {:#x}", i.ip()));
        }
        if !(0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Memory) {
            continue;
        }
        let Some(base) = dwarf_reg(i.memory_base()) else { continue };
        let Some(row) = row_at(rows, i.ip()) else { continue };
        if row.cfa_reg != base {
            continue;
        }
        let rel = i.memory_displacement64() as i64 - row.cfa_off;
        if rel < 0 {
            continue;
        }
        if i.memory_index() != Register::None || i.mnemonic() == Mnemonic::Lea {
            return Err(format!(
                "takes the address of its stack arguments at {:#x} (variadic or indexed); cannot copy them safely",
                i.ip()
            ));
        }
        max_end = max_end.max(rel + i.memory_size().size().max(1) as i64);
    }
    words = words.max(((max_end + 7) / 8) as u32);
    if words > MAX_STACK_WORDS {
        return Err(format!("{} bytes of stack arguments (more than {})", words * 8, MAX_STACK_WORDS * 8));
    }
    Ok(words)
}

/// Refuse every planned pad whose interior (the bytes after its first one) is the
/// target of a branch, a RIP-relative reference or a relative relocation anywhere.
fn refuse_inward_branches(elf: &InputElf, eh: &EhFrameIndex, ways: &HashMap<u64, WaysIn>, out: &mut [Outcome]) {
    let mut interiors: Vec<(u64, u64, usize)> = out
        .iter()
        .enumerate()
        .filter_map(|(k, o)| match o {
            Outcome::Hook(h) if h.pad.len > 0 => Some((h.pad.start + 1, h.pad.start + h.pad.len, k)),
            _ => None,
        })
        .collect();
    if interiors.is_empty() {
        return;
    }
    interiors.sort();
    let hit = |t: u64| -> Option<usize> {
        let i = interiors.partition_point(|r| r.0 <= t);
        let r = interiors.get(i.checked_sub(1)?)?;
        (t < r.1).then_some(r.2)
    };
    let mut reasons: Vec<(usize, String)> = Vec::new();
    for s in elf.shdrs.iter().filter(|s| s.sh_flags & elf::SHF_EXECINSTR as u64 != 0 && s.sh_type == elf::SHT_PROGBITS) {
        let code = elf.section_data(s);
        let mut dec = Decoder::with_ip(64, code, s.sh_addr, DecoderOptions::NONE);
        for i in &mut dec {
            if i.is_invalid() {
                continue;
            }
            let mut targets = [None, None];
            if matches!(
                i.flow_control(),
                FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch | FlowControl::Call | FlowControl::XbeginXabortXend
            ) && matches!(i.op0_kind(), OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16)
            {
                targets[0] = Some(i.near_branch_target());
            }
            if i.is_ip_rel_memory_operand() {
                targets[1] = Some(i.ip_rel_memory_address());
            }
            for t in targets.into_iter().flatten() {
                if let Some(k) = hit(t) {
                    reasons.push((k, format!("instruction `{}` at {:#x} refers to {t:#x}, inside the launch pad", pad::fmt(&i), i.ip())));
                }
            }
        }
    }
    // Relative relocations (function pointers in PIE data, landing pads are not among these).
    for s in elf.shdrs.iter().filter(|s| s.sh_type == elf::SHT_RELA && s.sh_flags & elf::SHF_ALLOC as u64 != 0) {
        for r in elf.section_data(s).chunks_exact(24) {
            let ty = super::elf::bytes::u64_at(r, 8) as u32;
            if ty == elf::R_X86_64_RELATIVE || ty == elf::R_X86_64_IRELATIVE {
                let addend = super::elf::bytes::u64_at(r, 16);
                if let Some(k) = hit(addend) {
                    reasons.push((k, format!("relocation at {:#x} points at {addend:#x}, inside the launch pad", super::elf::bytes::u64_at(r, 0))));
                }
            }
        }
    }
    for (k, reason) in reasons {
        if matches!(&out[k], Outcome::Hook(h) if h.patches_entry()) {
            let placeholder = Outcome::Refused { name: String::new(), address: 0, reason: String::new() };
            if let Outcome::Hook(h) = std::mem::replace(&mut out[k], placeholder) {
                let entry = h.pad.entry;
                let end = extent(elf, eh, entry).unwrap_or(h.pad.start + h.pad.len).max(h.pad.start + h.pad.len);
                let w = match ways.get(&entry) {
                    Some(w) => WaysIn { sites: w.sites.clone(), blocked: w.blocked.clone(), from_inside: w.from_inside },
                    None => ways_in(elf, &[(entry, end)]).remove(&entry).unwrap_or_else(|| WaysIn::blocked("not scanned".into())),
                };
                out[k] = call_site_mode(Hook { pad: Pad::none(entry), ..h }, &w, reason);
            }
        }
    }
}
