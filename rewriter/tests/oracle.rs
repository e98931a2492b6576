//! Independent oracles for allocsite's attribution (issue 10): tools that are not
//! allocsite say where each chunk was made, and the rewritten program's report must agree.
//!
//! - heaptrack records every allocation of the ORIGINAL program with its backtrace;
//!   `oracle/heaptrack.rs` folds each backtrace with the same classification the rewrite
//!   used (innermost classified call, outermost call of an allocation function; frames
//!   are physical — an inlined wrapper is part of the function it is inlined into) and
//!   the report of the REWRITTEN program, run on the same workload, must hold the same
//!   calls and bytes for every site with ≥ 0.1% of the bytes (exact for deterministic
//!   programs, within 1% for Lua, whose string hashing is seeded per run).
//! - valgrind's memcheck gives the chunks leaked per source line.
//! - objdump gives the return addresses of the calls the sphinx3 check names.
//!
//! The real-world fixtures are built on first use by `testbins/realworld/build` (fetches
//! Debian sources; idempotent, ~1 s when built); `ALLOCSITE_REALWORLD_DIR` moves them.

#[path = "support/mod.rs"]
mod support;
#[path = "oracle/heaptrack.rs"]
mod heaptrack;
#[path = "oracle/valgrind.rs"]
mod valgrind;

use allocsite_analysis::Classification;
use heaptrack::{Classes, Count, Folded, Site};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use support::{functions, ok, root, Scratch};

fn allocsite() -> &'static str {
    env!("CARGO_BIN_EXE_allocsite")
}

fn runtime() -> PathBuf {
    let p = std::env::var_os("ALLOCSITE_RT").map(PathBuf::from).unwrap_or_else(|| root().join("target/release/liballocsite_rt.so"));
    assert!(p.exists(), "runtime library {} missing: build it first (make build) or set ALLOCSITE_RT", p.display());
    p
}

fn scratch(name: &str) -> Scratch {
    support::scratch_in("oracle", name)
}



// ------------------------------------------------------------------ programs

/// `build/realworld` (or `$ALLOCSITE_REALWORLD_DIR`), with NAME built (both variants) on
/// first use.
fn realworld(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let dir = std::env::var_os("ALLOCSITE_REALWORLD_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("build/realworld"));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        ok(Command::new(root().join("testbins/realworld/build")).arg(name).env("ALLOCSITE_REALWORLD_DIR", &dir));
        built.push(name.to_string());
    }
    dir
}

fn workload(name: &str) -> PathBuf {
    root().join("testbins/realworld/workloads").join(format!("{name}.sh"))
}

fn analyze(bin: &Path, dir: &Path) -> (PathBuf, Classification) {
    let json = dir.join(format!("{}.cls.json", bin.file_name().unwrap().to_string_lossy()));
    ok(Command::new(allocsite()).arg("analyze").arg(bin).args(["--format", "json", "-o"]).arg(&json));
    let text = std::fs::read_to_string(&json).unwrap();
    (json.clone(), Classification::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", json.display())))
}

fn rewrite(bin: &Path, fns: &Path, out: &Path) {
    ok(Command::new(allocsite()).arg("rewrite").arg(bin).arg("-o").arg(out).arg("--fns").arg(fns).arg("--runtime").arg(runtime()));
}

/// heaptrack's preload library, next to the `heaptrack` script (`../lib/heaptrack`).
fn heaptrack_preload() -> PathBuf {
    let script = ok(Command::new("sh").args(["-c", "command -v heaptrack"]));
    let script = std::fs::canonicalize(script.trim()).expect("heaptrack installed (./.ci/deps)");
    let p = script.parent().unwrap().join("../lib/heaptrack/libheaptrack_preload.so");
    std::fs::canonicalize(&p).unwrap_or_else(|_| panic!("{} missing", p.display()))
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An oracle run: the original under heaptrack and the rewritten program with a report,
/// both driven by the same workload through wrapper scripts (one data file / report per
/// process). Original and rewrite sit at paths of the same length (`orig/NAME`,
/// `rewr/NAME`), so programs that see their own `argv[0]` do the same.
struct OracleRun {
    dir: Scratch,
    orig: PathBuf,
    cls: Classification,
}

impl OracleRun {
    fn new(test: &str, bin: &Path) -> OracleRun {
        let dir = scratch(test);
        let name = bin.file_name().unwrap();
        for d in ["orig", "rewr", "ht", "rep", "w-ht", "w-rp"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let orig = dir.join("orig").join(name);
        std::fs::copy(bin, &orig).unwrap();
        let (json, cls) = analyze(&orig, &dir);
        rewrite(&orig, &json, &dir.join("rewr").join(name));
        let q = |p: &Path| format!("'{}'", p.display());
        write_script(
            &dir.join("w-ht").join(name),
            &format!(
                "LD_PRELOAD={} DUMP_HEAPTRACK_OUTPUT={}/$$.raw exec {} \"$@\"",
                q(&heaptrack_preload()),
                q(&dir.join("ht")),
                q(&orig)
            ),
        );
        write_script(
            &dir.join("w-rp").join(name),
            &format!("ALLOCSITE_REPORT={}/%p.json exec {} \"$@\"", q(&dir.join("rep")), q(&dir.join("rewr").join(name))),
        );
        OracleRun { dir, orig, cls }
    }

    fn wrapper(&self, kind: &str) -> PathBuf {
        self.dir.join(kind).join(self.orig.file_name().unwrap())
    }

    /// Runs `drive(program)` once under heaptrack and once rewritten.
    fn run(&self, drive: impl Fn(&Path)) {
        drive(&self.wrapper("w-ht"));
        drive(&self.wrapper("w-rp"));
    }

    fn folded(&self) -> Folded {
        let classes = Classes::new(&self.cls);
        let objects = heaptrack::program_objects(&self.orig).unwrap();
        let mut all = Folded::default();
        for e in std::fs::read_dir(self.dir.join("ht")).unwrap() {
            let p = e.unwrap().path();
            let rec = heaptrack::Recording::read(&p).unwrap_or_else(|e| panic!("{e}"));
            all.merge(heaptrack::fold(&rec, &classes, &objects).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
        }
        assert!(all.total.calls > 0, "heaptrack recorded no allocation in {}", self.dir.join("ht").display());
        all
    }

    fn report(&self) -> Report {
        let mut r = Report::default();
        for e in std::fs::read_dir(self.dir.join("rep")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                r.add(&p);
            }
        }
        assert!(r.total.calls > 0, "no report in {}", self.dir.join("rep").display());
        r
    }
}

// ------------------------------------------------------------------ reports

#[derive(Debug, Clone, Default)]
struct SiteInfo {
    count: Count,
    live_chunks: u64,
    symbol: String,
    line: Option<String>,
}

/// Reports of one or more processes, summed per (object, vaddr).
#[derive(Default)]
struct Report {
    innermost: BTreeMap<Site, SiteInfo>,
    outermost: BTreeMap<Site, SiteInfo>,
    total: Count,
    /// innermost site → outermost site → count
    pairs: BTreeMap<Site, BTreeMap<Site, Count>>,
}

fn site_of(v: &serde_json::Value) -> Site {
    let obj = v["object"].as_str().unwrap_or("?").to_string();
    let va = v["vaddr"].as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()).unwrap_or(0);
    (obj, va)
}

fn count_of(v: &serde_json::Value) -> Count {
    Count { calls: v["calls"].as_u64().unwrap_or(0), bytes: v["bytes"].as_u64().unwrap_or(0) }
}

impl Report {
    fn add(&mut self, path: &Path) {
        let text = std::fs::read_to_string(path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.total.add(count_of(&v["totals"]));
        for (view, sub) in [("sites", "outermost"), ("outermost", "innermost")] {
            for s in v[view].as_array().unwrap_or_else(|| panic!("{}: no {view}", path.display())) {
                let key = site_of(s);
                let m = if view == "sites" { &mut self.innermost } else { &mut self.outermost };
                let e = m.entry(key.clone()).or_default();
                e.count.add(count_of(s));
                e.live_chunks += s["live_chunks"].as_u64().unwrap_or(0);
                e.symbol = s["symbol"].as_str().unwrap_or("").to_string();
                e.line = s["line"].as_str().map(str::to_string);
                if view == "sites" {
                    for o in s[sub].as_array().into_iter().flatten() {
                        self.pairs.entry(key.clone()).or_default().entry(site_of(o)).or_default().add(count_of(o));
                    }
                }
            }
        }
    }

    fn view(&self, outer: bool) -> BTreeMap<Site, Count> {
        (if outer { &self.outermost } else { &self.innermost }).iter().map(|(k, v)| (k.clone(), v.count)).collect()
    }

    fn label(&self, s: &Site) -> String {
        let i = self.innermost.get(s).or_else(|| self.outermost.get(s));
        match i {
            Some(i) => format!("{}+{:#x} {} ({})", s.0, s.1, i.symbol, i.line.as_deref().unwrap_or("?")),
            None => format!("{}+{:#x}", s.0, s.1),
        }
    }

    /// The `n` sites with the most bytes in a view.
    fn top(&self, outer: bool, n: usize) -> Vec<Site> {
        let mut v: Vec<(Site, Count)> = self.view(outer).into_iter().collect();
        v.sort_by_key(|(s, c)| (std::cmp::Reverse(c.bytes), s.clone()));
        v.into_iter().take(n).map(|(s, _)| s).collect()
    }
}

/// Every site holding ≥ 0.1% of the bytes on either side must have the same calls and
/// bytes on both (within `tolerance`, a fraction). Returns the disagreements.
fn compare(what: &str, fold: &BTreeMap<Site, Count>, ftotal: Count, rep: &Report, outer: bool, tolerance: f64) -> Vec<String> {
    let view = rep.view(outer);
    let big = |m: &BTreeMap<Site, Count>, total: u64| -> Vec<Site> {
        m.iter().filter(|(_, c)| c.bytes * 1000 >= total).map(|(s, _)| s.clone()).collect()
    };
    let mut sites = big(fold, ftotal.bytes);
    sites.extend(big(&view, rep.total.bytes));
    sites.sort();
    sites.dedup();
    let close = |a: u64, b: u64| (a as f64 - b as f64).abs() <= tolerance * a.max(b) as f64;
    let mut bad = Vec::new();
    for s in sites {
        let f = fold.get(&s).copied().unwrap_or_default();
        let r = view.get(&s).copied().unwrap_or_default();
        if !(close(f.calls, r.calls) && close(f.bytes, r.bytes)) {
            bad.push(format!(
                "{what} {} {}: heaptrack fold {} calls {} bytes, report {} calls {} bytes",
                if outer { "outermost" } else { "innermost" },
                rep.label(&s),
                f.calls,
                f.bytes,
                r.calls,
                r.bytes
            ));
        }
    }
    bad
}

/// The heaptrack oracle on one program and workload: both views agree.
fn oracle(test: &str, bin: &Path, tolerance: f64, drive: impl Fn(&Path)) -> (OracleRun, Report) {
    let o = OracleRun::new(test, bin);
    o.run(drive);
    let folded = o.folded();
    let rep = o.report();
    // what was compared (shown with --nocapture): the biggest sites of each view
    for (outer, m) in [(false, &folded.innermost), (true, &folded.outermost)] {
        let mut v: Vec<(&Site, &Count)> = m.iter().collect();
        v.sort_by_key(|(s, c)| (std::cmp::Reverse(c.bytes), (*s).clone()));
        let n = v.iter().filter(|(_, c)| c.bytes * 1000 >= folded.total.bytes).count();
        eprintln!("{test} {}: {n} sites with >= 0.1% of {} bytes; top:", if outer { "outermost" } else { "innermost" }, folded.total.bytes);
        for (s, c) in v.iter().take(8) {
            eprintln!("  {:>9} calls {:>11} bytes  {}", c.calls, c.bytes, rep.label(s));
        }
    }
    let mut bad = compare(test, &folded.innermost, folded.total, &rep, false, tolerance);
    bad.extend(compare(test, &folded.outermost, folded.total, &rep, true, tolerance));
    let close = |a: u64, b: u64| (a as f64 - b as f64).abs() <= tolerance * a.max(b) as f64;
    if !(close(folded.total.calls, rep.total.calls) && close(folded.total.bytes, rep.total.bytes)) {
        bad.push(format!("{test} totals differ"));
    }
    assert!(
        bad.is_empty(),
        "{test}: the report disagrees with heaptrack (fold total {} calls {} bytes, {} calls by heaptrack's own libraries left out; report total {} calls {} bytes):\n{}",
        folded.total.calls,
        folded.total.bytes,
        folded.ignored.calls,
        rep.total.calls,
        rep.total.bytes,
        bad.join("\n")
    );
    (o, rep)
}

fn drive_workload(name: &'static str) -> impl Fn(&Path) {
    move |prog: &Path| {
        ok(Command::new("bash").arg(workload(name)).arg(prog));
    }
}

/// Functions of the fixtures every call of an allocation function in which only forwards
/// the function's own size or pointer (possibly rounded, offset or truncated), read from
/// the sources: ground truth independent of the analysis. SQLite: `sqlite3Malloc` →
/// `mallocWithAlarm` → `xMalloc(xRoundup(n))`, `sqlite3Realloc` → `xRealloc(p,
/// xRoundup(n))`, the `sqlite3_*` API and `sqlite3Db*` wrappers → `sqlite3Malloc(n)` /
/// `sqlite3DbMallocRawNN(db, n)`, `sqlite3MemMalloc/Realloc` → `malloc(n + 8)` /
/// `realloc(p - 8, n + 8)`, `pcache1Alloc(n)` / `sqlite3PageMalloc(n)` →
/// `sqlite3Malloc(n)`. Lua: `luaM_malloc_/realloc_/saferealloc_` → `firsttry` /
/// `tryagain` → `(*g->frealloc)(ud, block, osize, nsize)`, `l_alloc` → `realloc(ptr,
/// nsize)`, `luaC_newobj(L, tt, sz)` → `luaM_malloc_(L, sz, tag)`.
const SQLITE_PASS_THROUGH: &[&str] = &[
    "sqlite3Malloc", "mallocWithAlarm", "sqlite3Realloc", "sqlite3_malloc", "sqlite3_malloc64", "sqlite3_realloc",
    "sqlite3_realloc64", "sqlite3MallocZero", "sqlite3DbMallocZero", "sqlite3DbMallocRaw", "sqlite3DbMallocRawNN",
    "dbMallocRawFinish", "sqlite3DbRealloc", "dbReallocFinish", "sqlite3DbReallocOrFree", "sqlite3MemMalloc",
    "sqlite3MemRealloc", "pcache1Alloc", "sqlite3PageMalloc",
];
const LUA_PASS_THROUGH: &[&str] =
    &["luaM_malloc_", "luaM_realloc_", "luaM_saferealloc_", "firsttry", "tryagain", "l_alloc", "luaC_newobj", "luaC_newobjdt"];

/// No site among the top 20 of either view is a call inside an allocation function that
/// only forwards: not one the analysis lists as pass-through, not an unlisted call inside
/// an allocation function, and not a call inside the functions of `known` (ground truth
/// from the sources, so an analysis that misses a pass-through call fails here too).
fn assert_no_pass_through_in_top(test: &str, o: &OracleRun, rep: &Report, known: &[&str]) {
    let exe = o.orig.file_name().unwrap().to_string_lossy().into_owned();
    let listed: HashMap<u64, bool> = o.cls.calls.iter().map(|c| (c.ret.0, c.pass_through)).collect();
    let in_alloc_fn = |a: u64| {
        o.cls.functions.iter().any(|f| f.kind.is_allocation() && !f.external && f.address.0 < a && a <= f.address.0 + f.code_size.unwrap_or(0))
    };
    // clones (`f.isra.0`, `f.constprop.0`) count for their base name
    let forwarding: Vec<(u64, u64, String)> = functions(&o.orig)
        .into_iter()
        .filter(|(n, _)| known.contains(&n.split('.').next().unwrap_or("")))
        .map(|(n, (a, sz))| (a, a + sz, n))
        .collect();
    let mut bad = Vec::new();
    for outer in [false, true] {
        for s in rep.top(outer, 20) {
            if s.0 != exe {
                continue;
            }
            let view = if outer { "outermost" } else { "innermost" };
            let pt = listed.get(&s.1).copied();
            if pt == Some(true) || (pt.is_none() && in_alloc_fn(s.1)) {
                bad.push(format!("{view} view: {} ({})", rep.label(&s), if pt.is_some() { "listed pass-through" } else { "unlisted call inside an allocation function" }));
            } else if let Some((_, _, n)) = forwarding.iter().find(|(a, b, _)| *a < s.1 && s.1 <= *b) {
                bad.push(format!("{view} view: {} (inside {n}, whose allocation calls only forward its own size or pointer)", rep.label(&s)));
            }
        }
    }
    assert!(bad.is_empty(), "{test}: top-20 sites on pass-through calls inside allocation functions:\n{}", bad.join("\n"));
}

// ------------------------------------------------------------------ heaptrack oracle tests

#[test]
fn heaptrack_lua_o2() {
    let dir = realworld("lua");
    let (o, rep) = oracle("lua-O2", &dir.join("bin/lua"), 0.01, drive_workload("lua"));
    assert_no_pass_through_in_top("lua-O2", &o, &rep, LUA_PASS_THROUGH);
}

#[test]
fn heaptrack_lua_o0() {
    let dir = realworld("lua");
    let (o, rep) = oracle("lua-O0", &dir.join("bin/lua.O0"), 0.01, drive_workload("lua"));
    assert_no_pass_through_in_top("lua-O0", &o, &rep, LUA_PASS_THROUGH);
}

#[test]
fn heaptrack_sqlite3_o2() {
    let dir = realworld("sqlite3");
    let (o, rep) = oracle("sqlite3-O2", &dir.join("bin/sqlite3"), 0.0, drive_workload("sqlite3"));
    assert_no_pass_through_in_top("sqlite3-O2", &o, &rep, SQLITE_PASS_THROUGH);
}

#[test]
fn heaptrack_sqlite3_o0() {
    let dir = realworld("sqlite3");
    let (o, rep) = oracle("sqlite3-O0", &dir.join("bin/sqlite3.O0"), 0.0, drive_workload("sqlite3"));
    assert_no_pass_through_in_top("sqlite3-O0", &o, &rep, SQLITE_PASS_THROUGH);
}

#[test]
fn heaptrack_bzip2_o2() {
    let dir = realworld("bzip2");
    oracle("bzip2-O2", &dir.join("bin/bzip2"), 0.0, drive_workload("bzip2"));
}

#[test]
fn heaptrack_bzip2_o0() {
    let dir = realworld("bzip2");
    oracle("bzip2-O0", &dir.join("bin/bzip2.O0"), 0.0, drive_workload("bzip2"));
}

#[test]
fn heaptrack_demo() {
    for v in ["O0", "O2"] {
        let bin = support::testbins_out().join(format!("demo.{v}"));
        oracle(&format!("demo-{v}"), &bin, 0.0, |p| {
            ok(Command::new(p).current_dir(p.parent().unwrap()));
        });
    }
}

/// A program that runs a whole SQL script through ONE `sqlite3_exec` call (the shape of
/// the embedding program), linked against the fixture's SQLite object: that call
/// must not swallow the attribution (< 1% of the bytes in the outermost view), and the
/// report agrees with heaptrack.
#[test]
fn heaptrack_sqlite3_exec_program() {
    let dir = realworld("sqlite3");
    let work = scratch("sqlexec-build");
    let exe = work.join("sqlexec");
    ok(Command::new("gcc")
        .args(["-O2", "-g", "-o"])
        .arg(&exe)
        .arg(root().join("rewriter/tests/c/sqlexec.c"))
        .arg("-I")
        .arg(dir.join("obj/sqlite3-amalgamation"))
        .arg(dir.join("obj/sqlite3.O2/sqlite3.c.o"))
        .args(["-lm", "-lpthread", "-ldl"]));
    let sql = root().join("testbins/realworld/workloads/sqlite3.sql");
    let (o, rep) = oracle("sqlexec", &exe, 0.0, |p| {
        let db = p.parent().unwrap().join("w.db");
        let _ = std::fs::remove_file(&db);
        ok(Command::new(p).arg(&db).arg(&sql));
    });
    let exec_rets: Vec<u64> = call_sites(&o.orig).into_iter().filter(|c| c.caller == "main" && c.target == "sqlite3_exec").map(|c| c.ret).collect();
    assert_eq!(exec_rets.len(), 1, "main calls sqlite3_exec once");
    let site = (o.orig.file_name().unwrap().to_string_lossy().into_owned(), exec_rets[0]);
    let bytes = rep.outermost.get(&site).map(|i| i.count.bytes).unwrap_or(0);
    assert!(
        (bytes as f64) < 0.01 * rep.total.bytes as f64,
        "main's sqlite3_exec call holds {bytes} of {} bytes in the outermost view",
        rep.total.bytes
    );
    assert_no_pass_through_in_top("sqlexec", &o, &rep, SQLITE_PASS_THROUGH);
}

// ------------------------------------------------------------------ objdump

struct CallSite {
    caller: String,
    ret: u64,
    target: String,
}

/// Every `call` in `bin` with its return address and target symbol (`foo`, `foo@plt`
/// → `foo`), from `objdump -d`.
fn call_sites(bin: &Path) -> Vec<CallSite> {
    let text = ok(Command::new("objdump").args(["-d", "-w", "--no-show-raw-insn"]).arg(bin));
    let mut out = Vec::new();
    let mut func = String::new();
    let mut pending: Option<(String, String)> = None;
    for l in text.lines() {
        if let Some(name) = l.strip_suffix(">:").and_then(|h| h.split_once(" <")).map(|(_, n)| n) {
            func = name.to_string();
            pending = None;
            continue;
        }
        let Some((addr, insn)) = l.trim_start().split_once(":\t") else { continue };
        let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
        if let Some((caller, target)) = pending.take() {
            out.push(CallSite { caller, ret: addr, target });
        }
        if insn.starts_with("call") {
            let target = insn.rsplit_once('<').map(|(_, t)| t.trim_end_matches('>').split('@').next().unwrap_or("").to_string()).unwrap_or_default();
            pending = Some((func.clone(), target));
        }
    }
    out
}

// ------------------------------------------------------------------ sphinx3

/// sphinx3's `__ckd_calloc_2d__(d1, d2, elemsize)`: the data chunk (`__ckd_calloc__(d1*d2,
/// elemsize)`, pass-through) has innermost = outermost = main's call; the row pointers
/// (`__ckd_malloc__(d1 * sizeof(void *))`, classified) have innermost = that call and
/// outermost = main's call. Checked on `nested` (6×5 floats: 120 data bytes, 48 of row
/// pointers) at -O0 and -O2 against objdump's return addresses.
#[test]
fn sphinx3_ckd_calloc_2d_sites() {
    for v in ["O0", "O2"] {
        let bin = support::testbins_out().join(format!("nested.{v}"));
        let o = OracleRun::new(&format!("sphinx3-{v}"), &bin);
        ok(Command::new(o.wrapper("w-rp")).current_dir(&*o.dir));
        let rep = o.report();
        let exe = o.orig.file_name().unwrap().to_string_lossy().into_owned();
        let calls = call_sites(&o.orig);
        let one = |caller: &str, target: &str| -> Site {
            let v: Vec<u64> = calls.iter().filter(|c| c.caller == caller && c.target == target).map(|c| c.ret).collect();
            assert_eq!(v.len(), 1, "{}: {caller} calls {target} once: {v:x?}", bin.display());
            (exe.clone(), v[0])
        };
        let main_2d = one("main", "__ckd_calloc_2d__");
        let rows = one("__ckd_calloc_2d__", "__ckd_malloc__");
        let pair = |inner: &Site, outer: &Site| rep.pairs.get(inner).and_then(|m| m.get(outer)).copied().unwrap_or_default();
        let data = pair(&main_2d, &main_2d);
        assert_eq!((data.calls, data.bytes), (1, 120), "nested.{v}: data chunk at innermost = outermost = main's call {}: {data:?}", rep.label(&main_2d));
        let r = pair(&rows, &main_2d);
        assert_eq!((r.calls, r.bytes), (1, 48), "nested.{v}: row pointers at innermost {} / outermost {}: {r:?}", rep.label(&rows), rep.label(&main_2d));
        let all_2d: u64 = rep.innermost.get(&main_2d).map(|i| i.count.bytes).unwrap_or(0);
        assert_eq!(all_2d, 120, "nested.{v}: main's ckd_calloc_2d call is the innermost site of the data chunk only");
    }
}

// ------------------------------------------------------------------ leaks vs valgrind

/// The build-recorder leak: a `strdup` helper inlined into `main` at -O2, whose
/// copy a failed `execv` leaks. The report's leak for the caller's line must hold exactly
/// the chunks valgrind finds live at exit from that line (definitely lost + still
/// reachable), and no site may be inside the C library's `strdup`.
#[test]
fn leak_of_inlined_strdup_helper_matches_valgrind() {
    let src = root().join("testbins/leakdup.c");
    let text = std::fs::read_to_string(&src).unwrap();
    let line = text.lines().position(|l| l.contains("/* leak site */")).expect("leakdup.c marks its leak site") + 1;
    let bin = support::testbins_out().join("leakdup.O2");
    let o = OracleRun::new("leakdup", &bin);

    // the helper is inlined: main calls strdup itself
    let calls = call_sites(&o.orig);
    assert!(calls.iter().any(|c| c.caller == "main" && c.target == "strdup"), "save_path is inlined into main at -O2");
    assert!(!calls.iter().any(|c| c.target == "save_path"), "save_path is inlined into main at -O2");

    let xml = o.dir.join("vg.xml");
    ok(Command::new("valgrind")
        .args(["-q", "--leak-check=full", "--show-leak-kinds=all", "--xml=yes"])
        .arg(format!("--xml-file={}", xml.display()))
        .arg(&o.orig)
        .current_dir(&*o.dir));
    let leaks = valgrind::leaks(&std::fs::read_to_string(&xml).unwrap());
    let vg: u64 = leaks
        .iter()
        .filter(|l| matches!(l.kind.as_str(), "Leak_DefinitelyLost" | "Leak_StillReachable"))
        .filter(|l| l.frames.iter().any(|f| f.file == "leakdup.c" && f.line == line && f.func == "main"))
        .map(|l| l.blocks)
        .sum();
    assert!(vg > 0, "valgrind finds the leak at leakdup.c:{line}: {leaks:#?}");

    ok(Command::new(o.wrapper("w-rp")).current_dir(&*o.dir));
    let rep_path = std::fs::read_dir(o.dir.join("rep")).unwrap().next().unwrap().unwrap().path();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rep_path).unwrap()).unwrap();
    let want = format!("leakdup.c:{line}");
    let mut ours = 0;
    let mut all = Vec::new();
    for view in ["sites", "outermost"] {
        for s in v[view].as_array().unwrap() {
            let sym = s["symbol"].as_str().unwrap_or("");
            let l = s["line"].as_str().unwrap_or("");
            assert!(!sym.contains("strdup"), "leakdup: a {view} site inside the C library's strdup: {s}");
            if view == "sites" && s["live_chunks"].as_u64().unwrap_or(0) > 0 {
                all.push(format!("{sym} ({l}) {} live", s["live_chunks"]));
                if l == want || l.ends_with(&format!("/{want}")) {
                    ours += s["live_chunks"].as_u64().unwrap();
                }
            }
        }
    }
    assert_eq!(ours, vg, "leakdup: chunks live at exit from {want}: report {ours}, valgrind {vg}; report's leaks: {all:#?}");
    // the leak list the user reads: `allocsite report --leaks`
    let text = ok(Command::new(allocsite()).arg("report").arg(&rep_path).arg("--leaks"));
    let listed: u64 = text
        .lines()
        .filter(|l| l.contains(&format!("{want})")))
        .filter_map(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
        .sum();
    assert_eq!(listed, vg, "leakdup: `allocsite report --leaks` lists {listed} chunks at {want}, valgrind {vg}:\n{text}");
}

// ------------------------------------------------------------------ the fold itself

/// The fold on a real heaptrack recording of a tiny program, with a hand-made
/// classification (so it tests the fold, not the analysis): every expected site comes
/// from objdump.
#[test]
fn fold_of_tiny_program() {
    let d = scratch("fold-tiny");
    let exe = d.join("htfold");
    ok(Command::new("gcc").args(["-O2", "-g", "-o"]).arg(&exe).arg(root().join("rewriter/tests/c/htfold.c")));
    ok(Command::new("heaptrack").arg("--raw").arg("-o").arg(d.join("ht")).arg(&exe).current_dir(&*d));
    let raw = d.join("ht.raw.zst");
    let rec = heaptrack::Recording::read(&raw).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rec.exe, exe.to_string_lossy(), "the x line names the executable");

    let calls = call_sites(&exe);
    let ret = |caller: &str, target: &str| -> Vec<u64> { calls.iter().filter(|c| c.caller == caller && c.target == target).map(|c| c.ret).collect() };
    let syms = functions(&exe);
    let func = |n: &str, kind: &str, args: &str| {
        let (a, s) = syms[n];
        format!("{{\"name\":\"{n}\",\"address\":\"{a:#x}\",\"code_size\":{s},\"kind\":\"{kind}\",\"args\":{{{args}}},\"descriptor\":\"\"}}")
    };
    let call = |caller: &str, target: &str, r: u64, pt: bool, via: &str| {
        format!("{{\"at\":\"{:#x}\",\"ret\":\"{r:#x}\",\"caller\":\"{caller}\",\"callee\":\"{target}\",\"via\":\"{via}\",\"pass_through\":{pt}}}", r - 5)
    };
    // twice's `jmp xmalloc` (a tail call: no frame of twice's is left)
    let twice_jmp = {
        let (a, s) = syms["twice"];
        format!("{{\"at\":\"{:#x}\",\"ret\":\"{:#x}\",\"caller\":\"twice\",\"callee\":\"xmalloc\",\"via\":\"direct\",\"tail\":true,\"pass_through\":true}}", a + s - 5, a + s)
    };
    let (grid_data, grid_rows) = {
        let v = ret("grid", "xmalloc");
        assert_eq!(v.len(), 2, "grid calls xmalloc twice");
        (v[0], v[1])
    };
    let mut cl = vec![
        call("xmalloc", "malloc", ret("xmalloc", "malloc")[0], true, "plt"),
        call("grid", "xmalloc", grid_data, true, "direct"),
        call("grid", "xmalloc", grid_rows, false, "direct"),
        twice_jmp,
    ];
    for t in ["malloc", "strdup"] {
        for r in ret("main", t) {
            cl.push(call("main", t, r, false, "plt"));
        }
    }
    let json = format!(
        "{{\"binary\":\"htfold\",\"functions\":[{},{},{}],\"calls\":[{}]}}",
        func("xmalloc", "alloc", "\"size\":0"),
        func("twice", "alloc", "\"size\":0"),
        func("grid", "alloc", "\"count\":0,\"size\":1"),
        cl.join(",")
    );
    let cls = Classification::from_json(&json).unwrap();
    let classes = Classes::new(&cls);
    let objects = heaptrack::program_objects(&exe).unwrap();
    let f = heaptrack::fold(&rec, &classes, &objects).unwrap();
    let s = |r: u64| ("htfold".to_string(), r);
    let at = |m: &BTreeMap<Site, Count>, r: u64| m.get(&s(r)).copied().unwrap_or_default();
    let c = |calls, bytes| Count { calls, bytes };

    // fill → xmalloc → malloc, 3 times from one call site (pass-through inside)
    let x = ret("fill", "xmalloc");
    assert_eq!(x.len(), 1);
    assert_eq!(at(&f.innermost, x[0]), c(3, 100 + 101 + 102));
    assert_eq!(at(&f.outermost, x[0]), c(3, 303));
    // main → twice ⇒ (tail call) xmalloc → malloc: main's call enters an allocation
    // function, whichever it is by the time malloc runs
    let tw = ret("main", "twice");
    assert_eq!(tw.len(), 1);
    assert!(ret("twice", "xmalloc").is_empty(), "twice tail-calls xmalloc at -O2");
    assert_eq!(at(&f.innermost, tw[0]), c(1, 400));
    assert_eq!(at(&f.outermost, tw[0]), c(1, 400));
    // grid: the data chunk's innermost is main's call, the rows' is grid's call
    let g = ret("main", "grid");
    assert_eq!(g.len(), 1);
    assert_eq!(at(&f.innermost, g[0]), c(1, 6 * 5 * 4));
    assert_eq!(at(&f.innermost, grid_rows), c(1, 6 * 8));
    assert_eq!(at(&f.outermost, g[0]), c(2, 6 * 5 * 4 + 6 * 8));
    assert_eq!(at(&f.innermost, grid_data), c(0, 0), "a pass-through call is never a site");
    // the inlined strdup helper: main's call of strdup@plt, not __strdup in libc
    let sd = ret("main", "strdup");
    assert_eq!(sd.len(), 1, "dup_name is inlined into main");
    assert_eq!(at(&f.innermost, sd[0]), c(1, "htfold-name".len() as u64 + 1));
    assert_eq!(at(&f.outermost, sd[0]), c(1, 12));
    // the C library's own buffer for stdout: no call of the program's on the stack
    let libc_sites: Vec<_> = f.innermost.iter().filter(|(k, _)| k.0 == "libc.so.6").collect();
    assert!(libc_sites.iter().any(|(_, c)| c.bytes >= 1024), "stdout's buffer is the C library's own allocation: {libc_sites:?}");
    // heaptrack's own libraries' allocations (libstdc++'s pool) are left out
    assert!(f.ignored.calls >= 1, "libstdc++'s emergency pool, loaded by heaptrack, is left out");
    assert!(!f.innermost.keys().any(|k| k.0 == "libstdc++.so.6"));
}


#[test]
fn heaptrack_parser_reads_modules_traces_and_allocations() {
    let text = "v 10400 3\nx 5 /a/pq\nm 1 x 1000 0 800 1000 500\nm 1f /lib/x86_64-linux-gnu/libc.so.6 7000 0 3000\nt 1104 0\nt 7010 1\n+ 20 2 55\n+ 10 1 66\n- 55\nm 1 -\nm 1 x 1000 0 800 1000 500\nt 1200 1\n+ 8 3 77\nc 0\n";
    let rec = heaptrack::Recording::parse(text.as_bytes()).unwrap();
    assert_eq!(rec.exe, "/a/pq");
    assert_eq!(rec.objects, vec!["pq".to_string(), "libc.so.6".to_string()]);
    let st = rec.stack(2);
    assert_eq!(st.len(), 2);
    assert_eq!((st[0].object, st[0].ret), (Some(1), 0x11));
    assert_eq!((st[1].object, st[1].ret), (Some(0), 0x105));
    // after `m 1 -` libc is gone: its addresses map to no module
    assert_eq!(rec.per_trace[&2], Count { calls: 1, bytes: 0x20 });
    assert_eq!(rec.per_trace[&1], Count { calls: 1, bytes: 0x10 });
    assert_eq!(rec.stack(3)[0].ret, 0x201);
    assert!(heaptrack::Recording::parse("t zz 0\n".as_bytes()).is_err());
    assert!(heaptrack::Recording::parse("m 40 short\n".as_bytes()).is_err());
}
