//! Writing the output: the input's bytes (with launch pads patched), the new regions,
//! then the non-allocated tail — `.debug_frame` for the trampolines, extended
//! `.symtab`/`.strtab`, `.shstrtab` — and a section header table that describes every
//! moved or added piece.

use super::elf::bytes::{pad_to, put_u16, put_u32, put_u64, set_u16, set_u64, u32_at};
use super::elf::{InputElf, Shdr};
use object::elf;

/// A dynamic table that now lives at a new place (its section header follows it).
pub struct Moved {
    pub sh_type: u32,
    pub old_addr: u64,
    pub addr: u64,
    pub off: u64,
    pub size: u64,
}

/// A new allocated section.
pub struct NewSection {
    pub name: &'static str,
    pub sh_type: u32,
    pub flags: u64,
    pub addr: u64,
    pub off: u64,
    pub size: u64,
    pub align: u64,
}

/// A `.symtab` entry for new code (or a new name for old code).
pub struct NewSymbol {
    pub name: String,
    pub addr: u64,
    pub size: u64,
    /// Name of the section holding it.
    pub section: String,
    /// STB_GLOBAL instead of STB_LOCAL: the callee names gdb resolves its trampoline
    /// symbols to (`steps`) must be global (gdb's `mst_text`).
    pub global: bool,
}

pub struct Tail<'a> {
    pub moved: Vec<Moved>,
    pub sections: Vec<NewSection>,
    pub debug_frame: Option<Vec<u8>>,
    /// Non-allocated sections with new contents: the input's section of that name is
    /// repointed at them, or a new one is added.
    pub debug: Vec<(&'static str, Vec<u8>)>,
    pub symbols: Vec<NewSymbol>,
    pub phoff: u64,
    pub phnum: usize,
    /// Where the kept input ends (`layout::kept_prefix`).
    pub cut: u64,
    /// The header-like sections moved to make room for the program headers.
    pub shift: Option<super::front::Shift>,
    pub elf: &'a InputElf<'a>,
}

fn sym_bytes(out: &mut Vec<u8>, name: u32, info: u8, shndx: u16, value: u64, size: u64) {
    put_u32(out, name);
    out.push(info);
    out.push(0);
    put_u16(out, shndx);
    put_u64(out, value);
    put_u64(out, size);
}

pub fn finish(mut file: Vec<u8>, t: Tail) -> Result<Vec<u8>, String> {
    let elf = t.elf;
    let mut shdrs: Vec<Shdr> = elf.shdrs.clone();
    // (section index, old address, new address, new size) for symbol values.
    let mut remap: Vec<(usize, u64, u64, u64)> = Vec::new();
    for m in &t.moved {
        if let Some((i, s)) = shdrs
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.sh_type == m.sh_type && s.sh_addr == m.old_addr && s.sh_flags & elf::SHF_ALLOC as u64 != 0)
        {
            remap.push((i, m.old_addr, m.addr, m.size));
            s.sh_addr = m.addr;
            s.sh_offset = m.off;
            s.sh_size = m.size;
        }
    }
    let mut new_names: Vec<(usize, String)> = Vec::new();
    // The old copies stay in their segments, described by `.allocsite.orig<name>`
    // sections: tools that rebuild segments from sections (strip, objcopy) keep them.
    for &(i, ..) in &remap {
        let old = &elf.shdrs[i];
        new_names.push((shdrs.len(), format!(".allocsite.orig{}", old.name)));
        shdrs.push(Shdr {
            name: String::new(),
            sh_name: 0,
            sh_type: elf::SHT_PROGBITS,
            sh_flags: old.sh_flags & !(elf::SHF_INFO_LINK as u64),
            sh_addr: old.sh_addr,
            sh_offset: old.sh_offset,
            sh_size: old.sh_size,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: old.sh_addralign,
            sh_entsize: 0,
        });
    }
    // Everything still in the moved block (including the `.allocsite.orig` copies just
    // described) now lives in its copy.
    if let Some(sh) = &t.shift {
        for (i, s) in shdrs.iter_mut().enumerate() {
            if s.sh_flags & elf::SHF_ALLOC as u64 != 0 && s.sh_type != elf::SHT_NOBITS && sh.moves(s.sh_addr) {
                remap.push((i, s.sh_addr, sh.addr(s.sh_addr), s.sh_size));
                s.sh_offset = sh.offset(s.sh_addr);
                s.sh_addr = sh.addr(s.sh_addr);
            }
        }
    }
    for n in &t.sections {
        new_names.push((shdrs.len(), n.name.to_string()));
        shdrs.push(Shdr {
            name: n.name.into(),
            sh_name: 0,
            sh_type: n.sh_type,
            sh_flags: n.flags,
            sh_addr: n.addr,
            sh_offset: n.off,
            sh_size: n.size,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: n.align,
            sh_entsize: 0,
        });
    }
    // The non-allocated sections past the kept prefix, except those written below
    // (`.symtab`, its strings, `.shstrtab`, replaced debug sections): copied in order.
    let symtab = elf.shdrs.iter().position(|s| s.sh_type == elf::SHT_SYMTAB);
    let symstr = symtab.map(|i| elf.shdrs[i].sh_link as usize);
    let mut tail: Vec<usize> = (1..elf.shdrs.len())
        .filter(|&i| {
            let s = &elf.shdrs[i];
            s.sh_flags & elf::SHF_ALLOC as u64 == 0
                && s.sh_type != elf::SHT_NOBITS
                && s.sh_offset >= t.cut
                && i != elf.shstrndx
                && Some(i) != symtab
                && Some(i) != symstr
                && !t.debug.iter().any(|(n, _)| *n == s.name)
        })
        .collect();
    tail.sort_by_key(|&i| elf.shdrs[i].sh_offset);
    for i in tail {
        let s = &elf.shdrs[i];
        pad_to(&mut file, s.sh_addralign.clamp(1, 64) as usize, 0);
        shdrs[i].sh_offset = file.len() as u64;
        file.extend_from_slice(elf.section_data(s));
    }
    if let Some(df) = &t.debug_frame {
        pad_to(&mut file, 8, 0);
        new_names.push((shdrs.len(), ".debug_frame".into()));
        shdrs.push(Shdr {
            name: ".debug_frame".into(),
            sh_name: 0,
            sh_type: elf::SHT_PROGBITS,
            sh_flags: 0,
            sh_addr: 0,
            sh_offset: file.len() as u64,
            sh_size: df.len() as u64,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: 8,
            sh_entsize: 0,
        });
        file.extend_from_slice(df);
    }

    for (name, bytes) in &t.debug {
        pad_to(&mut file, 8, 0);
        let at = file.len() as u64;
        file.extend_from_slice(bytes);
        match shdrs.iter_mut().find(|s| s.name == *name && s.sh_flags & elf::SHF_ALLOC as u64 == 0) {
            Some(s) => {
                s.sh_offset = at;
                s.sh_size = bytes.len() as u64;
            }
            None => {
                new_names.push((shdrs.len(), name.to_string()));
                shdrs.push(Shdr {
                    name: name.to_string(),
                    sh_name: 0,
                    sh_type: elf::SHT_PROGBITS,
                    sh_flags: 0,
                    sh_addr: 0,
                    sh_offset: at,
                    sh_size: bytes.len() as u64,
                    sh_link: 0,
                    sh_info: 0,
                    sh_addralign: 1,
                    sh_entsize: 0,
                });
            }
        }
    }

    // .symtab / .strtab: copy, insert the new local FUNC symbols after the old locals.
    if !t.symbols.is_empty() || symtab.is_some() {
        let (symtab_idx, strtab_idx) = match symtab {
            Some(i) => (i, shdrs[i].sh_link as usize),
            None => {
                let st = shdrs.len();
                new_names.push((st, ".symtab".into()));
                new_names.push((st + 1, ".strtab".into()));
                for (name, ty, align, ent) in [(".symtab", elf::SHT_SYMTAB, 8, 24), (".strtab", elf::SHT_STRTAB, 1, 0)] {
                    shdrs.push(Shdr {
                        name: name.into(),
                        sh_name: 0,
                        sh_type: ty,
                        sh_flags: 0,
                        sh_addr: 0,
                        sh_offset: 0,
                        sh_size: 0,
                        sh_link: 0,
                        sh_info: 0,
                        sh_addralign: align,
                        sh_entsize: ent,
                    });
                }
                shdrs[st].sh_link = (st + 1) as u32;
                shdrs[st].sh_info = 1;
                (st, st + 1)
            }
        };
        let old_sym = if shdrs[symtab_idx].sh_size > 0 { elf.section_data(&elf.shdrs[symtab_idx]).to_vec() } else { vec![0; 24] };
        let mut strtab = if shdrs[strtab_idx].sh_size > 0 { elf.section_data(&elf.shdrs[strtab_idx]).to_vec() } else { vec![0] };
        let locals = (shdrs[symtab_idx].sh_info as usize).min(old_sym.len() / 24);
        // Symbols in moved sections (`_DYNAMIC`, `__GNU_EH_FRAME_HDR`) follow them.
        let mut old_sym = old_sym;
        for e in old_sym.chunks_exact_mut(24) {
            let shndx = super::elf::bytes::u16_at(e, 6) as usize;
            let value = super::elf::bytes::u64_at(e, 8);
            if let Some(&(_, old, new, size)) = remap.iter().find(|r| r.0 == shndx) {
                if value >= old && value - old <= size {
                    e[8..16].copy_from_slice(&(new + (value - old)).to_le_bytes());
                }
            }
        }
        // Locals after the old locals, globals after the old globals (sh_info counts
        // the locals).
        let mut sym = old_sym[..locals * 24].to_vec();
        let mut globals = Vec::new();
        for s in &t.symbols {
            let name = strtab.len() as u32;
            strtab.extend_from_slice(s.name.as_bytes());
            strtab.push(0);
            let shndx = shdrs.iter().position(|h| h.name == s.section && h.sh_flags & elf::SHF_ALLOC as u64 != 0).unwrap_or(0) as u16;
            let (to, bind) = if s.global { (&mut globals, elf::STB_GLOBAL) } else { (&mut sym, elf::STB_LOCAL) };
            sym_bytes(to, name, (bind << 4) | elf::STT_FUNC, shndx, s.addr, s.size);
        }
        let new_locals = t.symbols.iter().filter(|s| !s.global).count();
        sym.extend_from_slice(&old_sym[locals * 24..]);
        sym.extend_from_slice(&globals);
        pad_to(&mut file, 8, 0);
        shdrs[symtab_idx].sh_offset = file.len() as u64;
        shdrs[symtab_idx].sh_size = sym.len() as u64;
        shdrs[symtab_idx].sh_info = (locals + new_locals) as u32;
        file.extend_from_slice(&sym);
        shdrs[strtab_idx].sh_offset = file.len() as u64;
        shdrs[strtab_idx].sh_size = strtab.len() as u64;
        file.extend_from_slice(&strtab);
    }

    // .shstrtab with the new names.
    let shstr = elf.shstrndx;
    if shstr >= shdrs.len() {
        return Err("bad e_shstrndx".into());
    }
    let mut names = elf.section_data(&elf.shdrs[shstr]).to_vec();
    for (i, n) in new_names {
        shdrs[i].sh_name = names.len() as u32;
        names.extend_from_slice(n.as_bytes());
        names.push(0);
    }
    shdrs[shstr].sh_offset = file.len() as u64;
    shdrs[shstr].sh_size = names.len() as u64;
    file.extend_from_slice(&names);

    pad_to(&mut file, 8, 0);
    let shoff = file.len() as u64;
    for s in &shdrs {
        s.write(&mut file);
    }
    if shdrs.len() >= elf::SHN_LORESERVE as usize {
        return Err("too many sections".into());
    }
    set_u64(&mut file, 0x20, t.phoff);
    set_u64(&mut file, 0x28, shoff);
    set_u16(&mut file, 0x38, t.phnum as u16);
    set_u16(&mut file, 0x3c, shdrs.len() as u16);
    let _ = u32_at;
    Ok(file)
}
