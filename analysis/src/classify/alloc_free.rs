//! The alloc, realloc and free rules (README "Rules"): a function is an
//! allocation function by what its calls of allocation functions do with its
//! parameters and where their results go (returned, stored through an
//! out-parameter), and a free function when every path passes a parameter to
//! a free-kind call. Sub-allocators and DWARF's vetoes are their own files.

use super::{arg, arg_name, bit, expand_helpers, lowest, role_arity, Callee, Classifier, Found};
use crate::classification::Kind;
use crate::flow::{CallSite, Summary, Target, Val};
use crate::seeds::Spec;

impl Classifier<'_> {
    pub(super) fn classify_flow(&self, f: usize) -> Option<Found> {
        let s = &self.sums[f];
        let callees: Vec<Option<Callee>> = s.calls.iter().map(|cs| self.resolve(cs, f)).collect();
        // Calls whose *return value* is fresh storage (an out-parameter allocator
        // returns a status instead), and those that write it through an argument.
        let storage_calls = call_mask(s, &callees, |_, c| c.is_some_and(|c| c.spec.gives_storage() && c.spec.out.is_none()));
        let out_calls = call_mask(s, &callees, |_, c| c.is_some_and(|c| c.spec.gives_storage() && c.spec.out.is_some()));
        // Unresolved calls through a pointer that get our parameters: `custom ?
        // custom->alloc(opaque, size) : malloc(size)` (zstd's customMem) may
        // return alongside a real allocator.
        let maybe_storage = call_mask(s, &callees, |cs, c| {
            c.is_none()
                && matches!(cs.target, Target::PtrGlobal(_) | Target::PtrMember(..) | Target::PtrParam(_) | Target::PtrUnknown)
                && cs.args.iter().any(|a| a.params != 0)
        });
        // A realloc may hand back the block it was given (same size class).
        let realloc_ptrs: u8 = s
            .calls
            .iter()
            .zip(callees.iter())
            .filter_map(|(cs, c)| {
                let c = c.as_ref()?;
                (c.spec.kind == Some(Kind::Realloc)).then(|| c.spec.ptr.and_then(|k| arg(cs, k).as_param()))?
            })
            .fold(0, |m, p| m | (1 << p));
        // Fields this function writes back: a pointer loaded from one of them and
        // returned is popped off a free list; loaded and left in place, it is a
        // lookup (interned strings, find-or-create).
        let written: u32 = s.stores.iter().fold(0, |m, st| m | crate::flow::value::field_bit(st.param, st.via, st.off));
        let rets_ok = !s.rets.is_empty()
            && s.rets.iter().all(|r| {
                (ret_is_fresh(r, storage_calls | maybe_storage, out_calls, realloc_ptrs) || popped_global(r, s, storage_calls))
                    && (r.lparams == 0 || r.lfields & written != 0)
                    && !element_address(r)
            });
        let mut best: Option<Found> = None;
        let mut freed: Option<(u8, String)> = None;
        let mut frees: std::collections::BTreeMap<u8, (Vec<usize>, String)> = std::collections::BTreeMap::new();

        for (c, (cs, callee)) in s.calls.iter().zip(callees.iter()).enumerate() {
            let Some(callee) = callee else { continue };
            let mut spec = callee.spec;
            // realloc(p, 0) frees p (Lua's luaM_free_ and lua_close).
            if spec.kind == Some(Kind::Realloc) && spec.size.is_some_and(|k| arg(cs, k).as_const() == Some(0)) {
                spec = Spec { kind: Some(Kind::Free), ptr: spec.ptr, ..Spec::default() };
            }
            if spec.kind == Some(Kind::Free) {
                // Freed on every path (NULL checks aside), not just on an error
                // path; possibly by different calls on different paths. A pointer
                // that may also be a literal NULL is the parameter only on some
                // paths: the local was cleared once the block was handed off
                // (`t->cols = cols; cols = 0; ... cleanup: list_delete(cols)`,
                // SQLite's sqlite3BeginTrigger), so that call frees nothing there.
                let freed_arg = |k: u8| Some(arg(cs, k)).filter(|v| !v.has(crate::flow::value::CONST))?.as_param_arith();
                if let Some(p) = spec.ptr.and_then(freed_arg) {
                    let (blocks, _) = frees.entry(p).or_insert_with(|| (Vec::new(), format!("{} → {} ptr", arg_name(p), callee.name)));
                    blocks.push(cs.block);
                }
                continue;
            }
            // `realpath(p, buf)` fills buf: storage only with a NULL buffer.
            if !spec.gives_storage() || spec.when_null.is_some_and(|k| arg(cs, k).as_const() != Some(0)) {
                continue;
            }
            let returned = s.rets.iter().any(|r| r.calls & bit(c) & storage_calls != 0 || r.outcalls & bit(c) & out_calls != 0);
            // An out-parameter is a `T **`: the block itself stored at `*k`, and k
            // dereferenced nowhere else. A parameter also used at other offsets is
            // a struct whose first member keeps the block (git's `list->items`,
            // perl's `my_perl->Istack_sp`): not an out-parameter.
            let pointer_param = |p: u8| s.struct_params & (1 << p) == 0;
            let mut out_param = None;
            if let Some(k) = spec.out {
                out_param = arg(cs, k).as_param().filter(|&p| pointer_param(p));
            }
            if out_param.is_none() {
                use crate::flow::value::ARITH;
                out_param = s
                    .stores
                    .iter()
                    .find(|st| {
                        st.off == 0
                            && st.via.is_none()
                            && pointer_param(st.param)
                            && !st.val.has(ARITH)
                            && st.val.params == 0
                            && (st.val.calls & bit(c) != 0 || st.val.outcalls & bit(c) & out_calls != 0)
                    })
                    .map(|st| st.param);
            }
            let how = if returned && rets_ok {
                None
            } else if let Some(o) = out_param {
                Some(o)
            } else {
                continue;
            };
            let mut spec_out = Spec { kind: Some(Kind::Alloc), nargs: 0, ..Spec::default() };
            let mut ev = Vec::new();
            if spec.kind == Some(Kind::Suballoc) {
                spec_out.kind = Some(Kind::Suballoc);
            }
            let size_v = spec.size.map(|k| expand_helpers(self, s, arg(cs, k)));
            let count_v = spec.count.map(|k| expand_helpers(self, s, arg(cs, k)));
            (spec_out.count, spec_out.size) = call_roles(count_v, size_v);
            if let Some(p) = spec_out.count {
                ev.push(format!("{} → {} count", arg_name(p), callee.name));
            }
            if let Some(p) = spec_out.size {
                ev.push(format!("{} → {} size", arg_name(p), callee.name));
            }
            // strdup-like: the block is sized from a string the caller passes on.
            if let Some(p) = spec.src.and_then(|k| arg(cs, k).as_param_arith()) {
                spec_out.src = Some(p);
                ev.push(format!("{} → {} string", arg_name(p), callee.name));
            }
            // ... or by hand: `malloc(strlen(s) + 1)`.
            if spec_out.src.is_none() && spec_out.size.is_none() && spec_out.count.is_none() {
                if let Some(p) = size_v.and_then(|v| crate::strlen::string_param(self.bin, self.sums, s, &v)) {
                    spec_out.src = Some(p);
                    ev.push(format!("strlen({}) → {} size", arg_name(p), callee.name));
                }
            }
            if spec.kind == Some(Kind::Realloc) {
                if let Some(p) = spec.ptr.and_then(|k| arg(cs, k).as_param_arith()) {
                    spec_out.kind = Some(Kind::Realloc);
                    spec_out.ptr = Some(p);
                    ev.push(format!("{} → {} ptr", arg_name(p), callee.name));
                    // A new size computed from what the block holds (`2 * l->n +
                    // extra`, SQLite's sqlite3SrcListEnlarge and sqlite3VListAdd)
                    // grows a container by the room it needs: a parameter in it is
                    // a number of elements to add, not a size (see below).
                    let own = |v: &Option<Val>| v.is_some_and(|v| v.lparams & (1 << p) != 0);
                    if own(&size_v) || own(&count_v) {
                        (spec_out.count, spec_out.size) = (None, None);
                        ev.retain(|e| !e.ends_with(" size") && !e.ends_with(" count"));
                    }
                }
            }
            match how {
                None => ev.push(format!("{} result → return", callee.name)),
                Some(o) => {
                    spec_out.out = Some(o);
                    ev.push(format!("{} result → *{}", callee.name, arg_name(o)));
                }
            }
            if cs.tail {
                ev.push(format!("tail call to {}", callee.name));
            }
            let cand = Found { spec: spec_out, evidence: ev };
            let cand = match (how, self.inner_block(0, s, c, &callees)) {
                // The returned block indexes another fresh block (an N-D array): that
                // block's element count and size describe the allocation.
                (None, Some((count, size, name))) if count.is_some() || size.is_some() => {
                    let mut cand = cand;
                    cand.spec.count = count;
                    cand.spec.size = size;
                    cand.evidence.push(format!("{name} result stored into the returned block: its count/size describe the allocation"));
                    cand
                }
                _ => cand,
            };
            best = Some(match best {
                None => cand,
                // Prefer the call that explains more roles (e.g. calloc over a NULL-path malloc).
                Some(b) => {
                    if roles(&cand.spec) > roles(&b.spec) {
                        cand
                    } else {
                        b
                    }
                }
            });
        }

        for (&p, (blocks, why)) in &frees {
            let returns_value = match self.params.get(self.bin.funcs[f].addr) {
                Some(d) => !d.void,
                None => self.result_read[f],
            };
            let paths = crate::flow::paths::Paths { returns_value, ..s.paths.view() };
            if freed.is_none() && paths.unavoidable_set(blocks, 1 << p) != 0 && !scratch_job(s, &callees, &paths, p) {
                freed = Some((p, why.clone()));
            }
        }
        if freed.is_none() {
            freed = self.split_clone_free(f, s);
        }
        if let Some(mut b) = best {
            if let (Some((p, why)), None) = (&freed, b.spec.ptr) {
                if b.spec.kind == Some(Kind::Alloc) && b.spec.out.is_none() && Some(*p) != b.spec.size {
                    // Fresh storage returned and the old block freed: realloc by hand.
                    b.spec.kind = Some(Kind::Realloc);
                    b.spec.ptr = Some(*p);
                    b.evidence.push(why.clone());
                }
            }
            // A realloc whose new size comes from no parameter grows a container
            // to a capacity it keeps itself (SQLite's sqlite3ExprListAppend,
            // sqlite3IdListAppend): the caller asks for an append, not for a
            // size, so it is no allocation function (DESIGN.md §1: a realloc's
            // size comes from its caller).
            if b.spec.kind == Some(Kind::Realloc) && !b.spec.has_size_role() {
                return None;
            }
            b.spec.nargs = role_arity(&b.spec);
            return Some(b);
        }
        if let Some((p, why)) = freed {
            let mut spec = Spec { kind: Some(Kind::Free), ptr: Some(p), ..Spec::default() };
            spec.nargs = role_arity(&spec);
            return Some(Found { spec, evidence: vec![why] });
        }
        self.suballoc(s, storage_calls)
    }

    /// gcc's partial inlining leaves a function's entry tests in the function
    /// (and in every caller it is inlined into) and moves the rest into a clone
    /// `G.part.N` (bzip2's `BZ2_bzWriteClose64`: `if (bzf == NULL) return;` stays,
    /// the body moves; `BZ2_bzWriteClose` inlines the tests and calls the clone).
    /// Where F's call of such a clone passes parameter p on every path (NULL
    /// tests aside), a free of that argument inside the clone frees p: the
    /// clone's paths lie behind the entry tests, as in the unsplit function.
    fn split_clone_free(&self, f: usize, s: &Summary) -> Option<(u8, String)> {
        for cs in &s.calls {
            let Target::Local(a) = cs.target else { continue };
            let Some(&g) = self.bin.by_addr.get(&a) else { continue };
            let clone = &self.bin.funcs[g].name;
            if g == f || !clone.contains(".part.") {
                continue;
            }
            for q in 0..6u8 {
                let Some(p) = arg(cs, q).as_param().filter(|&p| cs.behind_entry_tests & (1 << p) != 0) else { continue };
                for c2 in &self.sums[g].calls {
                    let Some(callee) = self.resolve(c2, g) else { continue };
                    if callee.spec.kind == Some(Kind::Free) && callee.spec.ptr.is_some_and(|k| arg(c2, k).as_param_arith() == Some(q)) {
                        return Some((p, format!("{} → {clone} (split off behind its entry tests) → {} ptr", arg_name(p), callee.name)));
                    }
                }
            }
        }
        None
    }

    /// For a returned call `r`: another storage call whose result is stored into
    /// r's block, with that call's (count, size) parameter roles.
    fn inner_block(&self, depth: usize, s: &Summary, r: usize, callees: &[Option<Callee>]) -> Option<(Option<u8>, Option<u8>, String)> {
        for &(base, val) in &s.call_stores {
            if base & bit(r) == 0 {
                continue;
            }
            for (d, callee) in callees.iter().enumerate().take(31) {
                let Some(callee) = callee else { continue };
                if d == r || val & bit(d) == 0 || !callee.spec.gives_storage() || callee.spec.out.is_some() {
                    continue;
                }
                let cs = &s.calls[d];
                let (count, size) = call_roles(callee.spec.count.map(|k| arg(cs, k)), callee.spec.size.map(|k| arg(cs, k)));
                // Follow the chain to the innermost block (3-D: rows → planes → data).
                let deeper = if depth < 4 { self.inner_block(depth + 1, s, d, callees) } else { None };
                return Some(deeper.unwrap_or((count, size, callee.name.clone())));
            }
        }
        None
    }

}

/// A job done with scratch storage: on every path that releases parameter p,
/// the function also makes fresh storage that it frees again itself (zstd's
/// `COVER_tryParameters(opaque)`: mallocs its buffers, builds a dictionary,
/// frees the buffers and, last, the task it was handed). Releasing p is the end
/// of the task, not what the function is for; a destructor makes no storage.
fn scratch_job(s: &Summary, callees: &[Option<Callee>], paths: &crate::flow::paths::Paths, p: u8) -> bool {
    let frees_result = |c: usize| {
        s.calls.iter().zip(callees).any(|(cs, callee)| {
            callee.as_ref().is_some_and(|g| g.spec.kind == Some(Kind::Free) && g.spec.ptr.is_some_and(|k| arg(cs, k).calls & bit(c) != 0))
        })
    };
    s.calls.iter().zip(callees).enumerate().take(31).any(|(c, (cs, callee))| {
        callee.as_ref().is_some_and(|g| g.spec.kind == Some(Kind::Alloc) && g.spec.out.is_none())
            && frees_result(c)
            && paths.unavoidable_set(&[cs.block], 1 << p) != 0
    })
}

/// A block plus a scaled index (`&f->upvalues[fs->nups++]` right after growing
/// the array, Lua's `allocupvalue`): an element of the block, not the block.
fn element_address(r: &Val) -> bool {
    r.has(crate::flow::value::SCALED) && (r.calls != 0 || r.outcalls != 0)
}

/// Bit c for every call site c (below 32) the predicate accepts.
fn call_mask(s: &Summary, callees: &[Option<Callee>], pred: impl Fn(&CallSite, Option<&Callee>) -> bool) -> u32 {
    s.calls
        .iter()
        .zip(callees.iter())
        .enumerate()
        .filter(|(_, (cs, c))| pred(cs, c.as_ref()))
        .fold(0, |m, (i, _)| m | bit(i))
}

/// (count, size) parameter roles of a call from the provenance of its count and
/// size arguments: the count from the count argument and the size from what the
/// size argument adds; a lone byte count goes through `count_size`.
fn call_roles(count_v: Option<Val>, size_v: Option<Val>) -> (Option<u8>, Option<u8>) {
    // A parameter subtracted from what no parameter gave (`n->nExpr - iStart`,
    // SQLite's sqlite3KeyInfoFromExprList) makes the block smaller the larger it
    // is: it says where to start, not how much to allocate. No role from it.
    let sized = |v: Val| if v.has(crate::flow::value::SUBTRACTED) { Val { params: 0, ..v } } else { v };
    let (count_v, size_v) = (count_v.map(sized), size_v.map(sized));
    match (count_v, size_v) {
        (Some(cv), Some(sv)) => {
            let count = lowest(cv.params);
            let size = lowest(sv.params & !cv.params).or(lowest(sv.params));
            (if count == size { None } else { count }, size)
        }
        (None, Some(sv)) => count_size(sv),
        (Some(cv), None) => (lowest(cv.params), None),
        (None, None) => (None, None),
    }
}

/// (count, size) parameter roles of a byte count: `n * size` from two
/// parameters is a count and an element size; otherwise the lowest parameter.
pub(super) fn count_size(v: Val) -> (Option<u8>, Option<u8>) {
    if v.has(crate::flow::value::MUL) && v.params.count_ones() >= 2 {
        let c = lowest(v.params);
        (c, lowest(v.params & !(1 << c.unwrap_or(0))))
    } else {
        (None, lowest(v.params))
    }
}

fn roles(s: &Spec) -> usize {
    [s.size, s.count, s.ptr, s.out].iter().flatten().count()
}

/// A returned value that is a block popped off a global free list (read from
/// global G, which the function sets to the block's link: SQLite's
/// `pcache1Alloc`), or else fresh storage: recycled blocks stand for the heap's.
fn popped_global(r: &Val, s: &Summary, storage_calls: u32) -> bool {
    use crate::flow::value::{GLOBAL, STACK, TOP};
    r.has(crate::flow::value::GLOAD)
        && !r.has(TOP | STACK | GLOBAL)
        && s.global_pops.contains(&(r.num as u64))
        && r.params == 0
        && r.lparams == 0
        && r.outcalls == 0
        && r.calls & !storage_calls == 0
}

/// A returned value that is fresh storage, NULL, or a pointer popped from a free
/// list (loaded through a parameter) — not a parameter, local, or static object.
fn ret_is_fresh(r: &Val, storage_calls: u32, out_calls: u32, realloc_ptrs: u8) -> bool {
    use crate::flow::value::{CONST, GLOAD, GLOBAL, STACK, TOP};
    if r.as_const() == Some(0) {
        return true;
    }
    if r.has(TOP | STACK | GLOBAL | GLOAD) || r.params & !realloc_ptrs != 0 {
        return false;
    }
    if r.params != 0 && r.calls == 0 && r.outcalls == 0 && r.lparams == 0 {
        return true; // the realloc's own block handed back
    }
    if r.has(CONST) && r.num != 0 {
        return false;
    }
    r.calls & !storage_calls == 0 && r.outcalls & !out_calls == 0 && (r.calls != 0 || r.outcalls != 0 || r.lparams != 0)
}
