//! `allocsite rewrite`: read the ELF → plan launch pads → build trampolines → link the
//! runtime (dynamic tables) → lay out the new segments → write CFI, headers, file.
//!
//! Output layout (all appended after the input, see `layout`):
//! - RW  PT_LOAD: new `.dynamic`, `.allocsite.data` (GLOB_DAT slots, descriptors, names)
//! - R+X PT_LOAD: `.allocsite.text` (per function: `f.allocsite_entry`, `f.allocsite_pad`)
//! - R   PT_LOAD: the header-like sections that followed the old program header table
//!   (moved as one block, `front`) — or, when they cannot move, the program header
//!   table itself —, copies of `.dynsym`, `.dynstr`, `.gnu.hash`, `.hash`,
//!   `.gnu.version`, `.rela.dyn`, `.rela.plt`, `.allocsite.eh_frame` (FDEs of the new
//!   code) and a new `.eh_frame_hdr` listing every FDE.
//! - the program header table itself right after the ELF header (`front`).
//! - non-allocated: `.debug_frame` (trampoline FDEs for gdb), `.debug_info`,
//!   `.debug_abbrev`, `.debug_line`, `.debug_rnglists`/`.debug_ranges` when the line
//!   tables change (`lines`), `.symtab`, `.strtab`, `.shstrtab`, section headers.

pub mod callsites;
pub mod check;
pub mod cfi;
pub mod clobber;
pub mod dynamic;
pub mod elf;
pub mod emit;
pub mod front;
pub mod layout;
pub mod lines;
pub mod pad;
pub mod plan;
pub mod runtime_lib;
pub mod trampoline;

use allocsite_analysis::{Classification, Kind, Role};
use elf::bytes::{put_u16, put_u32, put_u64};
use object::elf as E;
use plan::Outcome;
use std::path::PathBuf;
use std::time::Instant;

/// "ASF5": hook ABI version 5 (runtime/README.md).
pub const DESCRIPTOR_MAGIC: u32 = 0x3546_5341;
/// `struct allocsite_fn` v3 as C lays it out: 16 bytes of header fields, then six
/// 8-byte fields (64 bytes).
pub const DESCRIPTOR_SIZE: usize = 64;
/// Offsets in the descriptor the trampolines read: `pt_count` (u32) and `pt_rel` (i64).
pub const DESC_PT_COUNT: i64 = 12;
pub const DESC_PT_REL: i64 = 56;
/// Descriptor flag: an imported function hooked at its call sites.
pub const FLAG_IMPORT: u16 = 1;
/// The section of the call-site-mode trampolines of local functions. gdb takes an
/// undefined `.dynsym` function symbol for a PLT stub only where the section at its
/// address is named `.plt…` (elfread.c), and `step` then goes on into the function of
/// that name (`dynamic::Stepper`).
pub const STEP_SECTION: &str = ".plt.allocsite";
/// Size of the global `.symtab` callee names: 0, so that every tool that names code
/// by its symbols (gdb's minimal symbols, perf, the runtime's reports) keeps the
/// function's own name, which has a size; gdb finds the callee by name alone.
const CALLEE_SIZE: u64 = 0;

/// What `allocsite rewrite` was asked to do (the CLI builds it).
pub struct RewriteArgs {
    pub input: PathBuf,
    pub output: PathBuf,
    /// A classification (JSON) to use instead of analysing the input.
    pub fns: Option<PathBuf>,
    /// Extra allocation/free functions for the analysis, liballocs syntax.
    pub alloc_fns: Option<String>,
    pub free_fns: Option<String>,
    /// Any refusal is an error, no output.
    pub strict: bool,
    /// Where `liballocsite_rt.so` is (default: `$ALLOCSITE_RT`, next to the executable).
    pub runtime: Option<PathBuf>,
    pub verbose: bool,
    /// Hook constructors too (`Kind::Ctor`, pad mode): they count for the outermost site.
    pub ctors: bool,
    /// Heap-check options baked into OUT (`--check`, issue 12).
    pub check: Option<String>,
    /// Instrument the functions reached only by direct calls at their call sites (the
    /// default; `--entry-hooks` turns it off) instead of patching their entries.
    pub caller_side: bool,
}

/// What one rewrite produced.
pub struct Rewritten<'c> {
    pub bytes: Vec<u8>,
    pub outcomes: Vec<Outcome<'c>>,
    /// Lines about import trampolines, mark stubs and retargeted call sites.
    pub site_log: Vec<String>,
    /// Things left undone that do not affect running the output (debug info).
    pub notes: Vec<String>,
}

impl Outcome<'_> {
    pub fn line(&self) -> String {
        match self {
            Outcome::Hook(h) if h.caller_side => format!(
                "hooked {} at {:#x} (caller side: {} direct call/jmp, the classified ones retargeted to the trampoline, entry untouched; {})",
                h.name,
                h.pad.entry,
                h.call_sites.len(),
                h.why_not_pad.as_deref().unwrap_or("")
            ),
            Outcome::Hook(h) if !h.patches_entry() => {
                let calls = h.call_sites.len();
                format!(
                    "hooked {} at {:#x} (call sites: {calls} direct call/jmp, the classified ones retargeted to the trampoline, entry untouched; no launch pad because {})",
                    h.name,
                    h.pad.entry,
                    h.why_not_pad.as_deref().unwrap_or("")
                )
            }
            Outcome::Hook(h) => {
                let mut how = format!("pad {} bytes: {}", h.pad.len, pad::text(&h.pad));
                if h.pad.padding > 0 {
                    how.push_str(&format!(" + {} bytes of alignment padding", h.pad.padding));
                }
                if h.stack_words > 0 {
                    how.push_str(&format!("; copies {} stack argument words", h.stack_words));
                }
                format!("hooked {} at {:#x} ({how})", h.name, h.pad.entry)
            }
            Outcome::Refused { name, reason, .. } => format!("refused {name}: {reason}"),
        }
    }
}

/// Rewrite `data` (the bytes of `args.input`) per `cls` and write `args.output`.
pub fn run(args: &RewriteArgs, cls: &Classification, data: &[u8]) -> Result<(), String> {
    let input = args.input.display();
    let t0 = Instant::now();
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&args.input).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o755)
    };
    let runtime = runtime_lib::locate(args.runtime.as_deref())?;
    if let Some(c) = &args.check {
        check::validate(c)?;
    }
    let out = rewrite_bytes_with(data, cls, args.ctors, args.check.as_deref(), args.caller_side).map_err(|e| format!("{input}: {e}"))?;
    let mut refused = 0;
    let mut log = String::new();
    for o in &out.outcomes {
        log += &format!("{}\n", o.line());
        refused += usize::from(matches!(o, Outcome::Refused { .. }));
    }
    for l in &out.site_log {
        log += &format!("{l}\n");
    }
    for n in &out.notes {
        log += &format!("note: {n}\n");
    }
    // The log is for the user; a closed or full stdout must not stop the rewrite.
    let _ = crate::stdout::write(&log);
    if args.strict && refused > 0 {
        return Err(format!("{input}: {refused} allocation function(s) refused (--strict); no output written"));
    }
    crate::atomic::write_atomic(&args.output, &out.bytes, Some(mode))
        .map_err(|e| format!("{}: cannot write: {e}", args.output.display()))?;
    runtime_lib::install_next_to(&runtime, &args.output)?;
    if args.verbose {
        eprintln!(
            "allocsite: {} → {}: {} hooked, {refused} refused, {} → {} bytes (+{:.1}%), {:.3} s",
            input,
            args.output.display(),
            out.outcomes.len() - refused,
            data.len(),
            out.bytes.len(),
            100.0 * (out.bytes.len() as f64 - data.len() as f64) / data.len().max(1) as f64,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The descriptor of `h` at `at`; `map` = (new code start, end, site-map routine);
/// `pt` = (table address, pass-through return addresses).
fn descriptor(h: &plan::Hook, at: u64, name_at: u64, map: Option<(u64, u64, u64)>, pt: (u64, &[u64])) -> Vec<u8> {
    let f = h.f;
    let arg = |r: Role| f.arg(r).map_or(-1i8, |v| v as i8) as u8;
    let mut d = Vec::with_capacity(DESCRIPTOR_SIZE);
    put_u32(&mut d, DESCRIPTOR_MAGIC);
    d.push(match f.kind {
        Kind::Alloc => 0,
        Kind::Realloc => 1,
        Kind::Free => 2,
        Kind::Suballoc => 3,
        Kind::Ctor => 4,
    });
    d.extend_from_slice(&[arg(Role::Size), arg(Role::Count), arg(Role::Ptr), arg(Role::Out)]);
    d.push(f.nargs.unwrap_or(0xff));
    put_u16(&mut d, if h.import { FLAG_IMPORT } else { 0 });
    put_u32(&mut d, pt.1.len() as u32);
    // An import reached only through its GOT slot has no entry address.
    put_u64(&mut d, if h.import && h.pad.entry == 0 { 0 } else { h.pad.entry.wrapping_sub(at) });
    put_u64(&mut d, name_at.wrapping_sub(at));
    let (lo, hi, thunk) = map.map_or((0, 0, 0), |(lo, hi, t)| (lo.wrapping_sub(at), hi.wrapping_sub(at), t.wrapping_sub(at)));
    put_u64(&mut d, lo);
    put_u64(&mut d, hi);
    put_u64(&mut d, thunk);
    put_u64(&mut d, if pt.1.is_empty() { 0 } else { pt.0.wrapping_sub(at) });
    d
}

/// Rewrite an ELF image in memory (the default plan: caller side where possible).
pub fn rewrite_bytes<'c>(data: &[u8], cls: &'c Classification, ctors: bool) -> Result<Rewritten<'c>, String> {
    rewrite_bytes_with(data, cls, ctors, None, true)
}

/// `rewrite_bytes`, with heap-check options to bake in (`rewrite --check`).
pub fn rewrite_bytes_with<'c>(data: &[u8], cls: &'c Classification, ctors: bool, check: Option<&str>, caller_side: bool) -> Result<Rewritten<'c>, String> {
    let elf = elf::InputElf::parse(data)?;
    dynamic::check(&elf)?;
    if elf.section(".allocsite.text").is_some() {
        return Err("already rewritten by allocsite".into());
    }
    let eh = cfi::EhFrameIndex::read(&elf)?;
    let outcomes = plan::plan(&elf, &eh, cls, ctors, caller_side);
    let local: Vec<&plan::Hook> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Hook(h) => Some(h),
            _ => None,
        })
        .collect();
    let sites = callsites::plan(&elf, cls, &local, ctors);
    let hooks: Vec<&plan::Hook> = local.iter().copied().chain(sites.imports.iter()).collect();
    // Per hook: whether a site may lie in the new code (`Refs::walk`), and whether its
    // callers already assume every caller-saved register clobbered (`Refs::clobbers_all`;
    // an import is another object's code: always).
    let walk: Vec<bool> = (0..hooks.len())
        .map(|k| hooks[k].patches_entry() || sites.sites.iter().any(|s| s.to == callsites::To::Entry(k) && (!s.call || s.in_pad)))
        .collect();
    let mut clobbers = clobber::Clobbers::new(&elf, &eh);
    let clobbers_all: Vec<bool> = hooks.iter().map(|h| h.import || clobbers.clobbers_all(h.f.address.0)).collect();

    // RW: .dynamic, then .allocsite.data (slots, descriptors, names).
    let mut rw = layout::first_region(&elf, 0)?;
    let dyn_size = dynamic::dynamic_entries(&elf) * 16;
    let dyn_addr = rw.reserve(dyn_size, 8);
    let data_start = rw.align(8);
    let slots = dynamic::IMPORTS.map(|_| rw.reserve(8, 8));
    let descs: Vec<u64> = hooks.iter().map(|_| rw.reserve(DESCRIPTOR_SIZE, 8)).collect();
    let names: Vec<u64> = hooks
        .iter()
        .map(|h| {
            let mut n = h.name.as_bytes().to_vec();
            n.push(0);
            rw.place(&n, 1)
        })
        .collect();
    let pt_len = |k: usize| sites.pass_through[k].len() + sites.tail_from[k].len();
    let pt_tables: Vec<u64> = (0..hooks.len()).map(|k| if pt_len(k) == 0 { 0 } else { rw.reserve(8 * pt_len(k), 8) }).collect();
    if let Some(c) = check {
        rw.place(&check::blob(c), 8);
    }
    let data_size = rw.here() - data_start;

    // R+X: trampolines. Built twice: the first pass learns where calls inside relocated
    // pads return to (sizes do not depend on those values), the second translates them.
    let mut rx = rw.next(0xcc);
    // A shared site-translation routine comes first when any pad calls or tail-calls
    // (a pad ending in a direct or indirect jmp): sites that point into the new code
    // are mapped back. Everything is built twice: passes repeat until the addresses they
    // use are the ones they produce (two or three passes).
    let needs_map = !hooks.is_empty();
    let mut built = Vec::new();
    let mut thunk = None;
    let mut map = None;
    let (mut lo, mut hi) = (rx.addr, rx.addr + 1);
    let mut calls: Vec<(u64, u64)> = Vec::new();
    let mut returns: Vec<(u64, i64)> = Vec::new();
    // Per-site targets of the calls that move with a pad: first their original targets
    // (same encoding size class), then each pass's addresses until they settle.
    let mut redirect: Vec<(u64, u64)> = Vec::new();
    let mut marks: Vec<u64> = Vec::new();
    let mut mark_fdes = Vec::new();
    let order: Vec<usize> = (0..hooks.len()).filter(|&k| !hooks[k].steps_through()).chain((0..hooks.len()).filter(|&k| hooks[k].steps_through())).collect();
    let mut steppers_at: Option<u64> = None;
    for pass in 0..5 {
        rx.data.clear();
        built.clear();
        marks.clear();
        mark_fdes.clear();
        for m in &sites.marks {
            let at = rx.align(16);
            let (code, fde) = trampoline::mark_stub(at, slots[3], m.callee)?;
            rx.place(&code, 1);
            marks.push(at);
            mark_fdes.push(fde);
        }
        map = if needs_map {
            let at = rx.align(16);
            let (code, fde) = trampoline::site_thunk(at, lo, hi, &calls, &returns)?;
            rx.place(&code, 1);
            thunk = Some((at, fde));
            Some((lo, hi, at))
        } else {
            None
        };
        // The trampolines gdb steps through (call-site mode) come last, together:
        // they form `.plt.allocsite`.
        let mut slots_built: Vec<Option<(u64, trampoline::Built)>> = hooks.iter().map(|_| None).collect();
        steppers_at = None;
        for &k in &order {
            let (h, d) = (hooks[k], descs[k]);
            let pt = pass_through_of(&sites, k, &returns, lo);
            let at = rx.align(16);
            if h.steps_through() && steppers_at.is_none() {
                steppers_at = Some(at);
            }
            let refs = trampoline::Refs {
                descriptor: d,
                enter_slot: slots[0],
                exit_slot: slots[1],
                masks_slot: slots[2],
                tpoff_slot: slots[3],
                new_code: (lo, hi),
                redirect: redirect.clone(),
                pass_through: pt,
                walk: walk[k],
                clobbers_all: clobbers_all[k],
            };
            let b = trampoline::build(h, &refs, at).map_err(|e| format!("{}: {e}", h.name))?;
            rx.place(&b.code, 1);
            slots_built[k] = Some((at, b));
        }
        built.extend(slots_built.into_iter().flatten());
        if !needs_map {
            break;
        }
        let (c2, r2): (Vec<_>, Vec<_>) = (
            built.iter().flat_map(|(_, b)| b.pad_calls.iter().copied()).collect(),
            built.iter().map(|(_, b)| b.pad_return).collect(),
        );
        let (lo2, hi2) = (rx.addr, rx.here());
        let d2: Vec<(u64, u64)> = sites
            .sites
            .iter()
            .filter(|s| s.in_pad)
            .map(|s| (s.at, target_of(s.to, &built, &marks)))
            .collect();
        if c2 == calls && r2 == returns && (lo2, hi2) == (lo, hi) && d2 == redirect {
            break;
        }
        redirect = d2;
        if pass == 4 {
            return Err("internal error: trampoline addresses do not settle".into());
        }
        (calls, returns, lo, hi) = (c2, r2, lo2, hi2);
    }
    for (k, ((h, &d), &name_at)) in hooks.iter().zip(&descs).zip(&names).enumerate() {
        let (pt, pt_at) = (pass_through_of(&sites, k, &returns, lo), pt_tables[k]);
        let pt = &pt;
        rw.write_at(d, &descriptor(h, d, name_at, map, (pt_at, pt)));
        if !pt.is_empty() {
            let mut t = Vec::with_capacity(8 * pt.len());
            pt.iter().for_each(|&r| put_u64(&mut t, r.wrapping_sub(d)));
            rw.write_at(pt_at, &t);
        }
    }
    let mut fdes = Vec::new();
    let mut symbols = Vec::new();
    let mut patches = Vec::new();
    let mut pad_lines = Vec::new();
    for (k, (m, fde)) in sites.marks.iter().zip(mark_fdes).enumerate() {
        // Two stubs for one import (PLT and GOT callers) keep distinct names.
        let dup = sites.marks[..k].iter().any(|o| o.name == m.name);
        let name = format!("{}.allocsite_mark{}", m.name, if dup { ".got" } else { "" });
        symbols.push(emit::NewSymbol { name, addr: marks[k], size: fde.len as u64, section: ".allocsite.text".into(), global: false });
        fdes.push(fde);
    }
    if let Some((at, fde)) = thunk {
        symbols.push(emit::NewSymbol { name: "allocsite.site_map".into(), addr: at, size: fde.len as u64, section: ".allocsite.text".into(), global: false });
        fdes.push(fde);
    }
    // Call sites inside a launch pad were retargeted when that pad was relocated; the
    // bytes there are overwritten.
    for s in sites.sites.iter().filter(|s| !s.in_pad) {
        let to = target_of(s.to, &built, &marks);
        let rel = i32::try_from(to.wrapping_sub(s.end) as i64).map_err(|_| format!("call site {:#x}: {to:#x} out of rel32 range", s.at))?;
        let bytes = if s.mem {
            // `call/jmp [rip+slot]` → `nop…; call/jmp rel32`, same return address
            let mut b = vec![0x90; (s.end - s.at - 5) as usize];
            b.push(if s.call { 0xe8 } else { 0xe9 });
            b.extend_from_slice(&rel.to_le_bytes());
            b
        } else {
            rel.to_le_bytes().to_vec()
        };
        patches.push((s.end - bytes.len() as u64, bytes));
    }
    let mut steppers = Vec::new();
    let mut step_units = Vec::new();
    for (k, (h, (at, b))) in hooks.iter().zip(built).enumerate() {
        // A trampoline gdb steps through has a size-0 name: gdb looks for the stub
        // symbol at a pc among the symbols there of the same size (minsyms.c,
        // `lookup_minimal_symbol_by_pc_section`), and the stub's (from `.dynsym`) has none.
        let (section, size) = if h.steps_through() { (STEP_SECTION, 0) } else { (".allocsite.text", b.entry_len as u64) };
        symbols.push(emit::NewSymbol { name: format!("{}.allocsite_entry", h.name), addr: at, size, section: section.into(), global: false });
        if h.steps_through() {
            // gdb's way from the trampoline to the function (dynamic::Stepper); two
            // local functions of one name get distinct callee names.
            let dup = hooks[..k].iter().any(|o| o.steps_through() && o.name == h.name);
            let name = format!("{}.allocsite_callee{}", h.name, if dup { format!(".{:x}", h.pad.entry) } else { String::new() });
            if let Some(section) = elf.section_index_at(h.pad.entry).map(|i| elf.shdrs[i].name.clone()) {
                symbols.push(emit::NewSymbol { name: name.clone(), addr: h.pad.entry, size: CALLEE_SIZE, section, global: true });
                steppers.push(dynamic::Stepper { name, addr: at });
                step_units.push(lines::Stepper { name: format!("{}.allocsite_entry", h.name), lo: at, hi: at + b.entry_len as u64 });
            }
        }
        if h.patches_entry() {
            symbols.push(emit::NewSymbol { name: format!("{}.allocsite_pad", h.name), addr: b.pad_addr, size: b.pad_len as u64, section: ".allocsite.text".into(), global: false });
            patches.push((h.pad.start, pad::patch_bytes(&h.pad, at)?));
            pad_lines.push(pad_lines_of(&elf, h, b.pad_addr, b.pad_len, &redirect));
        }
        fdes.extend(b.fdes.into_iter().filter(|f| f.len > 0));
    }
    if rx.data.is_empty() {
        rx.data.push(0xcc); // keep the segment non-empty
    }

    // R: program headers, dynamic tables, FDEs, .eh_frame_hdr.
    let tables = dynamic::build(&elf, slots, &steppers)?;
    let mut r = rx.next(0);
    let phnum = layout::program_header_count(&elf);
    let ph_size = (phnum * elf::Phdr::SIZE) as u64;
    // The program headers go right after the ELF header when the sections there can
    // make room (front.rs); else at the start of this segment.
    let shift = front::plan(&elf, phnum).map(|block| {
        let len = (block.hi - block.lo) as usize;
        while r.here() % 64 != block.lo % 64 {
            r.data.push(0);
        }
        let new_lo = r.place(&data[block.off_lo as usize..block.off_lo as usize + len], 1);
        front::Shift { block, new_lo, new_off: r.offset_of(new_lo) }
    });
    let first_vaddr = elf.loads().next().map_or(0, |p| p.p_vaddr);
    let (ph_off, ph_addr) = match shift {
        Some(_) => (64, first_vaddr + 64),
        None => {
            let a = r.reserve(ph_size as usize, 8);
            (r.offset_of(a), a)
        }
    };
    let mut at = dynamic::Placed::default();
    let mut moved = Vec::new();
    let mut mv = |r: &mut layout::Region, sh_type: u32, old: Option<u64>, bytes: &[u8], align: usize| -> u64 {
        let a = r.place(bytes, align);
        if let Some(old) = old {
            moved.push(emit::Moved { sh_type, old_addr: old, addr: a, off: r.offset_of(a), size: bytes.len() as u64 });
        }
        a
    };
    at.dynsym = mv(&mut r, E::SHT_DYNSYM, elf.dyn_val(E::DT_SYMTAB), &tables.dynsym, 8);
    at.dynstr = mv(&mut r, E::SHT_STRTAB, elf.dyn_val(E::DT_STRTAB), &tables.dynstr, 1);
    if let Some(g) = &tables.gnu_hash {
        at.gnu_hash = mv(&mut r, E::SHT_GNU_HASH, elf.dyn_val(E::DT_GNU_HASH), g, 8);
    }
    if let Some(h) = &tables.hash {
        at.hash = mv(&mut r, E::SHT_HASH, elf.dyn_val(E::DT_HASH), h, 8);
    }
    if let Some(v) = &tables.versym {
        at.versym = mv(&mut r, E::SHT_GNU_VERSYM, elf.dyn_val(E::DT_VERSYM), v, 2);
    }
    at.rela_dyn = mv(&mut r, E::SHT_RELA, elf.dyn_val(E::DT_RELA), &tables.rela_dyn, 8);
    if let Some(p) = &tables.rela_plt {
        at.rela_plt = mv(&mut r, E::SHT_RELA, elf.dyn_val(E::DT_JMPREL), p, 8);
    }
    let ehf_addr = r.align(8);
    let (ehf, records) = cfi::eh_frame(&fdes, ehf_addr)?;
    r.place(&ehf, 8);
    let mut table: Vec<(u64, u64)> = eh.fdes.iter().map(|f| (f.start, f.record)).collect();
    table.extend(fdes.iter().zip(&records).map(|(f, &rec)| (f.start, rec)));
    let hdr_addr = r.align(4);
    let eh_frame_ptr = if elf.section(".eh_frame").is_some() { eh.addr } else { ehf_addr };
    let hdr = cfi::eh_frame_hdr(hdr_addr, eh_frame_ptr, table)?;
    r.place(&hdr, 4);
    if let Some((_, s)) = elf.section(".eh_frame_hdr") {
        moved.push(emit::Moved { sh_type: s.sh_type, old_addr: s.sh_addr, addr: hdr_addr, off: r.offset_of(hdr_addr), size: hdr.len() as u64 });
    }

    // .dynamic, now that every table has its address.
    at.shift = shift;
    let dynamic = dynamic::dynamic(&elf, &tables, &at);
    rw.write_at(dyn_addr, &dynamic);
    moved.push(emit::Moved {
        sh_type: E::SHT_DYNAMIC,
        old_addr: elf.phdrs.iter().find(|p| p.p_type == E::PT_DYNAMIC).map_or(0, |p| p.p_vaddr),
        addr: dyn_addr,
        off: rw.offset_of(dyn_addr),
        size: dyn_size as u64,
    });

    // Program headers.
    let loads = [rw.load(E::PF_R | E::PF_W), rx.load(E::PF_R | E::PF_X), r.load(E::PF_R)];
    let mut phdrs = layout::program_headers(
        &elf,
        (ph_off, ph_addr, ph_size),
        (rw.offset_of(dyn_addr), dyn_addr, dyn_size as u64),
        (r.offset_of(hdr_addr), hdr_addr, hdr.len() as u64),
        loads,
    );
    let mut ph = Vec::new();
    if let Some(sh) = &shift {
        for p in phdrs.iter_mut().filter(|p| p.p_type != E::PT_LOAD && p.p_type != E::PT_PHDR && sh.moves(p.p_vaddr)) {
            p.p_offset = sh.offset(p.p_vaddr);
            p.p_paddr = sh.addr(p.p_vaddr);
            p.p_vaddr = p.p_paddr;
        }
    }
    phdrs.iter().for_each(|p| p.write(&mut ph));
    if shift.is_none() {
        r.write_at(ph_addr, &ph);
    }

    // The file: input with pads patched, then the regions.
    let cut = layout::kept_prefix(&elf);
    let mut file = data[..cut as usize].to_vec();
    for (a, bytes) in &patches {
        let off = elf.vaddr_to_offset(*a).ok_or("pad not in file")? as usize;
        file[off..off + bytes.len()].copy_from_slice(bytes);
    }
    for reg in [&rw, &rx, &r] {
        file.resize(reg.off as usize, 0);
        file.extend_from_slice(&reg.data);
    }
    if shift.is_some() {
        file[64..64 + ph.len()].copy_from_slice(&ph);
    }
    let step_lo = steppers_at.unwrap_or(rx.here());
    let (text_addr, text_size) = (rx.addr, step_lo - rx.addr);
    let mut sections = vec![
        emit::NewSection {
            name: ".allocsite.data",
            sh_type: E::SHT_PROGBITS,
            flags: (E::SHF_ALLOC | E::SHF_WRITE) as u64,
            addr: data_start,
            off: rw.offset_of(data_start),
            size: data_size,
            align: 8,
        },
        emit::NewSection {
            name: ".allocsite.text",
            sh_type: E::SHT_PROGBITS,
            flags: (E::SHF_ALLOC | E::SHF_EXECINSTR) as u64,
            addr: text_addr,
            off: rx.off,
            size: text_size,
            align: 16,
        },
        emit::NewSection {
            name: ".allocsite.eh_frame",
            sh_type: E::SHT_PROGBITS,
            flags: E::SHF_ALLOC as u64,
            addr: ehf_addr,
            off: r.offset_of(ehf_addr),
            size: ehf.len() as u64,
            align: 8,
        },
    ];
    if steppers_at.is_some() {
        sections.push(emit::NewSection {
            name: STEP_SECTION,
            sh_type: E::SHT_PROGBITS,
            flags: (E::SHF_ALLOC | E::SHF_EXECINSTR) as u64,
            addr: step_lo,
            off: rx.offset_of(step_lo),
            size: rx.here() - step_lo,
            align: 16,
        });
    }
    // An input without `.eh_frame_hdr` (a library of data, or code linked without
    // --eh-frame-hdr) gets one with PT_GNU_EH_FRAME; name it, as linkers do.
    if elf.section(".eh_frame_hdr").is_none() {
        sections.push(emit::NewSection {
            name: ".eh_frame_hdr",
            sh_type: E::SHT_PROGBITS,
            flags: E::SHF_ALLOC as u64,
            addr: hdr_addr,
            off: r.offset_of(hdr_addr),
            size: hdr.len() as u64,
            align: 4,
        });
    }
    symbols.extend(stripped_function_names(&elf, &eh));
    let debug_frame = if elf.section(".debug_frame").is_none() && !fdes.is_empty() { Some(cfi::debug_frame(&fdes)?) } else { None };
    let lines = lines::rewrite(&elf, &pad_lines, &step_units);
    let bytes = emit::finish(
        file,
        emit::Tail { moved, sections, debug_frame, debug: lines.sections, symbols, phoff: ph_off, phnum, cut, shift, elf: &elf },
    )?;
    Ok(Rewritten { bytes, outcomes, site_log: sites.log, notes: lines.notes })
}

/// Hook k's pass-through return addresses, sorted: the fixed ones and the return
/// points of the trampolines whose functions tail-call it pass-through (`returns`,
/// from the previous pass; `placeholder` before there is one: same encoding size).
fn pass_through_of(sites: &callsites::Sites, k: usize, returns: &[(u64, i64)], placeholder: u64) -> Vec<u64> {
    let mut v = sites.pass_through[k].clone();
    v.extend(sites.tail_from[k].iter().map(|&f| returns.get(f).map_or(placeholder, |r| r.0)));
    v.sort_unstable();
    v
}

/// The address a retargeted call goes to, from the trampolines built in this pass.
fn target_of(to: callsites::To, built: &[(u64, trampoline::Built)], marks: &[u64]) -> u64 {
    match to {
        callsites::To::Entry(k) => built[k].0,
        callsites::To::Pad(k) => built[k].1.pad_addr,
        callsites::To::Mark(k) => marks[k],
    }
}

/// A stripped input (no `.symtab`): its functions in `.text`, as the unwind table
/// delimits them, named as `allocsite analyze` names them (`sub_<addr>`), unless
/// `.dynsym` already names them. Backtraces, profilers and the runtime's reports
/// can then say which function a site is in (`sub_273120+0x24`, not `git+0x273144`).
fn stripped_function_names(elf: &elf::InputElf, eh: &cfi::EhFrameIndex) -> Vec<emit::NewSymbol> {
    if elf.section(".symtab").is_some() {
        return Vec::new();
    }
    let Some((_, text)) = elf.section(".text") else { return Vec::new() };
    // Without `.symtab`, the input's defined symbols are those of `.dynsym`.
    let named: std::collections::HashSet<u64> = elf.symbols.iter().filter(|s| s.st_type == E::STT_FUNC).map(|s| s.value).collect();
    eh.fdes
        .iter()
        .filter(|f| f.start >= text.sh_addr && f.start < text.sh_addr + text.sh_size && !named.contains(&f.start))
        .map(|f| emit::NewSymbol { name: format!("sub_{:x}", f.start), addr: f.start, size: f.len, section: ".text".into(), global: false })
        .collect()
}

/// What the line tables need to know about one launch pad: the relocation repeated at
/// the trampoline's pad address gives each displaced instruction's new address (the
/// encoder is deterministic; a length mismatch leaves the pad without rows), the
/// trailing jmp back mapped to where it resumes.
fn pad_lines_of(elf: &elf::InputElf, h: &plan::Hook, pad_addr: u64, pad_len: u32, redirect: &[(u64, u64)]) -> lines::PadLines {
    let p = &h.pad;
    let mut instrs = Vec::new();
    if let Ok(rel) = pad::relocate(p, pad_addr, redirect) {
        if rel.code.len() == pad_len as usize {
            // The jmp back counts as its target: finishing a call made in the pad stops
            // on it, as the original stops at the instruction after the call.
            for (o, &orig) in rel.offsets.iter().zip(&rel.origins) {
                if let Some(o) = o {
                    instrs.push((pad_addr + *o as u64, orig));
                }
            }
        }
    }
    let fn_end = p.entry + h.f.code_size.unwrap_or(p.start + p.len - p.entry).max(p.start + p.len - p.entry);
    lines::PadLines {
        name: h.name.clone(),
        entry: p.entry,
        start: p.start,
        end: p.start + p.len,
        fn_end,
        frame_setup: elf.bytes_at(p.entry, 8).map_or(0, lines::frame_setup_len),
        instrs,
        pad_addr,
        pad_end: pad_addr + pad_len as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocsite_analysis::{Addr, AllocFn};
    use elf::bytes::{u16_at, u32_at, u64_at};

    /// The descriptor layout of runtime/README.md (v3's, unchanged in v4 and v5 but for the
    /// magic): the fields where the runtime reads them.
    #[test]
    fn descriptor_v3_layout() {
        let f = AllocFn {
            name: "getline".into(),
            address: Addr(0x1090),
            code_size: None,
            kind: Kind::Realloc,
            args: [(Role::Out, 0u8)].into_iter().collect(),
            nargs: Some(3),
            descriptor: String::new(),
            evidence: Vec::new(),
            aliases: Vec::new(),
            external: true,
        };
        let h = plan::Hook {
            f: &f,
            name: f.name.clone(),
            pad: pad::Pad::none(0x1090),
            stack_words: 8,
            rows: Vec::new(),
            call_sites: Vec::new(),
            why_not_pad: Some("imported".into()),
            caller_side: false,
            got: None,
            import: true,
        };
        let (at, name, table) = (0x5000u64, 0x5100u64, 0x5200u64);
        let d = descriptor(&h, at, name, Some((0x6000, 0x7000, 0x6010)), (table, &[0x1200, 0x1300]));
        assert_eq!(d.len(), DESCRIPTOR_SIZE);
        assert_eq!(u32_at(&d, 0), 0x3546_5341);
        assert_eq!((d[4], d[5] as i8, d[6] as i8, d[7] as i8, d[8] as i8, d[9]), (1, -1, -1, -1, 0, 3));
        assert_eq!(u16_at(&d, 10), FLAG_IMPORT);
        assert_eq!(u32_at(&d, DESC_PT_COUNT as usize), 2);
        assert_eq!(u64_at(&d, 16), 0x1090u64.wrapping_sub(at));
        assert_eq!(u64_at(&d, 24), name - at);
        assert_eq!((u64_at(&d, 32), u64_at(&d, 40), u64_at(&d, 48)), (0x1000, 0x2000, 0x1010));
        assert_eq!(u64_at(&d, DESC_PT_REL as usize), table - at);
        // GOT-only import: no entry; no table: pt_rel 0
        let h = plan::Hook { pad: pad::Pad::none(0), got: Some(0x4000), ..h };
        let d = descriptor(&h, at, name, None, (0, &[]));
        assert_eq!((u64_at(&d, 16), u32_at(&d, 12), u64_at(&d, 56)), (0, 0, 0));
    }
}
