//! Shared by the rewriter's integration tests: paths, and the testbins built once.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `testbins/out`, built on first use (`make -C testbins` is incremental), so the
/// tests never pass by skipping.
pub fn testbins_out() -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let st = Command::new("make").args(["-s", "-C"]).arg(root().join("testbins")).status().expect("run make -C testbins");
        assert!(st.success(), "building testbins failed");
    });
    root().join("testbins/out")
}

/// A per-test scratch directory, removed when the test passes (kept for a look when
/// it fails).
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `$TMPDIR/allocsite-SUITE-PID/NAME`, empty.
pub fn scratch_in(suite: &str, name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("allocsite-{suite}-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

pub fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`, which must succeed; its stdout.
pub fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(o.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `name → (address, size)` of the defined functions of `bin` (from `nm -S`).
pub fn functions(bin: &Path) -> std::collections::BTreeMap<String, (u64, u64)> {
    let out = ok(Command::new("nm").arg("-S").arg("--defined-only").arg(bin));
    let mut m = std::collections::BTreeMap::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 4 && matches!(f[2], "T" | "t" | "W" | "w") {
            let (a, s) = (u64::from_str_radix(f[0], 16).unwrap(), u64::from_str_radix(f[1], 16).unwrap());
            m.entry(f[3].to_string()).or_insert((a, s));
        }
    }
    m
}
