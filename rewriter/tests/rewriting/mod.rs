//! Helpers of the rewrite tests (`tests/rewrite.rs`, `tests/call_sites.rs`): rewriting
//! with a classification, running the original and the rewritten program side by side
//! (traced and untraced), reports, elflint, the new code's address range.
#![allow(dead_code)]

use super::support::{self, functions, ok, run, root, Scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn allocsite() -> &'static str {
    env!("CARGO_BIN_EXE_allocsite")
}

pub fn scratch(name: &str) -> Scratch {
    support::scratch_in("rewrite-tests", name)
}



/// The runtime: `$ALLOCSITE_RT` (set by `make test`), else the one in `target/release`.
pub fn runtime() -> &'static Path {
    static RT: OnceLock<PathBuf> = OnceLock::new();
    RT.get_or_init(|| {
        let p = std::env::var_os("ALLOCSITE_RT").map(PathBuf::from).unwrap_or_else(|| root().join("target/release/liballocsite_rt.so"));
        assert!(p.exists(), "runtime library {} missing: build it first (make build) or set ALLOCSITE_RT", p.display());
        p
    })
}


pub struct Fn<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub roles: Vec<(&'a str, u8)>,
    pub nargs: Option<u8>,
}

/// Classification JSON for `fns`, addressed through the symbols of `symbols_of`;
/// functions missing there are skipped. `stripped` names them `sub_<hex>`.
pub fn classification(symbols_of: &Path, fns: &[Fn], stripped: bool) -> (String, Vec<String>) {
    let syms = functions(symbols_of);
    let mut items = Vec::new();
    let mut names = Vec::new();
    for f in fns {
        let Some(&(addr, size)) = syms.get(f.name) else { continue };
        let name = if stripped { format!("sub_{addr:x}") } else { f.name.to_string() };
        let args: Vec<String> = f.roles.iter().map(|(r, p)| format!("\"{r}\": {p}")).collect();
        let nargs = f.nargs.map(|n| format!(", \"nargs\": {n}")).unwrap_or_default();
        items.push(format!(
            "{{\"name\": \"{name}\", \"address\": \"{addr:#x}\", \"code_size\": {size}, \"kind\": \"{}\", \"args\": {{{}}}{nargs}, \"descriptor\": \"\"}}",
            f.kind,
            args.join(", ")
        ));
        names.push(name);
    }
    (format!("{{\"binary\": \"x\", \"functions\": [{}]}}", items.join(",\n")), names)
}

pub struct Rewrite {
    pub out: PathBuf,
    pub stdout: String,
}

pub fn rewrite(input: &Path, json: &str, dir: &Path, extra: &[&str]) -> Rewrite {
    let name = input.file_name().unwrap();
    let fns = dir.join(format!("{}.json", name.to_string_lossy()));
    std::fs::write(&fns, json).unwrap();
    let out = dir.join(name);
    let stdout = ok(Command::new(allocsite())
        .arg("rewrite")
        .arg(input)
        .arg("-o")
        .arg(&out)
        .arg("--fns")
        .arg(&fns)
        .arg("--runtime")
        .arg(runtime())
        .args(extra));
    Rewrite { out, stdout }
}

/// Run `bin args` in `cwd` with a trace file; returns (stdout, stderr, status, trace).
pub fn run_traced(bin: &Path, args: &[&str], trace: Option<&Path>, report: Option<&Path>) -> (Vec<u8>, Vec<u8>, Option<i32>, String) {
    let mut c = Command::new(bin);
    c.args(args).current_dir(bin.parent().unwrap());
    c.env_remove("ALLOCSITE_TRACE").env_remove("ALLOCSITE_REPORT");
    if let Some(t) = trace {
        let _ = std::fs::remove_file(t);
        c.env("ALLOCSITE_TRACE", t);
    }
    if let Some(r) = report {
        c.env("ALLOCSITE_REPORT", r);
    }
    let o = run(&mut c);
    let tr = trace.map(|t| std::fs::read_to_string(t).unwrap_or_default()).unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    (o.stdout, o.stderr, o.status.code().or(o.status.signal().map(|s| 128 + s)), tr)
}

/// The original and the rewritten program behave the same, traced (every hook goes to
/// the runtime's C-ABI functions) and untraced (the trampolines' inline bookkeeping);
/// both rewritten runs write reports, which must agree site by site. Returns the trace.
pub fn assert_same_behaviour(orig: &Path, new: &Path, args: &[&str]) -> String {
    let (o1, e1, s1, _) = run_traced(orig, args, None, None);
    let tag = args.join("_");
    let trace = new.with_extension(format!("trace{tag}"));
    let reports = |what: &str| new.with_file_name(format!("{}.{what}{tag}.%p.json", new.file_name().unwrap().to_string_lossy()));
    let (slow, fast) = (reports("slow"), reports("fast"));
    let (o2, e2, s2, tr) = run_traced(new, args, Some(&trace), Some(&slow));
    let (o3, e3, s3, _) = run_traced(new, args, None, Some(&fast));
    for (o, e, st, how) in [(&o2, &e2, s2, "traced"), (&o3, &e3, s3, "untraced")] {
        assert_eq!(String::from_utf8_lossy(&o1), String::from_utf8_lossy(o), "stdout of {} {args:?} ({how})", new.display());
        assert_eq!(String::from_utf8_lossy(&e1), String::from_utf8_lossy(e), "stderr of {} {args:?} ({how})", new.display());
        assert_eq!(s1, st, "exit status of {} {args:?} ({how})", new.display());
    }
    let (rs, rf) = (report_rows(&slow), report_rows(&fast));
    assert!(!args.is_empty() || !rf.is_empty(), "no report rows from {}", new.display());
    assert_eq!(rs, rf, "reports of {} {args:?}: traced vs untraced", new.display());
    tr
}

/// Every site row of the reports written to `template` (`%p` = any pid), in a form that
/// compares across runs: symbolized sites, allocator and counts, sorted.
pub fn report_rows(template: &Path) -> Vec<String> {
    let name = template.file_name().unwrap().to_string_lossy().to_string();
    let (pre, post) = name.split_once("%p").unwrap();
    let mut rows = Vec::new();
    for e in std::fs::read_dir(template.parent().unwrap()).unwrap().flatten() {
        let f = e.file_name().to_string_lossy().to_string();
        if !(f.starts_with(pre) && f.ends_with(post)) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
        for s in v["sites"].as_array().unwrap() {
            let outer: Vec<&str> = s["outermost"].as_array().map(|a| a.iter().filter_map(|o| o["symbol"].as_str()).collect()).unwrap_or_default();
            rows.push(format!(
                "{} {} calls={} bytes={} live={}/{} outer={outer:?}",
                s["symbol"], s["allocator"], s["calls"], s["bytes"], s["live_chunks"], s["live_bytes"]
            ));
        }
        let _ = std::fs::remove_file(e.path());
    }
    rows.sort();
    rows
}

pub fn elflint(p: &Path) -> String {
    let o = run(Command::new("eu-elflint").arg("--gnu-ld").arg(p));
    String::from_utf8_lossy(&o.stdout).replace(&p.display().to_string(), "FILE")
}

/// The external tools the checks use are installed by `.ci/deps` (`make test`);
/// a missing one fails the test rather than skipping the check.
pub fn require(tool: &str) {
    assert!(Command::new(tool).arg("--version").output().is_ok(), "{tool} is required (`make test` installs it through .ci/deps)");
}

/// Address range of the new code in a rewritten file: `.allocsite.text` and the
/// trampolines gdb steps through right after it, `.plt.allocsite`.
pub fn new_text(p: &Path) -> (u64, u64) {
    let out = ok(Command::new("readelf").arg("-SW").arg(p));
    let range = |name: &str| {
        out.lines().find_map(|l| {
            let rest = l.split(&format!("] {name} ")).nth(1)?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let a = u64::from_str_radix(f[1], 16).ok()?;
            let s = u64::from_str_radix(f[3], 16).ok()?;
            Some((a, a + s))
        })
    };
    let (lo, hi) = range(".allocsite.text").unwrap_or((0, 0));
    match range(".plt.allocsite") {
        Some((a, b)) if a == hi || hi == lo => (if hi == lo { a } else { lo }, b),
        Some(_) => panic!("{}: .plt.allocsite does not follow .allocsite.text:\n{out}", p.display()),
        None => (lo, hi),
    }
}

/// Link-time address of the first PT_LOAD: what trace offsets (from `dladdr`'s load
/// base) are relative to — 0 for PIE and shared libraries, 0x400000 for non-PIE.
pub fn load_base(p: &Path) -> u64 {
    let out = ok(Command::new("readelf").arg("-lW").arg(p));
    out.lines()
        .find(|l| l.trim_start().starts_with("LOAD"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

/// Trace lines per event: (kind, fn, object, offset).
pub fn events(trace: &str) -> Vec<(String, String, String, u64)> {
    trace
        .lines()
        .filter_map(|l| {
            let kind = l.split_whitespace().next()?.to_string();
            let get = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string);
            let site = get("site=")?;
            let (obj, off) = site.rsplit_once('+')?;
            Some((kind, get("fn=")?, obj.to_string(), u64::from_str_radix(off.trim_start_matches("0x"), 16).ok()?))
        })
        .collect()
}

/// Common checks on a rewritten program: same behaviour, hooks called, sites inside the
/// program's original code, enter/exit balanced, elflint unchanged, ldd lists the runtime.
pub fn check_program(orig: &Path, rw: &Rewrite, args_list: &[&[&str]], balanced: bool) -> Vec<String> {
    let (lo, hi) = new_text(&rw.out);
    let base = load_base(&rw.out);
    let (lo, hi) = (lo - base.min(lo), hi - base.min(hi));
    let obj = rw.out.file_name().unwrap().to_string_lossy().to_string();
    let mut traces = Vec::new();
    for args in args_list {
        let tr = assert_same_behaviour(orig, &rw.out, args);
        let ev = events(&tr);
        for (kind, f, o, off) in &ev {
            if *o == obj {
                assert!(!(*off >= lo && *off < hi), "{kind} {f}: site {off:#x} is inside the trampolines of {obj}");
            }
        }
        if balanced && args.is_empty() {
            let enters = ev.iter().filter(|e| e.0 == "enter").count();
            let exits = ev.iter().filter(|e| e.0 == "exit").count();
            assert_eq!(enters, exits, "unbalanced enter/exit in {obj}");
        }
        traces.push(tr);
    }
    {
        require("eu-elflint");
        assert_eq!(elflint(orig), elflint(&rw.out), "eu-elflint --gnu-ld differs for {}", rw.out.display());
    }
    let ldd = ok(Command::new("ldd").arg(&rw.out));
    assert!(ldd.contains("liballocsite_rt.so => "), "ldd {} does not list the runtime: {ldd}", rw.out.display());
    // binutils rebuild segments from sections: the output must survive `strip`
    let stripped = rw.out.with_extension("stripped");
    ok(Command::new("strip").arg("-o").arg(&stripped).arg(&rw.out));
    let (o1, e1, s1, _) = run_traced(orig, args_list[0], None, None);
    let (o2, e2, s2, _) = run_traced(&stripped, args_list[0], None, None);
    assert_eq!((o1, e1, s1), (o2, e2, s2), "`strip {}` changed its behaviour", rw.out.display());
    traces
}

pub fn compile(dir: &Path, out: &str, flags: &[&str], srcs: &[&str]) -> PathBuf {
    let c = root().join("rewriter/tests/c");
    let o = dir.join(out);
    ok(Command::new("gcc").args(flags).arg("-o").arg(&o).args(srcs.iter().map(|s| c.join(s))));
    o
}

pub fn own_fns() -> Vec<Fn<'static>> {
    vec![
        Fn { name: "xmalloc", kind: "alloc", roles: vec![("size", 0)], nargs: Some(1) },
        Fn { name: "xcalloc", kind: "alloc", roles: vec![("count", 0), ("size", 1)], nargs: Some(2) },
        Fn { name: "xfree", kind: "free", roles: vec![("ptr", 0)], nargs: Some(1) },
        Fn { name: "wrap_tail", kind: "alloc", roles: vec![("size", 0)], nargs: Some(1) },
        Fn { name: "alloc7", kind: "alloc", roles: vec![("size", 5)], nargs: Some(7) },
        Fn { name: "scaled_alloc", kind: "alloc", roles: vec![("size", 0)], nargs: Some(1) },
        Fn { name: "bump", kind: "suballoc", roles: vec![("size", 0)], nargs: Some(1) },
    ]
}
