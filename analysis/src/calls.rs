//! The calls of allocation functions the rewriter must tell apart (DESIGN.md §1):
//! every call made by an allocation function or constructor to an allocation
//! function, and every call of an imported allocation function anywhere, each
//! marked pass-through or classified; and the imported allocation functions (and
//! constructors) those calls reach.
//!
//! Pass-through rule (PLAN.md): a call from allocation function F to allocation
//! function G only forwards when G's role argument derives from F's corresponding
//! role parameter — G's size from F's size (scaled or offset: `n << 4`, `n + 8`);
//! for G without a size, its count from F's count or size; G's pointer (free,
//! realloc to 0) from F's pointer; a strdup-like G's string from F's own string
//! parameter. Every other call, and every call from a non-allocation function or
//! a constructor, is classified: the place where the size is decided.

use crate::classification::{Addr, AllocCall, AllocFn, CallVia, Kind, Role};
use crate::classify::{arg, arg_name, expand_helpers, Classifier};
use crate::flow::value::{CONST, GLOAD, GLOBAL};
use crate::flow::{CallSite, Summary, Target, Val};
use crate::seeds::Spec;
use std::collections::BTreeMap;

/// Where an import's spec came from, for its evidence.
pub(crate) type ImportOrigin<'a> = &'a dyn Fn(&str) -> String;

/// The calls (sorted by address) and the imports (sorted by name) of the binary.
pub(crate) fn collect(c: &Classifier, origin: ImportOrigin) -> (Vec<AllocCall>, Vec<AllocFn>) {
    let bin = c.bin;
    let mut calls = Vec::new();
    // name → (spec, lowest PLT stub called)
    let mut imports: BTreeMap<String, (Spec, Option<u64>)> = BTreeMap::new();
    for (f, s) in c.sums.iter().enumerate() {
        if c.is_libc_seed(f) {
            continue;
        }
        let func = &bin.funcs[f];
        // A `.cold` fragment's calls are its parent's: judge them by its roles.
        let owner = match func.name.split_once(".cold") {
            Some((base, _)) => bin.by_name.get(base).copied().unwrap_or(f),
            None => f,
        };
        let caller = c.found.get(&owner).map(|x| (x.spec, bin.funcs[owner].name.as_str()));
        for cs in &s.calls {
            let Some(callee) = c.resolve(cs, f) else { continue };
            let Some(kind) = callee.spec.kind else { continue };
            let import = match &cs.target {
                Target::Import(n) => {
                    let base = n.split('@').next().unwrap_or(n);
                    (!bin.by_name.contains_key(base)).then(|| base.to_string())
                }
                _ => None,
            };
            // `realpath(p, buf)` with a buffer of its own allocates nothing.
            if kind != Kind::Ctor && callee.spec.when_null.is_some_and(|k| known_non_null(&arg(cs, k))) {
                continue;
            }
            let (via, stub) = via(c, cs);
            if let Some(name) = &import {
                let e = imports.entry(name.clone()).or_insert((callee.spec, None));
                if let Some(a) = stub {
                    e.1 = Some(e.1.map_or(a, |b: u64| b.min(a)));
                }
            }
            // Calls of constructors are never allocation calls.
            if kind == Kind::Ctor || (caller.is_none() && import.is_none()) {
                continue;
            }
            let (pass_through, why) = match caller {
                Some((spec, name)) if spec.kind != Some(Kind::Ctor) => rule(c, f, s, cs, &spec, name, &callee.spec, &callee.names),
                Some((_, name)) => (false, format!("{name} is a constructor")),
                None => (false, format!("{} is not an allocation function", func.name)),
            };
            calls.push(AllocCall {
                at: Addr(cs.addr),
                ret: Addr(cs.ret_addr),
                caller: func.name.clone(),
                callee: callee.names.clone(),
                via,
                tail: cs.tail,
                pass_through,
                why,
            });
        }
    }
    calls.sort_by_key(|a| (a.at.0, a.callee.clone()));
    calls.dedup_by(|a, b| a.at == b.at && a.callee == b.callee);
    let imports = imports
        .into_iter()
        .map(|(name, (spec, stub))| import_fn(&name, &spec, stub.unwrap_or(0), origin(&name)))
        .collect();
    (calls, imports)
}

/// A value that can only be a non-NULL address (a local or static buffer).
fn known_non_null(v: &Val) -> bool {
    v.as_stack().is_some() || v.as_global().is_some() || v.as_const().is_some_and(|k| k != 0)
}

/// How the call instruction reaches its callee, and the PLT stub it calls.
fn via(c: &Classifier, cs: &CallSite) -> (CallVia, Option<u64>) {
    use iced_x86::{Decoder, DecoderOptions, OpKind};
    let bytes = c.bin.bytes(cs.addr, cs.ret_addr.saturating_sub(cs.addr).clamp(1, 15)).unwrap_or(&[]);
    let ins = Decoder::with_ip(64, bytes, cs.addr, DecoderOptions::NONE).decode();
    let rel = matches!(ins.op0_kind(), OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16);
    match (&cs.target, rel) {
        (Target::Import(_), true) => {
            // In a `.o` the displacement is a relocation: no stub address yet.
            let t = ins.near_branch_target();
            (CallVia::Plt, c.bin.stubs.contains_key(&t).then_some(t))
        }
        (Target::Import(_), false) => (CallVia::Got, None),
        (Target::Local(_), true) => (CallVia::Direct, None),
        _ => (CallVia::Indirect, None),
    }
}

/// Pass-through or classified, and why, for a call from allocation function F
/// (`fs`, `fname`) to allocation function G (`g`, `gname`).
#[allow(clippy::too_many_arguments)]
fn rule(c: &Classifier, f: usize, s: &Summary, cs: &CallSite, fs: &Spec, fname: &str, g: &Spec, gname: &str) -> (bool, String) {
    // From parameter p, or from the result of a call given p (a size class, SQLite's
    // `xRoundup(n)` through a pointer): a transformation of p all the same.
    let derived = |v: &Val, p: Option<u8>| {
        p.is_some_and(|p| {
            v.params & (1 << p) != 0
                || (0..31).filter(|&k| v.calls & (1 << k) != 0).any(|k| {
                    s.calls.get(k).is_some_and(|h| {
                        let used = c.args_used(f, h);
                        (0..6).any(|i| used & (1 << i) != 0 && h.args[i].params & (1 << p) != 0)
                    })
                })
        })
    };
    // realloc(p, 0) frees p (Lua's luaM_free_ through frealloc).
    let frees = g.kind == Some(Kind::Free)
        || (g.kind == Some(Kind::Realloc) && g.size.is_some_and(|k| arg(cs, k).as_const() == Some(0)));
    if frees {
        let Some(k) = g.ptr else { return (false, format!("{gname} takes no pointer role")) };
        let v = arg(cs, k);
        return if derived(&v, fs.ptr) && v.as_param_arith().is_some() {
            (true, format!("{} → {gname} ptr", arg_name(fs.ptr.unwrap_or(0))))
        } else {
            (false, format!("{gname} ptr from {}, not {fname}'s ptr{}", source(&v), role_pos(fs.ptr)))
        };
    }
    let own_size = fs.size.or(fs.count);
    if let Some(k) = g.size {
        let v = expand_helpers(c, s, arg(cs, k));
        let string = fs.src.filter(|_| own_size.is_none());
        return if derived(&v, own_size) {
            let p = own_size.unwrap_or(0);
            let how = if v.params & (1 << p) != 0 { "" } else { " (through a call's result)" };
            (true, format!("{}{how} → {gname} size", arg_name(p)))
        } else if string.is_some() && crate::strlen::string_param(c.bin, c.sums, s, &v) == string {
            // A strdup by hand: the length of F's own string.
            (true, format!("strlen({}) → {gname} size", arg_name(string.unwrap_or(0))))
        } else {
            (false, format!("{gname} size from {}, not {fname}'s size{}", source(&v), role_pos(own_size)))
        };
    }
    if let Some(k) = g.count {
        let v = expand_helpers(c, s, arg(cs, k));
        return match [fs.count, fs.size].into_iter().flatten().find(|&p| derived(&v, Some(p))) {
            Some(p) => (true, format!("{} → {gname} count", arg_name(p))),
            None => (false, format!("{gname} count from {}, not {fname}'s count or size", source(&v))),
        };
    }
    if let Some(k) = g.src {
        let v = arg(cs, k);
        return if fs.src.is_some() && v.as_param_arith() == fs.src {
            (true, format!("{} → {gname} string", arg_name(fs.src.unwrap_or(0))))
        } else {
            (false, format!("{gname} string from {}, not a string {fname} sizes its block by", source(&v)))
        };
    }
    (false, format!("{gname} takes no size: the call decides what it makes"))
}

fn role_pos(p: Option<u8>) -> String {
    p.map(|p| format!(" ({})", arg_name(p))).unwrap_or_else(|| " (it has none)".to_string())
}

/// A short description of where a value comes from.
fn source(v: &Val) -> String {
    if let Some(k) = v.as_const() {
        return format!("constant {k}");
    }
    let mut parts = Vec::new();
    for p in 0..8 {
        if v.params & (1 << p) != 0 {
            parts.push(arg_name(p));
        }
    }
    for p in 0..8 {
        if v.lparams & (1 << p) != 0 {
            parts.push(format!("memory reached through {}", arg_name(p)));
        }
    }
    if v.calls != 0 || v.outcalls != 0 {
        parts.push("a call's result".to_string());
    }
    if v.has(GLOBAL | GLOAD) {
        parts.push("a global".to_string());
    }
    if parts.is_empty() {
        parts.push(if v.has(CONST) { "constants".to_string() } else { "elsewhere".to_string() });
    }
    parts.join(" and ")
}

/// The classification entry of an imported allocation function.
fn import_fn(name: &str, spec: &Spec, stub: u64, why: String) -> AllocFn {
    let mut args = BTreeMap::new();
    for (role, pos) in [(Role::Size, spec.size), (Role::Count, spec.count), (Role::Ptr, spec.ptr), (Role::Out, spec.out)] {
        if let Some(p) = pos {
            args.insert(role, p);
        }
    }
    let mut f = AllocFn {
        name: name.to_string(),
        address: Addr(stub),
        code_size: None,
        kind: spec.kind.unwrap_or(Kind::Alloc),
        args,
        nargs: Some(spec.nargs),
        descriptor: String::new(),
        evidence: vec![why],
        aliases: Vec::new(),
        external: true,
    };
    f.descriptor = crate::descriptor::render(&f, None);
    f
}
