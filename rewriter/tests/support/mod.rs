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
