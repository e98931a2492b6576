//! `allocsite report` on a real runtime report: the leak list (`--leaks`, and the
//! section at the end of the table) and the metadata line.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn runtime() -> PathBuf {
    let p = std::env::var_os("ALLOCSITE_RT").map(PathBuf::from).unwrap_or_else(|| support::root().join("target/release/liballocsite_rt.so"));
    assert!(p.exists(), "runtime library {} missing: build it first (make build) or set ALLOCSITE_RT", p.display());
    p
}

fn line_of(src: &Path, marker: &str) -> String {
    let text = std::fs::read_to_string(src).unwrap();
    let n = text.lines().position(|l| l.contains(marker)).unwrap() + 1;
    format!("{}:{n}", src.file_name().unwrap().to_string_lossy())
}

fn allocsite_report(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_allocsite")).arg("report").args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn leaks_listed_per_site_with_line() {
    let dir = support::root().join("target/allocsite-report-tests");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = support::root().join("rewriter/tests/c/leaky.c");
    let exe = dir.join("leaky");
    let libdir = runtime().parent().unwrap().canonicalize().unwrap();
    let cc = Command::new("gcc")
        .args(["-O2", "-g", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg(format!("-L{}", libdir.display()))
        .args(["-lallocsite_rt", "-Wl,--disable-new-dtags"])
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .output()
        .unwrap();
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    let report = dir.join("report.json");
    let st = Command::new(&exe).env("ALLOCSITE_REPORT", &report).status().unwrap();
    assert!(st.success());
    let rp = report.to_str().unwrap();

    let (dup, calloc) = (line_of(&src, "LEAK-DUP"), line_of(&src, "LEAK-CALLOC"));
    let leaks = allocsite_report(&[rp, "--leaks"]);
    let rows: Vec<&str> = leaks.lines().skip_while(|l| !l.starts_with("leaks at exit")).collect();
    assert_eq!(rows[0], "leaks at exit: 6 chunks, 325 B at 2 innermost sites:", "{leaks}");
    assert!(rows[2].contains("          1          300  calloc") && rows[2].ends_with(&format!("({calloc})")), "{leaks}");
    assert!(rows[3].contains("          5           25  strdup") && rows[3].ends_with(&format!("({dup})")), "{leaks}");
    assert_eq!(rows.len(), 4, "{leaks}");
    assert!(!leaks.contains("sites by bytes"), "--leaks prints only the leak list: {leaks}");

    // the full table ends with the same list; the metadata line relates the runtime's
    // memory to the peak number of live chunks: the 1000 chunks made and freed before
    // the leaks
    let full = allocsite_report(&[rp]);
    assert!(full.contains("innermost sites by bytes") && full.contains(rows[0]), "{full}");
    assert!(full.contains(" B per chunk at the peak of 1000 live chunks"), "{full}");
}
