//! Where new content goes: appended after the input's last byte, in page-aligned
//! regions whose `vaddr − offset` equals the first PT_LOAD's, above every existing
//! segment (including `.bss`), so no existing byte changes address.

use super::elf::bytes::align_up;
use super::elf::{InputElf, Phdr};
use object::elf;

pub const PAGE: u64 = 0x1000;

/// A contiguous piece of the output, loaded at `addr` from file offset `off`.
pub struct Region {
    pub off: u64,
    pub addr: u64,
    pub data: Vec<u8>,
    fill: u8,
}

impl Region {
    pub fn new(off: u64, addr: u64, fill: u8) -> Self {
        Region { off, addr, data: Vec::new(), fill }
    }
    pub fn here(&self) -> u64 {
        self.addr + self.data.len() as u64
    }
    pub fn align(&mut self, a: usize) -> u64 {
        while self.data.len() % a != 0 {
            self.data.push(self.fill);
        }
        self.here()
    }
    /// Append `bytes` at the next `a`-aligned address; returns that address.
    pub fn place(&mut self, bytes: &[u8], a: usize) -> u64 {
        let at = self.align(a);
        self.data.extend_from_slice(bytes);
        at
    }
    pub fn reserve(&mut self, len: usize, a: usize) -> u64 {
        let at = self.align(a);
        self.data.resize(self.data.len() + len, 0);
        at
    }
    pub fn write_at(&mut self, addr: u64, bytes: &[u8]) {
        let o = (addr - self.addr) as usize;
        self.data[o..o + bytes.len()].copy_from_slice(bytes);
    }
    pub fn offset_of(&self, addr: u64) -> u64 {
        self.off + (addr - self.addr)
    }
    /// The next region starts on the page after this one.
    pub fn next(&self, fill: u8) -> Region {
        let off = align_up(self.off + self.data.len() as u64, PAGE);
        Region::new(off, self.addr + (off - self.off), fill)
    }
    pub fn load(&self, flags: u32) -> Phdr {
        Phdr {
            p_type: elf::PT_LOAD,
            p_flags: flags,
            p_offset: self.off,
            p_vaddr: self.addr,
            p_paddr: self.addr,
            p_filesz: self.data.len() as u64,
            p_memsz: self.data.len() as u64,
            p_align: PAGE,
        }
    }
}

/// How many bytes of the input the output keeps as they are: the ELF header, the
/// program header table and everything a segment or an allocated section covers. The
/// non-allocated sections after that (debug info, `.symtab`, …) are written afresh by
/// `emit`, without the old copies of the ones it replaces.
pub fn kept_prefix(elf: &InputElf) -> u64 {
    let mut end = 64 + elf.phdrs.len() as u64 * 56;
    for p in &elf.phdrs {
        end = end.max(p.p_offset.saturating_add(p.p_filesz));
    }
    for s in elf.shdrs.iter().skip(1) {
        if s.sh_flags & elf::SHF_ALLOC as u64 != 0 && s.sh_type != elf::SHT_NOBITS {
            end = end.max(s.sh_offset.saturating_add(s.sh_size));
        }
    }
    end.min(elf.data.len() as u64)
}

/// The first region: file offset past the kept input, address past every segment.
pub fn first_region(elf: &InputElf, fill: u8) -> Result<Region, String> {
    let first = elf.loads().next().ok_or("no PT_LOAD segment")?;
    let delta = first.p_vaddr.wrapping_sub(first.p_offset);
    if delta % PAGE != 0 {
        return Err(format!("first PT_LOAD has vaddr − offset = {delta:#x}, not page aligned"));
    }
    let top = elf.loads().map(|p| p.p_vaddr + p.p_memsz).max().unwrap_or(0);
    let mut off = align_up(kept_prefix(elf), PAGE);
    if off.wrapping_add(delta) < top {
        off = align_up(top - delta, PAGE);
    }
    Ok(Region::new(off, off + delta, fill))
}

/// The new program header table: the input's, with PT_PHDR, PT_DYNAMIC and
/// PT_GNU_EH_FRAME repointed and the new PT_LOADs after the last existing one.
pub fn program_headers(elf: &InputElf, phdr: (u64, u64, u64), dynamic: (u64, u64, u64), eh_hdr: (u64, u64, u64), loads: [Phdr; 3]) -> Vec<Phdr> {
    let mut out = Vec::new();
    let last_load = elf.phdrs.iter().rposition(|p| p.p_type == elf::PT_LOAD).unwrap_or(0);
    let set = |p: &mut Phdr, (off, addr, size): (u64, u64, u64)| {
        p.p_offset = off;
        p.p_vaddr = addr;
        p.p_paddr = addr;
        p.p_filesz = size;
        p.p_memsz = size;
    };
    let mut have_eh = false;
    for (i, p) in elf.phdrs.iter().enumerate() {
        let mut p = p.clone();
        match p.p_type {
            elf::PT_PHDR => set(&mut p, phdr),
            elf::PT_DYNAMIC => set(&mut p, dynamic),
            elf::PT_GNU_EH_FRAME => {
                set(&mut p, eh_hdr);
                have_eh = true;
            }
            _ => {}
        }
        out.push(p);
        if i == last_load {
            out.extend(loads.iter().cloned());
        }
    }
    if !have_eh {
        let mut p = Phdr { p_type: elf::PT_GNU_EH_FRAME, p_flags: elf::PF_R, p_offset: 0, p_vaddr: 0, p_paddr: 0, p_filesz: 0, p_memsz: 0, p_align: 4 };
        set(&mut p, eh_hdr);
        out.push(p);
    }
    out
}

/// Program header count of the output.
pub fn program_header_count(elf: &InputElf) -> usize {
    elf.phdrs.len() + 3 + usize::from(!elf.phdrs.iter().any(|p| p.p_type == elf::PT_GNU_EH_FRAME))
}
