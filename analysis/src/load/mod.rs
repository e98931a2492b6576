//! Load an ELF file into the facts the analysis needs: the functions (with their
//! code), what each call target address means (a local function, an imported
//! symbol through `.plt`/`.plt.sec`/GOT), and where function addresses are stored.
//!
//! Everything is validated here; nothing downstream indexes raw bytes unchecked.

mod fnstores;
mod functions;
mod imports;

use object::{Object, ObjectKind, ObjectSection, SectionKind};
use crate::fxhash::FxHashMap;
use std::collections::HashMap;

pub use fnstores::FnStore;
pub use functions::Func;

/// What the loaded file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Executable,
    SharedObject,
    Relocatable,
}

/// A piece of code or data at a (possibly synthetic, for `.o` files) address.
struct Region {
    addr: u64,
    data: Vec<u8>,
    exec: bool,
}

/// The loaded binary.
pub struct Binary {
    pub kind: FileKind,
    /// Functions defined in the file, sorted by address, no duplicates.
    pub funcs: Vec<Func>,
    /// Address → index into `funcs` for function entries.
    pub by_addr: FxHashMap<u64, usize>,
    /// Symbol name (and alias) → index into `funcs`.
    pub by_name: FxHashMap<String, usize>,
    /// Call-target address → imported symbol name (PLT stubs, `.plt.sec` stubs).
    pub stubs: FxHashMap<u64, String>,
    /// GOT slot address → imported symbol name (`call *f@GOTPCREL(%rip)`).
    pub got: FxHashMap<u64, String>,
    /// In relocatable files: address of a rel32 field → the symbol it refers to.
    pub rel_targets: FxHashMap<u64, RelTarget>,
    /// Function addresses stored in data (static initializers) or code (stores).
    pub fn_stores: Vec<FnStore>,
    /// Address of every function whose address is taken anywhere.
    pub address_taken: Vec<u64>,
    /// True when function names came from `.symtab` (false: stripped).
    pub has_symtab: bool,
    regions: Vec<Region>,
}

/// What a relocation in a `.o` points at.
#[derive(Debug, Clone)]
pub enum RelTarget {
    /// A function defined in this file, by address.
    Local(u64),
    /// A symbol defined elsewhere.
    External(String),
}

impl Binary {
    /// Parse `data`; errors are one-line descriptions of what is wrong.
    pub fn parse(data: &[u8]) -> Result<Binary, String> {
        precheck(data)?;
        let file = object::File::parse(data).map_err(|e| format!("not a valid ELF file: {e}"))?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(format!("unsupported architecture {:?} (only x86-64)", file.architecture()));
        }
        let kind = match file.kind() {
            ObjectKind::Executable => FileKind::Executable,
            ObjectKind::Dynamic => {
                if file.section_by_name(".interp").is_some() {
                    FileKind::Executable
                } else {
                    FileKind::SharedObject
                }
            }
            ObjectKind::Relocatable => FileKind::Relocatable,
            other => return Err(format!("unsupported ELF type {other:?}")),
        };
        let (regions, section_base) = load_regions(&file, kind)?;
        let mut bin = Binary {
            kind,
            funcs: Vec::new(),
            by_addr: FxHashMap::default(),
            by_name: FxHashMap::default(),
            stubs: FxHashMap::default(),
            got: FxHashMap::default(),
            rel_targets: FxHashMap::default(),
            fn_stores: Vec::new(),
            address_taken: Vec::new(),
            has_symtab: false,
            regions,
        };
        functions::collect(&file, &mut bin, &section_base)?;
        // Primary names win over aliases (a clone's base name).
        for (i, f) in bin.funcs.iter().enumerate() {
            bin.by_name.insert(f.name.clone(), i);
        }
        for (i, f) in bin.funcs.iter().enumerate() {
            for n in f.aliases.iter() {
                bin.by_name.entry(n.clone()).or_insert(i);
            }
        }
        imports::collect(&file, &mut bin, &section_base);
        fnstores::collect_data(&file, &mut bin, &section_base);
        Ok(bin)
    }

    /// Bytes of code or data at `addr`, up to `len` (shorter at the end of a region).
    pub fn bytes(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let r = self.region_of(addr)?;
        let start = (addr - r.addr) as usize;
        let end = start.saturating_add(len as usize).min(r.data.len());
        r.data.get(start..end)
    }

    /// True when `addr` lies in executable code.
    pub fn is_code(&self, addr: u64) -> bool {
        self.region_of(addr).is_some_and(|r| r.exec)
    }

    fn region_of(&self, addr: u64) -> Option<&Region> {
        let i = self.regions.partition_point(|r| r.addr <= addr);
        let r = self.regions.get(i.checked_sub(1)?)?;
        (addr < r.addr.saturating_add(r.data.len() as u64)).then_some(r)
    }

    /// Index of the function containing `addr`.
    pub fn func_containing(&self, addr: u64) -> Option<usize> {
        let i = self.funcs.partition_point(|f| f.addr <= addr);
        let i = i.checked_sub(1)?;
        let f = &self.funcs[i];
        (addr < f.addr.saturating_add(f.size.max(1))).then_some(i)
    }
}

/// Reject inputs `object` would accept but that make no sense here, with a clear reason.
fn precheck(data: &[u8]) -> Result<(), String> {
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if data.len() < 64 {
        return Err("truncated ELF header".into());
    }
    if data[4] != 2 {
        return Err("not a 64-bit ELF file (only x86-64 is supported)".into());
    }
    if data[5] != 1 {
        return Err("not a little-endian ELF file (only x86-64 is supported)".into());
    }
    let machine = u16::from_le_bytes([data[18], data[19]]);
    if machine != 62 {
        return Err(format!("unsupported machine type {machine} (only x86-64)"));
    }
    Ok(())
}

/// Copy the allocated sections into address-sorted regions. In a `.o` every
/// section starts at 0, so each gets a synthetic base address.
fn load_regions(file: &object::File, kind: FileKind) -> Result<(Vec<Region>, HashMap<usize, u64>), String> {
    let mut regions = Vec::new();
    let mut base_of = HashMap::new();
    let mut next = 0x1000u64;
    for s in file.sections() {
        let allocated = matches!(
            s.kind(),
            SectionKind::Text | SectionKind::Data | SectionKind::ReadOnlyData | SectionKind::ReadOnlyDataWithRel
                | SectionKind::ReadOnlyString
        );
        if !allocated || s.size() == 0 {
            continue;
        }
        let data = s
            .uncompressed_data()
            .map_err(|e| format!("section {} is corrupt: {e}", s.name().unwrap_or("?")))?;
        if (data.len() as u64) < s.size() {
            return Err(format!("section {} extends past the end of the file", s.name().unwrap_or("?")));
        }
        let addr = if kind == FileKind::Relocatable {
            let align = s.align().clamp(1, 4096);
            let a = next.div_ceil(align).saturating_mul(align);
            next = a.saturating_add(s.size()).saturating_add(16);
            a
        } else {
            s.address()
        };
        base_of.insert(s.index().0, addr);
        regions.push(Region { addr, data: data.into_owned(), exec: s.kind() == SectionKind::Text });
    }
    regions.sort_by_key(|r| r.addr);
    Ok((regions, base_of))
}
