//! The section headers of an ELF file read at report time (symbols, DWARF).

pub struct Section {
    pub name: String,
    pub typ: u32,
    pub addr: u64,
    pub off: u64,
    pub size: u64,
    pub link: u32,
}
pub struct Elf {
    pub sections: Vec<Section>,
}
impl Elf {
    pub fn parse(d: &[u8]) -> Option<Elf> {
        if d.len() < 64 || &d[0..4] != b"\x7fELF" || d[4] != 2 || d[5] != 1 {
            return None;
        }
        let u16_ = |o: usize| u16::from_le_bytes(d[o..o + 2].try_into().unwrap());
        let u32_ = |o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
        let u64_ = |o: usize| u64::from_le_bytes(d[o..o + 8].try_into().unwrap());
        let shoff = u64_(0x28) as usize;
        let shentsize = u16_(0x3a) as usize;
        let shnum = u16_(0x3c) as usize;
        let shstrndx = u16_(0x3e) as usize;
        if shoff == 0 || shentsize < 64 || shoff + shnum * shentsize > d.len() {
            return None;
        }
        let mut raw = Vec::new();
        for i in 0..shnum {
            let o = shoff + i * shentsize;
            raw.push((u32_(o), u32_(o + 4), u64_(o + 0x10), u64_(o + 0x18), u64_(o + 0x20), u32_(o + 0x28)));
        }
        let strs = raw.get(shstrndx).map(|s| (s.3 as usize, s.4 as usize)).unwrap_or((0, 0));
        let sections = raw
            .iter()
            .map(|&(name, typ, addr, off, size, link)| {
                let start = (strs.0 + name as usize).min(d.len());
                let lim = (strs.0 + strs.1).min(d.len()).max(start);
                let end = d[start..lim].iter().position(|&c| c == 0).map(|e| start + e).unwrap_or(lim);
                Section { name: String::from_utf8_lossy(&d[start..end]).into_owned(), typ, addr, off, size, link }
            })
            .collect();
        Some(Elf { sections })
    }
    pub fn data<'a>(&self, d: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let s = self.sections.iter().find(|s| s.name == name && s.typ != 8)?;
        d.get(s.off as usize..(s.off + s.size) as usize)
    }
}
