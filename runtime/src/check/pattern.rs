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

/// Offset of the first byte in [p, p+n) that is not `b`.
pub unsafe fn first_not(p: usize, n: usize, b: u8) -> Option<usize> {
    let w = u64::from_ne_bytes([b; 8]);
    let mut i = 0;
    while i + 8 <= n {
        if ((p + i) as *const u64).read_unaligned() != w {
            break;
        }
        i += 8;
    }
    (i..n).find(|&j| *((p + j) as *const u8) != b)
}

/// Write the canary over [p+from, p+to).
pub unsafe fn put_canary(p: usize, from: usize, to: usize) {
    let w = u32::from_ne_bytes(CANARY);
    let mut i = from;
    while i + 4 <= to {
        ((p + i) as *mut u32).write_unaligned(w);
        i += 4;
    }
    for j in i..to {
        *((p + j) as *mut u8) = CANARY[(j - from) & 3];
    }
}

/// Offset (from p) of the first damaged canary byte in [p+from, p+to).
pub unsafe fn check_canary(p: usize, from: usize, to: usize) -> Option<usize> {
    let w = u32::from_ne_bytes(CANARY);
    let mut i = from;
    while i + 4 <= to && ((p + i) as *const u32).read_unaligned() == w {
        i += 4;
    }
    (i..to).find(|&j| *((p + j) as *const u8) != CANARY[(j - from) & 3])
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
}
