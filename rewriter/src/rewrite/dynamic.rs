//! Linking the runtime: DT_NEEDED first, `$ORIGIN` run path, and the undefined dynamic
//! symbols of the hook ABI (`IMPORTS`), each bound into an 8-byte slot by a dynamic
//! relocation. The dynamic tables are copied (never edited in place): the new symbols go at
//! the GNU hash's `symoffset`, so the hashed symbols shift by k — buckets and
//! `symoffset` move with them, relocation symbol indices are rewritten, `.gnu.version`
//! gets k global entries, and a SysV hash is rebuilt.
//!
//! The same place holds one more undefined symbol per trampoline gdb must step through
//! (`Stepper`): `FUNC`, value = the trampoline's address in `.plt.allocsite`. That is
//! what a PLT stub's symbol looks like to gdb (elfread.c makes it an
//! `mst_solib_trampoline`), so `step` into the trampoline goes on into the global
//! `.symtab` function of the same name, placed at the callee's entry (`emit`). Before
//! `symoffset` and left out of the SysV hash chains, ld.so's lookups never see them,
//! and no relocation names them.

use super::elf::bytes::{put_u16, put_u32, put_u64, set_u32, u16_at, u32_at, u64_at};
use super::elf::InputElf;
use object::elf;

pub const RUNTIME_SONAME: &str = "liballocsite_rt.so";
/// The runtime's symbols the trampolines use (runtime/README.md, hook ABI v3), with
/// their symbol type and the relocation that fills their slot: the two hooks' and the
/// slow-path masks' addresses, and the thread-pointer offset of the per-thread block.
pub const IMPORTS: [(&str, u8, u32); 4] = [
    ("__allocsite_hook_enter", elf::STT_FUNC, elf::R_X86_64_GLOB_DAT),
    ("__allocsite_hook_exit", elf::STT_FUNC, elf::R_X86_64_GLOB_DAT),
    ("__allocsite_slow_v5", elf::STT_OBJECT, elf::R_X86_64_GLOB_DAT),
    ("__outermost_allocsite", elf::STT_TLS, elf::R_X86_64_TPOFF64),
];
const SPARE_DYNAMIC: usize = 6;

/// The rebuilt dynamic tables (contents independent of where they will be placed).
pub struct Tables {
    pub dynsym: Vec<u8>,
    pub dynstr: Vec<u8>,
    pub gnu_hash: Option<Vec<u8>>,
    pub hash: Option<Vec<u8>>,
    pub versym: Option<Vec<u8>>,
    pub rela_dyn: Vec<u8>,
    pub rela_plt: Option<Vec<u8>>,
    needed_str: u32,
    /// (tag, new string offset) for a run path to change or add.
    runpath: (u64, u32, bool),
}

/// Where the new tables were placed.
#[derive(Default)]
pub struct Placed {
    pub dynsym: u64,
    pub dynstr: u64,
    pub gnu_hash: u64,
    pub hash: u64,
    pub versym: u64,
    pub rela_dyn: u64,
    pub rela_plt: u64,
    /// The header-like block moved to make room for the program headers (`front`):
    /// addresses pointing into it move with it.
    pub shift: Option<super::front::Shift>,
}

fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(c as u32);
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

fn cstr(d: &[u8], off: usize) -> &[u8] {
    let s = d.get(off..).unwrap_or(&[]);
    &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())]
}

/// Number of dynamic entries the new `.dynamic` holds (including DT_NULL and spares).
pub fn dynamic_entries(elf: &InputElf) -> usize {
    let mut n = elf.dynamic.len() + 1 + 1 + SPARE_DYNAMIC;
    if elf.dyn_val(elf::DT_RUNPATH).is_none() && elf.dyn_val(elf::DT_RPATH).is_none() {
        n += 1;
    }
    if elf.dyn_val(elf::DT_RELA).is_none() {
        n += 3;
    }
    n
}

pub fn check(elf: &InputElf) -> Result<(), String> {
    if elf.dynamic.is_empty() {
        return Err("statically linked (no PT_DYNAMIC): the runtime cannot be added as a dependency".into());
    }
    if elf.dyn_val(elf::DT_REL).is_some() || elf.dyn_val(elf::DT_PLTREL).is_some_and(|v| v != elf::DT_RELA as u64) {
        return Err("uses REL relocations; only RELA is supported".into());
    }
    Ok(())
}

/// An undefined `.dynsym` function symbol marking a trampoline as a stub gdb steps
/// through (module comment).
pub struct Stepper {
    pub name: String,
    pub addr: u64,
}

/// Rebuild the tables; `slots` are the addresses of the `IMPORTS` slots.
pub fn build(elf: &InputElf, slots: [u64; IMPORTS.len()], steppers: &[Stepper]) -> Result<Tables, String> {
    let k = (IMPORTS.len() + steppers.len()) as u32;
    let strsz = elf.dyn_val(elf::DT_STRSZ).ok_or("no DT_STRSZ")?;
    let dynstr_old = elf.dyn_table(elf::DT_STRTAB, strsz, "DT_STRTAB")?;
    let symtab_addr = elf.dyn_val(elf::DT_SYMTAB).ok_or("no DT_SYMTAB")?;
    let dynsym_sec = elf
        .shdrs
        .iter()
        .find(|s| s.sh_type == elf::SHT_DYNSYM && s.sh_addr == symtab_addr)
        .ok_or("no .dynsym section header at DT_SYMTAB")?;
    let dynsym_old = elf.section_data(dynsym_sec);
    let nsyms = (dynsym_old.len() / 24) as u32;
    for i in 0..nsyms as usize {
        let name = cstr(dynstr_old, u32_at(dynsym_old, i * 24) as usize);
        if IMPORTS.iter().any(|h| h.0.as_bytes() == name) {
            return Err("already has the allocsite hook symbols (rewritten before?)".into());
        }
    }

    // New strings.
    let mut dynstr = dynstr_old.to_vec();
    let mut add = |s: &[u8]| -> u32 {
        let o = dynstr.len() as u32;
        dynstr.extend_from_slice(s);
        dynstr.push(0);
        o
    };
    let name_offs: Vec<u32> = IMPORTS.iter().map(|h| add(h.0.as_bytes())).collect();
    let stepper_offs: Vec<u32> = steppers.iter().map(|s| add(s.name.as_bytes())).collect();
    let needed_str = add(RUNTIME_SONAME.as_bytes());
    let runpath = match (elf.dyn_val(elf::DT_RUNPATH), elf.dyn_val(elf::DT_RPATH)) {
        (Some(o), _) | (None, Some(o)) => {
            let tag = if elf.dyn_val(elf::DT_RUNPATH).is_some() { elf::DT_RUNPATH } else { elf::DT_RPATH };
            let old = cstr(dynstr_old, o as usize);
            if old.split(|&c| c == b':').any(|p| p == b"$ORIGIN") {
                (tag as u64, o as u32, false)
            } else {
                let mut s = old.to_vec();
                if !s.is_empty() {
                    s.push(b':');
                }
                s.extend_from_slice(b"$ORIGIN");
                (tag as u64, add(&s), false)
            }
        }
        (None, None) => (elf::DT_RUNPATH as u64, add(b"$ORIGIN"), true),
    };

    // Where the new symbols go.
    let gnu_old = match elf.dyn_val(elf::DT_GNU_HASH) {
        Some(_) => {
            let head = elf.dyn_table(elf::DT_GNU_HASH, 16, "DT_GNU_HASH")?;
            let (nb, symoff, bloom) = (u32_at(head, 0), u32_at(head, 4), u32_at(head, 8));
            if symoff > nsyms || symoff == 0 {
                return Err(format!("bad .gnu.hash symoffset {symoff}"));
            }
            let size = 16 + bloom as u64 * 8 + nb as u64 * 4 + (nsyms - symoff) as u64 * 4;
            Some((elf.dyn_table(elf::DT_GNU_HASH, size, "DT_GNU_HASH")?, nb, symoff, bloom))
        }
        None => None,
    };
    let pos = gnu_old.map_or(nsyms, |g| g.2);
    let shift = |i: u32| if i >= pos { i + k } else { i };

    let mut dynsym = dynsym_old[..pos as usize * 24].to_vec();
    for (&o, imp) in name_offs.iter().zip(&IMPORTS) {
        put_u32(&mut dynsym, o);
        dynsym.push((elf::STB_GLOBAL << 4) | imp.1);
        dynsym.push(0);
        put_u16(&mut dynsym, 0);
        put_u64(&mut dynsym, 0);
        put_u64(&mut dynsym, 0);
    }
    for (&o, s) in stepper_offs.iter().zip(steppers) {
        put_u32(&mut dynsym, o);
        dynsym.push((elf::STB_GLOBAL << 4) | elf::STT_FUNC);
        dynsym.push(0);
        put_u16(&mut dynsym, elf::SHN_UNDEF);
        put_u64(&mut dynsym, s.addr);
        put_u64(&mut dynsym, 0);
    }
    dynsym.extend_from_slice(&dynsym_old[pos as usize * 24..]);
    let is_stepper = |i: u32| i >= pos + IMPORTS.len() as u32 && i < pos + k;

    let gnu_hash = gnu_old.map(|(old, nb, symoff, bloom)| {
        let mut g = old.to_vec();
        set_u32(&mut g, 4, symoff + k);
        let b0 = 16 + bloom as usize * 8;
        for b in 0..nb as usize {
            let v = u32_at(&g, b0 + 4 * b);
            if v != 0 {
                set_u32(&mut g, b0 + 4 * b, v + k);
            }
        }
        g
    });

    let hash = match elf.dyn_val(elf::DT_HASH) {
        Some(_) => {
            let head = elf.dyn_table(elf::DT_HASH, 8, "DT_HASH")?;
            let nb = u32_at(head, 0).max(1);
            let n = nsyms + k;
            let mut buckets = vec![0u32; nb as usize];
            let mut chains = vec![0u32; n as usize];
            for i in (1..n as usize).filter(|&i| !is_stepper(i as u32)) {
                let name = cstr(&dynstr, u32_at(&dynsym, i * 24) as usize);
                let h = (elf_hash(name) % nb) as usize;
                chains[i] = buckets[h];
                buckets[h] = i as u32;
            }
            let mut out = Vec::new();
            put_u32(&mut out, nb);
            put_u32(&mut out, n);
            buckets.iter().chain(&chains).for_each(|&v| put_u32(&mut out, v));
            Some(out)
        }
        None => None,
    };

    let versym = match elf.dyn_val(elf::DT_VERSYM) {
        Some(_) => {
            let old = elf.dyn_table(elf::DT_VERSYM, nsyms as u64 * 2, "DT_VERSYM")?;
            let mut v = old[..pos as usize * 2].to_vec();
            for _ in 0..k {
                put_u16(&mut v, 1);
            }
            v.extend_from_slice(&old[pos as usize * 2..]);
            Some(v)
        }
        None => None,
    };

    let rewrite_rela = |d: &[u8]| -> Vec<u8> {
        let mut out = d.to_vec();
        for r in out.chunks_exact_mut(24) {
            let info = u64_at(r, 8);
            let (sym, ty) = ((info >> 32) as u32, info as u32);
            let info = ((shift(sym) as u64) << 32) | ty as u64;
            r[8..16].copy_from_slice(&info.to_le_bytes());
        }
        out
    };
    let (plt_addr, plt_size) = (elf.dyn_val(elf::DT_JMPREL), elf.dyn_val(elf::DT_PLTRELSZ).unwrap_or(0));
    let rela_plt = match plt_addr {
        Some(_) => Some(rewrite_rela(elf.dyn_table(elf::DT_JMPREL, plt_size, "DT_JMPREL")?)),
        None => None,
    };
    let mut rela_dyn = match elf.dyn_val(elf::DT_RELA) {
        Some(a) => {
            let mut size = elf.dyn_val(elf::DT_RELASZ).unwrap_or(0);
            // Some linkers make DT_RELASZ include .rela.plt at its end; keep them apart.
            if let Some(p) = plt_addr {
                if p > a && p < a + size && p + plt_size == a + size {
                    size = p - a;
                }
            }
            rewrite_rela(elf.dyn_table(elf::DT_RELA, size, "DT_RELA")?)
        }
        None => Vec::new(),
    };
    for (j, (slot, imp)) in slots.iter().zip(&IMPORTS).enumerate() {
        put_u64(&mut rela_dyn, *slot);
        put_u64(&mut rela_dyn, (((pos + j as u32) as u64) << 32) | imp.2 as u64);
        put_u64(&mut rela_dyn, 0);
    }
    let _ = u16_at;
    Ok(Tables { dynsym, dynstr, gnu_hash, hash, versym, rela_dyn, rela_plt, needed_str, runpath })
}

/// The new `.dynamic` (exactly `dynamic_entries(elf)` entries).
pub fn dynamic(elf: &InputElf, t: &Tables, at: &Placed) -> Vec<u8> {
    let mut ents: Vec<(u64, u64)> = Vec::new();
    let mut needed_done = !elf.dynamic.iter().any(|(tag, _)| *tag == elf::DT_NEEDED as u64);
    if needed_done {
        ents.push((elf::DT_NEEDED as u64, t.needed_str as u64));
    }
    for &(tag, val) in &elf.dynamic {
        if tag == elf::DT_NEEDED as u64 && !needed_done {
            ents.push((tag, t.needed_str as u64));
            needed_done = true;
        }
        let v = match tag as u32 {
            elf::DT_STRTAB => at.dynstr,
            elf::DT_STRSZ => t.dynstr.len() as u64,
            elf::DT_SYMTAB => at.dynsym,
            elf::DT_GNU_HASH => at.gnu_hash,
            elf::DT_HASH => at.hash,
            elf::DT_VERSYM => at.versym,
            elf::DT_RELA => at.rela_dyn,
            elf::DT_RELASZ => t.rela_dyn.len() as u64,
            elf::DT_JMPREL => at.rela_plt,
            x if x as u64 == t.runpath.0 => t.runpath.1 as u64,
            x if super::front::POINTER_TAGS.contains(&x) => at.shift.filter(|sh| sh.moves(val)).map_or(val, |sh| sh.addr(val)),
            _ => val,
        };
        ents.push((tag, v));
    }
    if t.runpath.2 {
        ents.push((t.runpath.0, t.runpath.1 as u64));
    }
    if elf.dyn_val(elf::DT_RELA).is_none() {
        ents.push((elf::DT_RELA as u64, at.rela_dyn));
        ents.push((elf::DT_RELASZ as u64, t.rela_dyn.len() as u64));
        ents.push((elf::DT_RELAENT as u64, 24));
    }
    let n = dynamic_entries(elf);
    ents.resize(n, (elf::DT_NULL as u64, 0));
    let mut out = Vec::with_capacity(n * 16);
    for (tag, v) in ents {
        put_u64(&mut out, tag);
        put_u64(&mut out, v);
    }
    out
}
