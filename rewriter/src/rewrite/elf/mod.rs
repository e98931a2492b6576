//! Read model of the input ELF: header, segments, sections, dynamic table, symbols.
//!
//! Parsing goes through the `object` crate; the model keeps plain copies of every
//! header so that the layout and emit stages can change and re-serialize them.

pub mod bytes;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader as _, SectionHeader as _, Sym as _};
use object::LittleEndian as LE;

/// One program header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_paddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

impl Phdr {
    pub const SIZE: usize = 56;
    pub fn write(&self, out: &mut Vec<u8>) {
        bytes::put_u32(out, self.p_type);
        bytes::put_u32(out, self.p_flags);
        for v in [self.p_offset, self.p_vaddr, self.p_paddr, self.p_filesz, self.p_memsz, self.p_align] {
            bytes::put_u64(out, v);
        }
    }
    pub fn contains_vaddr(&self, a: u64) -> bool {
        a >= self.p_vaddr && a - self.p_vaddr < self.p_memsz
    }
}

/// One section header, with its name resolved.
#[derive(Clone, Debug)]
pub struct Shdr {
    pub name: String,
    pub sh_name: u32,
    pub sh_type: u32,
    pub sh_flags: u64,
    pub sh_addr: u64,
    pub sh_offset: u64,
    pub sh_size: u64,
    pub sh_link: u32,
    pub sh_info: u32,
    pub sh_addralign: u64,
    pub sh_entsize: u64,
}

impl Shdr {
    pub const SIZE: usize = 64;
    pub fn write(&self, out: &mut Vec<u8>) {
        bytes::put_u32(out, self.sh_name);
        bytes::put_u32(out, self.sh_type);
        bytes::put_u64(out, self.sh_flags);
        bytes::put_u64(out, self.sh_addr);
        bytes::put_u64(out, self.sh_offset);
        bytes::put_u64(out, self.sh_size);
        bytes::put_u32(out, self.sh_link);
        bytes::put_u32(out, self.sh_info);
        bytes::put_u64(out, self.sh_addralign);
        bytes::put_u64(out, self.sh_entsize);
    }
}

/// A defined symbol from `.symtab` or `.dynsym` (used for names and code extents).
#[derive(Clone, Debug)]
pub struct Symbol {
    pub name: String,
    pub value: u64,
    pub size: u64,
    pub st_type: u8,
}

/// The parsed input.
pub struct InputElf<'a> {
    pub data: &'a [u8],
    pub e_type: u16,
    pub phdrs: Vec<Phdr>,
    pub shdrs: Vec<Shdr>,
    pub shstrndx: usize,
    /// Dynamic entries up to (not including) the first DT_NULL.
    pub dynamic: Vec<(u64, u64)>,
    /// Defined, non-section symbols of both symbol tables.
    pub symbols: Vec<Symbol>,
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl<'a> InputElf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, String> {
        let hdr = elf::FileHeader64::<LE>::parse(data).map_err(err("not a 64-bit little-endian ELF file"))?;
        let en = LE;
        if hdr.e_machine(en) != elf::EM_X86_64 {
            return Err(format!("not an x86-64 ELF file (e_machine {})", hdr.e_machine(en)));
        }
        let e_type = hdr.e_type(en);
        if e_type != elf::ET_EXEC && e_type != elf::ET_DYN {
            return Err(format!("ELF type {e_type} is neither an executable nor a shared library"));
        }
        let phdrs = hdr
            .program_headers(en, data)
            .map_err(err("bad program header table"))?
            .iter()
            .map(|p| Phdr {
                p_type: p.p_type(en),
                p_flags: p.p_flags(en),
                p_offset: p.p_offset(en),
                p_vaddr: p.p_vaddr(en),
                p_paddr: p.p_paddr(en),
                p_filesz: p.p_filesz(en),
                p_memsz: p.p_memsz(en),
                p_align: p.p_align(en),
            })
            .collect::<Vec<_>>();
        let table = hdr.sections(en, data).map_err(err("bad section header table"))?;
        if table.is_empty() {
            return Err("no section headers (files without them are not supported)".into());
        }
        let mut shdrs = Vec::new();
        for s in table.iter() {
            let name = table
                .section_name(en, s)
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .map_err(err("bad section name"))?;
            shdrs.push(Shdr {
                name,
                sh_name: s.sh_name(en),
                sh_type: s.sh_type(en),
                sh_flags: s.sh_flags(en),
                sh_addr: s.sh_addr(en),
                sh_offset: s.sh_offset(en),
                sh_size: s.sh_size(en),
                sh_link: s.sh_link(en),
                sh_info: s.sh_info(en),
                sh_addralign: s.sh_addralign(en),
                sh_entsize: s.sh_entsize(en),
            });
        }
        let shstrndx = hdr.shstrndx(en, data).map_err(err("bad e_shstrndx"))? as usize;
        for s in &shdrs {
            if s.sh_type != elf::SHT_NOBITS && (s.sh_offset.checked_add(s.sh_size).map_or(true, |e| e > data.len() as u64)) {
                return Err(format!("section {} lies outside the file", s.name));
            }
        }
        for p in &phdrs {
            if p.p_offset.checked_add(p.p_filesz).map_or(true, |e| e > data.len() as u64) {
                return Err(format!("segment at {:#x} lies outside the file", p.p_vaddr));
            }
        }

        let mut dynamic = Vec::new();
        if let Some(d) = phdrs.iter().find(|p| p.p_type == elf::PT_DYNAMIC) {
            let raw = &data[d.p_offset as usize..(d.p_offset + d.p_filesz) as usize];
            for c in raw.chunks_exact(16) {
                let tag = bytes::u64_at(c, 0);
                if tag == elf::DT_NULL as u64 {
                    break;
                }
                dynamic.push((tag, bytes::u64_at(c, 8)));
            }
        }

        let mut symbols = Vec::new();
        for kind in [elf::SHT_SYMTAB, elf::SHT_DYNSYM] {
            let Ok(st) = table.symbols(en, data, kind) else { continue };
            let strings = st.strings();
            for sym in st.symbols() {
                if sym.st_shndx(en) == elf::SHN_UNDEF || sym.st_type() == elf::STT_SECTION || sym.st_type() == elf::STT_FILE {
                    continue;
                }
                let name = sym.name(en, strings).map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default();
                symbols.push(Symbol { name, value: sym.st_value(en), size: sym.st_size(en), st_type: sym.st_type() });
            }
        }

        Ok(InputElf { data, e_type, phdrs, shdrs, shstrndx, dynamic, symbols })
    }

    pub fn dyn_val(&self, tag: u32) -> Option<u64> {
        self.dynamic.iter().find(|(t, _)| *t == tag as u64).map(|(_, v)| *v)
    }

    pub fn loads(&self) -> impl Iterator<Item = &Phdr> {
        self.phdrs.iter().filter(|p| p.p_type == elf::PT_LOAD)
    }

    /// File offset of a virtual address backed by file bytes.
    pub fn vaddr_to_offset(&self, a: u64) -> Option<u64> {
        self.loads()
            .find(|p| a >= p.p_vaddr && a - p.p_vaddr < p.p_filesz)
            .map(|p| a - p.p_vaddr + p.p_offset)
    }

    /// File bytes at a virtual address; `None` when not (entirely) backed by the file.
    pub fn bytes_at(&self, a: u64, len: u64) -> Option<&'a [u8]> {
        let p = self.loads().find(|p| a >= p.p_vaddr && a - p.p_vaddr < p.p_filesz)?;
        let avail = p.p_vaddr + p.p_filesz - a;
        if len > avail {
            return None;
        }
        let off = (a - p.p_vaddr + p.p_offset) as usize;
        self.data.get(off..off + len as usize)
    }

    /// Bytes of a dynamic table given by an address tag and a size.
    pub fn dyn_table(&self, addr_tag: u32, size: u64, what: &str) -> Result<&'a [u8], String> {
        let a = self.dyn_val(addr_tag).ok_or_else(|| format!("no {what}"))?;
        self.bytes_at(a, size).ok_or_else(|| format!("{what} at {a:#x} is not in the file"))
    }

    pub fn section(&self, name: &str) -> Option<(usize, &Shdr)> {
        self.shdrs.iter().enumerate().find(|(_, s)| s.name == name)
    }

    pub fn section_data(&self, s: &Shdr) -> &'a [u8] {
        if s.sh_type == elf::SHT_NOBITS {
            return &[];
        }
        &self.data[s.sh_offset as usize..(s.sh_offset + s.sh_size) as usize]
    }

    /// Index of the section whose address range holds `a` (allocated sections only).
    pub fn section_index_at(&self, a: u64) -> Option<usize> {
        self.shdrs.iter().position(|s| {
            s.sh_flags & elf::SHF_ALLOC as u64 != 0 && s.sh_size > 0 && a >= s.sh_addr && a - s.sh_addr < s.sh_size
        })
    }

    pub fn is_executable_addr(&self, a: u64) -> bool {
        self.loads().any(|p| p.p_flags & elf::PF_X != 0 && a >= p.p_vaddr && a - p.p_vaddr < p.p_filesz)
    }

    /// The GNU property note says the object is an IBT build.
    pub fn has_ibt(&self) -> bool {
        let Some(p) = self.phdrs.iter().find(|p| p.p_type == elf::PT_GNU_PROPERTY) else { return false };
        let d = &self.data[p.p_offset as usize..(p.p_offset + p.p_filesz) as usize];
        // Note header: namesz, descsz, type, "GNU\0", then properties (type, datasz, data, pad to 8).
        if d.len() < 16 {
            return false;
        }
        let descsz = bytes::u32_at(d, 4) as usize;
        let mut i = 16;
        let end = (16 + descsz).min(d.len());
        while i + 8 <= end {
            let pt = bytes::u32_at(d, i);
            let sz = bytes::u32_at(d, i + 4) as usize;
            if pt == elf::GNU_PROPERTY_X86_FEATURE_1_AND && sz >= 4 && i + 12 <= end {
                return bytes::u32_at(d, i + 8) & elf::GNU_PROPERTY_X86_FEATURE_1_IBT != 0;
            }
            i += 8 + ((sz + 7) & !7);
        }
        false
    }
}
