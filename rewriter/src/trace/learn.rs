//! Learning allocation functions from what calls do at run time.
//!
//! At a C library allocator's entry the stack is unwound a few frames; every caller in
//! a non-system image becomes a candidate and gets an entry breakpoint. At a watched
//! function's entry its six integer arguments are kept and a return breakpoint is set
//! (matched by thread and stack pointer). Allocator results and frees that happen
//! while a watched call is active are events of that call. At its return:
//! - it returns an allocator's fresh pointer (or one a header past it): `alloc`, the
//!   size role being the argument equal to the allocator's size (or, with a count,
//!   whose product is), intersected over every observation; no such argument →
//!   fixed size (`ctor`), or varying (`alloc` without a size role, strdup-like);
//! - it returns what `realloc(p, n)` returned, `p` being an argument: `realloc`;
//! - it returns a pointer inside a block remembered from an allocator, fresh in no
//!   event of the call: a piece carved from a block (`suballoc`) — the size role is
//!   the argument that the distance between consecutive pieces covers;
//! - it returned nothing fresh but freed an argument: `free`.
//! A function stops being watched after `N` consecutive observations with the same
//! verdict (`--learn-limit`, default 64).

use super::breakpoints::Block;
use super::images::ImageFile;
use super::memory;
use super::sys::{self, Pid};
use super::{unwind, Tracer};
use allocsite_analysis::seeds::{self, Spec};
use allocsite_analysis::{AllocFn, Kind, Role};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

pub type FnId = usize;

/// The C library's and C++ runtime's allocators the tracer watches, by symbol name. What
/// their arguments mean is the analysis's seed table (`seeds::seed`), so the tracer and
/// the static analysis read a call of `calloc` or `operator delete` the same way.
pub const ALLOCATORS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "_Znwm",
    "_Znam",
    "_ZnwmRKSt9nothrow_t",
    "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t",
    "_ZdlPv",
    "_ZdaPv",
    "_ZdlPvm",
    "_ZdaPvm",
];

/// The roles of watched allocator `a` (an index into `ALLOCATORS`).
fn allocator(a: u8) -> Spec {
    seeds::seed(ALLOCATORS[a as usize]).expect("every watched allocator is a seed")
}

/// A verdict the static analysis agrees with settles after learn-limit / this many
/// consistent calls (at least 4).
const AGREEING_DIVISOR: u32 = 8;
/// A function whose verdict has not settled after this many × learn-limit watched
/// calls is no longer watched (what it showed so far is kept).
const RETIRE_AFTER: u64 = 4;

/// Frames walked at an allocator hit, and how many callers become candidates.
const DEPTH: usize = 8;
const CANDIDATES: usize = 3;
/// Calls that allocated or freed while returning nothing fresh, carved or freed from an
/// argument, after which a function with no verdict settles as soon as an agreeing one.
const KEPT: u64 = 4;
/// Allocator hits with a candidate on the stack, never entered, that still read the
/// allocator's result for it.
const UNENTERED: u32 = 4;
/// Watched calls kept per thread, events kept per call.
const MAX_CALLS: usize = 64;
const MAX_EVENTS: usize = 32;
/// A header in front of the user's pointer, or slack after a size: up to this many bytes.
const SLACK: u64 = 64;

/// Whether the call made storage and released it again before returning: a job that
/// frees its argument when done (a thread-pool task owning its parameters) does its
/// work with scratch storage; a free function does not allocate. The static analysis
/// draws the same line (analysis/README.md, "jobs with scratch memory").
fn scratch(events: &[Ev]) -> bool {
    events.iter().enumerate().any(|(i, e)| match *e {
        Ev::Fresh { ptr, .. } => events[i + 1..].iter().any(|f| matches!(*f, Ev::Freed(q) if q == ptr)),
        _ => false,
    })
}

#[derive(Clone, Copy, Debug)]
pub enum Ev {
    /// `realloc` says whether a realloc-kind allocator made it (`old` None: from NULL).
    Fresh { ptr: u64, size: u64, old: Option<u64>, realloc: bool },
    Freed(u64),
}

pub enum What {
    /// `near`: watched calls whose entry stack pointer is below it are the callers
    /// unwound at the hit — the only ones its result is an event of.
    Alloc { a: u8, size: u64, old: Option<u64>, out: Option<u64>, getters: Vec<FnId>, near: u64 },
    Fn { id: FnId, args: [u64; 6] },
}

/// A watched call active on a thread's stack; it returns to `ret` with rsp = `sp + 8`.
pub struct ActiveCall {
    pub ret: u64,
    pub sp: u64,
    pub what: What,
    pub events: Vec<Ev>,
}

/// What one function has shown so far.
pub struct Learned {
    pub file: Rc<ImageFile>,
    pub addr: u64,
    pub name: String,
    pub statik: Option<AllocFn>,
    pub calls: u64,
    /// Allocator hits seen with it on the stack before it was ever entered.
    unentered: u32,
    pub n_alloc: u64,
    pub n_realloc: u64,
    pub n_realloc_null: u64,
    /// Arguments that were 0 at every `alloc` observation (a realloc given NULL).
    pub alloc_zero: u8,
    pub n_free: u64,
    pub n_carve: u64,
    pub n_fixed: u64,
    pub n_none: u64,
    /// Of those, calls in which an allocator ran or a free happened (see `KEPT`).
    n_kept: u64,
    size: u8,
    count: u8,
    ptr: u8,
    rsize: u8,
    fptr: u8,
    /// Arguments freed or NULL (free's no-op) at every free observation: the pointer
    /// readings the observations allow, of a function that frees several arguments.
    free_fit: u8,
    carve_size: u8,
    carve_pairs: u64,
    owned_carves: u64,
    /// Ordered (count, size) argument pairs whose product was the size at every
    /// `alloc` observation, bit `count * 6 + size` (a size of 1 included: a reading
    /// the equality alone hides).
    pairs: u64,
    fixed: Option<u64>,
    varying: bool,
    /// The arguments at the first fixed-size observation, and which of the candidate
    /// size arguments (scalars, not pointers) kept that value at every one since.
    fixed_args: Option<[u64; 6]>,
    fixed_still: u8,
    last_carve: Option<(u64, [u64; 6], u64)>,
    pub verdict: Option<Verdict>,
    streak: u32,
    pub settled: bool,
    /// No longer watched without having settled: its verdict kept changing for
    /// `RETIRE_AFTER` × the learn limit calls.
    pub retired: bool,
    /// Its address is a function's entry, where [rsp] is the return address a watched
    /// call is matched by (`unwind::is_entry`). A `.cold` fragment unwound through at
    /// an allocator hit is not: it is never watched (its "return address" was a heap
    /// pointer of python3's, which took a return breakpoint).
    pub entry: bool,
    pub evidence: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Verdict {
    pub kind: Kind,
    pub args: BTreeMap<Role, u8>,
}

const ALL_PAIRS: u64 = (1 << 36) - 1;

/// Largest value taken as a possible size argument rather than a pointer.
const SCALAR_MAX: u64 = 1 << 24;

fn lowest(mask: u8) -> Option<u8> {
    (mask != 0).then(|| mask.trailing_zeros() as u8)
}

impl Learned {
    fn new(file: Rc<ImageFile>, addr: u64, statik: Option<AllocFn>) -> Self {
        let name = statik.as_ref().map_or_else(|| file.name_at(addr), |s| s.name.clone());
        let entry = unwind::is_entry(&file, addr);
        Learned {
            file, addr, name, statik, calls: 0, unentered: 0, n_alloc: 0, n_realloc: 0, n_realloc_null: 0, alloc_zero: 0x3f, n_free: 0, n_carve: 0, n_fixed: 0, n_none: 0, n_kept: 0,
            size: 0x3f, count: 0x3f, ptr: 0x3f, rsize: 0x3f, fptr: 0x3f, free_fit: 0x3f, carve_size: 0x3f, carve_pairs: 0, owned_carves: 0,
            pairs: ALL_PAIRS, fixed: None, varying: false, fixed_args: None, fixed_still: 0, last_carve: None, verdict: None, streak: 0, settled: false, retired: false,
            entry, evidence: Vec::new(),
        }
    }

    /// Still worth a breakpoint at its entry.
    pub fn watched(&self) -> bool {
        self.entry && !self.settled && !self.retired
    }

    /// The verdict is the static analysis's own classification: the code already
    /// says so, so fewer consistent calls settle it.
    fn agrees_with_static(&self) -> bool {
        match (&self.verdict, &self.statik) {
            (Some(v), Some(s)) => v.kind == s.kind && v.args.iter().all(|(r, p)| s.arg(*r) == Some(*p)),
            _ => false,
        }
    }

    fn note(&mut self, s: String) {
        if self.evidence.len() < 4 {
            self.evidence.push(s);
        }
    }

    /// The classification the evidence so far supports (None: not an allocation function).
    pub fn decide(&self) -> Option<Verdict> {
        let mut args = BTreeMap::new();
        let kind = if self.n_carve >= 2 && self.carve_pairs > 0 && self.carve_size != 0 && (self.owned_carves > 0 || self.n_carve >= 3) {
            args.insert(Role::Size, lowest(self.carve_size)?);
            Kind::Suballoc
        } else if self.n_realloc > 0 && self.ptr != 0 {
            args.insert(Role::Ptr, lowest(self.ptr)?);
            if let Some(s) = lowest(self.rsize) {
                args.insert(Role::Size, s);
            }
            Kind::Realloc
        } else if self.n_realloc_null > 0 && self.n_alloc == 0 && self.rsize != 0 {
            // Only ever realloc(NULL, n): malloc-like, as far as anything showed.
            args.insert(Role::Size, lowest(self.rsize)?);
            Kind::Alloc
        } else if let Some(roles) = self.static_alloc_roles() {
            args = roles;
            Kind::Alloc
        } else if self.n_alloc > 0 && self.n_alloc >= self.n_fixed && self.size != 0 {
            // (Fewer calls sized by an argument than by none: the argument matched by
            // coincidence, e.g. a tag a header's length short of a fixed size.)
            let s = lowest(self.size)?;
            args.insert(Role::Size, s);
            if self.count != 0x3f {
                if let Some(c) = lowest(self.count & !(1 << s)) {
                    args.insert(Role::Count, c);
                }
            }
            Kind::Alloc
        } else if self.n_free > 0 && self.n_alloc + self.n_fixed == 0 && self.fptr != 0 {
            let stat = self.statik.as_ref().filter(|s| s.kind == Kind::Free).and_then(|s| s.arg(Role::Ptr)).filter(|&p| p < 6 && self.free_fit & (1 << p) != 0);
            args.insert(Role::Ptr, stat.or_else(|| lowest(self.fptr))?);
            Kind::Free
        } else if self.n_fixed > 0 && (self.varying || self.fixed_still != 0 || self.n_fixed < 2) {
            // A constant size is evidence of a constructor only if it stayed constant
            // (over two calls at least) while every argument that could have given it varied.
            Kind::Alloc
        } else if self.n_fixed > 0 {
            Kind::Ctor
        } else {
            return None;
        };
        Some(Verdict { kind, args })
    }

    /// The static analysis's `alloc` roles, when every observation fits them: the
    /// observations often allow several readings (`f(opaque, n, 1)` returning `n`
    /// bytes is `size=1` as well as `count=1 size=2`), and the code decides between them.
    fn static_alloc_roles(&self) -> Option<BTreeMap<Role, u8>> {
        let s = self.statik.as_ref().filter(|s| s.kind == Kind::Alloc && self.n_alloc > 0 && self.n_alloc >= self.n_fixed)?;
        let fits = match (s.arg(Role::Count), s.arg(Role::Size)) {
            (Some(c), Some(z)) => c < 6 && z < 6 && self.pairs & (1 << (c * 6 + z)) != 0,
            (None, Some(z)) => z < 6 && self.size & (1 << z) != 0,
            _ => false,
        };
        fits.then(|| s.args.iter().filter(|(r, _)| matches!(r, Role::Count | Role::Size)).map(|(r, p)| (*r, *p)).collect())
    }
}

/// Ordered (count, size) pairs of arguments whose product is `s`.
fn pair_mask(s: u64, args: &[u64; 6], valid: u8) -> u64 {
    let mut m = 0;
    for i in 0..6 {
        for j in 0..6 {
            if i != j && valid & (1 << i) != 0 && valid & (1 << j) != 0 && args[i] >= 1 && args[j] >= 1 && args[i].checked_mul(args[j]) == Some(s) {
                m |= 1 << (i * 6 + j);
            }
        }
    }
    m
}

#[derive(Default)]
pub struct Learn {
    pub fns: Vec<Learned>,
    pub by_key: HashMap<(usize, u64), FnId>,
    pub by_file: HashMap<usize, Vec<FnId>>,
}

impl Learn {
    /// Something was learned about function `id`: it is a new candidate, its verdict
    /// changed or it settled. Counted per image (`ImageFile::news`), so a process's
    /// quiet spell is not broken by what another program learns meanwhile.
    fn news(&self, id: FnId) {
        let f = &self.fns[id].file;
        f.news.set(f.news.get() + 1);
    }
}

/// How the allocator's size `s` derives from the arguments, trying the most specific
/// relation first: an argument equal to it; two (count, size) whose product it is; an
/// argument a small header short of it; an argument scaled by 2, 4, 8 or 16 (`n<<3`).
/// Returns (size mask, count mask).
fn size_relation(s: u64, args: &[u64; 6], valid: u8) -> (u8, u8) {
    let mask = |f: &dyn Fn(u64) -> bool| -> u8 {
        let mut m = 0;
        for (i, &a) in args.iter().enumerate() {
            if valid & (1 << i) != 0 && a != 0 && f(a) {
                m |= 1 << i;
            }
        }
        m
    };
    let m = mask(&|a| a == s);
    if m != 0 {
        return (m, 0);
    }
    for i in 0..6 {
        for j in i + 1..6 {
            if valid & (1 << i) != 0 && valid & (1 << j) != 0 && args[i] > 1 && args[j] > 1 && args[i].checked_mul(args[j]) == Some(s) {
                return (1 << j, 1 << i);
            }
        }
    }
    let m = mask(&|a| a >= 16 && s > a && s - a <= SLACK);
    if m != 0 {
        return (m, 0);
    }
    (mask(&|a| a >= 2 && [2, 4, 8, 16].iter().any(|&k| a.checked_mul(k) == Some(s))), 0)
}

/// Arguments that point at `p` or a header's length before it.
fn ptr_mask(p: u64, args: &[u64; 6]) -> u8 {
    let mut m = 0;
    for (i, &a) in args.iter().enumerate() {
        if p != 0 && a >= p && a - p <= SLACK {
            m |= 1 << i;
        }
    }
    m
}

fn regs_args(r: &sys::Regs) -> [u64; 6] {
    [r.rdi, r.rsi, r.rdx, r.rcx, r.r8, r.r9]
}

impl Tracer {
    /// A breakpoint at `addr` fired in `tid` (rip already rewound).
    pub fn hit(&mut self, tid: Pid, addr: u64, regs: &sys::Regs) {
        let Some(bp) = self.st.space_of(tid).and_then(|s| self.st.spaces.get(&s)).and_then(|s| s.bps.get(&addr)) else { return };
        let (loader, rets, alloc, func, probe) = (bp.loader, bp.rets, bp.alloc, bp.func, bp.probe);
        if probe {
            // One-shot: the step over this call lands on its callee (`probe_landed`).
            self.bp_drop(tid, addr, |b| b.probe = false);
            if let Some(t) = self.st.threads.get_mut(&tid) {
                t.probing = true;
            }
        }
        self.stats.breakpoint_hits += 1;
        self.stats.loader_events += loader as u64;
        self.stats.returns += (rets > 0) as u64;
        self.stats.allocator_hits += alloc.is_some() as u64;
        self.stats.function_entries += func.is_some() as u64;
        if loader {
            self.refresh_images(tid);
        }
        if rets > 0 {
            self.on_return(tid, addr, regs);
        }
        if let Some(a) = alloc {
            self.on_alloc_entry(tid, a, regs);
        }
        if let Some(f) = func {
            self.on_fn_entry(tid, addr, f, regs);
        }
        if self.mem.over {
            if !self.over_noted {
                self.over_noted = true;
                eprintln!("allocsite trace: memory bound ({} bytes) reached: learning stops, the tree keeps running", self.mem.max);
            }
            // Every space drops its breakpoints at its next stop here.
            self.bp_clear(tid);
            if let Some(t) = self.st.threads.get_mut(&tid) {
                t.calls.clear();
            }
        }
    }

    /// The function with link-time entry `addr` in `file`, created on first sight.
    pub fn function(&mut self, file: &Rc<ImageFile>, addr: u64) -> FnId {
        if let Some(&id) = self.learn.by_key.get(&(file.id, addr)) {
            return id;
        }
        let statik = self.statics(file).and_then(|c| c.functions.iter().find(|f| f.address.0 == addr).cloned());
        let id = self.learn.fns.len();
        self.learn.fns.push(Learned::new(file.clone(), addr, statik));
        self.learn.by_key.insert((file.id, addr), id);
        self.learn.by_file.entry(file.id).or_default().push(id);
        self.learn.news(id);
        self.mem.charge(memory::FUNCTION);
        id
    }

    fn push_call(&mut self, tid: Pid, call: ActiveCall) {
        let full = self.st.threads.get(&tid).is_none_or(|t| t.calls.len() >= MAX_CALLS);
        if full || self.mem.over {
            return;
        }
        let ret = call.ret;
        if self.bp_add(tid, ret, |b| b.rets += 1) {
            if let Some(t) = self.st.threads.get_mut(&tid) {
                t.calls.push(call);
            }
        }
    }

    fn events_to_calls(&mut self, tid: Pid, ev: Ev, near: u64) {
        if let Some(t) = self.st.threads.get_mut(&tid) {
            for c in t.calls.iter_mut() {
                if matches!(c.what, What::Fn { .. }) && c.sp < near && c.events.len() < MAX_EVENTS {
                    c.events.push(ev);
                }
            }
        }
    }

    fn on_alloc_entry(&mut self, tid: Pid, a: u8, regs: &sys::Regs) {
        let al = allocator(a);
        let args = regs_args(regs);
        let arg = |p: Option<u8>| p.map(|i| args[i as usize]);
        let mut learning = false;
        let mut getters = Vec::new();
        let stack = sys::Stack::read(tid, regs.rsp, sys::STACK_COPY);
        // Without CFI for the callers, only calls made straight from the caller count.
        let mut near = regs.rsp + 8;
        if !self.mem.over {
            let maps = self.st.space_of(tid).and_then(|s| self.st.spaces.get(&s)).map(|s| s.maps.clone()).unwrap_or_default();
            let frames = unwind::frames(&stack, &maps, regs, DEPTH);
            if let Some(ret) = stack.u64(regs.rsp) {
                self.tail_caller(tid, regs.rip, ret, &maps);
            }
            for f in frames.iter() {
                near = f.cfa;
                let Some((entry, file_id)) = f.entry else { continue };
                let Some(m) = maps.iter().find(|m| m.file.id == file_id) else { continue };
                if m.file.system {
                    continue;
                }
                let file = m.file.clone();
                let id = self.function(&file, entry);
                getters.push(id);
                let l = &self.learn.fns[id];
                let watched = l.watched();
                // Only an allocation function's callers can be wrappers of it: going up
                // stops at the first caller not (yet) seen to be one.
                let wraps = l.verdict.as_ref().is_some_and(|v| !v.args.is_empty() || v.kind == Kind::Free);
                if watched {
                    // Its result can teach only a call of it being watched (found
                    // below among the active calls) or, for a candidate never entered
                    // yet, the block a pool carves from later. A function seen on the
                    // stack again and again without being entered (`main`, a loop
                    // started before it was a candidate) no longer makes the hit
                    // worth reading the allocator's result.
                    let l = &mut self.learn.fns[id];
                    if l.calls == 0 && l.unentered < UNENTERED {
                        l.unentered += 1;
                        learning = true;
                    }
                    let at = entry.wrapping_add(m.bias);
                    self.bp_add(tid, at, |b| b.func = Some(id));
                }
                if getters.len() >= CANDIDATES || !wraps {
                    break;
                }
            }
        }
        // Watched calls deeper in the stack than the callers unwound learn nothing here.
        learning |= self.st.threads.get(&tid).is_some_and(|t| t.calls.iter().any(|c| matches!(c.what, What::Fn { .. }) && c.sp < near));
        if al.kind == Some(Kind::Free) {
            if let Some(p) = arg(al.ptr).filter(|&p| p != 0) {
                if let Some(s) = self.st.space_of(tid).and_then(|s| self.st.spaces.get_mut(&s)) {
                    if s.blocks.remove(&p).is_some() {
                        self.mem.release(memory::BLOCK);
                    }
                }
                // A free made inside the C library (fclose freeing its FILE, an
                // operator delete's own free) is that library's business: the
                // program's function handed the pointer to a closer, not to a free.
                let maps = self.st.space_of(tid).and_then(|s| self.st.spaces.get(&s)).map(|s| s.maps.clone()).unwrap_or_default();
                let from_system = stack.u64(regs.rsp).is_some_and(|r| maps.iter().any(|m| m.file.system && r >= m.lo && r < m.hi));
                if !from_system {
                    self.events_to_calls(tid, Ev::Freed(p), near);
                }
            }
            self.count_hit(tid, learning);
            return;
        }
        self.count_hit(tid, learning);
        if !learning || self.mem.over {
            return;
        }
        let size = match (arg(al.size), arg(al.count)) {
            (Some(s), Some(c)) => s.saturating_mul(c),
            (Some(s), None) => s,
            _ => 0,
        };
        let old = arg(al.ptr).filter(|&p| p != 0);
        let out = arg(al.out);
        let Some(ret) = stack.u64(regs.rsp) else { return };
        self.push_call(tid, ActiveCall { ret, sp: regs.rsp, what: What::Alloc { a, size, old, out, getters, near }, events: Vec::new() });
    }

    fn on_fn_entry(&mut self, tid: Pid, addr: u64, id: FnId, regs: &sys::Regs) {
        if !self.learn.fns[id].watched() || self.mem.over {
            self.stats.unwatched_entries += 1;
            self.bp_drop(tid, addr, |b| b.func = None);
            return;
        }
        self.learn.fns[id].calls += 1;
        let Some(ret) = sys::read_u64(tid, regs.rsp) else { return };
        self.push_call(tid, ActiveCall { ret, sp: regs.rsp, what: What::Fn { id, args: regs_args(regs) }, events: Vec::new() });
    }

    /// A return breakpoint fired. Every watched call returning here from this stack
    /// depth completes, innermost first: after a tail call (`jmp malloc`) the
    /// allocator and its caller return together.
    fn on_return(&mut self, tid: Pid, addr: u64, regs: &sys::Regs) {
        loop {
            let Some(t) = self.st.threads.get_mut(&tid) else { return };
            let Some(i) = t.calls.iter().rposition(|c| c.ret == addr && c.sp.wrapping_add(8) == regs.rsp) else { return };
            let mut popped: Vec<ActiveCall> = t.calls.drain(i..).collect();
            // Calls above it never returned normally (longjmp, exceptions).
            for stale in popped.drain(1..) {
                self.bp_drop(tid, stale.ret, |b| b.rets = b.rets.saturating_sub(1));
            }
            self.bp_drop(tid, addr, |b| b.rets = b.rets.saturating_sub(1));
            let call = popped.pop().expect("drained from i");
            self.returned(tid, call, regs);
        }
    }

    fn returned(&mut self, tid: Pid, call: ActiveCall, regs: &sys::Regs) {
        match call.what {
            What::Alloc { a, size, old, out, getters, near } => {
                self.stats.allocator_returns += 1;
                let fresh = match out {
                    Some(slot) if regs.rax == 0 => sys::read_u64(tid, slot),
                    Some(_) => None,
                    None => Some(regs.rax),
                };
                let Some(ptr) = fresh.filter(|&p| p != 0) else { return };
                if let Some(s) = self.st.space_of(tid).and_then(|s| self.st.spaces.get_mut(&s)) {
                    if let Some(o) = old {
                        if s.blocks.remove(&o).is_some() {
                            self.mem.release(memory::BLOCK);
                        }
                    }
                    if self.mem.charge(memory::BLOCK) {
                        s.blocks.insert(ptr, Block { size: size.max(1), getters });
                    }
                }
                let realloc = allocator(a).kind == Some(Kind::Realloc);
                self.events_to_calls(tid, Ev::Fresh { ptr, size, old, realloc }, near);
            }
            What::Fn { id, args } => self.judge(tid, id, &args, &call.events, regs.rax),
        }
    }

    fn judge(&mut self, tid: Pid, id: FnId, args: &[u64; 6], events: &[Ev], rax: u64) {
        let block = self.st.space_of(tid).and_then(|s| self.st.spaces.get(&s)).and_then(|s| s.block_of(rax).map(|(lo, b)| (lo, b.getters.contains(&id))));
        let l = &mut self.learn.fns[id];
        // Only the arguments the function takes, when the analysis knows how many.
        let valid: u8 = l.statik.as_ref().and_then(|f| f.nargs).map_or(0x3f, |n| ((1u16 << n.min(6)) - 1) as u8);
        let fresh = events.iter().rev().find_map(|e| match *e {
            Ev::Fresh { ptr, size, old, realloc } if rax >= ptr && rax - ptr <= SLACK => Some((ptr, size, old, realloc)),
            _ => None,
        });
        if let Some((_, size, old, realloc)) = fresh {
            let pm = old.map_or(0, |o| ptr_mask(o, args)) & valid;
            let (m, c) = size_relation(size, args, valid);
            if pm != 0 {
                l.n_realloc += 1;
                l.ptr &= pm;
                l.rsize &= m;
                l.note(format!("returned realloc's result ({size} bytes) of argument {}", pm.trailing_zeros()));
            } else if realloc && old.is_none() && m != 0 {
                // realloc(NULL, n): a realloc-like function given no block yet.
                l.n_realloc_null += 1;
                l.rsize &= m;
                l.note(format!("returned realloc(NULL, {size}); argument {} = {}", m.trailing_zeros(), args[m.trailing_zeros() as usize]));
            } else if m != 0 {
                l.n_alloc += 1;
                l.size &= m;
                l.alloc_zero &= args.iter().enumerate().filter(|(_, &a)| a == 0).fold(0, |z, (i, _)| z | 1 << i);
                if c != 0 {
                    l.count &= c;
                }
                l.pairs &= pair_mask(size, args, valid);
                l.note(format!("returned a fresh {size}-byte block; argument {} = {}", m.trailing_zeros(), args[m.trailing_zeros() as usize]));
            } else {
                l.n_fixed += 1;
                if l.fixed.is_some_and(|f| f != size) {
                    l.varying = true;
                }
                l.fixed = Some(size);
                match l.fixed_args {
                    None => {
                        l.fixed_args = Some(*args);
                        l.fixed_still = (0..6).filter(|&i| valid & (1 << i) != 0 && args[i] <= SCALAR_MAX).fold(0, |m, i| m | 1 << i);
                    }
                    Some(first) => l.fixed_still &= (0..6).filter(|&i| args[i] == first[i]).fold(0, |m, i| m | 1 << i),
                }
                l.note(format!("returned a fresh {size}-byte block, size from no argument"));
            }
        } else if let Some((lo, owned)) = block.filter(|_| rax != 0) {
            l.n_carve += 1;
            if owned {
                l.owned_carves += 1;
            }
            if let Some((prev, pargs, _)) = l.last_carve.filter(|c| c.2 == lo) {
                let (gap, a) = if rax > prev { (rax - prev, pargs) } else { (prev - rax, *args) };
                let mut m = 0u8;
                for (i, &v) in a.iter().enumerate() {
                    if valid & (1 << i) != 0 && v != 0 && v <= gap && gap - v <= SLACK {
                        m |= 1 << i;
                    }
                }
                if gap != 0 {
                    l.carve_pairs += 1;
                    l.carve_size &= m;
                }
            }
            l.last_carve = Some((rax, *args, lo));
            l.note(format!("returned {:#x}, a piece of the block at {lo:#x} it got earlier", rax));
        } else if let Some(pm) = events.iter().find_map(|e| match *e {
            Ev::Freed(p) => Some(ptr_mask(p, args)).filter(|&m| m != 0),
            _ => None,
        }).filter(|_| !scratch(events)) {
            l.n_free += 1;
            l.fptr &= pm & valid;
            let freed = events.iter().fold(0, |m, e| match *e {
                Ev::Freed(p) => m | ptr_mask(p, args),
                _ => m,
            });
            let null = (0..6).filter(|&i| args[i] == 0).fold(0, |m, i| m | 1 << i);
            l.free_fit &= (freed | null) & valid;
            l.note(format!("freed argument {}", pm.trailing_zeros()));
        } else {
            l.n_none += 1;
            if !events.is_empty() {
                l.n_kept += 1;
            }
        }
        let v = l.decide();
        if v == l.verdict {
            l.streak += 1;
        } else {
            l.verdict = v;
            l.streak = 1;
            l.file.news.set(l.file.news.get() + 1);
        }
        // A verdict the code agrees with, or no verdict at all from a function seen
        // again and again allocating or freeing without handing anything back (a
        // caller of allocation functions, not one: `sqlite3VdbeExec`), settles sooner.
        let quick = l.agrees_with_static() || (l.verdict.is_none() && l.n_kept >= KEPT);
        let limit = if quick { (self.opts.learn_limit / AGREEING_DIVISOR).max(4) } else { self.opts.learn_limit };
        let settle = l.streak >= limit;
        let retire = !settle && l.calls >= u64::from(self.opts.learn_limit) * RETIRE_AFTER;
        if l.watched() && (settle || retire) {
            l.settled = settle;
            l.retired = retire;
            l.file.news.set(l.file.news.get() + 1);
            let at = l.addr;
            let fid = l.file.id;
            // Stop watching it here; other spaces drop it at their next hit.
            let bias = self.st.space_of(tid).and_then(|s| self.st.spaces.get(&s)).and_then(|s| s.maps.iter().find(|m| m.file.id == fid).map(|m| m.bias));
            if let Some(b) = bias {
                self.bp_drop(tid, at.wrapping_add(b), |bp| bp.func = None);
            }
        }
    }

    /// Re-read the process's mappings and place the breakpoints of new images: the
    /// allocators of system libraries, the loader's r_debug hook, and every function
    /// the static analysis classified (or the tracer learned but has not settled).
    pub fn refresh_images(&mut self, tid: Pid) {
        let tgid = self.st.threads.get(&tid).map_or(tid, |t| t.tgid);
        let mut fresh = 0;
        let maps = self.images.maps(tgid, &mut fresh);
        self.mem.charge(fresh);
        let Some(sid) = self.st.space_of(tid) else { return };
        if self.st.spaces.get(&sid).is_some_and(|s| s.disarmed) {
            // New code is mapped: what it runs may be new, watch again.
            self.arm(tid, &maps, true);
        }
        let (new, turned): (Vec<_>, bool) = match self.st.spaces.get_mut(&sid) {
            Some(s) => {
                if s.exe.is_none() {
                    let exe = sys::exe_path(tgid);
                    s.exe = maps.iter().find(|m| m.file.path == exe).map(|m| m.file.id);
                }
                s.maps = maps.clone();
                let new: Vec<_> = maps.iter().filter(|m| !s.seen.contains(&m.lo)).cloned().collect();
                s.seen.extend(new.iter().map(|m| m.lo));
                let learned = s.learns;
                s.learns |= maps.iter().any(|m| !m.file.system);
                (new, s.learns && !learned)
            }
            None => return,
        };
        if turned {
            // The first code that can teach something: the allocators of the system
            // images mapped before it are watched from now on too.
            let old: Vec<_> = maps.iter().filter(|m| m.file.system && !new.iter().any(|n| n.lo == m.lo)).cloned().collect();
            self.watch_allocators(tid, &old, true);
        }
        let learns = self.st.spaces.get(&sid).is_some_and(|s| s.learns && !s.disarmed);
        for m in new {
            let in_map = |a: u64| a >= m.lo && a < m.hi;
            if m.file.system {
                if learns {
                    self.watch_allocators(tid, std::slice::from_ref(&m), true);
                }
                if let Some(a) = m.file.symbol("_dl_debug_state").map(|a| a.wrapping_add(m.bias)).filter(|&a| in_map(a)) {
                    self.bp_add(tid, a, |b| b.loader = true);
                }
                continue;
            }
            if self.mem.over {
                continue;
            }
            let statics: Vec<u64> = self.statics(&m.file).map(|c| c.functions.iter().map(|f| f.address.0).collect()).unwrap_or_default();
            for addr in statics {
                self.function(&m.file, addr);
            }
            let ids = self.learn.by_file.get(&m.file.id).cloned().unwrap_or_default();
            for id in ids {
                let at = self.learn.fns[id].addr.wrapping_add(m.bias);
                if self.learn.fns[id].watched() && in_map(at) {
                    self.bp_add(tid, at, |b| b.func = Some(id));
                }
            }
        }
    }
}

#[cfg(test)]
mod scratch_tests {
    use super::{scratch, Ev};

    fn fresh(ptr: u64) -> Ev {
        Ev::Fresh { ptr, size: 64, old: None, realloc: false }
    }

    #[test]
    fn a_job_frees_its_scratch_before_its_argument() {
        // zstd's FASTCOVER_tryParameters: calloc + malloc scratch, free both, free(data)
        assert!(scratch(&[fresh(0x1000), fresh(0x2000), Ev::Freed(0x2000), Ev::Freed(0x9000), Ev::Freed(0x1000)]));
    }

    #[test]
    fn a_free_function_or_a_destructor_makes_nothing() {
        assert!(!scratch(&[Ev::Freed(0x9000)]));
        assert!(!scratch(&[Ev::Freed(0x1000), Ev::Freed(0x9000)]));
        // storage made and kept (handed elsewhere) is no scratch
        assert!(!scratch(&[fresh(0x1000), Ev::Freed(0x9000)]));
        // a block freed before one at the same address is made again is no scratch either
        assert!(!scratch(&[Ev::Freed(0x1000), fresh(0x1000), Ev::Freed(0x9000)]));
    }
}

#[cfg(test)]
mod allocator_tests {
    use super::{allocator, Kind, ALLOCATORS};

    #[test]
    fn every_watched_allocator_has_its_seed_roles() {
        for a in 0..ALLOCATORS.len() as u8 {
            let s = allocator(a);
            assert!(s.kind.is_some(), "{}", ALLOCATORS[a as usize]);
        }
        let calloc = allocator(ALLOCATORS.iter().position(|&n| n == "calloc").unwrap() as u8);
        assert_eq!((calloc.kind, calloc.count, calloc.size), (Some(Kind::Alloc), Some(0), Some(1)));
        let pm = allocator(ALLOCATORS.iter().position(|&n| n == "posix_memalign").unwrap() as u8);
        assert_eq!((pm.out, pm.size), (Some(0), Some(2)));
    }
}
