//! The trace's JSON: per traced binary (path, build-id) the functions learned — each a
//! `Classification` function entry plus hit counts and the static analysis's opinion
//! ("agrees", "new", "contradicts") — and the process tree.
//!
//! Each element of `binaries` is itself a loadable `Classification` (binary, source
//! "trace", functions), and [`merge`] folds one into a static classification: that is
//! what `analyze/rewrite --with TRACE.json` call.

use super::learn::{Learned, Verdict};
use super::tree::{Exit, Node};
use super::Tracer;
use allocsite_analysis::{descriptor, Addr, AllocFn, Classification, Kind, Role};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default, Clone)]
pub struct Hits {
    pub calls: u64,
    pub alloc: u64,
    pub realloc: u64,
    pub free: u64,
    pub carved: u64,
    pub fixed_size: u64,
    pub nothing: u64,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct TracedFn {
    #[serde(flatten)]
    pub f: AllocFn,
    pub hits: Hits,
    /// "agrees", "new" or "contradicts".
    #[serde(rename = "static")]
    pub opinion: String,
    /// The static analysis's kind and descriptor when it contradicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_descriptor: Option<String>,
    #[serde(default)]
    pub settled: bool,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Binary {
    pub binary: String,
    pub build_id: String,
    pub source: String,
    pub functions: Vec<TracedFn>,
    /// Statically classified functions that were called but never seen allocating.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<Unconfirmed>,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Unconfirmed {
    pub name: String,
    pub address: Addr,
    pub descriptor: String,
    pub calls: u64,
}

/// What the tracer did: its cost is these stops.
#[derive(Serialize, Default)]
pub struct Stats {
    pub breakpoint_hits: u64,
    pub allocator_hits: u64,
    pub idle_allocator_hits: u64,
    pub function_entries: u64,
    pub returns: u64,
    /// Return stops that completed an allocator's call (its result read).
    pub allocator_returns: u64,
    /// Entries of functions no longer watched (their breakpoint goes at that stop).
    pub unwatched_entries: u64,
    pub single_steps: u64,
    pub loader_events: u64,
    /// Breakpoints not planted because their address was not in the code of an image
    /// the process maps (a return address read off a stack that was no return address).
    pub refused_breakpoints: u64,
}

#[derive(Serialize)]
struct Memory {
    max: u64,
    peak_accounted: u64,
    bound_reached: bool,
}

#[derive(Serialize)]
struct Out<'a> {
    command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit: Option<Exit>,
    processes: &'a [Node],
    binaries: Vec<Binary>,
    /// The system's programs that ran unlearned (a script's shell and utilities), which
    /// `--system-programs` would learn: so that a program under /usr/bin run by a script
    /// is not left out without a word.
    system_programs_not_learned: Vec<String>,
    memory: Memory,
    stats: &'a Stats,
}

/// An `alloc` without any role is what the analysis called a constructor before it
/// had the `ctor` kind: the same opinion.
fn same_kind(s: &AllocFn, kind: Kind, nroles: usize) -> bool {
    let roleless_alloc = |k: Kind, n: usize| k == Kind::Alloc && n == 0;
    s.kind == kind || (roleless_alloc(s.kind, s.args.len()) && kind == Kind::Ctor) || (roleless_alloc(kind, nroles) && s.kind == Kind::Ctor)
}

fn traced(l: &Learned, v: &Verdict) -> TracedFn {
    let mut f = AllocFn {
        name: l.name.clone(),
        address: Addr(l.addr),
        code_size: l.statik.as_ref().and_then(|s| s.code_size),
        kind: v.kind,
        args: v.args.clone(),
        nargs: l.statik.as_ref().and_then(|s| s.nargs),
        descriptor: String::new(),
        evidence: l.evidence.iter().map(|e| format!("trace: {e}")).collect(),
        aliases: Vec::new(),
        external: false,
    };
    f.descriptor = descriptor::render(&f, None);
    // A function seen only as realloc(NULL, n), or only with its pointer argument NULL,
    // showed nothing against being a realloc.
    let only_null_realloc = |s: &AllocFn| {
        v.kind == Kind::Alloc
            && ((l.n_realloc_null > 0 && l.n_alloc == 0) || s.arg(Role::Ptr).is_some_and(|p| l.alloc_zero & (1 << p) != 0))
    };
    let (opinion, static_descriptor) = match &l.statik {
        None => ("new", None),
        Some(s) if s.kind == Kind::Realloc && only_null_realloc(s) && v.args.get(&Role::Size).is_none_or(|p| s.arg(Role::Size) == Some(*p)) => ("agrees", None),
        Some(s) if same_kind(s, v.kind, v.args.len()) && v.args.iter().all(|(r, p)| s.arg(*r).is_none_or(|q| q == *p)) => ("agrees", None),
        Some(s) => ("contradicts", Some(format!("{} {}", s.kind.as_str(), s.descriptor))),
    };
    TracedFn {
        f,
        hits: Hits { calls: l.calls, alloc: l.n_alloc, realloc: l.n_realloc + l.n_realloc_null, free: l.n_free, carved: l.n_carve, fixed_size: l.n_fixed, nothing: l.n_none },
        opinion: opinion.into(),
        static_descriptor,
        settled: l.settled,
    }
}

impl Tracer {
    pub fn binaries(&self) -> Vec<Binary> {
        let mut out: Vec<Binary> = Vec::new();
        for file in self.images.all.iter().filter(|f| !f.system) {
            let Some(ids) = self.learn.by_file.get(&file.id) else { continue };
            let mut b = Binary { binary: file.path.clone(), build_id: file.build_id.clone(), source: "trace".into(), functions: Vec::new(), unconfirmed: Vec::new() };
            for &id in ids {
                let l = &self.learn.fns[id];
                match (&l.verdict, &l.statik) {
                    (Some(v), _) => b.functions.push(traced(l, v)),
                    (None, Some(s)) if l.calls > 0 => {
                        b.unconfirmed.push(Unconfirmed { name: s.name.clone(), address: s.address, descriptor: s.descriptor.clone(), calls: l.calls })
                    }
                    _ => {}
                }
            }
            b.functions.sort_by_key(|f| f.f.address);
            b.unconfirmed.sort_by_key(|f| f.address);
            if !b.functions.is_empty() || !b.unconfirmed.is_empty() {
                out.push(b);
            }
        }
        out
    }

    /// Write the JSON (atomically); without `-o`, print a summary and the
    /// contradictions on standard error instead.
    pub fn finish_output(&mut self) {
        let bins = self.binaries();
        for b in bins.iter().filter(|_| self.opts.output.is_none()) {
            for f in b.functions.iter().filter(|f| f.opinion == "contradicts") {
                eprintln!(
                    "allocsite trace: {}: {} — static analysis says {}, the trace says {} {} ({})",
                    b.binary,
                    f.f.name,
                    f.static_descriptor.as_deref().unwrap_or("?"),
                    f.f.kind.as_str(),
                    f.f.descriptor,
                    f.f.evidence.join("; ")
                );
            }
        }
        let out = Out {
            command: self.opts.cmd.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            exit: self.root_exit,
            processes: &self.tree.nodes,
            binaries: bins,
            system_programs_not_learned: self.images.unlearned_programs(),
            memory: Memory { max: self.mem.max, peak_accounted: self.mem.peak, bound_reached: self.mem.over },
            stats: &self.stats,
        };
        let text = serde_json::to_string_pretty(&out).unwrap_or_default() + "\n";
        match &self.opts.output {
            Some(p) => {
                if let Err(e) = crate::atomic::write_atomic(p, text.as_bytes(), None) {
                    eprintln!("allocsite: {}: cannot write: {e}", p.display());
                }
            }
            None => {
                for b in &out.binaries {
                    for f in &b.functions {
                        eprintln!("allocsite trace: {}: {} [{}] {} calls ({})", b.binary, f.f.descriptor, f.f.kind.as_str(), f.hits.calls, f.opinion);
                    }
                }
                if !out.system_programs_not_learned.is_empty() {
                    eprintln!("allocsite trace: not learned, the system's programs (--system-programs learns them): {}", out.system_programs_not_learned.join(", "));
                }
            }
        }
    }
}

/// The GNU build-id of an ELF image, in hex ("" when it has none).
pub fn build_id_of(data: &[u8]) -> String {
    use object::Object;
    object::File::parse(data)
        .ok()
        .and_then(|o| o.build_id().ok().flatten().map(|b| b.iter().map(|x| format!("{x:02x}")).collect()))
        .unwrap_or_default()
}

/// The traced functions of `bin` (matched by build-id, else by path) from a trace
/// file's text, as a classification: those whose verdict the trace saw consistently.
pub fn for_binary(trace_json: &str, bin_path: &str, build_id: &str) -> Result<Option<Classification>, String> {
    #[derive(Deserialize)]
    struct File {
        binaries: Vec<Binary>,
    }
    let f: File = serde_json::from_str(trace_json).map_err(|e| format!("not a trace: {e}"))?;
    let b = f
        .binaries
        .into_iter()
        .find(|b| (!build_id.is_empty() && b.build_id == build_id) || (build_id.is_empty() && b.binary == bin_path));
    Ok(b.map(|b| Classification {
        binary: b.binary,
        source: "trace".into(),
        functions: b.functions.into_iter().filter(consistent).map(|t| t.f).collect(),
        imports: Vec::new(),
        calls: Vec::new(),
    }))
}

/// True when the trace showed its verdict on at least 3 of 4 watched calls (and
/// at least MIN_CALLS of them): a
/// destructor that freed its argument once in 60 calls, or a GC pass that returned a
/// pointer into a block now and then, is not evidence enough to hook a function. An
/// `alloc` without a size role (sizes its arguments do not explain) is never enough.
fn consistent(t: &TracedFn) -> bool {
    let h = &t.hits;
    let support = match t.f.kind {
        Kind::Alloc if t.f.args.is_empty() => 0,
        Kind::Alloc => h.alloc,
        Kind::Realloc => h.realloc,
        Kind::Free => h.free,
        // A pool's first piece of a fresh block is that block.
        Kind::Suballoc => h.carved + h.alloc + h.fixed_size,
        Kind::Ctor => h.fixed_size,
    };
    h.calls >= MIN_CALLS && support * 4 >= h.calls * 3
}

/// Fewer watched calls than this are an anecdote, not a classification.
const MIN_CALLS: u64 = 4;

/// Fold traced functions into a static classification: a function the analysis did
/// not find is added; one it classified differently is kept as the analysis has it
/// and the disagreement returned (one line each, with both sides' evidence).
/// Constructors found only by the trace are added as constructors.
pub fn merge(cls: &mut Classification, traced: &Classification) -> Vec<String> {
    let mut notes = Vec::new();
    for t in &traced.functions {
        match cls.functions.iter().find(|f| f.address == t.address) {
            None => cls.functions.push(AllocFn { evidence: t.evidence.clone(), ..t.clone() }),
            Some(s) if !same_kind(s, t.kind, t.args.len()) || t.args.iter().any(|(r, p)| s.arg(*r).is_some_and(|q| q != *p)) => notes.push(format!(
                "{}: static analysis says {} ({}); the trace says {} ({})",
                s.name,
                s.descriptor,
                s.evidence.join("; "),
                t.descriptor,
                t.evidence.join("; ")
            )),
            Some(_) => {}
        }
    }
    cls.functions.sort_by_key(|f| (f.address.0, f.name.clone()));
    notes
}
