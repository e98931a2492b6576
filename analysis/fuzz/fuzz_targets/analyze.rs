//! The whole analysis on arbitrary bytes: loader, decoder, data flow, DWARF.
//! Run: `cd analysis && RUSTC_BOOTSTRAP=1 cargo fuzz run analyze -- -max_total_time=300`
//! (seed the corpus with a few testbins to start from real ELF structure).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = allocsite_analysis::analyze_bytes(data, &allocsite_analysis::Options::default());
});
