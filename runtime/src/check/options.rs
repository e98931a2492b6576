//! The check options: `poison[=BYTE]`, `canary`, `double-free`, `quarantine[=BYTES]`,
//! `fail=warn|abort`, comma-separated (`ALLOCSITE_CHECK`, or the string the rewriter
//! bakes into a program with `rewrite --check`; the variable wins).
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

pub const POISON: u32 = 1;
pub const CANARY: u32 = 2;
pub const DOUBLE_FREE: u32 = 4;
pub const QUARANTINE: u32 = 8;
/// `fail=warn`: report and go on (the bad free is skipped).
pub const WARN: u32 = 16;

/// The options in force; 0 = no checks (the fast path).
pub static FLAGS: AtomicU32 = AtomicU32::new(0);
pub static POISON_BYTE: AtomicU8 = AtomicU8::new(0xa5);
pub static QUARANTINE_BYTES: AtomicU64 = AtomicU64::new(16 << 20);
/// Bytes the interposed allocators add to each request: the trailer, plus room for at
/// least 8 canary bytes when `canary` is on.
pub static PAD: AtomicUsize = AtomicUsize::new(crate::chunkmap::TRAILER);
pub const CANARY_MIN: usize = 8;

pub struct Parsed {
    pub flags: u32,
    pub poison: u8,
    pub quarantine: u64,
}

fn num(s: &[u8]) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix(b"0x").or_else(|| s.strip_prefix(b"0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    let (digits, mul) = match digits.last()? {
        b'k' | b'K' if radix == 10 => (&digits[..digits.len() - 1], 1u64 << 10),
        b'm' | b'M' if radix == 10 => (&digits[..digits.len() - 1], 1 << 20),
        b'g' | b'G' if radix == 10 => (&digits[..digits.len() - 1], 1 << 30),
        _ => (digits, 1),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        let d = (c as char).to_digit(radix)? as u64;
        v = v.checked_mul(radix as u64)?.checked_add(d)?;
    }
    v.checked_mul(mul)
}

/// Parse an option list; Err(the offending option).
pub fn parse(s: &[u8]) -> Result<Parsed, &[u8]> {
    let mut p = Parsed { flags: 0, poison: 0xa5, quarantine: 16 << 20 };
    for opt in s.split(|&c| c == b',') {
        let opt = opt.trim_ascii();
        if opt.is_empty() {
            continue;
        }
        let (name, val) = match opt.iter().position(|&c| c == b'=') {
            Some(i) => (&opt[..i], Some(&opt[i + 1..])),
            None => (opt, None),
        };
        match (name, val) {
            (b"poison", v) => {
                p.flags |= POISON;
                if let Some(v) = v {
                    p.poison = num(v).filter(|&b| b <= 0xff).ok_or(opt)? as u8;
                }
            }
            (b"canary", None) => p.flags |= CANARY,
            (b"double-free", None) => p.flags |= DOUBLE_FREE,
            (b"quarantine", v) => {
                p.flags |= QUARANTINE;
                if let Some(v) = v {
                    p.quarantine = num(v).ok_or(opt)?;
                }
            }
            (b"fail", Some(b"warn")) => p.flags |= WARN,
            (b"fail", Some(b"abort")) => p.flags &= !WARN,
            _ => return Err(opt),
        }
    }
    // (fail=… alone asks for no check)
    if p.flags & !WARN == 0 {
        p.flags = 0;
    }
    Ok(p)
}

/// Put options in force (at start-up, before the program allocates).
pub fn set(p: &Parsed) {
    POISON_BYTE.store(p.poison, Ordering::Relaxed);
    QUARANTINE_BYTES.store(p.quarantine, Ordering::Relaxed);
    let canary = if p.flags & CANARY != 0 { CANARY_MIN } else { 0 };
    PAD.store(crate::chunkmap::TRAILER + canary, Ordering::Relaxed);
    FLAGS.store(p.flags, Ordering::Relaxed);
}

#[inline(always)]
pub fn has(f: u32) -> bool {
    FLAGS.load(Ordering::Relaxed) & f != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_options() {
        let p = parse(b"poison,canary,double-free,quarantine").unwrap();
        assert_eq!(p.flags, POISON | CANARY | DOUBLE_FREE | QUARANTINE);
        assert_eq!((p.poison, p.quarantine), (0xa5, 16 << 20));
        let p = parse(b"poison=0x3c, quarantine=4M,fail=warn").unwrap();
        assert_eq!((p.flags, p.poison, p.quarantine), (POISON | QUARANTINE | WARN, 0x3c, 4 << 20));
        assert_eq!(parse(b"poison=60").unwrap().poison, 60);
        // fail=… alone checks nothing; abort after warn wins
        assert_eq!(parse(b"fail=warn").unwrap().flags, 0);
        assert_eq!(parse(b"canary,fail=warn,fail=abort").unwrap().flags, CANARY);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for bad in [&b"canry"[..], b"poison=256", b"poison=", b"quarantine=lots", b"fail=maybe", b"canary=1", b"double-free=2"] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"canary,bogus").err(), Some(&b"bogus"[..]));
    }
}
