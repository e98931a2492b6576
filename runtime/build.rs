//! rustc's version script for cdylibs exports only Rust items; the TLS symbol
//! `__outermost_allocsite` is defined in `global_asm!`, so a second (merged)
//! version script exports it too.
//! `hot.ld` puts the code a program runs (load-time init, the allocators and their
//! slow paths) together at the start of the text, so that fault-around maps few
//! 64 KiB windows of it (runtime/README.md, "Memory of the runtime itself").
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/exports.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{dir}/hot.ld");
    // The unwinder (std's panics and backtraces use it) linked in from libgcc_eh.a
    // instead of the DT_NEEDED libgcc_s.so.1: one shared object fewer to map (≈ 100 KiB
    // resident). Its symbols stay local (rustc's version script), so a C++ program's
    // exceptions keep using libgcc_s's unwinder.
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    println!("cargo:rerun-if-changed=exports.map");
    println!("cargo:rerun-if-changed=hot.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
