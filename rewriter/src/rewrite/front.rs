//! The grown program header table goes where linkers put it: right after the ELF
//! header, at the start of the first PT_LOAD. Tools that rebuild segments from sections
//! (strip, objcopy) assume that place; a table anywhere else is moved by them and the
//! result no longer loads.
//!
//! Room is made by moving the run of header-like sections that follows the old table
//! (`.interp`, notes, the dynamic symbol/version/hash/relocation tables) as one block
//! into the new read-only segment, at the same alignment, so every offset inside the
//! block keeps its meaning; section headers, program headers (PT_INTERP, PT_NOTE,
//! PT_GNU_PROPERTY) and dynamic tags that point into it move with it. Only tables the
//! loader finds through those pointers are moved; when anything else (code, data)
//! comes first, the table stays in the new segment instead.

use super::elf::bytes::u64_at;
use super::elf::{InputElf, Phdr};
use object::elf;

/// The block that moves: `[lo, hi)` in the input's addresses, `lo`/`hi` file offsets
/// `off_lo`/`off_hi` (the first PT_LOAD maps both alike).
#[derive(Clone, Copy, Debug)]
pub struct Block {
    pub lo: u64,
    pub hi: u64,
    pub off_lo: u64,
}

/// Where the block went.
#[derive(Clone, Copy, Debug)]
pub struct Shift {
    pub block: Block,
    pub new_lo: u64,
    pub new_off: u64,
}

impl Shift {
    pub fn moves(&self, addr: u64) -> bool {
        addr >= self.block.lo && addr < self.block.hi
    }
    pub fn addr(&self, addr: u64) -> u64 {
        addr - self.block.lo + self.new_lo
    }
    pub fn offset(&self, addr: u64) -> u64 {
        addr - self.block.lo + self.new_off
    }
}

/// Section types the loader reaches only through program headers or dynamic tags.
fn movable(sh_type: u32, name: &str) -> bool {
    matches!(
        sh_type,
        elf::SHT_NOTE
            | elf::SHT_GNU_HASH
            | elf::SHT_HASH
            | elf::SHT_DYNSYM
            | elf::SHT_GNU_VERSYM
            | elf::SHT_GNU_VERNEED
            | elf::SHT_GNU_VERDEF
            | elf::SHT_RELA
            | elf::SHT_RELR
    ) || (sh_type == elf::SHT_STRTAB && name == ".dynstr")
        || (sh_type == elf::SHT_PROGBITS && name == ".interp")
}

/// DT_RELR (not named by the `object` crate version in use).
const DT_RELR: u32 = 36;

/// Dynamic tags holding addresses that may point into the block.
pub const POINTER_TAGS: [u32; 10] = [
    elf::DT_HASH,
    elf::DT_GNU_HASH,
    elf::DT_STRTAB,
    elf::DT_SYMTAB,
    elf::DT_RELA,
    elf::DT_JMPREL,
    elf::DT_VERSYM,
    elf::DT_VERNEED,
    elf::DT_VERDEF,
    DT_RELR,
];

/// The block to move so that `phnum` program headers fit at offset 64, or None when
/// the input does not have the usual shape (table at 64 in a first PT_LOAD at offset 0)
/// or something the loader reaches otherwise lies in the way.
pub fn plan(elf: &InputElf, phnum: usize) -> Option<Block> {
    let phoff = u64_at(elf.data, 0x20);
    let first = elf.loads().next()?;
    if phoff != 64 || first.p_offset != 0 {
        return None;
    }
    let need = 64 + (phnum * Phdr::SIZE) as u64;
    let old_end = 64 + (elf.phdrs.len() * Phdr::SIZE) as u64;
    let mut secs: Vec<_> = elf
        .shdrs
        .iter()
        .filter(|s| s.sh_flags & elf::SHF_ALLOC as u64 != 0 && s.sh_type != elf::SHT_NOBITS && s.sh_size > 0)
        .filter(|s| s.sh_offset < first.p_filesz)
        .collect();
    secs.sort_by_key(|s| s.sh_offset);
    let mut hi_off = old_end;
    for s in secs.iter().filter(|s| s.sh_offset.saturating_add(s.sh_size) > old_end) {
        if hi_off >= need && s.sh_offset >= hi_off {
            break;
        }
        let end = s.sh_offset.checked_add(s.sh_size)?;
        if s.sh_offset < old_end || !movable(s.sh_type, &s.name) || end > first.p_filesz {
            return None;
        }
        hi_off = hi_off.max(end);
    }
    if hi_off < need || hi_off > elf.data.len() as u64 {
        return None;
    }
    // Nothing else of the first segment's may start inside the block (headers of
    // other segments, e.g. a PT_LOAD that begins there, would not move).
    let delta = first.p_vaddr;
    if elf.phdrs.iter().any(|p| p.p_type == elf::PT_LOAD && p.p_offset > 0 && p.p_offset < hi_off) {
        return None;
    }
    Some(Block { lo: old_end + delta, hi: hi_off + delta, off_lo: old_end })
}
