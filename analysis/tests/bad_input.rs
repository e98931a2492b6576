//! Malformed input never panics the analysis: it is analyzed or rejected with a
//! one-line reason. Mutations of a real gcc-built binary, deterministic.

mod support;

use allocsite_analysis::{analyze_bytes, Options};

fn real_binary() -> Vec<u8> {
    std::fs::read(support::testbin("wrappers.O2")).expect("read testbin")
}

#[test]
fn non_elf_and_truncated_inputs_are_rejected_with_a_reason() {
    let opts = Options::default();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("text", b"#!/bin/sh\necho hi\n".to_vec()),
        ("magic only", b"\x7fELF".to_vec()),
        ("32-bit", {
            let mut v = real_binary();
            v[4] = 1;
            v
        }),
        ("big-endian", {
            let mut v = real_binary();
            v[5] = 2;
            v
        }),
        ("aarch64", {
            let mut v = real_binary();
            v[18] = 183;
            v[19] = 0;
            v
        }),
        ("header only", real_binary()[..64].to_vec()),
    ];
    for (what, data) in cases {
        let err = analyze_bytes(&data, &opts).expect_err(what);
        assert!(!err.is_empty() && !err.contains('\n'), "{what}: {err:?}");
    }
}

#[test]
fn truncations_and_byte_flips_never_panic() {
    let opts = Options::default();
    let orig = real_binary();
    let mut len = orig.len();
    while len > 0 {
        let _ = analyze_bytes(&orig[..len], &opts);
        len = len * 7 / 8;
    }
    // A small LCG keeps the mutations reproducible.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for _ in 0..300 {
        let mut data = orig.clone();
        for _ in 0..1 + next() % 16 {
            // Bias towards the headers, where structure lives.
            let at = if next() % 2 == 0 { next() % 4096.min(data.len()) } else { next() % data.len() };
            data[at] = next() as u8;
        }
        let _ = analyze_bytes(&data, &opts);
    }
}

#[test]
fn fuzzer_findings_stay_fixed() {
    // Inputs that once panicked the analysis under `cargo fuzz` (overflow checks on).
    let dir = support::root().join("analysis/tests/fuzz_regressions");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("regressions dir") {
        let data = std::fs::read(e.expect("entry").path()).expect("read");
        let _ = analyze_bytes(&data, &Options::default());
        n += 1;
    }
    assert!(n > 0);
}
