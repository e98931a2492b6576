//! The heaptrack oracle: read heaptrack's raw recording of the ORIGINAL program and fold
//! every allocation's backtrace with the classification into the two sites allocsite's
//! report names (DESIGN.md §1), independently of allocsite's rewriter and runtime.
//!
//! heaptrack (an `LD_PRELOAD` library) intercepts `malloc`, `calloc`, `realloc`,
//! `posix_memalign`, `aligned_alloc`, `memalign`, `valloc` and `free`, and unwinds the
//! stack with libunwind at every allocation. Its raw data file (`heaptrack --raw`, or the
//! preload library with `DUMP_HEAPTRACK_OUTPUT`; zstd-compressed by the `heaptrack`
//! script) is one record per line, numbers in hex:
//! - `x LEN PATH` — the executable; `X CMDLINE`, `v`, `I`, `c`, `R`, `A`: not used here.
//! - `m LEN NAME BASE (VADDR MEMSZ)*` — a loaded module: its name (`x` = the
//!   executable), load base and PT_LOAD segments; `m 1 -` starts a new module list
//!   (after `dlopen`/`dlclose`).
//! - `t IP PARENT` — trace node number 1, 2, … (implicitly numbered): one frame and the
//!   node of the next outer frame (0 = none). `IP` is the frame's return address minus
//!   one (libunwind's convention, so it points into the call instruction), innermost
//!   frame = the caller of the interposed allocator.
//! - `+ SIZE TRACE PTR` — an allocation of SIZE bytes (calloc: n × size) with its
//!   innermost trace node; `- PTR` — a free (realloc is a `-` of the old block and a `+`).
//!
//! Frames are *physical*: libunwind walks return addresses, so a function inlined into
//! another is part of the function it is inlined into (an inlined `strdup` helper in
//! `main` leaves `main`'s call of `strdup@plt`, which is also the return address
//! allocsite's hooks see). That is exactly how allocsite folds them: an inlined wrapper
//! has no entry to hook and no call of its own.

use allocsite_analysis::{Classification, Kind};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

/// A site: the ELF object's file name and the link-time address (the return address of
/// the call), as allocsite's report gives them in `object` and `vaddr`.
pub type Site = (String, u64);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub calls: u64,
    pub bytes: u64,
}

impl Count {
    pub fn add(&mut self, o: Count) {
        self.calls += o.calls;
        self.bytes += o.bytes;
    }
}

struct Module {
    base: u64,
    /// Absolute `[start, end)` of its segments.
    segs: Vec<(u64, u64)>,
}

/// One physical frame: the object holding it (index into `Recording::objects`, or none
/// when no module covers the address) and its link-time return address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub object: Option<usize>,
    pub ret: u64,
}

/// What one recording holds: the trace tree and, per innermost trace node, the calls
/// and bytes allocated there.
pub struct Recording {
    pub exe: String,
    /// File names of every module ever loaded.
    pub objects: Vec<String>,
    /// Trace node n (1-based) at index n-1: frame and parent node.
    nodes: Vec<(Frame, u32)>,
    pub per_trace: HashMap<u32, Count>,
}

fn file_name(p: &str) -> String {
    Path::new(p).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| p.to_string())
}

fn hex(s: &str) -> Result<u64, String> {
    u64::from_str_radix(s, 16).map_err(|_| format!("not a hex number: {s:?}"))
}

/// `LEN STRING REST…` → (STRING, REST): heaptrack prefixes strings with their length.
fn counted(s: &str) -> Result<(&str, &str), String> {
    let (len, rest) = s.split_once(' ').ok_or("string without length")?;
    let len = hex(len)? as usize;
    if rest.len() < len || !rest.is_char_boundary(len) {
        return Err(format!("string shorter than its length {len}"));
    }
    Ok((&rest[..len], rest[len..].trim_start()))
}

impl Recording {
    /// Reads a raw heaptrack file (plain, or zstd-compressed: decompressed with `zstd -dc`).
    pub fn read(path: &Path) -> Result<Recording, String> {
        let mut magic = [0u8; 4];
        let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let n = f.read(&mut magic).map_err(|e| format!("{}: {e}", path.display()))?;
        let zstd = n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd];
        let r = if zstd {
            let mut child = Command::new("zstd")
                .arg("-dc")
                .arg(path)
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("{}: cannot run zstd -dc: {e}", path.display()))?;
            let rec = Self::parse(BufReader::with_capacity(1 << 20, child.stdout.take().unwrap()));
            let st = child.wait().map_err(|e| e.to_string())?;
            if !st.success() {
                return Err(format!("{}: zstd -dc failed", path.display()));
            }
            rec
        } else {
            drop(f);
            Self::parse(BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(|e| e.to_string())?))
        };
        r.map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(mut input: impl BufRead) -> Result<Recording, String> {
        let mut rec = Recording { exe: String::new(), objects: Vec::new(), nodes: Vec::new(), per_trace: HashMap::new() };
        let mut modules: Vec<(Module, usize)> = Vec::new();
        let mut object_ids: HashMap<String, usize> = HashMap::new();
        let mut buf = Vec::with_capacity(256);
        let mut lineno = 0usize;
        loop {
            buf.clear();
            if input.read_until(b'\n', &mut buf).map_err(|e| e.to_string())? == 0 {
                break;
            }
            lineno += 1;
            let line = std::str::from_utf8(&buf).map_err(|_| format!("line {lineno}: not UTF-8"))?.trim_end_matches('\n');
            let err = |e: String| format!("line {lineno}: {e}: {line:?}");
            let (tag, rest) = line.split_at(line.len().min(1));
            let rest = rest.trim_start();
            match tag {
                "+" => {
                    let mut w = rest.split(' ');
                    let size = hex(w.next().unwrap_or("")).map_err(err)?;
                    let trace = hex(w.next().unwrap_or("")).map_err(err)? as u32;
                    rec.per_trace.entry(trace).or_default().add(Count { calls: 1, bytes: size });
                }
                "t" => {
                    let mut w = rest.split(' ');
                    let ip = hex(w.next().unwrap_or("")).map_err(err)?;
                    let parent = hex(w.next().unwrap_or("")).map_err(err)? as u32;
                    // libunwind's ip is the return address minus one
                    let ret = ip.wrapping_add(1);
                    let frame = modules
                        .iter()
                        .find(|(m, _)| m.segs.iter().any(|&(a, b)| a <= ip && ip < b))
                        .map(|(m, id)| Frame { object: Some(*id), ret: ret - m.base })
                        .unwrap_or(Frame { object: None, ret });
                    rec.nodes.push((frame, parent));
                }
                "m" => {
                    let (name, tail) = counted(rest).map_err(err)?;
                    if name == "-" {
                        modules.clear();
                        continue;
                    }
                    let nums: Vec<u64> = tail.split_whitespace().map(hex).collect::<Result<_, _>>().map_err(err)?;
                    let Some((&base, segs)) = nums.split_first() else { return Err(err("module without base".into())) };
                    let fname = file_name(if name == "x" { &rec.exe } else { name });
                    let id = *object_ids.entry(fname.clone()).or_insert_with(|| {
                        rec.objects.push(fname);
                        rec.objects.len() - 1
                    });
                    let segs = segs.chunks(2).filter(|c| c.len() == 2).map(|c| (base + c[0], base + c[0] + c[1])).collect();
                    modules.push((Module { base, segs }, id));
                }
                "x" => rec.exe = counted(rest).map_err(err)?.0.to_string(),
                _ => {}
            }
        }
        Ok(rec)
    }

    /// The physical frames of trace node `t`, innermost first.
    pub fn stack(&self, mut t: u32) -> Vec<Frame> {
        let mut v = Vec::new();
        while t != 0 {
            let Some(&(f, parent)) = self.nodes.get(t as usize - 1) else { break };
            v.push(f);
            // parents are always older nodes; guard against a corrupt file looping
            if parent >= t {
                break;
            }
            t = parent;
        }
        v
    }

    pub fn object_id(&self, name: &str) -> Option<usize> {
        self.objects.iter().position(|o| o == name)
    }
}

/// The classification of the program's executable, as the fold needs it.
pub struct Classes {
    /// `(start, end, makes storage)` of its functions and constructors, sorted.
    fns: Vec<(u64, u64, bool)>,
    /// Return address → pass-through, for every call the analysis lists.
    calls: HashMap<u64, bool>,
}

impl Classes {
    pub fn new(c: &Classification) -> Classes {
        let mut fns: Vec<(u64, u64, bool)> = c
            .functions
            .iter()
            .filter(|f| !f.external)
            .map(|f| (f.address.0, f.address.0 + f.code_size.unwrap_or(1).max(1), !matches!(f.kind, Kind::Ctor | Kind::Free)))
            .collect();
        fns.sort_unstable();
        // Releasing calls make no chunks: a chunk made while a free function runs (a
        // FILE buffer when a close function flushes) is not attributed to that call.
        let frees: std::collections::HashSet<&str> =
            c.functions.iter().chain(&c.imports).filter(|f| f.kind == Kind::Free).flat_map(|f| std::iter::once(f.name.as_str()).chain(f.aliases.iter().map(String::as_str))).collect();
        let releasing = |k: &allocsite_analysis::classification::AllocCall| k.callee.split('|').all(|n| frees.contains(n));
        // A tail call's listed `ret` is its caller's site, not a return address in the
        // tail-calling function: it never appears as a frame, so it is left out.
        let calls = c.calls.iter().filter(|k| !k.tail && !releasing(k)).map(|k| (k.ret.0, k.pass_through)).collect();
        Classes { fns, calls }
    }

    /// Is the code at `addr` inside an allocation function that makes storage (not a
    /// constructor, not a free function)?
    fn in_allocation_fn(&self, addr: u64) -> bool {
        let i = self.fns.partition_point(|f| f.0 <= addr);
        i > 0 && addr < self.fns[i - 1].1 && self.fns[i - 1].2
    }
}

/// One allocation's two sites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sites {
    pub innermost: Site,
    pub outermost: Site,
}

/// Folds one stack (innermost frame first; frame 0 is the caller of the interposed
/// allocator) into its innermost and outermost site.
///
/// The calls of allocation functions on the stack are the frames in the executable
/// whose call either the analysis lists (`calls`: calls made by allocation functions
/// and constructors, and every call of an imported allocation function, each with its
/// pass-through flag), or enters an allocation function of the executable, or — frame
/// 0 — enters the allocator itself; calls from unlisted places are classified (only an
/// allocation function's own calls can be pass-through). Calls inside other objects —
/// the C library's `strdup`, `getline`, `fopen`… calling `malloc` — are the library's
/// business: the program's call of the imported function is the site. Innermost = the
/// innermost classified call, outermost = the outermost call. With no such call at all
/// (the C library allocating for itself, say a `FILE` buffer), both are frame 0, the
/// return address of the allocator's call wherever it is.
pub fn fold_stack(frames: &[Frame], exe: usize, classes: &Classes, objects: &[String]) -> Option<Sites> {
    let first = *frames.first()?;
    let key = |f: Frame| -> Site {
        (f.object.map(|o| objects[o].clone()).unwrap_or_else(|| "?".to_string()), f.ret)
    };
    let mut calls: Vec<(Frame, bool)> = Vec::new();
    for (k, &f) in frames.iter().enumerate() {
        if f.object != Some(exe) {
            continue;
        }
        let entry = if let Some(&pt) = classes.calls.get(&f.ret) {
            Some(pt)
        } else if k == 0 {
            Some(false)
        } else {
            let inner = frames[k - 1];
            // the callee is the function the next inner frame is in (a tail call from the
            // callee leaves its target's frame here: the same entry allocsite hooks)
            (inner.object == Some(exe) && classes.in_allocation_fn(inner.ret - 1)).then_some(false)
        };
        if let Some(pt) = entry {
            calls.push((f, pt));
        }
    }
    let Some(&(outer, _)) = calls.last() else {
        return Some(Sites { innermost: key(first), outermost: key(first) });
    };
    let inner = calls.iter().find(|(_, pt)| !pt).map(|&(f, _)| f).unwrap_or(outer);
    Some(Sites { innermost: key(inner), outermost: key(outer) })
}

/// Calls and bytes per innermost and per outermost site.
#[derive(Debug, Default)]
pub struct Folded {
    pub innermost: BTreeMap<Site, Count>,
    pub outermost: BTreeMap<Site, Count>,
    pub total: Count,
    /// Allocations left out: made by heaptrack's own libraries (see [`fold`]).
    pub ignored: Count,
}

impl Folded {
    pub fn merge(&mut self, o: Folded) {
        for (k, v) in o.innermost {
            self.innermost.entry(k).or_default().add(v);
        }
        for (k, v) in o.outermost {
            self.outermost.entry(k).or_default().add(v);
        }
        self.total.add(o.total);
        self.ignored.add(o.ignored);
    }
}

/// Folds a whole recording. `program_objects` are the file names of the objects the
/// program loads by itself (itself, its `ldd` list, the vDSO and the dynamic loader);
/// an allocation whose innermost frame lies in any other object was made by a library
/// that only heaptrack's preload library pulled in (libstdc++'s emergency pool at load
/// time) and is no allocation of the program's: it is counted in `ignored`.
pub fn fold(rec: &Recording, classes: &Classes, program_objects: &[String]) -> Result<Folded, String> {
    let exe = rec.object_id(&file_name(&rec.exe)).ok_or_else(|| format!("no module for the executable {}", rec.exe))?;
    let mut out = Folded::default();
    for (&t, &c) in &rec.per_trace {
        let frames = rec.stack(t);
        let ours = frames
            .first()
            .and_then(|f| f.object)
            .map(|o| program_objects.iter().any(|p| *p == rec.objects[o]))
            .unwrap_or(false);
        if !ours {
            out.ignored.add(c);
            continue;
        }
        let Some(s) = fold_stack(&frames, exe, classes, &rec.objects) else { continue };
        out.innermost.entry(s.innermost).or_default().add(c);
        out.outermost.entry(s.outermost).or_default().add(c);
        out.total.add(c);
    }
    Ok(out)
}

/// The objects a program loads by itself: its file name, those `ldd` lists, and the
/// vDSO.
pub fn program_objects(bin: &Path) -> Result<Vec<String>, String> {
    let o = Command::new("ldd").arg(bin).output().map_err(|e| format!("ldd: {e}"))?;
    if !o.status.success() {
        return Err(format!("{}: ldd failed", bin.display()));
    }
    let mut v = vec![file_name(&bin.to_string_lossy())];
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let l = l.trim();
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`, `/lib64/ld-linux-x86-64.so.2 (0x…)`
        let path = l.split(" => ").last().unwrap_or(l).split(" (").next().unwrap_or("").trim();
        if !path.is_empty() {
            v.push(file_name(path));
        }
        if let Some((name, _)) = l.split_once(" => ") {
            v.push(file_name(name.trim()));
        }
    }
    v.push("linux-vdso.so.1".into());
    v.sort();
    v.dedup();
    Ok(v)
}
