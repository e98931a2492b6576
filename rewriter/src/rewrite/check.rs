//! `rewrite --check OPTS`: heap-check options baked into OUT (issue 12). The runtime
//! finds them at start-up at the end of `.allocsite.data`: `MAGIC` (16 bytes, 8-byte
//! aligned) and the NUL-terminated option string (runtime/README.md, "Heap checks").
//! `ALLOCSITE_CHECK` overrides them at run time.

/// Must equal the runtime's `check::baked::MAGIC`.
pub const MAGIC: &[u8; 16] = b"allocsite-check\0";

/// A number as the runtime reads it: decimal with an optional K/M/G suffix, or 0x hex.
fn number(v: &str) -> Option<u64> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    let (d, mul) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1u64 << 10),
        'm' | 'M' => (&v[..v.len() - 1], 1 << 20),
        'g' | 'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    if d.is_empty() || !d.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    d.parse::<u64>().ok()?.checked_mul(mul)
}

/// Refuse an option list the runtime would ignore (it parses the same grammar,
/// runtime/src/check/options.rs).
pub fn validate(opts: &str) -> Result<(), String> {
    for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let ok = match o.split_once('=') {
            None => matches!(o, "poison" | "canary" | "double-free" | "quarantine"),
            Some(("poison", v)) => number(v).is_some_and(|b| b <= 0xff),
            Some(("quarantine", v)) => number(v).is_some(),
            Some(("fail", v)) => matches!(v, "warn" | "abort"),
            Some(_) => false,
        };
        if !ok {
            return Err(format!("--check: unknown option {o:?} (poison[=BYTE], canary, double-free, quarantine[=BYTES], fail=warn|abort)"));
        }
    }
    if opts.contains('\0') {
        return Err("--check: NUL in the option list".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn validates_like_the_runtime() {
        for good in ["poison,canary,double-free,quarantine", "poison=0x3c,quarantine=4M,fail=warn", "poison=60", "fail=abort"] {
            assert!(super::validate(good).is_ok(), "{good}");
        }
        for bad in ["canry", "poison=256", "poison=", "quarantine=lots", "fail=maybe", "canary=1"] {
            assert!(super::validate(bad).is_err(), "{bad}");
        }
    }
}

/// The bytes placed in `.allocsite.data`.
pub fn blob(opts: &str) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(opts.as_bytes());
    b.push(0);
    b
}
