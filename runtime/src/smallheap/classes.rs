//! The size classes and the geometry of a span of each (computed at compile time).
//!
//! Classes are 16-byte steps up to `MAX` (class c holds requests of 16·(c−1)+1 … 16·c
//! bytes). That is never larger than glibc's chunk for the same request (glibc adds
//! its 8-byte header and rounds to 16 with a 32-byte minimum: a 24-byte request is a
//! 32-byte chunk there and a 32-byte object here), and every object stays 16-byte
//! aligned, as glibc's `malloc` promises.

/// Bytes of a span; spans are aligned to it, so an object's span is its address masked.
pub const SPAN: usize = 64 * 1024;
/// Largest request served from spans.
pub const MAX: usize = 256;
/// Number of classes (index 0 unused: `class(n)` of n in 1..=MAX is 1..=CLASSES).
pub const CLASSES: usize = MAX / 16;
/// Bytes of the span header before the record array.
pub const HDR: usize = 64;

/// The class of a request of `n` bytes, 1 ≤ n ≤ MAX.
#[inline(always)]
pub const fn class(n: usize) -> usize {
    (n + 15) >> 4
}

/// Object size, object count, offset of object 0 and reciprocal of one span of class
/// `c` whose records are `w` bytes each.
#[derive(Clone, Copy)]
pub struct Geom {
    pub size: u32,
    pub nobj: u32,
    pub start: u32,
    /// ⌈2^32 / size⌉: an offset below `SPAN` divided by `size` is `off·recip >> 32`
    /// exactly (the error, < off/2^32 ≤ 2^-16, stays below 1/size ≥ 2^-8).
    pub recip: u32,
}

const fn geom(c: usize, w: usize) -> Geom {
    let size = c * 16;
    let mut nobj = (SPAN - HDR) / (size + w);
    loop {
        let start = (HDR + nobj * w + 15) & !15;
        if start + nobj * size <= SPAN {
            return Geom { size: size as u32, nobj: nobj as u32, start: start as u32, recip: ((1u64 << 32).div_ceil(size as u64)) as u32 };
        }
        nobj -= 1;
    }
}

const fn table(w: usize) -> [Geom; CLASSES + 1] {
    let mut t = [Geom { size: 0, nobj: 0, start: 0, recip: 0 }; CLASSES + 1];
    let mut c = 1;
    while c <= CLASSES {
        t[c] = geom(c, w);
        c += 1;
    }
    t
}

/// Geometry with 2-byte records (`[0]`) and with 4-byte records (`[1]`).
pub static GEOM: [[Geom; CLASSES + 1]; 2] = [table(2), table(4)];

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn reciprocal_divides_exactly() {
        for w in 0..2 {
            for c in 1..=CLASSES {
                let g = GEOM[w][c];
                assert!(g.start as usize + (g.nobj as usize) * g.size as usize <= SPAN);
                assert!(g.start as usize >= HDR + g.nobj as usize * (2 << w));
                for off in 0..SPAN as u64 {
                    assert_eq!((off * g.recip as u64) >> 32, off / g.size as u64, "class {c} off {off}");
                }
            }
        }
    }
}
