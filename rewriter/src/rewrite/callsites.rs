//! Per-call-site decisions (hook ABI v3, `Classification.calls`): which calls of
//! allocation functions are retargeted, and to what.
//!
//! - a pass-through direct `call/jmp rel32` to a pad-hooked function goes to its
//!   `f.allocsite_pad` (the unhooked original): no bookkeeping at all;
//! - a call-site-mode function's direct calls go to its trampoline, except the
//!   pass-through ones (left alone: they reach the unhooked original);
//! - pass-through calls the rewriter cannot retarget (indirect, or not `rel32`) are
//!   listed for the callee trampoline's own check of its site;
//! - a classified call of an import the runtime interposes goes to a per-import mark
//!   stub; of another import, to an import trampoline (call-site mode, flag IMPORT).
//!
//! Calls among another function's displaced launch-pad instructions move with the pad:
//! their decision is applied when the pad is relocated (`pad::relocate`), except mark
//! stubs (the allocator would see a return address in the new code): those stay, and
//! the log says so.

use super::elf::InputElf;
use super::pad::Pad;
use super::plan::Hook;
use super::trampoline::Callee;
use allocsite_analysis::classification::{AllocCall, CallVia};
use allocsite_analysis::{Classification, Kind};
use iced_x86::{Code, Decoder, DecoderOptions, Instruction, OpKind};
use std::collections::HashMap;

/// Where a retargeted call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    /// The trampoline of hook `k` (local call-site mode or import trampoline).
    Entry(usize),
    /// The relocated launch pad of hook `k` (pass-through: the unhooked original).
    Pad(usize),
    /// Mark stub `k`.
    Mark(usize),
}

/// One call instruction to retarget.
#[derive(Clone, Debug)]
pub struct Site {
    pub at: u64,
    pub end: u64,
    /// `call/jmp [rip+slot]` (rewritten as `nop…; call/jmp rel32`), else `call/jmp rel32`.
    pub mem: bool,
    pub call: bool,
    pub to: To,
    /// Inside a hooked function's launch pad: applied when that pad is relocated.
    pub in_pad: bool,
}

pub struct MarkStub {
    pub name: String,
    pub callee: Callee,
    pub sites: usize,
}

/// The per-site plan.
pub struct Sites<'c> {
    pub sites: Vec<Site>,
    pub marks: Vec<MarkStub>,
    /// Import trampolines, to append after the local hooks (indices continue theirs).
    pub imports: Vec<Hook<'c>>,
    /// Per hook (local, then imports): sorted pass-through return addresses for the
    /// trampoline's own check.
    pub pass_through: Vec<Vec<u64>>,
    /// Per hook G: the hooks F whose body tail-calls G pass-through in a way that
    /// cannot be retargeted (through a pointer, `jmp rel8`). G then sees F's
    /// trampoline's return point as its site: that address (known once the
    /// trampolines are placed) joins G's pass-through addresses.
    pub tail_from: Vec<Vec<usize>>,
    /// Lines for the rewrite log.
    pub log: Vec<String>,
}

/// The allocators the runtime interposes (runtime/README.md, "Heap index"), free kinds
/// excepted: a classified call of one of these only needs the mark.
const INTERPOSED: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "strdup",
    "strndup",
    "__strdup",
    "__strndup",
];

fn interposed(name: &str) -> bool {
    let base = name.split('@').next().unwrap_or(name);
    INTERPOSED.contains(&base) || base.starts_with("_Znw") || base.starts_with("_Zna") || base.starts_with("operator new")
}

/// Stack words an import trampoline copies when the callee's argument count is unknown
/// or it is variadic (`asprintf`): the words right above the return address belong to
/// the caller's frame, so reading them is safe, and a callee reading fewer ignores them.
const IMPORT_STACK_WORDS: u32 = 8;

/// The call/jmp at `at` (`rel32`, `jmp rel8`, or `[rip+slot]`): `(instruction, memory form)`.
fn branch_at(elf: &InputElf, at: u64) -> Option<(Instruction, bool)> {
    let bytes = (1..=15).rev().find_map(|n| elf.bytes_at(at, n))?;
    let i = Decoder::with_ip(64, bytes, at, DecoderOptions::NONE).decode();
    match i.code() {
        Code::Call_rel32_64 | Code::Jmp_rel32_64 | Code::Jmp_rel8_64 => Some((i, false)),
        Code::Call_rm64 | Code::Jmp_rm64 if i.op0_kind() == OpKind::Memory && i.is_ip_rel_memory_operand() && i.len() >= 5 => Some((i, true)),
        _ => None,
    }
}

fn is_call(i: &Instruction) -> bool {
    matches!(i.code(), Code::Call_rel32_64 | Code::Call_rm64)
}

fn in_pad(hooks: &[&Hook], at: u64) -> bool {
    hooks.iter().any(|g| g.pad.len > 0 && at >= g.pad.start && at < g.pad.start + g.pad.len)
}

pub fn plan<'c>(elf: &InputElf, cls: &'c Classification, hooks: &[&Hook<'c>], ctors: bool) -> Sites<'c> {
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (k, h) in hooks.iter().enumerate() {
        by_name.insert(h.name.as_str(), k);
        by_name.insert(h.f.name.as_str(), k);
        for a in &h.f.aliases {
            by_name.entry(a.as_str()).or_insert(k);
        }
    }
    let mut out = Sites { sites: Vec::new(), marks: Vec::new(), imports: Vec::new(), pass_through: vec![Vec::new(); hooks.len()], tail_from: vec![Vec::new(); hooks.len()], log: Vec::new() };
    let (mut bypassed, mut marked, mut import_hooked, mut left) = (0usize, 0usize, 0usize, Vec::<String>::new());
    let mut pt_direct: Vec<u64> = Vec::new();
    // (F, G) pass-through tail calls left for G's check, and (F, G) classified tail calls.
    let mut pt_tails: Vec<(usize, usize)> = Vec::new();
    let mut cl_tails: Vec<(usize, usize)> = Vec::new();
    let caller_of = |c: &AllocCall| by_name.get(c.caller.as_str()).copied();
    // Import trampolines under construction: name → (import, callee, sites).
    let mut import_tr: Vec<(&'c allocsite_analysis::AllocFn, Option<Callee>, usize)> = Vec::new();
    let mut import_sites: Vec<(usize, Site)> = Vec::new();

    for c in &cls.calls {
        let candidates: Vec<&str> = c.callee.split('|').collect();
        if c.tail {
            for g in candidates.iter().filter_map(|n| by_name.get(n).copied()) {
                if let Some(f) = caller_of(c) {
                    if !c.pass_through {
                        cl_tails.push((f, g));
                    } else if c.via == CallVia::Indirect || candidates.len() > 1 {
                        pt_tails.push((f, g));
                    }
                }
            }
        }
        if c.via == CallVia::Indirect || candidates.len() > 1 {
            if c.pass_through && !c.tail {
                for n in candidates {
                    if let Some(&k) = by_name.get(n) {
                        out.pass_through[k].push(c.ret.0);
                    }
                }
            }
            continue;
        }
        match c.via {
            CallVia::Direct => {
                if !c.pass_through {
                    continue;
                }
                pt_direct.push(c.at.0);
                let Some(&k) = by_name.get(c.callee.as_str()) else { continue };
                if !hooks[k].patches_entry() {
                    continue; // call-site mode: left alone below, reaches the original
                }
                match branch_at(elf, c.at.0) {
                    // A short `jmp rel8` moves with a launch pad, re-encoded there.
                    Some((i, false)) if i.near_branch_target() == hooks[k].pad.entry && (i.len() >= 5 || in_pad(hooks, i.ip())) => {
                        out.sites.push(Site { at: i.ip(), end: i.next_ip(), mem: false, call: is_call(&i), to: To::Pad(k), in_pad: in_pad(hooks, i.ip()) });
                        bypassed += 1;
                    }
                    _ if !c.tail => out.pass_through[k].push(c.ret.0),
                    _ => match caller_of(c) {
                        Some(f) => pt_tails.push((f, k)),
                        None => left.push(format!("{:#x} (pass-through tail call to {} from an unhooked function, not a jmp rel32)", c.at.0, c.callee)),
                    },
                }
            }
            CallVia::Plt | CallVia::Got => {
                if c.pass_through {
                    continue; // forwards the caller's own request: not a site
                }
                if let Err(why) = import_site(elf, cls, c, hooks, ctors, &mut out, &mut import_tr, &mut import_sites) {
                    if !why.is_empty() {
                        left.push(format!("{:#x} ({} {why})", c.at.0, c.callee));
                    }
                    continue;
                }
                if matches!(out.sites.last(), Some(s) if matches!(s.to, To::Mark(_)) && s.at == c.at.0) {
                    marked += 1;
                } else {
                    import_hooked += 1;
                }
            }
            CallVia::Indirect => {}
        }
    }

    // A pass-through tail call from F to G: G's site is then F's trampoline's return
    // point, or, when F itself was called pass-through (straight to its pad or through
    // its check), that call's return address. Not when F also tail-calls G classified
    // (the same sites would stand for both).
    pt_tails.sort_unstable();
    pt_tails.dedup();
    for &(f, g) in &pt_tails {
        if cl_tails.contains(&(f, g)) {
            left.push(format!("pass-through tail call from {} to {} (it also tail-calls it classified)", hooks[f].name, hooks[g].name));
            continue;
        }
        out.tail_from[g].push(f);
        let into_f: Vec<u64> = cls
            .calls
            .iter()
            .filter(|c| c.pass_through && !c.tail && c.callee.split('|').any(|n| by_name.get(n) == Some(&f)))
            .map(|c| c.ret.0)
            .collect();
        out.pass_through[g].extend(into_f);
    }

    // Call-site-mode functions: every direct call but the pass-through ones.
    let mut classified = 0;
    for (k, h) in hooks.iter().enumerate().filter(|(_, h)| !h.patches_entry()) {
        for &(at, end) in &h.call_sites {
            if pt_direct.contains(&at) {
                continue;
            }
            let call = elf.bytes_at(at, 1).is_some_and(|b| b[0] == 0xe8);
            out.sites.push(Site { at, end, mem: false, call, to: To::Entry(k), in_pad: in_pad(hooks, at) });
            classified += 1;
        }
    }

    // Import trampolines become call-site-mode hooks after the local ones.
    for (f, callee, n) in import_tr {
        let (entry, got) = match callee {
            Some(Callee::Plt(p)) => (p, None),
            Some(Callee::Got(g)) => (0, Some(g)),
            None => (0, None),
        };
        let stack_words = f.nargs.map_or(IMPORT_STACK_WORDS, |n| (n as u32).saturating_sub(6).max(IMPORT_STACK_WORDS));
        let how = if got.is_some() { "its GOT slot" } else { "its PLT stub" };
        out.log.push(format!("hooked import {} at {entry:#x} (import trampoline through {how}; {n} classified call site(s) retargeted)", f.name));
        out.imports.push(Hook {
            f,
            name: f.name.clone(),
            pad: Pad::none(entry),
            stack_words,
            rows: Vec::new(),
            call_sites: Vec::new(),
            why_not_pad: Some("imported".into()),
            caller_side: false,
            got,
            import: true,
        });
        out.pass_through.push(Vec::new());
        out.tail_from.push(Vec::new());
    }
    for (j, mut s) in import_sites {
        s.to = To::Entry(hooks.len() + j);
        out.sites.push(s);
    }
    for m in &out.marks {
        let how = match m.callee {
            Callee::Plt(p) => format!("jmp to its PLT stub {p:#x}"),
            Callee::Got(g) => format!("jmp through its GOT slot {g:#x}"),
        };
        out.log.push(format!("marked {} (mark stub {}.allocsite_mark, {how}; {} classified call site(s) retargeted)", m.name, m.name, m.sites));
    }
    // A mark stub seen from a relocated pad would give the allocator a return address in
    // the new code: such calls stay, attributed as before (the hooked caller's site).
    let mut kept = Vec::new();
    for s in out.sites.drain(..) {
        if s.in_pad && matches!(s.to, To::Mark(_)) {
            left.push(format!("{:#x} (classified call inside a launch pad, not marked)", s.at));
            marked -= 1;
        } else {
            kept.push(s);
        }
    }
    out.sites = kept;
    out.sites.sort_by_key(|s| s.at);
    out.sites.dedup_by_key(|s| s.at);
    for v in &mut out.pass_through {
        v.sort_unstable();
        v.dedup();
    }
    let checked: usize = out.pass_through.iter().map(Vec::len).sum::<usize>() + out.tail_from.iter().map(Vec::len).sum::<usize>();
    let in_pads = out.sites.iter().filter(|s| s.in_pad).count();
    out.log.push(format!(
        "call sites: {bypassed} pass-through bypassed to the pad, {checked} pass-through left to the trampoline's check, {classified} classified to call-site trampolines, {marked} classified marked, {import_hooked} import-hooked; {in_pads} of the retargeted inside launch pads (retargeted where the pad is relocated); {} left as they are{}",
        left.len(),
        if left.is_empty() { String::new() } else { format!(": {}", left.join(", ")) }
    ));
    out
}

/// Plan the classified import call `c`. `Err("")`: nothing to do (a free, a ctor
/// without `--ctors`, an import the classification does not describe).
#[allow(clippy::too_many_arguments)]
fn import_site<'c>(
    elf: &InputElf,
    cls: &'c Classification,
    c: &AllocCall,
    hooks: &[&Hook],
    ctors: bool,
    out: &mut Sites<'c>,
    import_tr: &mut Vec<(&'c allocsite_analysis::AllocFn, Option<Callee>, usize)>,
    import_sites: &mut Vec<(usize, Site)>,
) -> Result<(), String> {
    let Some(f) = cls.imports.iter().find(|f| f.name == c.callee) else {
        return Err("not among the classification's imports".into());
    };
    if f.kind == Kind::Free || (f.kind == Kind::Ctor && !ctors) {
        return Err(String::new());
    }
    let Some((i, mem)) = branch_at(elf, c.at.0).filter(|(i, _)| i.len() >= 5) else {
        return Err("not a call/jmp rel32 or [rip+slot]".into());
    };
    let callee = if mem { Callee::Got(i.ip_rel_memory_address()) } else { Callee::Plt(i.near_branch_target()) };
    let site = Site { at: i.ip(), end: i.next_ip(), mem, call: is_call(&i), to: To::Mark(0), in_pad: in_pad(hooks, i.ip()) };
    if f.kind != Kind::Ctor && interposed(&f.name) {
        let k = match out.marks.iter().position(|m| m.name == f.name && m.callee == callee) {
            Some(k) => k,
            None => {
                out.marks.push(MarkStub { name: f.name.clone(), callee, sites: 0 });
                out.marks.len() - 1
            }
        };
        if !site.in_pad {
            out.marks[k].sites += 1;
        }
        out.sites.push(Site { to: To::Mark(k), ..site });
        return Ok(());
    }
    let j = match import_tr.iter().position(|t| std::ptr::eq(t.0, f)) {
        Some(j) => j,
        None => {
            import_tr.push((f, None, 0));
            import_tr.len() - 1
        }
    };
    // One way in for every site: the GOT slot when any site uses one (bound at load
    // time), else the PLT stub.
    let t = &mut import_tr[j];
    t.1 = match (t.1, callee) {
        (Some(Callee::Got(g)), _) => Some(Callee::Got(g)),
        (_, c) => Some(c),
    };
    t.2 += 1;
    import_sites.push((j, site));
    Ok(())
}
