//! rustc's version script for cdylibs exports only Rust items; the TLS symbol
//! `__outermost_allocsite` is defined in `global_asm!`, so a second (merged)
//! version script exports it too.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/exports.map");
    println!("cargo:rerun-if-changed=exports.map");
    println!("cargo:rerun-if-changed=build.rs");
}
