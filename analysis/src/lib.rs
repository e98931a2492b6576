//! allocsite analysis: load the ELF → call graph → sizeofness → classification.
//!
//! `analyze_path` is the whole pipeline; its result, [`Classification`], is plain
//! data that the rewriter consumes (or that a user edits by hand).

pub mod classification;
mod classify;
mod ctor;
pub mod descriptor;
mod dwarf;
pub mod flow;
mod indirect;
pub mod load;
pub mod output;
pub mod seeds;
pub mod sites;

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

/// User-supplied allocators and free functions (liballocs syntax).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub extra: Vec<descriptor::Descriptor>,
}

impl Options {
    pub fn from_descriptors(alloc_fns: &str, free_fns: &str) -> Result<Self, String> {
        let mut extra = descriptor::parse_list(alloc_fns, Kind::Alloc).map_err(|e| format!("--alloc-fns: {e}"))?;
        extra.extend(descriptor::parse_list(free_fns, Kind::Free).map_err(|e| format!("--free-fns: {e}"))?);
        Ok(Options { extra })
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
    let mut cls = analyze_bytes(&map, opts).map_err(err)?;
    cls.binary = path.display().to_string();
    Ok(cls)
}

/// Analyze an ELF image held in memory.
pub fn analyze_bytes(data: &[u8], opts: &Options) -> Result<Classification, String> {
    let bin = load::Binary::parse(data)?;
    let user: HashMap<String, seeds::Spec> = opts.extra.iter().map(|d| (d.name.clone(), d.spec())).collect();
    let sums = flow::summarize_all(&bin);
    let dw = dwarf::Loaded::load(data);
    let slot_types = dwarf::Types::read(&dw);
    let params = dwarf::Params::read(&dw);
    let mut c = classify::Classifier::new(&bin, &sums, &user, &slot_types, &params);
    c.run();
    ctor::mark(&mut c);
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
    Ok(Classification { binary: String::new(), source: "analysis".into(), functions, imports: Vec::new(), calls: Vec::new() })
}
