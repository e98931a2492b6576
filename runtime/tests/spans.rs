//! The runtime's small-object heap (`src/smallheap`): C programs (tests/c/spans.c)
//! built against the library use span objects every way a program may, and check the
//! answers; the report must count span objects as it counts glibc's chunks.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{build, out_dir};

/// Run spans.c in `mode` (extra args, env); its stdout. Panics unless it exits with 0.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let exe = dir.join("spans");
    let mut c = Command::new(&exe);
    c.args(args).current_dir(dir);
    for k in ["ALLOCSITE_TRACE", "ALLOCSITE_REPORT", "ALLOCSITE_MAX_META", "ALLOCSITE_HEAP", "ALLOCSITE_CHECK", "LD_PRELOAD"] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "spans {args:?} failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

fn setup(name: &str) -> PathBuf {
    let dir = out_dir(name);
    build("spans.c", &dir, &["-Wno-use-after-free"]);
    dir
}

fn reports(dir: &Path) -> Vec<Value> {
    let mut v: Vec<Value> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("report-"))
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
        .collect();
    v.sort_by_key(|r| r["pid"].as_u64());
    v
}

#[test]
fn calloc_clears_a_reused_object() {
    let dir = setup("spans-calloc");
    assert!(run(&dir, &["calloc"], &[]).contains("calloc ok"));
}

#[test]
fn realloc_moves_between_spans_and_glibc() {
    let dir = setup("spans-realloc");
    assert!(run(&dir, &["realloc"], &[]).contains("realloc ok"));
}

#[test]
fn usable_size_covers_the_request() {
    let dir = setup("spans-usable");
    assert!(run(&dir, &["usable"], &[]).contains("usable ok"));
}

#[test]
fn threads_free_span_objects() {
    let dir = setup("spans-threads");
    let out = run(&dir, &["threads"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    assert!(out.contains("threads ok"));
    let r = &reports(&dir)[0];
    // every object made before the threads, freed by them (a third through realloc,
    // whose new chunks were freed too), and the threads' own chunks
    for (f, calls) in [("threads+", 20_000 + 20), ("free_quarter+", 20_000 + 20_000 / 3 + 1)] {
        let s: Vec<&Value> = r["sites"].as_array().unwrap().iter().filter(|s| s["symbol"].as_str().unwrap().starts_with(f)).collect();
        assert!(!s.is_empty(), "{f}: {r}");
        assert_eq!(s.iter().map(|s| s["calls"].as_u64().unwrap()).sum::<u64>(), calls, "{f}");
        assert!(s.iter().all(|s| s["live_chunks"].as_u64() == Some(0) && s["live_bytes"].as_u64() == Some(0)), "{f}: {r}");
    }
    let t = &r["totals"];
    assert_eq!(t["stale_chunks"].as_u64(), Some(0));
    assert_eq!(t["dropped"].as_u64(), Some(0));
}

#[test]
fn fork_child_allocates_and_frees() {
    let dir = setup("spans-fork");
    let out = run(&dir, &["fork"], &[("ALLOCSITE_REPORT", "report-%p.json")]);
    let child: i64 = out.trim().rsplit('=').next().unwrap().parse().unwrap();
    let rs = reports(&dir);
    assert_eq!(rs.len(), 2, "one report per process");
    let c = rs.iter().find(|r| r["pid"].as_i64() == Some(child)).expect("child report");
    let sites = c["sites"].as_array().unwrap();
    // the child's own allocations, all freed; the parent's 1000, half freed by the child
    let own: Vec<&Value> = sites.iter().filter(|s| s["calls"].as_u64() == Some(100_000)).collect();
    assert_eq!(own.len(), 1, "{c}");
    assert_eq!(own[0]["live_chunks"].as_u64(), Some(0));
    let parent: Vec<&Value> = sites.iter().filter(|s| s["calls"].as_u64() == Some(1000)).collect();
    assert_eq!(parent.len(), 1, "{c}");
    assert_eq!(parent[0]["live_chunks"].as_u64(), Some(500));
}

#[test]
fn interior_pointers_of_span_objects() {
    let dir = setup("spans-interior");
    assert!(run(&dir, &["interior"], &[]).contains("interior ok"));
}

#[test]
fn leaks_of_span_objects_are_reported() {
    let dir = setup("spans-leaks");
    assert!(run(&dir, &["leaks"], &[("ALLOCSITE_REPORT", "report-%p.json")]).contains("leaks ok"));
    let r = &reports(&dir)[0];
    let s: Vec<&Value> = r["sites"].as_array().unwrap().iter().filter(|s| s["symbol"].as_str().unwrap().starts_with("leak_here")).collect();
    assert_eq!(s.len(), 1, "{r}");
    assert_eq!(s[0]["live_chunks"].as_u64(), Some(7));
    assert_eq!(s[0]["live_bytes"].as_u64(), Some(280));
}

#[test]
fn signal_handler_allocating_during_a_loop() {
    let dir = setup("spans-signals");
    assert!(run(&dir, &["signals"], &[]).contains("signals ok"));
}

#[test]
fn heap_glibc_keeps_every_chunk_in_glibc() {
    let dir = setup("spans-heap");
    assert!(run(&dir, &["heap", "spans"], &[]).contains("heap spans ok"));
    assert!(run(&dir, &["heap", "glibc"], &[("ALLOCSITE_HEAP", "glibc")]).contains("heap glibc ok"));
    // (the heap checks run on span objects too: tests/check_spans.rs)
}

/// `mallinfo2` and `mallinfo` count span objects as allocated while they live.
#[test]
fn mallinfo_counts_span_objects() {
    let dir = setup("spans-mallinfo");
    assert!(run(&dir, &["mallinfo"], &[]).contains("mallinfo ok"));
}

/// A double free and a free of an interior pointer of a span object abort (SIGABRT, as
/// glibc's allocator does on the bad frees it detects) with one line naming the
/// address, instead of being ignored.
#[test]
fn bad_frees_of_span_objects_abort() {
    use std::os::unix::process::ExitStatusExt;
    let dir = setup("spans-badfree");
    for how in ["double", "interior"] {
        let out = Command::new(dir.join("spans")).args(["badfree", how]).current_dir(&dir).env_remove("ALLOCSITE_HEAP").env_remove("ALLOCSITE_CHECK").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc_sigabrt()), "{how}: {}\n{stdout}\n{stderr}", out.status);
        assert!(!stdout.contains("not caught"), "{how}: {stdout}");
        let addr = stdout.lines().find_map(|l| l.strip_prefix("bad ")).unwrap_or_else(|| panic!("{how}: {stdout}"));
        let want = format!("allocsite: free(): invalid pointer {addr}: not a live object");
        assert!(stderr.contains(&want), "{how}: want {want:?} in\n{stderr}");
    }
}

fn libc_sigabrt() -> i32 {
    6
}
