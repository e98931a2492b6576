//! allocsite analysis: load the ELF → call graph → sizeofness → classification.
//!
//! `analyze_path` is the whole pipeline; its result, [`Classification`], is plain
//! data that the rewriter consumes (or that a user edits by hand).

pub mod classification;
mod calls;
mod classify;
mod helpers;
mod ctor;
pub mod deps;
pub mod descriptor;
mod dwarf;
pub mod flow;
mod indirect;
pub mod load;
pub mod output;
pub mod seeds;
pub mod sites;
mod strlen;
mod fxhash;
pub mod timing;

pub use classification::{Addr, AllocFn, Classification, Kind, Role};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

/// A failure to analyze a file: always names the file and the problem in one line.
#[derive(Debug)]
pub struct Error {
    pub path: String,
    pub msg: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.msg)
    }
}

impl std::error::Error for Error {}

/// What the user adds to the analysis.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Allocators and free functions named in liballocs syntax.
    pub extra: Vec<descriptor::Descriptor>,
    /// Summaries of dependencies (`--with`): their allocation functions and
    /// constructors are imports of those names here.
    pub with: Vec<deps::Summary>,
    /// The analysed file's path when analyzing bytes (`$ORIGIN` of its search path).
    pub path: Option<std::path::PathBuf>,
    /// Do not analyze `DT_RUNPATH` dependencies on the fly when no `--with` is given.
    pub no_deps: bool,
    /// Functions of this binary that `allocsite trace` saw allocating (matched by
    /// address): each is what the trace says when its code alone classifies it as
    /// nothing, so its callers are classified through it.
    pub traced: Vec<AllocFn>,
}

impl Options {
    pub fn from_descriptors(alloc_fns: &str, free_fns: &str) -> Result<Self, String> {
        let mut extra = descriptor::parse_list(alloc_fns, Kind::Alloc).map_err(|e| format!("--alloc-fns: {e}"))?;
        extra.extend(descriptor::parse_list(free_fns, Kind::Free).map_err(|e| format!("--free-fns: {e}"))?);
        Ok(Options { extra, ..Options::default() })
    }

    /// Add the summaries read from `paths` (`--with`); errors name the file.
    pub fn with_summaries(mut self, paths: &[std::path::PathBuf]) -> Result<Self, String> {
        for p in paths {
            self.with.push(deps::Summary::read(p)?);
        }
        Ok(self)
    }
}

/// Analyze the ELF file at `path`.
pub fn analyze_path(path: &Path, opts: &Options) -> Result<Classification, Error> {
    let err = |msg: String| Error { path: path.display().to_string(), msg };
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let meta = file.metadata().map_err(|e| err(format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if meta.len() == 0 {
        return Err(err("empty file (not an ELF file)".into()));
    }
    // SAFETY: the map is read-only and private; a concurrent truncation of the
    // input could fault, the same risk every mmap-based reader (objdump, gdb) takes.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| err(format!("cannot map: {e}")))?;
    let mut cls = analyze_at(&map, opts, Some(path)).map_err(err)?;
    cls.binary = path.display().to_string();
    Ok(cls)
}

/// Analyze an ELF image held in memory.
pub fn analyze_bytes(data: &[u8], opts: &Options) -> Result<Classification, String> {
    analyze_at(data, opts, opts.path.as_deref())
}

fn analyze_at(data: &[u8], opts: &Options, path: Option<&Path>) -> Result<Classification, String> {
    let mut t = timing::Phases::new();
    let bin = load::Binary::parse(data)?;
    t.mark("load");
    let user: HashMap<String, seeds::Spec> = opts.extra.iter().map(|d| (d.name.clone(), d.spec())).collect();
    let dw = dwarf::Loaded::load(data);
    t.mark("dwarf units");
    // The DWARF facts do not depend on the code's data flow: read them on a
    // thread of their own while the summaries take the cores (issue 14: the
    // rewrite of a 7.3 MB sqlite3, analysis included, within 0.5 s).
    let (sums, (slot_types, params)) = std::thread::scope(|s| {
        let dwarf_facts = s.spawn(|| (dwarf::Types::read(&dw), dwarf::Params::read(&dw)));
        let sums = flow::summarize_all(&bin);
        let facts = dwarf_facts.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (sums, facts)
    });
    t.mark("summaries and DWARF");
    let mut c = classify::Classifier::new(&bin, &sums, &user, &slot_types, &params);
    t.mark("classifier (pointers)");
    // Dependencies: the summaries given, else those of the libraries found through
    // the file's own search path (analyzed now, one level deep).
    let mut found_deps = Vec::new();
    if opts.with.is_empty() && !opts.no_deps {
        let quiet = Options { no_deps: true, ..Options::default() };
        for lib in deps::runpath_libraries(data, path) {
            if let Ok(cls) = analyze_path(&lib, &quiet) {
                // The file name: the directory is wherever the search path led.
                let origin = lib.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                found_deps.push(deps::Summary { origin, cls });
            }
        }
    }
    let dep_specs = deps::specs(if opts.with.is_empty() { &found_deps } else { &opts.with });
    c.set_deps(dep_specs.iter().map(|(n, (s, _))| (n.clone(), *s)).collect());
    let by_file_addr: HashMap<u64, usize> = bin.funcs.iter().enumerate().map(|(i, f)| (f.file_addr, i)).collect();
    c.set_traced(
        opts.traced
            .iter()
            .filter_map(|t| {
                let mut evidence = vec!["classified by allocsite trace (dynamic evidence)".to_string()];
                evidence.extend(t.evidence.iter().cloned());
                Some((*by_file_addr.get(&t.address.0)?, classify::Found { spec: deps::spec_of(t), evidence }))
            })
            .collect(),
    );
    t.mark("deps, traced");
    c.run();
    t.mark("fixpoint");
    ctor::mark(&mut c);
    t.mark("ctors");
    // Developer aid: ALLOCSITE_DEBUG_FN=name prints that function's data-flow summary.
    if let Ok(name) = std::env::var("ALLOCSITE_DEBUG_FN") {
        for (i, f) in bin.funcs.iter().enumerate() {
            if f.name == name {
                eprintln!("{} @ {:#x} size {}: {:#?}", f.name, f.addr, f.size, sums[i]);
            }
        }
    }
    let mut functions: Vec<AllocFn> = Vec::new();
    for (&f, found) in c.found.iter() {
        let func = &bin.funcs[f];
        // Seeds defined in the binary (a static libc) are reported only when named by the user.
        if c.is_libc_seed(f) {
            continue;
        }
        let mut spec = found.spec;
        let ptypes = params.get(func.addr);
        if let Some(t) = ptypes {
            spec.nargs = spec.nargs.max(t.args.len().min(16) as u8);
        } else if let Some(user) = opts.extra.iter().find(|d| d.name == func.name) {
            spec.nargs = spec.nargs.max(user.args.len() as u8);
        }
        let mut args = BTreeMap::new();
        for (role, pos) in [(Role::Size, spec.size), (Role::Count, spec.count), (Role::Ptr, spec.ptr), (Role::Out, spec.out)] {
            if let Some(p) = pos {
                args.insert(role, p);
            }
        }
        let mut evidence = found.evidence.clone();
        if let Some(t) = ptypes {
            for (role, &p) in args.iter() {
                if let Some(a) = t.args.get(p as usize) {
                    evidence.push(format!("DWARF: {} is `{}` ({})", role.as_str(), a.name, a.ty));
                }
            }
        }
        let kind = spec.kind.unwrap_or(Kind::Alloc);
        let mut af = AllocFn {
            name: func.name.clone(),
            address: Addr(func.file_addr),
            code_size: Some(func.size),
            kind,
            args,
            nargs: Some(spec.nargs),
            descriptor: String::new(),
            evidence,
            aliases: func.aliases.clone(),
            external: false,
        };
        af.descriptor = descriptor::render(&af, ptypes.map(|t| t.letters()).as_deref());
        functions.push(af);
    }
    functions.sort_by_key(|f| (f.address.0, f.name.clone()));
    let origin = |name: &str| -> String {
        if user.contains_key(name) {
            "named by --alloc-fns/--free-fns".to_string()
        } else if seeds::import(name).is_some() {
            "C library / C++ runtime allocating function".to_string()
        } else if let Some((_, from)) = dep_specs.get(name) {
            format!("exported by a dependency: {from}")
        } else {
            String::new()
        }
    };
    let (calls, imports) = calls::collect(&c, &origin);
    t.mark("functions, calls");
    Ok(Classification { binary: String::new(), source: "analysis".into(), functions, imports, calls })
}
