//! `rewrite --check OPTS`: heap-check options baked into OUT (issue 12). The runtime
//! finds them at start-up at the end of `.allocsite.data`: `MAGIC` (16 bytes, 8-byte
//! aligned) and the NUL-terminated option string (runtime/README.md, "Heap checks").
//! `ALLOCSITE_CHECK` overrides them at run time.

/// Must equal the runtime's `check::baked::MAGIC`.
pub const MAGIC: &[u8; 16] = b"allocsite-check\0";

const NAMES: [&str; 5] = ["poison", "canary", "double-free", "quarantine", "fail"];

/// Refuse an option list the runtime would ignore (names only; the runtime parses the
/// values and says on stderr when one is malformed).
pub fn validate(opts: &str) -> Result<(), String> {
    for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let name = o.split('=').next().unwrap_or("");
        if !NAMES.contains(&name) || (name == "fail" && !matches!(o, "fail=warn" | "fail=abort")) || (matches!(name, "canary" | "double-free") && o.contains('=')) {
            return Err(format!("--check: unknown option {o:?} (poison[=BYTE], canary, double-free, quarantine[=BYTES], fail=warn|abort)"));
        }
    }
    if opts.contains('\0') {
        return Err("--check: NUL in the option list".into());
    }
    Ok(())
}

/// The bytes placed in `.allocsite.data`.
pub fn blob(opts: &str) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(opts.as_bytes());
    b.push(0);
    b
}
