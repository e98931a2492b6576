//! The byte patterns: poison for new chunks, a second pattern for freed ones (so a read
//! after free shows a value unlike a read of uninitialised memory), and the canary
//! after the requested size (`ff 55 aa 01` repeated, so any odd size is covered).
use super::options::POISON_BYTE;
use core::sync::atomic::Ordering;

pub const CANARY: [u8; 4] = [0xff, 0x55, 0xaa, 0x01];

pub fn poison_byte() -> u8 {
    POISON_BYTE.load(Ordering::Relaxed)
}
/// The freed-chunk pattern: the poison byte's complement (0x5a by default).
pub fn free_byte() -> u8 {
    !POISON_BYTE.load(Ordering::Relaxed)
}

/// Fill [p, p+n) with `b`. Most chunks are small (Lua's average 47 bytes): up to 64
/// bytes they take a few overlapping stores inline, not a call of glibc's memset (whose
/// call and size dispatch cost more than the stores; it was 10 % of a Lua run with
/// all checks).
#[inline(always)]
pub unsafe fn fill(p: usize, n: usize, b: u8) {
    let w8 = u64::from_ne_bytes([b; 8]);
    let w16 = (w8 as u128) << 64 | w8 as u128;
    let at = |o: usize| (p + o) as *mut u8;
    if n >= 32 && n <= 64 {
        (at(0) as *mut u128).write_unaligned(w16);
        (at(16) as *mut u128).write_unaligned(w16);
        (at(n - 32) as *mut u128).write_unaligned(w16);
        (at(n - 16) as *mut u128).write_unaligned(w16);
    } else if n >= 16 && n < 32 {
        (at(0) as *mut u128).write_unaligned(w16);
        (at(n - 16) as *mut u128).write_unaligned(w16);
    } else if n >= 8 && n < 16 {
        (at(0) as *mut u64).write_unaligned(w8);
        (at(n - 8) as *mut u64).write_unaligned(w8);
    } else if n < 8 {
        for i in 0..n {
            *at(i) = b;
        }
    } else {
        core::ptr::write_bytes(p as *mut u8, b, n);
    }
}

/// Whether [p, p+n) holds `b` only: up to 64 bytes as a few overlapping loads in line
/// (most chunks leaving the quarantine are that small), else `first_not`.
#[inline(always)]
pub unsafe fn filled(p: usize, n: usize, b: u8) -> bool {
    let w8 = u64::from_ne_bytes([b; 8]);
    let w16 = (w8 as u128) << 64 | w8 as u128;
    let r16 = |o: usize| ((p + o) as *const u128).read_unaligned() ^ w16;
    let r8 = |o: usize| ((p + o) as *const u64).read_unaligned() ^ w8;
    if n >= 32 && n <= 64 {
        r16(0) | r16(16) | r16(n - 32) | r16(n - 16) == 0
    } else if n >= 16 && n < 32 {
        r16(0) | r16(n - 16) == 0
    } else if n >= 8 && n < 16 {
        r8(0) | r8(n - 8) == 0
    } else {
        first_not(p, n, b).is_none()
    }
}

/// Offset of the first byte in [p, p+n) that is not `b`. Every chunk leaving the
/// quarantine goes through here: 32 bytes a step (four words compared at once), the
/// tail as one overlapping word; the byte is looked for only when a step differs.
pub unsafe fn first_not(p: usize, n: usize, b: u8) -> Option<usize> {
    let w = u64::from_ne_bytes([b; 8]);
    let rd = |o: usize| ((p + o) as *const u64).read_unaligned() ^ w;
    let byte = |from: usize, to: usize| (from..to).find(|&j| *((p + j) as *const u8) != b);
    if n < 8 {
        return byte(0, n);
    }
    let mut i = 0;
    while i + 32 <= n {
        if rd(i) | rd(i + 8) | rd(i + 16) | rd(i + 24) != 0 {
            return byte(i, i + 32);
        }
        i += 32;
    }
    while i + 8 <= n {
        if rd(i) != 0 {
            return byte(i, i + 8);
        }
        i += 8;
    }
    if i < n && rd(n - 8) != 0 {
        return byte(n - 8, n);
    }
    None
}

/// The canary as a word: `ff 55 aa 01` twice. A word at offset k from the canary's
/// start holds it rotated by k mod 4 bytes.
const CANARY64: u64 = u64::from_le_bytes([0xff, 0x55, 0xaa, 0x01, 0xff, 0x55, 0xaa, 0x01]);

#[inline(always)]
fn canary_word(k: usize) -> u64 {
    CANARY64.rotate_right(8 * (k & 3) as u32)
}

/// Write the canary over [p+from, p+to): whole words, the last one overlapping.
#[inline(always)]
pub unsafe fn put_canary(p: usize, from: usize, to: usize) {
    let len = to.saturating_sub(from);
    let at = |k: usize| (p + from + k) as *mut u64;
    if len < 8 {
        for k in 0..len {
            *((p + from + k) as *mut u8) = CANARY[k & 3];
        }
        return;
    }
    let mut k = 0;
    while k + 8 <= len {
        at(k).write_unaligned(CANARY64);
        k += 8;
    }
    if k < len {
        at(len - 8).write_unaligned(canary_word(len - 8));
    }
}

/// Offset (from p) of the first damaged canary byte in [p+from, p+to): the words are
/// compared (as `put_canary` wrote them), the byte looked for only when one differs.
#[inline(always)]
pub unsafe fn check_canary(p: usize, from: usize, to: usize) -> Option<usize> {
    let len = to.saturating_sub(from);
    if len >= 8 {
        let rd = |k: usize| ((p + from + k) as *const u64).read_unaligned();
        let mut bad = rd(len - 8) ^ canary_word(len - 8);
        let mut k = 0;
        while k + 8 <= len {
            bad |= rd(k) ^ CANARY64;
            k += 8;
        }
        if bad == 0 {
            return None;
        }
    }
    check_canary_bytes(p, from, to)
}

#[cold]
unsafe fn check_canary_bytes(p: usize, from: usize, to: usize) -> Option<usize> {
    (from..to).find(|&j| *((p + j) as *const u8) != CANARY[(j - from) & 3])
}

/// Up to 16 bytes at p+off (what a finding shows), clipped to `end`.
pub unsafe fn bytes_at(p: usize, off: usize, end: usize) -> ([u8; 16], u8) {
    let mut b = [0u8; 16];
    let n = end.saturating_sub(off).min(16);
    for (i, x) in b.iter_mut().enumerate().take(n) {
        *x = *((p + off + i) as *const u8);
    }
    (b, n as u8)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fill_covers_exactly_the_range() {
        for n in 0..200 {
            for off in 0..9 {
                let mut buf = [0u8; 224];
                unsafe { super::fill(buf.as_mut_ptr() as usize + off + 8, n, 0x5a) };
                for (i, &x) in buf.iter().enumerate() {
                    let inside = i >= off + 8 && i < off + 8 + n;
                    assert_eq!(x, if inside { 0x5a } else { 0 }, "n {n} off {off} byte {i}");
                }
            }
        }
    }

    #[test]
    fn filled_agrees_with_first_not() {
        for n in 0..140 {
            for bad in 0..=n {
                let mut buf = [0x5au8; 160];
                if bad < n {
                    buf[3 + bad] = 0x5b;
                }
                buf[3 + n] = 0; // (the byte after the range does not count)
                let p = buf.as_ptr() as usize + 3;
                assert_eq!(unsafe { super::filled(p, n, 0x5a) }, bad == n, "n {n} bad {bad}");
            }
        }
    }

    #[test]
    fn first_not_finds_the_first_changed_byte() {
        let first = |buf: &[u8; 160], n: usize| unsafe { super::first_not(buf.as_ptr() as usize + 3, n, 0x5a) };
        for n in 0..140 {
            let mut buf = [0x5au8; 160];
            assert_eq!(first(&buf, n), None, "n {n}");
            // bytes after the range do not count
            buf[3 + n] = 0;
            assert_eq!(first(&buf, n), None, "n {n}");
            for bad in 0..n {
                let mut buf = [0x5au8; 160];
                buf[3 + bad] = 0x5b;
                if bad + 1 < n {
                    buf[3 + n - 1] = 0; // (a later one must not win)
                }
                assert_eq!(first(&buf, n), Some(bad), "n {n} bad {bad}");
            }
        }
    }

    #[test]
    fn canary_is_the_pattern_from_its_start_and_checked_bytewise() {
        for from in 0..12 {
            for len in 0..70 {
                let mut buf = [0u8; 100];
                let p = buf.as_mut_ptr() as usize;
                unsafe { super::put_canary(p, from + 4, from + 4 + len) };
                for (i, &x) in buf.iter().enumerate() {
                    let want = if i >= from + 4 && i < from + 4 + len { super::CANARY[(i - from - 4) & 3] } else { 0 };
                    assert_eq!(x, want, "from {from} len {len} byte {i}");
                }
                assert_eq!(unsafe { super::check_canary(p, from + 4, from + 4 + len) }, None);
                for bad in 0..len {
                    let at = from + 4 + bad;
                    buf[at] ^= 0x10;
                    assert_eq!(unsafe { super::check_canary(p, from + 4, from + 4 + len) }, Some(at), "from {from} len {len} bad {bad}");
                    buf[at] ^= 0x10;
                }
            }
        }
    }
}
