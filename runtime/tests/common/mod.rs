//! What the runtime's integration test files share: where the workspace and the
//! runtime library are, a fresh output directory per test, and building a C test
//! program against the library as a rewritten program would load it.
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The runtime library: $ALLOCSITE_RT, else target/release/liballocsite_rt.so.
pub fn rt() -> PathBuf {
    if let Some(p) = std::env::var_os("ALLOCSITE_RT") {
        return PathBuf::from(p);
    }
    let p = root().join("target/release/liballocsite_rt.so");
    if !p.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "allocsite-rt"])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(st.success());
    }
    p
}

pub fn out_dir(name: &str) -> PathBuf {
    let d = root().join("target/allocsite-rt-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Build tests/c/<src> into dir; returns the executable.
pub fn build(src: &str, dir: &Path, extra: &[&str]) -> PathBuf {
    let rt = rt();
    let libdir = rt.parent().unwrap().canonicalize().unwrap();
    let exe = dir.join(Path::new(src).file_stem().unwrap());
    let cc = if src.ends_with(".cc") { "g++" } else { "gcc" };
    let out = Command::new(cc)
        .args(["-O2", "-g", "-Wall", "-Wno-alloc-size-larger-than", "-Wno-maybe-uninitialized", "-o"])
        .arg(&exe)
        .arg(if src.contains('/') { root().join(src) } else { root().join("runtime/tests/c").join(src) })
        .arg(format!("-L{}", libdir.display()))
        .arg("-lallocsite_rt")
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        // DT_RPATH, not DT_RUNPATH: cargo test puts target/release in LD_LIBRARY_PATH,
        // which would override a run path and ignore $ALLOCSITE_RT
        .arg("-Wl,--disable-new-dtags")
        .args(["-lpthread"])
        .args(extra)
        .output()
        .expect("cannot run the C compiler");
    assert!(out.status.success(), "{cc} {src} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}
