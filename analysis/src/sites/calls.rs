//! Which call sites of the binary call an allocation function, and which one:
//! direct calls, calls through the PLT or a GOT slot, and indirect calls whose
//! every candidate is an allocation function with the same roles. Pass-through
//! calls (the classification's `calls` says which) are left out.

use crate::classification::{AllocCall, AllocFn, CallVia, Classification, Kind, Role};
use crate::dwarf::{Params, Types};
use crate::flow::{CallSite, Summary, Target};
use crate::indirect::Pointers;
use crate::load::Binary;
use crate::seeds;
use std::collections::HashMap;

/// The roles of the callee that matter at a site.
#[derive(Debug, Clone)]
pub struct Callee {
    pub name: String,
    pub kind: Kind,
    pub size: Option<u8>,
    pub count: Option<u8>,
}

pub struct Raw<'s> {
    pub caller: usize,
    pub call: &'s CallSite,
    pub callee: Callee,
    pub via: CallVia,
}

fn from_fn(f: &AllocFn) -> Callee {
    Callee { name: f.name.clone(), kind: f.kind, size: f.arg(Role::Size), count: f.arg(Role::Count) }
}

fn from_spec(name: &str, s: seeds::Spec) -> Option<Callee> {
    Some(Callee { name: name.to_string(), kind: s.kind?, size: s.size, count: s.count })
}

/// Makes storage: the kinds whose calls are allocation sites.
fn makes(k: Kind) -> bool {
    matches!(k, Kind::Alloc | Kind::Realloc | Kind::Suballoc)
}

pub fn find<'s>(bin: &Binary, sums: &'s [Summary], cls: &Classification, types: &Types, params: &Params) -> Vec<Raw<'s>> {
    let by_addr: HashMap<u64, &AllocFn> = cls.functions.iter().map(|f| (f.address.0, f)).collect();
    let mut by_name: HashMap<&str, &AllocFn> = HashMap::new();
    for f in cls.functions.iter().chain(cls.imports.iter()) {
        by_name.entry(f.name.as_str()).or_insert(f);
        for a in &f.aliases {
            by_name.entry(a.as_str()).or_insert(f);
        }
    }
    let listed: HashMap<u64, &AllocCall> = cls.calls.iter().map(|c| (c.at.0, c)).collect();
    let local = |a: u64| -> Option<&AllocFn> {
        let f = *bin.by_addr.get(&a)?;
        by_addr.get(&bin.funcs[f].file_addr).copied()
    };
    let ptrs = Pointers::build(bin, sums, types, params);
    let mut out = Vec::new();
    for (fi, s) in sums.iter().enumerate() {
        let caller = &bin.funcs[fi];
        // A C library allocator linked in statically is the allocator's inside.
        if seeds::seed(&caller.name).is_some() {
            continue;
        }
        for cs in &s.calls {
            if listed.get(&cs.addr).is_some_and(|c| c.pass_through) {
                continue;
            }
            let resolved = match &cs.target {
                Target::Local(a) => local(*a).filter(|_| bin.by_addr.get(a) != Some(&fi)).map(|f| (from_fn(f), CallVia::Direct)),
                Target::Import(n) => {
                    let base = n.split('@').next().unwrap_or(n);
                    let callee = by_name.get(base).map(|f| from_fn(f)).or_else(|| from_spec(base, seeds::seed(base)?));
                    let got = bin.bytes(cs.addr, 2).is_some_and(|b| b == [0xff, 0x15] || b == [0xff, 0x25]);
                    callee.map(|c| (c, if got { CallVia::Got } else { CallVia::Plt }))
                }
                Target::PtrUnknown => None,
                t => {
                    let (cands, _) = ptrs.candidates(t, caller.addr, types, params);
                    agreed(&cands, &local).map(|c| (c, CallVia::Indirect))
                }
            };
            // The analysis may name a call the resolution here does not reach.
            let resolved = resolved.or_else(|| {
                let c = listed.get(&cs.addr)?;
                let first = c.callee.split('|').next()?;
                let f = by_name.get(first)?;
                Some((Callee { name: c.callee.clone(), ..from_fn(f) }, c.via))
            });
            let Some((callee, via)) = resolved else { continue };
            if makes(callee.kind) {
                out.push(Raw { caller: fi, call: cs, callee, via });
            }
        }
    }
    out.sort_by_key(|r| r.call.addr);
    out
}

/// The allocation function every candidate agrees on (same kind and roles).
fn agreed<'c>(cands: &[u64], local: &dyn Fn(u64) -> Option<&'c AllocFn>) -> Option<Callee> {
    let mut names = Vec::new();
    let mut first: Option<&AllocFn> = None;
    for &a in cands {
        let f = local(a)?;
        match first {
            None => first = Some(f),
            Some(g) if g.kind == f.kind && g.args == f.args => {}
            Some(_) => return None,
        }
        names.push(f.name.clone());
    }
    let f = first?;
    Some(Callee { name: names.join("|"), ..from_fn(f) })
}
