//! The classification fixpoint: starting from the seed allocators, a function is
//! an allocation function when a parameter reaches the size/count/pointer argument
//! of a call to an already-classified function and (for allocators) that call's
//! result reaches the function's return value or an out-parameter. Iterated over
//! the call graph until nothing changes, so wrappers of wrappers are found.

//!
//! The rules live beside this file, one concern each:
//! - `resolve.rs`: which allocation function a call reaches (direct, import,
//!   or the agreement of a function pointer's candidates);
//! - `alloc_free.rs`: alloc, realloc and free from what the function's calls do;
//! - `suballoc.rs`: bump/pool sub-allocators (no storage call of their own);
//! - `dwarf_veto.rs`: what DWARF's declarations rule out afterwards.

mod alloc_free;
mod dwarf_veto;
mod resolve;
mod suballoc;

use crate::flow::{CallSite, Summary, Target, Val};
use crate::indirect::Pointers;
use crate::load::Binary;
use crate::seeds::{self, Spec};
use std::cell::RefCell;
use crate::fxhash::FxHashMap;
use std::collections::{BTreeMap, HashMap};

/// A classified function with the facts that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub spec: Spec,
    pub evidence: Vec<String>,
}

pub struct Classifier<'a> {
    pub(crate) bin: &'a Binary,
    pub(crate) params: &'a crate::dwarf::Params,
    pub(crate) sums: &'a [Summary],
    user: &'a HashMap<String, Spec>,
    /// Exported functions of dependencies (their summaries, `--with`), by name.
    deps: HashMap<String, Spec>,
    /// Functions `allocsite trace` saw allocating (`--with TRACE.json`), by index:
    /// what a function is when its code alone classifies it as nothing.
    traced: HashMap<usize, Found>,
    /// Candidate lists per distinct (pointer target, caller), computed once.
    cands: FxHashMap<(Target, u64), (Vec<u64>, bool)>,
    /// Pure helpers, for sizes computed by them.
    pub(crate) helpers: crate::helpers::Helpers,
    /// Per round: the allocator all candidates of a target agree on.
    agreed: RefCell<FxHashMap<(Target, u64), Option<(Spec, String)>>>,
    /// Functions classified by name, not by their code: Some(true) when named by
    /// the user (`--alloc-fns`/`--free-fns`), Some(false) for a C library seed.
    seeded: Vec<Option<bool>>,
    /// Cache of `args_read`.
    args_read: RefCell<FxHashMap<usize, u8>>,
    /// Per function: some caller may read its result (see `results_read`).
    result_read: Vec<bool>,
    /// `ALLOCSITE_DEBUG_PTRS` is set: print every pointer target's candidates.
    debug_ptrs: bool,
    pub found: BTreeMap<usize, Found>,
}

/// The callee a call site reaches, when it is an allocation function.
pub(crate) struct Callee {
    pub spec: Spec,
    /// For evidence: the callee, and for a pointer call how it was reached.
    pub name: String,
    /// The callee's name; for a pointer call every candidate joined by `|`.
    pub names: String,
}

pub(super) fn bit(c: usize) -> u32 {
    1u32 << c.min(31)
}

pub(super) fn lowest(mask: u8) -> Option<u8> {
    (mask != 0).then(|| mask.trailing_zeros() as u8)
}

pub(crate) fn arg_name(p: u8) -> String {
    format!("arg{p}")
}

impl<'a> Classifier<'a> {
    pub fn new(
        bin: &'a Binary,
        sums: &'a [Summary],
        user: &'a HashMap<String, Spec>,
        types: &crate::dwarf::Types,
        params: &'a crate::dwarf::Params,
    ) -> Self {
        let ptrs = Pointers::build(bin, sums, types, params);
        let mut cands = FxHashMap::default();
        for (f, s) in sums.iter().enumerate() {
            for c in &s.calls {
                let caller = caller_key(&c.target, bin.funcs[f].addr);
                let key = (c.target.clone(), caller);
                if matches!(c.target, Target::PtrGlobal(_) | Target::PtrMember(..) | Target::PtrParam(_)) && !cands.contains_key(&key) {
                    let v = ptrs.candidates(&c.target, bin.funcs[f].addr, types, params);
                    cands.insert(key, v);
                }
            }
        }
        let helpers = crate::helpers::Helpers::build(bin, sums, &cands);
        Classifier {
            bin,
            params,
            sums,
            user,
            deps: HashMap::new(),
            traced: HashMap::new(),
            cands,
            helpers,
            agreed: RefCell::new(FxHashMap::default()),
            result_read: results_read(bin, sums),
            args_read: RefCell::new(FxHashMap::default()),
            seeded: Vec::new(),
            debug_ptrs: std::env::var_os("ALLOCSITE_DEBUG_PTRS").is_some(),
            found: BTreeMap::new(),
        }
    }

    /// Seed specs for functions defined in the binary under a seed or user-given name
    /// (static links, custom allocators named on the command line).
    fn named_spec(&self, f: usize) -> Option<(Spec, bool)> {
        let func = &self.bin.funcs[f];
        std::iter::once(&func.name).chain(func.aliases.iter()).find_map(|n| {
            self.user.get(n).map(|s| (*s, true)).or_else(|| seeds::seed(n).map(|s| (s, false)))
        })
    }

    /// True when `f` is a C library / C++ runtime allocator defined in the binary
    /// (a static link) that the user did not name.
    pub fn is_libc_seed(&self, f: usize) -> bool {
        self.seeded.get(f).copied().flatten() == Some(false)
    }

    /// Specs of the dependencies' exported allocation functions and constructors.
    pub(crate) fn set_deps(&mut self, deps: HashMap<String, Spec>) {
        self.deps = deps;
    }

    /// Dynamic evidence: functions the trace saw allocating, by function index.
    /// One returning storage whose result no caller in the file reads, or that DWARF
    /// declares `void` or non-pointer, is left out (a `void` function that called
    /// malloc last leaves its result in rax, which the trace takes for a return).
    pub(crate) fn set_traced(&mut self, traced: HashMap<usize, Found>) {
        self.traced = traced
            .into_iter()
            .filter(|(f, t)| {
                let returns = t.spec.gives_storage() && t.spec.out.is_none();
                // DWARF: declared `void` or a non-pointer scalar cannot return storage.
                let declared_no_ptr = self.params.get(self.bin.funcs[*f].addr).is_some_and(|p| p.void || p.returns_scalar);
                !returns || (self.result_read.get(*f).copied().unwrap_or(true) && !declared_no_ptr)
            })
            .collect();
    }

    /// True when `f` was classified by its name (a seed or `--alloc-fns`).
    pub(crate) fn is_seeded(&self, f: usize) -> bool {
        self.seeded.get(f).copied().flatten().is_some()
    }


    /// Forget the pointer-call agreements: classifications changed since.
    pub(crate) fn new_round(&self) {
        self.agreed.borrow_mut().clear();
    }

    pub fn run(&mut self) {
        self.seeded = vec![None; self.bin.funcs.len()];
        for f in 0..self.bin.funcs.len() {
            if let Some((spec, user)) = self.named_spec(f) {
                let why = if user { "named by --alloc-fns/--free-fns" } else { "C library / C++ runtime allocator" };
                self.found.insert(f, Found { spec, evidence: vec![why.to_string()] });
                self.seeded[f] = Some(user);
            }
        }
        for _round in 0..32 {
            self.agreed.borrow_mut().clear();
            let mut changed = false;
            for f in 0..self.sums.len() {
                // `.cold` fragments are continuations of their function, not entries.
                if self.seeded[f].is_some() || self.bin.funcs[f].name.contains(".cold") {
                    continue;
                }
                // The code's own evidence wins over the trace's (a disagreement is
                // the caller's to report); the trace fills in what the code hides.
                let new = self.classify(f).or_else(|| self.traced.get(&f).cloned());
                if self.found.get(&f) != new.as_ref() {
                    match new {
                        Some(n) => self.found.insert(f, n),
                        None => self.found.remove(&f),
                    };
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }


    fn classify(&self, f: usize) -> Option<Found> {
        let found = self.classify_flow(f)?;
        let found = self.check_dwarf(f, found)?;
        // Without DWARF, a `void` function that ends by calling an allocator (or
        // by bumping a pointer) looks like one: rax holds the callee's leftover.
        // Its callers never read that register.
        let returns_storage = found.spec.gives_storage() && found.spec.out.is_none();
        if returns_storage && self.params.get(self.bin.funcs[f].addr).is_none() && !self.result_read[f] {
            return None;
        }
        Some(found)
    }

}

/// Arguments the roles prove exist; `analyze_bytes` raises it to DWARF's count.
pub(super) fn role_arity(spec: &Spec) -> u8 {
    [spec.size, spec.count, spec.ptr, spec.out, spec.src].iter().flatten().map(|p| p + 1).max().unwrap_or(0)
}

/// Provenance of argument `k` at a call; stack-passed arguments are not tracked.
pub(crate) fn arg(cs: &CallSite, k: u8) -> Val {
    cs.args.get(k as usize).copied().unwrap_or(Val::TOP)
}

/// Calls through a parameter, or through a member of an object a parameter
/// reaches, depend on who the caller is (its parameter types); others do not.
pub(super) fn caller_key(t: &Target, caller: u64) -> u64 {
    match t {
        Target::PtrParam(_) | Target::PtrMember(_, Some(_)) => caller,
        _ => 0,
    }
}

/// A value with the results of pure helper calls (`round_class(n)`, `xRoundup(n)`
/// through a pointer) replaced by the arguments they came from (`helpers.rs`).
pub(crate) fn expand_helpers(c: &Classifier, s: &Summary, v: Val) -> Val {
    c.helpers.expand(c.bin, s, v)
}

/// Per function of an executable: whether any caller may read what it returns.
/// Callers are the direct calls and tail calls in the file; a result a caller
/// only returns in turn is read when that caller's result is. Functions whose
/// address is taken or that nothing in the file calls have unknown callers
/// (read). In shared objects and `.o` files every function may be called from
/// outside, so all count as read.
fn results_read(bin: &Binary, sums: &[Summary]) -> Vec<bool> {
    let n = bin.funcs.len();
    if bin.kind != crate::load::FileKind::Executable {
        return vec![true; n];
    }
    // callee → (caller, result read there, result passed on as the caller's)
    let mut callers: Vec<Vec<(usize, bool, bool)>> = vec![Vec::new(); n];
    for (fi, s) in sums.iter().enumerate() {
        for (c, cs) in s.calls.iter().enumerate() {
            let Target::Local(a) = cs.target else { continue };
            let Some(&g) = bin.by_addr.get(&a) else { continue };
            let passed = cs.tail || s.rets.iter().any(|r| r.calls & bit(c) != 0);
            callers[g].push((fi, cs.result_used, passed));
        }
    }
    let taken: std::collections::HashSet<u64> = bin.address_taken.iter().copied().collect();
    let mut read: Vec<bool> = (0..n).map(|g| callers[g].is_empty() || taken.contains(&bin.funcs[g].addr)).collect();
    loop {
        let mut changed = false;
        for g in 0..n {
            if !read[g] && callers[g].iter().any(|&(f, used, passed)| used || (passed && read[f])) {
                read[g] = true;
                changed = true;
            }
        }
        if !changed {
            return read;
        }
    }
}
