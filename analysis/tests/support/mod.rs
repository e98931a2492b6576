//! Shared helpers for tests that run against the real gcc-built test programs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Once;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `testbins/out`, built on first use (`make -C testbins`, which is incremental).
pub fn out_dir() -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let status = std::process::Command::new("make")
            .args(["-s", "-C"])
            .arg(root().join("testbins"))
            .status()
            .expect("run make -C testbins");
        assert!(status.success(), "building testbins failed");
    });
    root().join("testbins").join("out")
}

pub fn testbin(name: &str) -> PathBuf {
    let p = out_dir().join(name);
    assert!(p.exists(), "{} was not built by testbins/Makefile", p.display());
    p
}
