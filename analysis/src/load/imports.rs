//! Imported functions, however the code reaches them: `.plt` and `.plt.sec`
//! stubs, `.plt.got`, `call *f@GOTPCREL(%rip)` (-fno-plt), and in `.o` files the
//! relocation on the call's displacement.

use super::{Binary, FileKind, RelTarget};
use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};
use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, RelocationFlags, RelocationTarget};
use std::collections::HashMap;

const R_X86_64_64: u32 = 1;
const R_X86_64_PC32: u32 = 2;
const R_X86_64_PLT32: u32 = 4;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;
const R_X86_64_GOTPCREL: u32 = 9;
const R_X86_64_GOTPCRELX: u32 = 41;
const R_X86_64_REX_GOTPCRELX: u32 = 42;

fn elf_type(flags: RelocationFlags) -> Option<u32> {
    match flags {
        RelocationFlags::Elf { r_type } => Some(r_type),
        _ => None,
    }
}

pub(super) fn collect(file: &object::File, bin: &mut Binary, base: &HashMap<usize, u64>) {
    if bin.kind == FileKind::Relocatable {
        collect_relocatable(file, bin, base);
        return;
    }
    if let (Some(relocs), Some(dynsyms)) = (file.dynamic_relocations(), file.dynamic_symbol_table()) {
        for (offset, rel) in relocs {
            let Some(t) = elf_type(rel.flags()) else { continue };
            if !matches!(t, R_X86_64_GLOB_DAT | R_X86_64_JUMP_SLOT | R_X86_64_64) {
                continue;
            }
            let RelocationTarget::Symbol(idx) = rel.target() else { continue };
            let Ok(sym) = dynsyms.symbol_by_index(idx) else { continue };
            if let Ok(name) = sym.name() {
                if !name.is_empty() {
                    bin.got.insert(offset, name.to_string());
                }
            }
        }
    }
    for sec in file.sections() {
        let Ok(name) = sec.name() else { continue };
        if !matches!(name, ".plt" | ".plt.sec" | ".plt.got" | ".iplt") {
            continue;
        }
        let Ok(data) = sec.data() else { continue };
        let addr = sec.address();
        let mut dec = Decoder::with_ip(64, data, addr, DecoderOptions::NONE);
        while dec.can_decode() {
            let ins = dec.decode();
            if ins.mnemonic() != Mnemonic::Jmp || ins.op0_kind() != OpKind::Memory || !ins.is_ip_rel_memory_operand() {
                continue;
            }
            let Some(target) = bin.got.get(&ins.ip_rel_memory_address()).cloned() else { continue };
            let off = (ins.ip() - addr) as usize;
            let start = if off >= 4 && data[off - 4..off] == [0xf3, 0x0f, 0x1e, 0xfa] { ins.ip() - 4 } else { ins.ip() };
            bin.stubs.insert(start, target.clone());
            bin.stubs.insert(ins.ip(), target);
        }
    }
}

fn collect_relocatable(file: &object::File, bin: &mut Binary, base: &HashMap<usize, u64>) {
    let Some(symtab) = file.symbol_table() else { return };
    for sec in file.sections() {
        let Some(&sbase) = base.get(&sec.index().0) else { continue };
        for (offset, rel) in sec.relocations() {
            let Some(t) = elf_type(rel.flags()) else { continue };
            if !matches!(
                t,
                R_X86_64_PC32 | R_X86_64_PLT32 | R_X86_64_GOTPCREL | R_X86_64_GOTPCRELX | R_X86_64_REX_GOTPCRELX
            ) {
                continue;
            }
            let RelocationTarget::Symbol(idx) = rel.target() else { continue };
            let Ok(sym) = symtab.symbol_by_index(idx) else { continue };
            let target = if sym.is_definition() || sym.kind() == object::SymbolKind::Section {
                let Some(si) = sym.section_index() else { continue };
                let Some(&tb) = base.get(&si.0) else { continue };
                // A section symbol carries the offset in the addend (minus the 4-byte field).
                let extra = if sym.kind() == object::SymbolKind::Section { rel.addend() + 4 } else { 0 };
                RelTarget::Local((tb + sym.address()).wrapping_add(extra as u64))
            } else {
                match sym.name() {
                    Ok(n) if !n.is_empty() => RelTarget::External(n.to_string()),
                    _ => continue,
                }
            };
            bin.rel_targets.insert(sbase + offset, target);
        }
    }
}
