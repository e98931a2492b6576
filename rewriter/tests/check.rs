//! Heap checks (issue 12): each testbins/check_*.c bug, rewritten and run under
//! `ALLOCSITE_CHECK`, gives exactly its finding with the allocation and free sites'
//! lines (from the markers in the source), and valgrind memcheck sees the same bug with
//! the same allocation line.
mod support;

use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{root, testbins_out};

const ALL: &str = "poison,canary,double-free,quarantine";

fn allocsite() -> &'static str {
    env!("CARGO_BIN_EXE_allocsite")
}

/// The 1-based line of the source that holds `marker`.
fn line_of(src: &str, marker: &str) -> usize {
    let text = std::fs::read_to_string(root().join("testbins").join(src)).unwrap();
    text.lines().position(|l| l.contains(marker)).unwrap_or_else(|| panic!("{src} has no {marker}")) + 1
}

fn rewritten(prog: &str, dir: &Path) -> PathBuf {
    let out = dir.join(prog);
    let o = Command::new(allocsite()).arg("rewrite").arg(testbins_out().join(format!("{prog}.O2"))).arg("-o").arg(&out).output().unwrap();
    assert!(o.status.success(), "rewrite {prog}: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn tmp(name: &str) -> PathBuf {
    let d = root().join("target/check-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run with checks `opts` and a report; (output, report's findings).
fn run(exe: &Path, args: &[&str], opts: &str) -> (Output, Vec<Value>) {
    let rep = exe.with_extension("json");
    let _ = std::fs::remove_file(&rep);
    let o = Command::new(exe).args(args).env("ALLOCSITE_CHECK", opts).env("ALLOCSITE_REPORT", &rep).output().unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&rep).unwrap_or_else(|_| panic!("{exe:?} {args:?}: no report; stderr {}", String::from_utf8_lossy(&o.stderr)))).unwrap();
    (o, v["findings"].as_array().unwrap().clone())
}

fn line(site: &Value) -> String {
    site["line"].as_str().unwrap_or("").rsplit('/').next().unwrap().to_string()
}

/// The finding's (innermost, outermost) lines of `what` ("allocated", "last_free", "this_free").
fn lines(f: &Value, what: &str) -> (String, String) {
    (line(&f[what]["innermost"]), line(&f[what]["outermost"]))
}

fn valgrind(exe: &Path, args: &[&str], extra: &[&str]) -> String {
    let o = Command::new("valgrind").args(["-q", "--error-exitcode=99"]).args(extra).arg(exe).args(args).output().expect("valgrind");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// memcheck's message `what` is followed (in the same error) by a block allocated at `at`.
fn vg_says(vg: &str, what: &str, at: &str) -> bool {
    vg.split("\n==").collect::<Vec<_>>().join("\n").split(what).skip(1).any(|rest| {
        let err = rest.split("\n\n").next().unwrap_or("");
        err.contains("alloc'd") && err.split("alloc'd").nth(1).is_some_and(|a| a.contains(at))
    })
}

#[test]
fn off_by_one_strcpy_is_an_overflow_at_free() {
    let d = tmp("obo");
    let exe = rewritten("check_obo", &d);
    let (o, fs) = run(&exe, &[], ALL);
    assert_eq!(o.status.signal(), Some(6), "fail=abort raises SIGABRT: {o:?}");
    assert_eq!(fs.len(), 1, "{fs:#?}");
    let f = &fs[0];
    let a = format!("check_obo.c:{}", line_of("check_obo.c", "/* alloc site */"));
    assert_eq!(f["kind"], "overflow");
    assert_eq!(f["size"], 12);
    assert_eq!(f["offset"], 12);
    assert_eq!(f["found"].as_str().unwrap()[..2], *"00", "the NUL strcpy wrote: {f}");
    // copy() mallocs strlen(s) of its parameter: the analysis may classify it as a
    // strdup-like allocation function (then its malloc is pass-through and the chunk's
    // innermost site is main's call of copy), or not (then it is copy's malloc call)
    let main_call = format!("check_obo.c:{}", line_of("check_obo.c", "char *p = copy("));
    if f["allocated"]["allocator"] == "copy" {
        assert_eq!(lines(f, "allocated"), (main_call.clone(), main_call), "{f}");
    } else {
        assert_eq!(f["allocated"]["allocator"], "malloc", "{f}");
        assert_eq!(lines(f, "allocated"), (a.clone(), main_call), "{f}");
    }
    let free_at = format!("check_obo.c:{}", line_of("check_obo.c", "/* free site */"));
    assert_eq!(lines(f, "this_free").0, free_at);
    assert!(line(&f["stack"][0]) == free_at, "stack starts at the free: {f}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("heap check: overflow") && err.contains(&lines(f, "allocated").0), "{err}");
    // warn: reported, the program goes on
    let (o, fs) = run(&exe, &[], &format!("{ALL},fail=warn"));
    assert!(o.status.success() && fs.len() == 1);
    // what the runtime allocates to report a finding is its own: nothing dropped
    let rep: Value = serde_json::from_str(&std::fs::read_to_string(exe.with_extension("json")).unwrap()).unwrap();
    assert_eq!(rep["totals"]["dropped"], 0, "{}", rep["totals"]);
    // memcheck: an invalid write of 1 byte into the block from the same line
    let vg = valgrind(&testbins_out().join("check_obo.O2"), &[], &[]);
    assert!(vg_says(&vg, "Invalid write of size", &a), "{vg}");
}

#[test]
fn write_after_free_found_leaving_quarantine() {
    let d = tmp("uaf");
    let exe = rewritten("check_uaf", &d);
    let (o, fs) = run(&exe, &[], ALL);
    assert_eq!(o.status.signal(), Some(6));
    assert_eq!(fs.len(), 1, "{fs:#?}");
    let f = &fs[0];
    let a = format!("check_uaf.c:{}", line_of("check_uaf.c", "/* alloc site */"));
    assert_eq!(f["kind"], "write-after-free");
    assert_eq!(f["offset"], 0);
    assert_eq!(f["found"].as_str().unwrap()[..8], *"ffffffff", "{f}");
    assert_eq!(lines(f, "allocated").0, a);
    assert_eq!(lines(f, "last_free").0, format!("check_uaf.c:{}", line_of("check_uaf.c", "/* free site */")));
    // without quarantine, nothing is kept to check
    let (o, fs) = run(&exe, &[], "poison,canary,double-free");
    assert!(o.status.success() && fs.is_empty(), "{fs:#?}");
    let vg = valgrind(&testbins_out().join("check_uaf.O2"), &[], &[]);
    assert!(vg_says(&vg, "Invalid write of size 4", &a), "{vg}");
}

#[test]
fn bad_frees_through_a_wrapper_interior_and_stack() {
    let d = tmp("dfree");
    let exe = rewritten("check_dfree", &d);
    let src = "check_dfree.c";
    let a = format!("{src}:{}", line_of(src, "/* alloc site */"));
    let wrapper_free = format!("{src}:{}", line_of(src, "/* free site */"));
    let drop_call = format!("{src}:{}", line_of(src, "same site */"));
    for (mode, kind) in [("double", "double-free"), ("twice", "wrong-free-already-freed"), ("interior", "wrong-free-interior"), ("stack", "wrong-free-not-heap")] {
        let (o, fs) = run(&exe, &[mode], ALL);
        assert_eq!(o.status.signal(), Some(6), "{mode}");
        assert_eq!(fs.len(), 1, "{mode}: {fs:#?}");
        let f = &fs[0];
        assert_eq!(f["kind"], kind, "{mode}: {f}");
        match mode {
            "double" => {
                // drop() is a free wrapper: its call in main is the free site, both times
                assert_eq!(lines(f, "allocated").0, a);
                assert_eq!(f["allocated"]["allocator"], "xmalloc");
                assert_eq!(lines(f, "last_free").0, drop_call);
                assert_eq!(lines(f, "this_free").0, drop_call);
                assert_eq!(f["this_free"]["allocator"], "drop");
                assert_eq!(f["size"], 48);
            }
            "twice" => {
                assert_eq!(lines(f, "allocated").0, a);
                assert_ne!(lines(f, "last_free").0, lines(f, "this_free").0);
                assert_eq!(f["this_free"]["allocator"], "xfree");
            }
            "interior" => {
                assert_eq!(lines(f, "allocated").0, a);
                assert_eq!(f["offset"], 16);
                assert_eq!(lines(f, "this_free").0, format!("{src}:{}", line_of(src, "interior pointer */")));
            }
            _ => {
                assert!(f["allocated"].is_null());
                assert_eq!(lines(f, "this_free").0, format!("{src}:{}", line_of(src, "stack address */")));
            }
        }
        let vg = valgrind(&testbins_out().join("check_dfree.O2"), &[mode], &[]);
        assert!(vg.contains("Invalid free()"), "{mode}: {vg}");
        if mode != "stack" {
            assert!(vg_says(&vg, "Invalid free()", &a), "{mode}: {vg}");
        }
        let _ = wrapper_free.len();
    }
}

#[test]
fn pool_suballocator_bad_sub_frees() {
    let d = tmp("pool");
    let exe = d.join("check_pool");
    let o = Command::new(allocsite()).arg("rewrite").arg(testbins_out().join("check_pool.O2")).arg("-o").arg(&exe).args(["--free-fns", "obj_put(pP)"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let src = "check_pool.c";
    let piece = format!("{src}:{}", line_of(src, "/* piece site */"));
    for (mode, kind, at) in [("double", "double-free", "puts a back again */"), ("interior", "wrong-sub-free", "inside a piece */"), ("never", "wrong-sub-free", "never handed out */")] {
        let (o, fs) = run(&exe, &[mode], ALL);
        assert_eq!(o.status.signal(), Some(6), "{mode}");
        assert_eq!(fs.len(), 1, "{mode}: {fs:#?}");
        let f = &fs[0];
        assert_eq!(f["kind"], kind, "{mode}: {f}");
        let call = format!("{src}:{}", line_of(src, at));
        assert_eq!(lines(f, "this_free").0, call, "{mode}: {f}");
        assert_eq!(f["this_free"]["allocator"], "give_back");
        assert_eq!(line(&f["stack"][0]), call, "{mode}: the stack starts at the call (trampoline frames left out): {f}");
        match mode {
            "double" => {
                assert_eq!(lines(f, "allocated").0, piece);
                assert_eq!(f["allocated"]["allocator"], "pool_alloc");
                assert_eq!(f["size"], 64);
                assert_eq!(lines(f, "last_free").0, call);
            }
            "interior" => {
                assert_eq!(lines(f, "allocated").0, piece);
                assert_eq!(f["offset"], 8);
            }
            _ => {
                // the pool's own chunk, made by pool_new
                assert_eq!(f["allocated"]["allocator"], "pool_new", "{f}");
            }
        }
    }
    // an off-by-one into a piece: its slack changed, found at the sub-free or at exit
    let strcpy_piece = format!("{src}:{}", line_of(src, "/* strcpy piece */"));
    for mode in ["overflow", "overflow-live"] {
        let (o, fs) = run(&exe, &[mode], ALL);
        assert_eq!(o.status.signal(), Some(6), "{mode}");
        assert_eq!(fs.len(), 1, "{mode}: {fs:#?}");
        let f = &fs[0];
        assert_eq!(f["kind"], "overflow", "{mode}: {f}");
        assert_eq!(lines(f, "allocated").0, strcpy_piece, "{mode}: {f}");
        assert_eq!(f["allocated"]["allocator"], "pool_alloc");
        assert_eq!(f["size"], mode.len(), "{mode}: {f}");
        assert_eq!(f["offset"], mode.len(), "{mode}: {f}");
        assert!(f["found"].as_str().unwrap().starts_with("00a5"), "{mode}: the terminator, then the poisoned arena: {f}");
        if mode == "overflow" {
            let call = format!("{src}:{}", line_of(src, "/* sub-free of the overflowed piece */"));
            assert_eq!(lines(f, "this_free").0, call, "{f}");
        } else {
            assert!(f["this_free"].is_null(), "{f}");
        }
    }
    // without canary the slack is not looked at
    let (o, fs) = run(&exe, &["overflow"], "poison,double-free,quarantine");
    assert!(o.status.success() && fs.is_empty(), "{fs:#?}");
    // a read after the piece went back sees the free pattern
    let (o, fs) = run(&exe, &["uaf"], ALL);
    assert!(o.status.success() && fs.is_empty(), "{fs:#?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("b[40] = 5a"));
    // a write into a piece after it went back (the pool's own link in its first word
    // is no finding): found when the pool's block is freed, or at exit
    let put = format!("{src}:{}", line_of(src, "/* sub-free before the write */"));
    for mode in ["uaf-write", "uaf-write-live"] {
        let (o, fs) = run(&exe, &[mode], ALL);
        assert_eq!(o.status.signal(), Some(6), "{mode}");
        assert_eq!(fs.len(), 1, "{mode}: {fs:#?}");
        let f = &fs[0];
        assert_eq!(f["kind"], "write-after-free", "{mode}: {f}");
        assert_eq!(lines(f, "allocated").0, piece, "{mode}: {f}");
        assert_eq!(f["allocated"]["allocator"], "pool_alloc", "{mode}: {f}");
        assert_eq!(lines(f, "last_free").0, put, "{mode}: {f}");
        assert_eq!((f["size"].as_u64(), f["offset"].as_u64()), (Some(64), Some(40)), "{mode}: {f}");
        assert!(f["found"].as_str().unwrap().starts_with("775a"), "{mode}: 'w', then the free pattern: {f}");
        let (o, fs) = run(&exe, &[mode], "poison,double-free,quarantine,fail=warn");
        assert!(o.status.success() && fs.len() == 1, "{mode}: {fs:#?}");
    }
    // without a free pattern (no poison, no quarantine) nothing is looked at
    let (o, fs) = run(&exe, &["uaf-write"], "canary,double-free");
    assert!(o.status.success() && fs.is_empty(), "{fs:#?}");
}

#[test]
fn poisoning_shows_an_uninitialised_read() {
    let d = tmp("uninit");
    let exe = rewritten("check_uninit", &d);
    let (o, fs) = run(&exe, &["x"], "poison");
    assert!(o.status.success() && fs.is_empty());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "counts[0] = a5a5a5a5");
    let (o, _) = run(&exe, &["x"], "poison=0x3c");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "counts[0] = 3c3c3c3c");
    let a = format!("check_uninit.c:{}", line_of("check_uninit.c", "/* alloc site */"));
    let vg = valgrind(&testbins_out().join("check_uninit.O2"), &["x"], &["--track-origins=yes"]);
    assert!(vg.contains("uninitialised value") && vg.split("created by a heap allocation").nth(1).is_some_and(|r| r.contains(&a)), "{vg}");
}

#[test]
fn no_checks_no_findings_and_bad_options_ignored() {
    let d = tmp("none");
    let exe = rewritten("check_obo", &d);
    let o = Command::new(&exe).output().unwrap();
    assert!(o.status.success());
    let o = Command::new(&exe).env("ALLOCSITE_CHECK", "poison,bogus").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown option bogus"));
}

#[test]
fn options_baked_by_rewrite_check_and_overridden_by_the_variable() {
    let d = tmp("baked");
    let exe = d.join("check_obo");
    let o = Command::new(allocsite()).arg("rewrite").arg(testbins_out().join("check_obo.O2")).arg("-o").arg(&exe).args(["--check", "canary,fail=warn"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(&exe).env_remove("ALLOCSITE_CHECK").output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("heap check: overflow"), "{o:?}");
    // the variable wins: poison alone has no canary
    let o = Command::new(&exe).env("ALLOCSITE_CHECK", "poison").output().unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "{o:?}");
    let o = Command::new(allocsite()).arg("rewrite").arg(testbins_out().join("check_obo.O2")).arg("-o").arg(d.join("x")).args(["--check", "canry"]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("unknown option \"canry\""));
}

// ------------------------------------------------------------------ real programs

/// `build/realworld` (or `$ALLOCSITE_REALWORLD_DIR`) with NAME built on first use.
fn realworld(name: &str) -> PathBuf {
    let dir = std::env::var_os("ALLOCSITE_REALWORLD_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("build/realworld"));
    let st = Command::new(root().join("testbins/realworld/build")).arg(name).env("ALLOCSITE_REALWORLD_DIR", &dir).status().unwrap();
    assert!(st.success(), "testbins/realworld/build {name}");
    dir
}

/// The program's workload: the rewritten binary under every check gives the original's
/// output byte for byte, and no finding (fail=abort would end it; stderr says none).
fn clean_under_checks(name: &str) {
    let rw = realworld(name);
    let d = tmp(&format!("rw-{name}"));
    let exe = d.join(name);
    let o = Command::new(allocsite()).arg("rewrite").arg(rw.join("bin").join(name)).arg("-o").arg(&exe).output().unwrap();
    assert!(o.status.success(), "rewrite {name}: {}", String::from_utf8_lossy(&o.stderr));
    let wl = root().join("testbins/realworld/workloads").join(format!("{name}.sh"));
    let orig = Command::new("bash").arg(&wl).arg(rw.join("bin").join(name)).output().unwrap();
    assert!(orig.status.success());
    let chk = Command::new("bash").arg(&wl).arg(&exe).env("ALLOCSITE_CHECK", ALL).output().unwrap();
    let err = String::from_utf8_lossy(&chk.stderr);
    assert!(chk.status.success() && !err.contains("heap check"), "{name} under {ALL}: {err}");
    assert!(orig.stdout == chk.stdout, "{name}: output differs under {ALL}");
}

#[test]
fn lua_clean_under_all_checks() {
    clean_under_checks("lua");
}
#[test]
fn sqlite3_clean_under_all_checks() {
    clean_under_checks("sqlite3");
}
#[test]
fn zstd_clean_under_all_checks() {
    clean_under_checks("zstd");
}
#[test]
fn bzip2_clean_under_all_checks() {
    clean_under_checks("bzip2");
}
#[test]
fn pcre2test_clean_under_all_checks() {
    clean_under_checks("pcre2test");
}

/// Lua with one injected line: `createstrobj` sizes every string one byte short, so
/// the terminating NUL lands just past the chunk. Caught at the first free of such a
/// string, with the allocation at Lua's own classified call of `luaC_newobj`.
#[test]
fn lua_with_an_injected_off_by_one_is_caught() {
    let rw = realworld("lua");
    let fetched = std::fs::read_to_string(rw.join("src/.lua5.4.fetched")).unwrap();
    let src = rw.join("src").join(fetched.split_whitespace().next().unwrap()).join("src");
    let d = tmp("lua-bug");
    let mut c_files = Vec::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        if n.ends_with(".c") && n != "luac.c" {
            c_files.push(n);
        }
    }
    let ls = d.join("lstring.c");
    let text = std::fs::read_to_string(&ls).unwrap();
    let good = "  totalsize = sizelstring(l);\n";
    assert_eq!(text.matches(good).count(), 1, "lstring.c sizes strings in one place");
    let text = text.replace(good, "  totalsize = sizelstring(l) - 1;  /* injected */\n");
    std::fs::write(&ls, &text).unwrap();
    let o = Command::new("gcc")
        .args(["-O2", "-g", "-DLUA_COMPAT_5_3", "-DLUA_USE_LINUX"])
        .arg(format!("-I{}", rw.join("obj/lua-generated").display()))
        .args(["-o", "lua"])
        .args(&c_files)
        .args(["-Wl,-E", "-lm", "-ldl"])
        .current_dir(&d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(allocsite()).arg("rewrite").arg(d.join("lua")).arg("-o").arg(d.join("lua.rw")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (o, fs) = run(&d.join("lua.rw"), &["-e", "print(1)"], ALL);
    assert_eq!(o.status.signal(), Some(6), "{o:?}");
    assert_eq!(fs.len(), 1, "{fs:#?}");
    let f = &fs[0];
    assert_eq!(f["kind"], "overflow");
    assert_eq!(f["offset"], f["size"], "right after the string: {f}");
    assert_eq!(&f["found"].as_str().unwrap()[..2], "00", "the NUL: {f}");
    assert_eq!(f["allocated"]["allocator"], "luaC_newobj");
    // createstrobj is inlined into its callers: the line is theirs (its two calls)
    let calls: Vec<String> =
        text.lines().enumerate().filter(|(_, l)| l.contains("= createstrobj(L,")).map(|(i, _)| format!("lstring.c:{}", i + 1)).collect();
    let (inner, outer) = lines(f, "allocated");
    assert!(calls.contains(&inner) || inner == format!("lstring.c:{}", text.lines().position(|l| l.contains("/* injected */")).unwrap() + 2), "{inner} not among {calls:?}");
    assert!(outer.contains(".c:"), "the outermost site has its line too: {f}");
    assert_eq!(f["last_free"], Value::Null);
    assert_eq!(f["this_free"]["allocator"], "freeobj", "{f}");
}
