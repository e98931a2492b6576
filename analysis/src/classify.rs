//! The classification fixpoint: starting from the seed allocators, a function is
//! an allocation function when a parameter reaches the size/count/pointer argument
//! of a call to an already-classified function and (for allocators) that call's
//! result reaches the function's return value or an out-parameter. Iterated over
//! the call graph until nothing changes, so wrappers of wrappers are found.

use crate::classification::Kind;
use crate::flow::interp::{gpr, ARG_REGS};
use crate::flow::{CallSite, Summary, Target, Val};
use crate::indirect::Pointers;
use crate::load::Binary;
use crate::seeds::{self, Spec};
use std::cell::RefCell;
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
    cands: HashMap<(Target, u64), (Vec<u64>, bool)>,
    /// Pure helpers, for sizes computed by them.
    pub(crate) helpers: crate::helpers::Helpers,
    /// Per round: the allocator all candidates of a target agree on.
    agreed: RefCell<HashMap<(Target, u64), Option<(Spec, String)>>>,
    /// Functions classified by name, not by their code: Some(true) when named by
    /// the user (`--alloc-fns`/`--free-fns`), Some(false) for a C library seed.
    seeded: Vec<Option<bool>>,
    /// Cache of `args_read`.
    args_read: RefCell<HashMap<usize, u8>>,
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

fn bit(c: usize) -> u32 {
    1u32 << c.min(31)
}

fn lowest(mask: u8) -> Option<u8> {
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
        let mut cands = HashMap::new();
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
            agreed: RefCell::new(HashMap::new()),
            result_read: results_read(bin, sums),
            args_read: RefCell::new(HashMap::new()),
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

    /// Bit k: some function call site `cs` of function `f` may reach reads its
    /// integer argument k (all six when the callee is unknown).
    pub(crate) fn args_used(&self, f: usize, cs: &CallSite) -> u8 {
        let funcs: Vec<usize> = match &cs.target {
            Target::Local(a) => self.bin.by_addr.get(a).copied().into_iter().collect(),
            Target::Import(_) | Target::PtrUnknown => Vec::new(),
            t => {
                let key = (t.clone(), caller_key(t, self.bin.funcs[f].addr));
                let cands = self.cands.get(&key).map(|c| c.0.as_slice()).unwrap_or(&[]);
                cands.iter().filter_map(|a| self.bin.by_addr.get(a).copied()).collect()
            }
        };
        if funcs.is_empty() {
            return 0x3f;
        }
        funcs.iter().fold(0, |m, &g| m | self.args_read(g))
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

    pub(crate) fn resolve(&self, cs: &CallSite, caller: usize) -> Option<Callee> {
        match &cs.target {
            Target::Import(n) => {
                let base = n.split('@').next().unwrap_or(n);
                if let Some(spec) = self.user.get(base).copied().or_else(|| seeds::import(base)) {
                    return Some(Callee { spec, name: base.to_string(), names: base.to_string() });
                }
                // A shared object calls its own exported functions through the PLT.
                if let Some(&f) = self.bin.by_name.get(base) {
                    let spec = self.found.get(&f)?.spec;
                    return Some(Callee { spec, name: base.to_string(), names: base.to_string() });
                }
                // A dependency's exported allocation function (`--with`).
                let spec = *self.deps.get(base)?;
                Some(Callee { spec, name: base.to_string(), names: base.to_string() })
            }
            Target::Local(a) => {
                let f = *self.bin.by_addr.get(a)?;
                if f == caller {
                    return None;
                }
                let spec = self.found.get(&f)?.spec;
                let name = self.bin.funcs[f].name.clone();
                Some(Callee { spec, names: name.clone(), name })
            }
            t => {
                let caller_addr = caller_key(t, self.bin.funcs[caller].addr);
                let (spec, names) = self.agreed_for(t, caller_addr, self.bin.funcs[caller].addr)?;
                // Through an untyped member offset, demand that the arguments line
                // up with the candidates' roles; typed and parameter targets are precise.
                let precise = self.cands.get(&(t.clone(), caller_addr)).is_some_and(|c| c.1);
                let lined_up = [spec.size, spec.ptr, spec.count].iter().flatten().all(|&k| arg(cs, k).params != 0);
                if !precise && (!lined_up || (spec.size.is_none() && spec.ptr.is_none())) {
                    return None;
                }
                let how = match t {
                    Target::PtrGlobal(g) => format!("pointer at {g:#x}"),
                    Target::PtrMember(o, _) => format!("pointer member +{o:#x}"),
                    Target::PtrParam(k) => format!("pointer {}", arg_name(*k)),
                    _ => "function pointer".to_string(),
                };
                Some(Callee { spec, name: format!("{names} via {how}"), names })
            }
        }
    }

    /// The allocator every candidate of pointer target `t` agrees on; none when
    /// any candidate is not a classified allocator with the same roles.
    /// The function making the call is left out: a wrapper installed in the same
    /// slot type as what it wraps (SQLite's memtrace) must not block itself.
    fn agreed_for(&self, t: &Target, caller: u64, caller_entry: u64) -> Option<(Spec, String)> {
        let key = (t.clone(), caller);
        let cands = self.cands.get(&key).map(|c| c.0.as_slice()).unwrap_or(&[]);
        let cacheable = !cands.contains(&caller_entry);
        if cacheable {
            if let Some(a) = self.agreed.borrow().get(&key) {
                return a.clone();
            }
        }
        // A candidate that is no allocator blocks the agreement, unless the offset
        // is all that links it to this call (no type, not precise) and it reads
        // none of the arguments from the allocators' highest role position on:
        // then it belongs to another pointer type sharing the offset (stripped
        // fnptr: one-argument `xRoundup` functions at +32, like the three-argument
        // `strm->zalloc`). `reach`: one past the highest argument any such
        // candidate reads.
        let precise = self.cands.get(&key).is_some_and(|c| c.1);
        let mut reach: Option<u8> = None;
        let mut agreed: Option<(Spec, Vec<String>)> = None;
        let mut conflict = false;
        for &fa in cands.iter().filter(|&&a| a != caller_entry) {
            let Some(&f) = self.bin.by_addr.get(&fa) else { continue };
            let Some(found) = self.found.get(&f) else {
                let r = 8 - self.args_read(f).leading_zeros() as u8;
                // No allocator role lies beyond argument 5: such a reader always
                // blocks; so does any in a long list (an offset shared that widely
                // is settled by its first blocker, as the scan is per call site).
                if precise || r >= 6 || cands.len() > 64 {
                    conflict = true;
                    break;
                }
                reach = Some(reach.unwrap_or(0).max(r));
                continue;
            };
            let name = self.bin.funcs[f].name.clone();
            match &mut agreed {
                None => agreed = Some((found.spec, vec![name])),
                Some((s, names)) if same_roles(s, &found.spec) => names.push(name),
                Some(_) => {
                    conflict = true;
                    break;
                }
            }
        }
        if let (Some(r), Some((spec, _)), false) = (reach, &agreed, conflict) {
            let top = [spec.size, spec.count, spec.ptr].iter().flatten().copied().max().unwrap_or(0);
            conflict |= top == 0 || r > top;
        }
        let result = if conflict { None } else { agreed.map(|(s, n)| (s, n.join("|"))) };
        if self.debug_ptrs {
            let names: Vec<String> = self
                .cands
                .get(&key)
                .map(|c| c.0.as_slice())
                .unwrap_or(&[])
                .iter()
                .map(|a| {
                    let f = self.bin.by_addr.get(a).map(|&i| self.bin.funcs[i].name.as_str()).unwrap_or("?");
                    let c = self.bin.by_addr.get(a).and_then(|i| self.found.get(i)).map(|x| format!("{:?}", x.spec.kind)).unwrap_or("-".into());
                    format!("{f}:{c}")
                })
                .collect();
            eprintln!("pointer target {t:?} (caller {caller:#x}): candidates [{}] → {:?}", names.join(", "), result.as_ref().map(|r| &r.1));
        }
        if cacheable {
            self.agreed.borrow_mut().insert(key, result.clone());
        }
        result
    }

    /// Bit k: function `f` reads integer argument k before writing it, scanning
    /// its instructions in address order (a cheap stand-in for its data flow,
    /// used only for candidates of untyped pointer calls; it errs towards "read").
    pub(crate) fn args_read(&self, f: usize) -> u8 {
        use iced_x86::OpAccess as A;
        if let Some(&m) = self.args_read.borrow().get(&f) {
            return m;
        }
        let func = &self.bin.funcs[f];
        let mut info = iced_x86::InstructionInfoFactory::new();
        let (mut read, mut killed) = (0u8, 0u8);
        let arg = |u: &iced_x86::UsedRegister| ARG_REGS.iter().position(|&r| Some(r) == gpr(u.register()));
        for ins in crate::flow::interp::decode(self.bin, func.addr, func.size) {
            let used = info.info(&ins).used_registers();
            // Reads first: `mov edi, [rdi+8]` reads the argument it then overwrites.
            for (k, u) in used.iter().filter_map(|u| Some((arg(u)?, u))) {
                if killed & (1 << k) == 0 && matches!(u.access(), A::Read | A::ReadWrite | A::CondRead | A::ReadCondWrite) {
                    read |= 1 << k;
                }
            }
            for (k, u) in used.iter().filter_map(|u| Some((arg(u)?, u))) {
                if u.access() == A::Write && u.register().size() >= 4 {
                    killed |= 1 << k;
                }
            }
        }
        self.args_read.borrow_mut().insert(f, read);
        read
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

    /// DWARF, when present, vetoes what the data flow cannot see: a `void`
    /// function returns no storage (rax is leftover), an out-parameter is a
    /// pointer to a pointer, and role positions past the register arguments must
    /// be real scalar parameters (not members of a struct passed by value).
    fn check_dwarf(&self, f: usize, mut found: Found) -> Option<Found> {
        let dw = self.params.get(self.bin.funcs[f].addr);
        let spec = &mut found.spec;
        if let Some(d) = dw {
            // Storage comes back as a pointer; `void` and scalar returns are not.
            if (d.void || d.returns_scalar) && spec.gives_storage() && spec.out.is_none() {
                return None;
            }
            if let Some(o) = spec.out {
                match d.args.get(o as usize) {
                    Some(a) if !a.ty.ends_with("* *") && !a.ty.ends_with("**") => return None,
                    _ => {}
                }
            }
        }
        // A size or count is a number: a declared pointer that reaches an
        // allocator's size does so through pointer differences into it (`end -
        // start`, `1 + p - zIn` while parsing zIn), a length taken of what it points
        // to, not a size the caller chose (SQLite's sqlite3Fts5ConfigParseRank,
        // sqlite3PagerOpen's zFilename). The string copy stays an allocation;
        // it just has no size role.
        if let Some(d) = dw.filter(|_| !self.bin.funcs[f].name.contains('.')) {
            for role in [&mut spec.size, &mut spec.count] {
                if role.is_some_and(|p| declared_pointer(d, p)) {
                    *role = None;
                }
            }
        }
        // Beyond the six register arguments, a position is only meaningful when
        // DWARF shows that many declared parameters. Where DWARF declares fewer
        // parameters than the position, even in a register, the register holds a
        // member of a struct passed by value (SQLite's `tokenExpr(pParse, op,
        // Token t)`: t.n in %rcx) or a variadic argument: no parameter of its own,
        // no role (clones are left alone: their DWARF may list the origin's).
        let declared = dw.map(|d| d.args.len()).unwrap_or(0);
        let own_dwarf = dw.is_some() && !self.bin.funcs[f].name.contains('.');
        for role in [&mut spec.size, &mut spec.count, &mut spec.ptr, &mut spec.out] {
            if role.is_some_and(|p| (p >= 6 || own_dwarf) && p as usize >= declared) {
                *role = None;
            }
        }
        // The arity the remaining roles prove (a dropped role proves nothing).
        spec.nargs = role_arity(spec);
        if spec.kind == Some(Kind::Free) && spec.ptr.is_none() {
            return None;
        }
        Some(found)
    }

    fn classify_flow(&self, f: usize) -> Option<Found> {
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

    /// A bump/pool allocator: returns memory reached through parameter `i` and
    /// advances a field of `*i` by a size derived from parameter `j`.
    fn suballoc(&self, s: &Summary, storage_calls: u32) -> Option<Found> {
        use crate::flow::value::{CONST, GLOAD, GLOBAL, STACK};
        if s.rets.is_empty() || s.imprecise {
            return None;
        }
        let mut pool: Option<u8> = None;
        for r in &s.rets {
            if r.as_const() == Some(0) {
                continue;
            }
            if r.has(crate::flow::value::TOP) && r.lparams == 0 {
                return None;
            }
            // A bump hands out addresses: base + offset, never a scaled value; a
            // size in the address only when bumping down (see `bumped_down`).
            if (r.params != 0 && !bumped_down(s, r)) || r.has(crate::flow::value::STACK | crate::flow::value::GLOBAL | crate::flow::value::SCALED) {
                return None;
            }
            if r.calls & !storage_calls != 0 {
                return None;
            }
            if r.lparams == 0 {
                if r.calls == 0 {
                    return None;
                }
                continue;
            }
            let p = lowest(r.lparams)?;
            if pool.is_some_and(|q| q != p) {
                return None;
            }
            pool = Some(p);
        }
        let pool = pool?;
        // A bump: a field reached through the pool is advanced by arithmetic on
        // its own old value (`used += need`); a plain pointer swap (a list pop)
        // is not enough.
        let returned_fields = s.rets.iter().fold(0u32, |m, r| m | r.lfields);
        let st = s.stores.iter().find(|st| {
            let own = crate::flow::value::field_bit(st.param, st.via, st.off);
            st.param == pool
                && st.val.lparams & (1 << pool) != 0
                && st.val.has(crate::flow::value::ARITH)
                && st.val.calls == 0
                // the field is advanced from its own old value, which the result came from
                && st.val.lfields & own != 0
                && returned_fields & own != 0
                // by a size, or a constant object size: a constant step of ±1 is a
                // counter handing out indexes (`return fs->pc++`, a label allocator),
                // never a pointer into a pool
                && !(st.val.params & !(1 << pool) == 0 && st.val.kinds & (CONST | STACK | GLOBAL | GLOAD) == 0 && st.val.num.abs() == 1)
        })?;
        let (count, size) = count_size(Val { params: st.val.params & !(1 << pool), ..st.val });
        // Bumped by a constant alone (`return p->pFresh++` over 24-byte entries,
        // SQLite's rowSetEntryAlloc): every piece has one size, fixed inside —
        // a constructor handing out objects from its pool (DESIGN.md §1).
        let own = crate::flow::value::field_bit(st.param, st.via, st.off);
        let fixed = size.is_none()
            && count.is_none()
            && st.val.lfields == own
            && st.val.num != 0
            && st.val.kinds & (CONST | STACK | GLOBAL | GLOAD | crate::flow::value::TOP | crate::flow::value::MUL) == 0;
        if fixed {
            let mut spec = Spec { kind: Some(Kind::Ctor), ..Spec::default() };
            spec.nargs = role_arity(&spec);
            let why = format!("fixed size {} inside: member +{:#x} of memory reached through {} is bumped by it", st.val.num.abs(), st.off, arg_name(pool));
            return Some(Found { spec, evidence: vec![why] });
        }
        let mut spec = Spec { kind: Some(Kind::Suballoc), size, count, ..Spec::default() };
        spec.nargs = role_arity(&spec);
        let mut evidence = vec![format!("member +{:#x} of memory reached through {} is bumped", st.off, arg_name(pool))];
        if let Some(p) = size {
            evidence.push(format!("{} → bump size", arg_name(p)));
        }
        evidence.push(format!("memory reached through {} → return", arg_name(pool)));
        Some(Found { spec, evidence })
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

/// A returned `base - size` that is also stored back where the base came from
/// (`alloc = ws->allocStart - bytes; ws->allocStart = alloc; return alloc;`):
/// a bump-down sub-allocator (zstd's `ZSTD_cwksp_reserve_internal_buffer_space`).
/// A NULL joined in by a shared epilogue (-O0) is still NULL-or-address.
fn bumped_down(s: &Summary, r: &Val) -> bool {
    use crate::flow::value::{ARITH, CONST, LOAD, SCALED};
    r.has(ARITH)
        && !r.has(SCALED)
        && (!r.has(CONST) || r.num == 0)
        && r.calls == 0
        && r.lparams.count_ones() == 1
        && s.stores.iter().any(|st| {
            st.param == r.lparams.trailing_zeros() as u8
                && st.val.params == r.params
                && st.val.lparams == r.lparams
                && st.val.lfields & r.lfields != 0
                && st.val.has(LOAD | ARITH)
        })
}

/// Arguments the roles prove exist; `analyze_bytes` raises it to DWARF's count.
fn role_arity(spec: &Spec) -> u8 {
    [spec.size, spec.count, spec.ptr, spec.out, spec.src].iter().flatten().map(|p| p + 1).max().unwrap_or(0)
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

/// Provenance of argument `k` at a call; stack-passed arguments are not tracked.
pub(crate) fn arg(cs: &CallSite, k: u8) -> Val {
    cs.args.get(k as usize).copied().unwrap_or(Val::TOP)
}

/// Calls through a parameter, or through a member of an object a parameter
/// reaches, depend on who the caller is (its parameter types); others do not.
fn caller_key(t: &Target, caller: u64) -> u64 {
    match t {
        Target::PtrParam(_) | Target::PtrMember(_, Some(_)) => caller,
        _ => 0,
    }
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
fn count_size(v: Val) -> (Option<u8>, Option<u8>) {
    if v.has(crate::flow::value::MUL) && v.params.count_ones() >= 2 {
        let c = lowest(v.params);
        (c, lowest(v.params & !(1 << c.unwrap_or(0))))
    } else {
        (None, lowest(v.params))
    }
}

/// A value with the results of pure helper calls (`round_class(n)`, `xRoundup(n)`
/// through a pointer) replaced by the arguments they came from (`helpers.rs`).
pub(crate) fn expand_helpers(c: &Classifier, s: &Summary, v: Val) -> Val {
    c.helpers.expand(c.bin, s, v)
}

fn roles(s: &Spec) -> usize {
    [s.size, s.count, s.ptr, s.out].iter().flatten().count()
}

fn same_roles(a: &Spec, b: &Spec) -> bool {
    a.kind == b.kind && a.size == b.size && a.count == b.count && a.ptr == b.ptr && a.out == b.out
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

/// Integer argument `p` is a parameter DWARF declares as a pointer. Only when
/// every parameter before it takes one integer register (a pointer or an integer,
/// no struct by value, no floating point), so that DWARF's order is the registers'.
fn declared_pointer(d: &crate::dwarf::FnParams, p: u8) -> bool {
    let p = p as usize;
    if p >= 6 || p >= d.args.len() {
        return false;
    }
    let one_register = |a: &crate::dwarf::Param| a.ty.ends_with('*') || (matches!(a.letter, 'i' | 'z') && !matches!(a.ty.as_str(), "float" | "double" | "long double" | "_Float128" | "__float128"));
    d.args[..p].iter().all(one_register) && d.args[p].ty.ends_with('*')
}
