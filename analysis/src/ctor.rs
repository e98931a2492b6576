//! Constructors (DESIGN.md §1): an `alloc` without a size, count or string role
//! whose block's size is fixed inside it — every storage call making the returned
//! block is sized by constants or globals, or is itself a constructor — or that
//! hands storage back through an out-parameter without taking its size
//! (`sqlite3_open`). Run after the classification fixpoint: a role-less `alloc`
//! gives its callers no roles, so nothing classified earlier depends on it.
//!
//! A block sized by memory reached through a parameter (`malloc(b->len)`), by a
//! string (`strdup(s)`), or by a role-less callee is not fixed: such functions
//! stay `alloc` without a positional role.

use crate::classification::Kind;
use crate::classify::{arg, expand_helpers, Callee, Classifier};
use crate::flow::value::{LOAD, STACK, TOP};
use crate::flow::{Target, Val};

/// Turn every qualifying `alloc` into a `ctor`, until none is left (a function
/// returning a constructor's result is one).
pub(crate) fn mark(c: &mut Classifier) {
    for _ in 0..64 {
        c.new_round();
        let mut turned = Vec::new();
        for (&f, found) in c.found.iter() {
            if c.is_seeded(f) || found.spec.kind != Some(Kind::Alloc) || found.spec.size.is_some() || found.spec.count.is_some() {
                continue;
            }
            if let Some(ev) = evidence(c, f) {
                turned.push((f, ev));
            }
        }
        if turned.is_empty() {
            return;
        }
        for (f, ev) in turned {
            if let Some(found) = c.found.get_mut(&f) {
                found.spec.kind = Some(Kind::Ctor);
                found.evidence.extend(ev);
            }
        }
    }
}

/// Why `f` is a constructor, or None.
fn evidence(c: &Classifier, f: usize) -> Option<Vec<String>> {
    let found = c.found.get(&f)?;
    if let Some(o) = found.spec.out {
        return Some(vec![format!("out-parameter without size: storage handed back through *arg{o}")]);
    }
    // Sized by a string it is given (strdup-like).
    if found.spec.src.is_some() {
        return None;
    }
    let s = &c.sums[f];
    let mut makers = 0u32;
    let mut ev = Vec::new();
    for (k, cs) in s.calls.iter().enumerate().take(31) {
        if !s.rets.iter().any(|r| r.calls & (1 << k) != 0) {
            continue;
        }
        let callee = c.resolve(cs, f);
        match callee {
            Some(g) if g.spec.gives_storage() && g.spec.out.is_none() => {
                let why = fixed(c, f, k, &g)?;
                if !ev.contains(&why) {
                    ev.push(why);
                }
                makers |= 1 << k;
            }
            _ => {}
        }
    }
    if makers == 0 {
        return None;
    }
    // Every returned value is one of those blocks (or NULL): nothing popped from a
    // list reached through a parameter, nothing from an unresolved call.
    let only_makers = s.rets.iter().all(|r| {
        r.as_const() == Some(0) || (r.calls & !makers == 0 && r.outcalls == 0 && r.lparams == 0 && r.params == 0)
    });
    if !only_makers {
        return None;
    }
    if let Some((ty, size)) = c.params.get(c.bin.funcs[f].addr).and_then(|p| p.returns_to.as_ref()) {
        match size {
            Some(n) => ev.push(format!("DWARF: returns `{ty} *` ({n}-byte `{ty}`)")),
            None => ev.push(format!("DWARF: returns `{ty} *`")),
        }
    }
    Some(ev)
}

/// The evidence that storage call `k` of `f` (to `g`) makes a block of fixed size.
fn fixed(c: &Classifier, f: usize, k: usize, g: &Callee) -> Option<String> {
    let s = &c.sums[f];
    let cs = &s.calls[k];
    if g.spec.kind == Some(Kind::Ctor) {
        return Some(format!("{} is a constructor: fixed size inside", g.names));
    }
    if !g.spec.has_size_role() {
        return None;
    }
    if g.spec.kind == Some(Kind::Realloc) && g.spec.ptr.is_some_and(|p| arg(cs, p).as_const() != Some(0)) {
        return None;
    }
    let mut bytes: Option<i64> = Some(1);
    for p in [g.spec.size, g.spec.count].into_iter().flatten() {
        let v = expand_helpers(c, s, arg(cs, p));
        if !fixed_val(c, f, &v) {
            return None;
        }
        bytes = bytes.zip(v.as_const()).map(|(a, b)| a.saturating_mul(b));
    }
    if let Some(p) = g.spec.src {
        let v = arg(cs, p);
        if !fixed_val(c, f, &v) {
            return None;
        }
        // A string literal: the copy is its length plus the NUL.
        // (A non-PIE executable loads its address as a constant.)
        let addr = v.as_global().or_else(|| v.as_const().map(|k| k as u64)).filter(|&a| !c.bin.is_code(a));
        let len = addr.and_then(|a| c.bin.bytes(a, 4096)).and_then(|b| b.iter().position(|&x| x == 0));
        let len = len.map(|n| n as i64 + 1);
        bytes = match (g.spec.size.is_some(), bytes, len) {
            (true, Some(b), Some(l)) => Some(b.min(l)),
            (false, _, l) => l,
            (_, b, _) => b,
        };
    }
    Some(match bytes {
        Some(n) => format!("fixed size {n} inside: {} sized by constants", g.names),
        None => format!("fixed size inside: {} sized by constants or globals", g.names),
    })
}

/// A value that derives from no parameter: constants, globals, what they point to,
/// and results of calls whose arguments derive from no parameter either.
fn fixed_val(c: &Classifier, f: usize, v: &Val) -> bool {
    if v.params != 0 || v.lparams != 0 || v.outcalls != 0 || v.has(TOP | STACK) {
        return false;
    }
    // A load not reached through a parameter is a global object's member.
    if v.has(LOAD) && v.load_base & 0x7f < 8 && v.load_base != crate::flow::value::OTHER_BASE {
        return false;
    }
    let s = &c.sums[f];
    (0..31).filter(|&k| v.calls & (1 << k) != 0).all(|k| {
        let Some(cs) = s.calls.get(k) else { return false };
        let read = match cs.target {
            Target::Local(a) => c.bin.by_addr.get(&a).map(|&g| c.args_read(g)).unwrap_or(0x3f),
            _ => 0x3f,
        };
        (0..6).filter(|&i| read & (1 << i) != 0).all(|i| cs.args[i].params == 0 && cs.args[i].lparams == 0 && !cs.args[i].has(TOP))
    }) && v.calls & (1 << 31) == 0
}
