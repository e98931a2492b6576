//! Integration tests: C programs under tests/c are built with gcc/g++ against the
//! built liballocsite_rt.so (as a rewritten program would load it), run, and their
//! reports checked against what they really did.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{build, out_dir, root, rt};

struct Run {
    stdout: String,
    dir: PathBuf,
}

fn run(exe: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(exe);
    c.args(args).current_dir(dir).env_remove("ALLOCSITE_TRACE").env_remove("ALLOCSITE_REPORT").env_remove("ALLOCSITE_MAX_META");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{stdout}\n{}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Run { stdout, dir: dir.to_path_buf() }
}

fn report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn reports(dir: &Path) -> Vec<Value> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("report-"))
        .map(|e| report(&e.path()))
        .collect();
    v.sort_by_key(|r| r["pid"].as_u64());
    v
}

fn sites_matching<'a>(r: &'a Value, key: &str, prefix: &str) -> Vec<&'a Value> {
    r[key].as_array().unwrap().iter().filter(|s| s["symbol"].as_str().unwrap().starts_with(prefix)).collect()
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

#[test]
fn tls_symbol_exported() {
    let out = Command::new("nm").args(["-D", "--defined-only"]).arg(rt()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for sym in ["__outermost_allocsite", "__allocsite_enter", "__allocsite_exit", "__allocsite_hook_enter", "__allocsite_hook_exit", "__allocsite_slow_v5", "malloc", "free", "_Znwm", "allocsite_lookup"] {
        assert!(text.lines().any(|l| l.ends_with(&format!(" {sym}"))), "{sym} not exported:\n{text}");
    }
    let out = Command::new("readelf").args(["--dyn-syms", "-W"]).arg(rt()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.contains(" TLS ") && l.ends_with("__outermost_allocsite")), "{text}");
}

#[test]
fn hooks_nesting_failure_longjmp_and_trace() {
    let dir = out_dir("hooks");
    let exe = build("hooks.c", &dir, &[]);
    for mode in ["nest", "fail", "longjmp"] {
        run(&exe, &dir, &[mode], &[("ALLOCSITE_TRACE", "trace-%p.txt")]);
    }
    let traces: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("trace-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(traces.len(), 3);
    let all = traces.join("");
    // nested sphinx3-style wrapper: outer call at depth 1 with size/count, inner at depth 2
    let outer = all.lines().find(|l| l.starts_with("enter") && l.contains("fn=ckd_calloc_2d ")).unwrap();
    assert!(outer.contains(" site=hooks+0x") && outer.contains(" depth=1 size=8 count=3"), "{outer}");
    let inner = all.lines().find(|l| l.starts_with("enter") && l.contains("fn=ckd_calloc ") && l.contains("depth=2")).unwrap();
    assert!(inner.contains(" size=8 count=12"), "{inner}");
    // the row-pointer xmalloc inside ckd_calloc_2d (the longjmp test has other depth-2 ones)
    assert!(all.lines().any(|l| l.starts_with("enter") && l.contains("fn=xmalloc ") && l.contains(" depth=2 size=24")), "{all}");
    let fr = all.lines().find(|l| l.starts_with("enter") && l.contains("fn=xfree ")).unwrap();
    assert!(fr.contains(" ptr=0x") && !fr.contains("size="), "{fr}");
    // failing call: exit with ret=0x0
    assert!(all.lines().any(|l| l.starts_with("exit  ") && l.contains("fn=xmalloc ") && l.ends_with("ret=0x0")));
    // every enter has an exit, except the calls left by longjmp (jumper, 3 times)
    let enters = all.lines().filter(|l| l.starts_with("enter ")).count();
    let exits = all.lines().filter(|l| l.starts_with("exit  ")).count();
    assert_eq!(enters, exits + 3, "{all}");
    assert!(all.lines().all(|l| l.contains(" tid=")));
}

#[test]
fn hooks_eight_threads() {
    let dir = out_dir("hooks-threads");
    let exe = build("hooks.c", &dir, &[]);
    let r = run(&exe, &dir, &["threads"], &[]);
    assert!(r.stdout.contains("threads ok"));
}

#[test]
fn index_basic_all_allocators_realloc_chain() {
    let dir = out_dir("index-basic");
    let exe = build("index.c", &dir, &[]);
    run(&exe, &dir, &["basic"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    let r = &reports(&dir)[0];
    let t = &r["totals"];
    assert_eq!(u(t, "dropped"), 0);
    assert!(u(t, "meta_bytes") > 0);
    assert_eq!(r["totals"]["indexing_stopped"], Value::Bool(false));
    // the malloc loop in basic(): 14 calls, all freed
    let basic = sites_matching(r, "sites", "basic+");
    let total_calls: u64 = basic.iter().map(|s| u(s, "calls")).sum();
    assert!(total_calls >= 14 + 10, "{basic:?}");
    assert!(basic.iter().all(|s| u(s, "live_chunks") == 0));
    let m = basic.iter().find(|s| s["allocator"] == "malloc" && u(s, "calls") == 14).expect("malloc site");
    assert_eq!(u(m, "bytes"), 1 + 16 + 24 + 100 + 1000 + 1024 + 1025 + 4000 + 5000 + 65536 + 70000 + 200000 + (3 << 20));
    assert_eq!(u(m, "peak_live_bytes"), u(m, "bytes"));
    assert!(m["line"].as_str().unwrap().starts_with("index.c:"), "{m}");
}

#[test]
fn index_wrappers_innermost_outermost() {
    let dir = out_dir("index-wrappers");
    let exe = build("index.c", &dir, &[]);
    run(&exe, &dir, &["wrappers"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    let r = &reports(&dir)[0];
    // sphinx3-style: data chunk's innermost site is inside the wrapper, outermost the caller
    let inner = sites_matching(r, "sites", "ckd_2d_body+");
    assert_eq!(inner.len(), 2, "{inner:?}");
    for s in &inner {
        assert_eq!(u(s, "calls"), 1);
        assert_eq!(u(s, "live_chunks"), 0);
        let outs = s["outermost"].as_array().unwrap();
        assert_eq!(outs.len(), 1);
        assert!(outs[0]["symbol"].as_str().unwrap().starts_with("sphinx_caller"), "{s}");
        // the function called at that outermost site
        assert_eq!(outs[0]["allocator"], "__ckd_calloc_2d__", "{s}");
    }
    assert!(inner.iter().any(|s| s["allocator"] == "__ckd_calloc__" && u(s, "bytes") == 160));
    assert!(inner.iter().any(|s| s["allocator"] == "xmalloc" && u(s, "bytes") == 32));
    // 3 leaked xmalloc(1000) from wrappers(): innermost == outermost == wrappers+0x..
    let leak = sites_matching(r, "sites", "wrappers+")
        .into_iter()
        .find(|s| s["allocator"] == "xmalloc" && u(s, "live_chunks") == 3)
        .expect("leak site");
    assert_eq!(u(leak, "live_bytes"), 3000);
    assert_eq!(u(leak, "calls"), 3);
    assert!(leak["outermost"][0]["symbol"].as_str().unwrap().starts_with("wrappers+"));
    // grouped by outermost site: sphinx_caller groups both chunks
    let o = sites_matching(r, "outermost", "sphinx_caller");
    assert_eq!(o.len(), 1);
    assert_eq!(u(o[0], "calls"), 2);
    assert_eq!(u(o[0], "bytes"), 192);
    assert_eq!(o[0]["innermost"].as_array().unwrap().len(), 2);
    // each view's allocator is the function called at the site it shows
    assert_eq!(o[0]["allocator"], "__ckd_calloc_2d__");
    let mut inner_fns: Vec<&str> = o[0]["innermost"].as_array().unwrap().iter().map(|x| x["allocator"].as_str().unwrap()).collect();
    inner_fns.sort();
    assert_eq!(inner_fns, ["__ckd_calloc__", "xmalloc"]);
}

#[test]
fn index_eight_thread_stress() {
    let dir = out_dir("index-threads");
    let exe = build("index.c", &dir, &[]);
    run(&exe, &dir, &["threads"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    let r = &reports(&dir)[0];
    let t = &r["totals"];
    assert!(u(t, "calls") >= 8 * 200_000);
    assert_eq!(u(t, "dropped"), 0);
    // each thread keeps exactly 10 chunks from stress()
    let kept: u64 = sites_matching(r, "sites", "stress").iter().map(|s| u(s, "live_chunks")).sum();
    assert_eq!(kept, 80, "{}", serde_json::to_string_pretty(&r["sites"]).unwrap());
}

#[test]
fn index_against_a_model() {
    let dir = out_dir("index-model");
    let exe = build("index.c", &dir, &[]);
    run(&exe, &dir, &["model"], &[]);
}

#[test]
fn index_trailers() {
    // (the heap index on glibc's heap: ALLOCSITE_HEAP=glibc keeps every chunk there)
    let dir = out_dir("index-trailer");
    let exe = build("index.c", &dir, &[]);
    let r = run(&exe, &dir, &["trailer"], &[("ALLOCSITE_REPORT", "report-%p.json"), ("ALLOCSITE_HEAP", "glibc")]);
    assert!(r.stdout.contains("trailer ok"));
    let t = &reports(&dir)[0]["totals"];
    // one 8-byte overflow per round
    assert_eq!(u(t, "overwritten_trailers"), 2);
    assert_eq!(u(t, "stale_chunks"), 0);
    assert_eq!(u(t, "dropped"), 0);
}

#[test]
fn index_trailers_spans() {
    // the first round single-threaded, from the runtime's spans; the second, after a
    // thread existed, from glibc's heap
    let dir = out_dir("index-trailer-spans");
    let exe = build("index.c", &dir, &[]);
    let r = run(&exe, &dir, &["trailer"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    assert!(r.stdout.contains("trailer ok"));
    let t = &reports(&dir)[0]["totals"];
    // the overflow only in the glibc round
    assert_eq!(u(t, "overwritten_trailers"), 1);
    assert_eq!(u(t, "stale_chunks"), 0);
    assert_eq!(u(t, "dropped"), 0);
}

#[test]
fn index_iteration() {
    let dir = out_dir("index-iterate");
    let exe = build("index.c", &dir, &[]);
    run(&exe, &dir, &["iterate"], &[]);
}

#[test]
fn fork_child_writes_own_report() {
    let dir = out_dir("index-fork");
    let exe = build("index.c", &dir, &[]);
    let out = run(&exe, &dir, &["fork"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    let child: i64 = out.stdout.trim().rsplit('=').next().unwrap().parse().unwrap();
    let rs = reports(&out.dir);
    assert_eq!(rs.len(), 2, "one report per process");
    let c = rs.iter().find(|r| r["pid"].as_i64() == Some(child)).expect("child report");
    let p = rs.iter().find(|r| r["pid"].as_i64() != Some(child)).unwrap();
    let ca = sites_matching(c, "sites", "child_allocs");
    assert_eq!(ca.len(), 1);
    assert_eq!((u(ca[0], "calls"), u(ca[0], "live_chunks"), u(ca[0], "live_bytes")), (5, 5, 1500));
    assert!(sites_matching(p, "sites", "child_allocs").is_empty());
    // the 123-byte chunk: freed in the child, still live in the parent
    let live123 = |r: &Value| sites_matching(r, "sites", "forking").iter().map(|s| u(s, "live_bytes")).sum::<u64>();
    assert_eq!(live123(p), 123);
    assert_eq!(live123(c), 0);
}

#[test]
fn fork_while_threads_allocate() {
    let dir = out_dir("index-fork-threads");
    let exe = build("index.c", &dir, &[]);
    run(&exe, &dir, &["fork_threads"], &[]);
}

#[test]
fn metadata_cap_stops_indexing() {
    let dir = out_dir("index-cap");
    let exe = build("index.c", &dir, &[]);
    let cap = 200_000u64;
    run(&exe, &dir, &["cap"], &[("ALLOCSITE_REPORT", "report-%p.json"), ("ALLOCSITE_MAX_META", "200000")]);
    let r = &reports(&dir)[0];
    let t = &r["totals"];
    assert_eq!(t["indexing_stopped"], Value::Bool(true));
    // (a quarter of the 200,000 chunks at least: under ALLOCSITE_CHECK every chunk
    // carries its trailer and canary, the heap is larger, and the cap is hit later)
    assert!(u(t, "dropped") > 50_000, "{t}");
    assert!(u(t, "meta_bytes") <= cap, "{t}");
    assert_eq!(u(t, "meta_cap"), cap);
    assert!(u(t, "calls") >= 200_000);
}

#[test]
fn signal_handler_allocating() {
    let dir = out_dir("index-signals");
    let exe = build("index.c", &dir, &[]);
    run(&exe, &dir, &["signals"], &[]);
}

#[test]
fn cxx_new_delete() {
    let dir = out_dir("cxx");
    let exe = build("cxx.cc", &dir, &[]);
    run(&exe, &dir, &[], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    let r = &reports(&dir)[0];
    let news: Vec<_> = r["sites"].as_array().unwrap().iter().filter(|s| s["allocator"] == "operator new[]").collect();
    assert!(!news.is_empty());
    assert!(news.iter().any(|s| s["symbol"].as_str().unwrap().starts_with("main+")));
}

#[test]
fn api_example_report_on_request() {
    // allocsite_write_report with an explicit path; no ALLOCSITE_REPORT at exit
    let dir = out_dir("api");
    let exe = build("testbins/api_example.c", &dir, &[]);
    let out = run(&exe, &dir, &[], &[]);
    assert!(out.stdout.contains("make_node"), "{}", out.stdout);
    let r = report(&dir.join("api-report.json"));
    assert_eq!(r["reason"], "request");
    assert!(!sites_matching(&r, "sites", "make_node").is_empty());
}

#[test]
fn suballocator_pieces() {
    let dir = out_dir("index-suballoc");
    let exe = build("index.c", &dir, &[]);
    run(&exe, &dir, &["suballoc"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    let r = &reports(&dir)[0];
    let t = &r["totals"];
    assert_eq!(u(t, "suballoc_calls"), 106);
    assert_eq!(u(t, "suballoc_live_chunks"), 5);
    let pa: Vec<_> = r["sites"].as_array().unwrap().iter().filter(|s| s["allocator"] == "pool_alloc").collect();
    assert_eq!(pa.iter().map(|s| u(s, "calls")).sum::<u64>(), 105);
    assert_eq!(pa.iter().map(|s| u(s, "live_chunks")).sum::<u64>(), 5);
    assert!(pa.iter().all(|s| s["suballoc"] == Value::Bool(true)));
}

#[test]
fn rewritten_library_in_unmodified_program() {
    // libhooked.so depends on the runtime; libuser does not: the runtime comes after
    // libc, does not interpose malloc, and indexes the hooked functions' results.
    let dir = out_dir("libuser");
    let rt = rt();
    let libdir = rt.parent().unwrap().canonicalize().unwrap();
    let lib = dir.join("libhooked.so");
    let st = Command::new("gcc")
        .args(["-O2", "-g", "-shared", "-fPIC", "-fvisibility=hidden", "-o"])
        .arg(&lib)
        .arg(root().join("runtime/tests/c/libhooked.c"))
        .arg(format!("-L{}", libdir.display()))
        .arg("-lallocsite_rt")
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .arg("-Wl,--disable-new-dtags")
        .status()
        .unwrap();
    assert!(st.success());
    let exe = dir.join("libuser");
    let st = Command::new("gcc")
        .args(["-O2", "-g", "-o"])
        .arg(&exe)
        .arg(root().join("runtime/tests/c/libuser.c"))
        .arg(format!("-L{}", dir.display()))
        .arg("-lhooked")
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .status()
        .unwrap();
    assert!(st.success());
    run(&exe, &dir, &[], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    let r = &reports(&dir)[0];
    let by = |alloc: &str| -> (u64, u64, u64) {
        r["sites"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["allocator"] == alloc)
            .fold((0, 0, 0), |a, s| (a.0 + u(s, "calls"), a.1 + u(s, "bytes"), a.2 + u(s, "live_chunks")))
    };
    assert_eq!(by("lib_alloc"), (14, 10 * 100 + 4 * 1000, 4));
    assert_eq!(by("lib_zalloc"), (10, 500, 0));
    assert_eq!(by("lib_realloc"), (10, 3000, 0));
    assert!(r["sites"].as_array().unwrap().iter().all(|s| s["symbol"].as_str().unwrap().starts_with("main")), "{}", r["sites"]);
}

/// The per-site rows of `r` whose symbol starts with `prefix`, summed: (calls, bytes, peak).
fn site_sums(r: &Value, prefix: &str) -> (u64, u64, u64) {
    let s = sites_matching(r, "sites", prefix);
    assert!(!s.is_empty(), "no site {prefix} in {}", serde_json::to_string_pretty(&r["sites"]).unwrap());
    (s.iter().map(|s| u(s, "calls")).sum(), s.iter().map(|s| u(s, "bytes")).sum(), s.iter().map(|s| u(s, "peak_live_bytes")).sum())
}

#[test]
fn threads_still_running_at_exit_are_counted() {
    // Workers allocate, keep their last batch unflushed and block (never joined) while
    // main writes an on-demand report and calls exit(): both reports count everything.
    let dir = out_dir("threads-exit");
    let exe = build("threads_exit.c", &dir, &[]);
    run(&exe, &dir, &["pending"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    let exit = &reports(&dir)[0];
    let request = report(&dir.join("request.json"));
    assert_eq!(exit["reason"], "exit");
    assert_eq!(request["reason"], "request");
    let counts = [1500u64, 700, 10, 3000, 1];
    let calls: u64 = counts.iter().sum();
    let bytes: u64 = counts.iter().enumerate().map(|(i, c)| c * (24 + i as u64)).sum();
    for r in [exit, &request] {
        let w = site_sums(r, "alloc_worker+");
        assert_eq!((w.0, w.1), (calls, bytes), "alloc_worker (calls, bytes) in the {} report", r["reason"]);
        // all kept: the peak is everything
        assert_eq!(w.2, bytes);
        // single-thread sites: exact peaks, also when the peak is in an unflushed batch
        assert_eq!(site_sums(r, "alloc_peak+"), (200, 20000, 20000), "{}", r["reason"]);
        assert_eq!(site_sums(r, "alloc_main+"), (3500, 350000, 300000), "{}", r["reason"]);
    }
}

#[test]
fn shared_site_peak_within_bound() {
    // A producer allocates 50000 chunks of 1000 bytes from a site, a consumer frees
    // them 10 at a time and holds one of its own from the same site: the true peak is
    // 11000 bytes. README "Reports": for a site n threads use, the reported peak is
    // within (-n, n+1) x 64 KiB of the true one (here n = 2).
    let dir = out_dir("threads-shared");
    let exe = build("threads_exit.c", &dir, &[]);
    let out = run(&exe, &dir, &["shared"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    assert!(out.stdout.contains("shared_calls=50001 shared_peak=11000"), "{}", out.stdout);
    let r = &reports(&dir)[0];
    let (calls, bytes, peak) = site_sums(r, "alloc_shared+");
    assert_eq!((calls, bytes), (50001, 50_001_000));
    let b = 64 * 1024;
    assert!(peak + 2 * b > 11000 && peak < 11000 + 3 * b, "shared peak {peak}, true 11000");
}

#[test]
fn calls_and_bytes_match_valgrind() {
    // totals.calls/bytes against valgrind's "total heap usage: N allocs ... B bytes
    // allocated" for the same program: explicit calls of every C allocator (realloc
    // to 0, free(NULL)), libc-internal allocations (open_memstream, getline, asprintf,
    // setlocale), thread creation, and workers still blocked when exit() is called.
    let dir = out_dir("threads-valgrind");
    let exe = build("threads_exit.c", &dir, &[]);
    let vg = Command::new("valgrind")
        // (no --error-exitcode: memcheck's malloc has no glibc chunk headers, which the
        // index reads for the usable size, so it reports invalid reads)
        .args(["--trace-children=no"])
        .arg(&exe)
        .arg("counts")
        .current_dir(&dir)
        .env_remove("ALLOCSITE_REPORT")
        .env_remove("ALLOCSITE_TRACE")
        .output()
        .expect("valgrind is required for this test (apt-get install valgrind)");
    let err = String::from_utf8_lossy(&vg.stderr);
    assert!(vg.status.success(), "valgrind failed:\n{err}");
    let line = err.lines().find(|l| l.contains("total heap usage:")).unwrap_or_else(|| panic!("{err}"));
    // "==pid==   total heap usage: 5,635 allocs, 319 frees, 357,534 bytes allocated"
    let nums: Vec<u64> = line
        .split("total heap usage:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .filter_map(|w| w.replace(',', "").parse().ok())
        .collect();
    let (vg_allocs, vg_bytes) = (nums[0], nums[2]); // allocs, frees, bytes
    run(&exe, &dir, &["counts"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    let t = &reports(&dir)[0]["totals"];
    // valgrind replaces posix_memalign, memalign and valloc in libc only: the program's
    // one call of each reaches it through the runtime, which asks for the same size
    // without checks; with any check on, 8 bytes more (the trailer the checks keep in
    // every chunk) and 8 canary bytes more again with `canary`
    let opts = std::env::var("ALLOCSITE_CHECK").unwrap_or_default();
    let has = |o: &str| opts.split(',').any(|x| x.trim().split('=').next() == Some(o));
    let checks = ["poison", "canary", "double-free", "quarantine"].iter().any(|o| has(o));
    let pad = if checks { 8 + if has("canary") { 8 } else { 0 } } else { 0 };
    assert_eq!((u(t, "calls"), u(t, "bytes") + 3 * pad), (vg_allocs, vg_bytes), "report vs valgrind: {line}");
    assert_eq!(u(t, "dropped"), 0);
}

/// The line of tests/c/<src> holding `marker`, as the report names it (`src:N`).
fn line_of(src: &str, marker: &str) -> String {
    let text = std::fs::read_to_string(root().join("runtime/tests/c").join(src)).unwrap();
    let n = text.lines().position(|l| l.contains(marker)).unwrap_or_else(|| panic!("no {marker} in {src}")) + 1;
    format!("{src}:{n}")
}

/// Per-site rows of a report view as (symbol prefix, allocator, [(sub-row symbol prefix,
/// sub-row allocator)]) for the sites whose symbol starts with `prefix`.
fn view<'a>(r: &'a Value, key: &str, prefix: &str) -> Vec<(&'a str, &'a str, Vec<(&'a str, &'a str)>)> {
    let sub = if key == "sites" { "outermost" } else { "innermost" };
    sites_matching(r, key, prefix)
        .into_iter()
        .map(|s| {
            let subs = s[sub].as_array().unwrap().iter().map(|x| (x["symbol"].as_str().unwrap(), x["allocator"].as_str().unwrap())).collect();
            (s["symbol"].as_str().unwrap(), s["allocator"].as_str().unwrap(), subs)
        })
        .collect()
}

#[test]
fn mark_makes_the_allocators_call_the_innermost_site() {
    let dir = out_dir("attrib-mark");
    let exe = build("attrib.c", &dir, &[]);
    let r = run(&exe, &dir, &["mark"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    assert!(r.stdout.contains("mark ok"));
    let r = &reports(&dir)[0];
    // innermost view: the marked malloc is make_obj_body's own site, allocator malloc;
    // its outermost site is mark_caller's call of make_obj
    let v = view(r, "sites", "make_obj_body+");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].1, "malloc");
    assert_eq!(v[0].2.len(), 1);
    assert!(v[0].2[0].0.starts_with("mark_caller+") && v[0].2[0].1 == "make_obj", "{v:?}");
    // the unmarked malloc and the marked strdup: mark_caller's sites
    let v = view(r, "sites", "mark_caller+");
    let mut allocs: Vec<&str> = v.iter().map(|s| s.1).collect();
    allocs.sort();
    assert_eq!(allocs, ["make_obj", "strdup"], "{v:?}");
    // outermost view: mark_caller's call of make_obj names make_obj, its innermost
    // sites name what was called there
    let o = view(r, "outermost", "mark_caller+");
    let mo = o.iter().find(|s| s.1 == "make_obj").expect("make_obj outermost row");
    let mut subs: Vec<(bool, &str)> = mo.2.iter().map(|(s, a)| (s.starts_with("make_obj_body+"), *a)).collect();
    subs.sort();
    assert_eq!(subs, [(false, "make_obj"), (true, "malloc")], "{o:?}");
    // the failed marked call and the free counted nothing
    assert_eq!(u(&r["totals"], "dropped"), 0);
}

#[test]
fn pass_through_call_repeats_the_enclosing_entry() {
    let dir = out_dir("attrib-pt");
    let exe = build("attrib.c", &dir, &[]);
    let r = run(&exe, &dir, &["pt"], &[("ALLOCSITE_REPORT", "report-%p.json"), ("ALLOCSITE_TRACE", "trace.txt")]);
    assert!(r.stdout.contains("pt ok"));
    let rep = &reports(&dir)[0];
    // no site at wrap_alloc_body (the pass-through call), one per call in pt_caller
    assert!(view(rep, "sites", "wrap_alloc_body").is_empty(), "{rep}");
    let v = view(rep, "sites", "pt_caller+");
    let mut allocs: Vec<&str> = v.iter().map(|s| s.1).collect();
    allocs.sort();
    assert_eq!(allocs, ["inner_alloc", "wrap_alloc", "wrap_sub"], "{v:?}");
    assert!(view(rep, "sites", "wrap_sub_body").is_empty(), "{rep}");
    // the pass-through entries pair with their exits: enter/exit balanced, depth 2 inside
    let trace = std::fs::read_to_string(dir.join("trace.txt")).unwrap();
    let enters = trace.lines().filter(|l| l.starts_with("enter ")).count();
    let exits = trace.lines().filter(|l| l.starts_with("exit  ")).count();
    assert_eq!((enters, exits), (5, 5), "{trace}");
    let inner = trace.lines().find(|l| l.starts_with("enter") && l.contains("fn=inner_alloc") && l.contains(" depth=2")).expect("nested enter");
    assert!(inner.contains(" size=48"), "{inner}");
}

#[test]
fn ctor_counts_only_for_the_outermost_site() {
    let dir = out_dir("attrib-ctor");
    let exe = build("attrib.c", &dir, &[]);
    let r = run(&exe, &dir, &["ctor"], &[("ALLOCSITE_REPORT", "report-%p.json"), ("ALLOCSITE_TRACE", "trace.txt")]);
    assert!(r.stdout.contains("ctor ok"));
    let rep = &reports(&dir)[0];
    let v = view(rep, "sites", "new_table_body+");
    let mut allocs: Vec<&str> = v.iter().map(|s| s.1).collect();
    allocs.sort();
    assert_eq!(allocs, ["malloc", "xmalloc"], "{v:?}");
    for s in &v {
        assert_eq!(s.2.len(), 1);
        assert!(s.2[0].0.starts_with("ctor_caller+") && s.2[0].1 == "new_table", "{v:?}");
    }
    let o = view(rep, "outermost", "ctor_caller+");
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].1, "new_table");
    assert_eq!(o[0].2.len(), 2);
    // kind 4 is traced like the others
    let trace = std::fs::read_to_string(dir.join("trace.txt")).unwrap();
    assert!(trace.lines().any(|l| l.starts_with("enter") && l.contains("fn=new_table ") && l.contains(" depth=1")), "{trace}");
}

#[test]
fn leaks_per_site_and_metadata_per_peak_chunk() {
    let dir = out_dir("attrib-peak");
    let exe = build("attrib.c", &dir, &[]);
    let r = run(&exe, &dir, &["peak"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    assert!(r.stdout.contains("peak ok"));
    let rep = &reports(&dir)[0];
    let t = &rep["totals"];
    // 10000 chunks of 32 bytes and their array were live at once (single thread: exact,
    // plus whatever libc had live then)
    let peak = u(t, "peak_live_chunks");
    assert!((10_001..10_001 + 4).contains(&peak), "{t}");
    let meta_peak = u(t, "meta_bytes_peak");
    assert!(meta_peak >= u(t, "meta_bytes"), "{t}");
    let per = t["meta_bytes_per_peak_live_chunk"].as_f64().unwrap();
    assert!((per - meta_peak as f64 / peak as f64).abs() < 0.01, "{t}");
    // the trailers (8 B), start bits and fixed tables: well under a trailer per byte
    assert!(per > 8.0 && per < 64.0, "{t}");
    // leaks at exit: the strdup line holds exactly the 7 chunks left
    let line = line_of("attrib.c", "/* LEAK */");
    let leak: Vec<&Value> = rep["sites"].as_array().unwrap().iter().filter(|s| s["line"].as_str() == Some(line.as_str())).collect();
    assert_eq!(leak.len(), 1, "{line}: {rep}");
    assert_eq!((u(leak[0], "live_chunks"), u(leak[0], "live_bytes"), u(leak[0], "calls")), (7, 49, 7));
    assert_eq!(leak[0]["allocator"], "strdup");
    // a chunk made by code inlined into peak(): the line of peak() that calls it
    let (call, body) = (line_of("attrib.c", "/* INLINED-CALL */"), line_of("attrib.c", "/* INLINED-BODY */"));
    let lines: Vec<&str> = rep["sites"].as_array().unwrap().iter().filter_map(|s| s["line"].as_str()).collect();
    assert!(lines.contains(&call.as_str()) && !lines.contains(&body.as_str()), "{call} not {body}: {lines:?}");
    let inl = rep["sites"].as_array().unwrap().iter().find(|s| s["line"].as_str() == Some(call.as_str())).unwrap();
    assert!(inl["symbol"].as_str().unwrap().starts_with("peak+"), "{inl}");
    assert_eq!((u(inl, "live_chunks"), inl["allocator"].as_str()), (1, Some("strdup")));
    // and the 10000 freed chunks are not leaks
    let peak_site = sites_matching(rep, "sites", "peak+");
    assert!(peak_site.iter().filter(|s| s["line"].as_str() != Some(call.as_str())).all(|s| u(s, "live_chunks") == 0), "{peak_site:?}");
}

/// runtime/src is layered (lib.rs lists the modules bottom-up): a module may use only
/// modules listed before it, so no two modules import each other, directly or around
/// a circle.
#[test]
fn source_layers_point_downward() {
    let src = root().join("runtime/src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order: Vec<&str> = lib.lines().filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';')).collect();
    assert!(order.len() > 10, "{order:?}");
    // a module is a file, or a directory (mod.rs and its submodules, one layer)
    let mut files: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir() || e.file_name().to_string_lossy().ends_with(".rs"))
        .map(|e| e.file_name().to_string_lossy().trim_end_matches(".rs").to_string())
        .filter(|f| f != "lib")
        .collect();
    files.sort();
    assert_eq!(files.len(), order.len(), "every module is listed in lib.rs: {files:?} vs {order:?}");
    let mut wrong = Vec::new();
    for (i, m) in order.iter().enumerate() {
        let dir = src.join(m);
        let text = if dir.is_dir() {
            std::fs::read_dir(&dir).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect::<Vec<_>>().join("\n")
        } else {
            std::fs::read_to_string(src.join(format!("{m}.rs"))).unwrap()
        };
        let mut used: Vec<String> = Vec::new();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap()];
                used.extend(group.split(',').map(|s| s.trim().split("::").next().unwrap().to_string()));
            } else {
                used.push(rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect());
            }
        }
        for u in used.iter().filter(|u| !u.is_empty()) {
            match order.iter().position(|o| o == u) {
                Some(j) if j < i || (j == i && dir.is_dir()) => {}
                Some(_) => wrong.push(format!("{m} uses {u}")),
                None => wrong.push(format!("{m} uses crate::{u} (not a module listed in lib.rs)")),
            }
        }
    }
    assert!(wrong.is_empty(), "imports pointing up or sideways: {wrong:?}");
}

/// `ALLOCSITE_REPORT` naming something that is not a regular file is written in place:
/// a FIFO gets the report and stays a FIFO (a rename over it would have replaced it —
/// and `/dev/stdout`, as root, for the whole machine); a symbolic link is written where
/// it points and stays a link.
#[test]
fn report_to_a_fifo_or_through_a_symlink() {
    use std::os::unix::fs::FileTypeExt;
    let dir = out_dir("report-nodes");
    let exe = build("index.c", &dir, &[]);
    let fifo = dir.join("pipe.json");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // (read without blocking, up to a deadline: were the FIFO replaced, no writer would
    // ever come and a plain read would wait forever)
    let f = fifo.clone();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut r = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&f).unwrap();
        let (mut text, mut buf) = (Vec::new(), [0u8; 65536]);
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(30) {
            match r.read(&mut buf) {
                Ok(0) if !text.is_empty() => break,
                Ok(n) if n > 0 => text.extend_from_slice(&buf[..n]),
                _ => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        String::from_utf8(text).unwrap()
    });
    run(&exe, &dir, &["basic"], &[("ALLOCSITE_REPORT", fifo.to_str().unwrap())]);
    let text = reader.join().unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(v["totals"].is_object(), "{text}");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    let (real, link) = (dir.join("real.json"), dir.join("link.json"));
    let _ = std::fs::remove_file(&link);
    std::fs::write(&real, "old").unwrap();
    std::os::unix::fs::symlink("real.json", &link).unwrap();
    run(&exe, &dir, &["basic"], &[("ALLOCSITE_REPORT", link.to_str().unwrap())]);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert!(report(&real)["totals"].is_object());
}
